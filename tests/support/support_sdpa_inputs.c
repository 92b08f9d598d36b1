// SPDX-License-Identifier: Apache-2.0
/* The random problem of one attention call (see support_sdpa_inputs.h). */
#include "support_sdpa_inputs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "support_buffers.h"
#include "support_random.h"

/* A buffer of `n` elements of storage type `dt` from `host` (or uninitialised), or the reason it failed. */
static int make(clattn_context *ctx, const char *what, const float *host, size_t n, clattn_dtype dt, cl_mem *out,
                char *why, size_t why_size) {
    cl_int err = CL_SUCCESS;
    *out = support_buffer_storage(ctx, host, n, dt, &err);
    if (*out) return 0;
    snprintf(why, why_size, "allocating %zu bytes of device memory for %s failed: OpenCL error %d",
             n * clattn_dtype_size(dt), what, err);
    return -1;
}

int support_sdpa_inputs_make(clattn_context *ctx, support_sdpa_inputs *in, char *why, size_t why_size) {
    const clattn_dtype dt = in->dtype;
    in->nq = in->batch * in->heads * in->q_len * in->head_dim;
    in->nk = in->batch * in->kv_heads * in->kv_len * in->head_dim;
    in->nmask = in->q_len * in->kv_len;
    unsigned sq = 12345u, sk = 23456u, sv = 34567u;
    in->q = support_random_array(in->nq, 1.0f, dt, &sq);
    in->k = support_random_array(in->nk, 1.0f, dt, &sk);
    in->v = support_random_array(in->nk, 1.0f, dt, &sv);
    if (!in->q || !in->k || !in->v ||
        support_random_mask(in->nmask, in->mask_kind, dt, &in->mask, &in->bool_mask) != 0) {
        snprintf(why, why_size, "out of host memory for the inputs");
        return -1;
    }
    if (make(ctx, "q", in->q, in->nq, dt, &in->dq, why, why_size) ||
        make(ctx, "k", in->k, in->nk, dt, &in->dk, why, why_size) ||
        make(ctx, "v", in->v, in->nk, dt, &in->dv, why, why_size) ||
        make(ctx, "the output", NULL, in->nq, dt, &in->dout, why, why_size))
        return -1;
    if (in->mask && make(ctx, "the mask", in->mask, in->nmask, dt, &in->dmask, why, why_size)) return -1;
    if (in->bool_mask) {
        cl_int err = CL_SUCCESS;
        if (!(in->dmask = support_buffer(ctx, in->bool_mask, in->nmask, &err))) {
            snprintf(why, why_size, "allocating %zu bytes of device memory for the mask failed: OpenCL error %d",
                     in->nmask, err);
            return -1;
        }
    }
    return 0;
}

void support_sdpa_inputs_drop_host(support_sdpa_inputs *in) {
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->mask);
    free(in->bool_mask);
    in->q = in->k = in->v = in->mask = NULL;
    in->bool_mask = NULL;
}

void support_sdpa_inputs_free(support_sdpa_inputs *in) {
    support_sdpa_inputs_drop_host(in);
    cl_mem *bufs[] = {&in->dq, &in->dk, &in->dv, &in->dout, &in->dmask};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i) {
        if (*bufs[i]) clReleaseMemObject(*bufs[i]);
        *bufs[i] = NULL;
    }
}

void support_sdpa_inputs_tensors(const support_sdpa_inputs *in, clattn_sdpa_desc *desc, clattn_tensor *q,
                                 clattn_tensor *k, clattn_tensor *v, clattn_tensor *out) {
    const clattn_dtype dt = in->dtype;
    if (in->dmask)
        desc->mask = clattn_tensor_bhld(in->dmask, in->mask_kind == CLATTN_MASK_BOOL ? CLATTN_DTYPE_BOOL : dt, 1, 1,
                                        in->q_len, in->kv_len);
    *q = clattn_tensor_bhld(in->dq, dt, in->batch, in->heads, in->q_len, in->head_dim);
    *k = clattn_tensor_bhld(in->dk, dt, in->batch, in->kv_heads, in->kv_len, in->head_dim);
    *v = clattn_tensor_bhld(in->dv, dt, in->batch, in->kv_heads, in->kv_len, in->head_dim);
    *out = clattn_tensor_bhld(in->dout, dt, in->batch, in->heads, in->q_len, in->head_dim);
}

double *support_sdpa_inputs_reference(const support_sdpa_inputs *in, clattn_causal causal, int64_t window_left,
                                      int64_t window_right, const int32_t *key_lengths) {
    return support_sdpa_inputs_reference_mods(in, causal, window_left, window_right, key_lengths, 0.0f, NULL, NULL);
}

double *support_sdpa_inputs_reference_mods(const support_sdpa_inputs *in, clattn_causal causal, int64_t window_left,
                                           int64_t window_right, const int32_t *key_lengths, float softcap,
                                           const float *sinks, const float *alibi_slopes) {
    double *out = malloc((in->nq + 1) * sizeof *out);
    if (!out) return NULL;
    cla_ref_sdpa ref;
    memset(&ref, 0, sizeof ref);
    ref.q = cla_ref_dense(in->q, in->batch, in->heads, in->q_len, in->head_dim);
    ref.k = cla_ref_dense(in->k, in->batch, in->kv_heads, in->kv_len, in->head_dim);
    ref.v = cla_ref_dense(in->v, in->batch, in->kv_heads, in->kv_len, in->head_dim);
    ref.scale = 1.0 / sqrt((double)in->head_dim);
    ref.causal = causal;
    ref.window_left = window_left;
    ref.window_right = window_right;
    /* The one [Lq, Lk] matrix, broadcast over batch and heads. */
    if (in->mask) ref.mask = cla_ref_dense(in->mask, 1, 1, in->q_len, in->kv_len);
    if (in->bool_mask) {
        ref.bool_mask.data = in->bool_mask;
        const size_t size[4] = {1, 1, in->q_len, in->kv_len}, stride[4] = {0, 0, in->kv_len, 1};
        memcpy(ref.bool_mask.size, size, sizeof size);
        memcpy(ref.bool_mask.stride, stride, sizeof stride);
    }
    ref.key_lengths = key_lengths;
    ref.softcap = softcap;
    ref.sinks = sinks;
    ref.alibi_slopes = alibi_slopes;
    ref.out = out;
    if (cla_reference_sdpa(&ref) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

void support_mod_values(size_t heads, float *sinks, float *slopes) {
    for (size_t h = 0; h < heads; ++h) {
        if (sinks) sinks[h] = 0.5f;
        if (slopes) slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)heads);
    }
}
