// SPDX-License-Identifier: Apache-2.0
/* Fault injection: every device operation of an attention call (temporary allocations, kernel launches, barriers,
 * CLBlast calls) is made to fail in turn, as a driver out of memory or resources would. Each failure must come back
 * as a clean status with a message, leave no temporary buffer alive, and leave the context usable: the same call
 * then succeeds and matches the reference. */
#include "sdpa_case.h"

#include "internal.h"

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

/* Fails operation 1, 2, 3, ... of the call until a run gets through with the fault unused; returns how many
 * operations the call has. */
static int fail_each_step(const sdpa_case *c) {
    char err[2048];
    int steps = 0;
    for (long n = 1; n < 200; ++n) {
        cla_fault_inject(ctx, n);
        int rc = sdpa_case_check(ctx, c, err, sizeof err);
        bool fault_used = ctx->fault_countdown == 0;
        cla_fault_inject(ctx, 0);
        clFinish(clattn_context_cl_queue(ctx));
        if (ctx->live_temps != 0) fail_msg("step %ld: %ld temporary buffers left alive", n, ctx->live_temps);
        if (!fault_used) {
            if (rc != 0) fail_msg("run without a fault failed: %s", err);
            return steps;
        }
        ++steps;
        if (rc == 0) fail_msg("step %ld failed on purpose but the call reported success", n);
        const char *why = clattn_context_last_error(ctx);
        if (!strstr(err, "CL_OUT_OF_RESOURCES") && !strstr(err, "CL_MEM_OBJECT_ALLOCATION_FAILURE") &&
            !strstr(err, "CLATTN_ERROR_CLBLAST"))
            fail_msg("step %ld: unexpected failure: %s", n, err);
        if (!*why) fail_msg("step %ld: no message in clattn_context_last_error", n);
        /* The context is still usable. */
        if (sdpa_case_check(ctx, c, err, sizeof err) != 0) fail_msg("after failed step %ld: %s", n, err);
    }
    fail_msg("the call never got through");
    return steps;
}

static void fused_call(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 1, 1, 9, 20, 16);
    c.want_lse = true;
    assert_true(fail_each_step(&c) >= 1);
}

static void fused_call_with_key_splits(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 1, 1, 1, 2048, 16);
    c.want_lse = true;
    /* workspace, split kernel, combine kernel */
    assert_true(fail_each_step(&c) >= 3);
}

static void unfused_call(void **state) {
    (void)state;
    sdpa_case c;
    sdpa_case_init(&c);
    c.impl = CLATTN_IMPL_UNFUSED;
    c.dtype = CLATTN_DTYPE_F16;
    c.batch = 2;
    c.q_heads = 2;
    c.kv_heads = 1;
    c.q_len = 9;
    c.kv_len = 20;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.want_lse = true;
    c.want_weights = true;
    /* temporaries, packs, barriers, GEMMs, softmax, write-out */
    assert_true(fail_each_step(&c) >= 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fused_call),
        cmocka_unit_test(fused_call_with_key_splits),
        cmocka_unit_test(unfused_call),
    };
    return cmocka_run_group_tests_name("faults", tests, setup, teardown);
}
