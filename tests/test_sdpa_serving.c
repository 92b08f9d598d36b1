// SPDX-License-Identifier: Apache-2.0
/* The serving formats of clattn_sdpa against the double-precision reference: packed variable-length batches
 * (cu_seqlens), paged KV caches (shuffled and shared pages, every block size from 8 to 256) and 8-bit keys and
 * values (int8 with a scale per token and head, fp8 E4M3 with one per head), on every fused variant, with lengths 0
 * and 1 inside a batch, GQA, both causal alignments, windows, a per-sequence mask, lse, fp16/bf16 storage and key
 * splits, and block masks (blocks of each sequence's positions) with and without mask_mod. Each sequence is
 * computed alone by the reference from the values the device holds (8-bit ones dequantized); outputs are poisoned
 * and followed by a canary. Every invalid index array gets its exact status, and leaves the output untouched. */
#include "check_tolerance.h"
#include "reference.h"
#include "support_buffers.h"
#include "support_random.h"
#include "test_util.h"

#include <math.h>

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

/* KV_DENSE_LENGTHS: a dense cache [B, cap, Hkv, D] of more rows than any sequence has, with seqlens_k. */
enum { KV_DENSE = 0, KV_PACKED = 1, KV_PAGED = 2, KV_DENSE_LENGTHS = 3 };
#define CAP_EXTRA  5 /* rows of a KV_DENSE_LENGTHS cache past its longest sequence, left as poison */
#define MAX_SEQS   8
#define CANARY     64
#define POISON     0x7b /* 0x7b7b7b7b: a float of about 1.3e36, which no output can be */
#define ARRAY_N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct serving_case {
    size_t seqs, q_heads, kv_heads, head_dim, v_head_dim;
    int q_lens[MAX_SEQS], k_lens[MAX_SEQS];
    bool packed_q;      /* else dense [B, Hq, Lq, D]: every q_lens equal */
    int kv;             /* KV_*: dense needs every k_lens equal */
    size_t page;        /* paged: block size */
    bool share_prefix;  /* paged: sequence 1 shares sequence 0's first page (and its keys) */
    size_t extra_pages; /* paged: pages no sequence uses (3 when 0), among which the used ones are shuffled */
    clattn_dtype dtype;
    clattn_dtype kv8; /* F32 (0): none; I8 or FP8_E4M3: both k and v */
    bool per_head_scale, f16_scale;
    clattn_causal causal;
    int64_t window_left, window_right;
    clattn_window_align window_align;
    bool mask; /* a boolean mask [B, 1, max_q, max_k] */
    bool mods; /* softcap 2, sinks and ALiBi slopes per query head */
    /* A block mask of bm_q x bm_k blocks of each sequence's positions (0: none), random flags 0/1/2 of
     * [B, Hq or 1 (bm_bcast_h), ceil(max_q / bm_q), ceil(max_k / bm_k)], with mask_mod or without. */
    size_t bm_q, bm_k;
    bool bm_bcast_h;
    const char *mask_mod; /* NULL or MOD_EXPR */
    bool lse;
    unsigned seed;
} serving_case;

static serving_case case_of(size_t seqs, const int *q_lens, const int *k_lens, size_t hq, size_t hkv, size_t d) {
    serving_case c;
    memset(&c, 0, sizeof c);
    c.seqs = seqs;
    c.q_heads = hq;
    c.kv_heads = hkv;
    c.head_dim = c.v_head_dim = d;
    for (size_t b = 0; b < seqs; ++b) {
        c.q_lens[b] = q_lens[b];
        c.k_lens[b] = k_lens[b];
    }
    c.packed_q = true;
    c.kv = KV_PACKED;
    c.page = 16;
    c.window_left = c.window_right = CLATTN_WINDOW_UNBOUNDED;
    c.lse = true;
    c.seed = 7;
    return c;
}

/* Host copies of one call: per sequence [H, L, D] values as the device holds them (8-bit ones dequantized). */
typedef struct seq_values {
    float *q[MAX_SEQS], *k[MAX_SEQS], *v[MAX_SEQS];
    float sinks[64], slopes[64];
    uint8_t *mask;  /* [B, max_q, max_k] */
    int32_t *flags; /* the block mask, of sizes flag_size */
    size_t flag_size[4];
} seq_values;

/* The mask_mod of the block-mask cases, and its predicate here: it depends on both positions inside the sequence.
 */
#define MOD_EXPR "(q_idx + 2 * kv_idx) % 5 != 3"
static bool mod_keeps(int i, int j) {
    return (i + 2 * j) % 5 != 3;
}

static void free_values(seq_values *s) {
    for (int b = 0; b < MAX_SEQS; ++b) {
        free(s->q[b]);
        free(s->k[b]);
        free(s->v[b]);
    }
    free(s->mask);
    free(s->flags);
}

static size_t max_len(const int *lens, size_t n) {
    size_t m = 0;
    for (size_t i = 0; i < n; ++i)
        if ((size_t)lens[i] > m) m = (size_t)lens[i];
    return m;
}

/* The device side of a case: buffers in their layouts, index arrays and the desc pointing at them. */
typedef struct serving_call {
    clattn_sdpa_desc desc;
    clattn_tensor q, k, v, out;
    int32_t cu_q[MAX_SEQS + 1], cu_k[MAX_SEQS + 1], seqlens_k[MAX_SEQS];
    int32_t *table;
    size_t out_bytes, total_q, max_q, max_k;
    cl_mem bufs[8];
    size_t nbufs;
} serving_call;

static cl_mem keep(serving_call *call, cl_mem m) {
    assert_non_null(m);
    call->bufs[call->nbufs++] = m;
    return m;
}

static void release_call(serving_call *call) {
    for (size_t i = 0; i < call->nbufs; ++i) clReleaseMemObject(call->bufs[i]);
    free(call->table);
}

/* Stores rows [rows, cols] of x in `dt` (8-bit: quantized, scale per row or the given one) at dst, leaving in x the
 * values the device will read, and the row scales in scales. */
static void store_rows(float *x, size_t rows, size_t cols, clattn_dtype dt, uint8_t *dst, float *scales) {
    if (dt == CLATTN_DTYPE_I8 || dt == CLATTN_DTYPE_FP8_E4M3) {
        assert_int_equal(clattn_quantize_rows(dt, x, rows, cols, dst, scales), CLATTN_SUCCESS);
        float *back = malloc(cols * sizeof *back);
        for (size_t r = 0; r < rows; ++r) {
            assert_int_equal(clattn_dtype_unpack(dt, dst + r * cols, back, cols), CLATTN_SUCCESS);
            const float s = dt == CLATTN_DTYPE_I8 ? scales[r] : scales[0];
            for (size_t c = 0; c < cols; ++c) x[r * cols + c] = back[c] * s;
        }
        free(back);
    } else {
        support_round_array(x, rows * cols, dt);
        assert_int_equal(clattn_dtype_pack(dt, x, dst, rows * cols), CLATTN_SUCCESS);
    }
}

