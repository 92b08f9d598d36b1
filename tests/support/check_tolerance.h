// SPDX-License-Identifier: Apache-2.0
/* How far a device result may be from the double-precision reference: one formula per operation, shared by the
 * tests (tests/test_mha.c, tests/support/seq2seq_case.c) and the --check options of `clattn run` and `clattn
 * bench`, so that a tolerance tightened or loosened in one place is the same everywhere. fp32 rounding error grows
 * with the length of each reduction a result goes through; the half types add their storage rounding on top. */
#ifndef CLATTN_CHECK_TOLERANCE_H
#define CLATTN_CHECK_TOLERANCE_H

#include <stddef.h>

#include "clattn.h"

/* Relative error of attention over kv_len keys: one fp32 softmax-weighted reduction. */
double check_sdpa_rel_tolerance(size_t kv_len);

/* Absolute tolerance of an attention output on inputs in [-2, 2] (the CLI's random inputs): twice the relative
 * error plus the storage rounding of such values. Used by `clattn run sdpa`, `clattn bench sdpa` and the tuner. */
double check_sdpa_tolerance(size_t kv_len, clattn_dtype dt);

/* Relative error of a multi-head attention layer: three fp32 reductions (the projections over the input widths,
 * attention over kv_len keys, the output projection over heads * v_head_dim). `c` must have kv_d_model and
 * v_head_dim resolved (no zeros standing for defaults). */
double check_mha_rel_tolerance(const clattn_mha_config *c, size_t kv_len);

/* Relative error of seq2seq attention: the projections, the score over attn_dim and the softmax over kv_len. */
double check_seq2seq_rel_tolerance(size_t kv_len, size_t attn_dim, size_t query_dim, size_t key_dim);

/* Relative rounding of one value stored as `dt`: one ulp of fp16 (2^-10) or bfloat16 (2^-7), twice what a
 * single rounding can cost, so that an input and an output rounding both fit; 0 for fp32. */
double check_storage_rel_tolerance(clattn_dtype dt);

/* Absolute rounding of a value of magnitude up to 2 (the random inputs' range) stored as `dt`: about one ulp at 2
 * for fp16 (2e-3) and bfloat16 (1.6e-2); 0 for fp32. */
double check_storage_abs_tolerance(clattn_dtype dt);

#endif
