// SPDX-License-Identifier: Apache-2.0
/* Seq2seq attention, host side: additive (Bahdanau) and multiplicative (Luong) scores. The weights object uploads
 * the weights once; a call validates its arguments, then
 *  - additive, concat: projects q W_q + b and k W_k with CLBlast GEMMs (cla_linear) and runs the fused
 *    score-softmax-sum kernel of kernels_cl/seq2seq.cl, which never builds the [B, Lq, Lk, attn_dim] tensor;
 *  - dot, general: runs scaled dot-product attention with scale 1 on the [B, 1, L, d] views (general projects q W
 *    first), whose unfused path provides the weights when asked and takes widths the fused kernels do not. */
#include "seq2seq_internal.h"
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fused kernel keeps a row's projected query in local memory and its share of the context row in private
 * memory; wider values run as column slices of at most CLA_S2S_MAX_SLICE_DIM (cla_seq2seq_additive_kernel). */
#define MAX_ATTN_DIM 1024

static const char *score_name(clattn_score s) {
    static const char *const names[] = {"additive", "dot", "general", "concat"}; /* in the order of clattn_score */
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

static bool has_hidden_layer(clattn_score s) {
    return s == CLATTN_SCORE_ADDITIVE || s == CLATTN_SCORE_CONCAT;
}

/* ---- weights ---- */

void clattn_seq2seq_weights_free(clattn_seq2seq_weights *w) {
    if (!w) return;
    if (w->w) clReleaseMemObject(w->w);
    if (w->v) clReleaseMemObject(w->v);
    if (w->bias) clReleaseMemObject(w->bias);
    free(w);
}

/* A weight the score needs must be there, and one it does not use must not be: a caller who passes a bias to the
 * concat score has misunderstood something that silently ignoring it would hide. */
static clattn_status check_weight(clattn_context *ctx, const clattn_seq2seq_config *c, const float *p,
                                  const char *name, bool needed, bool allowed) {
    if (needed && !p)
        return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "host->%s is NULL but the %s score needs it", name,
                        score_name(c->score));
    if (!allowed && p)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "host->%s is given but the %s score does not use it; leave it "
                        "NULL",
                        name, score_name(c->score));
    return CLATTN_SUCCESS;
}

static clattn_status check_config(clattn_context *ctx, const clattn_seq2seq_config *c,
                                  const clattn_seq2seq_weights_host *h) {
    if (c->score < CLATTN_SCORE_ADDITIVE || c->score > CLATTN_SCORE_CONCAT)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "config->score is %d, not a clattn_score",
                        (int)c->score);
    if (c->query_dim == 0 || c->key_dim == 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "config->query_dim (%zu) and key_dim (%zu) must be nonzero", c->query_dim, c->key_dim);
    if (c->query_dim > INT32_MAX || c->key_dim > INT32_MAX)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED, "widths above 2^31 are not supported");
    const bool hidden = has_hidden_layer(c->score);
    if (hidden && (c->attn_dim == 0 || c->attn_dim > MAX_ATTN_DIM))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM, "config->attn_dim is %zu; the %s score needs 1..%d",
                        c->attn_dim, score_name(c->score), MAX_ATTN_DIM);
    if (c->score == CLATTN_SCORE_DOT && c->query_dim != c->key_dim)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "the dot score needs query_dim == key_dim, not %zu and %zu (use general for different "
                        "widths)",
                        c->query_dim, c->key_dim);
    /* Dot and general run through scaled dot-product attention, on its unfused path where the keys are wider than
     * the fused kernels take. */
    if (!hidden && c->key_dim > CLATTN_MAX_HEAD_DIM)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM, "the %s score takes key_dim up to %d, not %zu",
                        score_name(c->score), CLATTN_MAX_HEAD_DIM, c->key_dim);
    clattn_status st;
    const bool add = c->score == CLATTN_SCORE_ADDITIVE;
    const bool single_w = c->score == CLATTN_SCORE_GENERAL || c->score == CLATTN_SCORE_CONCAT;
    if ((st = check_weight(ctx, c, h->w_q, "w_q", add, add))) return st;
    if ((st = check_weight(ctx, c, h->w_k, "w_k", add, add))) return st;
    if ((st = check_weight(ctx, c, h->w, "w", single_w, single_w))) return st;
    if ((st = check_weight(ctx, c, h->v, "v", hidden, hidden))) return st;
    return check_weight(ctx, c, h->bias, "bias", false, add);
}

