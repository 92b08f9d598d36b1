// SPDX-License-Identifier: Apache-2.0
/* Fault injection: every device operation of an attention call (temporary allocations, kernel launches, barriers,
 * CLBlast calls) is made to fail in turn, as a driver out of memory or resources would. Each failure must come back
 * as a clean status with a message, leave no temporary buffer alive, and leave the context usable: the same call
 * then succeeds and matches the reference. */
#include "fault_steps.h"
#include "sdpa_case.h"

#include "internal.h"

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

static int check_case(clattn_context *c_ctx, const void *c, char *err, size_t size) {
    return sdpa_case_check(c_ctx, c, err, size);
}

/* Every device operation of the call fails in turn (fault_steps.h); returns how many operations the call has. */
static int fail_each_sdpa_step(const sdpa_case *c) {
    return fail_each_step(ctx, check_case, c, 200, true);
}

static void fused_call(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 1, 1, 9, 20, 16);
    c.want_lse = true;
    assert_true(fail_each_sdpa_step(&c) >= 1);
}

static void fused_call_with_key_splits(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 1, 1, 1, 2048, 16);
    c.want_lse = true;
    /* workspace, split kernel, combine kernel */
    assert_true(fail_each_sdpa_step(&c) >= 3);
}

static void unfused_call(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_UNFUSED, 2, 2, 1, 9, 20, 16);
    c.dtype = CLATTN_DTYPE_F16;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.want_lse = c.want_weights = true;
    /* temporaries, packs, barriers, GEMMs, softmax, write-out */
    assert_true(fail_each_sdpa_step(&c) >= 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fused_call),
        cmocka_unit_test(fused_call_with_key_splits),
        cmocka_unit_test(unfused_call),
    };
    return cmocka_run_group_tests_name("faults", tests, setup, teardown);
}
