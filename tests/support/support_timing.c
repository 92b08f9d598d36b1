// SPDX-License-Identifier: Apache-2.0
/* Device timing of repeated calls (see support_timing.h). */
#define _POSIX_C_SOURCE 200809L
#include "support_timing.h"

#include <string.h>
#include <time.h>

#include "support_compare.h"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Device time from the end of the marker to the end of the call's event in ms; negative without profiling. */
static double event_ms(cl_event start, cl_event done) {
    cl_ulong t0 = 0, t1 = 0;
    if (clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL) != CL_SUCCESS ||
        clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) != CL_SUCCESS || t1 < t0)
        return -1.0;
    return (double)(t1 - t0) * 1e-6;
}

/* One call, timed into *ms when `timed`. */
static support_time_result one_call(cl_command_queue queue, bool timed, bool allow_host_timer, support_call_fn call,
                                    void *user, double *ms, support_timing *t) {
    cl_event start = NULL, done = NULL;
    if (timed && !t->host_timer) {
        cl_int err = clEnqueueMarkerWithWaitList(queue, 0, NULL, &start);
        if (err != CL_SUCCESS) {
            t->cl_error = err;
            return SUPPORT_TIME_DEVICE;
        }
    }
    const double t0 = seconds_now();
    const int st = call(user, queue, &done);
    if (st != 0) {
        if (start) clReleaseEvent(start);
        t->call_status = st;
        return SUPPORT_TIME_CALL;
    }
    cl_int err = done ? clWaitForEvents(1, &done) : CL_INVALID_EVENT;
    const double t1 = seconds_now();
    if (err == CL_SUCCESS && timed) {
        *ms = start ? event_ms(start, done) : -1.0;
        if (*ms < 0.0 && allow_host_timer) {
            /* No profiling on this device: the host clock around a blocking call is the best left. */
            t->host_timer = true;
            *ms = (t1 - t0) * 1e3;
        } else if (*ms < 0.0) {
            err = CL_PROFILING_INFO_NOT_AVAILABLE;
        }
    }
    if (start) clReleaseEvent(start);
    if (done) clReleaseEvent(done);
    t->cl_error = err;
    return err == CL_SUCCESS ? SUPPORT_TIME_OK : SUPPORT_TIME_DEVICE;
}

support_time_result support_time_calls(cl_command_queue queue, long warmup, long repeat, bool allow_host_timer,
                                       support_call_fn call, void *user, double *times, support_timing *t) {
    memset(t, 0, sizeof *t);
    for (long n = 0; n < warmup + repeat; ++n) {
        const bool timed = n >= warmup;
        double ms = 0.0;
        const support_time_result r = one_call(queue, timed, allow_host_timer, call, user, &ms, t);
        if (r != SUPPORT_TIME_OK) {
            t->timed_run = timed;
            return r;
        }
        if (timed) times[n - warmup] = ms;
    }
    const size_t n = repeat > 0 ? (size_t)repeat : 1;
    t->median_ms = support_sort_median(times, n);
    t->min_ms = times[0];
    t->max_ms = times[n - 1];
    return SUPPORT_TIME_OK;
}
