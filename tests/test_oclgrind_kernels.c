// SPDX-License-Identifier: Apache-2.0
/* Every kernel variant on tiny shapes, meant to run under Oclgrind (tests/oclgrind_run.sh) with data-race,
 * uninitialised-memory and API checks: the tiled kernel's GPU shape (local-memory tiles, barriers) and CPU shape,
 * the CPU variant's row and block shapes, the flash variant's shapes, key splits with their combine step, the
 * unfused path's kernels, every dtype and mask kind, the score modifiers, and inf/NaN at masked keys. Results are
 * also checked against the reference, so the program is meaningful on its own. The serving layouts and the KV
 * append kernel run under Oclgrind from their own programs' --tiny modes (tests/CMakeLists.txt: oclgrind_serving,
 * oclgrind_kv_append). */
#include "sdpa_case.h"
#include "seq2seq_case.h"

#include <clblast_c.h>
#include <math.h>

TEST_CONTEXT_SETUP(ctx);

static int teardown(void **state) {
    (void)state;
    clattn_context_free(ctx);
    unsetenv("CLATTN_FUSED_PARAMS");
    unsetenv("CLATTN_SEQ2SEQ_PARAMS");
    /* CLBlast keeps its programs in a process-wide cache that would otherwise be released after Oclgrind (or the
     * driver) has shut down at exit. */
    CLBlastClearCache();
    return 0;
}

