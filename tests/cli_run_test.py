#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""`clattn run sdpa` against an independent NumPy implementation of attention, plus its handling of bad input files:
each malformed, truncated or mismatched input must give exit status 2 and leave no output file.
Usage: cli_run_test.py PATH/TO/clattn"""
import numpy as np

from cli_harness import CliTest
from numpy_attention import attention

t = CliTest("clattn-cli-run-", 7, op="sdpa")
rng, path, run, check = t.rng, t.path, t.run, t.check


def agree(what, args, expect, tol, extra_outputs=()):
    t.remove(*extra_outputs)
    r = t.run_to(*args)
    if r.returncode != 0:
        check(what, False, r.stderr)
        return
    out = np.load(path("o.npy"))
    err = np.nanmax(np.abs(out - expect[0])) if out.size else 0.0
    ok = out.shape == expect[0].shape and err <= tol
    for name, want in zip(extra_outputs, expect[1:]):
        got = np.load(path(name))
        both_inf = np.isinf(want) & (got == want)
        with np.errstate(invalid="ignore"):  # inf - inf where both are -inf, replaced by 0
            e = np.abs(np.where(both_inf, 0.0, got - want))
        ok = ok and got.shape == want.shape and (e.size == 0 or np.nanmax(e) <= tol)
    check(what, ok, f"max error {err}")


q = rng.uniform(-2, 2, (2, 4, 13, 24)).astype(np.float32)
k = rng.uniform(-2, 2, (2, 2, 21, 24)).astype(np.float32)
v = rng.uniform(-2, 2, (2, 2, 21, 16)).astype(np.float32)
np.save(path("q.npy"), q)
np.save(path("k.npy"), k)
np.save(path("v.npy"), v)
np.save(path("q16.npy"), q.astype(np.float16))
files = ["--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy")]

o, w, lse = attention(q, k, v)
agree("plain, GQA, Dv != D", files, (o,), 1e-5)
agree("plain with --lse", files + ["--lse", path("lse.npy")], (o, lse), 1e-5, ("lse.npy",))
for causal in ("top-left", "bottom-right"):
    o, w, lse = attention(q, k, v, causal=causal)
    agree(f"causal {causal}, Lq != Lk", files + ["--causal", causal], (o,), 1e-5)
o, w, lse = attention(q, k, v, causal="bottom-right", window=(5, 1))
agree("window 5,1 bottom-right", files + ["--causal", "bottom-right", "--window", "5,1"], (o,), 1e-5)
# The window's own alignment: bottom-right without causal masking (FlashAttention's), top-left under bottom-right.
o, w, lse = attention(q, k, v, window=(5, 1), window_align="bottom-right")
agree("window 5,1 aligned bottom-right, not causal", files + ["--window", "5,1", "--window-align", "bottom-right"],
      (o,), 1e-5)
o, w, lse = attention(q, k, v, causal="bottom-right", window=(3, -1), window_align="top-left")
agree("window 3,-1 aligned top-left, causal bottom-right",
      files + ["--causal", "bottom-right", "--window", "3,-1", "--window-align", "top-left"], (o,), 1e-5)
kl = np.array([21, 4], dtype=np.int32)
np.save(path("kl.npy"), kl)
o, w, lse = attention(q, k, v, key_lengths=kl)
agree("key lengths", files + ["--key-lengths", path("kl.npy")], (o,), 1e-5)
bmask = rng.uniform(size=(1, 4, 13, 21)) > 0.3
np.save(path("bmask.npy"), bmask)
o, w, lse = attention(q, k, v, mask=bmask)
agree("bool mask broadcast over batch, weights", files + ["--mask", path("bmask.npy"), "--weights", path("w.npy")],
      (o, w), 1e-5, ("w.npy",))
amask = rng.uniform(-3, 3, (13, 21)).astype(np.float32)
np.save(path("amask.npy"), amask)
o, w, lse = attention(q, k, v, mask=amask, scale=0.3)
agree("2-D additive mask, scale", files + ["--mask", path("amask.npy"), "--scale", "0.3"], (o,), 1e-5)

# Masks of rank 1 to 4 that broadcast to [B, Hq, Lq, Lk] = [2, 4, 13, 21] under NumPy's rules, additive (float32 and
# float16 files, about a fifth of the entries -inf, so that [13, 1] and [2, 4, 1, 1] mask whole rows) and boolean, on
# both implementations, with the lse.
def random_mask(shape, kind):
    if kind == "bool":
        return rng.uniform(size=shape) > 0.25
    m = np.where(rng.uniform(size=shape) < 0.2, -np.inf, rng.uniform(-2, 2, shape))
    return m.astype(np.float16 if kind == "f16" else np.float32)


for shape, kind in (((21,), "f32"), ((21,), "bool"), ((13, 1), "bool"), ((13, 1), "f32"), ((1, 21), "f16"),
                    ((2, 1, 1, 21), "bool"), ((2, 1, 1, 21), "f16"), ((4, 13, 1), "f32"), ((4, 1, 21), "bool"),
                    ((2, 4, 1, 1), "f32"), ((2, 1, 13, 1), "bool"), ((1, 1, 1, 1), "f32")):
    m = random_mask(shape, kind)
    np.save(path("bcast.npy"), m)
    o, w, lse = attention(q, k, v, mask=m)
    for impl in ("fused", "unfused"):
        agree(f"mask {list(shape)} {kind}, {impl}", files + ["--mask", path("bcast.npy"), "--impl", impl, "--lse",
                                                             path("lse.npy")], (o, lse), 1e-5, ("lse.npy",))
# The padding mask with causal masking, key lengths and the attention weights, checked inside the program as well.
m = random_mask((2, 1, 1, 21), "f32")
np.save(path("bcast.npy"), m)
o, w, lse = attention(q, k, v, mask=m, causal="bottom-right", key_lengths=kl)
agree("mask [2, 1, 1, 21], causal, key lengths, weights",
      files + ["--mask", path("bcast.npy"), "--causal", "bottom-right", "--key-lengths", path("kl.npy"), "--weights",
               path("w.npy"), "--check"], (o, w), 1e-5, ("w.npy",))

# Shapes that do not broadcast: exit 2, no output, and a message naming the file's shape and the shape wanted.
for shape in ((20,), (13, 2), (3, 1, 1, 21), (2, 2, 13, 21), (13, 21, 1), (1, 2, 4, 13, 21), ()):
    np.save(path("bcast_bad.npy"), np.zeros(shape, dtype=np.float32))
    r = t.run_to(*files, "--mask", path("bcast_bad.npy"))
    found = "[" + ", ".join(str(n) for n in shape) + "]"
    check(f"mask {found}: exit 2, no output, both shapes named",
          r.returncode == 2 and not t.wrote() and found in r.stderr and "[2, 4, 13, 21]" in r.stderr,
          f"exit {r.returncode}: {r.stderr}")

for impl in ("fused", "unfused"):
    o, w, lse = attention(q, k, v, causal="top-left")
    agree(f"--impl {impl}", files + ["--impl", impl, "--causal", "top-left"], (o,), 1e-5)
o, w, lse = attention(q.astype(np.float16).astype(np.float32), k, v)
agree("float16 input file, f16 storage", ["--q", path("q16.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                                          "--dtype", "f16"], (o,), 2e-2)

# The score modifiers, alone and together, in both implementations; a fully masked row keeps zeros with sinks.
sinks = rng.uniform(-2, 2, 4).astype(np.float32)
slopes = (0.5 / np.arange(1, 5)).astype(np.float32)
np.save(path("sinks.npy"), sinks)
np.save(path("slopes.npy"), slopes)
mods = {"softcap": (["--softcap", "1.5"], dict(softcap=1.5)),
        "sinks": (["--sinks", path("sinks.npy")], dict(sinks=sinks)),
        "alibi": (["--alibi-slopes", path("slopes.npy")], dict(alibi=slopes))}
for name, (args, kw) in mods.items():
    o, w, lse = attention(q, k, v, causal="bottom-right", **kw)
    agree(f"--{name}, bottom-right, lse", files + args + ["--causal", "bottom-right", "--lse", path("lse.npy")],
          (o, lse), 1e-5, ("lse.npy",))
all_args = sum((a for a, _ in mods.values()), [])
all_kw = {key: val for _, kw in mods.values() for key, val in kw.items()}
for impl in ("fused", "unfused"):
    o, w, lse = attention(q, k, v, mask=bmask, key_lengths=kl, **all_kw)
    agree(f"all three modifiers, bool mask, key lengths, --impl {impl}",
          files + all_args + ["--mask", path("bmask.npy"), "--key-lengths", path("kl.npy"), "--impl", impl,
                              "--lse", path("lse.npy")], (o, lse), 1e-5, ("lse.npy",))
np.save(path("sinks_bad.npy"), sinks[:3])
np.save(path("sinks_f64.npy"), sinks.astype(np.float64))
for name, args in {"--softcap 0": ["--softcap", "0"], "--softcap -2": ["--softcap", "-2"],
                   "--softcap nan": ["--softcap", "nan"], "--sinks of 3 values for 4 heads": ["--sinks",
                                                                                             path("sinks_bad.npy")],
                   "--alibi-slopes float64": ["--alibi-slopes", path("sinks_f64.npy")]}.items():
    r = t.run_to(*files, *args)
    check(f"{name}: exit 2, no output", r.returncode == 2 and name.split()[0] in r.stderr and not t.wrote(),
          f"exit {r.returncode}: {r.stderr}")

# DeepSeek MLA's 576/512 heads: fused (the widest the fused kernels take) and with weights (unfused). Heads wider
# than 576: the default runs them unfused, --impl fused refuses them (exit 2, no output) and names the
# implementations that take them.
qw = rng.uniform(-2, 2, (1, 2, 5, 576)).astype(np.float32)
kw = rng.uniform(-2, 2, (1, 1, 17, 576)).astype(np.float32)
vw = rng.uniform(-2, 2, (1, 1, 17, 512)).astype(np.float32)
for name, a in (("qw.npy", qw), ("kw.npy", kw), ("vw.npy", vw), ("klw.npy", np.array([11], dtype=np.int32))):
    np.save(path(name), a)
wide = ["--q", path("qw.npy"), "--k", path("kw.npy"), "--v", path("vw.npy")]
o, w, lse = attention(qw, kw, vw, key_lengths=np.array([11]))
agree("head dims 576/512, key lengths, weights", wide + ["--key-lengths", path("klw.npy"), "--weights", path("w.npy")],
      (o, w), 1e-5, ("w.npy",))
o, w, lse = attention(qw, kw, vw, causal="bottom-right", softcap=2.0)
agree("head dims 576/512 fused, causal, softcap", wide + ["--impl", "fused", "--causal", "bottom-right", "--softcap",
                                                          "2"], (o,), 1e-5)
np.save(path("qx.npy"), rng.uniform(-2, 2, (1, 2, 5, 640)).astype(np.float32))
np.save(path("kx.npy"), rng.uniform(-2, 2, (1, 1, 17, 640)).astype(np.float32))
r = t.run_to("--q", path("qx.npy"), "--k", path("kx.npy"), "--v", path("vw.npy"), "--impl", "fused")
check("head dims 640/512 with --impl fused: exit 2, no output",
      r.returncode == 2 and "CLATTN_IMPL_UNFUSED" in r.stderr and not t.wrote(),
      f"exit {r.returncode}: {r.stderr}")

# --score-mod and --mask-mod (OpenCL C expressions), each against NumPy with the built-in feature it reproduces;
# mod buffers of float32 and int32. Expressions that could escape, that do not compile, or that --check cannot
# evaluate: an error and no output.
np.save(path("qdoc.npy"), (np.arange(13) // 4).astype(np.int32))
np.save(path("kdoc.npy"), (np.arange(21) // 6).astype(np.int32))
doc_mask = (np.arange(13) // 4)[:, None] == (np.arange(21) // 6)[None, :]
for what, args, kw in (
        ("--score-mod softcap", ["--score-mod", "1.5f * tanh(score / 1.5f)"], dict(softcap=1.5)),
        ("--score-mod ALiBi from a float32 buffer", ["--score-mod", "score - sl[h] * (float)abs(q_idx - kv_idx)",
                                                     "--mod-buffer", "sl=" + path("slopes.npy")], dict(alibi=slopes)),
        ("--mask-mod window", ["--mask-mod", "q_idx - kv_idx <= 5 && kv_idx - q_idx <= 1"], dict(window=(5, 1))),
        ("--mask-mod document mask from int32 buffers", ["--mask-mod", "qd[q_idx] == kd[kv_idx]", "--mod-buffer",
                                                         f"qd={path('qdoc.npy')},kd={path('kdoc.npy')}"],
         dict(mask=doc_mask))):
    o, w, lse = attention(q, k, v, **kw)
    agree(what, files + args, (o,), 1e-5)
for what, args, status in (("--score-mod with ';'", ["--score-mod", "score; x"], 2),
                           ("--mask-mod unbalanced", ["--mask-mod", "(kv_idx < 3"], 2),
                           ("--score-mod and --check", ["--score-mod", "score", "--check"], 2),
                           ("--mod-buffer without '='", ["--score-mod", "score", "--mod-buffer", path("slopes.npy")], 2),
                           ("--score-mod that does not compile", ["--score-mod", "score + zz"], 1)):
    r = t.run_to(*files, *args)
    check(f"{what}: exit {status}, no output", r.returncode == status and not t.wrote(),
          f"exit {r.returncode}: {r.stderr}")
r = t.run_to(*files, "--score-mod", "score + zz")
check("a compile error names the expression", "score_mod: score + zz" in r.stderr and "'zz'" in r.stderr, r.stderr)

# --block-mask and --block-size: against NumPy with the blocks expanded into the bool mask they stand for; with
# --mask-mod, whose full blocks (2) it spares. Bad block masks and sizes: exit 2, no output.
bm = np.int32([[1, 0, 2, 1], [0, 2, 1, 1], [2, 2, 0, 1]])  # blocks of 5 x 6 over 13 x 21
np.save(path("bm.npy"), bm)
flags = bm[np.arange(13)[:, None] // 5, np.arange(21)[None, :] // 6]
o, w, lse = attention(q, k, v, mask=flags != 0)
agree("--block-mask", files + ["--block-mask", path("bm.npy"), "--block-size", "5,6"], (o,), 1e-5)
o, w, lse = attention(q, k, v, mask=(flags == 2) | ((flags == 1) & doc_mask))
agree("--block-mask with --mask-mod", files + ["--block-mask", path("bm.npy"), "--block-size", "5,6", "--mask-mod",
                                               "qd[q_idx] == kd[kv_idx]", "--mod-buffer",
                                               f"qd={path('qdoc.npy')},kd={path('kdoc.npy')}"], (o,), 1e-5)
np.save(path("bm_f.npy"), bm.astype(np.float32))
for what, args in (("--block-mask of float32", ["--block-mask", path("bm_f.npy"), "--block-size", "5,6"]),
                   ("--block-mask of the wrong shape", ["--block-mask", path("bm.npy"), "--block-size", "5"]),
                   ("--block-size 0", ["--block-mask", path("bm.npy"), "--block-size", "0,6"]),
                   ("--block-size without --block-mask", ["--block-size", "5"])):
    r = t.run_to(*files, *args)
    check(f"{what}: exit 2, no output", r.returncode == 2 and not t.wrote(), f"exit {r.returncode}: {r.stderr}")

# --check takes the block mask into its reference: it passes, and it catches an output that ignored the blocks.
r = run(*files, "--block-mask", path("bm.npy"), "--block-size", "5,6", "--check")
check("--block-mask --check", r.returncode == 0 and "reference" in r.stdout, r.stdout + r.stderr)
r = run(*files, "--block-mask", path("bm.npy"), "--block-size", "5,6", "--check", "--mask-mod",
        "qd[q_idx] == qd[q_idx]", "--mod-buffer", f"qd={path('qdoc.npy')}")
check("--block-mask --check with --mask-mod: exit 2, names --check", r.returncode == 2 and "--check" in r.stderr,
      f"exit {r.returncode}: {r.stderr}")

# Bad inputs: exit 2, a message, and no output file.
raw = open(path("q.npy"), "rb").read()
bad = {
    "truncated data": raw[:-10],
    "truncated header": raw[:20],
    "bad magic": b"NOTNUMPY" + raw[8:],
    "empty file": b"",
}
for name, data in bad.items():
    open(path("bad.npy"), "wb").write(data)
    r = t.run_to("--q", path("bad.npy"), "--k", path("k.npy"), "--v", path("v.npy"))
    check(f"{name}: exit 2, message, no output", r.returncode == 2 and r.stderr and not t.wrote(),
          f"exit {r.returncode}: {r.stderr}")
np.save(path("int.npy"), np.zeros((2, 4, 13, 24), dtype=np.int32))
np.save(path("k3.npy"), k[:, :, :, :5])
np.save(path("kl_bad.npy"), np.array([1, 2, 3], dtype=np.int32))
np.save(path("mask_bad.npy"), np.zeros((13, 20), dtype=np.float32))
for name, args in {
    "wrong dtype": ["--q", path("int.npy"), "--k", path("k.npy"), "--v", path("v.npy")],
    "head dims that do not match": ["--q", path("q.npy"), "--k", path("k3.npy"), "--v", path("v.npy")],
    "key lengths of the wrong size": files + ["--key-lengths", path("kl_bad.npy")],
    "mask of the wrong shape": files + ["--mask", path("mask_bad.npy")],
    "missing file": ["--q", path("nope.npy"), "--k", path("k.npy"), "--v", path("v.npy")],
    "bad --causal": files + ["--causal", "sideways"],
    "bad --window": files + ["--window", "3"],
    "bad --window-align": files + ["--window", "3,3", "--window-align", "middle"],
}.items():
    r = t.run_to(*args)
    check(f"{name}: exit 2, no output", r.returncode == 2 and not t.wrote(),
          f"exit {r.returncode}: {r.stderr}")

# The serving formats: packed sequences (--cu-seqlens-q/-k), a paged cache (--k-cache/--v-cache, --block-table,
# --seqlens-k) and --kv-dtype, each sequence checked inside the program (--check) and against NumPy on its own rows
# and keys. 8-bit K/V are quantized here as the program does (float32: i8 one scale per token and head, max|x| / 127;
# fp8 one per head, max|x| over the head / 448), so NumPy sees the values the device holds.
def quantize(x, kind, head_axis):
    """x float32 [..., Hkv, ..., D] stored as kind and read back, float32."""
    x = x.astype(np.float32)
    if kind in ("f16", "bf16"):
        if kind == "f16":
            return x.astype(np.float16).astype(np.float32)
        bits = x.view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # bfloat16: round to nearest even
        return bits.astype(np.uint32).view(np.float32)
    if kind == "i8":
        scale = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
        inv = np.where(scale > 0, np.float32(1) / np.where(scale > 0, scale, 1), 0).astype(np.float32)
        return (np.clip(np.rint(x * inv), -127, 127).astype(np.float32) * scale).astype(np.float32)
    axes = tuple(a for a in range(x.ndim) if a != head_axis)
    scale = (np.abs(x).max(axis=axes, keepdims=True) / np.float32(448)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1))
    y = (x * (np.float32(1) / scale)).astype(np.float32).astype(np.float64)
    a = np.abs(y)
    step = 2.0 ** (np.maximum(np.floor(np.log2(np.where(a > 0, a, 1))), -6) - 3)  # E4M3: 3 mantissa bits
    fp8 = np.sign(y) * np.minimum(np.rint(a / step) * step, 448)
    return (fp8.astype(np.float32) * scale).astype(np.float32)


def per_sequence(name, args, q_rows, keys, expect_kw, tol, check_lse=True, with_check=True):
    """Runs with -o and --lse (and --check unless with_check is False); q_rows(b) gives sequence b's output rows' index into o, keys(b) its (k, v) as
    [Lk, Hkv, D]; compares each sequence with NumPy."""
    t.remove("lse.npy")
    r = t.run_to(*args, "--lse", path("lse.npy"), *(["--check"] if with_check else []))
    if r.returncode != 0 or (with_check and "reference" not in r.stdout):
        check(name, False, r.stdout + r.stderr)
        return
    o, lse = np.load(path("o.npy")), np.load(path("lse.npy"))
    err = 0.0
    for b in range(seqs):
        rows, qb = q_rows(b)
        if qb.shape[2] == 0:
            continue
        kb, vb = keys(b)
        kw = {key: (val(b) if callable(val) else val) for key, val in expect_kw.items()}
        if kb.shape[0]:
            want, _, want_lse = attention(qb, kb.transpose(1, 0, 2)[None], vb.transpose(1, 0, 2)[None], **kw)
        else:  # no keys: zeros, and an lse of -inf (NumPy's max has nothing to reduce)
            want, want_lse = np.zeros(qb.shape[:3] + (vb.shape[-1],)), np.full(qb.shape[:3], -np.inf)
        got, got_lse = rows(o), rows(lse)
        err = max(err, np.abs(got - want).max())
        if check_lse:
            both_inf = np.isinf(want_lse) & (got_lse == want_lse)
            with np.errstate(invalid="ignore"):
                err = max(err, np.where(both_inf, 0.0, np.abs(got_lse - want_lse)).max())
    check(name, err <= tol, f"max error {err}")


seqs, hq, hkv, dk, dv = 5, 4, 2, 24, 16
lq_lens, lk_lens = np.array([3, 0, 1, 37, 20]), np.array([5, 4, 1, 37, 61])
cq = np.concatenate([[0], np.cumsum(lq_lens)]).astype(np.int32)
ck = np.concatenate([[0], np.cumsum(lk_lens)]).astype(np.int32)
qp = rng.uniform(-2, 2, (cq[-1], hq, dk)).astype(np.float32)
kp = rng.uniform(-2, 2, (ck[-1], hkv, dk)).astype(np.float32)
vp = rng.uniform(-2, 2, (ck[-1], hkv, dv)).astype(np.float32)
for name, a in (("qp.npy", qp), ("kp.npy", kp), ("vp.npy", vp), ("cq.npy", cq), ("ck.npy", ck.astype(np.int64))):
    np.save(path(name), a)
packed = ["--q", path("qp.npy"), "--k", path("kp.npy"), "--v", path("vp.npy"), "--cu-seqlens-q", path("cq.npy"),
          "--cu-seqlens-k", path("ck.npy")]


def packed_rows(b, qarr=qp):
    """Sequence b's packed query rows: a selector of its rows of [total, H, ...] outputs (as [1, H, L, ...]), and
    its queries [1, Hq, Lq, D]."""
    sel = lambda a: np.moveaxis(a[cq[b]:cq[b + 1]], 0, 1)[None]
    return sel, sel(qarr)


def packed_keys(kind="f32"):
    kq, vq = (kp, vp) if kind == "f32" else (quantize(kp, kind, 1), quantize(vp, kind, 1))
    return lambda b: (kq[ck[b]:ck[b + 1]], vq[ck[b]:ck[b + 1]])


per_sequence("packed q/k/v (lengths 0 and 1 inside), GQA, Dv != D, bottom-right, lse, cu_seqlens_k int64", packed
             + ["--causal", "bottom-right"], packed_rows, packed_keys(), dict(causal="bottom-right"), 1e-5)
sinks4 = rng.uniform(-2, 2, hq).astype(np.float32)
np.save(path("sinks4.npy"), sinks4)
per_sequence("packed, top-left, window 4,2, softcap, sinks", packed + ["--causal", "top-left", "--window", "4,2",
             "--softcap", "1.5", "--sinks", path("sinks4.npy")], packed_rows, packed_keys(),
             dict(causal="top-left", window=(4, 2), softcap=1.5, sinks=sinks4), 1e-5)
pmask = rng.uniform(size=(seqs, 1, lq_lens.max(), lk_lens.max())) > 0.3
np.save(path("pmask.npy"), pmask)
per_sequence("packed with a bool mask [B, 1, max_q, max_k], each sequence its top-left corner",
             packed + ["--mask", path("pmask.npy")], packed_rows, packed_keys(),
             dict(mask=lambda b: pmask[b:b + 1, :, :lq_lens[b], :lk_lens[b]]), 1e-5)
# A block mask over packed sequences: [B, Hq, ceil(max_q / 8), ceil(max_k / 16)], blocks of each sequence's own
# positions (NumPy: the flags expanded into the bool mask they stand for); --check takes it into its reference.
pbm = rng.integers(0, 3, (seqs, hq, -(-lq_lens.max() // 8), -(-lk_lens.max() // 16))).astype(np.int32)
np.save(path("pbm.npy"), pbm)
per_sequence("packed with --block-mask [B, Hq, ceil(max_q/8), ceil(max_k/16)], bottom-right",
             packed + ["--block-mask", path("pbm.npy"), "--block-size", "8,16", "--causal", "bottom-right"],
             packed_rows, packed_keys(),
             dict(causal="bottom-right", mask=lambda b: (pbm[b][:, np.arange(lq_lens[b])[:, None] // 8,
                                                                np.arange(lk_lens[b])[None, :] // 16] != 0)[None]),
             1e-5)
# --mask-mod and --score-mod on packed sequences: b is the sequence, q_idx and kv_idx positions inside it (here a
# per-sequence document id read from a mod buffer, and ALiBi written as a score_mod), with the block mask above.
pdoc = np.int32([0, 1, 1, 2, 0])
np.save(path("pdoc.npy"), pdoc)
pslope = rng.uniform(0.05, 0.5, hq).astype(np.float32)
np.save(path("pslope.npy"), pslope)
mm = lambda b: ((np.arange(lq_lens[b])[:, None] + pdoc[b]) % 3 != np.arange(lk_lens[b])[None, :] % 3)
per_sequence("packed with --mask-mod/--score-mod of the sequence and its positions, and --block-mask",
             packed + ["--block-mask", path("pbm.npy"), "--block-size", "8,16", "--mask-mod",
                       "(q_idx + doc[b]) % 3 != kv_idx % 3", "--score-mod", "score - sl[h] * abs(q_idx - kv_idx)",
                       "--mod-buffer", f"doc={path('pdoc.npy')},sl={path('pslope.npy')}"],
             packed_rows, packed_keys(),
             dict(alibi=pslope, mask=lambda b: (((pbm[b][:, np.arange(lq_lens[b])[:, None] // 8,
                                                           np.arange(lk_lens[b])[None, :] // 16] == 2)
                                                  | ((pbm[b][:, np.arange(lq_lens[b])[:, None] // 8,
                                                             np.arange(lk_lens[b])[None, :] // 16] == 1) & mm(b)))
                                                 [None])),
             1e-5, with_check=False)
for kind, tol in (("i8", 1e-5), ("fp8", 1e-5), ("f16", 1e-5), ("bf16", 1e-5)):
    per_sequence(f"packed, --kv-dtype {kind} (as NumPy quantizes it)", packed + ["--kv-dtype", kind, "--causal",
                 "bottom-right"], packed_rows, packed_keys(kind), dict(causal="bottom-right"), tol)
per_sequence("packed, --dtype f16 storage", packed + ["--dtype", "f16"],
             lambda b: packed_rows(b, qp.astype(np.float16).astype(np.float32)),
             lambda b: (quantize(kp, "f16", 1)[ck[b]:ck[b + 1]], quantize(vp, "f16", 1)[ck[b]:ck[b + 1]]), {},
             2e-2, check_lse=False)

# A vLLM cache [num_blocks, block_size, Hkv, D] with shuffled pages, one page no sequence uses and table entries
# past each sequence's pages (never read); decode queries [B, Hq, 1, D], a two-row chunk, and packed queries.
blocks, block = 24, 8
kc = rng.uniform(-2, 2, (blocks, block, hkv, dk)).astype(np.float32)
vc = rng.uniform(-2, 2, (blocks, block, hkv, dv)).astype(np.float32)
sk = np.array([17, 9, 30, 0, 1], dtype=np.int32)
bt = rng.permutation(blocks)[:seqs * 4].reshape(seqs, 4).astype(np.int32)
for name, a in (("kc.npy", kc), ("vc.npy", vc), ("sk.npy", sk), ("bt.npy", bt)):
    np.save(path(name), a)
cache = ["--k-cache", path("kc.npy"), "--v-cache", path("vc.npy"), "--block-table", path("bt.npy"), "--seqlens-k",
         path("sk.npy")]


def paged_keys(kind="f32"):
    kq, vq = (kc, vc) if kind == "f32" else (quantize(kc, kind, 2), quantize(vc, kind, 2))
    pos = lambda b: (bt[b, np.arange(sk[b]) // block], np.arange(sk[b]) % block)
    return lambda b: (kq[pos(b)], vq[pos(b)])


for lq in (1, 2):
    qd = rng.uniform(-2, 2, (seqs, hq, lq, dk)).astype(np.float32)
    np.save(path("qd.npy"), qd)
    for kind in ("f32", "i8", "fp8"):
        per_sequence(f"paged cache, dense queries Lq={lq}, --kv-dtype {kind}, bottom-right", ["--q", path("qd.npy")]
                     + cache + ["--kv-dtype", kind, "--causal", "bottom-right"],
                     lambda b: (lambda a: a[b:b + 1], qd[b:b + 1]), paged_keys(kind), dict(causal="bottom-right"),
                     1e-5)
per_sequence("paged cache, packed queries (chunked prefill), ALiBi, window", ["--q", path("qp.npy"), "--cu-seqlens-q",
             path("cq.npy")] + cache + ["--causal", "bottom-right", "--window", "6,0", "--alibi-slopes",
                                        path("slopes.npy")], packed_rows, paged_keys(),
             dict(causal="bottom-right", window=(6, 0), alibi=slopes), 1e-5)
# A block mask [B, 1, 1, ceil(max_k / 8)] over the paged cache's keys (blocks of each sequence's positions).
kbm = rng.integers(0, 3, (seqs, 1, 1, -(-sk.max() // 8))).astype(np.int32)
np.save(path("kbm.npy"), kbm)
per_sequence("paged cache, packed queries, --block-mask [B, 1, 1, ceil(max_k/8)], top-left",
             ["--q", path("qp.npy"), "--cu-seqlens-q", path("cq.npy")] + cache
             + ["--block-mask", path("kbm.npy"), "--block-size", "4,8", "--causal", "top-left"], packed_rows,
             paged_keys(), dict(causal="top-left", mask=lambda b: (kbm[b][..., np.arange(sk[b]) // 8] != 0)[None]),
             1e-5)
per_sequence("paged cache, packed queries, --mask-mod of the sequence and its key positions",
             ["--q", path("qp.npy"), "--cu-seqlens-q", path("cq.npy")] + cache
             + ["--mask-mod", "kv_idx % 4 != b % 4", "--causal", "top-left"], packed_rows,
             paged_keys(), dict(causal="top-left", mask=lambda b: (np.arange(sk[b]) % 4 != b % 4)[None, None, None]),
             1e-5, with_check=False)
# A dense cache [B, Hkv, Lk_cap, D] with --seqlens-k: sequence b has its first sk[b] keys, which are its Lk for the
# alignment (here a window aligned bottom-right without causal masking, FlashAttention's convention, and causal).
kd = rng.uniform(-2, 2, (seqs, hkv, 32, dk)).astype(np.float32)
vd = rng.uniform(-2, 2, (seqs, hkv, 32, dv)).astype(np.float32)
qd2 = rng.uniform(-2, 2, (seqs, hq, 2, dk)).astype(np.float32)
np.save(path("sk_bad.npy"), np.array([17, 9, 33, 0, 1], dtype=np.int32))
for name, a in (("kd.npy", kd), ("vd.npy", vd), ("qd2.npy", qd2)):
    np.save(path(name), a)
dense_cache = ["--q", path("qd2.npy"), "--k", path("kd.npy"), "--v", path("vd.npy"), "--seqlens-k", path("sk.npy")]
dense_keys = lambda b: (kd[b, :, :sk[b]].transpose(1, 0, 2), vd[b, :, :sk[b]].transpose(1, 0, 2))
dense_rows = lambda b: (lambda a: a[b:b + 1], qd2[b:b + 1])
per_sequence("dense cache with --seqlens-k, window 3,1 aligned bottom-right, not causal",
             dense_cache + ["--window", "3,1", "--window-align", "bottom-right"], dense_rows, dense_keys,
             dict(window=(3, 1), window_align="bottom-right"), 1e-5)
for kind in ("f32", "i8"):
    kq, vq = (kd, vd) if kind == "f32" else (quantize(kd, kind, 1), quantize(vd, kind, 1))
    per_sequence(f"dense cache with --seqlens-k, --kv-dtype {kind}, causal bottom-right",
                 dense_cache + ["--causal", "bottom-right", "--kv-dtype", kind], dense_rows,
                 lambda b, kq=kq, vq=vq: (kq[b, :, :sk[b]].transpose(1, 0, 2), vq[b, :, :sk[b]].transpose(1, 0, 2)),
                 dict(causal="bottom-right"), 1e-5)
# Dense 4-D inputs with 8-bit K/V (a scale per head for fp8: over the batch and the sequence), and --random.
r = t.run_to(*files, "--kv-dtype", "fp8", "--lse", path("lse.npy"), "--check", "--key-lengths", path("kl.npy"))
if r.returncode == 0:
    o = np.load(path("o.npy"))
    want, _, _ = attention(q, quantize(k, "fp8", 1), quantize(v, "fp8", 1), key_lengths=kl)
    check("dense [B, H, L, D] files, --kv-dtype fp8, key lengths", o.shape == want.shape and
          np.abs(o - want).max() <= 1e-5, f"max error {np.abs(o - want).max()}")
else:
    check("dense [B, H, L, D] files, --kv-dtype fp8, key lengths", False, r.stderr)
r = run("--random", "2,4,2,5,33,16", "--kv-dtype", "i8", "--check", "--causal", "top-left")
check("--random --kv-dtype i8 --check", r.returncode == 0 and "reference" in r.stdout, r.stdout + r.stderr)

# Serving inputs that do not fit: exit 2, no output, and a message naming the problem (the library's status for
# index arrays only it checks).
np.save(path("ck_short.npy"), ck[:-1])
np.save(path("pbm_bad.npy"), np.zeros((seqs, hq, -(-cq[-1] // 8), -(-ck[-1] // 16)), np.int32))
cq_bad = cq.copy()
cq_bad[3] = cq_bad[2] - 1
np.save(path("cq_bad.npy"), cq_bad)
bt_bad = bt.copy()
bt_bad[2, 3] = blocks  # sequence 2 has 30 keys: its 4th page is read
np.save(path("bt_bad.npy"), bt_bad)
np.save(path("bt_short.npy"), bt[:4])
cache_bad = [a if a != path("bt.npy") else path("bt_bad.npy") for a in cache]
for name, args, needle in (
        ("cu_seqlens_k one entry short", packed[:-1] + [path("ck_short.npy")], "--cu-seqlens-k"),
        ("decreasing cu_seqlens_q", ["--q", path("qp.npy"), "--k", path("kp.npy"), "--v", path("vp.npy"),
                                     "--cu-seqlens-q", path("cq_bad.npy"), "--cu-seqlens-k", path("ck.npy")],
         "CLATTN_ERROR_INVALID_SEQLENS"),
        ("a block table entry past the cache", ["--q", path("qd.npy")] + cache_bad, "CLATTN_ERROR_INVALID_BLOCK_TABLE"),
        ("a block table of 4 rows for 5 sequences", ["--q", path("qd.npy")] +
         [a if a != path("bt.npy") else path("bt_short.npy") for a in cache], "--block-table"),
        ("a paged cache without --seqlens-k", ["--q", path("qd.npy")] + cache[:-2], "--seqlens-k"),
        ("a cache and --k", ["--q", path("qd.npy"), "--k", path("k.npy")] + cache, "not both"),
        ("4-D keys with --cu-seqlens-k", ["--q", path("qp.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                                          "--cu-seqlens-q", path("cq.npy"), "--cu-seqlens-k", path("ck.npy")], "--k"),
        ("--weights with packed inputs", packed + ["--weights", path("w.npy")], "--weights"),
        ("--impl unfused with packed inputs", packed + ["--impl", "unfused"], "fused"),
        ("--score-mod with packed inputs and --check", packed + ["--score-mod", "score"], "--check"),
        ("--key-lengths with packed keys", packed + ["--key-lengths", path("kl.npy")], "--key-lengths"),
        ("--random with --cu-seqlens-q", ["--random", "1,2,1,3,3,8", "--cu-seqlens-q", path("cq.npy")], "--random"),
        ("--kv-dtype int4", files + ["--kv-dtype", "int4"], "--kv-dtype"),
        ("a dense cache length past its rows", dense_cache[:-1] + [path("sk_bad.npy")],
         "CLATTN_ERROR_INVALID_SEQLENS"),
        ("--seqlens-k with --cu-seqlens-k", packed + ["--seqlens-k", path("sk.npy")], "--cu-seqlens-k"),
        ("--seqlens-k with --key-lengths", dense_cache + ["--key-lengths", path("kl.npy")], "--key-lengths"),
        ("float64 cu_seqlens", ["--q", path("qp.npy"), "--k", path("kp.npy"), "--v", path("vp.npy"),
                                "--cu-seqlens-q", path("slopes.npy"), "--cu-seqlens-k", path("ck.npy")], "int32")):
    r = t.run_to(*args, "--check")
    check(f"{name}: exit 2, no output, message names it", r.returncode == 2 and not t.wrote() and needle in r.stderr,
          f"exit {r.returncode}: {r.stderr}")
# A block mask sized by the packed rows rather than the longest sequence: the library's status and the sizes it
# expects.
r = t.run_to(*packed, "--block-mask", path("pbm_bad.npy"), "--block-size", "8,16")
check("a block mask of the packed rows' blocks: exit 2, no output, message names it",
      r.returncode == 2 and not t.wrote() and "[5, 4, 5, 4]" in r.stderr, f"exit {r.returncode}: {r.stderr}")

r = run("--random", "1,2,1,9,33,16", "--check", "--causal", "bottom-right")
check("--random --check", r.returncode == 0 and "reference" in r.stdout, r.stdout + r.stderr)
r = run("--random", "1,4,4,64,64,512", "--check")
check("--random D=512 --check", r.returncode == 0 and "reference" in r.stdout, r.stdout + r.stderr)
t.finish()
