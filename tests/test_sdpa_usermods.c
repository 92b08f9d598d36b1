// SPDX-License-Identifier: Apache-2.0
/* The caller's score_mod and mask_mod (OpenCL C expressions compiled into the fused kernels). The double reference
 * cannot run OpenCL C, so each mod is checked against the built-in feature it reproduces, which test_sdpa_mods and
 * test_sdpa check against the reference: softcap, ALiBi (slopes from a mod buffer), a sliding window, causal
 * masking, and a document mask (ids from two int buffers, also reading b and h) against the same bool mask tensor,
 * on the cpu (row and block shapes), tiled and flash variants. Then the errors: expressions that do not compile
 * (BUILD_FAILED, with the expression in the message), characters that could escape the expression, bad mod
 * buffers, and the paths that cannot run mods; outputs untouched in each. --tiny runs one call of both mods on
 * every variant, for Oclgrind. */
#include "test_util.h"

#include "support_buffers.h"
#include "support_random.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

enum { B = 2, HQ = 2, HK = 1, LQ = 13, LK = 29, D = 16, POISON = 0x7f };
#define OUT_ELEMS ((size_t)B * HQ * LQ * D)

typedef struct inputs {
    cl_mem q, k, v;
} inputs;

static clattn_tensor tensor4(cl_mem m, size_t b, size_t h, size_t l, size_t d) {
    clattn_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = m;
    t.dtype = CLATTN_DTYPE_F32;
    t.size[0] = b, t.size[1] = h, t.size[2] = l, t.size[3] = d;
    t.stride[3] = 1, t.stride[2] = d, t.stride[1] = l * d, t.stride[0] = h * l * d;
    return t;
}

