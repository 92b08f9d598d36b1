// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the double-precision attention reference (src/reference.c): small cases worked out by hand for
 * every kind of mask, both causal alignments, the window, grouped-query heads and the edge cases the device
 * kernels are judged on. The reference is the ground truth for everything else, so it gets its own checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

#define TOL 1e-12

/* A contiguous [b, h, l, d] view of `data`. */
static cla_ref_tensor tensor(const float *data, size_t b, size_t h, size_t l, size_t d) {
    cla_ref_tensor t = {data, {b, h, l, d}, {h * l * d, l * d, d, 1}};
    return t;
}

/* Arguments with no mask, no window, and the given inputs and outputs. */
static cla_ref_sdpa plain(cla_ref_tensor q, cla_ref_tensor k, cla_ref_tensor v, double scale, double *out) {
    cla_ref_sdpa a = {.q = q, .k = k, .v = v, .scale = scale, .out = out};
    a.causal = CLATTN_CAUSAL_NONE;
    a.window_left = a.window_right = CLATTN_WINDOW_UNBOUNDED;
    return a;
}

static void fill(double *p, size_t n, double value) {
    for (size_t i = 0; i < n; i++) p[i] = value;
}

static void assert_close(double got, double want) {
    if (!(fabs(got - want) <= TOL * (1.0 + fabs(want)))) fail_msg("got %.17g, want %.17g", got, want);
}

static void test_basic_softmax(void **state) {
    (void)state;
    /* logits 0 and ln 3 give weights 1/4 and 3/4. */
    const float q[] = {1.0f}, k[] = {0.0f, 1.0f}, v[] = {1.0f, 5.0f};
    double out[1], lse[1], w[2];
    cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 1), log(3.0), out);
    a.lse = lse;
    a.weights = w;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(w[0], 0.25);
    assert_close(w[1], 0.75);
    assert_close(out[0], 0.25 * 1.0 + 0.75 * 5.0);
    assert_close(lse[0], log(4.0));
}

