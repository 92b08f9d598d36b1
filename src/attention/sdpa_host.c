// SPDX-License-Identifier: Apache-2.0
/* The host-memory convenience form of attention: float arrays in and out, converted to the storage dtype, staged
 * in device buffers, run through clattn_sdpa and read back. Blocking. */
#include "dtype.h"
#include "sdpa_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void clattn_sdpa_host_desc_init(clattn_sdpa_host_desc *desc) {
    if (!desc) return;
    /* Every field not named here is zero: no causal masking, no mask (whose shape 0 means full sizes), no key
     * lengths, no lse or weights. */
    *desc = (clattn_sdpa_host_desc){.storage = CLATTN_DTYPE_F32,
                                    .scale = NAN,
                                    .window_left = CLATTN_WINDOW_UNBOUNDED,
                                    .window_right = CLATTN_WINDOW_UNBOUNDED,
                                    .block_mask_q = 128,
                                    .block_mask_k = 128};
}

/* The block mask's sizes with each 0 of desc->block_mask_shape read as the full size (a block size of 0, which
 * clattn_sdpa refuses, counts as 1 here). */
static void block_mask_sizes(const clattn_sdpa_host_desc *d, size_t shape[4]) {
    const size_t bq = d->block_mask_q ? d->block_mask_q : 1, bk = d->block_mask_k ? d->block_mask_k : 1;
    const size_t full[4] = {d->batch, d->q_heads, (d->q_len + bq - 1) / bq, (d->kv_len + bk - 1) / bk};
    for (int i = 0; i < 4; ++i) shape[i] = d->block_mask_shape[i] ? d->block_mask_shape[i] : full[i];
}

static bool product(size_t *out, size_t a, size_t b, size_t c, size_t d) {
    size_t n = 1;
    const size_t f[4] = {a, b, c, d};
    for (int i = 0; i < 4; ++i) {
        if (f[i] != 0 && n > SIZE_MAX / f[i]) return false;
        n *= f[i];
    }
    *out = n;
    return true;
}

/* The device buffers of one call, released together. */
typedef struct staging {
    cl_mem q, k, v, out, mask, key_lengths, lse, weights;
    cl_mem sinks, alibi_slopes, block_mask;
    cl_mem mods[CLATTN_MAX_MOD_BUFFERS];
} staging;

static void release_staging(staging *s) {
    cl_mem *all[] = {&s->q,   &s->k,       &s->v,     &s->out,          &s->mask,      &s->key_lengths,
                     &s->lse, &s->weights, &s->sinks, &s->alibi_slopes, &s->block_mask};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(all); ++i)
        if (*all[i]) clReleaseMemObject(*all[i]);
    for (size_t i = 0; i < CLATTN_MAX_MOD_BUFFERS; ++i)
        if (s->mods[i]) clReleaseMemObject(s->mods[i]);
}

/* A device buffer holding `n` values of `host` converted to `dt` (host NULL: uninitialised). */
static clattn_status upload(clattn_context *ctx, const char *name, const void *host, size_t n, clattn_dtype dt,
                            bool convert, cl_mem *out) {
    size_t esize = clattn_dtype_size(dt);
    if (n > SIZE_MAX / esize) return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s: byte size overflows", name);
    size_t bytes = n * esize;
    /* OpenCL has no empty buffers; an empty tensor gets a token one that no view touches. */
    size_t alloc = bytes ? bytes : 4;
    cl_int err = CL_SUCCESS;
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, alloc, NULL, &err);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "%s: allocating %zu bytes on '%s' failed: %d %s", name, alloc, ctx->info.name,
                        err, cla_cl_error_text(err));
    if (!host || bytes == 0) return CLATTN_SUCCESS;
    const void *src = host;
    void *tmp = NULL;
    if (convert && dt != CLATTN_DTYPE_F32) {
        tmp = malloc(bytes);
        if (!tmp) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory", name);
        cla_convert_to_storage(host, tmp, n, dt);
        src = tmp;
    }
    err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    free(tmp);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "%s: writing %zu bytes to the device failed: %d %s", name, bytes, err,
                        cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}

