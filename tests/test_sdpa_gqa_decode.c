// SPDX-License-Identifier: Apache-2.0
/* Decode-shaped calls (Lq 1 to 5) with grouped-query heads against the double-precision reference, for the CPU
 * kernel's packed row shape (gqa_pack: a work-item takes the rows of every query head sharing a key/value head) and
 * its unpacked form: groups 1, 3, 4 and 8 (up to 40 packed rows, shared unevenly between work-items), with masks of
 * each broadcast shape, both causal alignments and windows, key lengths with NaN padding, the score modifiers (each
 * packed row its own head's sink and slope), fp16/bf16, strided layouts, Dv != Dk, tile edges and key splits. */
#include "sdpa_case.h"

#include "internal.h"

#include <string.h>

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

/* The overrides each case runs under: the defaults (packed), unpacked, and small tiles with forced key splits
 * (tiles that end mid-group of eight, splits that end mid-row-range). */
static const char *const cpu_params[] = {NULL, "variant=cpu,rows=1,gqa_pack=0",
                                         "variant=cpu,rows=1,block_n=8,splits=3"};
/* With the argument `decode` (CTest's test_sdpa_decode): the GPU decode kernel (sdpa_decode.cl) instead, its
 * defaults (the key splits the shape asks for), a group smaller than a value row with two keys a work-item and
 * forced splits (tiles end inside the keys, splits inside a row's range), and a row bound above the call's rows.
 * Calls past its 16 packed rows (group 8 with 5 rows) take the flash kernel, as the dispatcher must. */
static const char *const decode_params[] = {"variant=decode", "variant=decode,block_n=8,wg=4,splits=3",
                                            "variant=decode,rows=16,block_n=12,wg=4"};
static const char *const *params = cpu_params;
static size_t param_count = CLA_ARRAY_SIZE(cpu_params);

/* Case `variant` of a decode call with `group` query heads per key/value head and q_len rows. */
static sdpa_case decode_case(int variant, size_t group, size_t q_len) {
    static const int32_t kl[2] = {37, 0};
    const size_t kv_heads = variant % 2 ? 1 : 2;
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 2, group * kv_heads, kv_heads, q_len, 61 + 7 * (size_t)variant,
                               variant == 4 ? 72 : 24);
    c.want_lse = true;
    c.seed = (unsigned)(variant * 100 + (int)group * 10 + (int)q_len);
    switch (variant) {
    case 0: /* plain */
        break;
    case 1: /* an additive mask per (batch, head, row), and key lengths with NaN in the padding */
        c.mask_kind = MASK_ADD;
        c.mask_fill_prob = 0.3f;
        c.key_lengths = kl;
        c.nan_in_padding = true;
        break;
    case 2: /* a boolean mask broadcast over heads, bottom-right causal with a window */
        c.mask_kind = MASK_BOOL;
        c.mask_bcast_heads = true;
        c.mask_fill_prob = 0.2f;
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.window_left = 30;
        break;
    case 3: /* the modifiers, top-left causal (later rows see more keys), a padding mask [B, 1, 1, Lk] */
        c.softcap = 1.5f;
        c.sinks = true;
        c.alibi = true;
        c.causal = CLATTN_CAUSAL_TOP_LEFT;
        c.mask_kind = MASK_ADD;
        c.mask_bcast_heads = c.mask_bcast_q = true;
        c.mask_stride0 = true;
        c.mask_fill_prob = 0.1f;
        break;
    case 4: /* fp16, the other layout with an offset, Dv != Dk, a window on both sides */
        c.dtype = CLATTN_DTYPE_F16;
        c.layout = LAYOUT_BLHD;
        c.offset = 3;
        c.v_head_dim = 40;
        c.window_left = 20;
        c.window_right = 9;
        break;
    default: /* bf16, padded rows (larger strides), sinks and key lengths, a mask whose every key is masked */
        c.dtype = CLATTN_DTYPE_BF16;
        c.row_pad = 3;
        c.sinks = true;
        c.sink_bias = 3.0f;
        c.key_lengths = kl;
        c.mask_kind = MASK_BOOL;
        c.mask_fill_prob = q_len == 2 ? 2.0f : 0.5f;
        break;
    }
    return c;
}

