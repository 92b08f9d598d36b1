#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Puts clattn's attention next to its CPU peers on the same shapes, and next to the machine's practical ceiling.

For each sequence length it times:
  - clattn, fused and unfused, through `clattn bench sdpa --json` (OpenCL profiling events);
  - PyTorch's torch.nn.functional.scaled_dot_product_attention on the CPU;
  - ONNX Runtime on the CPU: the standard ONNX Attention operator (opset 23) where this ONNX Runtime runs it,
    else the com.microsoft MultiHeadAttention contrib operator, else a MatMul/Softmax/MatMul graph (the output
    says which);
  - OpenBLAS SGEMM through numpy (its wheel bundles OpenBLAS), square and of about the same FLOP count: the rate a
    well-tuned kernel reaches on this machine, against which every attention rate is given as a ratio.
Every peer's output is compared with clattn's own (`clattn run sdpa` on .npy files of the same inputs), so that a
fast peer computing something else would show. Results: one markdown table on stdout and in --out-dir, a JSON file
with the raw numbers, and a PNG plot of GFLOP/s against sequence length.

The script needs only the standard library to start: it creates a virtual environment under the user's cache
directory (CLATTN_PEERS_VENV, default $XDG_CACHE_HOME/clattn-peers/venv), installs numpy, matplotlib, onnx,
onnxruntime and torch from PyPI into it, and runs itself again there. A peer whose package cannot be installed or
run is marked unavailable in the table; it never ends the run. Note that PyPI's Linux torch wheel brings CUDA
libraries (a few GB) even though only the CPU is used here; --no-torch skips it.

FLOPs are counted as clattn counts them: 4*B*H*D per (query, key) pair that takes part (all Lq*Lk pairs, or the
causal triangle). Times of the CPU peers are host wall-clock medians; clattn's come from device events.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

PACKAGES = ["numpy", "matplotlib", "onnx", "onnxruntime"]
IN_VENV_FLAG = "CLATTN_PEERS_IN_VENV"
# Bump when PACKAGES change, so that an existing environment is completed rather than trusted.
STAMP_VERSION = "1"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Environment: a private venv with the peers installed, then a re-run inside it.


def venv_dir():
    if os.environ.get("CLATTN_PEERS_VENV"):
        return os.environ["CLATTN_PEERS_VENV"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "clattn-peers", "venv")


def pip_install(python, packages):
    """Installs packages one call each, so that one that fails (no wheel for this Python) spares the others."""
    failed = []
    for pkg in packages:
        log(f"bench_peers: installing {pkg} (pip, PyPI) ...")
        r = subprocess.run([python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", pkg])
        if r.returncode != 0:
            log(f"bench_peers: installing {pkg} failed; that peer will be marked unavailable")
            failed.append(pkg)
    return failed


def ensure_venv(args):
    """Returns the venv's python, creating and filling the environment on first use."""
    root = venv_dir()
    python = os.path.join(root, "bin", "python")
    wanted = PACKAGES + ([] if args.no_torch else ["torch"])
    stamp = os.path.join(root, "clattn-peers.stamp")
    want_stamp = STAMP_VERSION + " " + " ".join(wanted)
    if os.path.exists(stamp) and os.path.exists(python):
        with open(stamp) as f:
            if f.read().strip() == want_stamp:
                return python
    if not os.path.exists(python):
        log(f"bench_peers: creating a virtual environment in {root}")
        r = subprocess.run([sys.executable, "-m", "venv", root])
        if r.returncode != 0:
            return None
    missing = pip_install(python, wanted)
    # Failures are not stamped: the next run tries those packages again.
    if not missing:
        with open(stamp, "w") as f:
            f.write(want_stamp + "\n")
    return python


def reexec_in_venv(args):
    if os.environ.get(IN_VENV_FLAG) or args.no_venv:
        return
    python = ensure_venv(args)
    if python is None:
        log("bench_peers: could not create the virtual environment; going on with this Python's packages")
        return
    env = dict(os.environ)
    env[IN_VENV_FLAG] = "1"
    os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:], env)


# ---------------------------------------------------------------------------------------------------------------
# Work counts and timing


def attention_flops(b, h, lq, lk, d, causal):
    """4*B*H*D per (query, key) pair that takes part; top-left causal keeps keys j <= i."""
    if causal:
        pairs = sum(min(i + 1, lk) for i in range(lq))
    else:
        pairs = lq * lk
    return 4.0 * b * h * pairs * d


