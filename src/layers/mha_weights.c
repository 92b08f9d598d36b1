// SPDX-License-Identifier: Apache-2.0
/* The weights of one multi-head attention layer on the device: checked against the configuration, uploaded once,
 * and described as three input projections (column slices of a packed w_qkv, or separate matrices) and the output
 * projection. */
#include "mha_internal.h"

#include <stdlib.h>
#include <string.h>

static bool mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

clattn_status cla_mha_config_resolve(clattn_context *ctx, const clattn_mha_config *in, clattn_mha_config *out) {
    if (!in) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "config is NULL");
    clattn_mha_config c = *in;
    if (c.kv_d_model == 0) c.kv_d_model = c.d_model;
    if (c.kv_heads == 0) c.kv_heads = c.heads;
    if (c.v_head_dim == 0) c.v_head_dim = c.head_dim;
    if (c.d_model == 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "config->d_model is 0; the model width must be >= 1");
    if (c.heads == 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEADS, "config->heads is 0; give at least one head");
    if (c.heads % c.kv_heads != 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEADS,
                        "config->heads (%zu) must be a multiple of config->kv_heads (%zu)", c.heads, c.kv_heads);
    /* Attention's bound (sdpa.c checks it on every call); heads wider than the fused kernels take run unfused. */
    if (c.head_dim == 0 || c.head_dim > CLATTN_MAX_HEAD_DIM || c.v_head_dim > CLATTN_MAX_HEAD_DIM)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM,
                        "config->head_dim (%zu) and v_head_dim (%zu) must be 1..%d", c.head_dim, c.v_head_dim,
                        CLATTN_MAX_HEAD_DIM);
    /* Every matrix of the layer must have a byte size that fits size_t: the widest one is w_qkv or w_o. */
    size_t qk = 0, kk = 0, vv = 0, width = 0, bytes = 0;
    bool ok = mul_ok(c.heads, c.head_dim, &qk) && mul_ok(c.kv_heads, c.head_dim, &kk) &&
              mul_ok(c.kv_heads, c.v_head_dim, &vv) && qk <= SIZE_MAX / 4 - kk && qk + kk <= SIZE_MAX / 4 - vv;
    width = ok ? qk + kk + vv : 0;
    size_t model = c.d_model > c.kv_d_model ? c.d_model : c.kv_d_model;
    size_t hv = 0;
    ok = ok && mul_ok(model, width, &bytes) && mul_ok(bytes, sizeof(float), &bytes) &&
         mul_ok(c.heads, c.v_head_dim, &hv) && mul_ok(hv, c.d_model, &bytes) &&
         mul_ok(bytes, sizeof(float), &bytes);
    if (!ok)
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW,
                        "the weights of d_model %zu, kv_d_model %zu, heads %zu/%zu, head dims %zu/%zu overflow "
                        "size_t",
                        c.d_model, c.kv_d_model, c.heads, c.kv_heads, c.head_dim, c.v_head_dim);
    *out = c;
    return CLATTN_SUCCESS;
}

void clattn_mha_weights_host_init(clattn_mha_weights_host *host) {
    if (host) memset(host, 0, sizeof *host);
}

/* Which weights the host description gives, checked for a consistent choice. */
static clattn_status check_host(clattn_context *ctx, const clattn_mha_config *c, const clattn_mha_weights_host *h) {
    bool any_separate = h->w_q || h->w_k || h->w_v;
    if (h->w_qkv && (any_separate || h->b_q || h->b_k || h->b_v))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "host->w_qkv is given together with separate w_q/w_k/w_v or b_q/b_k/b_v; give the packed "
                        "weight (and b_qkv) or the separate ones, not both");
    if (!h->w_qkv && h->b_qkv)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "host->b_qkv is given without host->w_qkv; use b_q, b_k and b_v with separate weights");
    if (!h->w_qkv && !(h->w_q && h->w_k && h->w_v))
        return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER,
                        "host->%s is NULL; give the packed w_qkv or all of w_q, w_k and w_v",
                        !any_separate ? "w_qkv"
                        : !h->w_q     ? "w_q"
                        : !h->w_k     ? "w_k"
                                      : "w_v");
    if (!h->w_o) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "host->w_o is NULL");
    if (h->w_qkv && c->kv_d_model != c->d_model)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "a packed w_qkv needs kv_d_model (%zu) equal to d_model (%zu); give w_q, w_k and w_v for "
                        "a memory of another width",
                        c->kv_d_model, c->d_model);
    return CLATTN_SUCCESS;
}

