// SPDX-License-Identifier: Apache-2.0
/* Timing shared by the `clattn bench` operations (see bench_timing.h). */
#define _POSIX_C_SOURCE 200809L
#include "bench_timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "support_timing.h"

/* One call of the operation, as the support library's timing loop calls it; notes the device memory it took. */
typedef struct timed_call {
    clattn_context *ctx;
    bench_call_fn call;
    void *user;
    uint64_t temp_bytes;
} timed_call;

static int call_once(void *user, cl_command_queue queue, cl_event *done) {
    timed_call *c = user;
    const clattn_status st = c->call(c->user, queue, done);
    clattn_memory_stats mem;
    if (st == CLATTN_SUCCESS && clattn_context_memory_stats(c->ctx, &mem) == CLATTN_SUCCESS &&
        mem.last_call_bytes > c->temp_bytes)
        c->temp_bytes = mem.last_call_bytes;
    return st;
}

int bench_time_calls(const char *cmd, const char *what, clattn_context *ctx, long warmup, long repeat,
                     bench_call_fn call, void *user, double *times, bench_timing *t) {
    memset(t, 0, sizeof *t);
    timed_call c = {ctx, call, user, 0};
    support_timing st;
    /* Without profiling on the device, the host clock around a blocking call is the best left. */
    const support_time_result r =
        support_time_calls(clattn_context_cl_queue(ctx), warmup, repeat, true, call_once, &c, times, &st);
    if (r == SUPPORT_TIME_CALL) {
        int rc = cli_report_status(cmd, ctx, st.call_status, what);
        return cli_is_input_error(st.call_status) ? CLI_USAGE : rc;
    }
    if (r == SUPPORT_TIME_DEVICE)
        return cli_error(cmd, CLI_FAILED, "%s failed on the device: OpenCL error %d", what, st.cl_error);
    *t = (bench_timing){st.median_ms, st.min_ms, st.max_ms, c.temp_bytes, st.host_timer};
    return CLI_OK;
}

void bench_csv_string(const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; ++s) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

int bench_run_open(bench_run *run, const char *cmd, const char *device, long repeat, bool json) {
    memset(run, 0, sizeof *run);
    /* Profiling on: the times come from the device's own event timestamps. */
    int rc = cli_open_context(cmd, device, true, &run->ctx);
    if (rc) return rc;
    clattn_context_device_info(run->ctx, &run->info);
    run->times = malloc((size_t)repeat * sizeof *run->times);
    run->json = json ? cJSON_CreateArray() : NULL;
    if (!run->times || (json && !run->json))
        return bench_run_close(run, cmd, cli_error(cmd, CLI_FAILED, "out of host memory"), 0);
    return CLI_OK;
}

int bench_run_close(bench_run *run, const char *cmd, int rc, size_t failed_checks) {
    if (run->json && rc == CLI_OK) {
        char *text = cJSON_Print(run->json);
        if (text)
            printf("%s\n", text);
        else
            rc = cli_error(cmd, CLI_FAILED, "out of host memory formatting JSON");
        free(text);
    }
    if (rc == CLI_OK && failed_checks)
        rc = cli_error(cmd, CLI_FAILED, "%zu measurement(s) gave an output outside the reference's tolerance",
                       failed_checks);
    cJSON_Delete(run->json);
    free(run->times);
    clattn_context_free(run->ctx);
    memset(run, 0, sizeof *run);
    return rc;
}
