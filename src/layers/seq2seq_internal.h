// SPDX-License-Identifier: Apache-2.0
/* Seq2seq attention internals shared with the tests: the validated plan of one call and the entry point of the
 * fused additive kernel on projections already computed, so that the kernel can be checked (under Oclgrind too)
 * without the GEMMs. Nothing here is public. */
#ifndef CLATTN_SEQ2SEQ_INTERNAL_H
#define CLATTN_SEQ2SEQ_INTERNAL_H

#include "linear.h"

struct clattn_seq2seq_weights {
    clattn_context *ctx;
    clattn_seq2seq_config config;
    /* additive and concat: [query_dim + key_dim, attn_dim], the rows of W_q then those of W_k (concat's W as
     * given); general: W [query_dim, key_dim]; dot: NULL. */
    cl_mem w;
    cl_mem v;    /* additive and concat: [attn_dim]; else NULL */
    cl_mem bias; /* additive: [attn_dim] or NULL */
};

typedef struct cla_seq2seq_plan {
    clattn_score score;
    size_t batch, q_len, kv_len, query_dim, key_dim, value_dim, attn_dim;
    clattn_tensor query, keys, values, context; /* values is the keys when the caller gave none */
    int mask_kind;                              /* CLA_MASK_* */
    clattn_tensor mask;                         /* batch stride 0 when broadcast */
    cl_mem key_lengths;
    size_t key_lengths_offset;
    clattn_tensor weights;        /* buffer NULL when not requested */
    clattn_tensor key_projection; /* k W_k given by the caller; buffer NULL: projected by the call */
    const clattn_seq2seq_weights *params;
} cla_seq2seq_plan;

/* Checks every argument of clattn_seq2seq_attention and fills the plan; nothing is enqueued. */
clattn_status cla_seq2seq_validate(clattn_context *ctx, const clattn_seq2seq_weights *weights,
                                   const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                                   const clattn_tensor *keys, const clattn_tensor *values,
                                   const clattn_tensor *context_out, cl_command_queue queue, cl_uint num_wait,
                                   const cl_event *wait_list, cla_seq2seq_plan *plan);

/* The fused kernel of an additive or concat plan (batch and q_len nonzero) on fp32 projections qp [B, Lq, attn_dim]
 * (bias included) and kp [B, Lk, attn_dim], with v [attn_dim] at v_offset; one launch per slice of at most
 * CLA_S2S_MAX_SLICE_DIM value columns. Enqueued on the chain; may allocate a temporary for the raw scores when
 * the weights are not fp32. */
clattn_status cla_seq2seq_additive_kernel(clattn_context *ctx, const cla_seq2seq_plan *plan, cla_rows qp,
                                          cla_rows kp, cl_mem v, size_t v_offset, cla_chain *chain);

#endif