/* Builds the device tensors of a case from random per-sequence values. */
static void build(const serving_case *c, seq_values *s, serving_call *call) {
    memset(s, 0, sizeof *s);
    memset(call, 0, sizeof *call);
    unsigned seed = c->seed;
    const size_t B = c->seqs, Hq = c->q_heads, Hkv = c->kv_heads, D = c->head_dim, Dv = c->v_head_dim;
    const clattn_dtype kdt = c->kv8 ? c->kv8 : c->dtype, esz = clattn_dtype_size(c->dtype);
    const size_t kesz = clattn_dtype_size(kdt);
    call->max_q = max_len(c->q_lens, B);
    call->max_k = max_len(c->k_lens, B);
    call->cu_q[0] = call->cu_k[0] = 0;
    for (size_t b = 0; b < B; ++b) {
        call->cu_q[b + 1] = call->cu_q[b] + c->q_lens[b];
        call->cu_k[b + 1] = call->cu_k[b] + c->k_lens[b];
        call->seqlens_k[b] = c->k_lens[b];
    }
    for (size_t b = 0; b < B; ++b) {
        s->q[b] = support_random_array(Hq * (size_t)c->q_lens[b] * D, 1.0f, c->dtype, &seed);
        s->k[b] = support_random_array(Hkv * (size_t)c->k_lens[b] * D, 1.0f, CLATTN_DTYPE_F32, &seed);
        s->v[b] = support_random_array(Hkv * (size_t)c->k_lens[b] * Dv, 1.0f, CLATTN_DTYPE_F32, &seed);
    }
    if (c->share_prefix) { /* sequence 1's first page holds sequence 0's first keys */
        assert_true(c->kv == KV_PAGED && c->k_lens[0] >= (int)c->page && c->k_lens[1] >= (int)c->page);
        for (size_t h = 0; h < Hkv; ++h) {
            memcpy(s->k[1] + h * c->k_lens[1] * D, s->k[0] + h * c->k_lens[0] * D, c->page * D * sizeof(float));
            memcpy(s->v[1] + h * c->k_lens[1] * Dv, s->v[0] + h * c->k_lens[0] * Dv, c->page * Dv * sizeof(float));
        }
    }

    /* Queries: packed [total, Hq, D] or dense [B, Hq, Lq, D]. */
    const size_t total_q = c->packed_q ? (size_t)call->cu_q[B] : B * call->max_q;
    call->total_q = total_q;
    float *qh = calloc(total_q * Hq * D + 1, sizeof *qh);
    for (size_t b = 0; b < B; ++b)
        for (size_t h = 0; h < Hq; ++h)
            for (int i = 0; i < c->q_lens[b]; ++i)
                for (size_t d = 0; d < D; ++d) {
                    const float x = s->q[b][(h * c->q_lens[b] + i) * D + d];
                    if (c->packed_q)
                        qh[((call->cu_q[b] + i) * Hq + h) * D + d] = x;
                    else
                        qh[((b * Hq + h) * call->max_q + i) * D + d] = x;
                }
    cl_int err = 0;
    cl_mem qb = keep(call, support_buffer_storage(ctx, qh, total_q * Hq * D, c->dtype, &err));
    free(qh);
    call->q = c->packed_q ? clattn_tensor_blhd(qb, c->dtype, 1, Hq, total_q, D)
                          : clattn_tensor_bhld(qb, c->dtype, B, Hq, call->max_q, D);

    /* Keys and values: every (token, head) row stored (quantized) in its place; the scale tensors alongside. */
    size_t tokens = 0, pages = 0;
    if (c->kv == KV_PACKED) tokens = (size_t)call->cu_k[B];
    if (c->kv == KV_DENSE) tokens = B * call->max_k;
    if (c->kv == KV_DENSE_LENGTHS) tokens = B * (call->max_k + CAP_EXTRA);
    size_t *page_of = NULL; /* paged: the page of (b, e) */
    if (c->kv == KV_PAGED) {
        size_t per = 1;
        for (size_t b = 0; b < B; ++b) {
            const size_t used = ((size_t)c->k_lens[b] + c->page - 1) / c->page;
            if (used > per) per = used;
            pages += used;
        }
        pages += c->extra_pages ? c->extra_pages : 3; /* pages no sequence uses, left as poison */
        call->desc.block_table_stride = per + 1;
        call->table = malloc(B * (per + 1) * sizeof *call->table);
        /* A shuffled order of pages, so that a sequence's pages are neither in order nor together. */
        size_t *order = malloc(pages * sizeof *order);
        for (size_t i = 0; i < pages; ++i) order[i] = i;
        for (size_t i = pages - 1; i > 0; --i) {
            const size_t j = (size_t)(fabsf(support_random(&seed)) * 1e6f) % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        size_t next = 0;
        for (size_t b = 0; b < B; ++b)
            for (size_t e = 0; e <= per; ++e) {
                const bool used = e * c->page < (size_t)c->k_lens[b];
                const bool shared = c->share_prefix && b == 1 && e == 0;
                /* Entries past a sequence's pages hold anything, here a page number past the cache. */
                call->table[b * (per + 1) + e] = shared ? call->table[0]
                                                 : used ? (int32_t)order[next++]
                                                        : (int32_t)(pages + 1000);
            }
        free(order);
        tokens = pages * c->page;
        page_of = NULL;
    }
    uint8_t *kh = malloc(tokens * Hkv * D * kesz + 1), *vh = malloc(tokens * Hkv * Dv * kesz + 1);
    memset(kh, POISON, tokens * Hkv * D * kesz + 1);
    memset(vh, POISON, tokens * Hkv * Dv * kesz + 1);
    float *ksc = calloc(tokens * Hkv + Hkv + 1, sizeof *ksc), *vsc = calloc(tokens * Hkv + Hkv + 1, sizeof *vsc);
    /* fp8 and per-head scales: one per head, from the head's largest value over every sequence. */
    float khead[64] = {0}, vhead[64] = {0};
    if (c->per_head_scale || c->kv8 == CLATTN_DTYPE_FP8_E4M3) {
        const float top = c->kv8 == CLATTN_DTYPE_I8 ? 127.0f : 448.0f;
        for (size_t b = 0; b < B; ++b)
            for (size_t h = 0; h < Hkv; ++h) {
                for (size_t x = 0; x < (size_t)c->k_lens[b] * D; ++x)
                    khead[h] = fmaxf(khead[h], fabsf(s->k[b][h * c->k_lens[b] * D + x]) / top);
                for (size_t x = 0; x < (size_t)c->k_lens[b] * Dv; ++x)
                    vhead[h] = fmaxf(vhead[h], fabsf(s->v[b][h * c->k_lens[b] * Dv + x]) / top);
            }
    }
    for (size_t b = 0; b < B; ++b)
        for (size_t h = 0; h < Hkv; ++h)
            for (int j = 0; j < c->k_lens[b]; ++j) {
                size_t token = 0;
                if (c->kv == KV_PACKED) token = (size_t)(call->cu_k[b] + j);
                if (c->kv == KV_DENSE) token = b * call->max_k + (size_t)j;
                if (c->kv == KV_DENSE_LENGTHS) token = b * (call->max_k + CAP_EXTRA) + (size_t)j;
                if (c->kv == KV_PAGED)
                    token = (size_t)call->table[b * call->desc.block_table_stride + (size_t)j / c->page] * c->page +
                            (size_t)j % c->page;
                float *kr = s->k[b] + (h * c->k_lens[b] + j) * D, *vr = s->v[b] + (h * c->k_lens[b] + j) * Dv;
                float ks = khead[h], vs = vhead[h];
                if (c->kv8 == CLATTN_DTYPE_I8 && c->per_head_scale) {
                    /* A per-head int8 scale: store through fp8's path of a given scale, by hand. */
                    for (size_t d = 0; d < D; ++d) {
                        const int8_t qv = (int8_t)clattn_dtype_round(CLATTN_DTYPE_I8, ks > 0 ? kr[d] / ks : 0.0f);
                        kh[(token * Hkv + h) * D + d] = (uint8_t)qv;
                        kr[d] = (float)qv * ks;
                    }
                    for (size_t d = 0; d < Dv; ++d) {
                        const int8_t qv = (int8_t)clattn_dtype_round(CLATTN_DTYPE_I8, vs > 0 ? vr[d] / vs : 0.0f);
                        vh[(token * Hkv + h) * Dv + d] = (uint8_t)qv;
                        vr[d] = (float)qv * vs;
                    }
                } else {
                    store_rows(kr, 1, D, kdt, kh + (token * Hkv + h) * D * kesz, &ks);
                    store_rows(vr, 1, Dv, kdt, vh + (token * Hkv + h) * Dv * kesz, &vs);
                }
                if (c->f16_scale) { /* the device reads the scale rounded to fp16: so must the reference */
                    const float k16 = clattn_dtype_round(CLATTN_DTYPE_F16, ks) / (ks ? ks : 1.0f);
                    const float v16 = clattn_dtype_round(CLATTN_DTYPE_F16, vs) / (vs ? vs : 1.0f);
                    for (size_t d = 0; d < D; ++d) kr[d] = ks ? kr[d] * k16 : kr[d];
                    for (size_t d = 0; d < Dv; ++d) vr[d] = vs ? vr[d] * v16 : vr[d];
                }
                ksc[token * Hkv + h] = ks;
                vsc[token * Hkv + h] = vs;
            }
    (void)page_of;
    cl_mem kb = keep(call, support_buffer(ctx, kh, tokens * Hkv * D * kesz + 1, &err));
    cl_mem vb = keep(call, support_buffer(ctx, vh, tokens * Hkv * Dv * kesz + 1, &err));
    free(kh);
    free(vh);
    const size_t k0 = c->kv == KV_PAGED ? pages : c->kv == KV_PACKED ? 1 : B;
    const size_t k2 = c->kv == KV_PAGED           ? c->page
                      : c->kv == KV_PACKED        ? (size_t)call->cu_k[B]
                      : c->kv == KV_DENSE_LENGTHS ? call->max_k + CAP_EXTRA
                                                  : call->max_k;
    /* Every layout stores keys [.., tokens, Hkv, D] (blhd): dense ones as [B, Lk, Hkv, D]. */
    call->k = clattn_tensor_blhd(kb, kdt, k0, Hkv, k2, D);
    call->v = clattn_tensor_blhd(vb, kdt, k0, Hkv, k2, Dv);
    if (c->kv8) {
        const clattn_dtype sdt = c->f16_scale ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
        if (c->per_head_scale || c->kv8 == CLATTN_DTYPE_FP8_E4M3) {
            cl_mem kbs = keep(call, support_buffer_storage(ctx, khead, Hkv, sdt, &err));
            cl_mem vbs = keep(call, support_buffer_storage(ctx, vhead, Hkv, sdt, &err));
            call->desc.k_scale = clattn_tensor_bhld(kbs, sdt, 1, Hkv, 1, 1);
            call->desc.v_scale = clattn_tensor_bhld(vbs, sdt, 1, Hkv, 1, 1);
        } else {
            cl_mem kbs = keep(call, support_buffer_storage(ctx, ksc, tokens * Hkv, sdt, &err));
            cl_mem vbs = keep(call, support_buffer_storage(ctx, vsc, tokens * Hkv, sdt, &err));
            call->desc.k_scale = clattn_tensor_blhd(kbs, sdt, k0, Hkv, k2, 1);
            call->desc.v_scale = clattn_tensor_blhd(vbs, sdt, k0, Hkv, k2, 1);
        }
    }
    free(ksc);
    free(vsc);

    /* The output and lse, poisoned, with a canary after. */
    call->out_bytes = total_q * Hq * Dv * esz;
    cl_mem ob = keep(call, support_filled_buffer(ctx, call->out_bytes + CANARY, POISON, &err));
    call->out = c->packed_q ? clattn_tensor_blhd(ob, c->dtype, 1, Hq, total_q, Dv)
                            : clattn_tensor_bhld(ob, c->dtype, B, Hq, call->max_q, Dv);
    clattn_sdpa_desc *d = &call->desc;
    const clattn_tensor ks = d->k_scale, vs = d->v_scale;
    const size_t stride = d->block_table_stride;
    clattn_sdpa_desc_init(d);
    d->k_scale = ks;
    d->v_scale = vs;
    d->seq_count = B;
    d->causal = c->causal;
    d->window_left = c->window_left;
    d->window_right = c->window_right;
    d->window_align = c->window_align;
    if (c->packed_q) d->cu_seqlens_q = call->cu_q;
    if (c->kv == KV_DENSE_LENGTHS) d->seqlens_k = call->seqlens_k;
    if (c->kv == KV_PACKED) d->cu_seqlens_k = call->cu_k;
    if (c->kv == KV_PAGED) {
        d->block_table = call->table;
        d->block_table_stride = stride;
        d->seqlens_k = call->seqlens_k;
    }
    if (c->lse) {
        cl_mem lb = keep(call, support_filled_buffer(ctx, total_q * Hq * 4 + CANARY, POISON, &err));
        d->lse = c->packed_q ? clattn_tensor_bhld(lb, CLATTN_DTYPE_F32, 1, Hq, total_q, 1)
                             : clattn_tensor_bhld(lb, CLATTN_DTYPE_F32, B, Hq, call->max_q, 1);
    }
    if (c->mods) {
        for (size_t h = 0; h < Hq; ++h) {
            s->sinks[h] = support_random(&seed);
            s->slopes[h] = 0.05f * (float)(h + 1);
        }
        cl_mem sb = keep(call, support_buffer(ctx, s->sinks, Hq * sizeof(float), &err));
        cl_mem ab = keep(call, support_buffer(ctx, s->slopes, Hq * sizeof(float), &err));
        d->softcap = 2.0f;
        d->sinks = clattn_tensor_bhld(sb, CLATTN_DTYPE_F32, 1, Hq, 1, 1);
        d->alibi_slopes = clattn_tensor_bhld(ab, CLATTN_DTYPE_F32, 1, Hq, 1, 1);
    }
    if (c->mask) {
        const size_t n = B * call->max_q * call->max_k;
        s->mask = malloc(n + 1);
        for (size_t x = 0; x < n; ++x) s->mask[x] = support_random(&seed) > -1.5f;
        cl_mem mb = keep(call, support_buffer(ctx, s->mask, n + 1, &err));
        d->mask = clattn_tensor_bhld(mb, CLATTN_DTYPE_BOOL, B, 1, call->max_q, call->max_k);
    }
    if (c->bm_q) {
        size_t *fs = s->flag_size;
        fs[0] = B;
        fs[1] = c->bm_bcast_h ? 1 : Hq;
        fs[2] = (call->max_q + c->bm_q - 1) / c->bm_q;
        fs[3] = (call->max_k + c->bm_k - 1) / c->bm_k;
        const size_t n = fs[0] * fs[1] * fs[2] * fs[3];
        s->flags = malloc((n + 1) * sizeof *s->flags);
        for (size_t x = 0; x < n; ++x) {
            const float r = support_random(&seed); /* [-2, 2): 0, 1 or 2 about a third of the time each */
            s->flags[x] = r < -0.7f ? 0 : r < 0.7f ? 1 : 2;
        }
        cl_mem fb = keep(call, support_buffer(ctx, s->flags, (n + 1) * sizeof *s->flags, &err));
        d->block_mask = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, fs[0], fs[1], fs[2], fs[3]);
        d->block_mask_q = c->bm_q;
        d->block_mask_k = c->bm_k;
    }
    d->mask_mod = c->mask_mod;
}

