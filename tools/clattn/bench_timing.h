// SPDX-License-Identifier: Apache-2.0
/* Timing shared by the `clattn bench` operations: warm-up calls, then timed calls measured with OpenCL profiling
 * events (the host clock only where a device gives no profiling information), reported as median, min and max. */
#ifndef CLATTN_BENCH_TIMING_H
#define CLATTN_BENCH_TIMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "cli.h"

/* One call of the operation being timed: enqueues it on `queue` and returns the event of its completion. */
typedef clattn_status (*bench_call_fn)(void *user, cl_command_queue queue, cl_event *done);

typedef struct bench_timing {
    double median_ms, min_ms, max_ms;
    uint64_t temp_bytes; /* the most device memory one call allocated for itself */
    bool host_timer;     /* no profiling information: host wall-clock times instead */
} bench_timing;

/* Runs `warmup` untimed and `repeat` timed calls (`times` holds `repeat` doubles). Returns CLI_OK, or reports the
 * failure under `cmd` and returns the exit code (CLI_USAGE for an input error the library rejected). `what` names
 * the operation in messages. */
int bench_time_calls(const char *cmd, const char *what, clattn_context *ctx, long warmup, long repeat,
                     bench_call_fn call, void *user, double *times, bench_timing *t);

/* Prints a CSV field, quoted when it holds a comma, a quote or a line break. */
void bench_csv_string(const char *s);

/* The options every bench command reads the same way (--check, --repeat, --warmup, the output format, --device),
 * at the end of each command's table. */
/* clang-format off */
#define BENCH_COMMON_OPTIONS                                                                                        \
    {"check", NULL, "also compare each output with the double-precision reference", NULL},                         \
    {"repeat", "N", "timed calls per measurement (default 10); median, min and max are reported", NULL},           \
    {"warmup", "N", "untimed calls first, at least 1 (default 2); compilation happens there", NULL},               \
    {"json", NULL, "print one JSON array, an object per measurement", NULL},                                       \
    {"csv", NULL, "print CSV: a header and a row per measurement", NULL},                                          \
    CLI_OPTION_DEVICE
/* clang-format on */

/* What every bench command holds for its run: a profiling context on the chosen device, its description, room for
 * the timings of one measurement, and the JSON array when --json asked for one. */
typedef struct bench_run {
    clattn_context *ctx;
    clattn_device_info info;
    double *times;      /* `repeat` doubles */
    struct cJSON *json; /* NULL unless JSON output */
} bench_run;

/* Opens the run; on failure prints why under `cmd`, leaves nothing to free and returns the exit code. */
int bench_run_open(bench_run *run, const char *cmd, const char *device, long repeat, bool json);
/* Ends the run: prints the JSON array (when rc is still CLI_OK), reports outputs outside the reference's tolerance,
 * frees everything. Returns the command's exit code. */
int bench_run_close(bench_run *run, const char *cmd, int rc, size_t failed_checks);

#endif
