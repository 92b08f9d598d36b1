// SPDX-License-Identifier: Apache-2.0
/* Multi-head attention, host side: validation of a whole layer call before anything is enqueued, then the chain
 * projections (CLBlast GEMMs) -> attention -> output projection -> store (bias, residual, dtype).
 *
 * Heads are split and merged by strides, never by copies: the projections write rows [B, L, heads * d], which the
 * attention reads as [B, heads, L, d] views (clattn_tensor_blhd strides), and the attention writes its output as
 * [B, Lq, H, d_v], which is the [B * Lq, H * d_v] matrix of the output projection. A packed w_qkv without a cache
 * runs as one GEMM whose Q | K | V columns the attention reads in place. With a KV cache the key and value
 * projections write straight into the cache rows after its length. */
#include "kv_append.h"
#include "mha_internal.h"

#include <string.h>

void clattn_mha_desc_init(clattn_mha_desc *desc) {
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    clattn_sdpa_desc_init(&desc->attention);
    desc->residual = 0;
    desc->cache = NULL;
    desc->cache_mode = CLATTN_CACHE_APPEND;
    desc->pages = NULL;
}

/* Where one projection's rows go: row r of batch b at offset + b * batch_stride + r * ld (fp32). */
typedef struct target {
    cl_mem buffer;
    size_t offset, ld, batch_stride;
} target;

/* Everything a validated call needs. */
typedef struct mha_plan {
    const clattn_mha_config *c;
    size_t batch, q_len;
    size_t new_len;                 /* keys and values projected by this call */
    size_t kv_len;                  /* keys attended: the cache's length after this call, or new_len */
    size_t past;                    /* the cache's length before this call (0 without a cache) */
    const clattn_tensor *kv_source; /* x, the memory, or NULL (cache READ) */
    clattn_kv_cache *cache;
    cla_mha_pages_plan pages; /* pages.pages NULL: no paged cache */
    bool append;
    bool packed_once; /* one GEMM for Q | K | V */
} mha_plan;

/* Temporaries of one call, released together. */
typedef struct mha_work {
    cl_mem q, kv, att, acc;
} mha_work;

static void work_release(clattn_context *ctx, mha_work *w) {
    cla_temp_release(ctx, &w->q);
    cla_temp_release(ctx, &w->kv);
    cla_temp_release(ctx, &w->att);
    cla_temp_release(ctx, &w->acc);
}

static bool same_view(const clattn_tensor *a, const clattn_tensor *b) {
    if (a->buffer != b->buffer || a->offset != b->offset || a->dtype != b->dtype) return false;
    for (int d = 0; d < 4; ++d)
        if (a->size[d] != b->size[d] || (a->size[d] > 1 && a->stride[d] != b->stride[d])) return false;
    return true;
}

/* A sequence tensor [B, 1, L, width] of a storage dtype with unit width stride, inside its buffer. */
static clattn_status check_seq(clattn_context *ctx, const clattn_tensor *t, const char *name, size_t batch,
                               size_t width, const char *width_name, bool is_output, cla_range *r) {
    if (!cla_is_float_dtype(t->dtype))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "%s: dtype %d is not F32, F16 or BF16", name,
                        (int)t->dtype);
    if (t->size[0] != batch)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "%s: batch (size[0]) is %zu but x's is %zu", name,
                        t->size[0], batch);
    if (t->size[1] != 1)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "%s: size[1] is %zu; sequence tensors are [batch, 1, seq, width]", name, t->size[1]);
    if (t->size[3] != width)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "%s: width (size[3]) is %zu but the weights' %s is %zu",
                        name, t->size[3], width_name, width);
    if (t->stride[3] != 1 && width > 1)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_STRIDE,
                        "%s: the width stride is %zu; it must be 1 (rows are multiplied as matrices)", name,
                        t->stride[3]);
    r->name = name;
    r->buffer = t->buffer;
    r->output = is_output;
    return cla_tensor_check(ctx, t, name, is_output, &r->begin, &r->end);
}

