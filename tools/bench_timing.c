/* Timing shared by the `clattn bench` operations (see bench_timing.h). */
#define _POSIX_C_SOURCE 200809L
#include "bench_timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Device time of one call in ms: from a marker enqueued just before it to the completion of the event the call
 * returns, so a call made of several kernels (and CLBlast's GEMMs) is timed whole, gaps included. Negative when
 * the device gives no profiling information. */
static double event_ms(cl_event start, cl_event done) {
    cl_ulong t0 = 0, t1 = 0;
    if (clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL) != CL_SUCCESS ||
        clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) != CL_SUCCESS || t1 < t0)
        return -1.0;
    return (double)(t1 - t0) * 1e-6;
}

int bench_time_calls(const char *cmd, const char *what, clattn_context *ctx, long warmup, long repeat,
                     bench_call_fn call, void *user, double *times, bench_timing *t) {
    cl_command_queue queue = clattn_context_cl_queue(ctx);
    memset(t, 0, sizeof *t);
    for (long n = 0; n < warmup + repeat; ++n) {
        const bool timed = n >= warmup;
        cl_event start = NULL, done = NULL;
        cl_int err = CL_SUCCESS;
        if (timed && !t->host_timer) {
            err = clEnqueueMarkerWithWaitList(queue, 0, NULL, &start);
            if (err != CL_SUCCESS) return cli_error(cmd, CLI_FAILED, "enqueueing a timing marker failed: %d", err);
        }
        double t0 = seconds_now();
        clattn_status st = call(user, queue, &done);
        if (st != CLATTN_SUCCESS) {
            if (start) clReleaseEvent(start);
            int rc = cli_report_status(cmd, ctx, st, what);
            return cli_is_input_error(st) ? CLI_USAGE : rc;
        }
        err = clWaitForEvents(1, &done);
        double t1 = seconds_now();
        if (err == CL_SUCCESS && timed) {
            double ms = start ? event_ms(start, done) : -1.0;
            if (ms < 0.0) {
                /* No profiling on this device: the host clock around a blocking call is the best left. */
                t->host_timer = true;
                ms = (t1 - t0) * 1e3;
            }
            times[n - warmup] = ms;
        }
        if (start) clReleaseEvent(start);
        clReleaseEvent(done);
        if (err != CL_SUCCESS)
            return cli_error(cmd, CLI_FAILED, "%s failed on the device: OpenCL error %d", what, err);
        clattn_memory_stats mem;
        if (clattn_context_memory_stats(ctx, &mem) == CLATTN_SUCCESS && mem.last_call_bytes > t->temp_bytes)
            t->temp_bytes = mem.last_call_bytes;
    }
    qsort(times, (size_t)repeat, sizeof *times, compare_doubles);
    const size_t n = (size_t)repeat;
    t->min_ms = times[0];
    t->max_ms = times[n - 1];
    t->median_ms = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
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
