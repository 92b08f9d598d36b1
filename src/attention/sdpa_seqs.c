// SPDX-License-Identifier: Apache-2.0
/* The serving formats of an attention call, host side: packed variable-length batches (cu_seqlens), paged KV
 * caches (a block table over fixed-size pages), dense caches with per-sequence lengths, and 8-bit keys and values
 * with their scales. Checks every index array and tensor of them into the plan before anything is enqueued, and
 * builds the one device buffer of index arrays that the fused kernels read (kernels_cl/common.cl, "Serving
 * layouts"). */
#include "sdpa_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cla_sdpa_desc_has_seqs(const clattn_sdpa_desc *d) {
    return d->seq_count || d->cu_seqlens_q || d->cu_seqlens_k || d->block_table || d->seqlens_k;
}

bool cla_sdpa_has_seqs(const cla_sdpa_plan *p) {
    return p->varlen_q || p->kv_layout != CLA_KV_DENSE;
}

bool cla_is_kv8_dtype(clattn_dtype d) {
    return d == CLATTN_DTYPE_I8 || d == CLATTN_DTYPE_FP8_E4M3;
}

clattn_status cla_check_cu_seqlens(clattn_context *ctx, const char *name, const int32_t *cu, size_t count,
                                   size_t total, size_t *longest) {
    *longest = 0;
    CLA_FAIL_ON(cu[0] != 0, ctx, CLATTN_ERROR_INVALID_SEQLENS,
                "%s[0] is %d; cumulative sequence offsets start at 0", name, (int)cu[0]);
    for (size_t b = 0; b < count; ++b) {
        CLA_FAIL_ON(cu[b + 1] < cu[b], ctx, CLATTN_ERROR_INVALID_SEQLENS,
                    "%s[%zu] is %d, less than %s[%zu] = %d; the offsets must never decrease", name, b + 1,
                    (int)cu[b + 1], name, b, (int)cu[b]);
        const size_t len = (size_t)(cu[b + 1] - cu[b]);
        if (len > *longest) *longest = len;
    }
    CLA_FAIL_ON((size_t)cu[count] > total, ctx, CLATTN_ERROR_INVALID_SEQLENS,
                "%s[%zu] is %d, past the %zu rows of its tensor (size[2] of a packed [1, H, total, D] tensor)",
                name, count, (int)cu[count], total);
    return CLATTN_SUCCESS;
}

/* The paged cache's lengths and block table: each length within the table's pages, each page it uses a page of
 * the cache. Sets the longest sequence. */
static clattn_status check_pages(clattn_context *ctx, const clattn_sdpa_desc *d, size_t count, size_t page_size,
                                 size_t pages, size_t *longest) {
    *longest = 0;
    const size_t most = d->block_table_stride * page_size;
    for (size_t b = 0; b < count; ++b) {
        const int32_t len = d->seqlens_k[b];
        CLA_FAIL_ON(len < 0 || (size_t)len > most, ctx, CLATTN_ERROR_INVALID_SEQLENS,
                    "seqlens_k[%zu] is %d; it must be 0 to block_table_stride * block_size = %zu * %zu = %zu", b,
                    (int)len, d->block_table_stride, page_size, most);
        if ((size_t)len > *longest) *longest = (size_t)len;
        const size_t used = ((size_t)len + page_size - 1) / page_size;
        for (size_t e = 0; e < used; ++e) {
            const int32_t page = d->block_table[b * d->block_table_stride + e];
            CLA_FAIL_ON(
                page < 0 || (size_t)page >= pages, ctx, CLATTN_ERROR_INVALID_BLOCK_TABLE,
                "block_table[%zu][%zu] is %d but the cache has %zu pages (k.size[0]); sequence %zu's %d keys "
                "use its first %zu entries",
                b, e, (int)page, pages, b, (int)len, used);
        }
    }
    return CLATTN_SUCCESS;
}

/* A dense cache's lengths: each 0 to the rows the cache holds per sequence (k.size[2]). Sets the longest. */
static clattn_status check_dense_lengths(clattn_context *ctx, const int32_t *lens, size_t count, size_t rows,
                                         size_t *longest) {
    *longest = 0;
    for (size_t b = 0; b < count; ++b) {
        CLA_FAIL_ON(lens[b] < 0 || (size_t)lens[b] > rows, ctx, CLATTN_ERROR_INVALID_SEQLENS,
                    "seqlens_k[%zu] is %d; a dense cache (no block_table) of %zu rows per sequence (k.size[2]) "
                    "takes 0 to %zu",
                    b, (int)lens[b], rows, rows);
        if ((size_t)lens[b] > *longest) *longest = (size_t)lens[b];
    }
    return CLATTN_SUCCESS;
}

