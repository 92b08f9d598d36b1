// SPDX-License-Identifier: Apache-2.0
/* --check in the `clattn bench` commands: a measured output compared with the double-precision reference, and the
 * error reported the same way by every operation (a table column, JSON max_error/tolerance, CSV columns), so that
 * scripts read one format whatever they benchmark. */
#ifndef CLATTN_BENCH_CHECK_H
#define CLATTN_BENCH_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "clattn.h"

/* Above this many multiply-adds the double-precision reference takes more than a few seconds per shape, so --check
 * skips the shape (with a note) rather than making a sweep crawl. */
#define BENCH_REFERENCE_LIMIT 1e10

typedef struct bench_check {
    bool checked; /* max_error and tolerance are meaningful; false: --check skipped this measurement */
    double max_error, tolerance;
} bench_check;

/* Reads `n` elements of storage type `dt` from `buffer` and sets *worst to the largest absolute difference from
 * `ref` (infinite where one side only is NaN); *ref_max, if not NULL, to the largest finite |ref|. Returns CLI_OK,
 * or prints why under `cmd` and returns CLI_FAILED. */
int bench_output_error(const char *cmd, clattn_context *ctx, cl_mem buffer, size_t n, clattn_dtype dt,
                       const double *ref, double *worst, double *ref_max);

/* Prints, once per run (*noted), that --check skips shapes above BENCH_REFERENCE_LIMIT. */
void bench_check_skip_note(const char *cmd, bool *noted);

/* Whether the check failed; prints nothing. */
bool bench_check_failed(const bench_check *c);

/* The table column ("  max error" in the header), a JSON object's max_error/tolerance (or check_note), and the
 * CSV's last two columns "max_error,tolerance" (empty when skipped). */
void bench_check_table_cell(const bench_check *c);
void bench_check_json(cJSON *o, const bench_check *c);
void bench_check_csv(const bench_check *c);

#endif
