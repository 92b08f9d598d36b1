# SPDX-License-Identifier: Apache-2.0
"""The ctypes structures against the C headers: a C program compiled with include/clattn.h prints the size of every
mirrored structure and the offset and size of every field; any difference is a binding that would corrupt memory.
Round trips through the library's own initialisers check the values land where C puts them."""
import ctypes
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import clattn
from clattn import _lib

ROOT = Path(__file__).resolve().parents[2]


def c_layout(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.fail("no C compiler (cc) to check the structures against the headers; install gcc")
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <clattn.h>", "#include <clattn_advanced.h>",
             "int main(void) {"]
    for cname, struct in _lib.STRUCTS.items():
        lines.append(f'printf("{cname} . %zu\\n", sizeof({cname}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{cname} {field} %zu %zu\\n", offsetof({cname}, {field}), '
                         f"sizeof((({cname} *)0)->{field}));")
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", f"-I{ROOT / 'include'}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines()]


def test_struct_layout_matches_headers(tmp_path):
    for row in c_layout(tmp_path):
        struct = _lib.STRUCTS[row[0]]
        if row[1] == ".":
            assert ctypes.sizeof(struct) == int(row[2]), f"sizeof({row[0]})"
        else:
            field = getattr(struct, row[1])
            assert (field.offset, field.size) == (int(row[2]), int(row[3])), f"{row[0]}.{row[1]}"


def test_initialisers_round_trip():
    d = _lib.SdpaDesc()
    _lib.lib.clattn_sdpa_desc_init(ctypes.byref(d))
    assert math.isnan(d.scale) and d.window_left == -1 and d.window_right == -1 and d.impl == 0
    m = _lib.MhaDesc()
    _lib.lib.clattn_mha_desc_init(ctypes.byref(m))
    assert math.isnan(m.attention.scale) and m.attention.window_right == -1 and not m.cache
    o = _lib.ContextOptions()
    _lib.lib.clattn_context_options_init(ctypes.byref(o))
    assert not o.device and not o.devices and o.error_message_size == 0
    q = _lib.TuningQuery()
    _lib.lib.clattn_tuning_query_init(ctypes.byref(q))
    assert (q.head_dim, q.q_len, q.kv_len, q.batch, q.heads) == (64, 1024, 1024, 1, 8)


def test_version_matches_header():
    text = (ROOT / "include" / "clattn.h").read_text()
    assert f'#define CLATTN_VERSION_STRING "{clattn.__version__}"' in text