static void test_key_allowed(void **state) {
    (void)state;
    const int64_t U = CLATTN_WINDOW_UNBOUNDED;
    const clattn_window_align D = CLATTN_WINDOW_ALIGN_DEFAULT, TL = CLATTN_WINDOW_ALIGN_TOP_LEFT,
                              BR = CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT;
    /* No causal, no window: everything. */
    assert_true(cla_sdpa_key_allowed(0, 9, 1, 10, CLATTN_CAUSAL_NONE, D, U, U));
    /* Top-left: j <= i whatever the lengths. */
    assert_true(cla_sdpa_key_allowed(1, 1, 2, 5, CLATTN_CAUSAL_TOP_LEFT, D, U, U));
    assert_false(cla_sdpa_key_allowed(1, 2, 2, 5, CLATTN_CAUSAL_TOP_LEFT, D, U, U));
    /* Bottom-right: j <= i + Lk - Lq. */
    assert_true(cla_sdpa_key_allowed(1, 4, 2, 5, CLATTN_CAUSAL_BOTTOM_RIGHT, D, U, U));
    assert_false(cla_sdpa_key_allowed(0, 4, 2, 5, CLATTN_CAUSAL_BOTTOM_RIGHT, D, U, U));
    assert_true(cla_sdpa_key_allowed(0, 3, 2, 5, CLATTN_CAUSAL_BOTTOM_RIGHT, D, U, U));
    /* Bottom-right with Lq > Lk: the first queries see nothing. */
    assert_false(cla_sdpa_key_allowed(0, 0, 3, 2, CLATTN_CAUSAL_BOTTOM_RIGHT, D, U, U));
    assert_true(cla_sdpa_key_allowed(1, 0, 3, 2, CLATTN_CAUSAL_BOTTOM_RIGHT, D, U, U));
    /* Window without causal: i - left <= j <= i + right. */
    assert_false(cla_sdpa_key_allowed(5, 3, 10, 10, CLATTN_CAUSAL_NONE, D, 1, 1));
    assert_true(cla_sdpa_key_allowed(5, 4, 10, 10, CLATTN_CAUSAL_NONE, D, 1, 1));
    assert_true(cla_sdpa_key_allowed(5, 6, 10, 10, CLATTN_CAUSAL_NONE, D, 1, 1));
    assert_false(cla_sdpa_key_allowed(5, 7, 10, 10, CLATTN_CAUSAL_NONE, D, 1, 1));
    /* Window sides are independent; 0 means the diagonal only on that side. */
    assert_true(cla_sdpa_key_allowed(5, 0, 10, 10, CLATTN_CAUSAL_NONE, D, U, 0));
    assert_false(cla_sdpa_key_allowed(5, 6, 10, 10, CLATTN_CAUSAL_NONE, D, U, 0));
    assert_true(cla_sdpa_key_allowed(5, 9, 10, 10, CLATTN_CAUSAL_NONE, D, 0, U));
    assert_false(cla_sdpa_key_allowed(5, 4, 10, 10, CLATTN_CAUSAL_NONE, D, 0, U));
    /* The window follows the bottom-right position i' = i + Lk - Lq. */
    assert_true(cla_sdpa_key_allowed(0, 2, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, D, 0, U));
    assert_false(cla_sdpa_key_allowed(0, 1, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, D, 0, U));
    assert_false(cla_sdpa_key_allowed(0, 2, 2, 4, CLATTN_CAUSAL_TOP_LEFT, D, 0, U));
    /* The window's own alignment: bottom-right without causal masking (FlashAttention's), top-left under a
     * bottom-right causal mask, which keeps its own. */
    assert_true(cla_sdpa_key_allowed(0, 2, 2, 4, CLATTN_CAUSAL_NONE, BR, 0, 0));
    assert_false(cla_sdpa_key_allowed(0, 0, 2, 4, CLATTN_CAUSAL_NONE, BR, 0, 0));
    assert_true(cla_sdpa_key_allowed(0, 0, 2, 4, CLATTN_CAUSAL_NONE, TL, 0, 0));
    assert_true(cla_sdpa_key_allowed(1, 3, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, TL, 0, U));
    assert_false(cla_sdpa_key_allowed(1, 0, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, TL, 0, U));
    assert_true(cla_sdpa_key_allowed(1, 1, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, TL, 0, U));
    assert_int_equal(cla_sdpa_window_pos(1, 2, 4, CLATTN_CAUSAL_TOP_LEFT, BR), 3);
    assert_int_equal(cla_sdpa_window_pos(1, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, D), 3);
    assert_int_equal(cla_sdpa_window_pos(1, 2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, TL), 1);
    /* Causal and a right window: causal still wins. */
    assert_false(cla_sdpa_key_allowed(2, 3, 5, 5, CLATTN_CAUSAL_TOP_LEFT, D, U, 5));
    /* Huge windows must not overflow into "masked". */
    assert_true(cla_sdpa_key_allowed(0, 9, 10, 10, CLATTN_CAUSAL_NONE, D, INT64_MAX, INT64_MAX));
    assert_true(cla_sdpa_key_allowed(9, 0, 10, 10, CLATTN_CAUSAL_NONE, D, INT64_MAX, INT64_MAX));
    assert_true(cla_sdpa_key_allowed(3, 0, 5, 2, CLATTN_CAUSAL_BOTTOM_RIGHT, D, INT64_MAX, 0));
    assert_false(cla_sdpa_key_allowed(4, 0, 5, 2, CLATTN_CAUSAL_NONE, D, 3, INT64_MAX));
}

/* With q = 0 every logit is 0, so a row averages the values of its allowed keys. */
static void run_uniform(size_t lq, size_t lk, clattn_causal causal, int64_t left, int64_t right, double *out,
                        double *lse) {
    float q[8] = {0}, v[8];
    float k[8] = {0};
    for (size_t j = 0; j < lk; j++)
        v[j] = powf(10.0f, (float)j); /* 1, 10, 100, ...: each subset of keys gives a distinct mean */
    cla_ref_sdpa a = plain(tensor(q, 1, 1, lq, 1), tensor(k, 1, 1, lk, 1), tensor(v, 1, 1, lk, 1), 1.0, out);
    a.causal = causal;
    a.window_left = left;
    a.window_right = right;
    a.lse = lse;
    fill(out, lq, NAN);
    fill(lse, lq, NAN);
    assert_int_equal(cla_reference_sdpa(&a), 0);
}