/* The mode of a call with a KV cache or pages, and what it projects: READ projects nothing, so takes no memory. */
static clattn_status check_cache_mode(clattn_context *ctx, const clattn_mha_desc *desc,
                                      const clattn_tensor *memory) {
    CLA_FAIL_ON(desc->cache && desc->pages, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "desc->cache and desc->pages are both set; a call uses one KV cache");
    if (desc->cache_mode != CLATTN_CACHE_APPEND && desc->cache_mode != CLATTN_CACHE_READ)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc->cache_mode %d is neither CLATTN_CACHE_APPEND nor CLATTN_CACHE_READ",
                        (int)desc->cache_mode);
    CLA_FAIL_ON(desc->cache_mode == CLATTN_CACHE_READ && memory, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "memory is given with CLATTN_CACHE_READ, which projects nothing; pass NULL, or use "
                "CLATTN_CACHE_APPEND to add the memory to the %s",
                desc->cache ? "cache" : "pages");
    CLA_FAIL_ON(desc->pages && desc->pages->cu_seqlens_q && memory, ctx, CLATTN_ERROR_UNSUPPORTED,
                "desc->pages->cu_seqlens_q (packed sequences) is for self-attention; memory must be NULL");
    return CLATTN_SUCCESS;
}

static clattn_status check_cache(clattn_context *ctx, const clattn_mha_desc *desc, const clattn_mha_config *c,
                                 size_t batch) {
    const clattn_kv_cache *kv = desc->cache;
    if (kv->ctx != ctx)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc->cache was created on another context; a cache serves only its own");
    if (kv->config.kv_heads != c->kv_heads || kv->config.head_dim != c->head_dim ||
        kv->config.v_head_dim != c->v_head_dim)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "desc->cache holds %zu key/value heads of widths %zu/%zu but the weights make "
                        "%zu of widths %zu/%zu; create the cache with the layer's config",
                        kv->config.kv_heads, kv->config.head_dim, kv->config.v_head_dim, c->kv_heads, c->head_dim,
                        c->v_head_dim);
    if (kv->batch != batch)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "desc->cache was created for batch %zu but x has batch %zu", kv->batch, batch);
    return CLATTN_SUCCESS;
}

/* The byte range of an optional tensor of the attention descriptor, for the overlap checks. */
static clattn_status desc_range(clattn_context *ctx, const clattn_tensor *t, const char *name, bool output,
                                cla_range *ranges, size_t *n) {
    if (!t->buffer) return CLATTN_SUCCESS;
    cla_range *r = &ranges[(*n)++];
    r->name = name;
    r->buffer = t->buffer;
    r->output = output;
    if (clattn_dtype_size(t->dtype) == 0) {
        r->begin = r->end = 0; /* the attention's validation reports the dtype */
        return CLATTN_SUCCESS;
    }
    return cla_tensor_extent(ctx, t, name, &r->begin, &r->end);
}