/* Sequence b's keep mask [Hq, Lq, Lk] for the reference: the boolean mask, the block flags (counted within the
 * sequence's own positions) and mask_mod where a flag is 1. */
static uint8_t *seq_keep(const serving_case *c, const seq_values *s, const serving_call *call, size_t b) {
    const size_t Hq = c->q_heads, Lq = (size_t)c->q_lens[b], Lk = (size_t)c->k_lens[b];
    const size_t *fs = s->flag_size;
    uint8_t *keep = malloc(Hq * Lq * Lk + 1);
    for (size_t h = 0; h < Hq; ++h)
        for (size_t i = 0; i < Lq; ++i)
            for (size_t j = 0; j < Lk; ++j) {
                bool in = !s->mask || s->mask[(b * call->max_q + i) * call->max_k + j];
                int f = 1;
                if (s->flags)
                    f = s->flags[((b * fs[1] + (fs[1] == 1 ? 0 : h)) * fs[2] + i / c->bm_q) * fs[3] + j / c->bm_k];
                if (f == 0 || (f != 2 && c->mask_mod && !mod_keeps((int)i, (int)j))) in = false;
                keep[(h * Lq + i) * Lk + j] = in;
            }
    return keep;
}

/* Runs a built call and compares every sequence with the reference. */
static void check(const serving_case *c, const seq_values *s, serving_call *call) {
    assert_status(clattn_sdpa(ctx, &call->desc, &call->q, &call->k, &call->v, &call->out, NULL, 0, NULL, NULL),
                  CLATTN_SUCCESS);
    const size_t B = c->seqs, Hq = c->q_heads, Hkv = c->kv_heads, D = c->head_dim, Dv = c->v_head_dim;
    const size_t total_q = call->total_q, esz = clattn_dtype_size(c->dtype);
    float *out = malloc(total_q * Hq * Dv * sizeof *out + 4), *lse = malloc(total_q * Hq * sizeof *lse + 4);
    assert_int_equal(support_read_storage(ctx, call->out.buffer, out, total_q * Hq * Dv, c->dtype), CL_SUCCESS);
    uint8_t canary[CANARY];
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), call->out.buffer, CL_TRUE, call->out_bytes,
                                         CANARY, canary, 0, NULL, NULL),
                     CL_SUCCESS);
    for (int x = 0; x < CANARY; ++x) assert_int_equal(canary[x], POISON);
    if (c->lse)
        assert_int_equal(support_read_storage(ctx, call->desc.lse.buffer, lse, total_q * Hq, CLATTN_DTYPE_F32),
                         CL_SUCCESS);
    const double tol = check_sdpa_tolerance(call->max_k ? call->max_k : 1, c->dtype);
    double worst = 0.0;
    for (size_t b = 0; b < B; ++b) {
        const size_t Lq = (size_t)c->q_lens[b], Lk = (size_t)c->k_lens[b];
        if (Lq == 0) continue;
        double *ref = calloc(Hq * Lq * Dv + 1, sizeof *ref), *ref_lse = calloc(Hq * Lq + 1, sizeof *ref_lse);
        cla_ref_sdpa a;
        memset(&a, 0, sizeof a);
        a.q = cla_ref_dense(s->q[b], 1, Hq, Lq, D);
        a.k = cla_ref_dense(s->k[b], 1, Hkv, Lk, D);
        a.v = cla_ref_dense(s->v[b], 1, Hkv, Lk, Dv);
        a.scale = 1.0 / sqrt((double)D);
        a.causal = c->causal;
        a.window_left = c->window_left;
        a.window_right = c->window_right;
        a.window_align = c->window_align;
        uint8_t *keep_bm = NULL;
        if (s->flags || c->mask_mod) { /* the block mask and mask_mod (and the mask) as one [1, Hq, Lq, Lk] */
            keep_bm = seq_keep(c, s, call, b);
            const cla_ref_tensor kt = cla_ref_dense(NULL, 1, Hq, Lq, Lk);
            a.bool_mask.data = keep_bm;
            memcpy(a.bool_mask.size, kt.size, sizeof kt.size);
            memcpy(a.bool_mask.stride, kt.stride, sizeof kt.stride);
        } else if (s->mask) { /* sequence b's [max_q, max_k] slice, its own rows and keys */
            a.bool_mask.data = s->mask + b * call->max_q * call->max_k;
            a.bool_mask.size[0] = a.bool_mask.size[1] = 1;
            a.bool_mask.size[2] = Lq;
            a.bool_mask.size[3] = Lk;
            a.bool_mask.stride[2] = call->max_k;
            a.bool_mask.stride[3] = 1;
        }
        if (c->mods) {
            a.softcap = 2.0;
            a.sinks = s->sinks;
            a.alibi_slopes = s->slopes;
        }
        a.out = ref;
        a.lse = ref_lse;
        assert_int_equal(cla_reference_sdpa(&a), 0);
        free(keep_bm);
        for (size_t h = 0; h < Hq; ++h)
            for (size_t i = 0; i < Lq; ++i) {
                const size_t row =
                    c->packed_q ? ((size_t)call->cu_q[b] + i) * Hq + h : (b * Hq + h) * call->max_q + i;
                const size_t lrow = c->packed_q ? h * total_q + (size_t)call->cu_q[b] + i : row;
                for (size_t d = 0; d < Dv; ++d) {
                    const double want = ref[(h * Lq + i) * Dv + d], got = out[row * Dv + d];
                    const double e = fabs(got - want);
                    if (!(e <= tol)) {
                        print_error("seq %zu head %zu row %zu dim %zu: got %.9g want %.9g (tolerance %.3g)\n", b, h,
                                    i, d, got, want, tol);
                        fail();
                    }
                    if (e > worst) worst = e;
                }
                if (c->lse) {
                    const double want = ref_lse[h * Lq + i], got = lse[lrow];
                    if (!(isinf(want) ? got == want : fabs(got - want) <= tol * (1 + fabs(want)))) {
                        print_error("seq %zu head %zu row %zu: lse %.9g want %.9g\n", b, h, i, got, want);
                        fail();
                    }
                }
            }
        free(ref);
        free(ref_lse);
    }
    (void)esz;
    free(out);
    free(lse);
}