static clattn_status download(clattn_context *ctx, const char *name, cl_mem buf, float *host, size_t n,
                              clattn_dtype dt) {
    if (n == 0) return CLATTN_SUCCESS;
    size_t bytes = n * clattn_dtype_size(dt);
    void *dst = host;
    void *tmp = NULL;
    if (dt != CLATTN_DTYPE_F32) {
        tmp = malloc(bytes);
        if (!tmp) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory", name);
        dst = tmp;
    }
    cl_int err = clEnqueueReadBuffer(ctx->queue, buf, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    if (err == CL_SUCCESS && tmp) cla_convert_from_storage(tmp, host, n, dt);
    free(tmp);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "%s: reading %zu bytes from the device failed: %d %s", name, bytes, err,
                        cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}

/* The mask's sizes with each 0 of desc->mask_shape read as the full size. */
static void mask_sizes(const clattn_sdpa_host_desc *d, size_t full[4], size_t shape[4]) {
    full[0] = d->batch;
    full[1] = d->q_heads;
    full[2] = d->q_len;
    full[3] = d->kv_len;
    for (int i = 0; i < 4; ++i) shape[i] = d->mask_shape[i] ? d->mask_shape[i] : full[i];
}

static clattn_status check_host_desc(clattn_context *ctx, const clattn_sdpa_host_desc *d, const float *q,
                                     const float *k, const float *v, float *out) {
    const void *const given[] = {d, q, k, v, out};
    static const char *const given_names[] = {"desc", "q", "k", "v", "out"};
    if (cla_check_given(ctx, given, given_names, 5)) return CLATTN_ERROR_NULL_POINTER;
    if (d->storage != CLATTN_DTYPE_F32 && d->storage != CLATTN_DTYPE_F16 && d->storage != CLATTN_DTYPE_BF16)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "storage dtype %d is not F32, F16 or BF16",
                        (int)d->storage);
    if (d->mask && d->bool_mask)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK, "give mask or bool_mask, not both");
    size_t full[4], m[4];
    mask_sizes(d, full, m);
    if ((d->mask || d->bool_mask) && !clattn_mask_broadcasts(m, full))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK,
                        "desc->mask_shape [%zu, %zu, %zu, %zu] does not broadcast to [%zu, %zu, %zu, %zu] (batch, "
                        "q_heads, q_len, kv_len): each size must be 1, the full size, or 0 for the full size",
                        d->mask_shape[0], d->mask_shape[1], d->mask_shape[2], d->mask_shape[3], full[0], full[1],
                        full[2], full[3]);
    return CLATTN_SUCCESS;
}

