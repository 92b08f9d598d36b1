// SPDX-License-Identifier: Apache-2.0
/* The score modifiers (logit softcap, attention sinks, ALiBi) against the double-precision reference: on odd and
 * round shapes, alone and together, with every mask, causal alignment, window, key lengths, GQA, dtypes and
 * layouts, in the fused kernel's two variants (cpu: row and block shapes; tiled), with key splits (where the sinks
 * must join the merged row once), and in the unfused implementation. */
#include "sdpa_case.h"

#include "internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

static const clattn_impl impl_fused = CLATTN_IMPL_FUSED;
static const clattn_impl impl_unfused = CLATTN_IMPL_UNFUSED;

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

static clattn_impl impl_of(void **state) {
    return *(const clattn_impl *)*state;
}

/* Which modifiers a case of `which` (bits: 1 softcap, 2 sinks, 4 ALiBi) turns on. */
static void with_mods(sdpa_case *c, int which) {
    c->softcap = which & 1 ? 1.5f : 0.0f;
    c->sinks = (which & 2) != 0;
    c->alibi = (which & 4) != 0;
    c->want_lse = true;
}

/* Each modifier alone and all together over odd, round and tile +-1 shapes, Lq != Lk, decode rows. */
static void shapes(void **state) {
    static const size_t lens[][2] = {{1, 1}, {7, 33}, {33, 7}, {64, 64}, {65, 257}, {1, 300}, {24, 49}};
    for (int which = 1; which < 8; ++which)
        for (size_t s = 0; s < CLA_ARRAY_SIZE(lens); ++s) {
            sdpa_case c = sdpa_case_of(impl_of(state), 1, 2, 1, lens[s][0], lens[s][1], s % 2 ? 64 : 24);
            with_mods(&c, which);
            c.seed = (unsigned)(which * 16 + s);
            sdpa_case_run(ctx, &c, NULL);
        }
}