static void run_case(const serving_case *c) {
    seq_values s;
    serving_call call;
    build(c, &s, &call);
    check(c, &s, &call);
    release_call(&call);
    free_values(&s);
}

/* The kernel overrides every case runs under: the CPU kernel's defaults, its row shape unpacked and packed with
 * small tiles and forced key splits, its block shape (packed queries: from its work list, one counter per split)
 * without and with key splits, the tiled kernel, the flash kernel and the decode kernel. */
static const char *const variants[] = {
    NULL,
    "variant=cpu,rows=1,gqa_pack=0,block_n=8,splits=3",
    "variant=cpu,rows=1,gqa_pack=1,block_n=16,splits=2",
    "variant=cpu,rows=8,block_n=16",
    "variant=cpu,rows=8,block_n=8,splits=3",
    "variant=tiled,rows=2,block_n=8,wg=4,local=1,splits=2",
    "variant=tiled,rows=1,block_n=16,wg=8,local=0",
    "variant=flash,rows=2,block_n=8,wg=8",
    "variant=decode,block_n=8,wg=4,splits=2", /* the GPU decode kernel (flash past its 16 packed rows) */
};

static void each_variant(void (*body)(void)) {
    /* SERVING_VARIANT=i runs variant i alone, to look at one kernel under Oclgrind; SERVING_SPLITS=0 or 1 runs the
     * variants without or with forced key splits (Oclgrind 21.10's uninitialised-value checker loses track of the
     * split workspace, which the combine step reads, so those run under the other checks: tests/CMakeLists.txt). */
    const char *only = getenv("SERVING_VARIANT"), *splits = getenv("SERVING_SPLITS");
    for (size_t v = 0; v < ARRAY_N(variants); ++v) {
        if (only && (size_t)atoi(only) != v) continue;
        const bool has_splits = variants[v] && strstr(variants[v], "splits=");
        if (splits && has_splits != (atoi(splits) != 0)) continue;
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", variants[v]), CLATTN_SUCCESS);
        body();
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* Packed queries and keys: lengths 0 and 1 inside the batch, GQA, both causal alignments, windows, masks. */
static void packed_body(void) {
    static const int ql[] = {3, 0, 1, 37, 20}, kl[] = {5, 4, 1, 37, 61};
    serving_case c = case_of(5, ql, kl, 6, 2, 24);
    run_case(&c);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 8;
    run_case(&c);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.window_left = 4;
    c.window_right = 2;
    c.seed = 9;
    run_case(&c);
    c = case_of(5, ql, kl, 3, 3, 40);
    c.v_head_dim = 16;
    c.mask = true;
    c.dtype = CLATTN_DTYPE_F16;
    c.seed = 10;
    run_case(&c);
    c.dtype = CLATTN_DTYPE_BF16;
    c.mask = false;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.window_left = 9;
    c.seed = 11;
    run_case(&c);
    /* The score modifiers, per sequence: ALiBi's distances aligned like its causal mask. */
    c = case_of(5, ql, kl, 4, 2, 16);
    c.mods = true;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 12;
    run_case(&c);
    /* Sequences long enough (4 row blocks of the CPU kernel's default 24 rows) for its block shape to read the
     * [.., tokens, Hkv, D] keys and values from compact copies (src/attention/sdpa_fused.c), fp32 and int8. */
    static const int lq[] = {100, 3, 131};
    c = case_of(3, lq, lq, 6, 2, 40);
    c.v_head_dim = 24;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 13;
    run_case(&c);
    c.causal = CLATTN_CAUSAL_NONE;
    c.kv8 = CLATTN_DTYPE_I8;
    c.seed = 14;
    run_case(&c);
}

static void packed_sequences(void **state) {
    (void)state;
    each_variant(packed_body);
}

/* Paged caches: decode (dense queries) and chunked prefill (packed queries) against shuffled pages of every block
 * size, with a prefix page shared between two sequences. */
static void paged_body(void) {
    static const int ql1[] = {1, 1, 1, 1}, ql[] = {4, 0, 9, 1}, kl[] = {70, 33, 1, 0};
    static const size_t pages[] = {8, 16, 32, 64, 128, 256};
    for (size_t p = 0; p < ARRAY_N(pages); ++p) {
        serving_case c = case_of(4, ql1, kl, 8, 2, 32);
        c.packed_q = false;
        c.kv = KV_PAGED;
        c.page = pages[p];
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.seed = 20 + (unsigned)p;
        c.share_prefix = pages[p] <= 32;
        c.mods = p == 1;
        run_case(&c);
        c = case_of(4, ql, kl, 4, 4, 16);
        c.kv = KV_PAGED;
        c.page = pages[p];
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.window_left = 20;
        c.seed = 30 + (unsigned)p;
        run_case(&c);
    }
}

static void paged_caches(void **state) {
    (void)state;
    each_variant(paged_body);
}

/* 8-bit keys and values: int8 with a scale per token and head (fp32 and fp16 scales) or per head, and fp8 with one
 * per head, in the dense, packed and paged layouts. */
static void quantized_body(void) {
    static const int ql[] = {1, 7, 0, 12}, kl[] = {40, 19, 3, 12}, same_q[] = {2, 2, 2}, same_k[] = {45, 45, 45};
    static const clattn_dtype kinds[] = {CLATTN_DTYPE_I8, CLATTN_DTYPE_FP8_E4M3};
    for (size_t t = 0; t < 2; ++t) {
        serving_case c = case_of(4, ql, kl, 4, 2, 32);
        c.kv8 = kinds[t];
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.seed = 40 + (unsigned)t;
        run_case(&c);
        c.kv = KV_PAGED;
        c.page = 8;
        c.f16_scale = true;
        c.seed = 42 + (unsigned)t;
        run_case(&c);
        c = case_of(3, same_q, same_k, 2, 1, 20);
        c.packed_q = false;
        c.kv = KV_DENSE;
        c.kv8 = kinds[t];
        c.per_head_scale = true;
        c.dtype = CLATTN_DTYPE_F16;
        c.seed = 44 + (unsigned)t;
        run_case(&c);
    }
}

static void quantized_kv(void **state) {
    (void)state;
    each_variant(quantized_body);
}

/* Every fp8 code through the kernels' decode, exactly: 256 queries one-hot over a 256-wide head, one key whose
 * elements are the codes 0..255 and a value row the same. With one key, row i's weight is 1, so its output is the
 * decoded value row exactly (NaN where the code is NaN; -0 sums to 0), and its lse is the decoded key element i (to
 * the rounding of the kernels' log2 units). The key holds 0x7e and 0xfe in place of the NaN codes, which would make
 * every score NaN (0 * NaN). Scales 1 (per head), on every variant. */
static void fp8_codes_body(void) {
    enum { N = 256 };
    float *q = calloc((size_t)N * N, sizeof(float)), *out = malloc((size_t)N * N * sizeof(float));
    float lse[N], want[N], want_k[N];
    uint8_t codes[N], kcodes[N];
    const float one = 1.0f;
    for (int i = 0; i < N; ++i) {
        codes[i] = (uint8_t)i;
        kcodes[i] = (i & 0x7f) == 0x7f ? (uint8_t)(i - 1) : (uint8_t)i;
        q[(size_t)i * N + (size_t)i] = 1.0f;
    }
    assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, codes, want, N), CLATTN_SUCCESS);
    assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, kcodes, want_k, N), CLATTN_SUCCESS);
    cl_int err = CL_SUCCESS;
    cl_mem qb = support_buffer(ctx, q, (size_t)N * N * sizeof(float), &err),
           kb = support_buffer(ctx, kcodes, N, &err), vb = support_buffer(ctx, codes, N, &err),
           sb = support_buffer(ctx, &one, sizeof one, &err),
           ob = test_filled_buffer(ctx, (size_t)N * N * sizeof(float), POISON),
           lb = test_filled_buffer(ctx, N * sizeof(float), POISON);
    assert_int_equal(err, CL_SUCCESS);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.scale = 1.0f;
    d.k_scale = d.v_scale = clattn_tensor_bhld(sb, CLATTN_DTYPE_F32, 1, 1, 1, 1);
    d.lse = clattn_tensor_bhld(lb, CLATTN_DTYPE_F32, 1, 1, N, 1);
    const clattn_tensor qt = clattn_tensor_bhld(qb, CLATTN_DTYPE_F32, 1, 1, N, N),
                        kt = clattn_tensor_bhld(kb, CLATTN_DTYPE_FP8_E4M3, 1, 1, 1, N),
                        vt = clattn_tensor_bhld(vb, CLATTN_DTYPE_FP8_E4M3, 1, 1, 1, N),
                        ot = clattn_tensor_bhld(ob, CLATTN_DTYPE_F32, 1, 1, N, N);
    assert_status(clattn_sdpa(ctx, &d, &qt, &kt, &vt, &ot, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    assert_int_equal(support_read_storage(ctx, ob, out, (size_t)N * N, CLATTN_DTYPE_F32), CL_SUCCESS);
    assert_int_equal(support_read_storage(ctx, lb, lse, N, CLATTN_DTYPE_F32), CL_SUCCESS);
    for (int i = 0; i < N; ++i) {
        if (!(fabsf(lse[i] - want_k[i]) <= 1e-6f * (1.0f + fabsf(want_k[i])))) {
            print_error("code 0x%02x as a key: lse %.9g, want %.9g\n", kcodes[i], lse[i], want_k[i]);
            fail();
        }
        for (int x = 0; x < N; ++x) {
            const float got = out[(size_t)i * N + (size_t)x];
            if (isnan(want[x]) ? !isnan(got) : got != want[x]) {
                print_error("row %d: code 0x%02x as a value decodes to %.9g, want %.9g\n", i, x, got, want[x]);
                fail();
            }
        }
    }
    clReleaseMemObject(qb);
    clReleaseMemObject(kb);
    clReleaseMemObject(vb);
    clReleaseMemObject(sb);
    clReleaseMemObject(ob);
    clReleaseMemObject(lb);
    free(q);
    free(out);
}

static void fp8_every_code(void **state) {
    (void)state;
    each_variant(fp8_codes_body);
}

/* NaN codes inside a cache of fp8 keys and values, where a decoding kernel meets them among ordinary codes in the
 * middle of a tile (the CPU kernel's row shape decodes a tile without its NaN test unless the tile holds one): a
 * NaN key element makes its rows' outputs NaN, a NaN value element makes its column NaN and leaves the other
 * columns exact, and a key past key_lengths with NaN codes in its key and value changes nothing. Decode with two
 * query heads on one key/value head; references in double from the decoded codes. */
enum { NC_HQ = 2, NC_L = 40, NC_DMAX = 24, NC_AT = 17 };
/* The head dim of the case being run: 24 (16-byte blocks, the last overlapping) or 8 (a code at a time). Not 12:
 * the GPU decode kernel (variant 7) crashes PoCL 3.1 at head dim 12 in groups of 4 with two packed rows and key
 * lengths (clattn bench sdpa --seq 1 --heads 2 --kv-heads 1 --head-dim 12 --kv-seq 40 --key-length 17 with
 * CLATTN_FUSED_PARAMS=variant=decode,wg=4), which Oclgrind runs without an error: an open bug. */
static int nc_d = NC_DMAX;

static void fp8_nan_query(float *q) {
    for (int i = 0; i < NC_HQ * nc_d; ++i) q[i] = (float)((i * 7) % 11 - 5) * 0.25f;
}

/* The double-precision reference (tests/support/reference.h) over the decoded codes, keys past `keys` masked. */
static void fp8_nan_reference(const float *q, const float *k, const float *v, int keys, float scale, double *out) {
    const int32_t len = keys;
    const cla_ref_sdpa r = {.q = cla_ref_dense(q, 1, NC_HQ, 1, (size_t)nc_d),
                            .k = cla_ref_dense(k, 1, 1, NC_L, (size_t)nc_d),
                            .v = cla_ref_dense(v, 1, 1, NC_L, (size_t)nc_d),
                            .scale = scale,
                            .window_left = CLATTN_WINDOW_UNBOUNDED,
                            .window_right = CLATTN_WINDOW_UNBOUNDED,
                            .key_lengths = &len,
                            .out = out};
    assert_int_equal(cla_reference_sdpa(&r), 0);
}

/* Runs the decode step with codes kc, vc and key length keys; checks each output against want (NaN where want is
 * NaN, else within 2e-6 relative). */
static void fp8_nan_case(const uint8_t *kc, const uint8_t *vc, int keys, const double *want, const char *what) {
    float q[NC_HQ * NC_DMAX], out[NC_HQ * NC_DMAX];
    const float one = 1.0f;
    const int32_t len = keys;
    fp8_nan_query(q);
    cl_int err = CL_SUCCESS;
    cl_mem qb = support_buffer(ctx, q, NC_HQ * nc_d * sizeof(float), &err),
           kb = support_buffer(ctx, kc, (size_t)NC_L * nc_d, &err),
           vb = support_buffer(ctx, vc, (size_t)NC_L * nc_d, &err),
           sb = support_buffer(ctx, &one, sizeof one, &err), lb = support_buffer(ctx, &len, sizeof len, &err),
           ob = test_filled_buffer(ctx, NC_HQ * nc_d * sizeof(float), POISON);
    assert_int_equal(err, CL_SUCCESS);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.scale = 0.5f;
    d.k_scale = d.v_scale = clattn_tensor_bhld(sb, CLATTN_DTYPE_F32, 1, 1, 1, 1);
    d.key_lengths = lb;
    const clattn_tensor qt = clattn_tensor_bhld(qb, CLATTN_DTYPE_F32, 1, NC_HQ, 1, nc_d),
                        kt = clattn_tensor_bhld(kb, CLATTN_DTYPE_FP8_E4M3, 1, 1, NC_L, nc_d),
                        vt = clattn_tensor_bhld(vb, CLATTN_DTYPE_FP8_E4M3, 1, 1, NC_L, nc_d),
                        ot = clattn_tensor_bhld(ob, CLATTN_DTYPE_F32, 1, NC_HQ, 1, nc_d);
    assert_status(clattn_sdpa(ctx, &d, &qt, &kt, &vt, &ot, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    assert_int_equal(support_read_storage(ctx, ob, out, NC_HQ * nc_d, CLATTN_DTYPE_F32), CL_SUCCESS);
    for (int i = 0; i < NC_HQ * nc_d; ++i) {
        const bool ok = isnan(want[i]) ? isnan(out[i]) : fabs(out[i] - want[i]) <= 2e-6 * (1.0 + fabs(want[i]));
        if (!ok) {
            print_error("%s, head dim %d: out[%d] = %.9g, want %.9g\n", what, nc_d, i, out[i], want[i]);
            fail();
        }
    }
    clReleaseMemObject(qb);
    clReleaseMemObject(kb);
    clReleaseMemObject(vb);
    clReleaseMemObject(sb);
    clReleaseMemObject(lb);
    clReleaseMemObject(ob);
}

static void fp8_nan_codes_dim(void) {
    uint8_t kc[NC_L * NC_DMAX], vc[NC_L * NC_DMAX];
    float q[NC_HQ * NC_DMAX], k[NC_L * NC_DMAX], v[NC_L * NC_DMAX];
    double want[NC_HQ * NC_DMAX];
    for (int i = 0; i < NC_L * nc_d; ++i) {
        /* ordinary codes of both signs below 2, normal and subnormal, none of them NaN */
        kc[i] = (uint8_t)((i * 37 + 11) % 0x40) | (uint8_t)((i % 3 == 0) ? 0x80 : 0);
        vc[i] = (uint8_t)((i * 53 + 5) % 0x40) | (uint8_t)((i % 5 == 0) ? 0x80 : 0);
    }
    fp8_nan_query(q);
    assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, kc, k, NC_L * nc_d), CLATTN_SUCCESS);
    assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, vc, v, NC_L * nc_d), CLATTN_SUCCESS);

    fp8_nan_reference(q, k, v, NC_L, 0.5f, want);
    fp8_nan_case(kc, vc, NC_L, want, "no NaN codes");

    /* keys NC_AT.. are past the key length: NaN codes there change nothing */
    uint8_t kn[NC_L * NC_DMAX], vn[NC_L * NC_DMAX];
    memcpy(kn, kc, sizeof kn);
    memcpy(vn, vc, sizeof vn);
    kn[(NC_AT + 2) * nc_d + 5] = 0x7f;
    vn[(NC_AT + 2) * nc_d + 3] = 0xff;
    fp8_nan_reference(q, k, v, NC_AT, 0.5f, want);
    fp8_nan_case(kn, vn, NC_AT, want, "NaN codes past the key length");

    /* a NaN value element of a visible key: its column is NaN, the others exact */
    memcpy(kn, kc, sizeof kn);
    memcpy(vn, vc, sizeof vn);
    vn[NC_AT * nc_d + 3] = 0xff;
    fp8_nan_reference(q, k, v, NC_L, 0.5f, want);
    for (int h = 0; h < NC_HQ; ++h) want[h * nc_d + 3] = NAN;
    fp8_nan_case(kn, vn, NC_L, want, "a NaN value code");

    /* a NaN key element of a visible key: every output NaN */
    memcpy(vn, vc, sizeof vn);
    kn[NC_AT * nc_d] = 0x7f;
    for (int i = 0; i < NC_HQ * nc_d; ++i) want[i] = NAN;
    fp8_nan_case(kn, vn, NC_L, want, "a NaN key code");
}