static void weights_release(clattn_mha_weights *w) {
    cl_mem *all[] = {&w->w_qkv, &w->b_qkv, &w->w_q, &w->w_k, &w->w_v, &w->b_q, &w->b_k, &w->b_v, &w->w_o, &w->b_o};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(all); ++i)
        if (*all[i]) clReleaseMemObject(*all[i]);
}

/* Uploads an optional array; NULL data leaves the buffer NULL. */
static clattn_status upload(clattn_context *ctx, const float *data, size_t count, const char *what, cl_mem *out) {
    if (!data) return CLATTN_SUCCESS;
    return cla_upload_f32(ctx, data, count, what, out);
}

clattn_status clattn_mha_weights_create(clattn_context *ctx, const clattn_mha_config *config,
                                        const clattn_mha_weights_host *host, clattn_mha_weights **weights) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    if (!weights) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "weights (the result) is NULL");
    *weights = NULL;
    if (!host) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "host is NULL");
    clattn_mha_config c;
    clattn_status st = cla_mha_config_resolve(ctx, config, &c);
    if (!st) st = check_host(ctx, &c, host);
    if (st) return st;

    clattn_mha_weights *w = calloc(1, sizeof *w);
    if (!w) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
    w->ctx = ctx;
    w->config = c;
    const size_t nq = c.heads * c.head_dim, nk = c.kv_heads * c.head_dim, nv = c.kv_heads * c.v_head_dim;
    const size_t n_qkv = nq + nk + nv; /* checked by cla_mha_config_resolve */
    w->packed = host->w_qkv != NULL;
    if (w->packed) {
        st = upload(ctx, host->w_qkv, c.d_model * n_qkv, "w_qkv", &w->w_qkv);
        if (!st) st = upload(ctx, host->b_qkv, n_qkv, "b_qkv", &w->b_qkv);
        /* Q, K and V are the column blocks of the packed matrix and bias. */
        w->q = (cla_projection){{w->w_qkv, 0, n_qkv}, w->b_qkv, 0, nq};
        w->k = (cla_projection){{w->w_qkv, nq, n_qkv}, w->b_qkv, nq, nk};
        w->v = (cla_projection){{w->w_qkv, nq + nk, n_qkv}, w->b_qkv, nq + nk, nv};
    } else {
        st = upload(ctx, host->w_q, c.d_model * nq, "w_q", &w->w_q);
        if (!st) st = upload(ctx, host->w_k, c.kv_d_model * nk, "w_k", &w->w_k);
        if (!st) st = upload(ctx, host->w_v, c.kv_d_model * nv, "w_v", &w->w_v);
        if (!st) st = upload(ctx, host->b_q, nq, "b_q", &w->b_q);
        if (!st) st = upload(ctx, host->b_k, nk, "b_k", &w->b_k);
        if (!st) st = upload(ctx, host->b_v, nv, "b_v", &w->b_v);
        w->q = (cla_projection){{w->w_q, 0, nq}, w->b_q, 0, nq};
        w->k = (cla_projection){{w->w_k, 0, nk}, w->b_k, 0, nk};
        w->v = (cla_projection){{w->w_v, 0, nv}, w->b_v, 0, nv};
    }
    if (!st) st = upload(ctx, host->w_o, c.heads * c.v_head_dim * c.d_model, "w_o", &w->w_o);
    if (!st) st = upload(ctx, host->b_o, c.d_model, "b_o", &w->b_o);
    if (st) {
        weights_release(w);
        free(w);
        return st;
    }
    w->out_w = w->w_o;
    w->out_b = w->b_o;
    *weights = w;
    return CLATTN_SUCCESS;
}

void clattn_mha_weights_free(clattn_mha_weights *weights) {
    if (!weights) return;
    weights_release(weights);
    free(weights);
}

clattn_status clattn_mha_weights_config(const clattn_mha_weights *weights, clattn_mha_config *config) {
    if (!weights || !config) return CLATTN_ERROR_NULL_POINTER;
    *config = weights->config;
    return CLATTN_SUCCESS;
}
