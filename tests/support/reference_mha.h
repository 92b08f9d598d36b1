// SPDX-License-Identifier: Apache-2.0
/* Double-precision CPU reference of a whole multi-head attention layer: projections, biases, grouped-query heads,
 * every mask of the attention reference, the residual, and KV-cache semantics by construction (the cached tokens
 * are given as the inputs they were projected from). The ground truth for tests/test_mha.c and `clattn run mha
 * --check`.
 */
#ifndef CLATTN_REFERENCE_MHA_H
#define CLATTN_REFERENCE_MHA_H

#include "reference.h"

typedef struct cla_ref_mha {
    clattn_mha_config config; /* zero fields mean what they mean for clattn_mha_weights_create */
    clattn_mha_weights_host weights;
    size_t batch, q_len;
    const float *x; /* [B, Lq, d_model], already rounded to its storage dtype */
    /* The keys and values are projected from past rows, then the current ones: [past; memory] in cross-attention,
     * [past; x] in self-attention, or past alone when read_only (a cache in CLATTN_CACHE_READ mode). */
    const float *memory; /* [B, memory_len, kv_d_model] or NULL (self-attention) */
    size_t memory_len;
    const float *past; /* [B, past_len, kv_d_model] or NULL: what an earlier call put in a KV cache */
    size_t past_len;
    bool read_only;
    int residual; /* out = x + MHA(x) */
    /* The attention's options, as cla_reference_sdpa takes them: scale (NAN: 1/sqrt(d_k)), causal, window, mask
     * broadcasting to [B, H, Lq, Lk], bool_mask, key_lengths, and the optional lse [B, H, Lq] and weights
     * [B, H, Lq, Lk] outputs. Its q, k, v and out are filled in by cla_reference_mha. */
    cla_ref_sdpa attention;
    double *out; /* [B, Lq, d_model], required */
} cla_ref_mha;

/* The number of keys the attention sees: past_len plus the current key/value rows. */
size_t cla_ref_mha_kv_len(const cla_ref_mha *a);

/* Computes out (and the attention's lse and weights when given). Returns 0, or -1 on an allocation failure or
 * arguments that cannot describe a layer; on -1 no output is written. */
int cla_reference_mha(const cla_ref_mha *a);

#endif /* CLATTN_REFERENCE_MHA_H */