def median_time(fn, warmup, repeat, min_sample=0.01, min_warmup=0.25):
    """Median, min and max seconds per fn() call after warm-up calls. Warm-up lasts at least min_warmup seconds:
    a thread pool's first calls can be many times slower than its later ones. A call shorter than min_sample is
    repeated within each sample until the sample lasts that long, so that the clock's resolution and the wake-up
    of a thread pool do not dominate tiny shapes."""
    t0 = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - t0 < min_warmup:
        fn()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    inner = max(1, int(math.ceil(min_sample / per_call))) if per_call > 0 else 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return med, times[0], times[-1]


class Peer:
    """One implementation's results: GFLOP/s per sequence length, the largest difference from clattn's output,
    or why it could not run."""

    def __init__(self, key, label):
        self.key = key
        self.label = label
        self.gflops = {}
        self.ms = {}
        self.max_diff = None
        self.unavailable = None
        self.notes = []

    def record_diff(self, diff):
        self.max_diff = diff if self.max_diff is None else max(self.max_diff, diff)


# ---------------------------------------------------------------------------------------------------------------
# clattn


def find_clattn(given):
    if given:
        return given
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(os.path.dirname(os.path.dirname(here)), "build", "clattn")
    if os.path.exists(built):
        return built
    return shutil.which("clattn") or built


def clattn_bench(args, peers):
    cmd = [args.clattn, "bench", "sdpa", "--json", "--sweep", "seq=" + ",".join(str(s) for s in args.seq),
           "--batch", str(args.batch), "--heads", str(args.heads), "--head-dim", str(args.head_dim),
           "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    if args.causal:
        cmd += ["--causal", "top-left"]
    if args.device:
        cmd += ["--device", args.device]
    log("bench_peers: " + " ".join(cmd))
    # stderr goes straight through: clattn's progress line and any error message belong to the user.
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    except OSError as e:
        for p in peers:
            p.unavailable = f"cannot run {args.clattn}: {e}"
        return None
    if r.returncode != 0:
        for p in peers:
            p.unavailable = f"clattn bench exited with status {r.returncode}"
        return None
    try:
        rows = json.loads(r.stdout)
    except ValueError as e:
        for p in peers:
            p.unavailable = f"clattn bench printed no JSON array: {e}"
        return None
    device = rows[0]["device"] if rows else "?"
    by_impl = {p.key.split("-", 1)[1]: p for p in peers}
    for row in rows:
        p = by_impl.get(row["impl"])
        if p is not None:
            p.gflops[row["seq"]] = row["gflops"]
            p.ms[row["seq"]] = row["median_ms"]
    return device


def input_paths(work, l):
    return {name: os.path.join(work, f"{name}-{l}.npy") for name in ("q", "k", "v")}


def clattn_run(args, work, l, impl):
    """Writes clattn's output on the script's own inputs of length l, through `clattn run sdpa` on .npy files."""
    paths = input_paths(work, l)
    out = os.path.join(work, f"out-clattn-{impl}-{l}.npy")
    cmd = [args.clattn, "run", "sdpa", "--q", paths["q"], "--k", paths["k"], "--v", paths["v"], "--impl", impl,
           "-o", out]
    if args.causal:
        cmd += ["--causal", "top-left"]
    if args.device:
        cmd += ["--device", args.device]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"clattn run sdpa --impl {impl} failed ({r.returncode}): {r.stderr.strip()}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime: three ways of expressing attention, tried from the most specialised down


def ort_variants(np, onnx, ort, b, h, l, d, causal, threads):
    """Yields (name, make) where make() returns run(q, k, v) -> out for [B, H, L, D] float32 arrays."""
    import onnx.numpy_helper
    from onnx import TensorProto, helper

    scale = 1.0 / math.sqrt(d)

    def session(graph, opsets):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(dom, ver) for dom, ver in opsets])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            # An onnx package newer than the runtime stamps an IR version the runtime refuses; the graphs here use
            # nothing of the newer IR, so the oldest version that carries the opsets is just as good.
            if "IR version" not in str(e):
                raise
            model.ir_version = 10 if max(ver for dom, ver in opsets if dom == "") <= 21 else 11
            return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def io4(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [b, h, l, d])

    def attention23():
        node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], is_causal=int(causal), scale=scale)
        g = helper.make_graph([node], "sdpa", [io4("Q"), io4("K"), io4("V")], [io4("Y")])
        s = session(g, [("", 23)])
        return lambda q, k, v: s.run(None, {"Q": q, "K": k, "V": v})[0]

    def contrib_mha():
        # [B, L, H*D] in and out: the layout change is done outside the timed call, as a model would hold it.
        io3 = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [b, l, h * d]) for n in ("Q", "K", "V", "Y")]
        node = helper.make_node("MultiHeadAttention", ["Q", "K", "V"], ["Y"], domain="com.microsoft", num_heads=h,
                                scale=scale, unidirectional=int(causal))
        g = helper.make_graph([node], "sdpa", io3[:3], io3[3:])
        s = session(g, [("", 17), ("com.microsoft", 1)])

        def run(q, k, v):
            flat = [np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(b, l, h * d)) for x in (q, k, v)]
            return run.inner(*flat).reshape(b, l, h, d).transpose(0, 2, 1, 3)

        run.inner = lambda q, k, v: s.run(None, {"Q": q, "K": k, "V": v})[0]
        run.layout = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(b, l, h * d))
        return run

    def matmul_softmax():
        nodes = [helper.make_node("Transpose", ["K"], ["Kt"], perm=[0, 1, 3, 2]),
                 helper.make_node("MatMul", ["Q", "Kt"], ["S"]),
                 helper.make_node("Mul", ["S", "scale"], ["Ss"])]
        inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])]
        logits = "Ss"
        if causal:
            mask = np.triu(np.full((l, l), -np.inf, dtype=np.float32), k=1)
            inits.append(onnx.numpy_helper.from_array(mask, "mask"))
            nodes.append(helper.make_node("Add", ["Ss", "mask"], ["Sm"]))
            logits = "Sm"
        nodes += [helper.make_node("Softmax", [logits], ["P"], axis=-1),
                  helper.make_node("MatMul", ["P", "V"], ["Y"])]
        g = helper.make_graph(nodes, "sdpa", [io4("Q"), io4("K"), io4("V")], [io4("Y")], initializer=inits)
        s = session(g, [("", 17)])
        return lambda q, k, v: s.run(None, {"Q": q, "K": k, "V": v})[0]

    yield "ONNX Attention op (opset 23)", attention23
    yield "com.microsoft MultiHeadAttention", contrib_mha
    yield "MatMul/Softmax/MatMul graph", matmul_softmax


