// SPDX-License-Identifier: Apache-2.0
/* What `clattn bench sdpa` (cmd_bench.c) shares with its serving-format part (bench_serving.c): the shapes and
 * options of a run, and the count of (query, key) pairs behind every GFLOP/s figure. */
#ifndef CLATTN_BENCH_SDPA_H
#define CLATTN_BENCH_SDPA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "support_sdpa_inputs.h"

#define MAX_SWEEP  64
#define MAX_CAUSAL 3
#define MAX_MODS   7
/* The most sequences --varlen lists and --key-length values a batch takes. */
#define BENCH_MAX_SEQS 64

enum { IMPL_FUSED = 0, IMPL_UNFUSED = 1, IMPL_COUNT = 2 };
/* The score modifiers a row may carry (--mods): bits 1 softcap, 2 sinks, 4 ALiBi; 8 and 16 are the softcap and
 * ALiBi written as a caller's score_mod (OpenCL C), which compute the same scores. */
enum {
    MODS_NONE = 0,
    MODS_SOFTCAP = 1,
    MODS_SINKS = 2,
    MODS_ALIBI = 4,
    MODS_ALL = 7,
    MODS_SOFTCAP_FN = 8,
    MODS_ALIBI_FN = 16
};
/* Whether a row's scores carry the softcap or ALiBi, built in or as a score_mod (for the reference). */
/* The rows whose modifiers are a score_mod (fused only, dense only). */
#define MODS_SCORE_FNS      (MODS_SOFTCAP_FN | MODS_ALIBI_FN)
#define MODS_HAS_SOFTCAP(m) (((m) & (MODS_SOFTCAP | MODS_SOFTCAP_FN)) != 0)
#define MODS_HAS_ALIBI(m)   (((m) & (MODS_ALIBI | MODS_ALIBI_FN)) != 0)
/* The softcap the rows use: Gemma 2's for attention logits (the tuner's too). */
#define BENCH_SOFTCAP SUPPORT_SOFTCAP

typedef struct bench_shape {
    size_t batch, heads, kv_heads, seq, kv_seq, head_dim;
} bench_shape;

/* Everything the options decide, shared by every measurement of the run. */
typedef struct bench_config {
    bench_shape shapes[MAX_SWEEP];
    size_t shape_count;
    const char *sweep_name; /* NULL: no sweep; else points to sweep_buf */
    char sweep_buf[16];
    clattn_causal causal[MAX_CAUSAL];
    size_t causal_count;
    int64_t window_left, window_right;
    /* --key-length: none (count 0), one length for every batch item (count 1), or one per item. */
    int32_t key_lengths[BENCH_MAX_SEQS];
    size_t key_length_count;
    int mask;
    int mods[MAX_MODS]; /* MODS_* bits, one row group each */
    size_t mods_count;
    bool mods_given; /* --mods: the table shows the mods and vs-plain columns */
    clattn_dtype dtype;
    bool impl[IMPL_COUNT];
    long repeat, warmup;
    bool check;
    int format;
    /* The serving formats (bench_serving.c), any of which makes `serving` true: packed sequences of these lengths
     * (queries and keys alike; count 0: none), keys and values in a paged cache of pages of `page` keys (0: none),
     * and their storage type (the --dtype unless --kv-dtype). */
    bool serving;
    size_t varlen[BENCH_MAX_SEQS];
    size_t varlen_count;
    size_t page;
    clattn_dtype kv_dtype;
} bench_config;

/* One attention call as bench_time_calls runs it (bench_call_sdpa enqueues it): cmd_bench.c's rows, and
 * bench_flex.c's. */
typedef struct bench_sdpa_call {
    clattn_context *ctx;
    clattn_sdpa_desc desc;
    clattn_tensor q, k, v, o;
} bench_sdpa_call;
clattn_status bench_call_sdpa(void *user, cl_command_queue queue, cl_event *done);

/* The (query, key) pairs of one (batch item, head) slice that take part: `lq` queries over the first `klen` of `lk`
 * keys, under causal masking and the window. Exact, and checked against the reference's own rule on small
 * slices. */
uint64_t bench_slice_pairs(const bench_config *c, int64_t lq, int64_t lk, int64_t klen, clattn_causal causal);

#endif
