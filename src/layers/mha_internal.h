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

/* A call's paged KV cache (clattn_mha_desc.pages), checked: each sequence's new rows of x (or the memory), its key
 * count after the call, and the slots its new tokens go to. The arrays are the plan's own (malloc'd). */
typedef struct cla_mha_pages_plan {
    const clattn_mha_pages *pages; /* NULL: no paged cache */
    size_t new_rows;               /* new key/value rows of the call, all sequences together */
    int32_t *seqlens_k;            /* [B] keys each sequence attends over */
    int32_t *slots;                /* [new_rows] slot of each new key/value row, in row order */
} cla_mha_pages_plan;

/* Checks desc->pages against the layer, x (the queries) and kv_source (x, the memory, or NULL when nothing is
 * appended) and fills the plan. Nothing is enqueued; on error the plan holds nothing to release. */
clattn_status cla_mha_pages_check(clattn_context *ctx, const clattn_mha_pages *pages, const clattn_mha_config *c,
                                  const clattn_tensor *x, const clattn_tensor *kv_source, cla_mha_pages_plan *plan);
void cla_mha_pages_release(cla_mha_pages_plan *plan);
/* The attention descriptor of a paged call: the caller's options with the pages' serving fields. */
void cla_mha_pages_attention(const clattn_sdpa_desc *options, const cla_mha_pages_plan *plan,
                             clattn_sdpa_desc *out);

/* Checks a configuration and fills in its defaults (kv_d_model, kv_heads, v_head_dim). Sizes must be small enough
 * that every weight and row count below fits size_t. */
clattn_status cla_mha_config_resolve(clattn_context *ctx, const clattn_mha_config *in, clattn_mha_config *out);

#endif