clattn_status clattn_sdpa_host(clattn_context *ctx, const clattn_sdpa_host_desc *d, const float *q, const float *k,
                               const float *v, float *out) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    clattn_status st = check_host_desc(ctx, d, q, k, v, out);
    if (st != CLATTN_SUCCESS) return st;
    const size_t dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    size_t mask_full[4], ms[4];
    mask_sizes(d, mask_full, ms);
    size_t bms[4], nbm = 0;
    block_mask_sizes(d, bms);
    size_t nq, nk, nv, no, nmask = 0, nlse, nw;
    if (!product(&nq, d->batch, d->q_heads, d->q_len, d->head_dim) ||
        !product(&nk, d->batch, d->kv_heads, d->kv_len, d->head_dim) ||
        !product(&nv, d->batch, d->kv_heads, d->kv_len, dv) || !product(&no, d->batch, d->q_heads, d->q_len, dv) ||
        !product(&nlse, d->batch, d->q_heads, d->q_len, 1) ||
        !product(&nw, d->batch, d->q_heads, d->q_len, d->kv_len) ||
        ((d->mask || d->bool_mask) && !product(&nmask, ms[0], ms[1], ms[2], ms[3])) ||
        (d->block_mask && !product(&nbm, bms[0], bms[1], bms[2], bms[3])))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "sizes overflow size_t");

    staging s;
    memset(&s, 0, sizeof s);
    const clattn_dtype dt = d->storage;
    st = upload(ctx, "q", q, nq, dt, true, &s.q);
    if (!st) st = upload(ctx, "k", k, nk, dt, true, &s.k);
    if (!st) st = upload(ctx, "v", v, nv, dt, true, &s.v);
    if (!st) st = upload(ctx, "out", NULL, no, dt, false, &s.out);
    if (!st && d->mask) st = upload(ctx, "mask", d->mask, nmask, CLATTN_DTYPE_F32, false, &s.mask);
    if (!st && d->bool_mask) st = upload(ctx, "bool_mask", d->bool_mask, nmask, CLATTN_DTYPE_BOOL, false, &s.mask);
    if (!st && d->key_lengths) {
        /* int32 values: staged as raw 4-byte elements. */
        st = upload(ctx, "key_lengths", d->key_lengths, d->batch, CLATTN_DTYPE_F32, false, &s.key_lengths);
    }
    if (!st && d->lse) st = upload(ctx, "lse", NULL, nlse, CLATTN_DTYPE_F32, false, &s.lse);
    if (!st && d->weights) st = upload(ctx, "weights", NULL, nw, CLATTN_DTYPE_F32, false, &s.weights);
    if (!st && d->sinks) st = upload(ctx, "sinks", d->sinks, d->q_heads, CLATTN_DTYPE_F32, false, &s.sinks);
    if (!st && d->alibi_slopes)
        st = upload(ctx, "alibi_slopes", d->alibi_slopes, d->q_heads, CLATTN_DTYPE_F32, false, &s.alibi_slopes);
    /* int32 flags, 4-byte elements staged as they are. */
    if (!st && d->block_mask)
        st = upload(ctx, "block_mask", d->block_mask, nbm, CLATTN_DTYPE_I32, false, &s.block_mask);
    /* Mod buffers: 4-byte elements (float or int32) staged as they are. */
    for (size_t i = 0; !st && i < CLATTN_MAX_MOD_BUFFERS && d->mod_buffers[i].data; ++i)
        st = upload(ctx, "mod_buffers", d->mod_buffers[i].data, d->mod_buffers[i].count, CLATTN_DTYPE_F32, false,
                    &s.mods[i]);

    if (!st) {
        clattn_sdpa_desc desc;
        clattn_sdpa_desc_init(&desc);
        desc.scale = d->scale;
        desc.causal = d->causal;
        desc.window_left = d->window_left;
        desc.window_right = d->window_right;
        desc.window_align = d->window_align;
        desc.impl = d->impl;
        desc.softcap = d->softcap;
        desc.score_mod = d->score_mod;
        desc.mask_mod = d->mask_mod;
        for (size_t i = 0; i < CLATTN_MAX_MOD_BUFFERS && s.mods[i]; ++i)
            desc.mod_buffers[i] = (clattn_mod_buffer){d->mod_buffers[i].name, s.mods[i], d->mod_buffers[i].dtype,
                                                      d->mod_buffers[i].count};
        if (s.sinks) desc.sinks = clattn_tensor_bhld(s.sinks, CLATTN_DTYPE_F32, 1, d->q_heads, 1, 1);
        if (s.alibi_slopes)
            desc.alibi_slopes = clattn_tensor_bhld(s.alibi_slopes, CLATTN_DTYPE_F32, 1, d->q_heads, 1, 1);
        if (s.mask)
            desc.mask = clattn_tensor_bhld(s.mask, d->mask ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_BOOL, ms[0], ms[1],
                                           ms[2], ms[3]);
        if (s.block_mask)
            desc.block_mask = clattn_tensor_bhld(s.block_mask, CLATTN_DTYPE_I32, bms[0], bms[1], bms[2], bms[3]);
        desc.block_mask_q = d->block_mask_q;
        desc.block_mask_k = d->block_mask_k;
        desc.key_lengths = s.key_lengths;
        if (s.lse) desc.lse = clattn_tensor_bhld(s.lse, CLATTN_DTYPE_F32, d->batch, d->q_heads, d->q_len, 1);
        if (s.weights)
            desc.weights =
                clattn_tensor_bhld(s.weights, CLATTN_DTYPE_F32, d->batch, d->q_heads, d->q_len, d->kv_len);
        clattn_tensor tq = clattn_tensor_bhld(s.q, dt, d->batch, d->q_heads, d->q_len, d->head_dim);
        clattn_tensor tk = clattn_tensor_bhld(s.k, dt, d->batch, d->kv_heads, d->kv_len, d->head_dim);
        clattn_tensor tv = clattn_tensor_bhld(s.v, dt, d->batch, d->kv_heads, d->kv_len, dv);
        clattn_tensor to = clattn_tensor_bhld(s.out, dt, d->batch, d->q_heads, d->q_len, dv);
        st = cla_sdpa_call(ctx, &desc, &tq, &tk, &tv, &to, ctx->queue, 0, NULL, NULL);
    }
    /* Outputs are read back only after a successful call, so a failure leaves the caller's arrays untouched. */
    if (!st) st = download(ctx, "out", s.out, out, no, dt);
    if (!st && d->lse) st = download(ctx, "lse", s.lse, d->lse, nlse, CLATTN_DTYPE_F32);
    if (!st && d->weights) st = download(ctx, "weights", s.weights, d->weights, nw, CLATTN_DTYPE_F32);
    release_staging(&s);
    return st;
}
