#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""`clattn run additive` and `clattn run luong` against an independent NumPy computation of each score (additive,
dot, general, concat) with masks, key lengths, separate values and the weights output, plus bad inputs: each must
give exit status 2 and leave no output file.
Usage: cli_seq2seq_test.py PATH/TO/clattn"""
import numpy as np

from cli_harness import CliTest
from numpy_attention import masked_softmax

t = CliTest("clattn-cli-s2s-", 11)
rng, path, save, run, check = t.rng, t.path, t.save, t.run, t.check


def seq2seq(score, q, k, h, w, mask=None, key_lengths=None):
    """context and weights in float64: scores, masking, softmax over keys, weighted sum of h."""
    q, k, h = (x.astype(np.float64) for x in (q, k, h))
    if score == "additive":
        hidden = (q @ w["w_q"] + w.get("bias", 0.0))[:, :, None, :] + (k @ w["w_k"])[:, None, :, :]
        e = np.tanh(hidden) @ w["v"]
    elif score == "concat":
        dq = q.shape[-1]
        e = np.tanh((q @ w["w"][:dq])[:, :, None, :] + (k @ w["w"][dq:])[:, None, :, :]) @ w["v"]
    elif score == "general":
        e = np.einsum("bid,bjd->bij", q @ w["w"], k)
    else:
        e = np.einsum("bid,bjd->bij", q, k)
    keep = np.ones(e.shape, dtype=bool)
    if key_lengths is not None:
        keep &= np.arange(e.shape[2])[None, None, :] < key_lengths[:, None, None]
    if mask is not None:
        mask = mask.reshape((mask.shape[0],) + mask.shape[-2:]) if mask.ndim == 4 else mask
        if mask.dtype == bool:
            keep &= np.broadcast_to(mask, e.shape)
        else:
            e = e + np.broadcast_to(mask, e.shape)
    alpha, _, _ = masked_softmax(e, keep)
    return alpha @ h, alpha


def case(score, b, lq, lk, dq, dk, dv, a, dtype="f32", mask=None, key_lengths=None, q_scale=1.0):
    f = lambda *s: rng.uniform(-2, 2, s).astype(np.float32)
    q, k = (f(b, lq, dq) * q_scale).astype(np.float32), f(b, lk, dk)
    v = f(b, lk, dv) if dv else None
    w, args = {}, []
    if score == "additive":
        w = {"w_q": f(dq, a) / np.sqrt(dq), "w_k": f(dk, a) / np.sqrt(dk), "v": f(a) / np.sqrt(a), "bias": f(a) / 4}
        args = ["--w-q", save("wq.npy", w["w_q"]), "--w-k", save("wk.npy", w["w_k"]), "--v", save("v.npy", w["v"]),
                "--bias", save("b.npy", w["bias"])]
    elif score == "concat":
        w = {"w": f(dq + dk, a) / np.sqrt(dq), "v": f(a) / np.sqrt(a)}
        args = ["--w", save("w.npy", w["w"]), "--v", save("v.npy", w["v"])]
    elif score == "general":
        w = {"w": f(dq, dk) / np.sqrt(dq)}
        args = ["--w", save("w.npy", w["w"])]
    args += ["--query", save("q.npy", q), "--keys", save("k.npy", k)]
    if v is not None:
        args += ["--values", save("vals.npy", v)]
    if mask is not None:
        args += ["--mask", save("mask.npy", mask)]
    if key_lengths is not None:
        args += ["--key-lengths", save("kl.npy", key_lengths)]
    t.remove("o.npy", "w_out.npy")
    op = ["additive"] if score == "additive" else ["luong", "--score", score]
    r = run(*op, *args, "--dtype", dtype, "-o", path("o.npy"), "--weights-out", path("w_out.npy"), "--check")
    name = f"{score} B={b} Lq={lq} Lk={lk} Dq={dq} Dk={dk} Dv={dv} A={a} {dtype}"
    if r.returncode != 0:
        check(name, False, r.stderr + r.stdout)
        return
    if dtype == "f16":
        q, k = q.astype(np.float16), k.astype(np.float16)
        v = v.astype(np.float16) if v is not None else None
    want_o, want_w = seq2seq(score, q, k, v if v is not None else k, w, mask, key_lengths)
    got_o, got_w = np.load(path("o.npy")), np.load(path("w_out.npy"))
    tol = 1e-4 + (2e-3 if dtype == "f16" else 0.0)
    check(name + " context", got_o.shape == want_o.shape and np.allclose(got_o, want_o, rtol=tol, atol=tol),
          f"max difference {np.abs(got_o - want_o).max() if got_o.shape == want_o.shape else got_o.shape}")
    check(name + " weights", got_w.shape == want_w.shape and np.allclose(got_w, want_w, rtol=1e-4, atol=1e-5),
          f"max difference {np.abs(got_w - want_w).max() if got_w.shape == want_w.shape else got_w.shape}")


for score in ("additive", "dot", "general", "concat"):
    dk = 12 if score == "dot" else 10
    case(score, 2, 4, 19, 12, dk, 0, 16)
    case(score, 1, 1, 33, 12, dk, 7, 24, dtype="f16")
    mask = rng.uniform(-1, 1, (1, 1, 3, 9)).astype(np.float32)
    mask[0, 0, 1, :] = -np.inf  # a fully masked row gives zeros
    case(score, 2, 3, 9, 12, dk, 5, 8, mask=mask)
    case(score, 3, 2, 11, 12, dk, 0, 8, mask=rng.uniform(0, 1, (3, 2, 11)) > 0.3,
         key_lengths=np.array([11, 0, 4], dtype=np.int32))
    # Masks that broadcast to [B, Lq, Lk] under NumPy's rules: the padding mask [B, 1, 1, Lk] and [B, 1, Lk], [Lk],
    # and [Lq, 1] (whole rows kept or masked).
    pad = np.zeros((3, 1, 1, 11), np.float32)
    pad[1, ..., 6:] = -np.inf
    case(score, 3, 2, 11, 12, dk, 0, 8, mask=pad)
    case(score, 3, 2, 11, 12, dk, 5, 8, mask=np.isfinite(pad[:, 0]))
    case(score, 2, 4, 9, 12, dk, 0, 8, mask=rng.uniform(-1, 1, 9).astype(np.float32))
    case(score, 2, 4, 9, 12, dk, 0, 8, mask=(np.arange(4) != 1)[:, None])

# Encoder widths past the fused attention kernels' head dims: dot and general through attention's unfused path,
# additive and concat as column slices of the values (keys as values, Dv = Dk). Queries scaled by 1/sqrt(Dk) keep
# the logits near 1, so that the weights spread over the keys rather than pick one.
for dk in (512, 1024, 2048):
    kl = np.array([30, 0], dtype=np.int32) if dk == 1024 else None
    case("dot", 2, 3, 40, dk, dk, 0, 8, key_lengths=kl, q_scale=dk ** -0.5)
    case("general", 2, 3, 40, 300, dk, 64 if dk == 1024 else 0, 8, mask=rng.uniform(0, 1, (2, 3, 40)) > 0.3,
         q_scale=dk ** -0.5)
case("additive", 2, 3, 25, 64, 2048, 0, 32)
case("concat", 1, 2, 25, 64, 2048, 0, 32, key_lengths=np.array([17], dtype=np.int32))

# Bad inputs: exit status 2 and no output file.
q = rng.uniform(-1, 1, (2, 3, 4)).astype(np.float32)
k = rng.uniform(-1, 1, (2, 5, 6)).astype(np.float32)
good = ["--query", save("q.npy", q), "--keys", save("k.npy", k), "--w-q", save("wq.npy", np.ones((4, 8), np.float32)),
        "--w-k", save("wk.npy", np.ones((6, 8), np.float32)), "--v", save("v.npy", np.ones(8, np.float32))]
bad = {
    "w_q of the wrong height": ["--w-q", save("bad_wq.npy", np.ones((5, 8), np.float32))],
    "keys of another batch": ["--keys", save("bad_k.npy", k[:1])],
    "a bias of the wrong width": ["--bias", save("bad_b.npy", np.ones(7, np.float32))],
    "int32 queries": ["--query", save("bad_q.npy", q.astype(np.int32))],
    "a mask of the wrong shape": ["--mask", save("bad_m.npy", np.zeros((3, 4), np.float32))],
    "a mask of another key length": ["--mask", save("bad_m1.npy", np.zeros(4, np.float32))],
    "a padding mask of another batch": ["--mask", save("bad_m4.npy", np.zeros((3, 1, 1, 5), bool))],
    "a key length past Lk": ["--key-lengths", save("bad_kl.npy", np.array([5, 6], np.int32))],
    "a weight the score does not use": ["--w", save("bad_w.npy", np.ones((10, 8), np.float32))],
    "a truncated file": ["--keys", path("trunc.npy")],
}
with open(path("k.npy"), "rb") as src, open(path("trunc.npy"), "wb") as dst:
    dst.write(src.read()[:100])
for what, extra in bad.items():
    args = list(good)
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    r = t.run_to("additive", *args)
    check(what, r.returncode == 2 and not t.wrote(), f"exit {r.returncode}: {r.stderr}")
r = run("luong", "--score", "nope", "--random", "1,1,2,4,4,4")
check("unknown score", r.returncode == 2, f"exit {r.returncode}")
r = run("luong", "--random", "1,1,2,4,4,4")
check("missing --score", r.returncode == 2, f"exit {r.returncode}")

t.finish()