/* The softcap where it matters: logits far past the cap (tanh saturates) and small caps; fp16 and bf16 storage. */
static void softcap_saturates(void **state) {
    static const float caps[] = {0.25f, 3.0f, 30.0f};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(caps); ++i) {
        sdpa_case c = sdpa_case_of(impl_of(state), 2, 3, 3, 17, 41, 32);
        c.softcap = caps[i];
        c.input_scale = 8.0f;
        c.want_lse = true;
        c.dtype = (clattn_dtype)i; /* f32, f16, bf16 */
        c.seed = (unsigned)i;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* Every modifier with every mask kind, both causal alignments with windows, key lengths (with NaN padding) and
 * fully masked rows (where a sink still sets lse), GQA and the strided layouts. */
static void combinations(void **state) {
    static const int32_t kl[3] = {20, 0, 7};
    for (int variant = 0; variant < 8; ++variant) {
        sdpa_case c = sdpa_case_of(impl_of(state), 3, 4, 2, 13, variant == 4 ? 37 : 29, 40);
        with_mods(&c, 7);
        c.v_head_dim = variant == 5 ? 24 : 0;
        c.layout = variant % 2;
        c.offset = (size_t)variant % 3;
        c.row_pad = variant % 3 == 1 ? 3 : 0;
        c.mask_kind = variant == 0 ? MASK_ADD : variant == 1 || variant == 6 ? MASK_BOOL : MASK_NONE;
        c.mask_bcast_heads = variant == 1;
        c.mask_fill_prob = variant == 6 ? 0.9f : 0.3f;
        if (variant == 2) {
            c.key_lengths = kl;
            c.nan_in_padding = true;
        }
        c.causal = variant == 3 || variant == 5 ? CLATTN_CAUSAL_TOP_LEFT
                   : variant == 4               ? CLATTN_CAUSAL_BOTTOM_RIGHT
                                                : CLATTN_CAUSAL_NONE;
        if (variant == 4) c.window_left = 6;
        if (variant == 5) c.window_right = 2;
        if (variant == 7) {
            c.mask_kind = MASK_BOOL;
            c.mask_fill_prob = 2.0f; /* every key masked: zeros, and lse is the sink */
        }
        c.seed = (unsigned)variant;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* Wide heads (Gemma's 256 and 512, MLA's 576/512) with every modifier: prefill blocks, decode rows with key
 * splits, 16-bit storage. */
static void wide_heads(void **state) {
    static const size_t dims[][2] = {{256, 256}, {512, 512}, {576, 512}, {192, 128}};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(dims); ++i) {
        const bool decode = i % 2 == 1;
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 4, 1, decode ? 1 : 29, decode ? 1100 : 45, dims[i][0]);
        c.v_head_dim = dims[i][1];
        with_mods(&c, 7);
        c.alibi_slope = 0.05f;
        c.sink_bias = decode ? 5.0f : 0.0f;
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.dtype = (clattn_dtype)(i % 3);
        c.seed = (unsigned)i;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* Decode rows over long keys: one row (or three) of one head leaves the device idle, so the fused path splits the
 * keys, and the sink must join the merged row once. */
static void key_splits(void **state) {
    for (int which = 1; which < 8; ++which) {
        sdpa_case c = sdpa_case_of(impl_of(state), 1, 1, 1, which % 2 ? 1 : 3, 3000, 64);
        with_mods(&c, which);
        c.alibi_slope = 0.01f;
        c.sink_bias = 8.0f;
        c.causal = which == 5 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
        c.seed = (unsigned)which;
        sdpa_case_run(ctx, &c, NULL);
    }
}

/* The fused kernel's variants and shapes as overrides choose them: the tiled kernel (GPU variant) with and without
 * local memory, the CPU kernel's row shape (decode) and block shape, the flash kernel (GPU default; its two query
 * heads share a key head, so each packed row reads its own head's sink and slope), each with forced key splits. */
static void fused_variants(void **state) {
    (void)state;
    static const char *params[] = {
        "variant=tiled,rows=1,block_n=8,wg=4,local=1",
        "variant=tiled,rows=3,block_n=5,local=0",
        "variant=tiled,rows=1,block_n=8,wg=4,local=1,splits=3",
        "variant=cpu,rows=1,block_n=16",
        "variant=cpu,rows=8,block_n=8",
        "variant=cpu,rows=16,block_n=24,splits=2",
        "variant=flash",
        "variant=flash,rows=2,block_n=8,wg=8",
        "variant=flash,block_n=4,wg=4,splits=3",
    };
    /* Narrow heads, and MLA's 576/512 (the widest the kernels take) on the masked case. */
    for (size_t p = 0; p < CLA_ARRAY_SIZE(params); ++p) {
        assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", params[p]), CLATTN_SUCCESS);
        /* The flash kernel takes head dims up to 256: its third case is MLA's narrower 192/128. */
        const bool flash = strstr(params[p], "flash") != NULL;
        for (int variant = 0; variant < 3; ++variant) {
            sdpa_case c = sdpa_case_of(CLATTN_IMPL_FUSED, 2, 2, 1, 11, 45, variant == 2 ? (flash ? 192 : 576) : 20);
            c.v_head_dim = variant == 2 ? (flash ? 128 : 512) : 0;
            with_mods(&c, 7);
            c.causal = variant == 1 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
            c.mask_kind = variant == 2 ? MASK_ADD : MASK_NONE;
            c.mask_fill_prob = 0.2f;
            c.seed = (unsigned)(p * 3 + variant);
            sdpa_case_run(ctx, &c, NULL);
        }
    }
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
}

/* Both implementations on the same inputs, each against the reference and against each other, with the weights
 * (which the sinks leave summing to less than 1). */
static void implementations_agree(void **state) {
    (void)state;
    for (int which = 1; which < 8; ++which) {
        sdpa_case c = sdpa_case_of(CLATTN_IMPL_AUTO, 2, 2, 2, 19, 70, 32);
        with_mods(&c, which);
        c.want_weights = true;
        c.causal = which == 3 ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_NONE;
        c.seed = (unsigned)which;
        sdpa_case_run_both(ctx, &c);
    }
}

#define BOTH(fn)                                                                                                   \
    cmocka_unit_test_prestate(fn, (void *)&impl_fused), cmocka_unit_test_prestate(fn, (void *)&impl_unfused)

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(shapes),
        BOTH(softcap_saturates),
        BOTH(combinations),
        BOTH(key_splits),
        BOTH(wide_heads),
        cmocka_unit_test(fused_variants),
        cmocka_unit_test(implementations_agree),
    };
    return cmocka_run_group_tests_name("sdpa_mods", tests, setup, teardown);
}