/* Creates a read-only buffer of `count` floats and writes the given parts into it, one after another. */
static clattn_status upload_parts(clattn_context *ctx, const float *const *parts, const size_t *counts, int n,
                                  const char *what, cl_mem *out) {
    size_t total = 0;
    for (int i = 0; i < n; ++i) {
        if (counts[i] > SIZE_MAX / sizeof(float) - total)
            return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s overflows size_t", what);
        total += counts[i];
    }
    cl_int err = CL_SUCCESS;
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY, total * sizeof(float), NULL, &err);
    size_t at = 0;
    for (int i = 0; i < n && err == CL_SUCCESS; ++i) {
        err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, at * sizeof(float), counts[i] * sizeof(float),
                                   parts[i], 0, NULL, NULL);
        at += counts[i];
    }
    if (err != CL_SUCCESS) {
        if (*out) clReleaseMemObject(*out);
        *out = NULL;
        return cla_fail(ctx, err, "uploading %s (%zu bytes) to '%s' failed: %d %s", what, total * sizeof(float),
                        ctx->info.name, err, cla_cl_error_text(err));
    }
    return CLATTN_SUCCESS;
}

clattn_status clattn_seq2seq_weights_create(clattn_context *ctx, const clattn_seq2seq_config *config,
                                            const clattn_seq2seq_weights_host *host,
                                            clattn_seq2seq_weights **weights) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    const void *const given[] = {config, host, weights};
    static const char *const given_names[] = {"config", "host", "weights"};
    if (cla_check_given(ctx, given, given_names, 3)) return CLATTN_ERROR_NULL_POINTER;
    *weights = NULL;
    clattn_status st = check_config(ctx, config, host);
    if (st != CLATTN_SUCCESS) return st;
    clattn_seq2seq_weights *w = calloc(1, sizeof *w);
    if (!w) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
    w->ctx = ctx;
    w->config = *config;
    if (!has_hidden_layer(config->score)) w->config.attn_dim = 0;
    const size_t Dq = config->query_dim, Dk = config->key_dim, A = config->attn_dim;
    switch (config->score) {
    case CLATTN_SCORE_ADDITIVE: {
        /* W_q and W_k stacked as one [query_dim + key_dim, attn_dim] matrix, the layout of concat's W. */
        const float *parts[2] = {host->w_q, host->w_k};
        const size_t counts[2] = {Dq * A, Dk * A};
        st = upload_parts(ctx, parts, counts, 2, "w_q and w_k", &w->w);
        break;
    }
    case CLATTN_SCORE_CONCAT: {
        const size_t count = (Dq + Dk) * A;
        st = upload_parts(ctx, &host->w, &count, 1, "w", &w->w);
        break;
    }
    case CLATTN_SCORE_GENERAL: {
        const size_t count = Dq * Dk;
        st = upload_parts(ctx, &host->w, &count, 1, "w", &w->w);
        break;
    }
    case CLATTN_SCORE_DOT:
        break;
    }
    if (st == CLATTN_SUCCESS && host->v) st = upload_parts(ctx, &host->v, &A, 1, "v", &w->v);
    if (st == CLATTN_SUCCESS && host->bias) st = upload_parts(ctx, &host->bias, &A, 1, "bias", &w->bias);
    if (st != CLATTN_SUCCESS) {
        clattn_seq2seq_weights_free(w);
        return st;
    }
    *weights = w;
    return CLATTN_SUCCESS;
}

void clattn_seq2seq_desc_init(clattn_seq2seq_desc *desc) {
    if (desc) memset(desc, 0, sizeof *desc);
}

/* ---- validation ---- */

/* The weights belong to this context, and the queue and wait list are usable. */
static clattn_status check_weights_and_queue(clattn_context *ctx, const clattn_seq2seq_weights *w,
                                             cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list) {
    if (w->ctx != ctx)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "the weights were created with another context; create them with this one");
    return cla_check_queue(ctx, queue, num_wait, wait_list);
}

/* A [B, 1, L, W] sequence tensor: the expected sizes, else INVALID_SHAPE naming the dimension and why. */
static clattn_status check_seq(clattn_context *ctx, const clattn_tensor *t, const char *name, size_t batch,
                               size_t len, size_t width, const char *len_from, const char *width_from) {
    static const char *dims[] = {"batch", "heads", "seq", "width"};
    const size_t want[4] = {batch, 1, len, width};
    const char *from[4] = {"query's batch", "1 (sequence tensors have no heads)", len_from, width_from};
    for (int d = 0; d < 4; ++d)
        if (want[d] != SIZE_MAX && t->size[d] != want[d])
            return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "%s: size[%d] (%s) is %zu but must be %zu (%s)", name,
                            d, dims[d], t->size[d], want[d], from[d]);
    return CLATTN_SUCCESS;
}

