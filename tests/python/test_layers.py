# SPDX-License-Identifier: Apache-2.0
"""MultiHeadAttention (packed and separate weights, GQA, cross-attention, residual), its KVCache decoding token by
token, and seq2seq attention (additive, dot, general, concat) against float64 NumPy references."""
import numpy as np
import pytest

import clattn
from conftest import assert_close, rand, reference


def mha_reference(x, m, wq, wk, wv, wo, bq, bk, bv, bo, heads, kv_heads, dk, dv, residual=False, **attention):
    x64, m64 = np.asarray(x, np.float64), np.asarray(m, np.float64)
    b, lq, _ = x64.shape
    lk = m64.shape[1]
    q = (x64 @ wq + bq).reshape(b, lq, heads, dk).transpose(0, 2, 1, 3)
    k = (m64 @ wk + bk).reshape(b, lk, kv_heads, dk).transpose(0, 2, 1, 3)
    v = (m64 @ wv + bv).reshape(b, lk, kv_heads, dv).transpose(0, 2, 1, 3)
    o = reference(q, k, v, **attention).transpose(0, 2, 1, 3).reshape(b, lq, heads * dv)
    return o @ wo + bo + (x64 if residual else 0)


def weights(rng, dm, kv_dm, heads, kv_heads, dk, dv):
    s = 0.3
    return dict(w_q=rand(rng, dm, heads * dk) * s, w_k=rand(rng, kv_dm, kv_heads * dk) * s,
                w_v=rand(rng, kv_dm, kv_heads * dv) * s, w_o=rand(rng, heads * dv, dm) * s,
                b_q=rand(rng, heads * dk), b_k=rand(rng, kv_heads * dk), b_v=rand(rng, kv_heads * dv),
                b_o=rand(rng, dm))


def ref_args(w):
    return [w[n] for n in ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")]


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2)])
def test_mha_self_attention(ctx, rng, heads, kv_heads):
    dm, dk = 24, 8
    w = weights(rng, dm, dm, heads, kv_heads, dk, dk)
    x = rand(rng, 2, 7, dm)
    layer = clattn.MultiHeadAttention(ctx, dm, heads, kv_heads=kv_heads, head_dim=dk, **w)
    out = layer(x, is_causal=True, residual=True)
    ref = mha_reference(x, x, *ref_args(w), heads, kv_heads, dk, dk, residual=True, is_causal=True)
    assert out.shape == (2, 7, dm)
    assert_close(out, ref, 7, extra=dm)
    packed = clattn.MultiHeadAttention(ctx, dm, heads, kv_heads=kv_heads, head_dim=dk,
                                       w_qkv=np.concatenate([w["w_q"], w["w_k"], w["w_v"]], 1),
                                       b_qkv=np.concatenate([w["b_q"], w["b_k"], w["b_v"]]), w_o=w["w_o"],
                                       b_o=w["b_o"])
    assert_close(packed(x[0], is_causal=True, residual=True), ref[0], 7, extra=dm)  # [L, d_model] in and out


def test_mha_cross_attention_device(ctx, rng):
    dm, kv_dm, heads, dk, dv = 16, 12, 2, 8, 4
    w = weights(rng, dm, kv_dm, heads, heads, dk, dv)
    x, m = rand(rng, 3, 5, dm), rand(rng, 3, 9, kv_dm)
    layer = clattn.MultiHeadAttention(ctx, dm, heads, head_dim=dk, v_head_dim=dv, kv_d_model=kv_dm, **w)
    mask = rng.random((3, 1, 5, 9)) > 0.2
    out = layer(ctx.to_device(x[:, None]), ctx.to_device(m[:, None]), attn_mask=mask)
    assert isinstance(out, clattn.DeviceTensor)
    ref = mha_reference(x, m, *ref_args(w), heads, heads, dk, dv, mask=mask)
    assert_close(out.numpy()[:, 0], ref, 9, extra=dm)


