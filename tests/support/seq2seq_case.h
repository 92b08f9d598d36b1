// SPDX-License-Identifier: Apache-2.0
/* A harness for seq2seq attention tests: one described case (score, shapes, dtypes, masks, key lengths, weights
 * output) is run on the device with poisoned outputs and canary regions and compared with the double-precision
 * reference of src/reference_seq2seq.c, element by element. */
#ifndef CLATTN_SEQ2SEQ_CASE_H
#define CLATTN_SEQ2SEQ_CASE_H

#include "test_util.h"

enum { S2S_MASK_NONE = 0, S2S_MASK_ADD = 1, S2S_MASK_BOOL = 2 };

typedef struct s2s_case {
    clattn_score score;
    size_t batch, q_len, kv_len, query_dim, key_dim, attn_dim;
    size_t value_dim;   /* 0: no values tensor, the keys are the values */
    clattn_dtype dtype; /* query, keys, values, context */
    bool bias;          /* additive only */
    bool want_weights;
    clattn_dtype weights_dtype;
    int mask_kind;
    clattn_dtype mask_dtype; /* for S2S_MASK_ADD */
    bool mask_bcast;         /* mask [1, 1, Lq, Lk] */
    bool mask_bcast_q;       /* the mask's Lq is 1 ([B, 1, 1, Lk]: padding) */
    bool mask_bcast_k;       /* the mask's Lk is 1 */
    float mask_fill_prob;    /* fraction of masked entries */
    long masked_row;         /* >= 0: this row of every batch item is fully masked by the mask */
    const int32_t *key_lengths;
    size_t offset;        /* elements before each tensor in its buffer */
    bool host_projection; /* additive/concat: project on the host and call the fused kernel alone */
    bool project_keys;    /* additive/concat: clattn_seq2seq_project_keys first, passed as desc.key_projection */
    long nan_query_row;   /* >= 0: query[0, row, 0] = NaN */
    bool nan_in_padding;  /* NaN in the keys and values past each key length */
    unsigned seed;
} s2s_case;

void s2s_case_init(s2s_case *c);
void s2s_case_describe(const s2s_case *c, char *buf, size_t size);
/* Runs the case and compares; returns 0, or -1 with a message in err. */
int s2s_case_check(clattn_context *ctx, const s2s_case *c, char *err, size_t err_size);
/* The same, failing the cmocka test on a mismatch. */
void s2s_case_run(clattn_context *ctx, const s2s_case *c);

#endif