static clattn_status check_weights_out(clattn_context *ctx, const cla_seq2seq_plan *p, cla_range *r) {
    const clattn_tensor *t = &p->weights;
    if (!cla_is_float_dtype(t->dtype))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "desc->weights: dtype %d is not F32, F16 or BF16",
                        (int)t->dtype);
    if (t->size[0] != p->batch || t->size[1] != 1 || t->size[2] != p->q_len || t->size[3] != p->kv_len)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "desc->weights: sizes [%zu, %zu, %zu, %zu] must be [%zu, 1, %zu, "
                        "%zu]",
                        t->size[0], t->size[1], t->size[2], t->size[3], p->batch, p->q_len, p->kv_len);
    return cla_tensor_check(ctx, t, "desc->weights", true, &r->begin, &r->end);
}

/* A projection, k W_k [B, 1, Lk, attn_dim] (`name` "key_projection") or q W_q + b [B, 1, Lq, attn_dim], fp32 rows
 * with unit width stride (CLBlast writes it and the kernel reads it as rows), given to the attention call or
 * written by clattn_seq2seq_project_keys. */
static clattn_status check_projection(clattn_context *ctx, const char *name, const clattn_seq2seq_config *c,
                                      const clattn_tensor *t, size_t batch, size_t len, cla_range *r) {
    if (!has_hidden_layer(c->score))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "a %s belongs to the additive and concat scores, not %s; leave it empty", name,
                        score_name(c->score));
    if (t->dtype != CLATTN_DTYPE_F32)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "%s: dtype %d, expected F32", name, (int)t->dtype);
    if (t->size[0] != batch || t->size[1] != 1 || t->size[2] != len || t->size[3] != c->attn_dim)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "%s is [%zu, %zu, %zu, %zu]; expected [%zu, 1, %zu, %zu] (batch, 1, the length, the "
                        "weights' attn_dim)",
                        name, t->size[0], t->size[1], t->size[2], t->size[3], batch, len, c->attn_dim);
    if (t->stride[3] != 1)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_STRIDE,
                        "%s: width stride %zu; the projection is stored as rows, stride 1", name, t->stride[3]);
    return cla_tensor_check(ctx, t, name, r->output, &r->begin, &r->end);
}

/* The arguments of a call of the score kernel alone (clattn_seq2seq_attention_projected): the query is its
 * projection, the keys' projection is required, and so are the values. */
static clattn_status check_projected(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                     const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                                     const clattn_tensor *values) {
    const void *const given[] = {weights, desc, query, values};
    static const char *const given_names[] = {"weights", "desc", "query_projection", "values"};
    if (cla_check_given(ctx, given, given_names, 4)) return CLATTN_ERROR_NULL_POINTER;
    if (!desc->key_projection.buffer)
        return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "desc->key_projection is required");
    cla_range r = {"query_projection", query->buffer, 0, 0, false, 0};
    return check_projection(ctx, "query_projection", &weights->config, query, query->size[0], query->size[2], &r);
}

/* Every argument of a seq2seq call, into the plan. `projected`: the query and the keys are their projections (the
 * score kernel alone), so their widths are attn_dim. */
