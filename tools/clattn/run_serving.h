// SPDX-License-Identifier: Apache-2.0
/* `clattn run sdpa` on the serving formats: packed variable-length batches, paged KV caches and K/V stored in a
 * type of their own (run_serving.c). cmd_run.c parses the options and hands such runs over. */
#ifndef CLATTN_RUN_SERVING_H
#define CLATTN_RUN_SERVING_H

#include <stdbool.h>

#include "cli.h"

/* Whether any serving option (--cu-seqlens-q/-k, --k-cache, --v-cache, --block-table, --seqlens-k, --kv-dtype) was
 * given. */
bool run_serving_requested(const cli_command *cmd);

/* Runs the parsed command; returns its exit code. */
int run_serving(const cli_command *cmd);

#endif
