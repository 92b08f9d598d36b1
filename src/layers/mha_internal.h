// SPDX-License-Identifier: Apache-2.0
/* The device objects of multi-head attention, shared by mha.c (the call), mha_weights.c (the weights) and
 * kv_cache.c (the key/value cache): their structures and the configuration check both objects run. */
#ifndef CLATTN_MHA_INTERNAL_H
#define CLATTN_MHA_INTERNAL_H

#include "linear.h"

/* One projection's weight and bias: y = x w[:, :n] + bias[bias_offset : bias_offset + n]. The three projections
 * of a packed w_qkv are column slices of the same buffer. */
typedef struct cla_projection {
    cla_matrix w;
    cl_mem bias; /* NULL: none */
    size_t bias_offset;
    size_t n; /* output columns */
} cla_projection;

struct clattn_mha_weights {
    clattn_context *ctx;
    clattn_mha_config config; /* resolved: no zero "same as" fields */
    bool packed;              /* q, k and v are column slices of one [d_model, n_qkv] matrix */
    cl_mem w_qkv, b_qkv, w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o;
    cla_projection q, k, v;
    cl_mem out_w, out_b; /* w_o and b_o (b_o NULL: none) */
};

/* Keys [B, capacity, Hkv, d_k] and values [B, capacity, Hkv, d_v], fp32, stored the way the projections write rows,
 * so that each call's new keys and values are written straight into place. */
struct clattn_kv_cache {
    clattn_context *ctx;
    clattn_mha_config config; /* resolved */
    size_t batch, capacity, length;
    cl_mem keys, values;
};

/* Checks a configuration and fills in its defaults (kv_d_model, kv_heads, v_head_dim). Sizes must be small enough
 * that every weight and row count below fits size_t. */
clattn_status cla_mha_config_resolve(clattn_context *ctx, const clattn_mha_config *in, clattn_mha_config *out);

#endif