static void fp8_nan_codes_body(void) {
    for (nc_d = NC_DMAX; nc_d > 0; nc_d -= 16) fp8_nan_codes_dim();
    nc_d = NC_DMAX;
}

static void fp8_nan_codes(void **state) {
    (void)state;
    each_variant(fp8_nan_codes_body);
}

/* Dense caches with per-sequence lengths (seqlens_k without a block table, flash_attn_with_kvcache's
 * cache_seqlens): more rows than any sequence, the rest poison, each sequence aligned at its own length; decode,
 * chunked prefill of dense and packed queries, windows and ALiBi aligned bottom-right without causal masking, and
 * 8-bit caches. */
static void dense_lengths_body(void) {
    static const int ql1[] = {1, 1, 1, 1, 1}, ql3[] = {3, 3, 3, 3, 3}, qlp[] = {4, 0, 9, 1, 2};
    static const int kl[] = {21, 0, 9, 64, 3};
    serving_case c = case_of(5, ql1, kl, 6, 2, 24);
    c.packed_q = false;
    c.kv = KV_DENSE_LENGTHS;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 80;
    run_case(&c);
    c = case_of(5, ql3, kl, 4, 4, 16);
    c.packed_q = false;
    c.kv = KV_DENSE_LENGTHS;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.window_left = 5;
    c.mods = true;
    c.seed = 81;
    run_case(&c);
    c = case_of(5, qlp, kl, 4, 2, 32);
    c.kv = KV_DENSE_LENGTHS;
    c.window_left = 3;
    c.window_right = 1;
    c.window_align = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    c.mods = true;
    c.seed = 82;
    run_case(&c);
    c.window_align = CLATTN_WINDOW_ALIGN_TOP_LEFT;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 83;
    run_case(&c);
    c = case_of(5, qlp, kl, 4, 2, 32);
    c.kv = KV_DENSE_LENGTHS;
    c.kv8 = CLATTN_DTYPE_I8;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 84;
    run_case(&c);
    c.kv8 = CLATTN_DTYPE_FP8_E4M3;
    c.dtype = CLATTN_DTYPE_F16;
    c.seed = 85;
    run_case(&c);
}

