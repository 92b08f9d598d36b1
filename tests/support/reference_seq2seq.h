// SPDX-License-Identifier: Apache-2.0
/* Double-precision CPU reference of seq2seq attention (additive/Bahdanau and the Luong dot, general and concat
 * scores), with masks, key lengths and the attention weights: the ground truth for the tests and `clattn run
 * additive|luong --check`. Written for clarity, not speed. */
#ifndef CLATTN_REFERENCE_SEQ2SEQ_H
#define CLATTN_REFERENCE_SEQ2SEQ_H

#include "clattn.h"

#include <stddef.h>
#include <stdint.h>

/* Every array is contiguous float32 (already rounded to the storage dtype by the caller), weights as in
 * clattn_seq2seq_weights_host (row-major, multiplying from the right). */
typedef struct cla_ref_seq2seq {
    clattn_score score;
    size_t batch, q_len, kv_len;
    size_t query_dim, key_dim, value_dim, attn_dim; /* value_dim is key_dim when values is NULL */
    const float *query;                             /* [B, Lq, query_dim] */
    const float *keys;                              /* [B, Lk, key_dim] */
    const float *values;                            /* [B, Lk, value_dim], or NULL: the keys */
    const float *w_q, *w_k, *w, *v, *bias;          /* bias may be NULL */
    /* Masks, contiguous [mask_batch, mask_q_len, mask_kv_len]; a size of 1 broadcasts. */
    const float *mask;              /* additive, or NULL; a value <= -FLT_MAX masks the key */
    const uint8_t *bool_mask;       /* nonzero keeps the key, or NULL */
    size_t mask_batch;              /* 1 (broadcast) or batch */
    const int32_t *key_lengths;     /* [B] or NULL; keys j >= key_lengths[b] are masked (< 0 as 0, > Lk as Lk) */
    double *context;                /* [B, Lq, value_dim], required */
    double *weights;                /* [B, Lq, Lk] or NULL */
    size_t mask_q_len, mask_kv_len; /* each 1 (broadcast) or Lq / Lk; 0 means Lq / Lk */
} cla_ref_seq2seq;

/* The scores e[b, i, j] before masking, [B, Lq, Lk] into `scores` (for diagnostics and tests). Returns 0, or -1 on
 * bad arguments or allocation failure. */
int cla_reference_seq2seq_scores(const cla_ref_seq2seq *a, double *scores);

/* Context (and weights when given). A fully masked row gives zeros; a NaN score of a kept key reaches the row.
 * Returns 0, or -1 on bad arguments (a missing weight the score needs) or allocation failure; then nothing is
 * written. */
int cla_reference_seq2seq(const cla_ref_seq2seq *a);

#endif /* CLATTN_REFERENCE_SEQ2SEQ_H */