static void groups_rows_and_features(void **state) {
    (void)state;
    static const size_t groups[] = {1, 3, 4, 8}, rows[] = {1, 2, 5};
    for (size_t p = 0; p < param_count; ++p) {
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", params[p]), CLATTN_SUCCESS);
        for (size_t g = 0; g < CLA_ARRAY_SIZE(groups); ++g)
            for (size_t r = 0; r < CLA_ARRAY_SIZE(rows); ++r)
                /* Half the variants per shape, each variant over every group and row count. */
                for (int variant = (int)(g + r) % 2; variant < 6; variant += 2) {
                    const sdpa_case c = decode_case(variant, groups[g], rows[r]);
                    sdpa_case_run(ctx, &c, NULL);
                }
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* Long keys: the defaults split them (few work-items for the device), and wide heads leave fewer packed rows to a
 * work-item (their state must fit the worker's stack). */
static void long_keys_and_wide_heads(void **state) {
    (void)state;
    static const size_t dims[][2] = {{128, 128}, {576, 512}};
    /* The first override of the list: NULL (the defaults) or the decode kernel's. */
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", params[0]), CLATTN_SUCCESS);
    for (size_t d = 0; d < CLA_ARRAY_SIZE(dims); ++d)
        for (size_t group = 4; group <= 8; group += 4) {
            sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, group, 1, d ? 3 : 1, 2500, dims[d][0]);
            c.v_head_dim = dims[d][1];
            c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
            c.sinks = true;
            c.alibi = true;
            c.alibi_slope = 0.01f;
            c.want_lse = true;
            c.seed = (unsigned)(d * 10 + group);
            sdpa_case_run(ctx, &c, NULL);
        }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* The GPU decode kernel's work split over head dims whose float4 value columns leave some of a group's work-items
 * without a column (3, 5, 6 and 9 columns in groups of 4, 8 and 16), with two packed rows (a GQA group of 2): such
 * shapes once lost the accumulators held across the end's barrier. */
static void value_columns_in_small_groups(void **state) {
    (void)state;
    static const size_t dims[] = {12, 20, 24, 36}, wgs[] = {4, 8, 16};
    for (size_t w = 0; w < CLA_ARRAY_SIZE(wgs); ++w) {
        char p[64];
        snprintf(p, sizeof p, "variant=decode,block_n=16,wg=%zu", wgs[w]);
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", p), CLATTN_SUCCESS);
        for (size_t d = 0; d < CLA_ARRAY_SIZE(dims); ++d) {
            sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 1, 4, 2, 1, 45, dims[d]);
            c.want_lse = true;
            c.seed = (unsigned)(w * 10 + d);
            sdpa_case_run(ctx, &c, NULL);
        }
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "decode") == 0) {
        params = decode_params;
        param_count = CLA_ARRAY_SIZE(decode_params);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(groups_rows_and_features),
        cmocka_unit_test(long_keys_and_wide_heads),
    };
    const struct CMUnitTest decode_tests[] = {
        cmocka_unit_test(groups_rows_and_features),
        cmocka_unit_test(long_keys_and_wide_heads),
        cmocka_unit_test(value_columns_in_small_groups),
    };
    /* CLATTN_TEST_FILTER (a cmocka pattern) runs some of the tests. */
    if (getenv("CLATTN_TEST_FILTER")) cmocka_set_test_filter(getenv("CLATTN_TEST_FILTER"));
    if (params == decode_params)
        return cmocka_run_group_tests_name("sdpa_gqa_decode", decode_tests, setup, teardown);
    return cmocka_run_group_tests_name("sdpa_gqa_decode", tests, setup, teardown);
}
