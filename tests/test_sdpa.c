// SPDX-License-Identifier: Apache-2.0
/* Scaled dot-product attention against the double-precision reference: shapes (odd, round, tile +-1, Lq != Lk),
 * head dims, heads and GQA, layouts and offsets, every mask and combination, both causal alignments, dtypes,
 * special values, decode shapes, both implementations, and bitwise determinism. Each group runs for the
 * implementation named by its test's state (fused or unfused). */
#include "sdpa_case.h"

#include "internal.h"
#include "reference.h"
#include "support_compare.h"
#include "support_random.h"

#include <float.h>
#include <math.h>

static const clattn_impl impl_fused = CLATTN_IMPL_FUSED;
static const clattn_impl impl_unfused = CLATTN_IMPL_UNFUSED;
static const clattn_impl impl_auto = CLATTN_IMPL_AUTO;

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

static clattn_impl impl_of(void **state) {
    return *(const clattn_impl *)*state;
}

static void sequence_lengths(void **state) {
    static const size_t lens[] = {1, 2, 7, 33, 64, 65, 257};
    for (size_t a = 0; a < 7; ++a)
        for (size_t b = 0; b < 7; ++b) {
            sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, lens[a], lens[b], 64);
            c.seed = (unsigned)(a * 7 + b);
            sdpa_case_run(ctx, &c, NULL);
        }
}

static void head_dims(void **state) {
    /* Up to the fused kernels' widest (576), Gemma's 256 and 512 among them. */
    static const size_t dims[] = {1, 3, 64, 80, 128, 256, 384, 512, 576};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(dims); ++i) {
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 33, 65, dims[i]);
        c.seed = (unsigned)i;
        sdpa_case_run(ctx, &c, NULL);
    }
    /* Value head dims that differ from the query/key head dim: DeepSeek's 192/128 and MLA's 576/512, and wider
     * values than keys. */
    static const size_t pairs[][2] = {{24, 40}, {192, 128}, {576, 512}, {256, 512}, {520, 8}};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(pairs); ++i) {
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 2, 1, 9, 17, pairs[i][0]);
        c.v_head_dim = pairs[i][1];
        c.dtype = (clattn_dtype)(i % 3);
        c.seed = (unsigned)i;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* Heads wider than the fused kernels take (CLATTN_MAX_FUSED_HEAD_DIM): AUTO runs them on the unfused path, which
 * must give the reference's results with every option at those widths too. Shapes stay small so that the
 * reference stays quick. */
static void wide_head_dims(void **state) {
    /* {Dk, Dv}: just past the bound, round and odd widths, Dk != Dv both ways, one side wide, DeepSeek's 192/128
     * (narrow, fused under AUTO) and 576/512 (MLA's absorbed form). */
    static const size_t dims[][2] = {{257, 257}, {384, 384}, {512, 512}, {1000, 1000},
                                     {576, 512}, {192, 128}, {300, 64},  {64, 300}};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(dims); ++i) {
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 2, 1, 9, 21, dims[i][0]);
        c.v_head_dim = dims[i][1];
        c.layout = (int)(i % 2);
        c.offset = i % 3;
        c.want_lse = true;
        c.seed = (unsigned)i;
        sdpa_case_run(ctx, &c, NULL);
    }
    /* Every mask kind, key lengths, both causal alignments with a window, and the weights, at Dk 512, Dv 384. */
    static const int32_t kl[2] = {13, 0};
    for (int variant = 0; variant < 6; ++variant) {
        sdpa_case c = sdpa_case_of(impl_of(state), 2, 2, 2, 7, variant == 4 ? 30 : 19, 512);
        c.v_head_dim = 384;
        c.mask_kind = variant == 0 ? MASK_ADD : variant == 1 ? MASK_BOOL : MASK_NONE;
        c.mask_bcast_heads = variant == 1;
        c.mask_fill_prob = 0.3f;
        if (variant == 2) c.key_lengths = kl;
        c.causal = variant == 3   ? CLATTN_CAUSAL_TOP_LEFT
                   : variant == 4 ? CLATTN_CAUSAL_BOTTOM_RIGHT
                                  : CLATTN_CAUSAL_NONE;
        if (variant == 4) c.window_left = 5;
        if (variant == 5) {
            c.mask_kind = MASK_BOOL;
            c.mask_fill_prob = 2.0f; /* every key masked: zeros, lse -inf */
        }
        c.want_lse = true;
        c.want_weights = variant == 0 || variant == 2;
        c.seed = (unsigned)(20 + variant);
        sdpa_case_run(ctx, &c, NULL);
    }
    /* fp16 and bf16 storage, with key lengths and NaN in the padding (which must not reach the output). */
    static const int32_t kl3[3] = {17, 4, 25};
    for (int dt = 1; dt <= 2; ++dt) {
        sdpa_case c = sdpa_case_of(impl_of(state), 3, 1, 1, 5, 25, 640);
        c.dtype = (clattn_dtype)dt;
        c.key_lengths = kl3;
        c.nan_in_padding = true;
        c.want_lse = true;
        c.seed = (unsigned)(30 + dt);
        sdpa_case_run(ctx, &c, NULL);
    }
    /* No keys at all: zeros and lse -inf without a GEMM; a decode step (one query) over many keys. */
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 3, 0, 1024);
    c.want_lse = true;
    sdpa_case_run(ctx, &c, NULL);
    c = sdpa_case_of(impl_of(state), 1, 4, 2, 1, 2000, 768);
    c.want_lse = true;
    sdpa_case_run(ctx, &c, NULL);
}