static void test_causal_top_left(void **state) {
    (void)state;
    double out[3], lse[3];
    /* Lq = 2 < Lk = 3: row 0 sees key 0, row 1 keys 0..1. */
    run_uniform(2, 3, CLATTN_CAUSAL_TOP_LEFT, -1, -1, out, lse);
    assert_close(out[0], 1.0);
    assert_close(out[1], 5.5);
    assert_close(lse[0], 0.0);
    assert_close(lse[1], log(2.0));
    /* Lq = 3 > Lk = 2: row 2 sees both keys (j <= 2 clipped to Lk). */
    run_uniform(3, 2, CLATTN_CAUSAL_TOP_LEFT, -1, -1, out, lse);
    assert_close(out[0], 1.0);
    assert_close(out[1], 5.5);
    assert_close(out[2], 5.5);
}

static void test_causal_bottom_right(void **state) {
    (void)state;
    double out[3], lse[3];
    /* Lq = 2 < Lk = 3: i' = i + 1, so row 0 sees keys 0..1, row 1 all three. */
    run_uniform(2, 3, CLATTN_CAUSAL_BOTTOM_RIGHT, -1, -1, out, lse);
    assert_close(out[0], 5.5);
    assert_close(out[1], 37.0);
    assert_close(lse[1], log(3.0));
    /* Lq = 3 > Lk = 2: i' = i - 1; row 0 sees no key at all and is zero with lse -inf. */
    run_uniform(3, 2, CLATTN_CAUSAL_BOTTOM_RIGHT, -1, -1, out, lse);
    assert_true(out[0] == 0.0 && !signbit(out[0]));
    assert_true(isinf(lse[0]) && lse[0] < 0);
    assert_close(out[1], 1.0);
    assert_close(out[2], 5.5);
    /* Equal lengths: both alignments agree. */
    double out2[3], lse2[3];
    run_uniform(3, 3, CLATTN_CAUSAL_BOTTOM_RIGHT, -1, -1, out, lse);
    run_uniform(3, 3, CLATTN_CAUSAL_TOP_LEFT, -1, -1, out2, lse2);
    for (int i = 0; i < 3; i++) assert_close(out[i], out2[i]);
}

static void test_window(void **state) {
    (void)state;
    double out[5], lse[5];
    /* Window left 1, right 0, no causal, Lq = Lk = 5: row i sees keys i-1 and i. */
    run_uniform(5, 5, CLATTN_CAUSAL_NONE, 1, 0, out, lse);
    assert_close(out[0], 1.0);
    assert_close(out[2], (10.0 + 100.0) / 2);
    assert_close(out[4], (1000.0 + 10000.0) / 2);
    /* Right only: row 2 sees keys 0..3. */
    run_uniform(5, 5, CLATTN_CAUSAL_NONE, -1, 1, out, lse);
    assert_close(out[2], (1.0 + 10.0 + 100.0 + 1000.0) / 4);
    assert_close(out[4], 11111.0 / 5);
    /* Left only: row 2 sees keys 2..4. */
    run_uniform(5, 5, CLATTN_CAUSAL_NONE, 0, -1, out, lse);
    assert_close(out[2], (100.0 + 1000.0 + 10000.0) / 3);
    /* Bottom-right causal plus window left 1 with Lq 2, Lk 4: row 0 (i' = 2) sees 1..2, row 1 (i' = 3) 2..3. */
    run_uniform(2, 4, CLATTN_CAUSAL_BOTTOM_RIGHT, 1, -1, out, lse);
    assert_close(out[0], (10.0 + 100.0) / 2);
    assert_close(out[1], (100.0 + 1000.0) / 2);
    /* Top-left causal plus window left 1, same shape: row 0 sees 0, row 1 sees 0..1. */
    run_uniform(2, 4, CLATTN_CAUSAL_TOP_LEFT, 1, -1, out, lse);
    assert_close(out[0], 1.0);
    assert_close(out[1], 5.5);
    /* A window that excludes every key of a row: right -1 is unbounded, so use a left window with causal where
     * Lq > Lk and bottom-right leaves row 0 empty. */
    run_uniform(3, 2, CLATTN_CAUSAL_BOTTOM_RIGHT, 0, -1, out, lse);
    assert_true(out[0] == 0.0);
    assert_true(isinf(lse[0]) && lse[0] < 0);
}