static clattn_status validate(clattn_context *ctx, bool projected, const clattn_seq2seq_weights *weights,
                              const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                              const clattn_tensor *keys, const clattn_tensor *values,
                              const clattn_tensor *context_out, cl_command_queue queue, cl_uint num_wait,
                              const cl_event *wait_list, cla_seq2seq_plan *p) {
    const void *const given[] = {weights, desc, query, keys, context_out};
    static const char *const given_names[] = {"weights", "desc", "query", "keys", "context_out"};
    if (cla_check_given(ctx, given, given_names, 5)) return CLATTN_ERROR_NULL_POINTER;
    clattn_status qst = check_weights_and_queue(ctx, weights, queue, num_wait, wait_list);
    if (qst != CLATTN_SUCCESS) return qst;
    const clattn_seq2seq_config *c = &weights->config;
    const clattn_tensor *h = values ? values : keys;
    const clattn_tensor *tensors[] = {query, keys, h, context_out};
    const char *names[] = {"query", "keys", values ? "values" : "keys (as values)", "context_out"};
    for (int i = 0; i < 4; ++i) {
        if (!cla_is_float_dtype(tensors[i]->dtype))
            return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "%s: dtype %d is not F32, F16 or BF16", names[i],
                            (int)tensors[i]->dtype);
        if (!tensors[i]->buffer)
            return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "%s: the buffer is NULL", names[i]);
    }
    const size_t B = query->size[0], Lq = query->size[2], Lk = keys->size[2], Dv = h->size[3];
    clattn_status st = CLATTN_SUCCESS;
    if (!st)
        st = check_seq(ctx, query, "query", B, SIZE_MAX, projected ? c->attn_dim : c->query_dim, "",
                       projected ? "the weights' attn_dim" : "the weights' query_dim");
    if (!st)
        st = check_seq(ctx, keys, "keys", B, SIZE_MAX, projected ? c->attn_dim : c->key_dim, "",
                       projected ? "the weights' attn_dim" : "the weights' key_dim");
    if (!st && values) st = check_seq(ctx, values, "values", B, Lk, SIZE_MAX, "the keys' length", "");
    if (!st) st = check_seq(ctx, context_out, "context_out", B, Lq, Dv, "the query length", "the value width");
    if (st) return st;
    if (Dv == 0 || Dv > CLATTN_MAX_HEAD_DIM)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM, "the value width is %zu; the %s score takes 1..%d", Dv,
                        score_name(c->score), CLATTN_MAX_HEAD_DIM);
    /* The kernels index positions in 32 bits. */
    const size_t max_len = (size_t)1 << 28;
    if (Lq > max_len || Lk > max_len || B > INT32_MAX)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "sequence lengths above %zu or a batch above %d are not supported", max_len, INT32_MAX);

    memset(p, 0, sizeof *p);
    p->score = c->score;
    p->batch = B;
    p->q_len = Lq;
    p->kv_len = Lk;
    p->query_dim = c->query_dim;
    p->key_dim = c->key_dim;
    p->value_dim = Dv;
    p->attn_dim = c->attn_dim;
    p->params = weights;
    p->mask = desc->mask;
    p->key_lengths = desc->key_lengths;
    p->key_lengths_offset = desc->key_lengths_offset;
    p->weights = desc->weights;
    p->query = *query;
    p->keys = *keys;
    p->values = *h;
    p->context = *context_out;

    cla_range ranges[8] = {{0}};
    size_t n = 0;
    for (int i = 0; i < 4; ++i) {
        if (i == 2 && !values) continue;
        cla_range *r = &ranges[n++];
        r->name = names[i];
        r->buffer = tensors[i]->buffer;
        r->output = i == 3;
        if ((st = cla_tensor_check(ctx, tensors[i], names[i], i == 3, &r->begin, &r->end))) return st;
    }
    if (p->mask.buffer) {
        cla_range *r = &ranges[n++];
        *r = (cla_range){"desc->mask", p->mask.buffer, 0, 0, false, 0};
        if ((st = cla_check_mask(ctx, "desc->mask", &p->mask, p->batch, 1, p->q_len, p->kv_len, &p->mask_kind, r)))
            return st;
    }
    if (p->key_lengths) {
        cla_range *r = &ranges[n++];
        *r = (cla_range){"desc->key_lengths", p->key_lengths, 0, 0, false, 0};
        if ((st = cla_check_key_lengths(ctx, "desc->key_lengths", p->key_lengths, p->key_lengths_offset, p->batch,
                                        r)))
            return st;
    }
    if (p->weights.buffer) {
        cla_range *r = &ranges[n++];
        *r = (cla_range){"desc->weights", p->weights.buffer, 0, 0, true, 0};
        if ((st = check_weights_out(ctx, p, r))) return st;
    }
    if (desc->key_projection.buffer) {
        cla_range *r = &ranges[n++];
        *r = (cla_range){"desc->key_projection", desc->key_projection.buffer, 0, 0, false, 0};
        if ((st = check_projection(ctx, "key_projection", c, &desc->key_projection, B, Lk, r))) return st;
        p->key_projection = desc->key_projection;
    }
    /* No output may share memory with any other tensor of the call. */
    if ((st = cla_check_overlaps(ctx, ranges, n, ""))) return st;
    return CLATTN_SUCCESS;
}

clattn_status cla_seq2seq_validate(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                   const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                                   const clattn_tensor *keys, const clattn_tensor *values,
                                   const clattn_tensor *context_out, cl_command_queue queue, cl_uint num_wait,
                                   const cl_event *wait_list, cla_seq2seq_plan *p) {
    return validate(ctx, false, weights, desc, query, keys, values, context_out, queue, num_wait, wait_list, p);
}

/* ---- the fused additive kernel ---- */

/* The context's override of the kernel's tunables (clattn_context_set_kernel_params, or CLATTN_SEQ2SEQ_PARAMS at
 * creation), for development, tests and the tuner, in the keys of the family's description (tuning.c): wg, block_n,
 * rows, vec. Keys left out take the defaults, and the whole is shrunk to the device's limits (cla_seq2seq_complete
 * in tuning.c). */