/* AUTO takes the unfused path for a wide head even where CLATTN_IMPL asks for fused (a preference that yields, as
 * it does for the weights), and the largest head dim runs. */
static void wide_heads_run_unfused_under_auto(void **state) {
    (void)state;
    /* The variable is read when a context is created. */
    setenv("CLATTN_IMPL", "fused", 1);
    clattn_context *prefers_fused = test_context();
    unsetenv("CLATTN_IMPL");
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_AUTO, 1, 1, 1, 40, 30, CLATTN_MAX_FUSED_HEAD_DIM + 24);
    sdpa_case_run(prefers_fused, &c, NULL);
    clattn_memory_stats m;
    assert_status(clattn_context_memory_stats(prefers_fused, &m), CLATTN_SUCCESS);
    clattn_context_free(prefers_fused);
    assert_true(m.last_call_bytes >= (uint64_t)40 * 30 * sizeof(float)); /* the unfused path's scores */
    c = sdpa_case_of(CLATTN_IMPL_AUTO, 1, 1, 1, 2, 3, CLATTN_MAX_HEAD_DIM);
    c.v_head_dim = CLATTN_MAX_HEAD_DIM;
    sdpa_case_run(ctx, &c, NULL);
}

static void heads_batch_layouts_and_gqa(void **state) {
    static const size_t heads[][2] = {{1, 1}, {3, 3}, {6, 2}, {4, 1}};
    for (size_t hi = 0; hi < 4; ++hi)
        for (size_t batch = 1; batch <= 2; ++batch)
            for (int layout = 0; layout < 2; ++layout) {
                sdpa_case c = sdpa_case_of(impl_of(state), batch, heads[hi][0], heads[hi][1], 13, 21, 32);
                c.layout = layout;
                c.offset = layout ? 5 : 0;
                c.seed = (unsigned)(hi * 4 + batch * 2 + (size_t)layout);
                sdpa_case_run(ctx, &c, NULL);
            }
}

static void causal_alignments(void **state) {
    static const size_t shapes[][2] = {{7, 7}, {5, 19}, {19, 5}, {1, 33}, {65, 64}, {33, 1}};
    for (int causal = 1; causal <= 2; ++causal)
        for (size_t s = 0; s < 6; ++s) {
            sdpa_case c = sdpa_case_of(impl_of(state), 1, 2, 2, shapes[s][0], shapes[s][1], 16);
            c.causal = (clattn_causal)causal;
            c.want_lse = true;
            c.seed = (unsigned)(causal * 10 + (int)s);
            sdpa_case_run(ctx, &c, NULL);
        }
}

static void windows(void **state) {
    static const int64_t win[][2] = {{0, 0}, {3, -1}, {-1, 2}, {4, 4}, {0, -1}};
    for (int causal = 0; causal <= 2; ++causal)
        for (size_t w = 0; w < 5; ++w) {
            sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 17, causal == 2 ? 40 : 17, 8);
            c.causal = (clattn_causal)causal;
            c.window_left = win[w][0];
            c.window_right = win[w][1];
            c.want_lse = true;
            c.seed = (unsigned)(causal * 10 + (int)w);
            sdpa_case_run(ctx, &c, NULL);
        }
}