static void test_gqa_head_mapping(void **state) {
    (void)state;
    /* Hq = 4, Hkv = 2, one key: each output head equals the value of its kv head. Heads 0,1 share kv head 0 and
     * heads 2,3 kv head 1 (h / (Hq/Hkv)), not h % Hkv. */
    const float q[4] = {1, 1, 1, 1}, k[2] = {1, 1}, v[2] = {10, 20};
    double out[4];
    cla_ref_sdpa a = plain(tensor(q, 1, 4, 1, 1), tensor(k, 1, 2, 1, 1), tensor(v, 1, 2, 1, 1), 1.0, out);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], 10);
    assert_close(out[1], 10);
    assert_close(out[2], 20);
    assert_close(out[3], 20);

    /* With two keys whose logits differ per kv head: kv head 0 keys (0, 1), kv head 1 keys (1, 0), q = ln 3. */
    const float q2[6] = {1, 1, 1, 1, 1, 1}, k2[4] = {0, 1, 1, 0}, v2[4] = {0, 4, 0, 4};
    double out2[6];
    a = plain(tensor(q2, 1, 6, 1, 1), tensor(k2, 1, 2, 2, 1), tensor(v2, 1, 2, 2, 1), log(3.0), out2);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (int h = 0; h < 3; h++) assert_close(out2[h], 3.0);
    for (int h = 3; h < 6; h++) assert_close(out2[h], 1.0);

    /* Hq not a multiple of Hkv is refused, as is a missing output. */
    a = plain(tensor(q, 1, 3, 1, 1), tensor(k, 1, 2, 1, 1), tensor(v, 1, 2, 1, 1), 1.0, out);
    assert_int_equal(cla_reference_sdpa(&a), -1);
    a = plain(tensor(q, 1, 4, 1, 1), tensor(k, 1, 2, 1, 1), tensor(v, 1, 2, 1, 1), 1.0, NULL);
    assert_int_equal(cla_reference_sdpa(&a), -1);
}

static void test_additive_mask_broadcast(void **state) {
    (void)state;
    /* B = 2, H = 2, Lq = 1, Lk = 2, q = 0: the logits are the mask itself. A mask of (0, c) gives weights
     * 1/(1+e^c), e^c/(1+e^c); with values 1 and 5 the output is (1 + 5 e^c) / (1 + e^c), 4 for c = ln 3 (computed
     * from the float that actually holds ln 3). */
    const float q[4] = {0}, k[8] = {0}, v[8] = {1, 5, 1, 5, 1, 5, 1, 5};
    double out[4], w[8];
    const float c = (float)log(3.0);
    const double r = exp((double)c), hi = (1.0 + 5.0 * r) / (1.0 + r), lo = (r + 5.0) / (1.0 + r);
    const float row[2] = {0.0f, c};

    /* One row broadcast over batch and heads through zero strides. */
    cla_ref_sdpa a = plain(tensor(q, 2, 2, 1, 1), tensor(k, 2, 2, 2, 1), tensor(v, 2, 2, 2, 1), 1.0, out);
    a.weights = w;
    a.mask = (cla_ref_tensor){row, {2, 2, 1, 2}, {0, 0, 0, 1}};
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (int i = 0; i < 4; i++) {
        assert_close(out[i], hi);
        assert_close(w[2 * i], 1.0 / (1.0 + r));
        assert_close(w[2 * i + 1], r / (1.0 + r));
    }

    /* Per batch, broadcast over heads through size 1: batch 0 prefers key 1, batch 1 key 0. */
    const float per_batch[4] = {0.0f, c, c, 0.0f};
    a.mask = (cla_ref_tensor){per_batch, {2, 1, 1, 2}, {2, 2, 2, 1}};
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], hi);
    assert_close(out[1], hi);
    assert_close(out[2], lo);
    assert_close(out[3], lo);

    /* Per head, broadcast over batch. */
    a.mask = (cla_ref_tensor){per_batch, {1, 2, 1, 2}, {0, 2, 2, 1}};
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], hi);
    assert_close(out[1], lo);
    assert_close(out[2], hi);
    assert_close(out[3], lo);
}