static void dense_cache_lengths(void **state) {
    (void)state;
    each_variant(dense_lengths_body);
}

/* The window and ALiBi aligned on their own on packed and paged sequences: bottom-right without causal masking
 * (FlashAttention's convention), top-left under a bottom-right causal mask. */
static void window_align_body(void) {
    static const int ql[] = {3, 0, 1, 37, 20}, kl[] = {5, 4, 1, 37, 61};
    serving_case c = case_of(5, ql, kl, 4, 2, 16);
    c.window_left = 4;
    c.window_right = 2;
    c.window_align = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    c.mods = true;
    c.seed = 90;
    run_case(&c);
    c.kv = KV_PAGED;
    c.page = 8;
    c.window_left = CLATTN_WINDOW_UNBOUNDED;
    c.seed = 91;
    run_case(&c);
}

static void window_alignment(void **state) {
    (void)state;
    each_variant(window_align_body);
}

/* The block mask on packed and paged calls, blocks counted within each sequence: packed sequences of odd lengths
 * with lengths 0 and 1 in the middle, paged caches of shuffled pages (block sizes 16 and 64) with packed and decode
 * queries, GQA, both causal alignments, random flags 0/1/2 (one broadcast over heads), block sizes that divide
 * nothing, with mask_mod and without, and with a boolean mask beside them. */
