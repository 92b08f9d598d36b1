/* Every kernel variant on tiny shapes, meant to run under Oclgrind (tests/oclgrind_run.sh) with data-race,
 * uninitialised-memory and API checks: the GPU shape (local-memory tiles, barriers), the CPU shape, key splits with
 * their combine step, the unfused path's kernels, every dtype and mask kind. Results are also checked against the
 * reference, so the program is meaningful on its own. */
#include "sdpa_case.h"

#include <clblast_c.h>

static clattn_context *ctx;

static int setup(void **state) {
    (void)state;
    ctx = test_context();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    clattn_context_free(ctx);
    unsetenv("CLATTN_FUSED_PARAMS");
    /* CLBlast keeps its programs in a process-wide cache that would otherwise be released after Oclgrind (or the
     * driver) has shut down at exit. */
    CLBlastClearCache();
    return 0;
}

static void tiny_cases(const char *params, clattn_impl impl) {
    if (params)
        setenv("CLATTN_FUSED_PARAMS", params, 1);
    else
        unsetenv("CLATTN_FUSED_PARAMS");
    for (int variant = 0; variant < 4; ++variant) {
        sdpa_case c;
        sdpa_case_init(&c);
        c.impl = impl;
        c.batch = 1 + (variant & 1);
        c.q_heads = 2;
        c.kv_heads = variant == 2 ? 1 : 2;
        c.q_len = 5 + variant;
        c.kv_len = 11 + variant * 3;
        c.head_dim = variant == 3 ? 3 : 8;
        c.dtype = (clattn_dtype)(variant % 3);
        c.layout = variant & 1;
        c.offset = (size_t)variant;
        c.causal = (clattn_causal)(variant % 3);
        c.mask_kind = variant % 3;
        c.mask_bcast_heads = variant == 1;
        c.mask_fill_prob = 0.3f;
        c.want_lse = true;
        c.want_weights = impl == CLATTN_IMPL_UNFUSED && variant >= 2;
        static const int32_t kl[2] = {7, 3};
        if (variant == 3) {
            c.key_lengths = kl;
            c.window_left = 4;
            c.window_right = 1;
        }
        c.seed = (unsigned)variant;
        sdpa_case_run(ctx, &c, NULL);
    }
}

static void fused_gpu_shape(void **state) {
    (void)state;
    tiny_cases("rows=1,local=1,wg=8,block_n=4", CLATTN_IMPL_FUSED);
}

static void fused_cpu_shape(void **state) {
    (void)state;
    tiny_cases("rows=3,local=0,wg=4,block_n=4", CLATTN_IMPL_FUSED);
}

static void fused_key_splits(void **state) {
    (void)state;
    tiny_cases("rows=1,local=1,wg=4,block_n=4,splits=3", CLATTN_IMPL_FUSED);
    tiny_cases("rows=2,local=0,block_n=4,splits=2", CLATTN_IMPL_FUSED);
}

static void fused_defaults(void **state) {
    (void)state;
    tiny_cases(NULL, CLATTN_IMPL_FUSED);
}

static void unfused(void **state) {
    (void)state;
    tiny_cases(NULL, CLATTN_IMPL_UNFUSED);
}

/* With --splits, only the key-split variants and the unfused path run. Oclgrind 21.10's uninitialised-value checker
 * reports reads of data that an earlier kernel wrote in these two cases: the split workspace read by sdpa_combine
 * and the scores CLBlast's GEMM wrote for masked_softmax, although every element is written first (a
 * sentinel-filled buffer read back on PoCL after the first kernel has none left). CTest runs these under the race
 * and API checks alone. */
int main(int argc, char **argv) {
    const struct CMUnitTest most[] = {
        cmocka_unit_test(fused_gpu_shape),
        cmocka_unit_test(fused_cpu_shape),
        cmocka_unit_test(fused_defaults),
    };
    const struct CMUnitTest splits[] = {cmocka_unit_test(fused_key_splits), cmocka_unit_test(unfused)};
    if (argc > 1 && strcmp(argv[1], "--splits") == 0)
        return cmocka_run_group_tests_name("oclgrind_kernels_splits", splits, setup, teardown);
    return cmocka_run_group_tests_name("oclgrind_kernels", most, setup, teardown);
}