clattn_status cla_sdpa_check_seq_shapes(clattn_context *ctx, const clattn_sdpa_desc *d, const clattn_tensor *q,
                                        const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                                        cla_sdpa_plan *p) {
    const size_t B = d->seq_count;
    /* A block table makes the cache paged; seqlens_k alone gives a dense cache its lengths. */
    const bool paged = d->block_table != NULL;
    CLA_FAIL_ON((paged || d->seqlens_k) && d->cu_seqlens_k, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "desc: cu_seqlens_k (packed keys) and block_table/seqlens_k (a cache) exclude each other");
    CLA_FAIL_ON(
        paged && (!d->seqlens_k || d->block_table_stride == 0), ctx, CLATTN_ERROR_NULL_POINTER,
        "desc: a paged cache needs block_table, block_table_stride (> 0) and seqlens_k together; block_table "
        "is set, block_table_stride %zu, seqlens_k %s",
        d->block_table_stride, d->seqlens_k ? "set" : "NULL");
    CLA_FAIL_ON(
        !paged && d->block_table_stride, ctx, CLATTN_ERROR_NULL_POINTER,
        "desc: block_table_stride is %zu but block_table is NULL; give the block table of a paged cache, or "
        "leave block_table_stride 0",
        d->block_table_stride);
    CLA_FAIL_ON(B > (size_t)INT32_MAX / 4 || (paged && d->block_table_stride > (size_t)INT32_MAX / 4 / (B ? B : 1)),
                ctx, CLATTN_ERROR_UNSUPPORTED,
                "desc->seq_count %zu with block_table_stride %zu: the kernels index sequences and block tables in "
                "32 bits",
                B, d->block_table_stride);
    clattn_status st;
    /* Queries. */
    if (d->cu_seqlens_q) {
        if ((st = cla_expect_size(ctx, q, "q", 0, 1, "a packed tensor's batch"))) return st;
        if ((st = cla_expect_size(ctx, out, "out", 0, 1, "a packed tensor's batch"))) return st;
        if ((st = cla_check_cu_seqlens(ctx, "cu_seqlens_q", d->cu_seqlens_q, B, q->size[2], &p->q_len))) return st;
    } else {
        if ((st = cla_expect_size(ctx, q, "q", 0, B, "desc->seq_count"))) return st;
        if ((st = cla_expect_size(ctx, out, "out", 0, B, "desc->seq_count"))) return st;
        p->q_len = q->size[2];
    }
    if ((st = cla_expect_size(ctx, out, "out", 1, q->size[1], "q's heads"))) return st;
    if ((st = cla_expect_size(ctx, out, "out", 2, q->size[2], "q's seq"))) return st;
    if ((st = cla_expect_size(ctx, out, "out", 3, v->size[3], "v's head dim"))) return st;
    /* Keys and values. */
    if ((st = cla_expect_size(ctx, k, "k", 3, q->size[3], "q's head dim"))) return st;
    if ((st = cla_expect_size(ctx, v, "v", 0, k->size[0], "k's size[0]"))) return st;
    if ((st = cla_expect_size(ctx, v, "v", 1, k->size[1], "k's heads"))) return st;
    if ((st = cla_expect_size(ctx, v, "v", 2, k->size[2], "k's size[2]"))) return st;
    if (d->cu_seqlens_k) {
        if ((st = cla_expect_size(ctx, k, "k", 0, 1, "a packed tensor's batch"))) return st;
        if ((st = cla_check_cu_seqlens(ctx, "cu_seqlens_k", d->cu_seqlens_k, B, k->size[2], &p->kv_len))) return st;
        p->kv_layout = CLA_KV_PACKED;
    } else if (paged) {
        const size_t page = k->size[2];
        CLA_FAIL_ON(page < 8 || page > 256 || (page & (page - 1)) != 0, ctx, CLATTN_ERROR_INVALID_SHAPE,
                    "k: a paged cache's block size (k.size[2]) is %zu; it must be a power of two from 8 to 256",
                    page);
        CLA_FAIL_ON(d->block_table_stride > ((size_t)1 << 28) / page, ctx, CLATTN_ERROR_UNSUPPORTED,
                    "desc->block_table_stride %zu pages of %zu keys pass the 2^28 keys a sequence may have",
                    d->block_table_stride, page);
        if ((st = check_pages(ctx, d, B, page, k->size[0], &p->kv_len))) return st;
        p->kv_layout = CLA_KV_PAGED;
        p->page_size = page;
    } else {
        if ((st = cla_expect_size(ctx, k, "k", 0, B, "desc->seq_count"))) return st;
        p->kv_len = k->size[2];
        if (d->seqlens_k) {
            if ((st = check_dense_lengths(ctx, d->seqlens_k, B, k->size[2], &p->kv_len))) return st;
            p->kv_layout = CLA_KV_DENSE_LENGTHS;
        }
    }
    p->varlen_q = d->cu_seqlens_q != NULL;
    p->seq_count = B;
    p->cu_q = d->cu_seqlens_q;
    p->cu_k = d->cu_seqlens_k;
    p->block_table = d->block_table;
    p->block_table_stride = d->block_table_stride;
    p->seqlens_k = d->seqlens_k;
    return CLATTN_SUCCESS;
}