def numpy_sdpa(np, q, k, v, causal):
    """Float64 attention on small inputs, to vet an ONNX formulation before it is trusted."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -np.inf), k=1)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return (s / s.sum(axis=-1, keepdims=True)) @ v


def pick_ort_variant(np, onnx, ort, args, threads):
    """The first formulation that this ONNX Runtime runs and that agrees with numpy on a small input."""
    rng = np.random.default_rng(7)
    b, h, l, d = 1, 2, 9, args.head_dim
    q, k, v = (rng.uniform(-2, 2, (b, h, l, d)).astype(np.float32) for _ in range(3))
    want = numpy_sdpa(np, q, k, v, args.causal)
    reasons = []
    for name, make in ort_variants(np, onnx, ort, b, h, l, d, args.causal, threads):
        try:
            got = make()(q, k, v)
            err = float(np.max(np.abs(got - want)))
            if err <= 1e-4:
                return name, reasons
            reasons.append(f"{name}: differs from numpy by {err:.3g}")
        except Exception as e:  # an operator this build lacks raises from session creation or run
            reasons.append(f"{name}: {str(e).splitlines()[0][:120]}")
    return None, reasons


# ---------------------------------------------------------------------------------------------------------------
# Workers: each CPU peer runs in a process of its own. PyTorch's OpenMP threads, ONNX Runtime's pool and OpenBLAS's
# threads all spin for a while after their work; sharing one process (and so two cores) they would slow each other
# and the numbers would say more about the order of the runs than about the peers.


def worker_torch(args, np, work):
    import torch

    torch.set_num_threads(args.threads)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    result = {"label": f"PyTorch {torch.__version__.split('+')[0]} SDPA (CPU, {args.threads} threads)", "ms": {}}
    with torch.inference_mode():
        for l in args.seq:
            q, k, v = (torch.from_numpy(np.load(p)) for p in input_paths(work, l).values())
            sec, _, _ = median_time(lambda: sdpa(q, k, v, is_causal=args.causal), args.warmup, args.repeat)
            np.save(os.path.join(work, f"out-torch-{l}.npy"), sdpa(q, k, v, is_causal=args.causal).numpy())
            result["ms"][l] = sec * 1e3
    return result


def worker_ort(args, np, work):
    import onnx
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    variant, reasons = pick_ort_variant(np, onnx, ort, args, args.threads)
    if variant is None:
        raise RuntimeError("no formulation ran correctly: " + "; ".join(reasons))
    result = {"label": f"ONNX Runtime {ort.__version__}, {variant} (CPU, {args.threads} threads)", "ms": {},
              "notes": reasons}
    b, h, d = args.batch, args.heads, args.head_dim
    for l in args.seq:
        q, k, v = (np.load(p) for p in input_paths(work, l).values())
        run = dict(ort_variants(np, onnx, ort, b, h, l, d, args.causal, args.threads))[variant]()
        if hasattr(run, "inner"):
            # The contrib operator takes [B, L, H*D]; the layout is converted once, outside the timed calls.
            fq, fk, fv = (run.layout(x) for x in (q, k, v))
            sec, _, _ = median_time(lambda: run.inner(fq, fk, fv), args.warmup, args.repeat)
        else:
            sec, _, _ = median_time(lambda: run(q, k, v), args.warmup, args.repeat)
        np.save(os.path.join(work, f"out-ort-{l}.npy"), run(q, k, v))
        result["ms"][l] = sec * 1e3
    return result


def blas_name(np):
    """The BLAS that numpy was built with: OpenBLAS for PyPI's wheels, whatever the system provides otherwise."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = {"scipy-openblas": "OpenBLAS", "openblas": "OpenBLAS"}.get(blas["name"], blas["name"])
        return f"{name} {'.'.join(str(blas.get('version', '')).split('.')[:3])}".strip()
    except Exception:  # numpy before 1.25 cannot say
        return "BLAS"


