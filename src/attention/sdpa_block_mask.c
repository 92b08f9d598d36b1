// SPDX-License-Identifier: Apache-2.0
/* The block mask (clattn_sdpa_desc.block_mask, FlexAttention's block_mask): checking it and its block sizes before
 * any device work, and its kernel arguments. The kernels (common.cl's cla_block_tile and cla_block_flag) skip the
 * tiles whose every (row, key) lies in blocks flagged 0, and mask the keys of such blocks on the tiles they visit.
 * Packed and paged calls index it by sequence and by the positions inside the sequence, as the kernels already
 * index their rows and keys there (and the mask tensor), so only the expected sizes differ.
 */
#include "sdpa_internal.h"

clattn_status cla_sdpa_check_block_mask(clattn_context *ctx, const clattn_sdpa_desc *desc, cla_sdpa_plan *p,
                                        cla_range *ranges, size_t *n) {
    p->block_mask = desc->block_mask;
    if (!p->block_mask.buffer) return CLATTN_SUCCESS;
    clattn_tensor *m = &p->block_mask;
    CLA_FAIL_ON(desc->block_mask_q == 0 || desc->block_mask_k == 0, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "desc->block_mask_q and desc->block_mask_k (%zu and %zu) must be positive: the query rows and keys "
                "of a block mask's block",
                desc->block_mask_q, desc->block_mask_k);
    /* Positions are below 2^28 (cla_sdpa_validate), so a block size past that is one block. */
    const size_t most = (size_t)1 << 28;
    p->block_q = desc->block_mask_q < most ? desc->block_mask_q : most;
    p->block_k = desc->block_mask_k < most ? desc->block_mask_k : most;
    CLA_FAIL_ON(m->dtype != CLATTN_DTYPE_I32, ctx, CLATTN_ERROR_INVALID_MASK,
                "desc->block_mask: dtype %s must be I32 (one int32 flag per query block and key block)",
                clattn_dtype_name(m->dtype));
    /* Packed and paged calls count blocks within each sequence's own positions, as their masks do: the flags
     * broadcast to [sequences, Hq, blocks of the longest query sequence, blocks of the longest key sequence]. */
    const size_t want[4] = {p->batch, p->q_heads, (p->q_len + p->block_q - 1) / p->block_q,
                            (p->kv_len + p->block_k - 1) / p->block_k};
    const bool fits = clattn_mask_broadcasts(m->size, want);
    if (cla_sdpa_has_seqs(p))
        CLA_FAIL_ON(
            !fits, ctx, CLATTN_ERROR_INVALID_MASK,
            "desc->block_mask: sizes [%zu, %zu, %zu, %zu] do not broadcast to [%zu, %zu, %zu, %zu] "
            "(sequences, heads, ceil(longest query sequence %zu / block_mask_q), ceil(longest key sequence "
            "%zu / block_mask_k) with blocks of %zu x %zu, counted within each sequence): each size must be "
            "1 or the full size",
            m->size[0], m->size[1], m->size[2], m->size[3], want[0], want[1], want[2], want[3], p->q_len, p->kv_len,
            p->block_q, p->block_k);
    CLA_FAIL_ON(!fits, ctx, CLATTN_ERROR_INVALID_MASK,
                "desc->block_mask: sizes [%zu, %zu, %zu, %zu] do not broadcast to [%zu, %zu, %zu, %zu] (batch, "
                "heads, ceil(Lq / block_mask_q), ceil(Lk / block_mask_k) with blocks of %zu x %zu): each size must "
                "be 1 or the full size",
                m->size[0], m->size[1], m->size[2], m->size[3], want[0], want[1], want[2], want[3], p->block_q,
                p->block_k);
    /* Size-1 dimensions broadcast through a stride of 0, as cla_check_mask does for `mask`. */
    for (int d = 0; d < 4; ++d)
        if (m->size[d] == 1) m->stride[d] = 0;
    cla_range *r = &ranges[(*n)++];
    r->name = "block_mask";
    r->buffer = m->buffer;
    return cla_tensor_check(ctx, m, "desc->block_mask", false, &r->begin, &r->end);
}

cl_int4 cla_sdpa_block_dims(const cla_sdpa_plan *p) {
    /* 1 without a block mask: the kernels never divide by it then, but no argument is left meaningless. */
    cl_int4 d = {{p->block_q ? (cl_int)p->block_q : 1, p->block_k ? (cl_int)p->block_k : 1, 0, 0}};
    return d;
}