clattn_status cla_check_kv_scale(clattn_context *ctx, const char *name, const char *of, clattn_dtype of_dtype,
                                 clattn_tensor *s, const clattn_tensor *kv, cla_range *r) {
    const bool eight_bit = cla_is_kv8_dtype(of_dtype);
    CLA_FAIL_ON(eight_bit && !s->buffer, ctx, CLATTN_ERROR_INVALID_SCALE,
                "desc->%s: %s is stored as %s, which needs its scales (F32 or F16 [%zu, %zu, %zu, 1] for one per "
                "token and head, or [1, %zu, 1, 1] for one per head)",
                name, of, clattn_dtype_name(of_dtype), kv->size[0], kv->size[1], kv->size[2], kv->size[1]);
    if (!s->buffer) return CLATTN_SUCCESS;
    CLA_FAIL_ON(!eight_bit, ctx, CLATTN_ERROR_INVALID_SCALE,
                "desc->%s is given but %s is stored as %s; scales go with I8 or FP8_E4M3 storage only", name, of,
                clattn_dtype_name(of_dtype));
    CLA_FAIL_ON(s->dtype != CLATTN_DTYPE_F32 && s->dtype != CLATTN_DTYPE_F16, ctx, CLATTN_ERROR_INVALID_SCALE,
                "desc->%s: dtype %s; scales are F32 or F16", name, clattn_dtype_name(s->dtype));
    const size_t want[4] = {kv->size[0], kv->size[1], kv->size[2], 1};
    CLA_FAIL_ON(!clattn_mask_broadcasts(s->size, want), ctx, CLATTN_ERROR_INVALID_SCALE,
                "desc->%s: sizes [%zu, %zu, %zu, %zu] do not broadcast to [%zu, %zu, %zu, 1] (%s without its head "
                "dim): give [%zu, %zu, %zu, 1] for one scale per token and head or [1, %zu, 1, 1] for one per head",
                name, s->size[0], s->size[1], s->size[2], s->size[3], want[0], want[1], want[2], of, want[0],
                want[1], want[2], want[1]);
    for (int dim = 0; dim < 4; ++dim)
        if (s->size[dim] == 1) s->stride[dim] = 0;
    r->name = name;
    r->buffer = s->buffer;
    return cla_tensor_check(ctx, s, name, false, &r->begin, &r->end);
}

clattn_status cla_sdpa_check_scales(clattn_context *ctx, const clattn_sdpa_desc *d, cla_sdpa_plan *p,
                                    cla_range *ranges, size_t *n) {
    p->k_scale = d->k_scale;
    p->v_scale = d->v_scale;
    clattn_status st = cla_check_kv_scale(ctx, "k_scale", "k", p->k.dtype, &p->k_scale, &p->k, &ranges[*n]);
    if (st) return st;
    if (p->k_scale.buffer) ++*n;
    if ((st = cla_check_kv_scale(ctx, "v_scale", "v", p->v.dtype, &p->v_scale, &p->v, &ranges[*n]))) return st;
    if (p->v_scale.buffer) ++*n;
    return CLATTN_SUCCESS;
}

int cla_sdpa_seq_defines(const cla_sdpa_plan *p, char *out, size_t size) {
    int len = 0;
    out[0] = '\0';
    if (p->varlen_q) len += snprintf(out + len, size - (size_t)len, " -DVARLEN_Q=1");
    if (p->kv_layout != CLA_KV_DENSE)
        len += snprintf(out + len, size - (size_t)len, " -DKV_LAYOUT=%d -DPAGE_SIZE=%zu", p->kv_layout,
                        p->kv_layout == CLA_KV_PAGED ? p->page_size : (size_t)16);
    if (p->k_scale.buffer) len += snprintf(out + len, size - (size_t)len, " -DKS_DTYPE=%d", (int)p->k_scale.dtype);
    if (p->v_scale.buffer) len += snprintf(out + len, size - (size_t)len, " -DVS_DTYPE=%d", (int)p->v_scale.dtype);
    return len;
}