def worker_sgemm(args, np, work):
    """The ceiling: a square SGEMM of about each attention's FLOP count, n rounded to a multiple of 16 so that an
    awkward size does not make OpenBLAS look worse than it is."""
    result = {"label": f"{blas_name(np)} SGEMM (numpy {np.__version__})", "ms": {}, "n": {}}
    rng = np.random.default_rng(5)
    for l in args.seq:
        flops = attention_flops(args.batch, args.heads, l, l, args.head_dim, args.causal)
        n = max(64, int(round((flops / 2.0) ** (1.0 / 3.0) / 16.0)) * 16)
        a = rng.standard_normal((n, n), dtype=np.float32)
        c = rng.standard_normal((n, n), dtype=np.float32)
        o = np.empty((n, n), dtype=np.float32)
        sec, _, _ = median_time(lambda: np.matmul(a, c, out=o), args.warmup, args.repeat)
        result["ms"][l] = sec * 1e3
        result["n"][l] = n
    return result


WORKERS = {"torch": worker_torch, "ort": worker_ort, "sgemm": worker_sgemm}


def run_worker(args):
    """The child side: runs one peer and prints its result (or the reason it failed) as one JSON line."""
    import numpy as np

    try:
        result = WORKERS[args.worker](args, np, args.work_dir)
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    print(json.dumps(result))