static cl_mem upload(const void *host, size_t bytes) {
    cl_int err = CL_SUCCESS;
    cl_mem m = support_buffer(ctx, host, bytes, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static inputs make_inputs(unsigned seed) {
    inputs in;
    float *q = support_random_array((size_t)B * HQ * LQ * D, 2.0f, CLATTN_DTYPE_F32, &seed);
    float *k = support_random_array((size_t)B * HK * LK * D, 2.0f, CLATTN_DTYPE_F32, &seed);
    float *v = support_random_array((size_t)B * HK * LK * D, 2.0f, CLATTN_DTYPE_F32, &seed);
    in.q = upload(q, (size_t)B * HQ * LQ * D * sizeof(float));
    in.k = upload(k, (size_t)B * HK * LK * D * sizeof(float));
    in.v = upload(v, (size_t)B * HK * LK * D * sizeof(float));
    free(q);
    free(k);
    free(v);
    return in;
}

static void free_inputs(inputs *in) {
    clReleaseMemObject(in->q);
    clReleaseMemObject(in->k);
    clReleaseMemObject(in->v);
}

/* Runs one call into a poisoned output and returns its status; on success *host holds the output. */
static clattn_status run(const inputs *in, const clattn_sdpa_desc *d, float *host, cl_mem *out_keep) {
    cl_mem out = test_filled_buffer(ctx, OUT_ELEMS * sizeof(float), POISON);
    const clattn_tensor q = tensor4(in->q, B, HQ, LQ, D), k = tensor4(in->k, B, HK, LK, D),
                        v = tensor4(in->v, B, HK, LK, D), o = tensor4(out, B, HQ, LQ, D);
    clattn_status st = clattn_sdpa(ctx, d, &q, &k, &v, &o, NULL, 0, NULL, NULL);
    if (st == CLATTN_SUCCESS) {
        assert_int_equal(clFinish(clattn_context_cl_queue(ctx)), CL_SUCCESS);
        assert_int_equal(support_read_storage(ctx, out, host, OUT_ELEMS, CLATTN_DTYPE_F32), CL_SUCCESS);
    }
    if (out_keep)
        *out_keep = out;
    else
        clReleaseMemObject(out);
    return st;
}

/* The mod's output matches the built-in's within fp32 rounding, and neither left the poison anywhere. */
static void expect_same(const inputs *in, const clattn_sdpa_desc *mod, const clattn_sdpa_desc *builtin,
                        const char *what) {
    float *a = malloc(OUT_ELEMS * sizeof(float)), *b = malloc(OUT_ELEMS * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    assert_status(run(in, mod, a, NULL), CLATTN_SUCCESS);
    assert_status(run(in, builtin, b, NULL), CLATTN_SUCCESS);
    double worst = 0.0;
    for (size_t i = 0; i < OUT_ELEMS; ++i) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            fail_msg("%s: element %zu is %g (mod) / %g (built-in)", what, i, a[i], b[i]);
        const double e = fabs((double)a[i] - (double)b[i]);
        if (e > worst) worst = e;
    }
    /* Outputs are averages of values in [-2, 2]: an absolute bound of a few hundred ulp of 2 is fp32 rounding. */
    if (worst > 2e-5) fail_msg("%s: the mod differs from the built-in by %g", what, worst);
    free(a);
    free(b);
}

static const char *const variants[] = {
    "variant=cpu,rows=1,block_n=16",
    "variant=cpu,rows=8,block_n=8,splits=2", /* key splits merged by sdpa_combine */
    "variant=tiled,rows=1,block_n=8,wg=4,local=1",
    "variant=flash,block_n=4,wg=4",
    "variant=decode,block_n=8,wg=4", /* decode shapes only; flash past 16 packed rows */
};

static void mods_match_builtins(void **state) {
    (void)state;
    inputs in = make_inputs(7);
    const float slopes[HQ] = {0.25f, 0.0625f};
    cl_mem slope_buf = upload(slopes, sizeof slopes);
    /* Documents: queries and keys cut into runs of different lengths, so that some rows see one key only. */
    int32_t qdoc[LQ], kdoc[LK];
    for (int i = 0; i < LQ; ++i) qdoc[i] = i / 4;
    for (int j = 0; j < LK; ++j) kdoc[j] = j / 8;
    cl_mem qdoc_buf = upload(qdoc, sizeof qdoc), kdoc_buf = upload(kdoc, sizeof kdoc);
    uint8_t *bools = malloc((size_t)B * HQ * LQ * LK);
    assert_non_null(bools);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < HQ; ++h)
            for (int i = 0; i < LQ; ++i)
                for (int j = 0; j < LK; ++j)
                    bools[((b * HQ + h) * LQ + i) * LK + j] = qdoc[i] == kdoc[j] && (j + b + 2 * h) % 5 != 0;
    cl_mem mask_buf = upload(bools, (size_t)B * HQ * LQ * LK);

    for (size_t vi = 0; vi < sizeof variants / sizeof *variants; ++vi) {
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", variants[vi]), CLATTN_SUCCESS);
        clattn_sdpa_desc mod, builtin;

        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.score_mod = "30.0f * tanh(score / 30.0f)";
        builtin.softcap = 30.0f;
        expect_same(&in, &mod, &builtin, "softcap");

        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.score_mod = "score - slopes[h] * (float)abs(q_idx - kv_idx)";
        mod.mod_buffers[0] = (clattn_mod_buffer){"slopes", slope_buf, CLATTN_MOD_F32, HQ};
        builtin.alibi_slopes = tensor4(slope_buf, 1, HQ, 1, 1);
        expect_same(&in, &mod, &builtin, "alibi");

        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.mask_mod = "q_idx - kv_idx <= 4 && kv_idx - q_idx <= 2";
        builtin.window_left = 4;
        builtin.window_right = 2;
        expect_same(&in, &mod, &builtin, "sliding window");

        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.mask_mod = "kv_idx <= q_idx";
        builtin.causal = CLATTN_CAUSAL_TOP_LEFT;
        expect_same(&in, &mod, &builtin, "causal");

        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.mask_mod = "qdoc[q_idx] == kdoc[kv_idx] && (kv_idx + b + 2 * h) % 5 != 0";
        mod.mod_buffers[0] = (clattn_mod_buffer){"qdoc", qdoc_buf, CLATTN_MOD_I32, LQ};
        mod.mod_buffers[1] = (clattn_mod_buffer){"kdoc", kdoc_buf, CLATTN_MOD_I32, LK};
        builtin.mask = tensor4(mask_buf, B, HQ, LQ, LK);
        builtin.mask.dtype = CLATTN_DTYPE_BOOL;
        expect_same(&in, &mod, &builtin, "document mask");

        /* Both at once, after a built-in mask: the mods apply only to the keys it leaves. */
        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.score_mod = "30.0f * tanh(score / 30.0f)";
        mod.mask_mod = "kv_idx >= q_idx - 3";
        mod.causal = builtin.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        builtin.softcap = 30.0f;
        builtin.window_left = 3 + (LK - LQ);
        expect_same(&in, &mod, &builtin, "softcap and window with causal");
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    free(bools);
    clReleaseMemObject(mask_buf);
    clReleaseMemObject(qdoc_buf);
    clReleaseMemObject(kdoc_buf);
    clReleaseMemObject(slope_buf);
    free_inputs(&in);
}

/* Keys that a mask_mod or a score_mod of -inf hides must contribute nothing even where their values are inf or NaN
 * (not 0 * inf): as with the bool mask, on tiles where every key is in range (the CPU block shape's inner tiles) as
 * on the others. */
static void masked_nonfinite_values(void **state) {
    (void)state;
    inputs in = make_inputs(11);
    const float bad[2] = {INFINITY, NAN};
    for (int b = 0; b < B; ++b)
        assert_int_equal(clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), in.v, CL_TRUE,
                                              ((size_t)b * HK * LK + 5) * D * sizeof(float), sizeof bad, bad, 0,
                                              NULL, NULL),
                         CL_SUCCESS);
    uint8_t *bools = malloc((size_t)LK);
    assert_non_null(bools);
    for (int j = 0; j < LK; ++j) bools[j] = j != 5;
    cl_mem mask_buf = upload(bools, LK);
    for (size_t vi = 0; vi < sizeof variants / sizeof *variants; ++vi) {
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", variants[vi]), CLATTN_SUCCESS);
        clattn_sdpa_desc mod, builtin;
        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        builtin.mask = tensor4(mask_buf, 1, 1, 1, LK);
        builtin.mask.dtype = CLATTN_DTYPE_BOOL;
        mod.mask_mod = "kv_idx != 5";
        expect_same(&in, &mod, &builtin, "mask_mod over non-finite values");
        clattn_sdpa_desc_init(&mod);
        mod.score_mod = "kv_idx == 5 ? -INFINITY : score";
        expect_same(&in, &mod, &builtin, "score_mod of -inf over non-finite values");
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    free(bools);
    clReleaseMemObject(mask_buf);
    free_inputs(&in);
}

/* A call that must fail with `want` before writing anything; the last error must contain `needle` (if given). */
static void expect_failure(const inputs *in, const clattn_sdpa_desc *d, clattn_status want, const char *needle) {
    float host[1];
    cl_mem out = NULL;
    assert_status(run(in, d, host, &out), want);
    test_expect_unwritten(ctx, out, OUT_ELEMS * sizeof(float), POISON);
    clReleaseMemObject(out);
    const char *msg = clattn_context_last_error(ctx);
    if (needle && !strstr(msg, needle)) fail_msg("the error does not mention '%s': %s", needle, msg);
}

static void compile_errors(void **state) {
    (void)state;
    inputs in = make_inputs(3);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.score_mod = "score + no_such_thing";
    expect_failure(&in, &d, CLATTN_ERROR_BUILD_FAILED, "no_such_thing");
    expect_failure(&in, &d, CLATTN_ERROR_BUILD_FAILED, "score_mod: score + no_such_thing");
    clattn_sdpa_desc_init(&d);
    d.mask_mod = "kv_idx <=";
    expect_failure(&in, &d, CLATTN_ERROR_BUILD_FAILED, "mask_mod: kv_idx <=");
    free_inputs(&in);
}

static void forbidden_expressions(void **state) {
    (void)state;
    inputs in = make_inputs(4);
    static const char *const bad[] = {
        "score; }", "score }", "{score", "#define x", "score\n",  "(score",
        "score)",   "a[1)",    "\"s\"",  "'a'",       "score \\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        clattn_sdpa_desc d;
        clattn_sdpa_desc_init(&d);
        if (i % 2)
            d.score_mod = bad[i];
        else
            d.mask_mod = bad[i];
        expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, i % 2 ? "score_mod" : "mask_mod");
    }
    free_inputs(&in);
}

