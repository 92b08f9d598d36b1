// SPDX-License-Identifier: Apache-2.0
/* The paged KV cache of multi-head attention (clattn_mha_desc.pages), host side: checks the engine's block table,
 * lengths and pages against the layer and turns them into what the call enqueues, the slots of the new tokens
 * (for the append) and each sequence's key count (for the attention's paged mode). The engine keeps the pages'
 * ownership and its free list; nothing here is state between calls. */
#include "mha_internal.h"

#include <stdlib.h>
#include <string.h>

static clattn_status check_cache_shapes(clattn_context *ctx, const clattn_mha_pages *pg,
                                        const clattn_mha_config *c) {
    clattn_status st;
    if ((st = cla_expect_size(ctx, &pg->k_cache, "desc->pages->k_cache", 1, c->kv_heads, "the layer's kv_heads")))
        return st;
    if ((st = cla_expect_size(ctx, &pg->k_cache, "desc->pages->k_cache", 3, c->head_dim, "the layer's head_dim")))
        return st;
    if ((st = cla_expect_size(ctx, &pg->v_cache, "desc->pages->v_cache", 3, c->v_head_dim,
                              "the layer's v_head_dim")))
        return st;
    CLA_FAIL_ON(!pg->k_cache.buffer || !pg->v_cache.buffer, ctx, CLATTN_ERROR_NULL_POINTER,
                "desc->pages: k_cache.buffer and v_cache.buffer are required (the pages the engine allocated)");
    return CLATTN_SUCCESS;
}

/* Each sequence's new rows: its cu_seqlens_q range when packed, else the kv source's rows of its batch item. */
static size_t new_rows_of(const clattn_mha_pages *pg, const clattn_tensor *kv_source, size_t b) {
    if (!kv_source) return 0;
    if (pg->cu_seqlens_q) return (size_t)(pg->cu_seqlens_q[b + 1] - pg->cu_seqlens_q[b]);
    return kv_source->size[2];
}