def test_kv_cache_decoding(ctx, rng):
    dm, heads, dk, steps = 16, 4, 4, 6
    w = weights(rng, dm, dm, heads, 2, dk, dk)
    layer = clattn.MultiHeadAttention(ctx, dm, heads, kv_heads=2, head_dim=dk, **w)
    x = rand(rng, 2, steps, dm)
    full = mha_reference(x, x, *ref_args(w), heads, 2, dk, dk, is_causal=True)
    cache = clattn.KVCache(ctx, layer, batch=2, capacity=8)
    assert (len(cache), cache.capacity) == (0, 8)
    prompt = layer(x[:, :3], cache=cache, is_causal=True, causal_alignment="bottom_right")
    assert_close(prompt, full[:, :3], 3, extra=dm)
    for t in range(3, steps):
        step = layer(x[:, t:t + 1], cache=cache, is_causal=True, causal_alignment="bottom_right")
        assert_close(step[:, 0], full[:, t], t + 1, extra=dm)
    assert len(cache) == steps
    keys, values = cache.tensors()
    assert keys.shape == (2, 2, steps, dk)
    k_ref = (x.astype(np.float64) @ w["w_k"] + w["b_k"]).reshape(2, steps, 2, dk).transpose(0, 2, 1, 3)
    assert_close(keys.numpy(), k_ref, 1, extra=dm)
    cache.truncate(2)
    assert len(cache) == 2
    with pytest.raises(clattn.InvalidArgumentError):
        cache.truncate(5)
    layer(x[:, 2:8], cache=cache, is_causal=True, causal_alignment="bottom_right")  # back to 6 of 8
    with pytest.raises(clattn.ResourceError) as info:
        layer(x[:, :3], cache=cache)  # 9 > capacity 8
    assert info.value.status == -3022 and len(cache) == 6  # unchanged on error
    cache.reset()
    assert len(cache) == 0
    cache.free()
    with pytest.raises(clattn.ClosedError):
        len(cache)


def test_mha_bad_input(ctx, rng):
    with pytest.raises(clattn.InvalidArgumentError):
        clattn.MultiHeadAttention(ctx, 16, 4)  # no weights at all
    w = weights(rng, 16, 16, 4, 4, 4, 4)
    layer = clattn.MultiHeadAttention(ctx, 16, 4, **w)
    with pytest.raises(clattn.ShapeError) as info:
        layer(rand(rng, 2, 3, 15))
    assert info.value.status == -3002 and "d_model" in str(info.value)


def seq2seq_reference(score, q, k, v, w_q=None, w_k=None, w=None, vv=None, bias=None, mask=None):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    if score == "additive":
        h = np.tanh((q @ w_q)[:, :, None] + (k @ w_k)[:, None] + (0 if bias is None else bias))
        e = h @ vv
    elif score == "dot":
        e = q @ k.transpose(0, 2, 1)
    elif score == "general":
        e = q @ w @ k.transpose(0, 2, 1)
    else:
        qd = q.shape[-1]
        e = np.tanh((q @ w[:qd])[:, :, None] + (k @ w[qd:])[:, None]) @ vv
    if mask is not None:
        e = np.where(mask, e, -np.inf)
    p = np.exp(e - e.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p @ v, p


@pytest.mark.parametrize("score", ["additive", "dot", "general", "concat"])
def test_seq2seq(ctx, rng, score):
    b, lq, lk, qd, a = 2, 3, 11, 8, 16
    kd = qd if score == "dot" else 6
    q, k, v = rand(rng, b, lq, qd), rand(rng, b, lk, kd), rand(rng, b, lk, 5)
    wts = {"additive": dict(w_q=rand(rng, qd, a), w_k=rand(rng, kd, a), v=rand(rng, a), bias=rand(rng, a)),
           "dot": {}, "general": dict(w=rand(rng, qd, kd) * 0.3),
           "concat": dict(w=rand(rng, qd + kd, a), v=rand(rng, a))}[score]
    mask = rng.random((b, 1, lq, lk)) > 0.25
    mask[..., 0] = True
    out, alpha = clattn.seq2seq_attention(q, k, v, score=score, context=ctx, attn_mask=mask, return_weights=True,
                                          **wts)
    ref, ref_alpha = seq2seq_reference(score, q, k, v, wts.get("w_q"), wts.get("w_k"), wts.get("w"),
                                       wts.get("v"), wts.get("bias"), mask[:, 0])
    assert out.shape == (b, lq, 5) and alpha.shape == (b, lq, lk)
    assert_close(out, ref, lk, extra=a)
    assert_close(alpha, ref_alpha, lk, extra=a)
    layer = clattn.Seq2SeqAttention(ctx, score, qd, kd, **wts)  # weights kept on the device; values = keys
    ref_k, _ = seq2seq_reference(score, q, k, k, wts.get("w_q"), wts.get("w_k"), wts.get("w"), wts.get("v"),
                                 wts.get("bias"))
    assert_close(layer(q, k, key_lengths=np.array([lk, lk])), ref_k, lk, extra=a)


def test_seq2seq_bad_input(ctx, rng):
    with pytest.raises(clattn.InvalidArgumentError):
        clattn.seq2seq_attention(rand(rng, 1, 2, 4), rand(rng, 1, 3, 4), score="cosine", context=ctx)
    with pytest.raises(clattn.Error) as info:
        clattn.seq2seq_attention(rand(rng, 1, 2, 4), rand(rng, 1, 3, 5), score="dot", context=ctx)
    assert info.value.status in (-3000, -3002) and info.value.detail