/* The window and ALiBi aligned on their own (desc.window_align): bottom-right without causal masking or under a
 * top-left one, top-left under a bottom-right one, on Lq < Lk, Lq > Lk, odd and round shapes, GQA. */
static void window_alignments(void **state) {
    static const size_t shapes[][2] = {{5, 19}, {19, 5}, {16, 32}, {1, 33}};
    static const int64_t win[][2] = {{3, -1}, {-1, 2}, {2, 2}, {-1, -1}};
    for (int causal = 0; causal <= 2; ++causal)
        for (int align = 1; align <= 2; ++align)
            for (size_t s = 0; s < 4; ++s) {
                sdpa_case c = sdpa_case_of(impl_of(state), 2, 4, 2, shapes[s][0], shapes[s][1], s == 2 ? 32 : 12);
                c.causal = (clattn_causal)causal;
                c.window_align = (clattn_window_align)align;
                c.window_left = win[s][0];
                c.window_right = win[s][1];
                c.alibi = s != 1;
                c.alibi_slope = 0.1f;
                c.layout = (int)(s % 2);
                c.want_lse = true;
                c.seed = (unsigned)(100 + causal * 10 + align * 4 + (int)s);
                sdpa_case_run(ctx, &c, NULL);
            }
}

static void huge_windows_mean_unbounded(void **state) {
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 9, 14, 16);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.window_left = (int64_t)1 << 40;
    c.window_right = INT32_MAX;
    c.want_lse = true;
    sdpa_case_run(ctx, &c, NULL);
}

/* The unfused path in several chunks of (batch, head) pairs and blocks of query rows, forced by a small cap. */
static void unfused_chunks(void **state) {
    (void)state;
    static const char *caps[] = {"2000", "9000", "70000"};
    for (int i = 0; i < 3; ++i) {
        /* The variable is read when a context is created. */
        setenv("CLATTN_UNFUSED_CHUNK_BYTES", caps[i], 1);
        clattn_context *capped = test_context();
        unsetenv("CLATTN_UNFUSED_CHUNK_BYTES");
        sdpa_case c = sdpa_case_of(CLATTN_IMPL_UNFUSED, 2, 4, 2, 19, 23, 16);
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.want_lse = true;
        c.want_weights = true;
        c.seed = (unsigned)i;
        sdpa_case_run(capped, &c, NULL);
        clattn_context_free(capped);
    }
}

/* The fused path allocates nothing of size Lq x Lk (nothing at all without key splits); the unfused path at least
 * its score matrix. */
static void memory_accounting(void **state) {
    (void)state;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 2, 2, 300, 200, 32);
    sdpa_case_run(ctx, &c, NULL);
    clattn_memory_stats m;
    assert_status(clattn_context_memory_stats(ctx, &m), CLATTN_SUCCESS);
    assert_true(m.last_call_bytes < (uint64_t)300 * 200 * sizeof(float));
    c.impl = CLATTN_IMPL_UNFUSED;
    sdpa_case_run(ctx, &c, NULL);
    assert_status(clattn_context_memory_stats(ctx, &m), CLATTN_SUCCESS);
    assert_true(m.last_call_bytes >= (uint64_t)300 * 200 * sizeof(float));
    assert_true(m.peak_call_bytes >= m.last_call_bytes);
    assert_status(clattn_context_memory_stats(ctx, NULL), CLATTN_ERROR_NULL_POINTER);
}

/* Device operations (launches, allocations, barriers) one call makes, counted with the fault countdown. */
static long operations_of(clattn_context *c, const sdpa_case *sc) {
    const long big = 1000000;
    char err[2048];
    cla_fault_inject(c, big);
    if (sdpa_case_check(c, sc, err, sizeof err) != 0) fail_msg("%s", err);
    long used = big - c->fault_countdown;
    cla_fault_inject(c, 0);
    return used;
}

