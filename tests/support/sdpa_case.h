// SPDX-License-Identifier: Apache-2.0
/* A harness for attention tests: one described case is run on the device with poisoned outputs and canary regions
 * and compared with the double-precision reference, element by element, with a tolerance that grows with Lk. For
 * the sizes users run (tests/test_large_sdpa.c) it compares a sample of rows, stages only the neighbourhood of each
 * view on the host (offsets past 2^31 bytes), and runs both implementations on the same inputs. */
#ifndef CLATTN_SDPA_CASE_H
#define CLATTN_SDPA_CASE_H

#include "test_util.h"

enum { MASK_NONE = 0, MASK_ADD = 1, MASK_BOOL = 2 };
enum { LAYOUT_BHLD = 0, LAYOUT_BLHD = 1 };

typedef struct sdpa_case {
    size_t batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim; /* v_head_dim 0: head_dim */
    clattn_dtype dtype;                                                   /* q, k, v, out */
    int layout;
    size_t offset;  /* elements before each tensor in its buffer */
    size_t row_pad; /* elements of padding after each sequence position of q, k, v and out: larger strides */
    float scale;    /* NAN: default */
    clattn_causal causal;
    int64_t window_left, window_right; /* set both to -1 for none (sdpa_case_init does) */
    clattn_window_align window_align;  /* of the window and ALiBi (DEFAULT: causal's) */
    int mask_kind;
    clattn_dtype mask_dtype; /* for MASK_ADD */
    /* Dimensions of [B, Hq, Lq, Lk] the mask broadcasts over: it has size 1 there (e.g. batch and q for a padding
     * mask [B, Hq|1, 1, Lk]); with mask_stride0 the view gives those dimensions their full size and stride 0
     * instead, the other way a caller broadcasts. */
    bool mask_bcast_batch, mask_bcast_heads, mask_bcast_q, mask_bcast_k;
    bool mask_stride0;
    float mask_fill_prob;       /* fraction of masked entries (-inf additive / false boolean) */
    float mask_neg_value;       /* value used for masked additive entries (default -INFINITY) */
    float mask_constant;        /* when nonzero, every unmasked additive entry is this constant */
    const int32_t *key_lengths; /* [batch] or NULL */
    bool want_lse, want_weights;
    clattn_dtype weights_dtype; /* F32 (sdpa_case_init), F16 or BF16 */
    clattn_impl impl;
    float input_scale; /* multiplies q (for large logits); 0 means 1 */
    unsigned seed;
    /* Special inputs. */
    long nan_q_row;      /* >= 0: set q[0,0,row,0] = NaN */
    bool nan_in_padding; /* NaN in k and v at keys >= key_lengths[b] */
    /* 0: every row against the reference; else about this many rows spread over every (batch, head) slice, the
     * first and last rows and slices among them (test_sample_rows), for shapes whose whole reference is slow. */
    size_t sample_rows;
    /* Score modifiers: softcap > 0 caps the logits; sinks gives every query head a sink logit of sink_bias plus a
     * value in [-4, 4) (a bias near log Lk makes the sink weigh as much as the keys of a long row);
     * alibi gives head h the slope alibi_slope / (h + 1) (0.5 when alibi_slope is 0). The per-head values lie at
     * `offset` in their buffers, with a head stride of 2 when row_pad is set. */
    float softcap;
    bool sinks, alibi;
    float alibi_slope, sink_bias;
} sdpa_case;

void sdpa_case_init(sdpa_case *c);
/* sdpa_case_init's case with this implementation and shape: batch x q_heads query heads (kv_heads key/value
 * heads) of q_len x kv_len, head dim head_dim. */
sdpa_case sdpa_case_of(clattn_impl impl, size_t batch, size_t q_heads, size_t kv_heads, size_t q_len, size_t kv_len,
                       size_t head_dim);

/* Runs the case, compares with the reference and fails the test with a precise message on any mismatch, poison
 * left in an output, or canary change. Returns the output as floats (malloc'd, [B,Hq,Lq,Dv]) if `out_copy`. */
void sdpa_case_run(clattn_context *ctx, const sdpa_case *c, float **out_copy);

/* The same without cmocka (usable from threads): returns 0, or -1 with a message in err. */
int sdpa_case_check(clattn_context *ctx, const sdpa_case *c, char *err, size_t err_size);

/* Runs the case with the fused and then the unfused implementation on the same inputs (c->impl is not used): each
 * against the reference (the fused one without the weights, which it cannot produce), then the two outputs and
 * lse against each other on every element. Fails the test on any mismatch. */
void sdpa_case_run_both(clattn_context *ctx, const sdpa_case *c);

/* A short description of a case for messages. */
void sdpa_case_describe(const sdpa_case *c, char *buf, size_t size);

#endif