static void test_additive_mask_threshold(void **state) {
    (void)state;
    /* -inf and -FLT_MAX mask exactly: a row of only those keys is fully masked. A value just above -FLT_MAX is an
     * ordinary (very negative) logit, so a row of one such key keeps it with weight 1. */
    const float q[3] = {0}, k[2] = {0}, v[2] = {3, 7};
    double out[3], lse[3], w[6];
    const float m[6] = {-INFINITY, 2.0f, -FLT_MAX, -FLT_MAX, -1e38f, -INFINITY};
    cla_ref_sdpa a = plain(tensor(q, 1, 1, 3, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 1), 1.0, out);
    a.mask = tensor(m, 1, 1, 3, 2);
    a.lse = lse;
    a.weights = w;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    /* Row 0: only key 1. */
    assert_true(w[0] == 0.0);
    assert_true(w[1] == 1.0);
    assert_close(out[0], 7.0);
    assert_close(lse[0], 2.0);
    /* Row 1: both keys at -FLT_MAX: masked. */
    assert_true(out[1] == 0.0 && w[2] == 0.0 && w[3] == 0.0);
    assert_true(isinf(lse[1]) && lse[1] < 0);
    /* Row 2: key 0 at -1e38 takes part. */
    assert_true(w[4] == 1.0 && w[5] == 0.0);
    assert_close(out[2], 3.0);
    assert_close(lse[2], (double)-1e38f);
}

static void test_bool_mask(void **state) {
    (void)state;
    /* Lq = 3, Lk = 3, q = 0, mask broadcast over B = 2 through size 1. */
    const float q[6] = {0}, k[6] = {0}, v[6] = {1, 10, 100, 2, 20, 200};
    const uint8_t bm[9] = {1, 0, 1, 0, 0, 0, 0, 7, 0};
    double out[6], lse[6], w[18];
    cla_ref_sdpa a = plain(tensor(q, 2, 1, 3, 1), tensor(k, 2, 1, 3, 1), tensor(v, 2, 1, 3, 1), 1.0, out);
    a.bool_mask = (cla_ref_bool_tensor){bm, {1, 1, 3, 3}, {9, 9, 3, 1}};
    a.lse = lse;
    a.weights = w;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], 50.5);
    assert_close(lse[0], log(2.0));
    assert_true(out[1] == 0.0 && isinf(lse[1]) && lse[1] < 0);
    for (int j = 0; j < 3; j++) assert_true(w[3 + j] == 0.0);
    assert_close(out[2], 10.0); /* any nonzero byte keeps the key */
    assert_close(out[3], 101.0);
    assert_true(out[4] == 0.0);
    assert_close(out[5], 20.0);
}

static void test_key_lengths(void **state) {
    (void)state;
    /* B = 4, Lk = 3, q = 0: lengths 1, 2, 99 (clamped to Lk) and -5 (clamped to 0: fully masked). */
    const float q[4] = {0}, k[12] = {0};
    const float v[12] = {1, 10, 100, 1, 10, 100, 1, 10, 100, 1, 10, 100};
    const int32_t lengths[4] = {1, 2, 99, -5};
    double out[4], lse[4];
    cla_ref_sdpa a = plain(tensor(q, 4, 1, 1, 1), tensor(k, 4, 1, 3, 1), tensor(v, 4, 1, 3, 1), 1.0, out);
    a.key_lengths = lengths;
    a.lse = lse;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], 1.0);
    assert_close(out[1], 5.5);
    assert_close(out[2], 37.0);
    assert_true(out[3] == 0.0 && isinf(lse[3]) && lse[3] < 0);
}

static void test_nan_propagates(void **state) {
    (void)state;
    /* NaN in q, in an unmasked k, in an unmasked v, and in the additive mask each reach the output. The other
     * key has a large logit so that a maximum that skipped NaN would be visible in lse. */
    double out[2], lse[1];
    for (int where = 0; where < 4; where++) {
        float q[1] = {1}, k[2] = {0, 50}, v[4] = {1, 2, 3, 4}, m[2] = {0, 0};
        if (where == 0)
            q[0] = NAN;
        else if (where == 1)
            k[0] = NAN;
        else if (where == 2)
            v[0] = NAN;
        else
            m[0] = NAN;
        cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 2), 1.0, out);
        a.mask = tensor(m, 1, 1, 1, 2);
        a.lse = lse;
        assert_int_equal(cla_reference_sdpa(&a), 0);
        assert_true(isnan(out[0]));
        if (where != 2) {
            assert_true(isnan(out[1]));
            assert_true(isnan(lse[0]));
        } else {
            assert_false(isnan(out[1])); /* a NaN in one value column stays in that column */
            assert_false(isnan(lse[0]));
        }
    }
}

