# SPDX-License-Identifier: Apache-2.0
"""Tuning from Python: tune() runs the shipped `clattn tune` program (the tuner times candidates in worker
processes of its own) and returns the table it prints; tuning_lookup() asks a context which parameters a problem
gets (clattn_tuning_lookup)."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _lib
from ._arrays import parse_dtype
from .errors import FileError, InvalidArgumentError, check, make

lib = _lib.lib


def clattn_program() -> str:
    """The path of the clattn program shipped with the package (or on PATH for a development install)."""
    shipped = os.path.join(_lib.native_dir(), "clattn")
    if os.access(shipped, os.X_OK):
        return shipped
    found = shutil.which("clattn")
    if not found:
        raise FileError(f"the clattn program is neither in {_lib.native_dir()} nor on PATH; reinstall the package "
                        "(pip install .)", -3018)
    return found


def _table(text: str) -> List[Dict[str, Any]]:
    """The summary table `clattn tune` ends with, one dict per class."""
    lines = text.splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("class") and "best parameters" in line),
                default=-1)
    rows = []
    for line in lines[start + 1:] if start >= 0 else []:
        parts = line.split(None, 6)
        if len(parts) < 7:
            break

        def num(s: str) -> Optional[float]:
            return None if s == "-" else float(s.rstrip("x"))
        rows.append({"class": parts[0], "evaluations": int(parts[1]), "failed": int(parts[2]),
                     "default_ms": num(parts[3]), "best_ms": num(parts[4]), "speedup": num(parts[5]),
                     "params": parts[6]})
    return rows


def tune(shapes: Union[str, Sequence[str], None] = None, *, device: Optional[str] = None,
         strategy: Optional[str] = None, budget: Optional[int] = None, time: Optional[str] = None,
         extra_args: Sequence[str] = (), timeout: Optional[float] = None) -> List[Dict[str, Any]]:
    """Tunes the kernels for a device with `clattn tune` and stores the results in its tuning database, where every
    later Context finds them. shapes: problem classes as `clattn tune --shapes` takes them ("prefill:d64:L512",
    "decode:d128:L4096:f16", "additive:a128:L256"; default: the program's own set). Returns the final table, one
    dict per class: class, evaluations, failed, default_ms, best_ms, speedup, params. Raises clattn.Error (with the
    program's message) when it fails."""
    args = [clattn_program(), "tune"]
    if shapes is not None:
        args += ["--shapes", shapes if isinstance(shapes, str) else ",".join(shapes)]
    for flag, value in (("--device", device), ("--strategy", strategy), ("--budget", budget), ("--time", time)):
        if value is not None:
            args += [flag, str(value)]
    args += list(extra_args)
    run = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        status = -3000 if run.returncode == 2 else -3023
        raise make(status, f"clattn tune exited with status {run.returncode}", run.stderr.strip()[-2000:])
    return _table(run.stdout)


def tuning_lookup(ctx: Any, *, operation: str = "sdpa_fused", head_dim: int = 64, v_head_dim: int = 0,
                  dtype: Any = "f32", mask: str = "none", is_causal: bool = False, q_len: int = 1024,
                  kv_len: int = 1024, batch: int = 1, heads: int = 8) -> Dict[str, Any]:
    """Which kernel parameters, from which database entry, a problem gets on `ctx` (clattn_tuning_lookup)."""
    h = ctx._live()
    masks = {"none": 0, "additive": 1, "bool": 2}
    if mask not in masks:
        raise InvalidArgumentError(f"mask={mask!r}: expected 'none', 'additive' or 'bool'", -3000)
    q = _lib.TuningQuery()
    lib.clattn_tuning_query_init(ctypes.byref(q))
    op = operation.encode()
    q.operation, q.head_dim, q.v_head_dim, q.dtype = op, head_dim, v_head_dim, parse_dtype(dtype)
    q.mask, q.causal, q.q_len, q.kv_len, q.batch, q.heads = masks[mask], int(is_causal), q_len, kv_len, batch, heads
    c = _lib.TuningChoice()
    check(lib.clattn_tuning_lookup(h, ctypes.byref(q), ctypes.byref(c)), "clattn_tuning_lookup", h)
    return {"source": lib.clattn_tuning_source_name(c.source).decode(), "params": c.params.decode(),
            "query_class": c.query_class.decode(), "entry_class": c.entry_class.decode(),
            "database": c.database.decode(), "tuned_ms": c.tuned_ms, "default_ms": c.default_ms}
