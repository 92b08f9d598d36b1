# SPDX-License-Identifier: Apache-2.0
"""FlashAttention's serving functions (flash_attn_varlen_func, flash_attn_with_kvcache, quantize_kv) against a
float64 NumPy reference computed sequence by sequence with FlashAttention's bottom-right alignment: packed batches
with sequences of length 0 and 1 inside, GQA, causal masks, windows, softcap and ALiBi; paged caches with shuffled
and shared pages; dense caches; int8 and fp8 keys and values (the reference reads the dequantized values); device
tensors; and the errors of bad index arrays, block tables and scales."""
import numpy as np
import pytest

import clattn
from conftest import POISON, assert_close, rand


def fa_reference(q, k, v, scale=None, causal=False, window=(-1, -1), softcap=0.0, alibi=None):
    """One sequence as FlashAttention computes it, in float64: q [Lq, Hq, D], k [Lk, Hkv, D], v [Lk, Hkv, Dv]; query
    i sits at position i + Lk - Lq for the causal mask, the window and ALiBi. Returns out [Lq, Hq, Dv] and lse
    [Hq, Lq] (zeros and -inf for a row that sees no key)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    lq, hq, d = q.shape
    lk, hkv = k.shape[:2]
    k = np.repeat(k, hq // hkv, axis=1)
    v = np.repeat(v, hq // hkv, axis=1)
    s = np.einsum("qhd,khd->hqk", q, k) * (1 / np.sqrt(d) if scale is None else scale)
    if softcap:
        s = softcap * np.tanh(s / softcap)
    i = np.arange(lq)[:, None] + lk - lq
    j = np.arange(lk)[None, :]
    if alibi is not None:
        s = s - np.asarray(alibi, np.float64)[:, None, None] * np.abs(i - j)
    left, right = window
    if causal:
        right = 0
    keep = np.ones((lq, lk), bool)
    if left >= 0:
        keep &= j >= i - left
    if right >= 0:
        keep &= j <= i + right
    s = np.where(keep, s, -np.inf)
    m = s.max(-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    tot = p.sum(-1, keepdims=True)
    w = np.where(tot > 0, p / np.where(tot > 0, tot, 1), 0)
    lse = np.where(tot > 0, np.log(np.where(tot > 0, tot, 1)) + m, -np.inf)[..., 0]
    return np.einsum("hqk,khd->qhd", w, v), lse


def packed_reference(q, k, v, cu_q, cu_k, **options):
    """fa_reference of every sequence of a packed batch: out [total_q, Hq, Dv], lse [Hq, total_q]."""
    out = np.zeros(q.shape[:2] + v.shape[2:])
    lse = np.full((q.shape[1], q.shape[0]), -np.inf)
    for b in range(len(cu_q) - 1):
        rows = slice(cu_q[b], cu_q[b + 1])
        keys = slice(cu_k[b], cu_k[b + 1])
        out[rows], lse[:, rows] = fa_reference(q[rows], k[keys], v[keys], **options)
    return out, lse


def offsets(lens):
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)


def fp8_decode(codes):
    """OCP E4M3 codes as float64, decoded here rather than by the library under test: bias 7, subnormals below
    exponent 1, 0x7f and 0xff NaN."""
    c = np.asarray(codes).astype(np.int64)
    e, m = (c >> 3) & 0xF, c & 7
    mag = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    mag = np.where((c & 0x7F) == 0x7F, np.nan, mag)
    return np.where(c & 0x80, -mag, mag)


def dequantize(stored, scales, kind):
    """The values the kernels read from 8-bit storage: stored * scale, a scale per row or per head."""
    vals = stored.astype(np.float64) if kind == "i8" else fp8_decode(stored)
    s = np.asarray(scales, np.float64)
    return vals * (s[..., None] if s.ndim == stored.ndim - 1 else s.reshape(-1, 1))


QL = [3, 0, 1, 37, 20]  # lengths 0 and 1 inside the batch
KL = [5, 4, 1, 37, 61]


def packed_inputs(rng, q_lens, k_lens, hq, hkv, d, dv=None):
    dv = dv or d
    return (rand(rng, sum(q_lens), hq, d), rand(rng, sum(k_lens), hkv, d), rand(rng, sum(k_lens), hkv, dv),
            offsets(q_lens), offsets(k_lens))


@pytest.mark.parametrize("options", [
    {},
    {"causal": True},
    {"window_size": (4, 2)},  # no causal mask, sequences with Lq != Lk: aligned through a mask_mod
    {"causal": True, "window_size": (9, -1)},
    {"softmax_scale": 0.3, "softcap": 2.5},
], ids=["plain", "causal", "window", "causal-window", "scale-softcap"])
def test_varlen_matches_reference(ctx, rng, options):
    q, k, v, cu_q, cu_k = packed_inputs(rng, QL, KL, 6, 2, 24)
    out, lse = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(QL), max(KL), return_lse=True, context=ctx,
                                             **options)
    ref, ref_lse = packed_reference(q, k, v, cu_q, cu_k,
                                    **{{"softmax_scale": "scale", "window_size": "window"}.get(n, n): x
                                       for n, x in options.items()})
    assert out.shape == (sum(QL), 6, 24) and out.dtype == np.float32
    assert lse.shape == (6, sum(QL))
    assert_close(out, ref, max(KL))
    assert_close(lse, ref_lse, max(KL))


def test_varlen_alignment_is_bottom_right(ctx, rng):
    """One sequence of 4 queries over 10 keys, causal: the last query sees every key, the first the first 7; top-left
    alignment would give the first query one key. And a window open to the right without a causal mask."""
    q, k, v, cu_q, cu_k = packed_inputs(rng, [4], [10], 2, 2, 8)
    out = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, causal=True, context=ctx)
    full = fa_reference(q, k, v)[0]
    first = fa_reference(q[:1], k[:7], v[:7])[0]
    assert_close(out[3:], full[3:], 10)
    assert_close(out[:1], first, 10)
    out = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, window_size=(1, 1), context=ctx)
    # Query 0 sits at position 6: keys 5, 6 and 7.
    assert_close(out[:1], fa_reference(q[:1], k[5:8], v[5:8])[0], 10)


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_alibi(ctx, rng, causal):
    """ALiBi at each sequence's bottom right: clattn's own with a causal mask, a score_mod without one (Lq != Lk)."""
    q, k, v, cu_q, cu_k = packed_inputs(rng, QL, KL, 4, 2, 16)
    slopes = np.abs(rand(rng, 4)) * 0.3
    out, lse = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, causal=causal, alibi_slopes=slopes, softcap=3.0,
                                             return_lse=True, context=ctx)
    ref, ref_lse = packed_reference(q, k, v, cu_q, cu_k, causal=causal, alibi=slopes, softcap=3.0)
    assert_close(out, ref, max(KL))
    assert_close(lse, ref_lse, max(KL))


def test_varlen_float16_and_float64_in(ctx, rng):
    q, k, v, cu_q, cu_k = packed_inputs(rng, [2, 5], [3, 5], 2, 1, 8)
    out16 = clattn.flash_attn_varlen_func(q.astype(np.float16), k.astype(np.float16), v.astype(np.float16), cu_q,
                                          cu_k, causal=True, context=ctx)
    assert out16.dtype == np.float16
    r16 = packed_reference(*(a.astype(np.float16) for a in (q, k, v)), cu_q, cu_k, causal=True)[0]
    assert_close(out16, r16.astype(np.float16).astype(np.float64), 5, floor=2e-3)
    out64 = clattn.flash_attn_varlen_func(q.astype(np.float64), k, v, cu_q, cu_k, context=ctx)
    assert out64.dtype == np.float64
    assert_close(out64, packed_reference(q, k, v, cu_q, cu_k)[0], 5)


def build_pages(rng, ks, vs, page, share_first=False, extra=3):
    """vLLM caches [num_blocks, page, Hkv, D] holding sequence b's keys and values in shuffled pages, and the block
    table [B, max_blocks + 1]. share_first: sequence 1's first page is sequence 0's (their first keys must be equal).
    Unused rows and pages hold POISON, and table entries past a sequence's pages point past the cache: neither may
    be read."""
    used = [-(-len(k) // page) for k in ks]
    pages = sum(used) - (1 if share_first else 0) + extra
    order = rng.permutation(pages)
    table = np.full((len(ks), max(used + [1]) + 1), pages + 1000, np.int32)
    kc = np.full((pages, page) + ks[0].shape[1:], POISON, np.float32)
    vc = np.full((pages, page) + vs[0].shape[1:], POISON, np.float32)
    n = 0
    for b, (k, v) in enumerate(zip(ks, vs)):
        for e in range(used[b]):
            if share_first and b == 1 and e == 0:
                table[1, 0] = table[0, 0]
                continue
            table[b, e] = order[n]
            n += 1
            kc[table[b, e], :len(k[e * page:(e + 1) * page])] = k[e * page:(e + 1) * page]
            vc[table[b, e], :len(v[e * page:(e + 1) * page])] = v[e * page:(e + 1) * page]
    return kc, vc, table


def gather(cache, table, b, length):
    """Sequence b's first `length` rows of a paged cache, through the block table."""
    page = cache.shape[1]
    rows = [cache[table[b, j // page], j % page] for j in range(length)]
    return np.array(rows).reshape((length,) + cache.shape[2:])


def cache_sequences(rng, lens, hkv, d, dv, share_first):
    ks = [rand(rng, n, hkv, d) for n in lens]
    vs = [rand(rng, n, hkv, dv) for n in lens]
    if share_first:
        ks[1][:16], vs[1][:16] = ks[0][:16], vs[0][:16]
    return ks, vs


@pytest.mark.parametrize("page,lq", [(8, 1), (16, 4)])
def test_kvcache_paged(ctx, rng, page, lq):
    """Decode (one query) and chunked prefill (four) over shuffled pages with a shared prefix page, causal, GQA."""
    lens = np.array([70, 33, 1, 0], np.int32)
    ks, vs = cache_sequences(rng, lens, 2, 32, 16, share_first=True)
    kc, vc, table = build_pages(rng, ks, vs, page, share_first=True)
    q = rand(rng, 4, lq, 8, 32)
    out, lse = clattn.flash_attn_with_kvcache(q, kc, vc, lens, table, causal=True, return_softmax_lse=True,
                                              context=ctx)
    assert out.shape == (4, lq, 8, 16) and lse.shape == (4, 8, lq)
    for b, n in enumerate(lens):
        ref, ref_lse = fa_reference(q[b], gather(kc, table, b, n), gather(vc, table, b, n), causal=True)
        assert_close(out[b], ref, 70)
        assert_close(lse[b], ref_lse, 70)
    # A window, softcap and ALiBi on the same cache (chunked prefill: Lq > 1 aligned per sequence).
    slopes = np.abs(rand(rng, 8)) * 0.2
    out = clattn.flash_attn_with_kvcache(q, kc, vc, lens, table, causal=True, window_size=(20, -1), softcap=4.0,
                                         alibi_slopes=slopes, context=ctx)
    for b, n in enumerate(lens):
        ref, _ = fa_reference(q[b], gather(kc, table, b, n), gather(vc, table, b, n), causal=True,
                              window=(20, -1), softcap=4.0, alibi=slopes)
        assert_close(out[b], ref, 70)


@pytest.mark.parametrize("rows", [13, 16])
def test_kvcache_dense(ctx, rng, rows):
    """A dense cache [B, Lk_max, Hkv, D] with its own length per sequence, each aligned at its own bottom right (13
    rows: padded on upload; 16: read in place). Rows past cache_seqlens are poison."""
    lens = np.array([rows, 5, 0, 9])
    kc = np.full((4, rows, 2, 16), POISON, np.float32)
    vc = np.full((4, rows, 2, 16), POISON, np.float32)
    for b, n in enumerate(lens):
        kc[b, :n], vc[b, :n] = rand(rng, n, 2, 16), rand(rng, n, 2, 16)
    q = rand(rng, 4, 3, 4, 16)
    out = clattn.flash_attn_with_kvcache(q, kc, vc, lens, causal=True, window_size=(6, -1), context=ctx)
    for b, n in enumerate(lens):
        assert_close(out[b], fa_reference(q[b], kc[b, :n], vc[b, :n], causal=True, window=(6, -1))[0], rows)
    # An int for every sequence, and None for the whole cache.
    out = clattn.flash_attn_with_kvcache(q, kc[:, :5], vc[:, :5], 5, context=ctx)
    whole = clattn.flash_attn_with_kvcache(q, kc[:, :5], vc[:, :5], context=ctx)
    for b in range(4):
        if lens[b] >= 5:
            assert_close(out[b], fa_reference(q[b], kc[b, :5], vc[b, :5])[0], 5)
    np.testing.assert_array_equal(out, whole)


def test_kvcache_device_tensors(ctx, rng):
    """A device cache stays on the device: a dense one read in place, a device query gives a device result in
    FlashAttention's layout; a dense device cache of any row count (12) and strided views of one work alike."""
    lens = np.array([16, 7])
    kc, vc = rand(rng, 2, 16, 1, 8), rand(rng, 2, 16, 1, 8)
    q = rand(rng, 2, 2, 2, 8)
    dq, dk, dv = ctx.to_device(q), ctx.to_device(kc), ctx.to_device(vc)
    out, lse = clattn.flash_attn_with_kvcache(dq, dk, dv, lens, causal=True, return_softmax_lse=True, context=ctx)
    assert isinstance(out, clattn.DeviceTensor) and out.shape == (2, 2, 2, 8)
    assert isinstance(lse, clattn.DeviceTensor) and lse.shape == (1, 2, 2, 2)
    for b, n in enumerate(lens):
        ref, ref_lse = fa_reference(q[b], kc[b, :n], vc[b, :n], causal=True)
        assert_close(out.numpy()[b], ref, 16)
        assert_close(lse.numpy()[0, b], ref_lse, 16)
    host = clattn.flash_attn_with_kvcache(q, dk, dv, lens, causal=True, context=ctx)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, out.numpy())
    out = clattn.flash_attn_with_kvcache(q, ctx.to_device(kc[:, :12]), ctx.to_device(vc[:, :12]), [12, 7],
                                         causal=True, context=ctx)
    for b, n in enumerate([12, 7]):
        assert_close(out[b], fa_reference(q[b], kc[b, :n], vc[b, :n], causal=True)[0], 12)
    wide = rand(rng, 2, 13, 3, 8)  # a cache of 3 heads read as its head 1 alone: strides of a view
    out = clattn.flash_attn_with_kvcache(q, wide[:, :, 1:2], wide[:, :, 1:2], [13, 4], context=ctx)
    for b, n in enumerate([13, 4]):
        assert_close(out[b], fa_reference(q[b], wide[b, :n, 1:2], wide[b, :n, 1:2])[0], 13)


def test_varlen_paged(ctx, rng):
    """Packed queries over a paged cache (FlashAttention's varlen call with a block table): cu_seqlens_k sums the
    cache lengths."""
    q_lens, k_lens = [4, 0, 9, 1], [20, 33, 9, 0]
    ks, vs = cache_sequences(rng, k_lens, 2, 16, 16, share_first=False)
    kc, vc, table = build_pages(rng, ks, vs, 8)
    q = rand(rng, sum(q_lens), 4, 16)
    cu_q, cu_k = offsets(q_lens), offsets(k_lens)
    out = clattn.flash_attn_varlen_func(q, kc, vc, cu_q, cu_k, causal=True, block_table=table, context=ctx)
    ref, _ = packed_reference(q, np.concatenate(ks), np.concatenate(vs), cu_q, cu_k, causal=True)
    assert_close(out, ref, 33)


def test_quantize_kv(rng):
    x = rand(rng, 5, 3, 2, 16)
    x[1, 2, 0] = 0  # a row of zeros: scale 0, stored 0
    q8, s8 = clattn.quantize_kv(x, "i8")
    assert q8.dtype == np.int8 and s8.shape == (5, 3, 2) and s8.dtype == np.float32
    np.testing.assert_allclose(s8, np.abs(x).max(-1) / 127, rtol=1e-6)
    assert s8[1, 2, 0] == 0 and np.all(q8[1, 2, 0] == 0)
    assert np.all(np.abs(dequantize(q8, s8, "i8") - x) <= s8[..., None] * 0.5001 + 1e-7)
    f8, sf = clattn.quantize_kv(x, "fp8")
    assert f8.dtype == np.uint8 and sf.shape == (2,)
    np.testing.assert_allclose(sf, np.abs(x).max(axis=(0, 1, 3)) / 448, rtol=1e-6)
    back = dequantize(f8, sf, "fp8")
    assert np.all(np.abs(back - x) <= np.abs(x) / 16 + sf.max() * 2.0 ** -9)  # 3 mantissa bits, subnormal steps
    # Given scales: one for all, one per head; int8 then rounds x / scale and saturates at 127.
    g8, gs = clattn.quantize_kv(x, "i8", scale=0.01)
    assert gs.shape == () and np.all(g8 == np.clip(np.round(x / np.float32(0.01)), -127, 127))
    h8, hs = clattn.quantize_kv(x, "fp8", scale=[0.01, 0.02])
    np.testing.assert_array_equal(hs, np.float32([0.01, 0.02]))
    assert np.all(np.abs(dequantize(h8, hs, "fp8") - x) <= np.abs(x) / 16 + hs.max() * 2.0 ** -9)
    with pytest.raises(clattn.InvalidArgumentError):
        clattn.quantize_kv(x, "fp8", scale=0.0)
    with pytest.raises(clattn.ShapeError):
        clattn.quantize_kv(x, "i8", scale=[1.0, 2.0, 3.0])
    with pytest.raises(clattn.DTypeError):
        clattn.quantize_kv(x, "int4")


@pytest.mark.parametrize("kind", ["i8", "fp8"])
def test_kvcache_quantized(ctx, rng, kind):
    """A paged 8-bit cache from quantize_kv (int8: a scale per token and head; fp8: one per head), against the
    reference over the dequantized values; and the same cache as device tensors."""
    lens = np.array([40, 19, 3, 12], np.int32)
    ks, vs = cache_sequences(rng, lens, 2, 32, 32, share_first=True)
    kc, vc, table = build_pages(rng, ks, vs, 16, share_first=True)
    if kind == "fp8":  # per-head scales from the real values (the poison would swamp them)
        kscale = np.abs(np.concatenate(ks)).max(axis=(0, 2)) / 448
        vscale = np.abs(np.concatenate(vs)).max(axis=(0, 2)) / 448
    else:
        kscale = vscale = None
    k8, ks8 = clattn.quantize_kv(kc, kind, scale=kscale)
    v8, vs8 = clattn.quantize_kv(vc, kind, scale=vscale)
    kd, vd = dequantize(k8, ks8, kind), dequantize(v8, vs8, kind)
    q = rand(rng, 4, 2, 4, 32)
    kw = {"kv_dtype": "fp8"} if kind == "fp8" else {}
    out = clattn.flash_attn_with_kvcache(q, k8, v8, lens, table, causal=True, k_scale=ks8, v_scale=vs8, context=ctx,
                                         **kw)
    for b, n in enumerate(lens):
        ref, _ = fa_reference(q[b], gather(kd, table, b, n), gather(vd, table, b, n), causal=True)
        assert_close(out[b], ref, 40)
    dev = clattn.flash_attn_with_kvcache(ctx.to_device(q), ctx.to_device(k8, kind), ctx.to_device(v8, kind), lens,
                                         table, causal=True, k_scale=ctx.to_device(np.atleast_2d(ks8)),
                                         v_scale=vs8, context=ctx)
    assert ctx.to_device(k8, kind).dtype_name == kind
    np.testing.assert_array_equal(dev.numpy(), out)


def test_quantized_varlen_and_dense(ctx, rng):
    """int8 packed keys and values (a scale per token and head), and an fp8 dense cache with fp16 per-head scales."""
    q, k, v, cu_q, cu_k = packed_inputs(rng, QL, KL, 4, 2, 16)
    k8, ks = clattn.quantize_kv(k, "i8")
    v8, vs = clattn.quantize_kv(v, "i8")
    out = clattn.flash_attn_varlen_func(q, k8, v8, cu_q, cu_k, causal=True, k_scale=ks, v_scale=vs, context=ctx)
    ref, _ = packed_reference(q, dequantize(k8, ks, "i8"), dequantize(v8, vs, "i8"), cu_q, cu_k, causal=True)
    assert_close(out, ref, max(KL))

    kc, vc = rand(rng, 3, 11, 2, 16), rand(rng, 3, 11, 2, 16)
    lens = np.array([11, 4, 8])
    scales = np.float16([0.01, 0.005])  # fp16 scales: the reference reads the same fp16 values
    f8k, _ = clattn.quantize_kv(kc, "fp8", scale=scales.astype(np.float32))
    f8v, _ = clattn.quantize_kv(vc, "fp8", scale=scales.astype(np.float32))
    qd = rand(rng, 3, 1, 4, 16)
    out = clattn.flash_attn_with_kvcache(qd, f8k, f8v, lens, kv_dtype="fp8", k_scale=scales, v_scale=scales,
                                         context=ctx)
    s = scales.astype(np.float32)
    for b, n in enumerate(lens):
        ref, _ = fa_reference(qd[b], dequantize(f8k[b, :n], s, "fp8"), dequantize(f8v[b, :n], s, "fp8"))
        assert_close(out[b], ref, 11)


def expect(exc_type, status, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert info.value.status == status, str(info.value)
    return info.value


def test_errors(ctx, rng):
    q, k, v, cu_q, cu_k = packed_inputs(rng, [2, 3, 1], [17, 9, 30], 2, 1, 8)
    varlen = clattn.flash_attn_varlen_func
    # The library checks the offsets and says what is wrong with them.
    e = expect(clattn.InvalidArgumentError, -3025, varlen, q, k, v, np.int32([0, 2, 1, 6]), cu_k, context=ctx)
    assert "cu_seqlens_q[2]" in e.detail and "never decrease" in e.detail
    e = expect(clattn.InvalidArgumentError, -3025, varlen, q, k, v, cu_q, np.int32([1, 17, 26, 56]), context=ctx)
    assert "cu_seqlens_k[0]" in e.detail
    e = expect(clattn.InvalidArgumentError, -3025, varlen, q, k, v, cu_q, np.int32([0, 17, 26, 57]), context=ctx)
    assert "past the 56 rows" in e.detail
    expect(clattn.ShapeError, -3002, varlen, q, k, v, cu_q, cu_k[:3], context=ctx)
    expect(clattn.DTypeError, -3007, varlen, q, k, v, cu_q.astype(np.float32), cu_k, context=ctx)
    expect(clattn.UnsupportedError, -3021, varlen, q, k, v, cu_q, cu_k, 2, 30, 0.1, context=ctx)
    expect(clattn.ShapeError, -3002, varlen, q, k, v, cu_q, cu_k, alibi_slopes=np.ones((3, 2)), context=ctx)
    expect(clattn.MaskError, -3008, varlen, q, k, v, cu_q, cu_k, window_size=(-2, 0), context=ctx)
    # 8-bit keys: uint8 bytes need kv_dtype; scales are required (the library says which and how).
    k8, ks = clattn.quantize_kv(k, "i8")
    v8, vs = clattn.quantize_kv(v, "i8")
    expect(clattn.DTypeError, -3007, varlen, q, k8.view(np.uint8), v8.view(np.uint8), cu_q, cu_k, context=ctx)
    expect(clattn.DTypeError, -3007, varlen, q, k, v, cu_q, cu_k, kv_dtype="fp8", context=ctx)
    e = expect(clattn.InvalidArgumentError, -3027, varlen, q, k8, v8, cu_q, cu_k, v_scale=vs, context=ctx)
    assert "k_scale" in e.detail
    e = expect(clattn.InvalidArgumentError, -3027, varlen, q, k8, v8, cu_q, cu_k, k_scale=ks[:, :1].T, v_scale=vs,
               context=ctx)
    assert "do not broadcast" in e.detail
    # Floats never become 8-bit without their scales.
    expect(clattn.DTypeError, -3007, ctx.to_device, k, "fp8")
    expect(clattn.DTypeError, -3007, ctx.scaled_dot_product_attention, q[None], k[None], v[None], dtype="i8")

    # A block table entry past the cache, and lengths past the table.
    ks_, vs_ = cache_sequences(rng, [10, 20], 1, 8, 8, share_first=False)
    kc, vc, table = build_pages(rng, ks_, vs_, 8, extra=0)
    qd = rand(rng, 2, 1, 2, 8)
    kvcache = clattn.flash_attn_with_kvcache
    out = kvcache(qd, kc, vc, [10, 20], table, context=ctx)  # the table is good as built
    bad = table.copy()
    bad[1, 0] = kc.shape[0]
    e = expect(clattn.InvalidArgumentError, -3026, kvcache, qd, kc, vc, [10, 20], bad, context=ctx)
    assert "block_table[1][0]" in e.detail and "pages" in e.detail
    e = expect(clattn.InvalidArgumentError, -3025, kvcache, qd, kc, vc, [10, 100], table, context=ctx)
    assert "seqlens_k[1]" in e.detail
    expect(clattn.ShapeError, -3002, kvcache, qd, kc, vc, [10, 20], table[:1], context=ctx)
    expect(clattn.ShapeError, -3002, kvcache, qd, kc, vc, [10, 20, 3], table, context=ctx)
    e = expect(clattn.ShapeError, -3002, kvcache, qd, kc[:, :6], vc[:, :6], [6, 6], table, context=ctx)
    assert "power of two" in e.detail
    # A dense cache: lengths past its rows are the library's seqlens_k (cache_seqlens).
    e = expect(clattn.InvalidArgumentError, -3025, kvcache, qd, kc[:2], vc[:2], [8, 9], context=ctx)
    assert "seqlens_k[1] is 9" in e.detail and "dense cache" in e.detail
    assert np.all(np.isfinite(out))


def test_module_exports():
    for name in ("flash_attn_varlen_func", "flash_attn_with_kvcache", "quantize_kv"):
        assert name in clattn.__all__ and callable(getattr(clattn, name))


def test_window_and_alibi_align_bottom_right_without_causal(ctx, rng):
    """FlashAttention's windows and ALiBi align at each sequence's bottom right without a causal mask too: dense
    caches of different lengths (query rows fewer than keys) and packed sequences with more queries than keys."""
    lens = np.array([20, 3, 11])
    kc, vc = rand(rng, 3, 24, 2, 16), rand(rng, 3, 24, 2, 16)
    q = rand(rng, 3, 4, 4, 16)
    slopes = np.float32([0.3, 0.1, 0.05, 0.02])
    out = clattn.flash_attn_with_kvcache(q, kc, vc, lens, window_size=(2, 1), alibi_slopes=slopes, context=ctx)
    for b, n in enumerate(lens):
        ref, _ = fa_reference(q[b], kc[b, :n], vc[b, :n], window=(2, 1), alibi=slopes)
        assert_close(out[b], ref, 24)
    q, k, v, cu_q, cu_k = packed_inputs(rng, [7, 2, 5], [3, 9, 5], 4, 2, 16)
    out = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, window_size=(-1, 0), alibi_slopes=slopes, context=ctx)
    ref, _ = packed_reference(q, k, v, cu_q, cu_k, window=(-1, 0), alibi=slopes)
    assert_close(out, ref, 9)


def fill_cache(rng, batch, rows, hkv, d, lens):
    """A dense cache [batch, rows, hkv, d] of poison, its first lens[b] rows random."""
    kc = np.full((batch, rows, hkv, d), POISON, np.float32)
    vc = np.full((batch, rows, hkv, d), POISON, np.float32)
    for b, n in enumerate(lens):
        kc[b, :n], vc[b, :n] = rand(rng, n, hkv, d), rand(rng, n, hkv, d)
    return kc, vc


def test_kvcache_appends_new_keys(ctx, rng):
    """k= and v= are written at cache_seqlens before the attention, which sees them (FlashAttention's semantics):
    into a dense host cache (updated in place), a dense device cache, and a paged cache through its block table."""
    lens = np.array([5, 0, 17])
    kc, vc = fill_cache(rng, 3, 20, 2, 16, lens)
    q, kn, vn = rand(rng, 3, 3, 4, 16), rand(rng, 3, 3, 2, 16), rand(rng, 3, 3, 2, 16)
    before = kc.copy()
    out = clattn.flash_attn_with_kvcache(q, kc, vc, lens, causal=True, k=kn, v=vn, context=ctx)
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(kc[b, n:n + 3], kn[b])
        np.testing.assert_array_equal(vc[b, n:n + 3], vn[b])
        np.testing.assert_array_equal(kc[b, :n], before[b, :n])
        np.testing.assert_array_equal(kc[b, n + 3:], before[b, n + 3:])
        ref, _ = fa_reference(q[b], kc[b, :n + 3], vc[b, :n + 3], causal=True)
        assert_close(out[b], ref, 20)
    # A device cache is written on the device.
    kc2, vc2 = fill_cache(rng, 3, 20, 2, 16, lens)
    dk, dv = ctx.to_device(kc2), ctx.to_device(vc2)
    out = clattn.flash_attn_with_kvcache(q, dk, dv, lens, k=kn, v=vn, window_size=(4, 0), context=ctx)
    got = dk.numpy()
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(got[b, n:n + 3], kn[b])
        ref, _ = fa_reference(q[b], got[b, :n + 3], dv.numpy()[b, :n + 3], window=(4, 0))
        assert_close(out[b], ref, 20)
    # Paged: the new keys land in their pages, the sequences' lengths grow by 3.
    ks, vs = cache_sequences(rng, [13, 6], 2, 16, 16, share_first=False)
    pc, pv, table = build_pages(rng, [np.concatenate([x, np.zeros((3, 2, 16), np.float32)]) for x in ks],
                                [np.concatenate([x, np.zeros((3, 2, 16), np.float32)]) for x in vs], 8)
    qp, kp, vp = rand(rng, 2, 2, 4, 16), rand(rng, 2, 3, 2, 16), rand(rng, 2, 3, 2, 16)
    out = clattn.flash_attn_with_kvcache(qp, pc, pv, [13, 6], table, causal=True, k=kp, v=vp, context=ctx)
    for b, n in enumerate([13, 6]):
        keys = gather(pc, table, b, n + 3)
        np.testing.assert_array_equal(keys[n:], kp[b])
        ref, _ = fa_reference(qp[b], keys, gather(pv, table, b, n + 3), causal=True)
        assert_close(out[b], ref, 16)


@pytest.mark.parametrize("kind", ["i8", "fp8"])
def test_kvcache_appends_into_quantized_caches(ctx, rng, kind):
    """8-bit caches quantize the new rows on the device: int8 with per-token scales (each new row's scale computed
    and stored), fp8 with one scale per head (used as given); the attention reads them back as stored."""
    lens = np.array([6, 2])
    kc, vc = fill_cache(rng, 2, 12, 2, 16, lens)
    kc[kc == POISON] = 0
    vc[vc == POISON] = 0
    per_head = np.float32([0.01, 0.02])
    k8, ks = clattn.quantize_kv(kc, kind, scale=None if kind == "i8" else per_head)
    v8, vs = clattn.quantize_kv(vc, kind, scale=None if kind == "i8" else per_head)
    q, kn, vn = rand(rng, 2, 2, 4, 16), rand(rng, 2, 2, 2, 16), rand(rng, 2, 2, 2, 16)
    out = clattn.flash_attn_with_kvcache(q, k8, v8, lens, causal=True, k=kn, v=vn, k_scale=ks, v_scale=vs,
                                         kv_dtype=kind, context=ctx)
    want8, want_s = clattn.quantize_kv(kn, kind, scale=None if kind == "i8" else per_head)
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(k8[b, n:n + 2], want8[b])
        if kind == "i8":
            np.testing.assert_array_equal(ks[b, n:n + 2], want_s[b])
        ref, _ = fa_reference(q[b], dequantize(k8[b, :n + 2], ks if kind == "fp8" else ks[b, :n + 2], kind),
                              dequantize(v8[b, :n + 2], vs if kind == "fp8" else vs[b, :n + 2], kind), causal=True)
        assert_close(out[b], ref, 12)


def test_kv_append(ctx, rng):
    """kv_append (vLLM's reshape_and_cache): tokens into their slots of a paged cache, -1 skipping one, the rest
    untouched; int8 per-slot scales computed; a device cache written on the device."""
    kc = np.full((4, 8, 2, 16), POISON, np.float32)
    vc = np.full((4, 8, 2, 16), POISON, np.float32)
    k, v = rand(rng, 5, 2, 16), rand(rng, 5, 2, 16)
    slots = np.int32([9, 0, -1, 31, 16])
    clattn.serving.kv_append(k, v, kc, vc, slots, context=ctx)
    for t, s in enumerate(slots):
        if s >= 0:
            np.testing.assert_array_equal(kc[s // 8, s % 8], k[t])
            np.testing.assert_array_equal(vc[s // 8, s % 8], v[t])
    assert np.sum(kc[:, :, 0, 0] != POISON) == 4
    assert clattn.serving.reshape_and_cache is clattn.kv_append
    k8 = np.zeros((4, 8, 2, 16), np.int8)
    ks = np.zeros((4, 8, 2), np.float32)
    v8, vs = k8.copy(), ks.copy()
    clattn.kv_append(k, v, k8, v8, slots, k_scale=ks, v_scale=vs, context=ctx)
    want, want_s = clattn.quantize_kv(k, "i8")
    for t, s in enumerate(slots):
        if s >= 0:
            np.testing.assert_array_equal(k8[s // 8, s % 8], want[t])
            np.testing.assert_array_equal(ks[s // 8, s % 8], want_s[t])
    dk = ctx.to_device(np.zeros((4, 8, 2, 16), np.float32))
    dv = ctx.to_device(np.zeros((4, 8, 2, 16), np.float32))
    clattn.kv_append(k, v, dk, dv, slots, context=ctx)
    np.testing.assert_array_equal(dk.numpy()[1, 1], k[0])


def test_append_errors(ctx, rng):
    lens = np.array([5, 2])
    kc, vc = fill_cache(rng, 2, 8, 1, 8, lens)
    q, kn, vn = rand(rng, 2, 1, 2, 8), rand(rng, 2, 2, 1, 8), rand(rng, 2, 2, 1, 8)
    kvcache = clattn.flash_attn_with_kvcache
    before = kc.copy()
    expect(clattn.UnsupportedError, -3021, kvcache, q, kc, vc, lens, k=kn, v=vn, rotary_cos=np.ones((8, 4)),
           rotary_sin=np.ones((8, 4)), context=ctx)
    expect(clattn.UnsupportedError, -3021, kvcache, q, kc, vc, lens, cache_batch_idx=np.int32([1, 0]), context=ctx)
    expect(clattn.InvalidArgumentError, -3000, kvcache, q, kc, vc, lens, k=kn, context=ctx)
    expect(clattn.InvalidArgumentError, -3000, kvcache, q, kc, vc, k=kn, v=vn, context=ctx)
    e = expect(clattn.InvalidArgumentError, -3025, kvcache, q, kc, vc, [7, 2], k=kn, v=vn, context=ctx)
    assert "cache_seqlens[0] is 7" in str(e)
    expect(clattn.ShapeError, -3002, kvcache, q, kc, vc, lens, k=kn[:1], v=vn[:1], context=ctx)
    expect(clattn.DTypeError, -3007, kvcache, q, kc, vc, lens, k=kn.astype(np.int8), v=vn.astype(np.int8),
           context=ctx)
    ro = kc.copy()
    ro.flags.writeable = False
    expect(clattn.InvalidArgumentError, -3000, kvcache, q, ro, vc, lens, k=kn, v=vn, context=ctx)
    np.testing.assert_array_equal(kc, before)  # every refused call left the cache as it was
    k, v = rand(rng, 3, 1, 8), rand(rng, 3, 1, 8)
    e = expect(clattn.InvalidArgumentError, -3028, clattn.kv_append, k, v, kc, vc, np.int32([1, 1, 2]),
               context=ctx)
    assert "slot" in e.detail
    expect(clattn.InvalidArgumentError, -3028, clattn.kv_append, k, v, kc, vc, np.int32([1, 2, 16]), context=ctx)
    expect(clattn.ShapeError, -3002, clattn.kv_append, k, v, kc, vc, np.int32([1, 2]), context=ctx)
    np.testing.assert_array_equal(kc, before)
