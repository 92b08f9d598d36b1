// SPDX-License-Identifier: Apache-2.0
/* The block mask (clattn_sdpa_desc.block_mask, FlexAttention's block_mask) against the double reference, with the
 * block mask expanded on the host into the boolean mask it stands for (and mask_mod's predicate where a flag is not
 * 2), on every fused variant: the cpu row and block shapes, tiled and flash, with key splits. Shapes whose lengths
 * are not multiples of the block sizes, block sizes smaller and larger than the kernels' tiles, broadcast block
 * masks, rows whose every block is 0 (zeros, lse -inf), GQA, causal, windows, key lengths, softcap, sinks, fp16.
 * Then the invalid arguments, each with its status and untouched outputs. */
#include "test_util.h"

#include "check_tolerance.h"
#include "reference.h"
#include "support_buffers.h"
#include "support_random.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

enum { POISON = 0x7f };

/* One case: the shape, the block mask's block sizes and broadcasting, its flags, and the other options. */
typedef struct bm_case {
    size_t b, hq, hkv, lq, lk, d;
    size_t bq, bk;
    bool bcast_b, bcast_h, bcast_q; /* the block mask has size 1 there */
    int pattern;                    /* 0 random 0/1/2 flags; 1 causal blocks (2 below the diagonal); 2 documents */
    const char *mask_mod;           /* NULL, "kv_idx <= q_idx" or "(kv_idx / 5) % 3 != 1" */
    clattn_causal causal;
    int64_t window_left;
    const int32_t *key_lengths;
    bool lse, sinks;
    float softcap;
    clattn_dtype dtype;
    unsigned seed;
} bm_case;

static bm_case case_of(size_t b, size_t hq, size_t hkv, size_t lq, size_t lk, size_t d, size_t bq, size_t bk) {
    bm_case c;
    memset(&c, 0, sizeof c);
    c.b = b, c.hq = hq, c.hkv = hkv, c.lq = lq, c.lk = lk, c.d = d, c.bq = bq, c.bk = bk;
    c.window_left = CLATTN_WINDOW_UNBOUNDED;
    c.lse = true;
    c.dtype = CLATTN_DTYPE_F32;
    c.seed = 11;
    return c;
}

static bool mod_keeps(const char *mod, size_t i, size_t j) {
    if (!mod) return true;
    if (strcmp(mod, "kv_idx <= q_idx") == 0) return j <= i;
    return (j / 5) % 3 != 1;
}

/* The flags, [B', H', NQ', NK'] with size 1 where broadcast. The first query block of batch item 0 (or of all when
 * broadcast) is all 0, so that its rows are fully masked. */
static int32_t *make_flags(const bm_case *c, size_t fs[4], unsigned *seed) {
    fs[0] = c->bcast_b ? 1 : c->b;
    fs[1] = c->bcast_h ? 1 : c->hq;
    fs[2] = c->bcast_q ? 1 : (c->lq + c->bq - 1) / c->bq;
    fs[3] = (c->lk + c->bk - 1) / c->bk;
    const size_t n = fs[0] * fs[1] * fs[2] * fs[3];
    int32_t *f = malloc(n * sizeof *f);
    assert_non_null(f);
    for (size_t x = 0; x < n; ++x) {
        const size_t kb = x % fs[3], qb = x / fs[3] % fs[2];
        if (c->pattern == 1) { /* causal: blocks wholly below the diagonal are full, the diagonal partial */
            const size_t q_last = (qb + 1) * c->bq - 1, q_first = qb * c->bq;
            f[x] = kb * c->bk > q_last ? 0 : (kb + 1) * c->bk - 1 <= q_first ? 2 : 1;
        } else if (c->pattern == 2) { /* documents: block-diagonal with blocks of 2 */
            f[x] = qb / 2 == kb / 2 ? 1 : 0;
        } else {
            const unsigned r = (unsigned)((support_random(seed) + 2.0f) * 1.25f); /* 0..4 */
            f[x] = r < 2 ? 0 : r < 4 ? 1 : 2;
        }
        if (qb == 0 && x / (fs[1] * fs[2] * fs[3]) == 0 && c->pattern == 0) f[x] = 0;
    }
    return f;
}