static void bad_mod_buffers(void **state) {
    (void)state;
    inputs in = make_inputs(5);
    const float ones[4] = {1, 1, 1, 1};
    cl_mem buf = upload(ones, sizeof ones);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.score_mod = "score * w[0]";
    d.mod_buffers[0] = (clattn_mod_buffer){"w", buf, CLATTN_MOD_F32, 5}; /* more than the buffer holds */
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "5 elements");
    d.mod_buffers[0] = (clattn_mod_buffer){"w", buf, (clattn_mod_dtype)7, 4};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_DTYPE, "dtype 7");
    d.mod_buffers[0] = (clattn_mod_buffer){"score", buf, CLATTN_MOD_F32, 4};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "taken");
    d.mod_buffers[0] = (clattn_mod_buffer){"2w", buf, CLATTN_MOD_F32, 4};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "identifier");
    d.mod_buffers[0] = (clattn_mod_buffer){"w", buf, CLATTN_MOD_F32, 0};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "count is 0");
    d.mod_buffers[0] = (clattn_mod_buffer){"w", buf, CLATTN_MOD_F32, 4};
    d.mod_buffers[1] = (clattn_mod_buffer){"w", buf, CLATTN_MOD_F32, 4};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "repeats");
    d.mod_buffers[0] = (clattn_mod_buffer){0};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "first NULL");
    clattn_sdpa_desc_init(&d);
    d.mod_buffers[0] = (clattn_mod_buffer){"w", buf, CLATTN_MOD_F32, 4};
    expect_failure(&in, &d, CLATTN_ERROR_INVALID_ARGUMENT, "neither");
    clReleaseMemObject(buf);
    free_inputs(&in);
}

