# SPDX-License-Identifier: Apache-2.0
"""scaled_dot_product_attention against the float64 NumPy reference: odd and round shapes, GQA, causal alignments,
windows, masks, key lengths, lse and weights, storage types, strided and transposed inputs, device tensors."""
import numpy as np
import pytest

import clattn
from conftest import POISON, assert_close, bf16_round, rand, reference

SHAPES = [  # B, Hq, Hkv, Lq, Lk, D, Dv
    (1, 1, 1, 1, 1, 1, 1),
    (2, 3, 3, 5, 7, 8, 8),
    (1, 2, 2, 64, 64, 64, 64),
    (2, 4, 2, 17, 33, 40, 24),
    (1, 3, 1, 65, 63, 16, 16),
]


def qkv(rng, b, hq, hkv, lq, lk, d, dv):
    return rand(rng, b, hq, lq, d), rand(rng, b, hkv, lk, d), rand(rng, b, hkv, lk, dv)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", ["auto", "fused", "unfused"])
def test_matches_reference(ctx, rng, shape, impl):
    q, k, v = qkv(rng, *shape)
    out = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, impl=impl)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert_close(out, reference(q, k, v), shape[4])


@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
@pytest.mark.parametrize("lq,lk", [(9, 9), (5, 12), (12, 5)])
def test_causal(ctx, rng, alignment, lq, lk):
    q, k, v = qkv(rng, 2, 2, 2, lq, lk, 16, 16)
    out = ctx.scaled_dot_product_attention(q, k, v, is_causal=True, causal_alignment=alignment)
    assert_close(out, reference(q, k, v, is_causal=True, alignment=alignment), lk)


def test_window_scale_key_lengths(ctx, rng):
    q, k, v = qkv(rng, 3, 2, 2, 11, 13, 8, 8)
    kl = np.array([13, 4, 0], np.int64)
    out = ctx.scaled_dot_product_attention(q, k, v, scale=0.3, window=(3, 1), key_lengths=kl)
    assert_close(out, reference(q, k, v, scale=0.3, window=(3, 1), key_lengths=kl), 13)
    assert np.all(out[2] == 0)  # every key of the third item is masked: zeros, never NaN


@pytest.mark.parametrize("mask_shape", [(2, 3, 6, 10), (1, 1, 6, 10), (2, 1, 6, 10), (6, 10), (2, 1, 1, 10), (10,),
                                        (6, 1), (1, 10), (1, 3, 1, 1)])
@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_masks(ctx, rng, mask_shape, kind):
    q, k, v = qkv(rng, 2, 3, 3, 6, 10, 8, 8)
    if kind == "bool":
        mask = rng.random(mask_shape) > 0.3
    else:
        mask = rand(rng, *mask_shape)
    out = ctx.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(out, reference(q, k, v, mask=mask.reshape((1,) * (4 - mask.ndim) + mask.shape)), 10)


def test_lse_and_weights(ctx, rng):
    q, k, v = qkv(rng, 2, 2, 1, 7, 9, 8, 4)
    mask = np.ones((2, 1, 7, 9), bool)
    mask[1, 0, 3] = False  # a fully masked row
    out, lse, w = ctx.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, return_lse=True,
                                                   return_weights=True)
    r_out, r_lse, r_w = reference(q, k, v, mask=mask, return_all=True)
    assert lse.shape == (2, 2, 7) and w.shape == (2, 2, 7, 9)
    assert_close(out, r_out, 9)
    assert_close(lse, r_lse, 9)
    assert_close(w, r_w, 9)
    assert np.all(w[1, :, 3] == 0) and np.all(np.isneginf(lse[1, :, 3]))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_storage_types(ctx, rng, dtype):
    q, k, v = qkv(rng, 1, 2, 2, 9, 21, 16, 16)
    out = ctx.scaled_dot_product_attention(q, k, v, dtype=dtype)
    rnd = (lambda a: a.astype(np.float16).astype(np.float32)) if dtype == "f16" else bf16_round
    assert out.dtype == np.float32
    assert_close(out, reference(rnd(q), rnd(k), rnd(v)), 21)


def test_float16_in_float16_out(ctx, rng):
    q, k, v = (a.astype(np.float16) for a in qkv(rng, 1, 1, 1, 4, 6, 8, 8))
    out = ctx.scaled_dot_product_attention(q, k, v)
    assert out.dtype == np.float16
    assert_close(out, reference(q, k, v).astype(np.float16).astype(np.float64), 6, floor=2e-3)


def test_float64_lists_and_fewer_dims(ctx, rng):
    q, k, v = qkv(rng, 1, 1, 1, 3, 4, 2, 2)
    ref = reference(q, k, v)
    out64 = ctx.scaled_dot_product_attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    assert out64.dtype == np.float64
    assert_close(out64, ref, 4)
    out2 = ctx.scaled_dot_product_attention(q[0, 0].tolist(), k[0, 0], v[0, 0])  # [L, D]: no batch or heads
    assert out2.shape == (1, 1, 3, 2)
    assert_close(out2, ref, 4)
    assert_close(clattn.scaled_dot_product_attention(q[0], k[0], v[0]), ref, 4)