static void block_mask_body(void) {
    static const int ql[] = {5, 0, 1, 37, 20, 13}, kl[] = {9, 4, 1, 37, 61, 0};
    serving_case c = case_of(6, ql, kl, 6, 2, 16);
    c.bm_q = 7;
    c.bm_k = 10;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 40;
    run_case(&c);
    c.mask_mod = MOD_EXPR;
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.seed = 41;
    run_case(&c);
    c = case_of(6, ql, kl, 3, 3, 8);
    c.bm_q = 16;
    c.bm_k = 5;
    c.bm_bcast_h = true;
    c.mask = true;
    c.mask_mod = MOD_EXPR;
    c.dtype = CLATTN_DTYPE_F16;
    c.seed = 42;
    run_case(&c);

    static const int pql[] = {4, 0, 9, 1}, pkl[] = {70, 33, 1, 0}, ql1[] = {1, 1, 1, 1};
    static const size_t pages[] = {16, 64};
    for (size_t p = 0; p < ARRAY_N(pages); ++p) {
        c = case_of(4, pql, pkl, 4, 2, 16);
        c.kv = KV_PAGED;
        c.page = pages[p];
        c.bm_q = 3;
        c.bm_k = p ? 32 : 11;
        c.causal = p ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.mask_mod = p ? NULL : MOD_EXPR;
        c.seed = 50 + (unsigned)p;
        run_case(&c);
        c = case_of(4, ql1, pkl, 8, 2, 32);
        c.packed_q = false;
        c.kv = KV_PAGED;
        c.page = pages[p];
        c.share_prefix = p == 0;
        c.bm_q = 1;
        c.bm_k = 9;
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.mask_mod = p ? MOD_EXPR : NULL;
        c.seed = 60 + (unsigned)p;
        run_case(&c);
    }
}

static void block_mask_per_sequence(void **state) {
    (void)state;
    each_variant(block_mask_body);
}

/* A call whose index arrays (or scales) are wrong: the exact status, and the output untouched. */
static void expect_refused(serving_call *call, clattn_status want) {
    assert_status(clattn_sdpa(ctx, &call->desc, &call->q, &call->k, &call->v, &call->out, NULL, 0, NULL, NULL),
                  want);
    uint8_t *bytes = malloc(call->out_bytes + CANARY);
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), call->out.buffer, CL_TRUE, 0,
                                         call->out_bytes + CANARY, bytes, 0, NULL, NULL),
                     CL_SUCCESS);
    for (size_t x = 0; x < call->out_bytes + CANARY; ++x) assert_int_equal(bytes[x], POISON);
    free(bytes);
}

static void invalid_arguments(void **state) {
    (void)state;
    static const int ql[] = {2, 3, 1}, kl[] = {17, 9, 30};
    seq_values s;
    serving_call call;
    serving_case c = case_of(3, ql, kl, 2, 1, 8);
    build(&c, &s, &call);
    call.cu_q[0] = 1; /* not from 0 */
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.cu_q[0] = 0;
    call.cu_q[2] = 1; /* decreasing */
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.cu_q[2] = 5;
    call.cu_k[3] = 57; /* past the tensor's 56 rows */
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.cu_k[3] = 56;
    clattn_sdpa_desc keep_desc = call.desc;
    call.desc.weights = call.desc.lse; /* no weights with serving layouts */
    expect_refused(&call, CLATTN_ERROR_UNSUPPORTED);
    call.desc = keep_desc;
    call.desc.impl = CLATTN_IMPL_UNFUSED;
    expect_refused(&call, CLATTN_ERROR_UNSUPPORTED);
    call.desc = keep_desc;
    call.desc.key_lengths = call.q.buffer;
    expect_refused(&call, CLATTN_ERROR_INVALID_ARGUMENT);
    call.desc = keep_desc;
    call.desc.block_table = call.cu_k; /* packed and paged keys at once */
    call.desc.seqlens_k = call.cu_k;
    call.desc.block_table_stride = 1;
    expect_refused(&call, CLATTN_ERROR_INVALID_ARGUMENT);
    call.desc = keep_desc;
    call.desc.k_scale = call.q; /* a scale for fp32 keys */
    expect_refused(&call, CLATTN_ERROR_INVALID_SCALE);
    call.desc = keep_desc;
    /* A block mask counted over the packed rows (6 queries, 56 keys) rather than the longest sequence (3 and 30):
     * blocks of 2 x 8 give [3, 2, 3, 7], not [3, 2, 2, 4]; the message names the sequences' terms. */
    cl_int err = CL_SUCCESS;
    int32_t flags[3 * 2 * 3 * 7] = {0};
    cl_mem fb = support_buffer(ctx, flags, sizeof flags, &err);
    assert_int_equal(err, CL_SUCCESS);
    call.desc.block_mask = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, 3, 2, 3, 7);
    call.desc.block_mask_q = 2;
    call.desc.block_mask_k = 8;
    expect_refused(&call, CLATTN_ERROR_INVALID_MASK);
    const char *msg = clattn_context_last_error(ctx);
    if (!strstr(msg, "[3, 2, 2, 4]") || !strstr(msg, "sequences") || !strstr(msg, "longest query sequence 3"))
        fail_msg("the block mask's message does not give the sequences' sizes: %s", msg);
    call.desc.block_mask = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, 3, 2, 2, 4); /* the right sizes, unfused */
    call.desc.impl = CLATTN_IMPL_UNFUSED;
    expect_refused(&call, CLATTN_ERROR_UNSUPPORTED);
    clReleaseMemObject(fb);
    call.desc = keep_desc;
    release_call(&call);
    free_values(&s);

    /* Paged: an entry past the cache's pages, a length past the table, a block size that is not a power of two. */
    c.packed_q = false;
    static const int ql1[] = {1, 1, 1};
    memcpy(c.q_lens, ql1, sizeof ql1);
    c.kv = KV_PAGED;
    c.page = 8;
    build(&c, &s, &call);
    const int32_t saved = call.table[call.desc.block_table_stride + 1];
    call.table[call.desc.block_table_stride + 1] = (int32_t)call.k.size[0];
    expect_refused(&call, CLATTN_ERROR_INVALID_BLOCK_TABLE);
    call.table[call.desc.block_table_stride + 1] = -1;
    expect_refused(&call, CLATTN_ERROR_INVALID_BLOCK_TABLE);
    call.table[call.desc.block_table_stride + 1] = saved;
    call.seqlens_k[2] = (int32_t)(call.desc.block_table_stride * 8 + 1);
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.seqlens_k[2] = -1;
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.seqlens_k[2] = kl[2];
    clattn_tensor k = call.k, v = call.v;
    call.k.size[2] = call.v.size[2] = 12;
    expect_refused(&call, CLATTN_ERROR_INVALID_SHAPE);
    call.k = k;
    call.v = v;
    call.desc.seqlens_k = NULL;
    expect_refused(&call, CLATTN_ERROR_NULL_POINTER);
    release_call(&call);
    free_values(&s);

    /* A dense cache with lengths: one past its rows or negative, a block_table_stride without a block table, a
     * cache of another batch, lengths with packed keys, an unknown window alignment. */
    c.kv = KV_DENSE_LENGTHS;
    build(&c, &s, &call);
    call.seqlens_k[1] = (int32_t)call.k.size[2] + 1;
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.seqlens_k[1] = -1;
    expect_refused(&call, CLATTN_ERROR_INVALID_SEQLENS);
    call.seqlens_k[1] = (int32_t)call.k.size[2]; /* the whole cache is fine */
    assert_status(clattn_sdpa(ctx, &call.desc, &call.q, &call.k, &call.v, &call.out, NULL, 0, NULL, NULL),
                  CLATTN_SUCCESS);
    assert_int_equal(clFinish(clattn_context_cl_queue(ctx)), CL_SUCCESS);
    release_call(&call);
    free_values(&s);
    build(&c, &s, &call);
    call.desc.block_table_stride = 2;
    expect_refused(&call, CLATTN_ERROR_NULL_POINTER);
    call.desc.block_table_stride = 0;
    call.desc.cu_seqlens_k = call.cu_k;
    expect_refused(&call, CLATTN_ERROR_INVALID_ARGUMENT);
    call.desc.cu_seqlens_k = NULL;
    call.k.size[0] = call.v.size[0] = 2;
    expect_refused(&call, CLATTN_ERROR_INVALID_SHAPE);
    call.k.size[0] = call.v.size[0] = 3;
    call.desc.key_lengths = call.q.buffer;
    expect_refused(&call, CLATTN_ERROR_INVALID_ARGUMENT);
    call.desc.key_lengths = NULL;
    call.desc.window_align = (clattn_window_align)3;
    expect_refused(&call, CLATTN_ERROR_INVALID_MASK);
    release_call(&call);
    free_values(&s);

    /* 8-bit: a missing scale, and one of the wrong shape. */
    c.kv8 = CLATTN_DTYPE_I8;
    build(&c, &s, &call);
    clattn_tensor ks = call.desc.k_scale;
    call.desc.k_scale.buffer = NULL;
    expect_refused(&call, CLATTN_ERROR_INVALID_SCALE);
    call.desc.k_scale = ks;
    call.desc.k_scale.size[1] = 3;
    expect_refused(&call, CLATTN_ERROR_INVALID_SCALE);
    call.desc.k_scale = ks;
    call.desc.k_scale.dtype = CLATTN_DTYPE_BF16;
    expect_refused(&call, CLATTN_ERROR_INVALID_SCALE);
    release_call(&call);
    free_values(&s);
}