static void tiny_cases(const char *params, clattn_impl impl) {
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", params), CLATTN_SUCCESS);
    for (int variant = 0; variant < 4; ++variant) {
        sdpa_case c = sdpa_case_of(impl, 1 + (variant & 1), 2, variant == 2 ? 1 : 2, 5 + variant, 11 + variant * 3,
                                   variant == 3 ? 3 : 8);
        c.dtype = (clattn_dtype)(variant % 3);
        c.layout = variant & 1;
        c.offset = (size_t)variant;
        c.causal = (clattn_causal)(variant % 3);
        c.mask_kind = variant % 3;
        c.mask_bcast_heads = variant == 1;
        /* The boolean mask broadcasts over batch and query rows by stride 0 ([B, Hq, Lq, Lk] viewed, [1, Hq, 1, Lk]
         * stored), so every work-item reads the same mask row. */
        c.mask_bcast_batch = c.mask_bcast_q = c.mask_stride0 = variant == 2;
        c.mask_fill_prob = 0.3f;
        c.want_lse = true;
        c.want_weights = impl == CLATTN_IMPL_UNFUSED && variant >= 2;
        static const int32_t kl[2] = {7, 3};
        if (variant == 3) { /* not causal: the window and ALiBi aligned bottom-right on their own */
            c.key_lengths = kl;
            c.window_left = 4;
            c.window_right = 1;
            c.window_align = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
        }
        /* The score modifiers: the sinks alone on one case (they touch only the end of a row), all three on
         * another (the per-score path too); the other two stay plain. */
        c.sinks = variant == 1 || variant == 3;
        c.softcap = variant == 3 ? 2.0f : 0.0f;
        c.alibi = variant == 3;
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
    tiny_cases("variant=cpu,rows=8,block_n=4,splits=3", CLATTN_IMPL_FUSED);
    tiny_cases("variant=cpu,rows=1,block_n=5,splits=2", CLATTN_IMPL_FUSED);
    tiny_cases("variant=flash,block_n=4,wg=4,splits=3", CLATTN_IMPL_FUSED);
    tiny_cases("variant=flash,rows=2,block_n=8,wg=8,splits=2", CLATTN_IMPL_FUSED);
    tiny_cases("variant=decode,block_n=8,wg=4,splits=2", CLATTN_IMPL_FUSED);
    tiny_cases("variant=decode,splits=3", CLATTN_IMPL_FUSED);
}

/* The CPU variant (kernels_cl/sdpa_fused_cpu.cl): its default shapes (the row shape for these short queries), the
 * block shape with one and two row vectors, and tiles that are not a multiple of its register blocks. */
static void fused_cpu_variant(void **state) {
    (void)state;
    tiny_cases("variant=cpu", CLATTN_IMPL_FUSED);
    tiny_cases("variant=cpu,rows=1,block_n=5", CLATTN_IMPL_FUSED);
    tiny_cases("variant=cpu,rows=8,block_n=5", CLATTN_IMPL_FUSED);
    tiny_cases("variant=cpu,rows=16,block_n=4", CLATTN_IMPL_FUSED);
}

/* The flash variant (kernels_cl/sdpa_flash.cl): its defaults for these shapes (GQA rows packed into one group),
 * groups of several row blocks with two rows per work-item, and the smallest tiles with four work-items to a row,
 * so that row blocks end inside a GQA group and tiles end inside the keys. */
static void fused_flash_variant(void **state) {
    (void)state;
    tiny_cases("variant=flash", CLATTN_IMPL_FUSED);
    tiny_cases("variant=flash,rows=2,block_n=8,wg=8", CLATTN_IMPL_FUSED);
    tiny_cases("variant=flash,rows=1,block_n=4,wg=4", CLATTN_IMPL_FUSED);
    tiny_cases("variant=flash,rows=3,block_n=12,wg=12", CLATTN_IMPL_FUSED);
}

/* Runs the attention d describes on host arrays, with the fused kernel's parameters `params` (NULL: the
 * defaults). */
static void host_run(const char *params, const clattn_sdpa_host_desc *d, const float *q, const float *k,
                     const float *v, float *out) {
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", params), CLATTN_SUCCESS);
    assert_status(clattn_sdpa_host(ctx, d, q, k, v, out), CLATTN_SUCCESS);
}

/* Compares the rows of out with those of want; rows from nan_from on must be NaN instead. */
static void expect_rows(const char *params, const char *what, const float *out, const float *want, int n, int dim,
                        int nan_from) {
    for (int i = 0; i < n * dim; ++i) {
        const bool nan_row = i / dim >= nan_from;
        if (nan_row ? !isnan(out[i]) : !(fabsf(out[i] - want[i]) <= 1e-6f))
            fail_msg("[%s] %s: out[%d] = %g, want %s%g", params ? params : "defaults", what, i, out[i],
                     nan_row ? "NaN, not " : "", want[i]);
    }
}

/* A key that a row may not see contributes nothing to it, not 0 * v: NaN and inf in the keys and values of masked
 * keys leave the rows exactly as zeros there would, under a boolean mask (every tile partly masked) and on the
 * causal diagonal (where the rows that do see a NaN key turn NaN, as they must). */
static void masked_values_never_leak(const char *params) {
    enum { LQ = 13, LK = 37, D = 3, BAD = 20 };
    float q[LK * D], k[LK * D], v[LK * D], k0[LK * D], v0[LK * D], out[LK * D], out0[LK * D];
    uint8_t keep[LQ * LK];
    unsigned seed = 7;
    for (int i = 0; i < LK * D; ++i) {
        seed = seed * 1103515245u + 12345u;
        q[i] = (float)((seed >> 16) % 1000) / 250.0f - 2.0f;
        k[i] = k0[i] = (float)((seed >> 8) % 1000) / 250.0f - 2.0f;
        v[i] = v0[i] = (float)(seed % 997) / 250.0f - 2.0f;
    }
    clattn_sdpa_host_desc d;
    clattn_sdpa_host_desc_init(&d);
    d.batch = d.q_heads = d.kv_heads = 1;
    d.head_dim = D;
    d.impl = CLATTN_IMPL_FUSED;

    /* Causal, Lq = Lk: key BAD holds NaN, so rows from BAD on are NaN and the rows before are untouched. */
    for (int x = 0; x < D; ++x) {
        k[BAD * D + x] = v[BAD * D + x] = NAN;
        k0[BAD * D + x] = v0[BAD * D + x] = 0.0f;
    }
    d.q_len = d.kv_len = LK;
    d.causal = CLATTN_CAUSAL_TOP_LEFT;
    host_run(params, &d, q, k, v, out);
    host_run(params, &d, q, k0, v0, out0);
    expect_rows(params, "causal", out, out0, LK, D, BAD);

    /* Boolean mask: keys 3, BAD and 36 hidden from every row, others at random (never a whole row). */
    for (int i = 0; i < LQ; ++i)
        for (int j = 0; j < LK; ++j) {
            seed = seed * 1103515245u + 12345u;
            keep[i * LK + j] = j != 3 && j != BAD && j != 36 && (j == i || (seed >> 16) % 10 < 7);
        }
    for (int x = 0; x < D; ++x) {
        k[3 * D + x] = INFINITY;
        v[3 * D + x] = x == 1 ? -INFINITY : NAN;
        k[36 * D + x] = v[36 * D + x] = NAN;
        k0[3 * D + x] = v0[3 * D + x] = k0[36 * D + x] = v0[36 * D + x] = 0.0f;
    }
    d.q_len = LQ;
    d.causal = CLATTN_CAUSAL_NONE;
    d.bool_mask = keep;
    host_run(params, &d, q, k, v, out);
    host_run(params, &d, q, k0, v0, out0);
    expect_rows(params, "boolean mask", out, out0, LQ, D, LQ);
}

/* The decode variant (kernels_cl/sdpa_decode.cl) in one key split: its defaults for these shapes (every packed row
 * in one group), a group smaller than a value row with two keys a work-item, a row bound above the call's rows
 * (every work-item holds all 16 rows' columns, so three keys a work-item would exceed the register budget) and
 * three keys a work-item with 8 work-items (tiles end inside the keys); then masked keys' NaN and inf must not
 * leak. Its key splits are fused_key_splits' (sdpa_combine's reads of the split workspace are beyond
 * --uninitialized). */
static void fused_decode_variant(void **state) {
    (void)state;
    tiny_cases("variant=decode,splits=1", CLATTN_IMPL_FUSED);
    tiny_cases("variant=decode,block_n=8,wg=4,splits=1", CLATTN_IMPL_FUSED);
    tiny_cases("variant=decode,rows=16,block_n=16,wg=8,splits=1", CLATTN_IMPL_FUSED);
    tiny_cases("variant=decode,block_n=24,wg=8,splits=1", CLATTN_IMPL_FUSED);
    masked_values_never_leak("variant=decode,splits=1");
    masked_values_never_leak("variant=decode,block_n=8,wg=4,splits=1");
}

static void fused_masked_values(void **state) {
    (void)state;
    masked_values_never_leak(NULL);
    masked_values_never_leak("variant=tiled,rows=2,local=0,block_n=4");
    masked_values_never_leak("variant=cpu,rows=1,block_n=4");
    masked_values_never_leak("variant=cpu,rows=8,block_n=5");
    masked_values_never_leak("variant=cpu,rows=16,block_n=8");
    masked_values_never_leak("variant=flash");
    masked_values_never_leak("variant=flash,rows=2,block_n=4,wg=4");
}

static void fused_defaults(void **state) {
    (void)state;
    tiny_cases(NULL, CLATTN_IMPL_FUSED);
}

static void unfused(void **state) {
    (void)state;
    tiny_cases(NULL, CLATTN_IMPL_UNFUSED);
}

/* The fused additive kernel (kernels_cl/seq2seq.cl) on projections made on the host (its GEMMs are CLBlast's):
 * work-groups that share tiles through local memory with tiles not a multiple of the group and several rows, the
 * CPU shape, every storage dtype, both mask kinds, key lengths with an empty row, and weights in fp32 (written in
 * place) and fp16 (through the score scratch). */
static void seq2seq_additive(void **state) {
    (void)state;
    static const char *params[] = {"wg=4,block_n=6,rows=2,vec=4", "wg=1,block_n=5,rows=3,vec=8", NULL};
    static const int32_t kl[2] = {9, 0};
    for (int p = 0; p < 3; ++p) {
        /* The last is NULL: the device's defaults. */
        assert_status(clattn_context_set_kernel_params(ctx, "seq2seq_additive", params[p]), CLATTN_SUCCESS);
        for (int variant = 0; variant < 3; ++variant) {
            s2s_case c;
            s2s_case_init(&c);
            c.score = variant == 2 ? CLATTN_SCORE_CONCAT : CLATTN_SCORE_ADDITIVE;
            c.host_projection = true;
            c.batch = 2;
            c.q_len = 3 + variant;
            c.kv_len = 11 + variant;
            c.query_dim = 5;
            c.key_dim = 4;
            c.attn_dim = variant == 1 ? 9 : 8;
            c.value_dim = variant == 0 ? 0 : 3;
            c.dtype = (clattn_dtype)variant;
            c.bias = variant == 0;
            c.mask_kind = variant;
            c.mask_bcast = variant == 1;
            c.mask_fill_prob = 0.3f;
            c.key_lengths = variant == 2 ? kl : NULL;
            c.want_weights = true;
            c.weights_dtype = variant == 1 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
            c.offset = (size_t)variant;
            c.seed = (unsigned)(p * 3 + variant);
            s2s_case_run(ctx, &c);
        }
    }
    unsetenv("CLATTN_SEQ2SEQ_PARAMS");
}

/* With --splits, only the key-split variants and the unfused path run. Oclgrind 21.10's uninitialised-value checker
 * reports reads of data that an earlier kernel wrote in these two cases: the split workspace read by sdpa_combine
 * and the scores CLBlast's GEMM wrote for masked_softmax, although every element is written first (a
 * sentinel-filled buffer read back on PoCL after the first kernel has none left). CTest runs these under the race
 * and API checks alone. */
int main(int argc, char **argv) {
    const struct CMUnitTest most[] = {
        cmocka_unit_test(fused_gpu_shape),     cmocka_unit_test(fused_cpu_shape),
        cmocka_unit_test(fused_defaults),      cmocka_unit_test(fused_cpu_variant),
        cmocka_unit_test(fused_masked_values), cmocka_unit_test(seq2seq_additive),
        cmocka_unit_test(fused_flash_variant), cmocka_unit_test(fused_decode_variant),
    };
    /* CLATTN_TEST_FILTER (a cmocka pattern) runs some of the cases, to look at one kernel under Oclgrind. */
    if (getenv("CLATTN_TEST_FILTER")) cmocka_set_test_filter(getenv("CLATTN_TEST_FILTER"));
    const struct CMUnitTest splits[] = {cmocka_unit_test(fused_key_splits), cmocka_unit_test(unfused)};
    if (argc > 1 && strcmp(argv[1], "--splits") == 0)
        return cmocka_run_group_tests_name("oclgrind_kernels_splits", splits, setup, teardown);
    return cmocka_run_group_tests_name("oclgrind_kernels", most, setup, teardown);
}