/* With max_launch_pairs, the fused kernel runs as several launches over batch-head slices, same results. */
static void launch_limit_splits_the_work(void **state) {
    (void)state;
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = test_device_spec();
    o.max_launch_pairs = 400; /* one 13 x 30 slice per launch */
    clattn_context *limited = NULL;
    assert_status(clattn_context_create_with_options(&o, &limited), CLATTN_SUCCESS);
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 2, 3, 1, 13, 30, 16);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.want_lse = true;
    long whole = operations_of(ctx, &c), split = operations_of(limited, &c);
    /* Six launches instead of one, a (batch, head) slice each; the flash variant's grid runs over (batch, key/value
     * head) slices, two here, each over the limit alone (also with the decode variant forced: 39 packed rows are
     * past its 16, so flash runs them). */
    const char *forced = getenv("CLATTN_FUSED_PARAMS");
    const bool flash = forced && (strstr(forced, "variant=flash") || strstr(forced, "variant=decode"));
    assert_int_equal(split, whole + (flash ? 1 : 5));
    c.q_len = 1;
    c.kv_len = 3000; /* decode shape (over the limit alone): key splits and their combine step too */
    sdpa_case_run(limited, &c, NULL);
    clattn_context_free(limited);
}

static void masks(void **state) {
    for (int kind = MASK_ADD; kind <= MASK_BOOL; ++kind)
        for (int bb = 0; bb < 2; ++bb)
            for (int bh = 0; bh < 2; ++bh) {
                sdpa_case c = sdpa_case_of(impl_of(state), 2, 3, 3, 11, 35, 16);
                c.mask_kind = kind;
                c.mask_bcast_batch = bb;
                c.mask_bcast_heads = bh;
                c.mask_fill_prob = 0.3f;
                c.want_lse = true;
                c.seed = (unsigned)(kind * 4 + bb * 2 + bh);
                sdpa_case_run(ctx, &c, NULL);
            }
    /* Additive masks stored as f16 and bf16, and masked entries given as -FLT_MAX. */
    for (int dt = 1; dt <= 2; ++dt) {
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 9, 30, 16);
        c.mask_kind = MASK_ADD;
        c.mask_dtype = (clattn_dtype)dt;
        c.mask_fill_prob = 0.4f;
        sdpa_case_run(ctx, &c, NULL);
    }
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 9, 30, 16);
    c.mask_kind = MASK_ADD;
    c.mask_fill_prob = 0.5f;
    c.mask_neg_value = -FLT_MAX;
    c.want_lse = true;
    sdpa_case_run(ctx, &c, NULL);
}

/* Masks that broadcast like PyTorch's attn_mask, in any dimension of [B, Hq, Lq, Lk]: every shape below, in every
 * mask dtype, by size 1 and (every other shape) by full size with stride 0, on each kernel of the implementation:
 * the fused kernel's default (CPU) variant, its row and block shapes with partial tiles, its tiled (GPU) variant,
 * and each with its keys split. GQA and odd
 * lengths, so that no index can hide behind another; about a third of the entries masked, so that [Lq, 1] and
 * [B, Hq, Lq, 1] give fully masked rows too. */