/* ---- the sizes users run (label large) ---- */

/* Bytes of a case's paged K cache. */
static uint64_t cache_bytes(const serving_case *c, size_t pages) {
    return (uint64_t)pages * c->page * c->kv_heads * c->head_dim * clattn_dtype_size(c->kv8 ? c->kv8 : c->dtype);
}

/* Paged decode over a cache of more than 2^31 bytes (where the device may allocate it), its pages shuffled over the
 * whole buffer so that most lie past 2^31 bytes: 32 query heads over 8 key/value heads of 128 (values of 32),
 * sequences of 32768, 9000, 1 and 0 keys, in fp32 and int8. */
static void large_paged_decode(void **state) {
    (void)state;
    static const int ql[] = {1, 1, 1, 1}, kl[] = {32768, 9000, 1, 0};
    clattn_device_info info;
    assert_status(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    static const clattn_dtype kinds[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_I8};
    for (size_t t = 0; t < ARRAY_N(kinds); ++t) {
        serving_case c = case_of(4, ql, kl, 32, 8, 128);
        c.v_head_dim =
            32; /* the keys pass 2^31 bytes; narrower values keep the test's host memory to about 5 GiB */
        c.packed_q = false;
        c.kv = KV_PAGED;
        c.page = 64;
        c.kv8 = kinds[t];
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.seed = 60 + (unsigned)t;
        const size_t used = (32768 + 9000 + 63) / 64 + 2;
        c.extra_pages =
            ((size_t)1 << 31) / (c.page * c.kv_heads * c.head_dim * clattn_dtype_size(kinds[t])) + 64 - used;
        if (cache_bytes(&c, used + c.extra_pages) > info.max_alloc_bytes) {
            print_message("large_paged_decode: %s cache of %llu bytes is past '%s''s largest allocation; skipped\n",
                          clattn_dtype_name(kinds[t]), (unsigned long long)cache_bytes(&c, used + c.extra_pages),
                          info.name);
            continue;
        }
        run_case(&c);
    }
}

/* Packed prefill at long lengths: sequences of 2048, 1500, 1, 0 and 777 rows, causal, GQA. */
static void large_packed_prefill(void **state) {
    (void)state;
    static const int ql[] = {2048, 1500, 1, 0, 777};
    serving_case c = case_of(5, ql, ql, 8, 2, 64);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.seed = 70;
    run_case(&c);
}

/* Tiny shapes of every layout on every variant, for Oclgrind (tests/oclgrind_run.sh: data races, uninitialised
 * reads, API misuse): packed with an empty and a one-row sequence, paged with shared pages, int8 and fp8, a dense
 * cache with lengths and a bottom-right window without causal masking. */
static void tiny_body(void) {
    static const int ql[] = {2, 0, 1}, kl[] = {3, 1, 9}, ql1[] = {1, 1, 1}, pkl[] = {9, 17, 0};
    serving_case c = case_of(3, ql, kl, 2, 1, 8);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    run_case(&c);
    c = case_of(3, ql1, pkl, 2, 1, 8);
    c.packed_q = false;
    c.kv = KV_PAGED;
    c.page = 8;
    c.share_prefix = true;
    c.kv8 = CLATTN_DTYPE_I8;
    run_case(&c);
    c = case_of(3, ql, kl, 2, 2, 4);
    c.kv8 = CLATTN_DTYPE_FP8_E4M3;
    c.f16_scale = true;
    run_case(&c);
    c = case_of(3, ql, kl, 2, 1, 8);
    c.kv = KV_DENSE_LENGTHS;
    c.window_left = 1;
    c.window_align = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    c.mods = true;
    run_case(&c);
}

static void tiny_every_variant(void **state) {
    (void)state;
    each_variant(tiny_body);
}

/* Oclgrind (--tiny-block-mask): one packed and one paged call with a block mask and mask_mod on every variant. */
static void tiny_block_mask_body(void) {
    static const int ql[] = {3, 0, 1, 6}, kl[] = {5, 2, 1, 11}, ql1[] = {1, 1, 1, 1}, pkl[] = {9, 17, 0, 4};
    serving_case c = case_of(4, ql, kl, 2, 1, 4);
    c.bm_q = 2;
    c.bm_k = 3;
    c.mask_mod = MOD_EXPR;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    run_case(&c);
    c = case_of(4, ql1, pkl, 2, 1, 4);
    c.packed_q = false;
    c.kv = KV_PAGED;
    c.page = 8;
    c.bm_q = 1;
    c.bm_k = 5;
    run_case(&c);
}

static void tiny_block_mask(void **state) {
    (void)state;
    each_variant(tiny_block_mask_body);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(invalid_arguments),
        cmocka_unit_test(packed_sequences),
        cmocka_unit_test(paged_caches),
        cmocka_unit_test(quantized_kv),
        cmocka_unit_test(fp8_every_code),
        cmocka_unit_test(fp8_nan_codes),
        cmocka_unit_test(dense_cache_lengths),
        cmocka_unit_test(window_alignment),
        cmocka_unit_test(block_mask_per_sequence),
    };
    const struct CMUnitTest tiny[] = {cmocka_unit_test(tiny_every_variant)};
    if (argc > 1 && strcmp(argv[1], "--tiny") == 0)
        return cmocka_run_group_tests_name("sdpa_serving_tiny", tiny, setup, teardown);
    const struct CMUnitTest tiny_bm[] = {cmocka_unit_test(tiny_block_mask)};
    if (argc > 1 && strcmp(argv[1], "--tiny-block-mask") == 0)
        return cmocka_run_group_tests_name("sdpa_serving_tiny_block_mask", tiny_bm, setup, teardown);
    const struct CMUnitTest large[] = {cmocka_unit_test(large_paged_decode),
                                       cmocka_unit_test(large_packed_prefill)};
    if (argc > 1 && strcmp(argv[1], "--large") == 0)
        return cmocka_run_group_tests_name("sdpa_serving_large", large, setup, teardown);
    /* CLATTN_TEST_FILTER (a cmocka pattern) runs some of the tests. */
    if (getenv("CLATTN_TEST_FILTER")) cmocka_set_test_filter(getenv("CLATTN_TEST_FILTER"));
    return cmocka_run_group_tests_name("sdpa_serving", tests, setup, teardown);
}
