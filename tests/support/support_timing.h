// SPDX-License-Identifier: Apache-2.0
/* Device timing of repeated calls, shared by `clattn bench` and the workers of `clattn tune`: warm-up calls, then
 * timed calls measured with OpenCL profiling events from a marker enqueued just before each call to the completion
 * of the event it returns, so that a call made of several kernels (and CLBlast's GEMMs) is timed whole. */
#ifndef CLATTN_SUPPORT_TIMING_H
#define CLATTN_SUPPORT_TIMING_H

#include <stdbool.h>

#include "clattn.h"

/* One call: enqueues the work on `queue` and returns the event of its completion in *done. Returns 0, or a nonzero
 * code of its own (a clattn_status, a CLBlast status) that support_time_calls hands back. */
typedef int (*support_call_fn)(void *user, cl_command_queue queue, cl_event *done);

typedef enum support_time_result {
    SUPPORT_TIME_OK = 0,
    SUPPORT_TIME_CALL,   /* a call failed: its code is in call_status */
    SUPPORT_TIME_DEVICE, /* the device failed the work, a marker, or the profiling: cl_error */
} support_time_result;

typedef struct support_timing {
    double median_ms, min_ms, max_ms;
    bool host_timer; /* no profiling information: the host clock around each blocking call */
    int call_status; /* SUPPORT_TIME_CALL: the call's code */
    cl_int cl_error; /* SUPPORT_TIME_DEVICE: the OpenCL error */
    bool timed_run;  /* the failure came in a timed call, not a warm-up one */
} support_timing;

/* Runs `warmup` untimed and `repeat` (at least 1) timed calls on `queue`, waiting for each; `times` has room for
 * `repeat` values and holds them sorted on return. Where the device gives no profiling information the host clock
 * stands in if `allow_host_timer`, else that is SUPPORT_TIME_DEVICE with CL_PROFILING_INFO_NOT_AVAILABLE. */
support_time_result support_time_calls(cl_command_queue queue, long warmup, long repeat, bool allow_host_timer,
                                       support_call_fn call, void *user, double *times, support_timing *t);

#endif