static void broadcast_masks(void **state) {
    /* Which of B, Hq, Lq, Lk broadcast: [B,1,1,Lk] (Hugging Face padding), [Lk], [Lq,1], [Lq,Lk], [1,Hq,1,1],
     * [B,Hq,Lq,1], [1,1,1,1], [B,1,Lq,Lk]. */
    static const bool shapes[][4] = {{0, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 0, 1}, {1, 1, 0, 0},
                                     {1, 0, 1, 1}, {0, 0, 0, 1}, {1, 1, 1, 1}, {0, 1, 0, 0}};
    static const char *fused_params[] = {NULL,
                                         "variant=cpu,rows=1,block_n=5",
                                         "variant=cpu,rows=8,block_n=5",
                                         "variant=cpu,splits=2",
                                         "variant=tiled",
                                         "variant=tiled,splits=3"};
    const bool fused = impl_of(state) == CLATTN_IMPL_FUSED;
    for (size_t p = 0; p < (fused ? CLA_ARRAY_SIZE(fused_params) : 1); ++p) {
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", fused_params[p]), CLATTN_SUCCESS);
        for (size_t sh = 0; sh < CLA_ARRAY_SIZE(shapes); ++sh)
            for (int dt = 0; dt < 4; ++dt) {
                sdpa_case c = sdpa_case_of(impl_of(state), 2, 3, 1, 11, 37, 16);
                c.mask_kind = dt == CLATTN_DTYPE_BOOL ? MASK_BOOL : MASK_ADD;
                c.mask_dtype = dt == CLATTN_DTYPE_BOOL ? CLATTN_DTYPE_F32 : (clattn_dtype)dt;
                c.mask_bcast_batch = shapes[sh][0];
                c.mask_bcast_heads = shapes[sh][1];
                c.mask_bcast_q = shapes[sh][2];
                c.mask_bcast_k = shapes[sh][3];
                c.mask_stride0 = sh % 2 == 1;
                c.mask_fill_prob = 0.3f;
                c.want_lse = true;
                c.want_weights = !fused && sh % 3 == 0;
                c.causal = sh == 3 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
                c.seed = (unsigned)(sh * 4 + (size_t)dt + 100 * p);
                sdpa_case_run(ctx, &c, NULL);
            }
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* The host convenience call with a padding mask [B, 1, 1, Lk] given as mask_shape {B, 1, 1, 0} (0: the full key
 * length) and a boolean [Lq, 1] given as {1, 1, Lq, 1}, against the reference; outputs poisoned beforehand. */
static void host_broadcast_masks(void **state) {
    enum { B = 2, HQ = 4, HKV = 2, LQ = 7, LK = 19, D = 8 };
    unsigned seed = 31;
    float q[B * HQ * LQ * D], k[B * HKV * LK * D], v[B * HKV * LK * D], out[B * HQ * LQ * D + 1];
    float pad[B * LK];
    uint8_t rows[LQ];
    for (size_t i = 0; i < CLA_ARRAY_SIZE(q); ++i) q[i] = support_random(&seed);
    for (size_t i = 0; i < CLA_ARRAY_SIZE(k); ++i) k[i] = support_random(&seed);
    for (size_t i = 0; i < CLA_ARRAY_SIZE(v); ++i) v[i] = support_random(&seed);
    for (size_t i = 0; i < B * LK; ++i) pad[i] = i % LK >= (i < LK ? 12u : 17u) ? -INFINITY : support_random(&seed);
    for (size_t i = 0; i < LQ; ++i) rows[i] = i != 3; /* row 3 sees no key: zeros */
    for (int variant = 0; variant < 2; ++variant) {
        clattn_sdpa_host_desc d;
        clattn_sdpa_host_desc_init(&d);
        d.batch = B;
        d.q_heads = HQ;
        d.kv_heads = HKV;
        d.q_len = LQ;
        d.kv_len = LK;
        d.head_dim = D;
        d.impl = impl_of(state);
        if (variant == 0) {
            d.mask = pad;
            d.mask_shape[0] = B;
            d.mask_shape[1] = d.mask_shape[2] = 1;
        } else {
            d.bool_mask = rows;
            d.mask_shape[0] = d.mask_shape[1] = d.mask_shape[3] = 1;
            d.mask_shape[2] = LQ;
        }
        for (size_t i = 0; i < CLA_ARRAY_SIZE(out); ++i) out[i] = NAN;
        out[CLA_ARRAY_SIZE(out) - 1] = 1234.5f; /* canary */
        assert_status(clattn_sdpa_host(ctx, &d, q, k, v, out), CLATTN_SUCCESS);
        assert_true(out[CLA_ARRAY_SIZE(out) - 1] == 1234.5f);

        double ref_out[B * HQ * LQ * D];
        cla_ref_sdpa r;
        memset(&r, 0, sizeof r);
        r.q = cla_ref_dense(q, B, HQ, LQ, D);
        r.k = cla_ref_dense(k, B, HKV, LK, D);
        r.v = cla_ref_dense(v, B, HKV, LK, D);
        r.scale = 1.0 / sqrt((double)D);
        r.window_left = r.window_right = CLATTN_WINDOW_UNBOUNDED;
        if (variant == 0)
            r.mask = (cla_ref_tensor){pad, {B, 1, 1, LK}, {LK, 0, 0, 1}};
        else
            r.bool_mask = (cla_ref_bool_tensor){rows, {1, 1, LQ, 1}, {0, 0, 1, 0}};
        r.out = ref_out;
        assert_int_equal(cla_reference_sdpa(&r), 0);
        const double worst = support_max_error(out, ref_out, CLA_ARRAY_SIZE(ref_out), false, NULL);
        if (!(worst <= 1e-5)) fail_msg("host call, mask variant %d: max |out - ref| = %g", variant, worst);
        if (variant == 1)
            for (size_t b = 0; b < B * HQ; ++b)
                for (size_t x = 0; x < D; ++x) assert_true(out[(b * LQ + 3) * D + x] == 0.0f);
    }
}

static void key_lengths_and_combinations(void **state) {
    static const int32_t kl[3] = {5, 0, 40}; /* the middle batch item is fully padded; 40 > Lk clamps */
    for (int combo = 0; combo < 4; ++combo) {
        sdpa_case c = sdpa_case_of(impl_of(state), 3, 2, 1, 12, 33, 16);
        c.key_lengths = kl;
        c.want_lse = true;
        c.causal = combo & 1 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
        if (combo & 2) {
            c.mask_kind = combo == 2 ? MASK_ADD : MASK_BOOL;
            c.mask_fill_prob = 0.25f;
            c.window_left = 6;
            c.window_right = 2;
        }
        c.seed = (unsigned)combo;
        sdpa_case_run(ctx, &c, NULL);
    }
}

static void fully_masked_rows(void **state) {
    /* Every key masked for every row: zeros and lse -inf, never NaN. */
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 5, 9, 16);
    c.mask_kind = MASK_BOOL;
    c.mask_fill_prob = 2.0f;
    c.want_lse = true;
    float *out = NULL;
    sdpa_case_run(ctx, &c, &out);
    for (size_t i = 0; i < 5 * 16; ++i) assert_true(out[i] == 0.0f);
    free(out);
    /* Bottom-right causal with Lq > Lk: the first Lq - Lk rows see no key. */
    sdpa_case_init(&c);
    c.impl = impl_of(state);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.q_len = 10;
    c.kv_len = 4;
    c.want_lse = true;
    sdpa_case_run(ctx, &c, NULL);
}

static void dtypes(void **state) {
    for (int dt = 0; dt <= 2; ++dt)
        for (int variant = 0; variant < 2; ++variant) {
            sdpa_case c;
            sdpa_case_init(&c);
            c.impl = impl_of(state);
            c.dtype = (clattn_dtype)dt;
            c.q_len = 21;
            c.kv_len = 47;
            c.head_dim = variant ? 64 : 5;
            c.q_heads = 2;
            c.kv_heads = 1;
            c.layout = variant;
            c.offset = 3;
            c.causal = variant ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_NONE;
            c.mask_kind = variant ? MASK_NONE : MASK_ADD;
            c.mask_fill_prob = 0.2f;
            c.want_lse = true;
            c.seed = (unsigned)(dt * 2 + variant);
            sdpa_case_run(ctx, &c, NULL);
        }
}

static void special_values(void **state) {
    /* Large logits stay finite. */
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, 8, 20, 16);
    c.scale = 250.0f; /* logits up to about 1.6e4 */
    c.want_lse = true;
    float *out = NULL;
    sdpa_case_run(ctx, &c, &out);
    for (size_t i = 0; i < 8 * 16; ++i) assert_true(isfinite(out[i]));
    free(out);

    /* Adding a constant to every logit changes nothing. */
    c = sdpa_case_of(impl_of(state), 1, 1, 1, 6, 14, 16);
    float *plain = NULL, *shifted = NULL;
    sdpa_case_run(ctx, &c, &plain);
    c.mask_kind = MASK_ADD;
    c.mask_constant = 1000.0f;
    sdpa_case_run(ctx, &c, &shifted);
    for (size_t i = 0; i < 6 * 16; ++i) assert_true(fabsf(plain[i] - shifted[i]) <= 1e-4f);
    free(plain);
    free(shifted);

    /* A NaN in a query propagates to that row; NaN in padding past the key length does not. */
    c = sdpa_case_of(impl_of(state), 1, 1, 1, 4, 10, 16);
    c.nan_q_row = 2;
    c.want_lse = true;
    sdpa_case_run(ctx, &c, &out);
    assert_true(isnan(out[2 * 16]));
    assert_true(!isnan(out[0]) && !isnan(out[3 * 16]));
    free(out);
    static const int32_t kl[2] = {6, 3};
    c = sdpa_case_of(impl_of(state), 2, 1, 1, 4, 10, 16);
    c.key_lengths = kl;
    c.nan_in_padding = true;
    sdpa_case_run(ctx, &c, &out);
    for (size_t i = 0; i < 2 * 4 * 16; ++i) assert_false(isnan(out[i]));
    free(out);
}

