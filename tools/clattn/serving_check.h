// SPDX-License-Identifier: Apache-2.0
/* The serving layouts' index arithmetic (where query row i and key j of sequence b lie in packed, paged or dense
 * tensors) and --check for them: each sequence computed alone by the double-precision reference (tests/support)
 * from the values the device holds, compared with the device's rows. Shared by `clattn run sdpa` and `clattn bench
 * sdpa`. */
#ifndef CLATTN_SERVING_CHECK_H
#define CLATTN_SERVING_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"

/* The sequences of a call, as clattn_sdpa_desc holds them (host arrays). */
typedef struct serving_seqs {
    size_t count;                           /* B */
    const int32_t *cu_q;                    /* [B + 1]: packed queries; NULL: dense [B, Hq, q_len, D] */
    const int32_t *cu_k;                    /* [B + 1]: packed keys */
    const int32_t *block_table, *seqlens_k; /* paged keys: [B, table_stride] and [B] */
    size_t table_stride, page;
    size_t q_len, kv_len;       /* dense queries' and dense keys' lengths */
    const int32_t *key_lengths; /* dense keys: [B] or NULL */
} serving_seqs;

size_t serving_q_len(const serving_seqs *s, size_t b);
size_t serving_k_len(const serving_seqs *s, size_t b);
/* The longest query and key sequence (negative lengths count as 0, so this is safe before validation). */
size_t serving_max_q(const serving_seqs *s);
size_t serving_max_k(const serving_seqs *s);
/* Where row i of sequence b's queries, or key j of its keys, lies: indices (size[0], size[2]) of the tensor. */
void serving_q_at(const serving_seqs *s, size_t b, size_t i, size_t *i0, size_t *i2);
void serving_k_at(const serving_seqs *s, size_t b, size_t j, size_t *i0, size_t *i2);

/* Host copies of a call: each array is contiguous as its view (a clattn_tensor: sizes and strides) says. */
typedef struct serving_host {
    const float *q, *k, *v, *out, *lse; /* lse NULL: not compared */
    clattn_tensor qv, kv, vv, ov, lv;
} serving_host;

/* The options every sequence's reference shares. The mask (additive or bool, contiguous of mask_shape) broadcasts
 * to [B, Hq, max_q, max_k], sequence b reading its own rows and keys from the top-left. */
typedef struct serving_ref_options {
    double scale; /* resolved */
    clattn_causal causal;
    int64_t window_left, window_right;
    clattn_window_align window_align;
    double softcap;
    const float *sinks, *alibi_slopes;
    const float *mask;
    const uint8_t *bool_mask;
    size_t mask_shape[4];
    /* int32 flags, contiguous of block_mask_shape, broadcasting to [B, Hq, ceil(max_q / block_q),
     * ceil(max_k / block_k)] with blocks counted within each sequence; a 0 flag masks its keys. NULL: none. */
    const int32_t *block_mask;
    size_t block_mask_shape[4], block_q, block_k;
} serving_ref_options;

/* The largest absolute difference of the outputs (and of lse, 0 without it) from the reference over every
 * sequence. Returns 0, or -1 when out of host memory. */
int serving_check(const serving_seqs *s, const serving_host *h, const serving_ref_options *o, double *worst_out,
                  double *worst_lse);

#endif
