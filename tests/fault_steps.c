// SPDX-License-Identifier: Apache-2.0
/* Fault injection for the tests of whole calls: see fault_steps.h. */
#include "fault_steps.h"

#include "internal.h"

int fail_each_step(clattn_context *ctx, fault_call call, const void *arg, long max_steps, bool need_message) {
    char err[2048];
    for (long n = 1; n < max_steps; ++n) {
        cla_fault_inject(ctx, n);
        int rc = call(ctx, arg, err, sizeof err);
        bool used = ctx->fault_countdown == 0;
        cla_fault_inject(ctx, 0);
        clFinish(clattn_context_cl_queue(ctx));
        if (ctx->live_temps != 0) fail_msg("step %ld: %ld temporary buffers left alive", n, ctx->live_temps);
        if (!used) {
            if (rc != 0) fail_msg("the run without a fault failed: %s", err);
            return (int)n - 1;
        }
        if (rc == 0) fail_msg("step %ld failed on purpose but the call reported success", n);
        if (!strstr(err, "CL_OUT_OF_RESOURCES") && !strstr(err, "CL_MEM_OBJECT_ALLOCATION_FAILURE") &&
            !strstr(err, "CLATTN_ERROR_CLBLAST"))
            fail_msg("step %ld: unexpected failure: %s", n, err);
        if (need_message && !*clattn_context_last_error(ctx))
            fail_msg("step %ld: no message in clattn_context_last_error", n);
        /* The context is still usable. */
        if (call(ctx, arg, err, sizeof err) != 0) fail_msg("after the failed step %ld: %s", n, err);
    }
    fail_msg("the call never got through");
    return 0;
}