clattn_status cla_seq2seq_override(clattn_context *ctx, const cla_tune_problem *prob, cla_tune_config *c,
                                   bool *given) {
    const char *origin = NULL;
    clattn_status st = cla_tune_override_parse(ctx, &cla_tune_op_seq2seq, c, given, &origin);
    if (st == CLATTN_SUCCESS && *given) cla_seq2seq_complete(&ctx->info, prob, c);
    return st;
}

/* The parameters for this call: the context's override, else its tuning database, else the built-in
 * defaults for the device type (all in tuning.c's description of this kernel). */
static clattn_status choose_params(clattn_context *ctx, const cla_seq2seq_plan *p, cla_tune_config *c) {
    const clattn_device_info *d = &ctx->info;
    cla_tune_problem prob;
    memset(&prob, 0, sizeof prob);
    prob.head_dim = p->attn_dim;
    prob.v_head_dim = p->value_dim;
    prob.dtype = p->values.dtype;
    prob.mask_kind = p->mask_kind;
    prob.batch = p->batch;
    prob.heads = 1;
    prob.q_len = p->q_len;
    prob.kv_len = p->kv_len;
    cla_tune_choice ch;
    clattn_status st = cla_tuning_choose(ctx, &cla_tune_op_seq2seq, &prob, &ch);
    if (st != CLATTN_SUCCESS) return st;
    *c = ch.config;
    /* Only the defaults or an override shrunk as far as they go can still miss local memory: an attention width
     * the device cannot hold (database entries that do not fit are never chosen). */
    const size_t need = cla_seq2seq_local_bytes(&prob, &ch.config);
    const size_t budget = d->local_mem_bytes > 1024 ? d->local_mem_bytes - 1024 : 0;
    CLA_FAIL_ON(need > budget, ctx, CLATTN_ERROR_DEVICE_LIMIT,
                "attn_dim %zu needs %zu bytes of local memory but '%s' has %llu", p->attn_dim, need, d->name,
                (unsigned long long)d->local_mem_bytes);
    return CLATTN_SUCCESS;
}

