// SPDX-License-Identifier: Apache-2.0
/* `clattn bench sdpa` on the serving formats: --varlen packs sequences of given lengths (prefill: queries and keys
 * alike), --paged puts the keys and values in a paged cache with shuffled pages, --kv-dtype stores them as f32,
 * f16, bf16, or quantized int8 or fp8. cmd_bench.c times the calls this file builds, and reports them in its table,
 * JSON and CSV. */
#ifndef CLATTN_BENCH_SERVING_H
#define CLATTN_BENCH_SERVING_H

#include <stddef.h>
#include <stdint.h>

#include "bench_sdpa.h"
#include "cli.h"
#include "serving_check.h"
#include "serving_kv.h"

/* The device side of one shape in a serving format, and host copies of its inputs (as the device holds them) for
 * --check. */
typedef struct bench_serving_data {
    serving_seqs seqs;
    int32_t *cu, *table, *seqlens;  /* the index arrays seqs points into */
    float *q, *k, *v;               /* host copies; NULL without --check */
    clattn_tensor q_view, out_view; /* device tensors of the queries and the output */
    serving_kv keys, values;
    size_t total_q;
    double io_bytes; /* bytes one call reads and writes: q, out, the keys and values of every sequence, scales and
                        index arrays */
} bench_serving_data;

/* Reads --varlen, --paged and --kv-dtype into `c` (after the other options) and refuses what does not combine
 * with them. Returns CLI_OK or the exit code, having printed why. */
int bench_serving_parse(const cli_command *cmd, bench_config *c);

/* Draws the inputs of shape `s` (seeded) and makes their buffers. */
int bench_serving_prepare(clattn_context *ctx, const bench_config *c, const bench_shape *s, bench_serving_data *d);

/* The (query, key) pairs that take part, over every sequence (of one head). */
uint64_t bench_serving_pairs(const bench_config *c, const bench_serving_data *d, clattn_causal causal);

/* The call's tensors, and its sequence fields and scales in `desc` (other fields untouched). */
void bench_serving_tensors(const bench_serving_data *d, clattn_sdpa_desc *desc, clattn_tensor *q, clattn_tensor *k,
                           clattn_tensor *v, clattn_tensor *out);

/* --check of the last call's output: each sequence alone against the reference, with the score modifiers given
 * (softcap 0 and NULL arrays: none) and dense keys' lengths (NULL: none). Sets *worst; returns CLI_OK, or prints
 * why under the command and returns CLI_FAILED. */
int bench_serving_check(clattn_context *ctx, const bench_config *c, const bench_serving_data *d,
                        clattn_causal causal, float softcap, const float *sinks, const float *slopes,
                        const int32_t *key_lengths, double *worst);

/* The longest key sequence, which sets the check's tolerance. */
size_t bench_serving_max_k(const bench_serving_data *d);

void bench_serving_free(bench_serving_data *d);

/* The table's column of the K/V layout and storage ("paged16 i8", "packed f32", "dense fp8") into buf. */
const char *bench_serving_layout(const bench_config *c, char *buf, size_t size);

/* The table's header line that describes the formats. */
void bench_serving_header(const bench_config *c);

#endif
