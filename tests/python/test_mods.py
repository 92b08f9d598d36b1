# SPDX-License-Identifier: Apache-2.0
"""score_mod, mask_mod and mod_buffers on scaled_dot_product_attention: each mod written to equal a built-in
feature (causal mask, softcap, ALiBi, a document mask) against the float64 reference and the built-in itself, int32
and float32 buffers from the host and a device buffer, and the errors, Python's and the library's."""
import numpy as np
import pytest

import clattn
from conftest import assert_close, rand, reference


@pytest.fixture
def qkv(rng):
    return rand(rng, 2, 4, 9, 16), rand(rng, 2, 2, 9, 16), rand(rng, 2, 2, 9, 16)


def test_causal_mask_mod_is_causal(ctx, qkv):
    q, k, v = qkv
    out, lse = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, mask_mod="kv_idx <= q_idx",
                                                return_lse=True)
    ref, ref_lse, _ = reference(q, k, v, is_causal=True, return_all=True)
    assert_close(out, ref, 9)
    assert_close(lse, ref_lse, 9)
    builtin = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    assert_close(out, builtin.astype(np.float64), 9)


def test_softcap_score_mod_is_softcap(ctx, qkv):
    q, k, v = qkv
    out = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, score_mod="2.5f * tanh(score / 2.5f)")
    assert_close(out, reference(q, k, v, softcap=2.5), 9)


def test_buffers_int32_and_float32(ctx, rng, qkv):
    """A document mask read from an int32 buffer and ALiBi slopes from a float32 one, in one call."""
    q, k, v = qkv
    doc = np.int32([0, 0, 0, 1, 1, 2, 2, 2, 2])
    slopes = np.abs(rand(rng, 4)) * 0.5
    out = ctx.scaled_dot_product_attention(
        q, k, v, enable_gqa=True, mask_mod="doc[q_idx] == doc[kv_idx]",
        score_mod="score - slopes[h] * (float)abs(q_idx - kv_idx)", mod_buffers={"doc": doc, "slopes": slopes})
    same_doc = doc[:, None] == doc[None, :]
    assert_close(out, reference(q, k, v, mask=same_doc, alibi_slopes=slopes), 9)
    # An int32 limit compared with an int index (its bits read as float would mask nearly every key), and the
    # slopes from a device buffer.
    limit = np.int32([9, 3, 5, 1])
    dslopes = ctx.to_device(slopes[None])
    out = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, mask_mod="kv_idx < limit[h]",
                                           score_mod="score - slopes[h] * (float)abs(q_idx - kv_idx)",
                                           mod_buffers={"limit": limit, "slopes": dslopes})
    below = np.arange(9)[None, None, None, :] < limit[None, :, None, None]
    assert_close(out, reference(q, k, v, mask=below, alibi_slopes=slopes), 9)
    # The module-level function, on the default context.
    out = clattn.scaled_dot_product_attention(q, k, v, enable_gqa=True, mask_mod="doc[q_idx] == doc[kv_idx]",
                                              mod_buffers={"doc": doc})
    assert_close(out, reference(q, k, v, mask=same_doc), 9)


def expect(exc_type, status, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert info.value.status == status, str(info.value)
    return info.value


def test_errors(ctx, qkv):
    q, k, v = qkv
    sdpa = ctx.scaled_dot_product_attention
    doc = np.zeros(9, np.int32)
    mask = "doc[q_idx] == doc[kv_idx]"
    # Python's checks: types, dtypes, how many buffers, a device buffer it cannot describe.
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod=5)
    e = expect(clattn.DTypeError, -3007, sdpa, q, k, v, enable_gqa=True, mask_mod=mask,
               mod_buffers={"doc": doc.astype(np.int64)})
    assert "int32" in str(e)
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod=mask,
           mod_buffers={"doc": doc, "a": doc, "c": doc})
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod=mask, mod_buffers=[doc])
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod=mask, mod_buffers={1: doc})
    transposed = ctx.to_device(np.zeros((9, 2), np.float32).T)  # kept strided on the device
    expect(clattn.ShapeError, -3003, sdpa, q, k, v, enable_gqa=True, mask_mod=mask, mod_buffers={"doc": transposed})
    expect(clattn.DTypeError, -3007, sdpa, q, k, v, enable_gqa=True, mask_mod=mask,
           mod_buffers={"doc": ctx.to_device(doc[None].astype(np.float16))})
    # The library's: a reserved name, a character that could end the expression, a buffer without a mod, code
    # that does not compile, and the implementations that have no mods.
    e = expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod="b[q_idx] == 0",
               mod_buffers={"b": doc})
    assert "is taken" in e.detail
    e = expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mask_mod="1; x")
    assert "';'" in e.detail
    e = expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, enable_gqa=True, mod_buffers={"doc": doc})
    assert "neither a score_mod nor a mask_mod" in e.detail
    e = expect(clattn.BuildError, -3014, sdpa, q, k, v, enable_gqa=True, score_mod="score + no_such_name")
    assert "score_mod" in e.detail and "no_such_name" in e.detail
    expect(clattn.UnsupportedError, -3021, sdpa, q, k, v, enable_gqa=True, mask_mod=mask, mod_buffers={"doc": doc},
           impl="unfused")
    expect(clattn.UnsupportedError, -3021, sdpa, q, k, v, enable_gqa=True, mask_mod=mask, mod_buffers={"doc": doc},
           return_weights=True)