/* One launch of the fused kernel over the plan's value columns (at most CLA_S2S_MAX_SLICE_DIM). */
static clattn_status additive_slice(clattn_context *ctx, const cla_seq2seq_plan *p, cla_rows qp, cla_rows kp,
                                    cl_mem v, size_t v_offset, cla_chain *chain) {
    const cla_tune_op *op = &cla_tune_op_seq2seq;
    cla_tune_config c;
    clattn_status st = choose_params(ctx, p, &c);
    if (st != CLATTN_SUCCESS) return st;
    const bool want_w = p->weights.buffer != NULL;
    const bool unit = p->values.stride[3] == 1 && p->context.stride[3] == 1;
    char defines[128], options[512];
    cla_tune_defines(op, &c, defines, sizeof defines);
    snprintf(options, sizeof options,
             "-DATTN_DIM=%zu -DV_DIM=%zu -DV_DTYPE=%d -DO_DTYPE=%d -DW_DTYPE=%d -DMASK_KIND=%d -DMASK_DTYPE=%d "
             "-DHAS_KEY_LENGTHS=%d -DHAS_WEIGHTS=%d -DUNIT_DSTRIDE=%d%s",
             p->attn_dim, p->value_dim, (int)p->values.dtype, (int)p->context.dtype,
             want_w ? (int)p->weights.dtype : 0, p->mask_kind, p->mask_kind ? (int)p->mask.dtype : 0,
             p->key_lengths != NULL, want_w, unit, defines);
    cl_kernel k = NULL;
    const cla_tune_kernel *kern = cla_tune_kernel_of(op, &c);
    if ((st = cla_kernel_get(ctx, kern->source, options, kern->kernel, &k))) return st;

    /* The raw scores wait in the weights when those are fp32, else in an fp32 scratch tensor [B, 1, Lq, Lk]. */
    cl_mem scratch = NULL;
    clattn_tensor scores = p->weights;
    if (want_w && p->weights.dtype != CLATTN_DTYPE_F32) {
        const size_t count = p->batch * p->q_len * p->kv_len;
        CLA_FAIL_ON(count > SIZE_MAX / sizeof(float), ctx, CLATTN_ERROR_SIZE_OVERFLOW,
                    "the weights overflow size_t");
        if ((st = cla_temp_buffer(ctx, count * sizeof(float), "the attention scores", &scratch))) return st;
        scores = clattn_tensor_seq(scratch, CLATTN_DTYPE_F32, p->batch, p->q_len, p->kv_len);
    }
    cl_long4 qr = {{(cl_long)qp.offset, (cl_long)qp.ld, (cl_long)qp.batch_stride, 0}};
    cl_long4 kr = {{(cl_long)kp.offset, (cl_long)kp.ld, (cl_long)kp.batch_stride, 0}};
    cl_long4 vs = cla_strides4(&p->values), os = cla_strides4(&p->context), ms = cla_strides4(&p->mask);
    cl_long4 ss = cla_strides4(&scores), ws = cla_strides4(&p->weights);
    cl_long8 offsets = {{(cl_long)v_offset, (cl_long)p->values.offset, (cl_long)p->context.offset,
                         (cl_long)p->mask.offset, (cl_long)p->key_lengths_offset, (cl_long)scores.offset,
                         (cl_long)p->weights.offset, 0}};
    cl_int2 dims = {{(cl_int)p->q_len, (cl_int)p->kv_len}};
    const cla_named_arg args[] = {
        CLA_NAMED("qp", qp.buffer),
        CLA_NAMED("qp_rows", qr),
        CLA_NAMED("kp", kp.buffer),
        CLA_NAMED("kp_rows", kr),
        CLA_NAMED("v_attn", v),
        CLA_NAMED("values", p->values.buffer),
        CLA_NAMED("v_stride", vs),
        CLA_NAMED("context", p->context.buffer),
        CLA_NAMED("o_stride", os),
        CLA_NAMED("mask", p->mask.buffer),
        CLA_NAMED("mask_stride", ms),
        CLA_NAMED("key_lengths", p->key_lengths),
        CLA_NAMED("scores", scores.buffer),
        CLA_NAMED("s_stride", ss),
        CLA_NAMED("weights", p->weights.buffer),
        CLA_NAMED("w_stride", ws),
        CLA_NAMED("offsets", offsets),
        CLA_NAMED("dims", dims),
    };
    st = cla_set_named_args(ctx, k, kern->kernel, op->args, args, CLA_ARRAY_SIZE(args));
    /* Whole batch items per launch, as many as max_launch_pairs allows (at least one), so that no single kernel
     * runs long enough for a display driver's watchdog. */
    const size_t pairs = p->q_len * p->kv_len;
    size_t per_launch = p->batch;
    if (ctx->max_launch_pairs && pairs) {
        uint64_t items = ctx->max_launch_pairs / pairs;
        per_launch = items < 1 ? 1 : items < p->batch ? (size_t)items : p->batch;
    }
    const size_t rows = (size_t)c.v[CLA_S2S_ROWS], wg = (size_t)c.v[CLA_S2S_WG];
    const size_t groups = (p->q_len + rows - 1) / rows;
    for (size_t first = 0; first < p->batch && st == CLATTN_SUCCESS; first += per_launch) {
        const size_t offset[2] = {0, first};
        const size_t global[2] = {groups * wg, p->batch - first < per_launch ? p->batch - first : per_launch};
        const size_t local[2] = {wg, 1};
        st = cla_chain_kernel_at(ctx, chain, k, 2, offset, global, local, "seq2seq_additive");
    }
    /* Released now, freed by OpenCL once the kernel that uses it has finished. */
    cla_temp_release(ctx, &scratch);
    return st;
}

clattn_status cla_seq2seq_additive_kernel(clattn_context *ctx, const cla_seq2seq_plan *p, cla_rows qp, cla_rows kp,
                                          cl_mem v, size_t v_offset, cla_chain *chain) {
    /* Values wider than one launch keeps in private memory run as equal column slices: each slice computes the same
     * scores and softmax and writes its columns of the context, and the first alone writes the weights. Equal
     * widths keep it to one or two programs. */
    const size_t Dv = p->value_dim, n = (Dv + CLA_S2S_MAX_SLICE_DIM - 1) / CLA_S2S_MAX_SLICE_DIM,
                 width = (Dv + n - 1) / n;
    clattn_status st = CLATTN_SUCCESS;
    for (size_t c0 = 0; c0 < Dv && st == CLATTN_SUCCESS; c0 += width) {
        cla_seq2seq_plan s = *p;
        s.value_dim = Dv - c0 < width ? Dv - c0 : width;
        s.values.offset += c0 * p->values.stride[3];
        s.values.size[3] = s.value_dim;
        s.context.offset += c0 * p->context.stride[3];
        s.context.size[3] = s.value_dim;
        if (c0) s.weights.buffer = NULL;
        st = additive_slice(ctx, &s, qp, kp, v, v_offset, chain);
    }
    return st;
}

