// SPDX-License-Identifier: Apache-2.0
/* The serving formats of the tuner's attention classes (see tune_serving.h). */
#include "tune_serving.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clattn_advanced.h"
#include "support_buffers.h"

/* Rows of `row_bytes` from [H, L] order into the pages of a paged cache [pages, H, TUNE_PAGE]: key j of head h goes
 * to row j % TUNE_PAGE of physical page table[j / TUNE_PAGE]. Rows past L stay zero. */
static void *to_pages(const void *src, size_t H, size_t L, size_t pages, const int32_t *table, size_t row_bytes) {
    unsigned char *dst = calloc(pages * H * TUNE_PAGE + 1, row_bytes);
    if (!dst) return NULL;
    for (size_t h = 0; h < H; ++h)
        for (size_t j = 0; j < L; ++j)
            memcpy(dst + (((size_t)table[j / TUNE_PAGE] * H + h) * TUNE_PAGE + j % TUNE_PAGE) * row_bytes,
                   (const unsigned char *)src + (h * L + j) * row_bytes, row_bytes);
    return dst;
}

/* Stores one of K or V [H, L, D] (host values x) as the format does; for 8-bit, x becomes the values the codes
 * stand for. */
static const char *store(clattn_context *ctx, const tune_serving *s, const support_sdpa_inputs *in, float *x,
                         cl_mem *data, cl_mem *scale) {
    const size_t H = in->kv_heads, L = in->kv_len, D = in->head_dim, rows = H * L;
    const bool q8 = s->kv_dtype > 0, paged = s->layout == CLATTN_TUNE_KV_PAGED;
    const size_t es = q8 ? 1 : clattn_dtype_size(in->dtype);
    unsigned char *codes = NULL;
    float *scales = NULL;
    const char *bad = NULL;
    if (q8) {
        codes = malloc(rows * D + 1);
        scales = calloc(rows + 1, sizeof *scales);
        if (!codes || !scales) {
            bad = "out of host memory quantizing the keys and values";
            goto out;
        }
        /* fp8 takes one given scale (max |x| / 448, as vLLM's per-tensor scale); int8 computes one per row. */
        float most = 0.0f;
        for (size_t i = 0; i < rows * D; ++i) most = fmaxf(most, fabsf(x[i]));
        scales[0] = most > 0.0f ? most / 448.0f : 1.0f;
        if (clattn_quantize_rows((clattn_dtype)s->kv_dtype, x, rows, D, codes, scales) != CLATTN_SUCCESS ||
            clattn_dtype_unpack((clattn_dtype)s->kv_dtype, codes, x, rows * D) != CLATTN_SUCCESS) {
            bad = "quantizing the keys and values failed";
            goto out;
        }
        for (size_t r = 0; r < rows; ++r)
            for (size_t d = 0; d < D; ++d) x[r * D + d] *= scales[s->kv_dtype == CLATTN_DTYPE_I8 ? r : 0];
    } else {
        codes = malloc(rows * D * es + 1);
        if (!codes || clattn_dtype_pack(in->dtype, x, codes, rows * D) != CLATTN_SUCCESS) {
            bad = "out of host memory storing the keys and values";
            goto out;
        }
    }
    const bool per_row = s->kv_dtype == CLATTN_DTYPE_I8;
    void *stored = paged ? to_pages(codes, H, L, s->pages, s->block_table, D * es) : codes;
    void *stored_scales =
        paged && per_row ? to_pages(scales, H, L, s->pages, s->block_table, sizeof(float)) : scales;
    const size_t stored_rows = paged ? s->pages * H * TUNE_PAGE : rows;
    if (!stored || (q8 && !stored_scales)) {
        bad = "out of host memory paging the keys and values";
    } else {
        *data = support_buffer(ctx, stored, stored_rows * D * es, NULL);
        if (q8) *scale = support_buffer(ctx, stored_scales, (per_row ? stored_rows : 1) * sizeof(float), NULL);
        if (!*data || (q8 && !*scale)) bad = "allocating the stored keys and values failed";
    }
    if (stored != codes) free(stored);
    if (stored_scales != scales) free(stored_scales);
out:
    free(codes);
    free(scales);
    return bad;
}

const char *tune_serving_setup(clattn_context *ctx, support_sdpa_inputs *in, tune_serving *s) {
    if (s->layout <= 0 && s->kv_dtype <= 0) return NULL;
    if (in->batch != 1) return "the serving classes are timed on one sequence";
    s->cu_q[0] = s->cu_k[0] = 0;
    s->cu_q[1] = (int32_t)in->q_len;
    s->cu_k[1] = s->seqlens_k[0] = (int32_t)in->kv_len;
    if (s->layout == CLATTN_TUNE_KV_PAGED) {
        s->pages = (in->kv_len + TUNE_PAGE - 1) / TUNE_PAGE;
        s->block_table = malloc((s->pages + 1) * sizeof *s->block_table);
        if (!s->block_table) return "out of host memory for the block table";
        for (size_t i = 0; i < s->pages; ++i) s->block_table[i] = (int32_t)(s->pages - 1 - i);
    }
    const char *bad = store(ctx, s, in, in->k, &s->k, &s->k_scale);
    return bad ? bad : store(ctx, s, in, in->v, &s->v, &s->v_scale);
}

void tune_serving_apply(const tune_serving *s, const support_sdpa_inputs *in, clattn_sdpa_desc *desc,
                        clattn_tensor *k, clattn_tensor *v) {
    if (s->layout <= 0 && s->kv_dtype <= 0) return;
    const clattn_dtype dt = s->kv_dtype > 0 ? (clattn_dtype)s->kv_dtype : in->dtype;
    const size_t H = in->kv_heads, D = in->head_dim;
    const bool paged = s->layout == CLATTN_TUNE_KV_PAGED;
    *k = paged ? clattn_tensor_bhld(s->k, dt, s->pages, H, TUNE_PAGE, D)
               : clattn_tensor_bhld(s->k, dt, 1, H, in->kv_len, D);
    *v = *k;
    v->buffer = s->v;
    if (s->layout > 0) desc->seq_count = 1;
    if (s->layout == CLATTN_TUNE_KV_PACKED) {
        desc->cu_seqlens_q = s->cu_q;
        desc->cu_seqlens_k = s->cu_k;
    }
    if (paged) {
        desc->block_table = s->block_table;
        desc->block_table_stride = s->pages;
        desc->seqlens_k = s->seqlens_k;
    }
    if (s->kv_dtype > 0) {
        desc->k_scale = s->kv_dtype == CLATTN_DTYPE_I8
                            ? clattn_tensor_bhld(s->k_scale, CLATTN_DTYPE_F32, k->size[0], H, k->size[2], 1)
                            : clattn_tensor_bhld(s->k_scale, CLATTN_DTYPE_F32, 1, 1, 1, 1);
        desc->v_scale = desc->k_scale;
        desc->v_scale.buffer = s->v_scale;
    }
}

void tune_serving_free(tune_serving *s) {
    const cl_mem all[] = {s->k, s->v, s->k_scale, s->v_scale};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (all[i]) clReleaseMemObject(all[i]);
    free(s->block_table);
    memset(s, 0, sizeof *s);
}