static clattn_status validate(clattn_context *ctx, const clattn_mha_weights *w, const clattn_mha_desc *desc,
                              const clattn_tensor *x, const clattn_tensor *memory, const clattn_tensor *out,
                              cl_uint num_wait, const cl_event *wait_list, mha_plan *p) {
    const void *const given[] = {w, desc, x, out};
    static const char *const given_names[] = {"weights", "desc", "x", "out"};
    if (cla_check_given(ctx, given, given_names, 4)) return CLATTN_ERROR_NULL_POINTER;
    if (num_wait > 0 && !wait_list)
        return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "%u wait events but wait_list is NULL", num_wait);
    if (w->ctx != ctx)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "the weights were created on another context; create them on this one");
    const clattn_mha_config *c = &w->config;
    /* The serving formats describe the caller's own q, k and v tensors; the layer makes its own. */
    const clattn_sdpa_desc *ad = &desc->attention;
    CLA_FAIL_ON(
        cla_sdpa_desc_has_seqs(ad) || ad->k_scale.buffer || ad->v_scale.buffer, ctx, CLATTN_ERROR_UNSUPPORTED,
        "desc->attention: packed sequences, paged caches and 8-bit scales are options of clattn_sdpa on the "
        "caller's own tensors, not of the layer (its cache is a clattn_kv_cache); leave seq_count, "
        "cu_seqlens_q/k, block_table, seqlens_k and k_scale/v_scale empty");
    memset(p, 0, sizeof *p);
    p->c = c;
    p->batch = x->size[0];
    p->q_len = x->size[2];

    const bool cached = desc->cache || desc->pages;
    clattn_status st = cached ? check_cache_mode(ctx, desc, memory) : CLATTN_SUCCESS;
    if (st) return st;
    cla_range ranges[16] = {{0}};
    size_t n = 0;
    st = check_seq(ctx, x, "x", p->batch, c->d_model, "d_model", false, &ranges[n++]);
    if (st) return st;
    if (memory) {
        if ((st = check_seq(ctx, memory, "memory", p->batch, c->kv_d_model, "kv_d_model", false, &ranges[n++])))
            return st;
    } else if (c->kv_d_model != c->d_model && !(cached && desc->cache_mode == CLATTN_CACHE_READ)) {
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "memory is NULL (self-attention) but the weights' kv_d_model (%zu) differs from "
                        "d_model (%zu); give the memory of cross-attention",
                        c->kv_d_model, c->d_model);
    }
    if ((st = check_seq(ctx, out, "out", p->batch, c->d_model, "d_model", true, &ranges[n++]))) return st;
    if (out->size[2] != p->q_len)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "out: seq (size[2]) is %zu but x's is %zu", out->size[2],
                        p->q_len);

    p->cache = desc->cache;
    p->append = cached && desc->cache_mode == CLATTN_CACHE_APPEND;
    p->kv_source = cached && !p->append ? NULL : memory ? memory : x;
    p->new_len = p->kv_source ? p->kv_source->size[2] : 0;
    p->kv_len = p->new_len;
    if (p->cache) {
        if ((st = check_cache(ctx, desc, c, p->batch))) return st;
        p->past = p->cache->length;
        if (p->new_len > p->cache->capacity - p->past)
            return cla_fail(ctx, CLATTN_ERROR_CAPACITY,
                            "the KV cache holds %zu of %zu positions and this call appends %zu more; "
                            "create a larger cache or reset it",
                            p->past, p->cache->capacity, p->new_len);
        p->kv_len = p->past + p->new_len;
    }
    p->packed_once = w->packed && !memory && !p->cache && p->kv_source;

    /* No output (out, lse, weights, or the cache being appended to) may share memory with anything else of the
     * call, except out being x itself: an in-place residual update, safe because x is read before out is
     * written. */
    const clattn_sdpa_desc *a = &desc->attention;
    if ((st = desc_range(ctx, &a->mask, "desc->attention.mask", false, ranges, &n))) return st;
    if ((st = desc_range(ctx, &a->lse, "desc->attention.lse", true, ranges, &n))) return st;
    if ((st = desc_range(ctx, &a->weights, "desc->attention.weights", true, ranges, &n))) return st;
    if ((st = desc_range(ctx, &a->sinks, "desc->attention.sinks", false, ranges, &n))) return st;
    if ((st = desc_range(ctx, &a->alibi_slopes, "desc->attention.alibi_slopes", false, ranges, &n))) return st;
    if (a->key_lengths && p->batch > 0 && a->key_lengths_offset <= SIZE_MAX / 4 - p->batch) {
        cla_range *r = &ranges[n++];
        *r = (cla_range){"desc->attention.key_lengths",          a->key_lengths, a->key_lengths_offset * 4,
                         (a->key_lengths_offset + p->batch) * 4, false,          0};
    }
    if (p->cache) {
        ranges[n++] = (cla_range){"the cache's keys", p->cache->keys, 0, SIZE_MAX, p->append, 0};
        ranges[n++] = (cla_range){"the cache's values", p->cache->values, 0, SIZE_MAX, p->append, 0};
    }
    if (desc->pages) {
        const clattn_mha_pages *pg = desc->pages;
        if ((st = desc_range(ctx, &pg->k_cache, "desc->pages->k_cache", p->append, ranges, &n))) return st;
        if ((st = desc_range(ctx, &pg->v_cache, "desc->pages->v_cache", p->append, ranges, &n))) return st;
        if ((st = desc_range(ctx, &pg->k_scale, "desc->pages->k_scale", p->append, ranges, &n))) return st;
        if ((st = desc_range(ctx, &pg->v_scale, "desc->pages->v_scale", p->append, ranges, &n))) return st;
    }
    /* out may be x itself, the very same view: an in-place residual update reads each element before writing it. */
    const size_t x_index = 0, out_index = memory ? 2 : 1;
    if (same_view(x, out)) ranges[x_index].alias_group = ranges[out_index].alias_group = 1;
    if ((st = cla_check_overlaps(ctx, ranges, n,
                                 " (out may be x itself, the very same view, for an in-place residual)")))
        return st;
    /* Last, as it allocates: the plan owns the slots from here. */
    if (desc->pages) return cla_mha_pages_check(ctx, desc->pages, c, x, p->kv_source, &p->pages);
    return CLATTN_SUCCESS;
}