/* Mods run in the fused kernels only: an explicit UNFUSED and the weights (unfused only) are refused. */
static void unfused_refused(void **state) {
    (void)state;
    inputs in = make_inputs(6);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.mask_mod = "kv_idx <= q_idx";
    d.impl = CLATTN_IMPL_UNFUSED;
    expect_failure(&in, &d, CLATTN_ERROR_UNSUPPORTED, "CLATTN_IMPL_AUTO");
    clattn_sdpa_desc_init(&d);
    d.score_mod = "score";
    cl_mem w = test_filled_buffer(ctx, (size_t)B * HQ * LQ * LK * sizeof(float), POISON);
    d.weights = tensor4(w, B, HQ, LQ, LK);
    expect_failure(&in, &d, CLATTN_ERROR_UNSUPPORTED, "weights");
    test_expect_unwritten(ctx, w, (size_t)B * HQ * LQ * LK * sizeof(float), POISON);
    clReleaseMemObject(w);
    free_inputs(&in);
}

/* Head dims past the fused kernels' 576 would go unfused, which has no mods: AUTO refuses them rather than dropping
 * the mods (on a GPU, AUTO runs mods fused even past 256, where calls without mods go unfused). */
static void wide_heads_refused(void **state) {
    (void)state;
    enum { WD = 600 };
    cl_mem qb = test_filled_buffer(ctx, (size_t)WD * 2 * sizeof(float), 0);
    cl_mem out = test_filled_buffer(ctx, (size_t)WD * 2 * sizeof(float), POISON);
    const clattn_tensor q = tensor4(qb, 1, 1, 2, WD), o = tensor4(out, 1, 1, 2, WD);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.mask_mod = "kv_idx <= q_idx";
    assert_status(clattn_sdpa(ctx, &d, &q, &q, &q, &o, NULL, 0, NULL, NULL), CLATTN_ERROR_UNSUPPORTED);
    assert_non_null(strstr(clattn_context_last_error(ctx), "head dims up to"));
    test_expect_unwritten(ctx, out, (size_t)WD * 2 * sizeof(float), POISON);
    clReleaseMemObject(qb);
    clReleaseMemObject(out);
}

