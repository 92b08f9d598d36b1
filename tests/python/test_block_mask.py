# SPDX-License-Identifier: Apache-2.0
"""block_mask and block_size on scaled_dot_product_attention: a block mask expanded into the boolean mask it stands
for, with and without mask_mod (whose full blocks, flag 2, it spares), against the float64 reference; on packed
sequences through flash_attn_varlen_func and over a KV cache through flash_attn_with_kvcache (blocks of each
sequence's positions); and the errors."""
import numpy as np
import pytest

from conftest import assert_close, rand, reference


def expand(flags, bq, bk, lq, lk):
    """The [.., Lq, Lk] flags of every (query, key) pair of a [.., NQ, NK] block mask."""
    return flags[..., np.arange(lq)[:, None] // bq, np.arange(lk)[None, :] // bk]


def test_block_mask_is_its_mask(ctx, rng):
    q, k, v = rand(rng, 2, 4, 19, 8), rand(rng, 2, 2, 23, 8), rand(rng, 2, 2, 23, 8)
    flags = rng.integers(0, 3, size=(2, 1, 4, 3)).astype(np.int32)  # blocks of 5 x 8, broadcast over heads
    flags[0, 0, 0, :] = 0  # rows 0..4 of batch item 0: fully masked
    out, lse = ctx.scaled_dot_product_attention(q, k, v, enable_gqa=True, block_mask=flags, block_size=(5, 8),
                                                return_lse=True)
    keep = expand(flags, 5, 8, 19, 23) != 0
    ref, ref_lse, _ = reference(q, k, v, mask=keep, return_all=True)
    assert_close(out, ref, 23)
    assert np.all(out[0, :, :5] == 0) and np.all(np.isneginf(lse[0, :, :5]))
    assert_close(lse[:, :, 5:], ref_lse[:, :, 5:], 23)


def test_full_blocks_spare_mask_mod(ctx, rng):
    q, k, v = rand(rng, 1, 2, 16, 8), rand(rng, 1, 2, 16, 8), rand(rng, 1, 2, 16, 8)
    flags = np.int32([[0, 1], [2, 1]])  # blocks of 8: mask_mod ("even keys") decides in the 1 blocks only
    out = ctx.scaled_dot_product_attention(q, k, v, mask_mod="kv_idx % 2 == 0", block_mask=flags, block_size=8)
    f = expand(flags, 8, 8, 16, 16)
    keep = (f == 2) | ((f == 1) & (np.arange(16)[None, :] % 2 == 0))
    assert_close(out, reference(q, k, v, mask=keep), 16)


def test_block_mask_errors(ctx, rng):
    import clattn
    q = rand(rng, 1, 1, 8, 4)
    with pytest.raises(clattn.Error) as info:
        ctx.scaled_dot_product_attention(q, q, q, block_mask=np.int32([[1, 1, 1]]), block_size=4)
    assert info.value.status == -3008
    with pytest.raises(clattn.Error) as info:
        ctx.scaled_dot_product_attention(q, q, q, block_mask=np.int32([1, 1]), block_size=(0, 4))
    assert info.value.status == -3000
    with pytest.raises(clattn.Error) as info:
        ctx.scaled_dot_product_attention(q, q, q, block_mask=np.int32([1]), block_size=8, impl="unfused")
    assert info.value.status == -3021


def test_block_mask_on_packed_sequences(ctx, rng):
    import clattn
    q_lens, k_lens = [3, 0, 1, 19, 8], [5, 4, 1, 23, 30]
    cu_q = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(k_lens)]).astype(np.int32)
    q, k, v = rand(rng, cu_q[-1], 4, 8), rand(rng, cu_k[-1], 2, 8), rand(rng, cu_k[-1], 2, 8)
    flags = rng.integers(0, 3, size=(5, 4, 4, 4)).astype(np.int32)  # blocks of 5 x 8 of max_q 19, max_k 30
    out = clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, block_mask=flags, block_size=(5, 8), context=ctx)
    for b in range(5):
        if not q_lens[b]:
            continue
        rows, keys = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        keep = expand(flags[b:b + 1], 5, 8, q_lens[b], k_lens[b]) != 0
        ref = reference(q[rows].transpose(1, 0, 2)[None], k[keys].transpose(1, 0, 2)[None],
                        v[keys].transpose(1, 0, 2)[None], mask=keep)
        assert_close(out[rows], ref[0].transpose(1, 0, 2), 30)
    with pytest.raises(clattn.Error) as info:  # blocks of the packed rows, not of the longest sequence
        clattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, block_mask=np.zeros((5, 4, 7, 8), np.int32),
                                      block_size=(5, 8), context=ctx)
    assert info.value.status == -3008 and "sequences" in str(info.value)


@pytest.mark.parametrize("paged", [False, True])
def test_block_mask_over_a_kv_cache(ctx, rng, paged):
    """flash_attn_with_kvcache with a block mask: blocks of each sequence's query rows and cache positions, on a
    dense cache and on the same keys in shuffled pages of 8."""
    import clattn
    lens = np.array([21, 9, 0, 30], np.int32)
    q = rand(rng, 4, 3, 4, 8)  # [B, Lq, Hq, D]: three new rows per sequence
    kc, vc = rand(rng, 4, 32, 2, 8), rand(rng, 4, 32, 2, 8)
    flags = rng.integers(0, 3, size=(4, 4, 2, 4)).astype(np.int32)  # blocks of 2 x 8 over Lq 3, max_k 30
    flags[3, :, :, 3] = 0  # sequence 3's last key block, which holds its newest keys
    if paged:
        table = rng.permutation(16).reshape(4, 4).astype(np.int32)
        kp, vp = np.zeros((16, 8, 2, 8), np.float32), np.zeros((16, 8, 2, 8), np.float32)
        for b in range(4):
            kp[table[b]], vp[table[b]] = kc[b].reshape(4, 8, 2, 8), vc[b].reshape(4, 8, 2, 8)
        out = clattn.flash_attn_with_kvcache(q, kp, vp, lens, table, causal=True, block_mask=flags,
                                             block_size=(2, 8), context=ctx)
    else:
        out = clattn.flash_attn_with_kvcache(q, kc, vc, lens, causal=True, block_mask=flags, block_size=(2, 8),
                                             context=ctx)
    for b, n in enumerate(lens):
        keep = expand(flags[b:b + 1], 2, 8, 3, n) != 0
        keep &= np.arange(n)[None, :] <= np.arange(3)[:, None] + n - 3  # causal, bottom-right
        qb = q[b].transpose(1, 0, 2)[None]
        kb, vb = kc[b, :n].transpose(1, 0, 2)[None], vc[b, :n].transpose(1, 0, 2)[None]
        ref = reference(qb, np.repeat(kb, 2, axis=1), np.repeat(vb, 2, axis=1), mask=keep) if n else np.zeros(
            (1, 4, 3, 8))
        assert_close(out[b], ref[0].transpose(1, 0, 2), 30)
