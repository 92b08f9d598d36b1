// SPDX-License-Identifier: Apache-2.0
/* The serving format of an attention class the tuner times (clattn_tune_class.kv_layout and kv_dtype): its keys and
 * values packed (FlashAttention's varlen, one sequence), in a paged cache (pages of TUNE_PAGE keys in reverse
 * order, vLLM's layout) or stored in 8 bits (int8 with a scale per token and head, fp8 with one scale), so that the
 * kernel timed is the one such calls run. */
#ifndef CLATTN_TUNE_SERVING_H
#define CLATTN_TUNE_SERVING_H

#include <stdint.h>

#include "clattn.h"
#include "support_sdpa_inputs.h"

#define TUNE_PAGE 16

typedef struct tune_serving {
    long layout, kv_dtype; /* as the class has them: CLATTN_TUNE_KV_*, CLATTN_DTYPE_I8 / _FP8_E4M3; <= 0 none */
    size_t pages;          /* the paged layout's pages per sequence */
    int32_t cu_q[2], cu_k[2], seqlens_k[1];
    int32_t *block_table;
    cl_mem k, v, k_scale, v_scale; /* the keys and values as the format stores them, and 8-bit scales */
} tune_serving;

/* Makes the stored keys and values from in's (batch 1, already made) and, for 8-bit, replaces in's host keys and
 * values by what the codes stand for, so that the reference is that of the stored cache. NULL, or why not. */
const char *tune_serving_setup(clattn_context *ctx, support_sdpa_inputs *in, tune_serving *s);
/* The call's descriptor fields and its key and value tensors in the format (nothing for a dense class). */
void tune_serving_apply(const tune_serving *s, const support_sdpa_inputs *in, clattn_sdpa_desc *desc,
                        clattn_tensor *k, clattn_tensor *v);
void tune_serving_free(tune_serving *s);

#endif
