#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""`clattn run mha` against an independent NumPy implementation of a multi-head attention layer (projections,
grouped-query heads, masks, key lengths, residual, score modifiers and the caller's score_mod/mask_mod), plus its handling of bad inputs: each must give exit status 2 and
leave no output file.
Usage: cli_mha_test.py PATH/TO/clattn"""
import numpy as np

from cli_harness import CliTest
from numpy_attention import attention

t = CliTest("clattn-cli-mha-", 11, op="mha")
rng, path, save, run, check = t.rng, t.path, t.save, t.run, t.check


def mha(x, mem, wq, wk, wv, wo, heads, kv_heads, bq=None, bk=None, bv=None, bo=None, residual=False,
        causal=None, mask=None, key_lengths=None, window=None, **mods):
    """The layer in float64: x @ W (+ b) projections, attention per head, heads merged, output projection."""
    x = x.astype(np.float64)
    src = x if mem is None else mem.astype(np.float64)
    b, lq, _ = x.shape
    lk = src.shape[1]
    q = x @ wq + (0 if bq is None else bq)
    k = src @ wk + (0 if bk is None else bk)
    v = src @ wv + (0 if bv is None else bv)
    dk = wq.shape[1] // heads
    dv = wv.shape[1] // kv_heads
    q = q.reshape(b, lq, heads, dk).transpose(0, 2, 1, 3)
    k = k.reshape(b, lk, kv_heads, dk).transpose(0, 2, 1, 3)
    v = v.reshape(b, lk, kv_heads, dv).transpose(0, 2, 1, 3)
    o, _, _ = attention(q, k, v, causal=causal, mask=mask, key_lengths=key_lengths, window=window, **mods)
    att = o.transpose(0, 2, 1, 3).reshape(b, lq, heads * dv)
    out = att @ wo + (0 if bo is None else bo)
    return out + x if residual else out


def agree(what, args, expect, tol):
    r = t.run_to(*args)
    if r.returncode != 0:
        check(what, False, r.stderr)
        return
    got = np.load(path("o.npy"))
    err = float(np.max(np.abs(got - expect))) if got.size else 0.0
    check(what, got.shape == expect.shape and err <= tol, f"shape {got.shape} vs {expect.shape}, error {err}")


def rejected(what, args):
    r = t.run_to(*args)
    check(what, r.returncode == 2 and not t.wrote() and "clattn run mha" in r.stderr,
          f"status {r.returncode}, stderr {r.stderr!r}")


def weights(d_in, d_out, rows=None):
    return (rng.uniform(-1, 1, (rows or d_in, d_out)) / np.sqrt(rows or d_in)).astype(np.float32)


# Self-attention, separate weights with biases, GQA, causal, residual.
B, L, D, H, HKV, DK = 2, 7, 24, 4, 2, 6
x = rng.uniform(-2, 2, (B, L, D)).astype(np.float32)
wq, wk, wv, wo = weights(D, H * DK), weights(D, HKV * DK), weights(D, HKV * DK), weights(H * DK, D)
bq, bk, bv, bo = (rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (H * DK, HKV * DK, HKV * DK, D))
files = ["--x", save("x.npy", x), "--w-q", save("wq.npy", wq), "--w-k", save("wk.npy", wk), "--w-v",
         save("wv.npy", wv), "--w-o", save("wo.npy", wo), "--b-q", save("bq.npy", bq), "--b-k", save("bk.npy", bk),
         "--b-v", save("bv.npy", bv), "--b-o", save("bo.npy", bo), "--heads", str(H), "--kv-heads", str(HKV)]
expect = mha(x, None, wq, wk, wv, wo, H, HKV, bq, bk, bv, bo, residual=True, causal="top-left")
agree("self-attention, GQA, biases, causal, residual", files + ["--residual", "--causal", "top-left", "--check"],
      expect, 2e-4)

# The same weights packed, fp16 storage, a window.
wqkv = np.concatenate([wq, wk, wv], axis=1)
bqkv = np.concatenate([bq, bk, bv])
packed = ["--x", path("x.npy"), "--w-qkv", save("wqkv.npy", wqkv), "--b-qkv", save("bqkv.npy", bqkv), "--w-o",
          path("wo.npy"), "--heads", str(H), "--kv-heads", str(HKV)]
x16 = x.astype(np.float16).astype(np.float32)
expect = mha(x16, None, wq, wk, wv, wo, H, HKV, bq, bk, bv, window=(2, 1))
agree("packed w_qkv, fp16, window", packed + ["--dtype", "f16", "--window", "2,1"], expect,
      3e-3 * max(1.0, np.abs(expect).max()))

# 2-D x (batch 1) with an additive mask [Lq, Lk].
mask = np.where(rng.uniform(size=(L, L)) < 0.2, -np.inf, rng.uniform(-1, 1, (L, L))).astype(np.float32)
expect = mha(x[:1], None, wq, wk, wv, wo, H, HKV, bq, bk, bv, bo, mask=mask)[0]
agree("2-D x, additive mask", ["--x", save("x2.npy", x[0])] + files[2:] + ["--mask", save("mask.npy", mask)],
      expect, 2e-4)

# Cross-attention with a memory of another width, a bool mask and key lengths, bottom-right causal.
M, DM = 9, 10
mem = rng.uniform(-2, 2, (B, M, DM)).astype(np.float32)
wk2, wv2 = weights(DM, HKV * DK), weights(DM, HKV * 5)
wo2 = weights(H * 5, D)
bmask = rng.uniform(size=(B, 1, L, M)) < 0.8
kl = np.array([M, 4], dtype=np.int32)
cross = ["--x", path("x.npy"), "--memory", save("mem.npy", mem), "--w-q", path("wq.npy"), "--w-k",
         save("wk2.npy", wk2), "--w-v", save("wv2.npy", wv2), "--w-o", save("wo2.npy", wo2), "--heads", str(H),
         "--kv-heads", str(HKV)]
expect = mha(x, mem, wq, wk2, wv2, wo2, H, HKV, mask=bmask, key_lengths=kl, causal="bottom-right")
agree("cross-attention, bool mask, key lengths, d_v != d_k",
      cross + ["--mask", save("bmask.npy", bmask), "--key-lengths", save("kl.npy", kl), "--causal", "bottom-right",
               "--check"], expect, 2e-4)

# Masks that broadcast like PyTorch's: the padding mask [B, 1, 1, Lk] of a Hugging Face encoder (additive, -inf
# at the padded keys of the second item, and boolean), [Lk], and [Lq, 1], through a real multi-head run.
pad = np.zeros((B, 1, 1, L), np.float32)
pad[1, ..., 5:] = -np.inf
for what, m in (("padding mask [B, 1, 1, Lk]", pad), ("boolean padding mask [B, 1, 1, Lk]", np.isfinite(pad)),
                ("mask [Lk]", rng.uniform(-1, 1, L).astype(np.float32)),
                ("boolean mask [Lq, 1]", (np.arange(L) != 2)[:, None])):
    expect = mha(x, None, wq, wk, wv, wo, H, HKV, bq, bk, bv, bo, mask=m)
    agree(what, files + ["--mask", save("bcast.npy", m), "--check"], expect, 2e-4)

# Random inputs checked against the reference inside the program.
r = run("--random", "2,5,6,16", "--heads", "4", "--kv-heads", "1", "--packed", "--residual", "--check")
check("--random with --check", r.returncode == 0 and "largest difference" in r.stdout, r.stdout + r.stderr)
np.save(path("sinks4.npy"), np.array([1.0, -0.5, 2.0, 0.0], dtype=np.float32))
np.save(path("slopes4.npy"), np.array([0.5, 0.25, 0.125, 0.0625], dtype=np.float32))
r = run("--random", "2,5,7,16", "--heads", "4", "--kv-heads", "2", "--causal", "bottom-right", "--softcap", "2",
        "--sinks", path("sinks4.npy"), "--alibi-slopes", path("slopes4.npy"), "--check")
check("--random cross-attention with softcap, sinks and ALiBi, --check",
      r.returncode == 0 and "largest difference" in r.stdout, r.stdout + r.stderr)

# --score-mod and --mask-mod with their --mod-buffer arrays through the layer: an ALiBi score_mod on float32 slopes
# and a document mask_mod on one int32 array of query then key ids, against NumPy with the built-in ALiBi and the
# bool mask they reproduce; GQA, biases, residual, with the built-in softcap too. --check cannot run them; a bad
# list or expression: an error and no output.
slopes4 = np.array([0.5, 0.25, 0.125, 0.0625], dtype=np.float32)
docs = np.concatenate([np.arange(L) // 3, np.arange(L) // 2]).astype(np.int32)
doc_mask = docs[:L][:, None] == docs[L:][None, :]
user_mods = ["--score-mod", "score - sl[h] * (float)abs(q_idx - kv_idx)", "--mask-mod",
             f"doc[q_idx] == doc[{L} + kv_idx]", "--mod-buffer",
             f"sl={save('sl4.npy', slopes4)},doc={save('docs.npy', docs)}"]
expect = mha(x, None, wq, wk, wv, wo, H, HKV, bq, bk, bv, bo, residual=True, mask=doc_mask, alibi=slopes4,
             softcap=1.5)
agree("--score-mod ALiBi and --mask-mod documents on --mod-buffer arrays, softcap, residual",
      files + ["--residual", "--softcap", "1.5"] + user_mods, expect, 2e-4)
three = ",".join(f"{n}={path('sl4.npy')}" for n in "abc")
for what, args, status in (("--score-mod and --check", user_mods + ["--check"], 2),
                           ("--mask-mod with ';'", ["--mask-mod", "kv_idx; 1"], 2),
                           ("--mod-buffer without '='", ["--score-mod", "score", "--mod-buffer", path("sl4.npy")], 2),
                           ("three --mod-buffer arrays", ["--score-mod", "score", "--mod-buffer", three], 2),
                           ("--mod-buffer of float64",
                            ["--score-mod", "score", "--mod-buffer", "a=" + save("f64.npy", np.zeros(3))], 2),
                           ("--score-mod that does not compile", ["--score-mod", "score + zz"], 1)):
    r = t.run_to(*files, *args)
    check(f"{what}: exit {status}, no output",
          r.returncode == status and not t.wrote() and "clattn run mha" in r.stderr, f"exit {r.returncode}: {r.stderr}")

# Bad inputs: exit status 2 and no output file.
rejected("no --w-o", files[:6] + files[8:10])
rejected("w_q of the wrong shape", ["--x", path("x.npy"), "--w-q", path("wk.npy")] + files[4:])
rejected("heads that do not divide the weights", files[:-4] + ["--heads", "5"])
rejected("kv-heads not dividing heads", files[:-2] + ["--kv-heads", "3"])
rejected("mask of the wrong shape", files + ["--mask", save("badmask.npy", np.zeros((L, L + 1), np.float32))])
rejected("padding mask of another batch", files + ["--mask", save("badmask.npy", np.zeros((B + 1, 1, 1, L), bool))])
rejected("key length past Lk", files + ["--key-lengths", save("badkl.npy", np.array([L + 1, 1], np.int32))])
rejected("memory of another batch", cross[:2] + ["--memory", save("mem1.npy", mem[:1])] + cross[4:])
rejected("packed weights with a memory of another width", packed + ["--memory", path("mem.npy")])
rejected("packed and separate weights", packed + ["--w-q", path("wq.npy")])
rejected("x that is not an array", ["--x", save("text.npy", np.array(["a"]))] + files[2:])
rejected("unknown dtype", files + ["--dtype", "f64"])

t.finish()