static void decode_shapes(void **state) {
    static const size_t shapes[][3] = {{1, 4096, 8}, {4, 4096, 2}, {1, 1000, 1}, {2, 600, 3}};
    for (size_t s = 0; s < 4; ++s)
        for (int causal = 0; causal < 2; ++causal) {
            sdpa_case c = sdpa_case_of(impl_of(state), 1, shapes[s][2], shapes[s][2] == 8 ? 2 : shapes[s][2],
                                       shapes[s][0], shapes[s][1], 64);
            c.causal = causal ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
            c.want_lse = true;
            c.seed = (unsigned)(s * 2 + (size_t)causal);
            sdpa_case_run(ctx, &c, NULL);
        }
}

static void weights_output(void **state) {
    for (int variant = 0; variant < 3; ++variant) {
        sdpa_case c = sdpa_case_of(impl_of(state), 2, 2, 1, 9, 23, 16);
        c.want_weights = true;
        c.want_lse = true;
        c.causal = variant == 1 ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_NONE;
        c.mask_kind = variant == 2 ? MASK_BOOL : MASK_NONE;
        c.mask_fill_prob = 0.3f;
        c.dtype = variant == 2 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
        c.seed = (unsigned)variant;
        sdpa_case_run(ctx, &c, NULL);
    }
}

