// SPDX-License-Identifier: Apache-2.0
/* The random problem of one attention call as `clattn bench` and `clattn tune` make it: q, k and v in [-2, 2)
 * rounded to the storage type (seeds 12345, 23456 and 34567), an optional mask of one [Lq, Lk] matrix broadcast
 * over batch and heads (support_random_mask), their device buffers and an output buffer, and the
 * double-precision reference of the call. */
#ifndef CLATTN_SUPPORT_SDPA_INPUTS_H
#define CLATTN_SUPPORT_SDPA_INPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"

typedef struct support_sdpa_inputs {
    /* The problem, set by the caller. */
    size_t batch, heads, kv_heads, q_len, kv_len, head_dim;
    clattn_dtype dtype;
    clattn_mask_kind mask_kind;
    /* Made by support_sdpa_inputs_make: element counts, host copies (exactly what the device holds), buffers. */
    size_t nq, nk, nmask;
    float *q, *k, *v, *mask;
    uint8_t *bool_mask;
    cl_mem dq, dk, dv, dout, dmask;
} support_sdpa_inputs;

/* Draws the inputs and makes the buffers. Returns 0, or -1 with the reason in `why`. */
int support_sdpa_inputs_make(clattn_context *ctx, support_sdpa_inputs *in, char *why, size_t why_size);
/* Frees the host copies (the reference needs them; a long benchmark sweep need not hold them twice). */
void support_sdpa_inputs_drop_host(support_sdpa_inputs *in);
/* Frees everything it made; the problem stays. */
void support_sdpa_inputs_free(support_sdpa_inputs *in);

/* The call's tensors ([B, H, L, D]) and its mask in `desc` (other fields untouched). */
void support_sdpa_inputs_tensors(const support_sdpa_inputs *in, clattn_sdpa_desc *desc, clattn_tensor *q,
                                 clattn_tensor *k, clattn_tensor *v, clattn_tensor *out);

/* The reference output [B, H, Lq, D] of the inputs with the default scale and these options (key_lengths: [B] or
 * NULL), malloc'd; NULL when out of memory. */
double *support_sdpa_inputs_reference(const support_sdpa_inputs *in, clattn_causal causal, int64_t window_left,
                                      int64_t window_right, const int32_t *key_lengths);
/* The same with the score modifiers: softcap (0: none), sinks and ALiBi slopes [H] (NULL: none). */
double *support_sdpa_inputs_reference_mods(const support_sdpa_inputs *in, clattn_causal causal, int64_t window_left,
                                           int64_t window_right, const int32_t *key_lengths, float softcap,
                                           const float *sinks, const float *alibi_slopes);

/* The score modifiers' values that `clattn bench --mods` and `clattn tune` run: Gemma 2's softcap of 50, sinks of
 * 0.5 and the ALiBi paper's slopes 2^(-8 (h + 1) / H), for `heads` query heads (either array may be NULL). */
#define SUPPORT_SOFTCAP 50.0f
void support_mod_values(size_t heads, float *sinks, float *slopes);

#endif
