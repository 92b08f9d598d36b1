// SPDX-License-Identifier: Apache-2.0
/* Double-precision CPU reference of scaled dot-product attention: the ground truth for the tests, the benchmark's
 * --check and the tuner. Written for clarity, not speed; it states the library's masking contract in code. */
#ifndef CLATTN_REFERENCE_H
#define CLATTN_REFERENCE_H

#include "clattn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 4-D host view; strides in elements, a stride of 0 broadcasts; data NULL = absent. */
typedef struct cla_ref_tensor {
    const float *data;
    size_t size[4];
    size_t stride[4];
} cla_ref_tensor;

typedef struct cla_ref_bool_tensor {
    const uint8_t *data;
    size_t size[4];
    size_t stride[4];
} cla_ref_bool_tensor;

typedef struct cla_ref_sdpa {
    /* q [B,Hq,Lq,Dk], k [B,Hkv,Lk,Dk], v [B,Hkv,Lk,Dv]; values already rounded to the storage dtype by caller */
    cla_ref_tensor q, k, v;
    double scale; /* already resolved, never NAN-as-default here */
    clattn_causal causal;
    int64_t window_left, window_right; /* CLATTN_WINDOW_UNBOUNDED (-1) = no limit on that side */
    clattn_window_align window_align;  /* of the window and ALiBi; DEFAULT (0) follows causal */
    /* additive, broadcasting to [B,Hq,Lq,Lk] in any dim via size 1 or stride 0; data NULL = none. A value
     * <= -FLT_MAX masks the key. */
    cla_ref_tensor mask;
    cla_ref_bool_tensor bool_mask; /* nonzero = key takes part; data NULL = none */
    const int32_t *key_lengths;    /* [B] or NULL; keys j >= key_lengths[b] masked (< 0 as 0, > Lk as Lk) */
    /* The query rows of q are rows q_first, q_first + 1, ... of a query sequence of q_seq_len rows (0: q holds the
     * whole sequence), which is where causal masking and the window place them; so a few sampled rows of a long
     * sequence can be computed alone. */
    size_t q_first, q_seq_len;
    /* Score modifiers, in this order on each scaled logit, before the masks: softcap > 0: s = softcap tanh(s /
     * softcap) (0: none); alibi_slopes [Hq]: s -= slope[h] |i' - j| with i' the query's position aligned as for
     * the window (NULL: none). sinks [Hq]: one logit per head in every row's denominator, with no value (NULL:
     * none). */
    double softcap;
    const float *sinks, *alibi_slopes;
    /* Block mask (clattn_sdpa_desc.block_mask): int32 flags broadcasting to [B, Hq, ceil(seq_len / block_q),
     * ceil(Lk / block_k)] like `mask`; a key whose block [b, h, (q_first + i) / block_q, j / block_k] holds 0 takes
     * no part, any other flag leaves it to the other masks (there is no mask_mod here). data NULL = none; block_q
     * and block_k > 0. */
    struct {
        const int32_t *data;
        size_t size[4];
        size_t stride[4];
        size_t block_q, block_k;
    } block_mask;
    double *out;     /* [B,Hq,Lq,Dv] contiguous, required */
    double *lse;     /* [B,Hq,Lq] or NULL */
    double *weights; /* [B,Hq,Lq,Lk] or NULL */
} cla_ref_sdpa;

/* A view of contiguous [b, h, l, d] floats. */
cla_ref_tensor cla_ref_dense(const float *data, size_t b, size_t h, size_t l, size_t d);

/* Computes out (and lse, weights when given). Returns 0, or -1 if a temporary allocation failed or the arguments
 * cannot describe an attention (out NULL, Hq not a multiple of Hkv); on -1 no output is written. */
int cla_reference_sdpa(const cla_ref_sdpa *args);

/* Whether causal masking and the sliding window (aligned by `align`, DEFAULT following causal) let query i see key
 * j (key lengths and masks aside). */
bool cla_sdpa_key_allowed(int64_t i, int64_t j, int64_t lq, int64_t lk, clattn_causal causal,
                          clattn_window_align align, int64_t window_left, int64_t window_right);
/* Query i's position among lk keys for the window and ALiBi: i + lk - lq where they align bottom-right. */
int64_t cla_sdpa_window_pos(int64_t i, int64_t lq, int64_t lk, clattn_causal causal, clattn_window_align align);

#endif /* CLATTN_REFERENCE_H */