def spawn_worker(name, args, work):
    """The parent side: the peer's result dict, or {"error": ...}; a crash of the child is an error, not ours."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--work-dir", work,
           "--seq", ",".join(str(l) for l in args.seq), "--batch", str(args.batch), "--heads", str(args.heads),
           "--head-dim", str(args.head_dim), "--repeat", str(args.repeat), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--no-venv"] + (["--causal"] if args.causal else [])
    log(f"bench_peers: timing {name} ...")
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": f"the {name} worker exited with status {r.returncode}"}
    result = json.loads(lines[-1])
    if "ms" in result:
        result["ms"] = {int(k): v for k, v in result["ms"].items()}
    if "n" in result:
        result["n"] = {int(k): v for k, v in result["n"].items()}
    return result


# ---------------------------------------------------------------------------------------------------------------
# The run


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", default="256,512,1024,2048", help="sequence lengths (default %(default)s)")
    ap.add_argument("--batch", type=int, default=1, help="batch size (default %(default)s)")
    ap.add_argument("--heads", type=int, default=8, help="heads (default %(default)s)")
    ap.add_argument("--head-dim", type=int, default=64, help="head dimension (default %(default)s)")
    ap.add_argument("--causal", action="store_true", help="top-left causal masking (PyTorch is_causal)")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls first (default %(default)s)")
    ap.add_argument("--out-dir", default="bench-peers", help="where peers.md/.json/.png go (default %(default)s)")
    ap.add_argument("--clattn", help="the clattn program (default: build/clattn of this tree, else PATH)")
    ap.add_argument("--device", help="clattn's device (default: CLATTN_DEVICE, else clattn's default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="CPU threads of PyTorch and ORT (default: all, %(default)s)")
    ap.add_argument("--no-torch", action="store_true", help="do not install or run PyTorch")
    ap.add_argument("--no-venv", action="store_true", help="use this Python's packages, install nothing")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        seq = [int(s) for s in args.seq.split(",")]
        if min(seq) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--seq {args.seq}: expected positive whole numbers separated by commas")
    args.seq = seq
    if min(args.batch, args.heads, args.head_dim, args.repeat, args.warmup, args.threads) < 1:
        ap.error("--batch, --heads, --head-dim, --repeat, --warmup and --threads must be at least 1")
    return args


def main():
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    reexec_in_venv(args)
    try:
        import numpy as np
    except ImportError:
        sys.exit("bench_peers: numpy is needed and could not be imported (see the pip messages above)")
    args.clattn = find_clattn(args.clattn)
    os.makedirs(args.out_dir, exist_ok=True)
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"bench_peers: warning: the machine is busy (load average {load:.2f}); every number below is slowed "
            "by whatever else is running")
    b, h, d = args.batch, args.heads, args.head_dim

    fused = Peer("clattn-fused", "clattn fused")
    unfused = Peer("clattn-unfused", "clattn unfused")
    torch_peer = Peer("torch", "PyTorch SDPA (CPU)")
    ort_peer = Peer("ort", "ONNX Runtime (CPU)")
    gemm = Peer("sgemm", "SGEMM (numpy)")
    peers = [fused, unfused, torch_peer, ort_peer, gemm]
    flops = {l: attention_flops(b, h, l, l, d, args.causal) for l in args.seq}

    with tempfile.TemporaryDirectory(prefix="clattn-peers-") as work:
        for l in args.seq:
            rng = np.random.default_rng(1000 + l)
            for name, path in input_paths(work, l).items():
                np.save(path, rng.uniform(-2, 2, (b, h, l, d)).astype(np.float32))

        device = clattn_bench(args, [fused, unfused])
        # clattn's output on the same inputs is what every peer is compared with.
        ref_paths = {}
        if fused.unavailable is None:
            for l in args.seq:
                try:
                    ref_paths[l] = clattn_run(args, work, l, "fused")
                    fused.record_diff(0.0)
                    out_u = np.load(clattn_run(args, work, l, "unfused"))
                    unfused.record_diff(float(np.max(np.abs(out_u - np.load(ref_paths[l])))))
                except Exception as e:
                    fused.notes.append(f"L={l}: {e}")

        gemm_sizes = {}
        for peer, name, skip in ((torch_peer, "torch", args.no_torch), (ort_peer, "ort", False),
                                 (gemm, "sgemm", False)):
            if skip:
                peer.unavailable = "skipped (--no-torch)"
                continue
            result = spawn_worker(name, args, work)
            if "error" in result:
                peer.unavailable = result["error"]
                continue
            peer.label = result["label"]
            peer.notes += result.get("notes", [])
            gemm_sizes.update(result.get("n", {}))
            for l, ms in result["ms"].items():
                peer.ms[l] = ms
                peer.gflops[l] = (2.0 * gemm_sizes[l] ** 3 if peer is gemm else flops[l]) / (ms * 1e6)
                out_path = os.path.join(work, f"out-{name}-{l}.npy")
                if l in ref_paths and os.path.exists(out_path):
                    peer.record_diff(float(np.max(np.abs(np.load(out_path) - np.load(ref_paths[l])))))

    write_report(args, peers, gemm, gemm_sizes, device)
    wrong = [p.label for p in peers if disagrees(p)]
    if wrong:
        sys.exit(f"bench_peers: {', '.join(wrong)} disagree with clattn fused by more than {AGREE_TOL:g} "
                 "(the 'max diff' column): at least one of them computes something else")


# fp32 attention on inputs in [-2, 2): implementations that agree differ by about 1e-6, so anything past this is a
# wrong result, not rounding.
AGREE_TOL = 1e-4


def disagrees(peer):
    return peer.max_diff is not None and not peer.max_diff <= AGREE_TOL


def fmt_rate(peer, gemm, l):
    if l not in peer.gflops:
        return "-"
    g = peer.gflops[l]
    if peer is gemm or l not in gemm.gflops:
        return f"{g:.1f}"
    return f"{g:.1f} ({g / gemm.gflops[l]:.2f}x)"


def write_report(args, peers, gemm, gemm_sizes, device):
    masking = "causal (top-left)" if args.causal else "non-causal"
    shape = f"B={args.batch} H={args.heads} D={args.head_dim} fp32, {masking}, Lq = Lk = L"
    lines = ["# clattn and its CPU peers", "",
             f"Attention {shape}; clattn on {device or 'its default device'}; {os.cpu_count()} CPU cores; "
             f"median of {args.repeat} calls after {args.warmup} warm-up.", "",
             "GFLOP/s (and the ratio to a square SGEMM of about the same FLOP count); 'max diff' is the largest "
             "absolute difference from clattn fused's output on the same inputs (WRONG past "
             f"{AGREE_TOL:g}, and the script exits with status 1).", ""]
    head = "| implementation | " + " | ".join(f"L={l}" for l in args.seq) + " | max diff |"
    lines += [head, "|" + "---|" * (len(args.seq) + 2)]
    for p in peers:
        if p.unavailable:
            cells = ["unavailable"] * len(args.seq)
            diff = p.unavailable
        else:
            cells = [fmt_rate(p, gemm, l) for l in args.seq]
            diff = "n/a" if p is gemm else "reference" if p.key == "clattn-fused" and p.max_diff == 0.0 else (
                f"{p.max_diff:.3g}" if p.max_diff is not None else "not checked")
            if disagrees(p):
                diff += " WRONG"
        lines.append(f"| {p.label} | " + " | ".join(cells) + f" | {diff} |")
    sizes = ", ".join(f"L={l}: {gemm_sizes[l]}" for l in args.seq if l in gemm_sizes)
    lines += ["", f"SGEMM sizes (n x n x n): {sizes}"]
    for p in peers:
        for note in p.notes:
            lines.append(f"- note ({p.label}): {note}")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(args.out_dir, "peers.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out_dir, "peers.json"), "w") as f:
        json.dump({"shape": {"batch": args.batch, "heads": args.heads, "head_dim": args.head_dim,
                             "causal": args.causal, "seq": args.seq},
                   "device": device, "cpu_count": os.cpu_count(), "repeat": args.repeat, "warmup": args.warmup,
                   "peers": [{"key": p.key, "label": p.label, "unavailable": p.unavailable,
                              "gflops": {str(k): v for k, v in p.gflops.items()},
                              "median_ms": {str(k): v for k, v in p.ms.items()}, "max_diff": p.max_diff,
                              "notes": p.notes} for p in peers],
                   "sgemm_n": {str(k): v for k, v in gemm_sizes.items()}}, f, indent=1)
    plot(args, peers, gemm)


def plot(args, peers, gemm):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        log(f"bench_peers: no plot: matplotlib not available ({e})")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for p in peers:
        xs = [l for l in args.seq if l in p.gflops]
        if not xs or p.unavailable:
            continue
        style = dict(linestyle="--", color="gray") if p is gemm else {}
        ax.plot(xs, [p.gflops[l] for l in xs], marker="o", label=p.label, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.seq)
    ax.set_xticklabels([str(l) for l in args.seq])
    ax.set_xlabel("sequence length L (Lq = Lk)")
    ax.set_ylabel("GFLOP/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Attention B={args.batch} H={args.heads} D={args.head_dim} fp32"
                 f"{', causal' if args.causal else ''}: clattn and CPU peers")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.out_dir, "peers.png")
    fig.savefig(path, dpi=120)
    log(f"bench_peers: wrote {os.path.join(args.out_dir, 'peers.md')}, peers.json and {path}")


if __name__ == "__main__":
    main()