clattn_status cla_mha_pages_check(clattn_context *ctx, const clattn_mha_pages *pg, const clattn_mha_config *c,
                                  const clattn_tensor *x, const clattn_tensor *kv_source,
                                  cla_mha_pages_plan *plan) {
    memset(plan, 0, sizeof *plan);
    plan->pages = pg;
    const size_t B = pg->seq_count;
    clattn_status st;
    if ((st = check_cache_shapes(ctx, pg, c))) return st;
    if (pg->cu_seqlens_q) {
        if ((st = cla_expect_size(ctx, x, "x", 0, 1, "a packed [1, 1, total, d_model] tensor's batch"))) return st;
        size_t longest = 0;
        if ((st =
                 cla_check_cu_seqlens(ctx, "desc->pages->cu_seqlens_q", pg->cu_seqlens_q, B, x->size[2], &longest)))
            return st;
        CLA_FAIL_ON((size_t)pg->cu_seqlens_q[B] != x->size[2], ctx, CLATTN_ERROR_INVALID_SEQLENS,
                    "desc->pages->cu_seqlens_q[%zu] is %d but x has %zu rows; every row of a packed x belongs to "
                    "a sequence",
                    B, (int)pg->cu_seqlens_q[B], x->size[2]);
    } else if ((st = cla_expect_size(ctx, x, "x", 0, B, "desc->pages->seq_count"))) {
        return st;
    }
    CLA_FAIL_ON(B && !pg->block_table, ctx, CLATTN_ERROR_NULL_POINTER,
                "desc->pages->block_table is NULL but seq_count is %zu; give each sequence's pages", B);
    CLA_FAIL_ON(B && pg->block_table_stride == 0, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "desc->pages->block_table_stride is 0; it is the entries each sequence has in the block table");
    const size_t page = pg->k_cache.size[2], pages = pg->k_cache.size[0];
    CLA_FAIL_ON(page == 0, ctx, CLATTN_ERROR_INVALID_SHAPE,
                "desc->pages->k_cache: the block size (size[2]) is 0; pages hold 8 to 256 tokens");
    CLA_FAIL_ON(
        B > (size_t)INT32_MAX || pg->block_table_stride > (size_t)INT32_MAX / page, ctx, CLATTN_ERROR_UNSUPPORTED,
        "desc->pages: %zu sequences of up to %zu pages of %zu tokens pass the 32-bit indices of the kernels", B,
        pg->block_table_stride, page);
    CLA_FAIL_ON(pages > (size_t)INT32_MAX / page, ctx, CLATTN_ERROR_UNSUPPORTED,
                "desc->pages->k_cache: %zu pages of %zu tokens pass the 2^31 slots an int32 slot mapping indexes",
                pages, page);
    const size_t most = pg->block_table_stride * page;

    plan->seqlens_k = malloc((B ? B : 1) * sizeof *plan->seqlens_k);
    CLA_FAIL_ON(!plan->seqlens_k, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory (%zu sequences)", B);
    for (size_t b = 0; b < B && !st; ++b) {
        const int32_t cached = pg->cached_lens ? pg->cached_lens[b] : 0;
        const size_t fresh = new_rows_of(pg, kv_source, b);
        if (cached < 0 || (size_t)cached > most || fresh > most - (size_t)cached)
            st = cla_fail(ctx, CLATTN_ERROR_INVALID_SEQLENS,
                          "sequence %zu: desc->pages->cached_lens[%zu] is %d and the call adds %zu tokens, but its "
                          "block table row holds block_table_stride * block_size = %zu * %zu = %zu; give the "
                          "sequence more pages",
                          b, b, (int)cached, fresh, pg->block_table_stride, page, most);
        else
            plan->seqlens_k[b] = (int32_t)((size_t)cached + fresh);
        /* The pages every key of the sequence is read from (the attention checks them again) or written to. */
        const size_t used = ((size_t)plan->seqlens_k[b] + page - 1) / page;
        for (size_t e = 0; e < used && !st; ++e) {
            const int32_t pid = pg->block_table[b * pg->block_table_stride + e];
            if (pid < 0 || (size_t)pid >= pages)
                st = cla_fail(ctx, CLATTN_ERROR_INVALID_BLOCK_TABLE,
                              "desc->pages->block_table[%zu][%zu] is %d but k_cache has %zu pages (size[0]); "
                              "sequence %zu's %d tokens after this call use its first %zu entries",
                              b, e, (int)pid, pages, b, (int)plan->seqlens_k[b], used);
        }
    }
    if (st) {
        cla_mha_pages_release(plan);
        return st;
    }

    /* The new rows' slots, in the row order of the projections: sequence by sequence. */
    size_t rows = 0;
    for (size_t b = 0; b < B; ++b) rows += new_rows_of(pg, kv_source, b);
    plan->new_rows = rows;
    plan->slots = malloc((rows ? rows : 1) * sizeof *plan->slots);
    if (!plan->slots) {
        cla_mha_pages_release(plan);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory (%zu new tokens)", rows);
    }
    size_t r = 0;
    for (size_t b = 0; b < B; ++b) {
        const size_t fresh = new_rows_of(pg, kv_source, b), first = (size_t)plan->seqlens_k[b] - fresh;
        for (size_t i = 0; i < fresh; ++i, ++r) {
            const size_t pos = first + i;
            const size_t pid = (size_t)pg->block_table[b * pg->block_table_stride + pos / page];
            plan->slots[r] = (int32_t)(pid * page + pos % page);
        }
    }
    return CLATTN_SUCCESS;
}

void cla_mha_pages_release(cla_mha_pages_plan *plan) {
    free(plan->seqlens_k);
    free(plan->slots);
    plan->seqlens_k = plan->slots = NULL;
}

void cla_mha_pages_attention(const clattn_sdpa_desc *options, const cla_mha_pages_plan *plan,
                             clattn_sdpa_desc *out) {
    const clattn_mha_pages *pg = plan->pages;
    *out = *options;
    out->seq_count = pg->seq_count;
    out->cu_seqlens_q = pg->cu_seqlens_q;
    out->block_table = pg->block_table;
    out->block_table_stride = pg->block_table_stride;
    out->seqlens_k = plan->seqlens_k;
    out->k_scale = pg->k_scale;
    out->v_scale = pg->v_scale;
}
