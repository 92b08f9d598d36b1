// SPDX-License-Identifier: Apache-2.0
/* `clattn bench sdpa --flex` (bench_flex.c): a mask written as mask_mod, timed with and without its block mask and
 * against the built-in form of the same mask. */
#ifndef CLATTN_BENCH_FLEX_H
#define CLATTN_BENCH_FLEX_H

#include "bench_sdpa.h"
#include "bench_timing.h"

/* Parses "causal" (docs 0) or "documents[:N]" (N documents, default 4). Returns CLI_OK or reports under `cmd`. */
int bench_flex_parse(const char *cmd, const char *spec, size_t *docs);

/* Times every shape of `c` (its dtype, repeat and warm-up) as a table on stdout. */
int bench_flex(const char *cmd, bench_run *run, const bench_config *c, size_t docs, size_t block);

#endif
