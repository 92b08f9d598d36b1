// SPDX-License-Identifier: Apache-2.0
/* Device limits: attention on a device with a small maximum work-group size and little local memory must choose
 * parameters that fit (or fail with CLATTN_ERROR_DEVICE_LIMIT), never launch something the device refuses. Meant to
 * run under Oclgrind with --max-wgsize and --local-mem-size set small (CTest's oclgrind_device_limits); on its own
 * it checks the same calls on whatever device it gets. The expected limits come from DEVICE_LIMITS_WG and
 * DEVICE_LIMITS_LOCAL, so that the test knows it really runs on the restricted device. */
#include "sdpa_case.h"

#include <clblast_c.h>

static clattn_context *ctx;

static int setup(void **state) {
    (void)state;
    unsetenv("CLATTN_FUSED_PARAMS"); /* the library's own choice is what is under test */
    ctx = test_context();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    clattn_context_free(ctx);
    CLBlastClearCache(); /* before Oclgrind shuts down at exit */
    return 0;
}

static void device_reports_the_restricted_limits(void **state) {
    (void)state;
    clattn_device_info info;
    assert_status(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    const char *wg = getenv("DEVICE_LIMITS_WG"), *local = getenv("DEVICE_LIMITS_LOCAL");
    if (wg) assert_int_equal(info.max_work_group_size, strtoull(wg, NULL, 10));
    if (local) assert_int_equal(info.local_mem_bytes, strtoull(local, NULL, 10));
}

/* One case per head dim: with 2 KiB of local memory, 8 leaves room for 16-key tiles, 64 for 2-key tiles, and 256
 * (2 KiB per key) for none, so the tiles must move to global memory. */
static void run_case(size_t head_dim, clattn_impl impl, clattn_causal causal) {
    sdpa_case c = sdpa_case_of(impl, 1, 2, 1, 19, 21, head_dim); /* Lq 19: more rows than a 16-item work-group */
    c.causal = causal;
    c.want_lse = true;
    c.seed = (unsigned)head_dim;
    sdpa_case_run(ctx, &c, NULL);
}

static void fused_fits_small_work_groups_and_local_memory(void **state) {
    (void)state;
    run_case(8, CLATTN_IMPL_FUSED, CLATTN_CAUSAL_NONE);
    run_case(64, CLATTN_IMPL_FUSED, CLATTN_CAUSAL_BOTTOM_RIGHT);
}

static void fused_head_dim_beyond_local_memory_reads_global(void **state) {
    (void)state;
    run_case(256, CLATTN_IMPL_FUSED, CLATTN_CAUSAL_NONE);
}

/* The unfused path's own softmax kernel narrows its work-group to the device; its GEMMs are CLBlast's, whose tuned
 * work-group shapes (64 items for an unknown device) do not adapt, so on a 16-item device the call must fail with a
 * clear CLATTN_ERROR_DEVICE_LIMIT, and the context must stay usable. */
static void unfused_fits_or_reports_device_limit(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_UNFUSED, 1, 2, 1, 19, 21, 8);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.want_weights = true;
    char err[4096] = "";
    if (sdpa_case_check(ctx, &c, err, sizeof err) != 0) {
        if (!strstr(err, "CLATTN_ERROR_DEVICE_LIMIT") || !strstr(err, "CLATTN_IMPL_FUSED"))
            fail_msg("unfused attention failed without a device-limit status: %s", err);
        run_case(8, CLATTN_IMPL_FUSED, CLATTN_CAUSAL_TOP_LEFT);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_reports_the_restricted_limits),
        cmocka_unit_test(fused_fits_small_work_groups_and_local_memory),
        cmocka_unit_test(fused_head_dim_beyond_local_memory_reads_global),
        cmocka_unit_test(unfused_fits_or_reports_device_limit),
    };
    return cmocka_run_group_tests_name("device_limits", tests, setup, teardown);
}
