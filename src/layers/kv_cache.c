// SPDX-License-Identifier: Apache-2.0
/* The key/value cache of incremental decoding: two fp32 device buffers, keys [B, capacity, Hkv, d_k] and values
 * [B, capacity, Hkv, d_v], and the number of positions filled. clattn_mha writes each call's projected keys and
 * values straight into the rows after `length` and reads positions [0, length + new) through strided views; the
 * length advances only once a call has enqueued everything. */
#include "mha_internal.h"

#include <stdlib.h>

clattn_status clattn_kv_cache_create(clattn_context *ctx, const clattn_mha_config *config, size_t batch,
                                     size_t capacity, clattn_kv_cache **cache) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    if (!cache) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "cache (the result) is NULL");
    *cache = NULL;
    clattn_mha_config c;
    clattn_status st = cla_mha_config_resolve(ctx, config, &c);
    if (st) return st;
    /* Byte sizes of both buffers; the head widths are already known to fit. */
    const size_t kw = c.kv_heads * c.head_dim, vw = c.kv_heads * c.v_head_dim; /* both >= 1, and fit */
    size_t rows = 0, kbytes = 0, vbytes = 0;
    bool ok = batch == 0 || capacity <= SIZE_MAX / batch;
    if (ok) rows = batch * capacity;
    ok = ok && rows <= SIZE_MAX / sizeof(float) / kw && rows <= SIZE_MAX / sizeof(float) / vw;
    if (!ok)
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "batch %zu x capacity %zu overflows the buffer sizes",
                        batch, capacity);
    kbytes = rows * kw * sizeof(float);
    vbytes = rows * vw * sizeof(float);

    clattn_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
    kv->ctx = ctx;
    kv->config = c;
    kv->batch = batch;
    kv->capacity = capacity;
    cl_int err = CL_SUCCESS;
    /* OpenCL has no empty buffers; an empty cache still gets a small one so that its views are valid. */
    kv->keys = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, kbytes ? kbytes : 4, NULL, &err);
    if (err == CL_SUCCESS)
        kv->values = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, vbytes ? vbytes : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        clattn_kv_cache_free(kv);
        return cla_fail(ctx, err,
                        "allocating %zu + %zu bytes of keys and values (batch %zu, capacity %zu) on '%s' failed: "
                        "%d %s",
                        kbytes, vbytes, batch, capacity, ctx->info.name, err, cla_cl_error_text(err));
    }
    *cache = kv;
    return CLATTN_SUCCESS;
}

void clattn_kv_cache_free(clattn_kv_cache *cache) {
    if (!cache) return;
    if (cache->keys) clReleaseMemObject(cache->keys);
    if (cache->values) clReleaseMemObject(cache->values);
    free(cache);
}

void clattn_kv_cache_reset(clattn_kv_cache *cache) {
    if (cache) cache->length = 0;
}

clattn_status clattn_kv_cache_truncate(clattn_kv_cache *cache, size_t length) {
    if (!cache) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(cache->ctx);
    CLA_FAIL_ON(length > cache->length, cache->ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "length %zu is past the %zu cached tokens; a cache only shrinks this way (clattn_mha appends)",
                length, cache->length);
    cache->length = length;
    return CLATTN_SUCCESS;
}

size_t clattn_kv_cache_length(const clattn_kv_cache *cache) {
    return cache ? cache->length : 0;
}

size_t clattn_kv_cache_capacity(const clattn_kv_cache *cache) {
    return cache ? cache->capacity : 0;
}

clattn_status clattn_kv_cache_tensors(const clattn_kv_cache *cache, clattn_tensor *keys, clattn_tensor *values) {
    if (!cache || (!keys && !values)) return CLATTN_ERROR_NULL_POINTER;
    const clattn_mha_config *c = &cache->config;
    /* Position-major storage seen as [B, Hkv, length, d]: the blhd view of the full capacity, cut to length. */
    if (keys) {
        *keys = clattn_tensor_blhd(cache->keys, CLATTN_DTYPE_F32, cache->batch, c->kv_heads, cache->capacity,
                                   c->head_dim);
        keys->size[2] = cache->length;
    }
    if (values) {
        *values = clattn_tensor_blhd(cache->values, CLATTN_DTYPE_F32, cache->batch, c->kv_heads, cache->capacity,
                                     c->v_head_dim);
        values->size[2] = cache->length;
    }
    return CLATTN_SUCCESS;
}