/* --tiny, for Oclgrind (tests/oclgrind_run.sh: data races, uninitialised reads; CTest oclgrind_usermods): one call
 * per fused variant with both expressions and both buffer dtypes at once, an ALiBi score_mod reading float slopes
 * and a document mask_mod reading one int buffer of query then key ids, against the built-in ALiBi and the same
 * bool mask. */
static void tiny_every_variant(void **state) {
    (void)state;
    inputs in = make_inputs(9);
    const float slopes[HQ] = {0.5f, 0.125f};
    cl_mem slope_buf = upload(slopes, sizeof slopes);
    int32_t doc[LQ + LK];
    for (int i = 0; i < LQ; ++i) doc[i] = i / 5;
    for (int j = 0; j < LK; ++j) doc[LQ + j] = j / 11;
    cl_mem doc_buf = upload(doc, sizeof doc);
    uint8_t *bools = malloc((size_t)B * HQ * LQ * LK);
    assert_non_null(bools);
    for (size_t r = 0; r < (size_t)B * HQ * LQ; ++r)
        for (int j = 0; j < LK; ++j) bools[r * LK + j] = doc[r % LQ] == doc[LQ + j];
    cl_mem mask_buf = upload(bools, (size_t)B * HQ * LQ * LK);
    char mask_expr[64];
    snprintf(mask_expr, sizeof mask_expr, "doc[q_idx] == doc[%d + kv_idx]", LQ);
    /* USERMODS_SPLITS=0 or 1 runs the variants without or with key splits alone: Oclgrind 21.10's
     * uninitialised-value checker loses track of the split workspace that sdpa_combine reads (as in
     * test_oclgrind_kernels --splits), so CTest runs the split variant under the race and API checks alone
     * (tests/CMakeLists.txt). */
    const char *splits = getenv("USERMODS_SPLITS");
    for (size_t vi = 0; vi < sizeof variants / sizeof *variants; ++vi) {
        if (splits && (strstr(variants[vi], "splits=") != NULL) != (atoi(splits) != 0)) continue;
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", variants[vi]), CLATTN_SUCCESS);
        clattn_sdpa_desc mod, builtin;
        clattn_sdpa_desc_init(&mod);
        clattn_sdpa_desc_init(&builtin);
        mod.score_mod = "score - slopes[h] * (float)abs(q_idx - kv_idx)";
        mod.mask_mod = mask_expr;
        mod.mod_buffers[0] = (clattn_mod_buffer){"slopes", slope_buf, CLATTN_MOD_F32, HQ};
        mod.mod_buffers[1] = (clattn_mod_buffer){"doc", doc_buf, CLATTN_MOD_I32, LQ + LK};
        builtin.alibi_slopes = tensor4(slope_buf, 1, HQ, 1, 1);
        builtin.mask = tensor4(mask_buf, B, HQ, LQ, LK);
        builtin.mask.dtype = CLATTN_DTYPE_BOOL;
        expect_same(&in, &mod, &builtin, variants[vi]);
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    free(bools);
    clReleaseMemObject(mask_buf);
    clReleaseMemObject(doc_buf);
    clReleaseMemObject(slope_buf);
    free_inputs(&in);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tiny[] = {cmocka_unit_test(tiny_every_variant)};
    if (argc > 1 && strcmp(argv[1], "--tiny") == 0)
        return cmocka_run_group_tests_name("sdpa_usermods_tiny", tiny, setup, teardown);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forbidden_expressions), cmocka_unit_test(bad_mod_buffers),
        cmocka_unit_test(unfused_refused),       cmocka_unit_test(wide_heads_refused),
        cmocka_unit_test(compile_errors),        cmocka_unit_test(mods_match_builtins),
        cmocka_unit_test(tiny_every_variant),    cmocka_unit_test(masked_nonfinite_values),
    };
    return cmocka_run_group_tests_name("sdpa_usermods", tests, setup, teardown);
}