/* ---- dispatch ---- */

/* Whether n floats in rows of `a` times `b` overflow a byte count. */
static bool floats_overflow(size_t a, size_t b, size_t n) {
    if (a && b > SIZE_MAX / a) return true;
    const size_t ab = a * b;
    return ab != 0 && n > SIZE_MAX / sizeof(float) / ab;
}

/* The end of a call's chain: withdrawn after a failure, else joined into `event`. */
static clattn_status end_call(clattn_context *ctx, cla_chain *chain, clattn_status st, cl_event *event) {
    if (st != CLATTN_SUCCESS) {
        cla_chain_abort(chain);
        return st;
    }
    cl_int err = cla_chain_end(chain, event);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "enqueueing the completion marker failed: %d %s", err, cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}

/* The rows view of a validated projection (its width stride is 1). */
static cla_rows key_rows(const clattn_tensor *t) {
    return (cla_rows){t->buffer, t->offset, t->stride[2], t->stride[0]};
}

/* k W_k into rows: W_k is the rows of the stacked weight after the query_dim rows of W_q. */
static clattn_status project_keys(clattn_context *ctx, cla_chain *chain, const clattn_seq2seq_weights *w,
                                  const clattn_tensor *keys, cla_rows rows) {
    const size_t A = w->config.attn_dim;
    const cla_matrix wk = {w->w, w->config.query_dim * A, A};
    return cla_linear(ctx, chain, keys, wk, A, NULL, 0, rows, "the key projection k W_k");
}

static clattn_status run_additive(clattn_context *ctx, const cla_seq2seq_plan *p, cla_chain *chain) {
    const clattn_seq2seq_weights *w = p->params;
    const size_t A = p->attn_dim;
    if (floats_overflow(p->batch, p->q_len, A) || floats_overflow(p->batch, p->kv_len, A) ||
        floats_overflow(p->batch, p->q_len, p->kv_len))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW,
                        "the projections of %zu x (%zu + %zu) rows of %zu overflow size_t", p->batch, p->q_len,
                        p->kv_len, A);
    /* The kernel sums each row over all of its keys in single fp32 accumulators (it has no key splits). */
    if (p->kv_len > CLA_MAX_KEYS_PER_SUM)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the %s score takes up to %zu keys per row, not %zu: its kernel sums "
                        "a row in single fp32 accumulators, which would lose the later keys",
                        score_name(p->score), CLA_MAX_KEYS_PER_SUM, p->kv_len);
    cl_mem qp = NULL, kp = NULL;
    const bool given = p->key_projection.buffer != NULL;
    clattn_status st = cla_temp_buffer(ctx, p->batch * p->q_len * A * sizeof(float), "the projected queries", &qp);
    if (!st && !given)
        st = cla_temp_buffer(ctx, p->batch * p->kv_len * A * sizeof(float), "the projected keys", &kp);
    const cla_rows qrows = {qp, 0, A, p->q_len * A};
    const cla_rows krows = given ? key_rows(&p->key_projection) : (cla_rows){kp, 0, A, p->kv_len * A};
    /* W_q is the first query_dim rows of the stacked weight, W_k the rest. */
    const cla_matrix wq = {w->w, 0, A};
    if (!st) st = cla_linear(ctx, chain, &p->query, wq, A, w->bias, 0, qrows, "the query projection q W_q + b");
    if (!st && p->kv_len && !given) st = project_keys(ctx, chain, p->params, &p->keys, krows);
    if (!st) st = cla_seq2seq_additive_kernel(ctx, p, qrows, krows, w->v, 0, chain);
    cla_temp_release(ctx, &qp);
    cla_temp_release(ctx, &kp);
    return st;
}

/* Dot and general: softmax(q' k^T + mask) h with q' = q (dot) or q W (general), as attention with scale 1. */
static clattn_status run_multiplicative(clattn_context *ctx, const cla_seq2seq_plan *p, cla_chain *chain) {
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.scale = 1.0f;
    d.mask = p->mask;
    d.key_lengths = p->key_lengths;
    d.key_lengths_offset = p->key_lengths_offset;
    d.weights = p->weights;
    if (p->score == CLATTN_SCORE_DOT)
        return cla_sdpa_enqueue(ctx, &d, &p->query, &p->keys, &p->values, &p->context, chain);
    const size_t Dk = p->key_dim;
    if (floats_overflow(p->batch, p->q_len, Dk))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "the projected queries overflow size_t");
    cl_mem qw = NULL;
    clattn_status st =
        cla_temp_buffer(ctx, p->batch * p->q_len * Dk * sizeof(float), "the projected queries q W", &qw);
    const cla_rows rows = {qw, 0, Dk, p->q_len * Dk};
    const cla_matrix w = {p->params->w, 0, Dk};
    if (!st) st = cla_linear(ctx, chain, &p->query, w, Dk, NULL, 0, rows, "the query projection q W");
    const clattn_tensor q = clattn_tensor_seq(qw, CLATTN_DTYPE_F32, p->batch, p->q_len, Dk);
    if (!st) st = cla_sdpa_enqueue(ctx, &d, &q, &p->keys, &p->values, &p->context, chain);
    cla_temp_release(ctx, &qw);
    return st;
}