/* Batch item b's keys, as the kernels count them (cla_seq_k_len). */
static size_t seq_keys(const cla_sdpa_plan *p, size_t b) {
    if (p->cu_k) return (size_t)(p->cu_k[b + 1] - p->cu_k[b]);
    if (p->seqlens_k) return (size_t)p->seqlens_k[b];
    return p->kv_len;
}

/* The order of the work list: more keys first (each of a batch item's groups reads all its keys), then more query
 * rows, then the batch order, so that the order is the same on every run. */
typedef struct {
    size_t keys, rows, b;
} work_item;

static int by_falling_cost(const void *x, const void *y) {
    const work_item *a = x, *b = y;
    if (a->keys != b->keys) return a->keys > b->keys ? -1 : 1;
    if (a->rows != b->rows) return a->rows > b->rows ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

/* Fills starts[B + 1] and order[B] (cla_seq_work_at in kernels_cl/common.cl) and returns the count of entries. */
static size_t fill_work_list(const cla_sdpa_plan *p, size_t block_rows, work_item *items, int32_t *starts,
                             int32_t *order) {
    const size_t B = p->seq_count;
    for (size_t b = 0; b < B; ++b) items[b] = (work_item){seq_keys(p, b), (size_t)(p->cu_q[b + 1] - p->cu_q[b]), b};
    qsort(items, B, sizeof *items, by_falling_cost);
    size_t total = 0;
    for (size_t i = 0; i < B; ++i) {
        starts[i] = (int32_t)total;
        order[i] = (int32_t)items[i].b;
        total += p->q_heads * ((items[i].rows + block_rows - 1) / block_rows);
    }
    starts[B] = (int32_t)total;
    return total;
}

clattn_status cla_sdpa_seq_buffer(clattn_context *ctx, const cla_sdpa_plan *p, cla_work_list *work, cl_mem *buffer,
                                  cl_int4 *at) {
    *buffer = NULL;
    memset(at, 0, sizeof *at);
    if (work) work->groups = 0;
    if (!cla_sdpa_has_seqs(p)) return CLATTN_SUCCESS;
    const size_t B = p->seq_count, table = p->kv_layout == CLA_KV_PAGED ? B * p->block_table_stride : 0;
    /* cu_q, the keys' array and, with packed queries, the work list's counters, starts and order. */
    const bool listed = p->varlen_q && work && work->block_rows;
    const size_t counters = listed ? work->splits : 0, list = listed ? counters + 2 * B + 1 : 0;
    const size_t count = 2 * (B + 1) + list + table;
    int32_t *host = malloc(count * sizeof *host);
    work_item *items = listed ? malloc(B * sizeof *items) : NULL;
    if (!host || (listed && !items)) {
        free(host);
        free(items);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory staging %zu sequence indices",
                        count);
    }
    memset(host, 0, count * sizeof *host);
    if (p->cu_q) memcpy(host, p->cu_q, (B + 1) * sizeof *host);
    if (p->cu_k) memcpy(host + B + 1, p->cu_k, (B + 1) * sizeof *host);
    if (p->seqlens_k) memcpy(host + B + 1, p->seqlens_k, B * sizeof *host);
    if (listed) {
        int32_t *starts = host + 2 * (B + 1) + counters;
        work->groups = fill_work_list(p, work->block_rows, items, starts, starts + B + 1);
    }
    free(items);
    if (listed && work->groups > (size_t)INT32_MAX) {
        free(host);
        return cla_fail(
            ctx, CLATTN_ERROR_UNSUPPORTED,
            "packed queries: %zu work-groups of %zu rows and one head each, more than the kernel counts "
            "(2^31 - 1); split the batch into several calls",
            work->groups, work->block_rows);
    }
    if (table) memcpy(host + 2 * (B + 1) + list, p->block_table, table * sizeof *host);
    at->s[0] = 0;
    at->s[1] = (cl_int)(B + 1);
    at->s[2] = (cl_int)(2 * (B + 1) + list);
    at->s[3] = (cl_int)p->block_table_stride;
    /* The list's counters are written by the kernel. */
    clattn_status st =
        cla_temp_buffer_from(ctx, count * sizeof *host, host, listed ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY,
                             "the sequence index arrays", buffer);
    free(host);
    return st;
}
