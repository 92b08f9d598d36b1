// SPDX-License-Identifier: Apache-2.0
/* A harness for multi-head attention tests (tests/test_mha.c, tests/test_large_layers.c): a layer's random host
 * weights on the device, sequence tensors with poisoned margins, and one described layer call compared with the
 * double-precision reference of src/reference_mha.c, on every row or (for the sizes users run) on a sample. */
#ifndef CLATTN_MHA_CASE_H
#define CLATTN_MHA_CASE_H

#include "test_util.h"

#define MHA_POISON_BYTE 0x7b /* finite in every dtype and far from any output */

float *mha_rand_array(size_t n, float scale, unsigned *seed);           /* n values in [-2, 2) * scale, malloc'd */
float mha_rnd(unsigned *seed);                                          /* one value in [-2, 2) */
cl_mem mha_buffer(clattn_context *ctx, size_t bytes, const void *host); /* fails the test if it cannot */

/* ---- a layer's host weights ---- */

enum { W_QKV, B_QKV, W_Q, W_K, W_V, B_Q, B_K, B_V, W_O, B_O, W_COUNT };

typedef struct mha_layer {
    clattn_mha_config cfg; /* resolved */
    float *w[W_COUNT];
    clattn_mha_weights_host host;
    clattn_mha_weights *dev;
} mha_layer;

/* Random weights scaled by 1/sqrt(fan-in), so that activations stay of order 1, created on the device. */
void mha_layer_make(clattn_context *ctx, mha_layer *l, const clattn_mha_config *cfg, bool packed, bool bias,
                    unsigned seed);
void mha_layer_free(mha_layer *l);

/* ---- sequence tensors on the device ---- */

typedef struct dev_seq {
    clattn_tensor t;     /* the view, buffer included */
    size_t total;        /* elements in the buffer: offset, view, canary */
    size_t first, count; /* the window the test writes and reads: the view with its canaries (test_view_window) */
} dev_seq;

/* Rounds values [B, L, W] to the dtype (in place, so the reference sees what the device sees) and uploads them
 * contiguously after `offset` elements, poisoned around the view; values NULL: all poison. */
dev_seq seq_make(clattn_context *ctx, clattn_dtype dt, size_t B, size_t L, size_t W, size_t offset, float *values);
void seq_release(dev_seq *s);
/* Reads the view into values (may be NULL) and returns whether every byte around it still holds the poison. */
bool seq_read(clattn_context *ctx, const dev_seq *s, float *values);
/* Whether every byte of the window still holds the poison (an output that must not have been written). */
bool seq_untouched(clattn_context *ctx, const dev_seq *s);

/* Fails the test at the first element beyond 1e-5 + rel * (the largest |ref|) plus the storage rounding of dt; the
 * tolerances come from tools/check_tolerance.c, shared with `clattn run mha --check`. */
void expect_close(const char *what, const float *got, const double *ref, size_t n, double rel, clattn_dtype dt,
                  const char *desc);

/* clattn_mha on the context's queue, waited for; fails the test (with the library's message) unless it succeeds. */
void mha_run_ok(clattn_context *ctx, const clattn_mha_weights *w, const clattn_mha_desc *desc,
                const clattn_tensor *x, const clattn_tensor *memory, const clattn_tensor *out);

/* ---- one layer call described as a case ---- */

enum { MHA_MASK_NONE, MHA_MASK_ADD, MHA_MASK_BOOL };

typedef struct mha_case {
    clattn_mha_config cfg;
    size_t batch, q_len;
    bool cross;
    size_t mem_len;
    bool packed, bias, residual, in_place;
    clattn_dtype x_dtype, out_dtype;
    clattn_causal causal;
    int64_t window_left, window_right;
    int mask;
    bool mask_bcast;          /* [1, 1, Lq, Lk] instead of [B, H, Lq, Lk] */
    unsigned mask_bcast_dims; /* bit d set: size 1 in dimension d of [B, H, Lq, Lk] (0b0110: [B, 1, 1, Lk]) */
    bool key_lengths;
    bool lse, weights;
    clattn_impl impl;
    size_t offset;
    unsigned seed;
    /* 0: every output row against the reference; else about this many rows spread over every batch item
     * (test_sample_rows), whose reference projects the keys and values of every row but the queries and the output
     * of the sampled ones alone. Needs rows that do not depend on their position: no causal masking, window, mask,
     * lse or weights. */
    size_t sample_rows;
    /* Score modifiers passed through to the attention: softcap > 0; sinks and ALiBi slopes per query head. */
    float softcap;
    bool sinks, alibi;
    /* The caller's mods in place of a built-in ALiBi and mask: an ALiBi score_mod reading a float buffer of slopes
     * and a document mask_mod reading an int buffer of query and key document ids, checked against the reference
     * with those slopes and the bool mask they give. Needs alibi and mask off, and no bottom-right alignment over
     * Lq != Lk (the expression's q_idx is the row itself). */
    bool user_mods;
} mha_case;

void mha_case_init(mha_case *c);
void mha_case_describe(const mha_case *c, char *buf, size_t size);
/* Runs the case and compares with the reference; fails the test on any mismatch or poison written. */
void mha_case_run(clattn_context *ctx, const mha_case *c);

#endif