static void test_nan_only_key(void **state) {
    (void)state;
    /* The only key that takes part has a NaN logit: the row is not "fully masked" (which would give zeros), its
     * output and lse are NaN. Catches code that decides "fully masked" from a maximum that skipped the NaN. */
    const float q[1] = {NAN}, k[2] = {1, 1}, v[2] = {1, 2};
    const float m[2] = {0, -INFINITY};
    double out[1], lse[1];
    cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 1), 1.0, out);
    a.mask = tensor(m, 1, 1, 1, 2);
    a.lse = lse;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_true(isnan(out[0]));
    assert_true(isnan(lse[0]));
}

static void test_nan_in_masked_key_does_not_propagate(void **state) {
    (void)state;
    /* Key 1 holds NaN in k and v and is masked in four different ways in turn. */
    const float q[1] = {1}, k[2] = {0, NAN}, v[2] = {3, NAN};
    const float m[2] = {0, -INFINITY};
    const uint8_t bm[2] = {1, 0};
    const int32_t len[1] = {1};
    for (int how = 0; how < 5; how++) {
        double out[1], lse[1], w[2];
        cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 1), 1.0, out);
        a.lse = lse;
        a.weights = w;
        if (how == 0)
            a.mask = tensor(m, 1, 1, 1, 2);
        else if (how == 1)
            a.bool_mask = (cla_ref_bool_tensor){bm, {1, 1, 1, 2}, {2, 2, 2, 1}};
        else if (how == 2)
            a.key_lengths = len;
        else if (how == 3)
            a.causal = CLATTN_CAUSAL_TOP_LEFT; /* Lq 1: row 0 sees key 0 only */
        else
            a.window_right = 0;
        assert_int_equal(cla_reference_sdpa(&a), 0);
        assert_close(out[0], 3.0);
        assert_close(lse[0], 0.0);
        assert_true(w[0] == 1.0 && w[1] == 0.0);
    }
}

/* A small deterministic generator, so that the tests do not depend on the C library's rand(). */
static double uniform(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 4.0 - 2.0;
}

static void test_shift_invariance(void **state) {
    (void)state;
    /* Adding a constant to every logit of a row leaves out and weights unchanged and shifts lse by it. */
    enum { B = 1, H = 2, LQ = 3, LK = 5, D = 4 };
    float q[B * H * LQ * D], k[B * H * LK * D], v[B * H * LK * D], m0[LQ * LK], m1[LQ * LK];
    uint64_t s = 42;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = (float)uniform(&s);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        k[i] = (float)uniform(&s);
        v[i] = (float)uniform(&s);
    }
    const float shift = 37.0f;
    for (int i = 0; i < LQ * LK; i++) {
        m0[i] = (float)(int)(uniform(&s) * 4) / 4.0f; /* quarters: adding 37 stays exact */
        m1[i] = m0[i] + shift;
    }
    double out0[B * H * LQ * D], out1[B * H * LQ * D], lse0[B * H * LQ], lse1[B * H * LQ];
    double w0[B * H * LQ * LK], w1[B * H * LQ * LK];
    cla_ref_sdpa a = plain(tensor(q, B, H, LQ, D), tensor(k, B, H, LK, D), tensor(v, B, H, LK, D), 0.5, out0);
    a.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    a.mask = (cla_ref_tensor){m0, {1, 1, LQ, LK}, {0, 0, LK, 1}};
    a.lse = lse0;
    a.weights = w0;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    a.mask.data = m1;
    a.out = out1;
    a.lse = lse1;
    a.weights = w1;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (size_t i = 0; i < sizeof out0 / sizeof out0[0]; i++) assert_true(fabs(out0[i] - out1[i]) <= 1e-12);
    for (size_t i = 0; i < sizeof w0 / sizeof w0[0]; i++) assert_true(fabs(w0[i] - w1[i]) <= 1e-12);
    for (size_t i = 0; i < sizeof lse0 / sizeof lse0[0]; i++) assert_close(lse1[i], lse0[i] + shift);
    /* And the weights of each row sum to one. */
    for (int r = 0; r < B * H * LQ; r++) {
        double sum = 0;
        for (int j = 0; j < LK; j++) sum += w0[r * LK + j];
        assert_close(sum, 1.0);
    }
}