clattn_status clattn_seq2seq_attention(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                       const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                                       const clattn_tensor *keys, const clattn_tensor *values,
                                       const clattn_tensor *context_out, cl_command_queue queue,
                                       cl_uint num_wait_events, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_temp_begin(ctx);
    cla_seq2seq_plan plan;
    clattn_status st = cla_seq2seq_validate(ctx, weights, desc, query, keys, values, context_out, queue,
                                            num_wait_events, wait_list, &plan);
    if (st != CLATTN_SUCCESS) return st;
    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait_events, wait_list);
    /* Empty batches or query sequences have nothing to compute (CLBlast rejects empty sizes); with no keys the
     * additive kernel writes the zeros of fully masked rows. */
    if (plan.batch > 0 && plan.q_len > 0)
        st = has_hidden_layer(plan.score) ? run_additive(ctx, &plan, &chain)
                                          : run_multiplicative(ctx, &plan, &chain);
    return end_call(ctx, &chain, st, event);
}

clattn_status clattn_seq2seq_attention_projected(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                                 const clattn_seq2seq_desc *desc,
                                                 const clattn_tensor *query_projection, const clattn_tensor *values,
                                                 const clattn_tensor *context_out, cl_command_queue queue,
                                                 cl_uint num_wait_events, const cl_event *wait_list,
                                                 cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_temp_begin(ctx);
    clattn_status st = check_projected(ctx, weights, desc, query_projection, values);
    cla_seq2seq_plan plan;
    if (!st)
        st = validate(ctx, true, weights, desc, query_projection, &desc->key_projection, values, context_out, queue,
                      num_wait_events, wait_list, &plan);
    if (st != CLATTN_SUCCESS) return st;
    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait_events, wait_list);
    if (plan.batch > 0 && plan.q_len > 0)
        st = cla_seq2seq_additive_kernel(ctx, &plan, key_rows(query_projection), key_rows(&plan.key_projection),
                                         weights->v, 0, &chain);
    return end_call(ctx, &chain, st, event);
}

clattn_status clattn_seq2seq_project_keys(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                          const clattn_tensor *keys, const clattn_tensor *key_projection,
                                          cl_command_queue queue, cl_uint num_wait_events,
                                          const cl_event *wait_list, cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_temp_begin(ctx);
    const void *const given[] = {weights, keys, key_projection};
    static const char *const given_names[] = {"weights", "keys", "key_projection"};
    if (cla_check_given(ctx, given, given_names, 3)) return CLATTN_ERROR_NULL_POINTER;
    clattn_status qst = check_weights_and_queue(ctx, weights, queue, num_wait_events, wait_list);
    if (qst != CLATTN_SUCCESS) return qst;
    if (!cla_is_float_dtype(keys->dtype))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "keys: dtype %d is not F32, F16 or BF16",
                        (int)keys->dtype);
    if (!keys->buffer || !key_projection->buffer)
        return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "the buffer of %s is NULL",
                        !keys->buffer ? "keys" : "key_projection");
    const size_t B = keys->size[0], Lk = keys->size[2];
    clattn_status st =
        check_seq(ctx, keys, "keys", B, SIZE_MAX, weights->config.key_dim, "", "the weights' key_dim");
    if (st) return st;
    cla_range r[2] = {{"keys", keys->buffer, 0, 0, false, 0},
                      {"key_projection", key_projection->buffer, 0, 0, true, 0}};
    if ((st = cla_tensor_check(ctx, keys, "keys", false, &r[0].begin, &r[0].end))) return st;
    if ((st = check_projection(ctx, "key_projection", &weights->config, key_projection, B, Lk, &r[1]))) return st;
    if ((st = cla_check_overlaps(ctx, r, 2, ""))) return st;
    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait_events, wait_list);
    if (B > 0 && Lk > 0) st = project_keys(ctx, &chain, weights, keys, key_rows(key_projection));
    return end_call(ctx, &chain, st, event);
}