def test_strided_and_transposed(ctx, rng):
    # [B, L, H, D] storage viewed as [B, H, L, D]: uploaded as it lies, described by strides.
    q = rand(rng, 2, 9, 3, 8).transpose(0, 2, 1, 3)
    k = rand(rng, 2, 11, 3, 8).transpose(0, 2, 1, 3)
    v = rand(rng, 2, 3, 11, 16)[..., ::2]  # every other element of the last dimension
    assert not q.flags.c_contiguous and not v.flags.c_contiguous
    assert_close(ctx.scaled_dot_product_attention(q, k, v), reference(q, k, v), 11)
    # Negative strides cannot be described: a compact copy is made.
    qr = q[:, :, ::-1]
    assert_close(ctx.scaled_dot_product_attention(qr, k, v), reference(qr, k, v), 11)
    # A broadcast (stride 0) batch.
    kb = np.broadcast_to(k[:1], k.shape)
    assert_close(ctx.scaled_dot_product_attention(q, kb, v), reference(q, kb, v), 11)


def test_device_tensors(ctx, rng):
    q, k, v = qkv(rng, 2, 4, 2, 5, 19, 8, 8)
    dq, dk, dv = (ctx.to_device(a) for a in (q, k, v))
    out = ctx.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True, is_causal=True)
    assert isinstance(out, clattn.DeviceTensor) and out.shape == (2, 4, 5, 8)
    ref = reference(q, k, v, is_causal=True)
    assert_close(out.numpy(), ref, 19)
    target = ctx.to_device(np.full((2, 4, 5, 8), POISON, np.float32))
    same = ctx.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True, is_causal=True, out=target)
    assert same is target
    assert_close(target.numpy(), ref, 19)
    mixed = ctx.to_device(np.full((2, 4, 5, 8), POISON, np.float32))  # host inputs, a device output
    assert ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True, out=mixed) is mixed
    assert_close(mixed.numpy(), ref, 19)
    # Stored as f16 on the device.
    hq = ctx.to_device(q, dtype="f16")
    assert hq.dtype_name == "f16" and hq.numpy().dtype == np.float16
    rq = q.astype(np.float16).astype(np.float32)
    assert_close(ctx.scaled_dot_product_attention(hq, dk, dv, enable_gqa=True).numpy(), reference(rq, k, v), 19)
    # A transposed host view keeps its strides on the device.
    t = ctx.to_device(rand(rng, 2, 5, 4, 8).transpose(0, 2, 1, 3))
    assert not t.is_contiguous() and t.shape == (2, 4, 5, 8)


def test_host_out_written(ctx, rng):
    q, k, v = qkv(rng, 1, 2, 2, 3, 5, 4, 4)
    out = np.full((1, 2, 3, 4), POISON, np.float32)
    res = ctx.scaled_dot_product_attention(q, k, v, out=out)
    assert res is out
    assert_close(out, reference(q, k, v), 5)


@pytest.mark.parametrize("shape", [(0, 2, 2, 3, 5, 4, 4), (1, 2, 2, 0, 5, 4, 4), (1, 2, 2, 3, 0, 4, 4)])
def test_empty_sizes(ctx, rng, shape):
    q, k, v = qkv(rng, *shape)
    out = ctx.scaled_dot_product_attention(q, k, v)
    assert out.shape == (shape[0], shape[1], shape[3], shape[6])
    assert np.all(out == 0)


def test_mask_that_does_not_broadcast(ctx, rng):
    q, k, v = qkv(rng, 2, 3, 3, 6, 10, 8, 8)
    with pytest.raises(clattn.MaskError):
        ctx.scaled_dot_product_attention(q, k, v, attn_mask=np.zeros((3, 1, 1, 10), np.float32))


@pytest.mark.parametrize("causal", [False, True])
def test_score_modifiers(ctx, rng, causal):
    """Softcap, sinks and ALiBi, alone and together, against the float64 reference (GQA, Lq != Lk, a padding mask)."""
    q, k, v = qkv(rng, 2, 4, 2, 7, 12, 8, 8)
    sinks = rand(rng, 4)
    slopes = np.abs(rand(rng, 4))
    mask = np.ones((2, 1, 1, 12), bool)
    mask[1, ..., 9:] = False
    for kw in ({"softcap": 2.5}, {"sinks": sinks}, {"alibi_slopes": slopes},
               {"softcap": 2.5, "sinks": sinks, "alibi_slopes": slopes}):
        out, lse = ctx.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True,
                                                    causal_alignment="bottom_right", return_lse=True, **kw)
        r_out, r_lse, _ = reference(q, k, v, mask=mask, is_causal=causal, alignment="bottom_right",
                                    return_all=True, **kw)
        assert_close(out, r_out, 12)
        assert_close(lse, r_lse, 12)


@pytest.mark.parametrize("impl", ["fused", "unfused"])
def test_window_align(ctx, rng, impl):
    """window_align places the window and ALiBi on their own: bottom-right without a causal mask (FlashAttention's
    convention) and under a top-left one, top-left under a bottom-right one; Lq < Lk and Lq > Lk."""
    slopes = np.abs(rand(rng, 4))
    for lq, lk in ((5, 13), (13, 5)):
        q, k, v = qkv(rng, 2, 4, 2, lq, lk, 8, 8)
        for causal, alignment, window_align in ((False, "top_left", "bottom_right"),
                                                (True, "top_left", "bottom_right"),
                                                (True, "bottom_right", "top_left")):
            kw = dict(is_causal=causal, window=(2, 1), alibi_slopes=slopes, window_align=window_align)
            out = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, causal_alignment=alignment, impl=impl,
                                                   **kw)
            assert_close(out, reference(q, k, v, alignment=alignment, **kw), lk)
    with pytest.raises(clattn.InvalidArgumentError):
        ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, window_align="middle")