static void test_large_logits(void **state) {
    (void)state;
    /* Logits 1e4 and 1e4 - 100: a naive exp overflows; the stable softmax must not. */
    const float q[1] = {100}, k[2] = {100, 99}, v[2] = {1, 2};
    double out[1], lse[1], w[2];
    cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 1), tensor(k, 1, 1, 2, 1), tensor(v, 1, 1, 2, 1), 1.0, out);
    a.lse = lse;
    a.weights = w;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    double e = exp(-100.0);
    assert_true(isfinite(out[0]) && isfinite(lse[0]));
    assert_close(w[0], 1.0 / (1.0 + e));
    assert_close(w[1], e / (1.0 + e));
    assert_close(out[0], (1.0 + 2.0 * e) / (1.0 + e));
    assert_close(lse[0], 1e4 + log1p(e));
    /* Large negative logits as well (all keys at about -1e4). */
    a.scale = -1.0;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(w[1], 1.0 / (1.0 + e));
    assert_close(lse[0], -9900.0 + log1p(e));
}

static void test_strided_layout(void **state) {
    (void)state;
    /* q stored as [B, L, H, D] and viewed through strides gives the same result as the contiguous copy. */
    enum { B = 2, H = 3, L = 4, D = 2 };
    float qb[B * H * L * D], ql[B * L * H * D], k[B * H * L * D], v[B * H * L * D];
    uint64_t s = 7;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int l = 0; l < L; l++)
                for (int d = 0; d < D; d++) {
                    float x = (float)uniform(&s);
                    qb[((b * H + h) * L + l) * D + d] = x;
                    ql[((b * L + l) * H + h) * D + d] = x;
                }
    for (int i = 0; i < B * H * L * D; i++) {
        k[i] = (float)uniform(&s);
        v[i] = (float)uniform(&s);
    }
    double o1[B * H * L * D], o2[B * H * L * D];
    cla_ref_sdpa a = plain(tensor(qb, B, H, L, D), tensor(k, B, H, L, D), tensor(v, B, H, L, D), 0.7, o1);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    a.q = (cla_ref_tensor){ql, {B, H, L, D}, {L * H * D, D, H * D, 1}};
    a.out = o2;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (int i = 0; i < B * H * L * D; i++) assert_true(o1[i] == o2[i]);
}

static void test_different_value_dim(void **state) {
    (void)state;
    /* Dk = 2, Dv = 3. logits: q.k0 = 0, q.k1 = ln 3 (scale ln 3, q = (1, 0), k1 = (1, 5)). */
    const float q[2] = {1, 0}, k[4] = {0, 9, 1, 5}, v[6] = {1, 2, 3, 5, 6, 7};
    double out[3];
    cla_ref_sdpa a = plain(tensor(q, 1, 1, 1, 2), tensor(k, 1, 1, 2, 2), tensor(v, 1, 1, 2, 3), log(3.0), out);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], 0.25 * 1 + 0.75 * 5);
    assert_close(out[1], 0.25 * 2 + 0.75 * 6);
    assert_close(out[2], 0.25 * 3 + 0.75 * 7);
}