static cla_rows rows_at(target t, size_t first_row) {
    cla_rows r = {t.buffer, t.offset + first_row * t.ld, t.ld, t.batch_stride};
    return r;
}

/* The [B, heads, len, d] view of projected rows whose columns hold the heads side by side. */
static clattn_tensor head_view(target t, size_t batch, size_t heads, size_t len, size_t d) {
    clattn_tensor v = clattn_tensor_blhd(t.buffer, CLATTN_DTYPE_F32, batch, heads, len, d);
    v.offset = t.offset;
    v.stride[0] = t.batch_stride;
    v.stride[2] = t.ld;
    return v;
}

static clattn_status project(clattn_context *ctx, cla_chain *chain, const clattn_tensor *in, size_t len,
                             const cla_projection *proj, target t, size_t first_row, const char *what) {
    if (in->size[0] == 0 || len == 0) return CLATTN_SUCCESS; /* CLBlast takes no empty GEMMs */
    return cla_linear(ctx, chain, in, proj->w, proj->n, proj->bias, proj->bias_offset, rows_at(t, first_row), what);
}

/* Allocates the temporaries, checks the attention on its real views, then enqueues the layer. Nothing is enqueued
 * before the last check has passed. */
static clattn_status run(clattn_context *ctx, const clattn_mha_weights *w, const clattn_mha_desc *desc,
                         const clattn_tensor *x, const clattn_tensor *out, const mha_plan *p, mha_work *work,
                         cla_chain *chain) {
    const clattn_mha_config *c = p->c;
    const size_t B = p->batch, Lq = p->q_len, f = sizeof(float);
    const size_t nq = c->heads * c->head_dim, nk = c->kv_heads * c->head_dim, nv = c->kv_heads * c->v_head_dim;
    const size_t nqkv = nq + nk + nv, nav = c->heads * c->v_head_dim;
    /* The row counts are bounded by views that fit their buffers and widths by the config check, but their
     * products with the widths are not: check them once here. */
    const size_t q_rows = B * Lq, kv_rows = B * p->new_len;
    if ((q_rows && (Lq > SIZE_MAX / B || nqkv + nav + c->d_model > SIZE_MAX / f / q_rows)) ||
        (kv_rows && (nk + nv > SIZE_MAX / f / kv_rows)))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "the temporaries' sizes overflow size_t");

    target tq, tk, tv;
    /* The cache's rows. One GEMM writes them in place for one batch item; for several, the cache's batch stride
     * (its capacity) would cost a GEMM per item (src/blas.c), so the new rows are projected as one block into a
     * temporary and copied into place. */
    const size_t cap = p->cache ? p->cache->capacity : 0;
    const target ck = {p->cache ? p->cache->keys : NULL, 0, nk, cap * nk};
    const target cv = {p->cache ? p->cache->values : NULL, 0, nv, cap * nv};
    const bool stage = p->cache && p->append && B > 1 && kv_rows > 0;
    clattn_status st;
    if (p->packed_once) {
        st = cla_temp_buffer(ctx, q_rows * nqkv * f, "the packed Q|K|V projection", &work->q);
        tq = (target){work->q, 0, nqkv, Lq * nqkv};
        tk = (target){work->q, nq, nqkv, Lq * nqkv};
        tv = (target){work->q, nq + nk, nqkv, Lq * nqkv};
    } else {
        st = cla_temp_buffer(ctx, q_rows * nq * f, "the Q projection", &work->q);
        tq = (target){work->q, 0, nq, Lq * nq};
        if (p->cache && !stage) {
            tk = ck;
            tv = cv;
        } else {
            if (!st) st = cla_temp_buffer(ctx, kv_rows * (nk + nv) * f, "the K|V projection", &work->kv);
            tk = (target){work->kv, 0, nk + nv, p->new_len * (nk + nv)};
            tv = (target){work->kv, nk, nk + nv, p->new_len * (nk + nv)};
        }
    }
    if (!st) st = cla_temp_buffer(ctx, q_rows * nav * f, "the attention output", &work->att);
    if (!st) st = cla_temp_buffer(ctx, q_rows * c->d_model * f, "the output projection", &work->acc);
    if (st) return st;

    const clattn_mha_pages *pages = p->pages.pages;
    const clattn_tensor qv = head_view(tq, B, c->heads, Lq, c->head_dim);
    const target rk = p->cache ? ck : tk, rv = p->cache ? cv : tv; /* what the attention reads */
    const clattn_tensor kv = pages ? pages->k_cache : head_view(rk, B, c->kv_heads, p->kv_len, c->head_dim);
    const clattn_tensor vv = pages ? pages->v_cache : head_view(rv, B, c->kv_heads, p->kv_len, c->v_head_dim);
    const clattn_tensor av = clattn_tensor_blhd(work->att, CLATTN_DTYPE_F32, B, c->heads, Lq, c->v_head_dim);
    clattn_sdpa_desc attention = desc->attention;
    if (pages) cla_mha_pages_attention(&desc->attention, &p->pages, &attention);
    cla_sdpa_plan check;
    if ((st = cla_sdpa_validate(ctx, &attention, &qv, &kv, &vv, &av, chain->queue, 0, NULL, &check))) return st;
    /* The paged cache's new rows: all sequences' rows of the K and V projections, one after another. */
    cla_kv_append_plan append = {0};
    const bool page_append = pages && p->append && p->pages.new_rows > 0;
    if (page_append) {
        clattn_kv_append_desc ad;
        clattn_kv_append_desc_init(&ad);
        ad.slot_mapping = p->pages.slots;
        ad.k_scale = pages->k_scale;
        ad.v_scale = pages->v_scale;
        const size_t rows = p->pages.new_rows;
        const clattn_tensor k_new = head_view(tk, 1, c->kv_heads, rows, c->head_dim);
        const clattn_tensor v_new = head_view(tv, 1, c->kv_heads, rows, c->v_head_dim);
        if ((st = cla_kv_append_check(ctx, &ad, &k_new, &v_new, &pages->k_cache, &pages->v_cache,
                                      "desc->pages' slots of the new rows", &append)))
            return st;
    }

    /* Projections. The keys and values of this call land at rows past..past+new of their target. */
    if (p->packed_once) {
        const cla_projection all = {w->q.w, w->q.bias, 0, nqkv};
        st = project(ctx, chain, x, Lq, &all, tq, 0, "the packed Q|K|V projection");
    } else {
        /* Without queries only a cache being filled needs the keys and values. */
        const bool kv_needed = p->kv_source && (q_rows > 0 || p->append);
        st = project(ctx, chain, x, Lq, &w->q, tq, 0, "the Q projection");
        if (!st && kv_needed)
            st = project(ctx, chain, p->kv_source, p->new_len, &w->k, tk, stage ? 0 : p->past, "the K projection");
        if (!st && kv_needed)
            st = project(ctx, chain, p->kv_source, p->new_len, &w->v, tv, stage ? 0 : p->past, "the V projection");
    }
    if (!st && page_append) st = cla_kv_append_enqueue(ctx, chain, &append);
    if (!st && stage) {
        const size_t n = p->new_len;
        const target dk = {ck.buffer, p->past * nk, nk, ck.batch_stride};
        const target dv = {cv.buffer, p->past * nv, nv, cv.batch_stride};
        const clattn_tensor sk = head_view(tk, B, c->kv_heads, n, c->head_dim);
        const clattn_tensor sv = head_view(tv, B, c->kv_heads, n, c->v_head_dim);
        const clattn_tensor dkv = head_view(dk, B, c->kv_heads, n, c->head_dim);
        const clattn_tensor dvv = head_view(dv, B, c->kv_heads, n, c->v_head_dim);
        st = cla_chain_copy_view(ctx, chain, &sk, &dkv, "copying the new keys into the KV cache");
        if (!st) st = cla_chain_copy_view(ctx, chain, &sv, &dvv, "copying the new values into the KV cache");
    }
    if (st) return st;
    if (q_rows == 0) return CLATTN_SUCCESS;

    if ((st = cla_sdpa_enqueue(ctx, &attention, &qv, &kv, &vv, &av, chain))) return st;
    const clattn_tensor att_rows = clattn_tensor_seq(work->att, CLATTN_DTYPE_F32, B, Lq, nav);
    const target tacc = {work->acc, 0, c->d_model, Lq * c->d_model};
    const cla_matrix wo = {w->out_w, 0, c->d_model};
    if ((st =
             cla_linear(ctx, chain, &att_rows, wo, c->d_model, NULL, 0, rows_at(tacc, 0), "the output projection")))
        return st;
    return cla_store_rows(ctx, chain, rows_at(tacc, 0), w->out_b, 0, desc->residual ? x : NULL, out,
                          "the layer's output");
}

clattn_status clattn_mha(clattn_context *ctx, const clattn_mha_weights *weights, const clattn_mha_desc *desc,
                         const clattn_tensor *x, const clattn_tensor *memory, const clattn_tensor *out,
                         cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_temp_begin(ctx);
    mha_plan plan;
    clattn_status st = validate(ctx, weights, desc, x, memory, out, num_wait, wait_list, &plan);
    if (st) return st;

    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait, wait_list);
    mha_work work = {NULL, NULL, NULL, NULL};
    st = run(ctx, weights, desc, x, out, &plan, &work, &chain);
    cla_mha_pages_release(&plan.pages);
    if (!st) {
        cl_int err = cla_chain_end(&chain, event);
        if (err != CL_SUCCESS)
            st = cla_fail(ctx, err, "enqueueing the completion marker failed: %d %s", err, cla_cl_error_text(err));
    }
    if (st) cla_chain_abort(&chain);
    /* OpenCL keeps the temporaries alive until the commands that use them have run. */
    work_release(ctx, &work);
    if (st) return st;
    if (plan.append && plan.cache) plan.cache->length = plan.kv_len;
    return CLATTN_SUCCESS;
}