static void runs_are_bitwise_deterministic(void **state) {
    sdpa_case c = sdpa_case_of(impl_of(state), 1, 2, 2, 37, 300, 64);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    float *a = NULL, *b = NULL;
    sdpa_case_run(ctx, &c, &a);
    sdpa_case_run(ctx, &c, &b);
    assert_memory_equal(a, b, 2 * 37 * 64 * sizeof(float));
    c.q_len = 1;
    c.kv_len = 4096;
    c.causal = CLATTN_CAUSAL_NONE;
    free(a);
    free(b);
    sdpa_case_run(ctx, &c, &a);
    sdpa_case_run(ctx, &c, &b);
    assert_memory_equal(a, b, 2 * 1 * 64 * sizeof(float));
    free(a);
    free(b);
}

static void empty_sizes(void **state) {
    static const size_t shapes[][3] = {{0, 5, 1}, {5, 0, 1}, {3, 4, 0}, {0, 0, 1}};
    for (size_t s = 0; s < 4; ++s) {
        sdpa_case c = sdpa_case_of(impl_of(state), shapes[s][2], 1, 1, shapes[s][0], shapes[s][1], 16);
        c.want_lse = true;
        c.want_weights = impl_of(state) == CLATTN_IMPL_UNFUSED;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* A test run twice: with implementation a, then b; BOTH: fused, then unfused. */
#define TWICE(fn, a, b) cmocka_unit_test_prestate(fn, (void *)&(a)), cmocka_unit_test_prestate(fn, (void *)&(b))
#define BOTH(fn)        TWICE(fn, impl_fused, impl_unfused)

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(sequence_lengths),
        BOTH(head_dims),
        TWICE(wide_head_dims, impl_auto, impl_unfused),
        cmocka_unit_test(wide_heads_run_unfused_under_auto),
        BOTH(heads_batch_layouts_and_gqa),
        BOTH(causal_alignments),
        BOTH(windows),
        BOTH(window_alignments),
        BOTH(huge_windows_mean_unbounded),
        BOTH(masks),
        BOTH(broadcast_masks),
        BOTH(host_broadcast_masks),
        cmocka_unit_test(unfused_chunks),
        cmocka_unit_test(memory_accounting),
        cmocka_unit_test(launch_limit_splits_the_work),
        BOTH(key_lengths_and_combinations),
        BOTH(fully_masked_rows),
        BOTH(dtypes),
        BOTH(special_values),
        BOTH(decode_shapes),
        TWICE(weights_output, impl_unfused, impl_auto),
        BOTH(runs_are_bitwise_deterministic),
        BOTH(empty_sizes),
    };
    return cmocka_run_group_tests_name("sdpa", tests, setup, teardown);
}