static void run_case(const bm_case *c, const char *variant) {
    unsigned seed = c->seed;
    const size_t nq = c->b * c->hq * c->lq * c->d, nk = c->b * c->hkv * c->lk * c->d, no = nq;
    float *q = support_random_array(nq, 2.0f, c->dtype, &seed);
    float *k = support_random_array(nk, 2.0f, c->dtype, &seed);
    float *v = support_random_array(nk, 2.0f, c->dtype, &seed);
    size_t fs[4];
    int32_t *flags = make_flags(c, fs, &seed);
    float sinks[16];
    for (size_t h = 0; h < c->hq; ++h) sinks[h] = (float)h - 1.0f;

    /* The boolean mask the block mask and mask_mod stand for. */
    uint8_t *keep = malloc(c->b * c->hq * c->lq * c->lk);
    assert_non_null(keep);
    for (size_t b = 0; b < c->b; ++b)
        for (size_t h = 0; h < c->hq; ++h)
            for (size_t i = 0; i < c->lq; ++i)
                for (size_t j = 0; j < c->lk; ++j) {
                    const size_t at = ((c->bcast_b ? 0 : b) * fs[1] + (c->bcast_h ? 0 : h)) * fs[2] * fs[3] +
                                      (c->bcast_q ? 0 : i / c->bq) * fs[3] + j / c->bk;
                    const int32_t f = flags[at];
                    keep[((b * c->hq + h) * c->lq + i) * c->lk + j] =
                        f != 0 && (f == 2 || mod_keeps(c->mask_mod, i, j));
                }
    double *ref = malloc(no * sizeof *ref), *ref_lse = malloc(c->b * c->hq * c->lq * sizeof *ref_lse);
    assert_non_null(ref);
    assert_non_null(ref_lse);
    cla_ref_sdpa r;
    memset(&r, 0, sizeof r);
    r.q = cla_ref_dense(q, c->b, c->hq, c->lq, c->d);
    r.k = cla_ref_dense(k, c->b, c->hkv, c->lk, c->d);
    r.v = cla_ref_dense(v, c->b, c->hkv, c->lk, c->d);
    r.scale = 1.0 / sqrt((double)c->d);
    r.causal = c->causal;
    r.window_left = c->window_left;
    r.window_right = CLATTN_WINDOW_UNBOUNDED;
    const cla_ref_tensor kt = cla_ref_dense(NULL, c->b, c->hq, c->lq, c->lk);
    r.bool_mask.data = keep;
    memcpy(r.bool_mask.size, kt.size, sizeof kt.size);
    memcpy(r.bool_mask.stride, kt.stride, sizeof kt.stride);
    r.key_lengths = c->key_lengths;
    r.softcap = c->softcap;
    r.sinks = c->sinks ? sinks : NULL;
    r.out = ref;
    r.lse = ref_lse;
    assert_int_equal(cla_reference_sdpa(&r), 0);

    cl_int err = CL_SUCCESS;
    cl_mem qb = support_buffer_storage(ctx, q, nq, c->dtype, &err),
           kb = support_buffer_storage(ctx, k, nk, c->dtype, &err),
           vb = support_buffer_storage(ctx, v, nk, c->dtype, &err);
    cl_mem fb = support_buffer(ctx, flags, fs[0] * fs[1] * fs[2] * fs[3] * sizeof *flags, &err);
    cl_mem ob = test_filled_buffer(ctx, no * clattn_dtype_size(c->dtype), POISON);
    cl_mem lb = test_filled_buffer(ctx, c->b * c->hq * c->lq * sizeof(float), POISON);
    cl_mem sb = support_buffer(ctx, sinks, sizeof sinks, &err);
    cl_mem klb = c->key_lengths ? support_buffer(ctx, c->key_lengths, c->b * sizeof(int32_t), &err) : NULL;
    assert_int_equal(err, CL_SUCCESS);

    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.causal = c->causal;
    d.window_left = c->window_left;
    d.mask_mod = c->mask_mod;
    d.block_mask = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, fs[0], fs[1], fs[2], fs[3]);
    d.block_mask_q = c->bq;
    d.block_mask_k = c->bk;
    d.key_lengths = klb;
    d.softcap = c->softcap;
    if (c->sinks) d.sinks = clattn_tensor_bhld(sb, CLATTN_DTYPE_F32, 1, c->hq, 1, 1);
    if (c->lse) d.lse = clattn_tensor_bhld(lb, CLATTN_DTYPE_F32, c->b, c->hq, c->lq, 1);
    const clattn_tensor tq = clattn_tensor_bhld(qb, c->dtype, c->b, c->hq, c->lq, c->d),
                        tk = clattn_tensor_bhld(kb, c->dtype, c->b, c->hkv, c->lk, c->d),
                        tv = clattn_tensor_bhld(vb, c->dtype, c->b, c->hkv, c->lk, c->d),
                        to = clattn_tensor_bhld(ob, c->dtype, c->b, c->hq, c->lq, c->d);
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", variant), CLATTN_SUCCESS);
    assert_status(clattn_sdpa(ctx, &d, &tq, &tk, &tv, &to, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    float *got = malloc(no * sizeof *got), *got_lse = malloc(c->b * c->hq * c->lq * sizeof *got_lse);
    assert_non_null(got);
    assert_non_null(got_lse);
    assert_int_equal(support_read_storage(ctx, ob, got, no, c->dtype), CL_SUCCESS);
    assert_int_equal(support_read_storage(ctx, lb, got_lse, c->b * c->hq * c->lq, CLATTN_DTYPE_F32), CL_SUCCESS);
    const double tol = check_sdpa_tolerance(c->lk, c->dtype);
    for (size_t x = 0; x < no; ++x)
        if (!(fabs((double)got[x] - ref[x]) <= tol))
            fail_msg("%s, %zux%zu blocks, Lq %zu Lk %zu, mod %s: out[%zu] = %g, reference %g (tolerance %g)",
                     variant, c->bq, c->bk, c->lq, c->lk, c->mask_mod ? c->mask_mod : "none", x, got[x], ref[x],
                     tol);
    for (size_t x = 0; c->lse && x < c->b * c->hq * c->lq; ++x) {
        const bool same_inf = isinf(ref_lse[x]) && got_lse[x] == (float)ref_lse[x];
        if (!same_inf && !(fabs((double)got_lse[x] - ref_lse[x]) <= 1e-4 * (1.0 + fabs(ref_lse[x]))))
            fail_msg("%s: lse[%zu] = %g, reference %g", variant, x, got_lse[x], ref_lse[x]);
    }
    free(got);
    free(got_lse);
    clReleaseMemObject(qb);
    clReleaseMemObject(kb);
    clReleaseMemObject(vb);
    clReleaseMemObject(fb);
    clReleaseMemObject(ob);
    clReleaseMemObject(lb);
    clReleaseMemObject(sb);
    if (klb) clReleaseMemObject(klb);
    free(q);
    free(k);
    free(v);
    free(flags);
    free(keep);
    free(ref);
    free(ref_lse);
}

/* Each fused variant with tiles smaller and larger than the blocks; key splits on two of them. */
static const char *const variants[] = {
    "variant=cpu,rows=1,block_n=16",
    "variant=cpu,rows=1,gqa_pack=1,block_n=8",
    "variant=cpu,rows=8,block_n=8",
    "variant=cpu,rows=24,block_n=48,splits=3",
    "variant=tiled,rows=1,block_n=8,wg=4,local=1",
    "variant=tiled,rows=2,block_n=16,wg=1,local=0,splits=2",
    "variant=flash,block_n=4,wg=4",
    "variant=flash,block_n=16,wg=32",
};
#define VARIANT_COUNT (sizeof variants / sizeof *variants)

static void against_reference(void **state) {
    (void)state;
    static const int32_t lens[2] = {37, 9};
    for (size_t vi = 0; vi < VARIANT_COUNT; ++vi) {
        /* Odd lengths, blocks not multiples of the tiles, GQA. */
        bm_case c = case_of(2, 4, 2, 45, 77, 16, 7, 10);
        run_case(&c, variants[vi]);
        /* Blocks larger than any tile, with mask_mod: full blocks (2) are spared it. */
        c = case_of(1, 2, 1, 130, 150, 8, 64, 33);
        c.mask_mod = "(kv_idx / 5) % 3 != 1";
        run_case(&c, variants[vi]);
        /* Causal written as mask_mod with its block mask, against the reference of causal. */
        c = case_of(1, 3, 3, 96, 96, 16, 16, 16);
        c.pattern = 1;
        c.mask_mod = "kv_idx <= q_idx";
        run_case(&c, variants[vi]);
        /* Broadcast block mask (batch and heads), built-in causal, window, key lengths, softcap, sinks. */
        c = case_of(2, 2, 1, 33, 40, 8, 5, 6);
        c.bcast_b = c.bcast_h = true;
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.window_left = 20;
        c.key_lengths = lens;
        c.softcap = 5.0f;
        c.sinks = true;
        run_case(&c, variants[vi]);
        /* Documents, a block mask broadcast over queries blocks too, fp16. */
        c = case_of(1, 2, 2, 40, 64, 8, 8, 8);
        c.pattern = 2;
        c.dtype = CLATTN_DTYPE_F16;
        run_case(&c, variants[vi]);
        c = case_of(1, 2, 2, 21, 64, 8, 3, 9);
        c.bcast_q = true;
        c.dtype = CLATTN_DTYPE_BF16;
        run_case(&c, variants[vi]);
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* A call that must fail with `want` before writing anything. */
static void expect_refused(clattn_sdpa_desc *d, clattn_tensor *bm, clattn_status want, const char *needle) {
    enum { B = 1, H = 2, L = 20, D = 8 };
    cl_int err = CL_SUCCESS;
    float zeros[B * H * L * D] = {0};
    cl_mem in = support_buffer(ctx, zeros, sizeof zeros, &err);
    cl_mem out = test_filled_buffer(ctx, sizeof zeros, POISON);
    const clattn_tensor t = clattn_tensor_bhld(in, CLATTN_DTYPE_F32, B, H, L, D),
                        o = clattn_tensor_bhld(out, CLATTN_DTYPE_F32, B, H, L, D);
    if (bm) d->block_mask = *bm;
    assert_status(clattn_sdpa(ctx, d, &t, &t, &t, &o, NULL, 0, NULL, NULL), want);
    test_expect_unwritten(ctx, out, sizeof zeros, POISON);
    const char *msg = clattn_context_last_error(ctx);
    if (needle && !strstr(msg, needle)) fail_msg("the error does not mention '%s': %s", needle, msg);
    clReleaseMemObject(in);
    clReleaseMemObject(out);
}

static void invalid_arguments(void **state) {
    (void)state;
    cl_int err = CL_SUCCESS;
    int32_t flags[64] = {0};
    cl_mem fb = support_buffer(ctx, flags, sizeof flags, &err);
    assert_int_equal(err, CL_SUCCESS);
    /* L = 20 with blocks of 8: 3 x 3 blocks. */
    clattn_tensor good = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, 1, 2, 3, 3), bm;
    clattn_sdpa_desc d;

    clattn_sdpa_desc_init(&d);
    d.block_mask_q = d.block_mask_k = 8;
    bm = good;
    bm.dtype = CLATTN_DTYPE_F32;
    expect_refused(&d, &bm, CLATTN_ERROR_INVALID_MASK, "I32");
    bm = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, 1, 2, 3, 2);
    expect_refused(&d, &bm, CLATTN_ERROR_INVALID_MASK, "broadcast");
    bm = clattn_tensor_bhld(fb, CLATTN_DTYPE_I32, 1, 2, 20, 20);
    expect_refused(&d, &bm, CLATTN_ERROR_INVALID_MASK, "block_mask");
    d.block_mask_q = 0;
    expect_refused(&d, &good, CLATTN_ERROR_INVALID_ARGUMENT, "block_mask_q");
    d.block_mask_q = 8;
    d.block_mask_k = 0;
    expect_refused(&d, &good, CLATTN_ERROR_INVALID_ARGUMENT, "block_mask_k");
    d.block_mask_k = 8;
    bm = good;
    bm.offset = 50; /* 18 flags from element 50 of a buffer of 64 */
    d.block_mask_q = d.block_mask_k = 8;
    expect_refused(&d, &bm, CLATTN_ERROR_BUFFER_TOO_SMALL, "block_mask");
    d.impl = CLATTN_IMPL_UNFUSED;
    expect_refused(&d, &good, CLATTN_ERROR_UNSUPPORTED, "block_mask");
    d.impl = CLATTN_IMPL_AUTO;
    cl_mem wb = test_filled_buffer(ctx, 2 * 20 * 20 * sizeof(float), POISON);
    d.weights = clattn_tensor_bhld(wb, CLATTN_DTYPE_F32, 1, 2, 20, 20);
    expect_refused(&d, &good, CLATTN_ERROR_UNSUPPORTED, "block_mask");
    test_expect_unwritten(ctx, wb, 2 * 20 * 20 * sizeof(float), POISON);
    clReleaseMemObject(wb);
    clReleaseMemObject(fb);
}

/* Oclgrind (--tiny): one small case per kernel shape, with mask_mod and a partial block mask, so that every path of
 * the block mask (skipped, full and partial tiles) runs under its checks. */
static void tiny(void **state) {
    (void)state;
    static const char *const tiny_variants[] = {
        "variant=cpu,rows=1,block_n=8",
        "variant=cpu,rows=8,block_n=8,splits=2",
        "variant=tiled,rows=1,block_n=8,wg=4,local=1",
        "variant=flash,block_n=4,wg=4",
    };
    for (size_t vi = 0; vi < sizeof tiny_variants / sizeof *tiny_variants; ++vi) {
        bm_case c = case_of(1, 2, 1, 11, 19, 4, 4, 5);
        c.pattern = 1;
        c.mask_mod = "kv_idx <= q_idx";
        run_case(&c, tiny_variants[vi]);
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* --two-devices (CTest sets POCL_DEVICES="pthread pthread"): one context over both devices splits a call with a
 * block mask by batch items and by key/value head groups, each part reading its slice of the block mask. */
static void log_split(void *user, clattn_log_level level, const char *message) {
    (void)level;
    if (strstr(message, "attention split over")) *(int *)user += 1;
}

static int splits_seen;

static int setup_two_devices(void **state) {
    (void)state;
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.devices = "all:cpu";
    o.log = log_split;
    o.log_user = &splits_seen;
    return clattn_context_create_with_options(&o, &ctx) == CLATTN_SUCCESS ? 0 : -1;
}

static void split_over_devices(void **state) {
    (void)state;
    assert_int_equal(clattn_context_device_count(ctx), 2);
    static const int32_t lens[3] = {30, 7, 41};
    bm_case c = case_of(3, 4, 2, 37, 41, 8, 8, 6); /* batch items split */
    c.key_lengths = lens;
    run_case(&c, "variant=cpu,rows=8,block_n=16");
    c = case_of(1, 4, 2, 37, 41, 8, 5, 12); /* key/value head groups split */
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    run_case(&c, "variant=cpu,rows=8,block_n=16");
    assert_int_equal(splits_seen, 2);
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--two-devices") == 0) {
        const struct CMUnitTest two[] = {cmocka_unit_test(split_over_devices)};
        return cmocka_run_group_tests_name("sdpa_block_mask_two_devices", two, setup_two_devices, teardown);
    }
    if (argc > 1 && strcmp(argv[1], "--tiny") == 0) {
        const struct CMUnitTest small[] = {cmocka_unit_test(tiny)};
        return cmocka_run_group_tests_name("sdpa_block_mask_tiny", small, setup, teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(invalid_arguments),
        cmocka_unit_test(against_reference),
    };
    return cmocka_run_group_tests_name("sdpa_block_mask", tests, setup, teardown);
}