static void test_sampled_rows(void **state) {
    (void)state;
    /* One row computed alone, placed by q_first and q_seq_len, equals that row of the whole computation under
     * both causal alignments and a window: what the large tests rely on to check a sample of rows. */
    enum { LQ = 5, LK = 7, D = 3 };
    float q[LQ * D], k[LK * D], v[LK * D];
    uint64_t s = 11;
    for (int i = 0; i < LQ * D; i++) q[i] = (float)uniform(&s);
    for (int i = 0; i < LK * D; i++) {
        k[i] = (float)uniform(&s);
        v[i] = (float)uniform(&s);
    }
    static const clattn_causal causal[] = {CLATTN_CAUSAL_TOP_LEFT, CLATTN_CAUSAL_BOTTOM_RIGHT, CLATTN_CAUSAL_NONE};
    for (int c = 0; c < 3; c++) {
        double all[LQ * D], all_lse[LQ], all_w[LQ * LK], one[D], one_lse[1], one_w[LK];
        cla_ref_sdpa a = plain(tensor(q, 1, 1, LQ, D), tensor(k, 1, 1, LK, D), tensor(v, 1, 1, LK, D), 0.6, all);
        a.causal = causal[c];
        a.window_left = c == 2 ? 2 : CLATTN_WINDOW_UNBOUNDED;
        a.window_right = c == 2 ? 1 : CLATTN_WINDOW_UNBOUNDED;
        a.lse = all_lse;
        a.weights = all_w;
        assert_int_equal(cla_reference_sdpa(&a), 0);
        for (size_t i = 0; i < LQ; i++) {
            cla_ref_sdpa r = a;
            r.q = tensor(q + i * D, 1, 1, 1, D);
            r.q_first = i;
            r.q_seq_len = LQ;
            r.out = one;
            r.lse = one_lse;
            r.weights = one_w;
            assert_int_equal(cla_reference_sdpa(&r), 0);
            for (int d = 0; d < D; d++) assert_true(one[d] == all[i * D + d]);
            for (int j = 0; j < LK; j++) assert_true(one_w[j] == all_w[i * LK + j]);
            assert_true(one_lse[0] == all_lse[i] || (isinf(one_lse[0]) && isinf(all_lse[i])));
        }
    }
}

static void test_empty_sizes(void **state) {
    (void)state;
    const float one[4] = {1, 1, 1, 1};
    double out[8], lse[4], w[4];

    /* Lk = 0: every row is fully masked; data pointers of k and v are never read. */
    fill(out, 8, NAN);
    fill(lse, 4, NAN);
    cla_ref_sdpa a = plain(tensor(one, 1, 2, 2, 1), tensor(NULL, 1, 2, 0, 1), tensor(NULL, 1, 2, 0, 2), 1.0, out);
    a.lse = lse;
    a.weights = w;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (int i = 0; i < 8; i++) assert_true(out[i] == 0.0);
    for (int i = 0; i < 4; i++) assert_true(isinf(lse[i]) && lse[i] < 0);

    /* Lq = 0 and B = 0: nothing is written, and nothing goes wrong. */
    fill(out, 8, 123.0);
    a = plain(tensor(NULL, 1, 2, 0, 1), tensor(one, 1, 2, 2, 1), tensor(one, 1, 2, 2, 1), 1.0, out);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    a = plain(tensor(NULL, 0, 2, 2, 1), tensor(NULL, 0, 2, 2, 1), tensor(NULL, 0, 2, 2, 1), 1.0, out);
    a.key_lengths = NULL;
    assert_int_equal(cla_reference_sdpa(&a), 0);
    /* Zero heads on both sides is empty too, not a division by zero. */
    a = plain(tensor(NULL, 1, 0, 2, 1), tensor(NULL, 1, 0, 2, 1), tensor(NULL, 1, 0, 2, 1), 1.0, out);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    for (int i = 0; i < 8; i++) assert_true(out[i] == 123.0);

    /* Dk = 0: every logit is 0 (plus the mask), so the row averages its values. */
    const float v2[2] = {2, 4};
    a = plain(tensor(NULL, 1, 1, 1, 0), tensor(NULL, 1, 1, 2, 0), tensor(v2, 1, 1, 2, 1), 1.0, out);
    assert_int_equal(cla_reference_sdpa(&a), 0);
    assert_close(out[0], 3.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_softmax),
        cmocka_unit_test(test_key_allowed),
        cmocka_unit_test(test_causal_top_left),
        cmocka_unit_test(test_causal_bottom_right),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_gqa_head_mapping),
        cmocka_unit_test(test_additive_mask_broadcast),
        cmocka_unit_test(test_additive_mask_threshold),
        cmocka_unit_test(test_bool_mask),
        cmocka_unit_test(test_key_lengths),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_nan_only_key),
        cmocka_unit_test(test_nan_in_masked_key_does_not_propagate),
        cmocka_unit_test(test_shift_invariance),
        cmocka_unit_test(test_large_logits),
        cmocka_unit_test(test_strided_layout),
        cmocka_unit_test(test_different_value_dim),
        cmocka_unit_test(test_sampled_rows),
        cmocka_unit_test(test_empty_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
