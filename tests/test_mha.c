// SPDX-License-Identifier: Apache-2.0
/* Multi-head attention (clattn_mha) and its KV cache against the double-precision reference of src/reference_mha.c:
 * self and cross attention, packed and separate weights, biases, residual, GQA, every mask, fp32/fp16/bf16
 * activations, odd shapes; incremental decoding through the cache equals one full causal call; bad arguments give
 * their specific status and write nothing; a device fault at any step is a clean status that leaks nothing and
 * leaves the cache as it was. The score modifiers and the caller's score_mod/mask_mod pass through the layer and
 * its cache. Outputs are poisoned around their views and checked afterwards. */
#include "mha_case.h"

#include <math.h>

#include "check_tolerance.h"
#include "internal.h"
#include "reference_mha.h"

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

/* ---- layer cases ---- */

static void self_attention(void **state) {
    (void)state;
    mha_case c;
    for (int packed = 0; packed < 2; ++packed)
        for (int bias = 0; bias < 2; ++bias)
            for (int residual = 0; residual < 2; ++residual) {
                mha_case_init(&c);
                c.packed = packed;
                c.bias = bias;
                c.residual = residual;
                c.seed = (unsigned)(packed * 4 + bias * 2 + residual + 1);
                mha_case_run(ctx, &c);
            }
}

static void cross_attention(void **state) {
    (void)state;
    mha_case c;
    for (int packed = 0; packed < 2; ++packed)
        for (int bias = 0; bias < 2; ++bias) {
            mha_case_init(&c);
            c.cross = true;
            c.packed = packed;
            c.bias = bias;
            c.residual = bias;
            c.mem_len = 9;
            if (!packed) c.cfg.kv_d_model = 12; /* a memory of another width needs separate weights */
            mha_case_run(ctx, &c);
        }
}

static void grouped_query_heads(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.cfg.heads = 6;
    c.cfg.kv_heads = 2;
    c.cfg.head_dim = 4;
    c.cfg.v_head_dim = 6;
    c.bias = c.residual = true;
    mha_case_run(ctx, &c);
    c.packed = true;
    c.cfg.kv_heads = 1;
    mha_case_run(ctx, &c);
    c.cross = true;
    c.packed = false;
    c.cfg.kv_heads = 3;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    mha_case_run(ctx, &c);
}

static void masks(void **state) {
    (void)state;
    mha_case c;
    /* Causal, both alignments, with Lq != Lk (cross) where they differ. */
    for (int cross = 0; cross < 2; ++cross)
        for (int causal = 1; causal <= 2; ++causal) {
            mha_case_init(&c);
            c.cross = cross;
            c.mem_len = 8;
            c.causal = (clattn_causal)causal;
            c.bias = true;
            mha_case_run(ctx, &c);
        }
    mha_case_init(&c);
    c.q_len = 9;
    c.window_left = 2;
    c.window_right = 1;
    mha_case_run(ctx, &c);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.window_right = CLATTN_WINDOW_UNBOUNDED;
    mha_case_run(ctx, &c);
    for (int kind = MHA_MASK_ADD; kind <= MHA_MASK_BOOL; ++kind)
        for (int bcast = 0; bcast < 2; ++bcast) {
            mha_case_init(&c);
            c.cross = kind == MHA_MASK_BOOL;
            c.mask = kind;
            c.mask_bcast = bcast;
            c.residual = true;
            mha_case_run(ctx, &c);
        }
    /* Masks that broadcast over other dimensions, as PyTorch's do: the padding mask [B, 1, 1, Lk] every Hugging
     * Face encoder builds, [1, 1, Lq, 1], [1, 1, 1, Lk] and [1, H, Lq, 1], self and cross, additive and boolean. */
    static const unsigned bcast_dims[] = {0x6, 0xb, 0x7, 0x9};
    for (size_t s = 0; s < CLA_ARRAY_SIZE(bcast_dims); ++s)
        for (int kind = MHA_MASK_ADD; kind <= MHA_MASK_BOOL; ++kind) {
            mha_case_init(&c);
            c.batch = 3;
            c.cross = s % 2 == 1;
            c.mask = kind;
            c.mask_bcast_dims = bcast_dims[s];
            c.bias = true;
            c.seed = (unsigned)(40 + s * 2 + (size_t)kind);
            mha_case_run(ctx, &c);
        }
    mha_case_init(&c);
    c.batch = 3;
    c.key_lengths = true;
    c.residual = c.bias = true;
    mha_case_run(ctx, &c);
    c.cross = true;
    c.mask = MHA_MASK_ADD;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    mha_case_run(ctx, &c);
}

static void lse_and_weights(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.lse = true;
    mha_case_run(ctx, &c);
    c.weights = true; /* the unfused attention */
    c.cross = true;
    c.key_lengths = true;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    mha_case_run(ctx, &c);
}

/* The score modifiers pass through the layer: softcap, sinks and ALiBi alone and together, with GQA, causal
 * alignment over Lq != Lk, masks, key lengths, lse and (unfused) weights. */
static void score_modifiers(void **state) {
    (void)state;
    for (int which = 1; which < 8; ++which) {
        mha_case c;
        mha_case_init(&c);
        c.cfg.heads = 4;
        c.cfg.kv_heads = which % 2 ? 2 : 4;
        c.softcap = which & 1 ? 0.75f : 0.0f;
        c.sinks = (which & 2) != 0;
        c.alibi = (which & 4) != 0;
        c.lse = true;
        c.bias = which > 3;
        c.cross = which >= 5;
        c.mem_len = 9;
        c.causal = which == 5 ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
        c.mask = which == 6 ? MHA_MASK_BOOL : MHA_MASK_NONE;
        c.key_lengths = which == 7;
        c.weights = which == 7;
        c.seed = (unsigned)which;
        mha_case_run(ctx, &c);
    }
}

/* The caller's score_mod and mask_mod (an ALiBi score_mod on a slopes buffer, a document mask_mod on an id buffer)
 * pass through the layer to its attention: self and cross, GQA, with the built-in softcap and sinks, causal, key
 * lengths and lse, against the reference with the equivalent ALiBi slopes and bool mask. */
static void user_mods(void **state) {
    (void)state;
    for (int which = 0; which < 6; ++which) {
        mha_case c;
        mha_case_init(&c);
        c.user_mods = true;
        c.q_len = 11;
        c.cfg.heads = 4;
        c.cfg.kv_heads = which % 2 ? 2 : 4;
        c.cross = which >= 3;
        c.mem_len = 13;
        c.bias = which != 1;
        c.residual = which == 2;
        c.softcap = which == 1 || which == 4 ? 0.75f : 0.0f;
        c.sinks = which == 2 || which == 4;
        c.causal = which == 2 ? CLATTN_CAUSAL_TOP_LEFT : CLATTN_CAUSAL_NONE;
        c.key_lengths = which == 5;
        c.lse = which >= 4;
        c.x_dtype = c.out_dtype = which == 3 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
        c.seed = (unsigned)(60 + which);
        mha_case_run(ctx, &c);
    }
}

static void storage_dtypes(void **state) {
    (void)state;
    mha_case c;
    const clattn_dtype dts[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
            if (i == j && i == 0) continue;
            mha_case_init(&c);
            c.x_dtype = dts[i];
            c.out_dtype = dts[j];
            c.cross = j == 2;
            c.bias = c.residual = true;
            c.offset = 3;
            mha_case_run(ctx, &c);
        }
}

static void odd_shapes(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.cfg.d_model = 40;
    c.cfg.heads = 3;
    c.cfg.head_dim = 5;
    c.cfg.v_head_dim = 7;
    c.q_len = 17;
    c.batch = 3;
    c.bias = c.residual = true;
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    mha_case_run(ctx, &c);
    c.cross = true;
    c.mem_len = 33;
    c.cfg.kv_d_model = 13;
    c.x_dtype = CLATTN_DTYPE_F16;
    c.causal = CLATTN_CAUSAL_NONE;
    c.key_lengths = true;
    mha_case_run(ctx, &c);
    mha_case_init(&c);
    c.cfg.d_model = 1;
    c.cfg.heads = 1;
    c.cfg.head_dim = 1;
    c.batch = 1;
    c.q_len = 1;
    c.packed = c.bias = c.residual = true;
    mha_case_run(ctx, &c);
}

/* Heads wider than the fused kernels take run on attention's unfused path: a single 512-wide head over d_model 512
 * (packed self-attention with a residual), and cross-attention with GQA, head dims 320/288 and key lengths. */
static void wide_heads(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.cfg.d_model = 512;
    c.cfg.heads = 1;
    c.cfg.head_dim = 512;
    c.q_len = 6;
    c.packed = c.bias = c.residual = true;
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    mha_case_run(ctx, &c);
    mha_case_init(&c);
    c.cfg.d_model = 48;
    c.cfg.kv_d_model = 40;
    c.cfg.heads = 2;
    c.cfg.kv_heads = 1;
    c.cfg.head_dim = 320;
    c.cfg.v_head_dim = 288;
    c.cross = true;
    c.mem_len = 11;
    c.key_lengths = true;
    c.weights = c.lse = true;
    mha_case_run(ctx, &c);
}

static void in_place_residual(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.in_place = c.residual = c.bias = true;
    mha_case_run(ctx, &c);
    c.x_dtype = c.out_dtype = CLATTN_DTYPE_F16;
    c.packed = true;
    mha_case_run(ctx, &c);
}

/* B = 0, Lq = 0 and a memory of no rows (every row fully masked: out = b_O + x). */
static void empty_sizes(void **state) {
    (void)state;
    mha_case c;
    mha_case_init(&c);
    c.batch = 0;
    c.bias = c.residual = true;
    mha_case_run(ctx, &c);
    mha_case_init(&c);
    c.q_len = 0;
    mha_case_run(ctx, &c);
    c.cross = true;
    mha_case_run(ctx, &c);
    mha_case_init(&c);
    c.cross = true;
    c.mem_len = 0;
    c.bias = c.residual = true;
    mha_case_run(ctx, &c);
}

/* ---- KV cache ---- */

/* x rows [pos, pos + n) of a [B, T, W] tensor, as a strided view of it. */
static clattn_tensor rows_view(const dev_seq *full, size_t pos, size_t n) {
    clattn_tensor t = full->t;
    t.offset += pos * t.stride[2];
    t.size[2] = n;
    return t;
}

/* The reference of one causal call with residual over the whole sequence x [B, T, d_model] of layer l; the caller
 * adds what else the call has. */
static cla_ref_mha full_causal_ref(const mha_layer *l, size_t B, size_t T, const float *x) {
    cla_ref_mha ref;
    memset(&ref, 0, sizeof ref);
    ref.config = l->cfg;
    ref.weights = l->host;
    ref.batch = B;
    ref.q_len = T;
    ref.x = x;
    ref.residual = 1;
    ref.attention.scale = NAN;
    ref.attention.causal = CLATTN_CAUSAL_TOP_LEFT;
    ref.attention.window_left = ref.attention.window_right = CLATTN_WINDOW_UNBOUNDED;
    return ref;
}

/* Rows [first, first + n) of every batch item of a full call's output [B, T, D], as the expected output of one
 * decode step. */
static void full_call_rows(const float *full, size_t B, size_t T, size_t D, size_t first, size_t n, double *rows) {
    for (size_t b = 0; b < B; ++b)
        for (size_t r = 0; r < n * D; ++r) rows[b * n * D + r] = full[(b * T + first) * D + r];
}

/* Decoding a sequence step by step (or chunk by chunk) through the cache gives what one causal call over the whole
 * sequence gives, row for row. */
static void decode_matches_full_call(void **state) {
    (void)state;
    const clattn_mha_config cfg = {24, 0, 4, 2, 6, 0};
    const size_t B = 2, T = 11, D = 24;
    for (int variant = 0; variant < 2; ++variant) {
        mha_layer l;
        mha_layer_make(ctx, &l, &cfg, variant == 0, true, 5 + (unsigned)variant);
        unsigned seed = 77;
        float *x = mha_rand_array(B * T * D, 1.0f, &seed);
        const clattn_dtype xdt = variant == 0 ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_F16;
        dev_seq dx = seq_make(ctx, xdt, B, T, D, 0, x);
        dev_seq full = seq_make(ctx, CLATTN_DTYPE_F32, B, T, D, 0, NULL);
        clattn_mha_desc desc;
        clattn_mha_desc_init(&desc);
        desc.residual = 1;
        desc.attention.causal = CLATTN_CAUSAL_TOP_LEFT;
        mha_run_ok(ctx, l.dev, &desc, &dx.t, NULL, &full.t);
        float *want = malloc(B * T * D * sizeof *want);
        assert_true(seq_read(ctx, &full, want));

        /* The full call against the reference as well. */
        cla_ref_mha ref = full_causal_ref(&l, B, T, x);
        double *ref_out = calloc(B * T * D, sizeof *ref_out);
        ref.out = ref_out;
        assert_int_equal(cla_reference_mha(&ref), 0);
        const double rel = check_mha_rel_tolerance(&l.cfg, T);
        expect_close("full call", want, ref_out, B * T * D, rel, CLATTN_DTYPE_F32, "decode: full causal call");

        const size_t chunks[2][11] = {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 1, 4, 2, 1}};
        for (int pattern = 0; pattern < 2; ++pattern) {
            clattn_kv_cache *cache = NULL;
            assert_status(clattn_kv_cache_create(ctx, &cfg, B, T, &cache), CLATTN_SUCCESS);
            assert_int_equal(clattn_kv_cache_capacity(cache), T);
            desc.cache = cache;
            desc.cache_mode = CLATTN_CACHE_APPEND;
            desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
            size_t pos = 0;
            for (int i = 0; pos < T; ++i) {
                const size_t n = chunks[pattern][i];
                clattn_tensor xs = rows_view(&dx, pos, n);
                dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, n, D, 2, NULL);
                mha_run_ok(ctx, l.dev, &desc, &xs, NULL, &out.t);
                pos += n;
                assert_int_equal(clattn_kv_cache_length(cache), pos);
                float *got = malloc(B * n * D * sizeof *got);
                if (!seq_read(ctx, &out, got)) fail_msg("decode step %d: bytes outside the output were written", i);
                /* Compare with the full call's rows [pos - n, pos) of every batch item. */
                double *sel = malloc(B * n * D * sizeof *sel);
                full_call_rows(want, B, T, D, pos - n, n, sel);
                char what[64];
                snprintf(what, sizeof what, "pattern %d step %d", pattern, i);
                expect_close(what, got, sel, B * n * D, rel, CLATTN_DTYPE_F32, "decode vs full call");
                free(sel);
                free(got);
                seq_release(&out);
            }
            /* Rolling back to a prefix and decoding the rest again gives the same rows: the kept tokens stay. */
            assert_status(clattn_kv_cache_truncate(cache, T + 1), CLATTN_ERROR_INVALID_ARGUMENT);
            assert_int_equal(clattn_kv_cache_length(cache), T);
            const size_t keep = 5;
            assert_status(clattn_kv_cache_truncate(cache, keep), CLATTN_SUCCESS);
            assert_int_equal(clattn_kv_cache_length(cache), keep);
            {
                clattn_tensor xs = rows_view(&dx, keep, T - keep);
                dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, T - keep, D, 2, NULL);
                mha_run_ok(ctx, l.dev, &desc, &xs, NULL, &out.t);
                assert_int_equal(clattn_kv_cache_length(cache), T);
                const size_t n = T - keep;
                float *got = malloc(B * n * D * sizeof *got);
                assert_true(seq_read(ctx, &out, got));
                double *sel = malloc(B * n * D * sizeof *sel);
                full_call_rows(want, B, T, D, keep, n, sel);
                expect_close("after truncate", got, sel, B * n * D, rel, CLATTN_DTYPE_F32, "decode after rollback");
                free(sel);
                free(got);
                seq_release(&out);
            }
            /* The cache's views hold the keys and values of the whole sequence. */
            clattn_tensor kt, vt;
            assert_status(clattn_kv_cache_tensors(cache, &kt, &vt), CLATTN_SUCCESS);
            assert_int_equal(kt.size[2], T);
            assert_int_equal(vt.size[1], 2);
            clattn_kv_cache_reset(cache);
            assert_int_equal(clattn_kv_cache_length(cache), 0);
            clattn_kv_cache_free(cache);
            desc.cache = NULL;
            desc.attention.causal = CLATTN_CAUSAL_TOP_LEFT;
        }
        free(ref_out);
        free(want);
        free(x);
        seq_release(&dx);
        seq_release(&full);
        mha_layer_free(&l);
    }
}

/* The modifiers through the cache: decoding chunk by chunk with a softcap, sinks and the caller's mods gives the
 * rows of one causal call over the whole sequence, which matches the reference. The mods see the row within the
 * call as q_idx, so they add the tokens already cached (element 0 of their int buffer, rewritten before each step):
 * ALiBi on the absolute position, and documents of 4 tokens (ids from element 1 on). */
static void decode_with_mods(void **state) {
    (void)state;
    const clattn_mha_config cfg = {24, 0, 4, 2, 6, 0};
    enum { B = 2, T = 11, D = 24, H = 4 };
    mha_layer l;
    mha_layer_make(ctx, &l, &cfg, true, true, 9);
    unsigned seed = 91;
    float *x = mha_rand_array(B * T * D, 1.0f, &seed);
    dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, B, T, D, 0, x);
    dev_seq full = seq_make(ctx, CLATTN_DTYPE_F32, B, T, D, 0, NULL);
    float slopes[H], sinks[H];
    for (int h = 0; h < H; ++h) slopes[h] = 0.3f / (float)(h + 1), sinks[h] = 0.5f - 0.4f * (float)h;
    int32_t meta[1 + T];
    meta[0] = 0;
    for (int i = 0; i < T; ++i) meta[1 + i] = i / 4;
    cl_mem slope_buf = mha_buffer(ctx, sizeof slopes, slopes), sink_buf = mha_buffer(ctx, sizeof sinks, sinks);
    cl_mem meta_buf = mha_buffer(ctx, sizeof meta, meta);

    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.residual = 1;
    desc.attention.causal = CLATTN_CAUSAL_TOP_LEFT;
    desc.attention.softcap = 0.75f;
    desc.attention.sinks = clattn_tensor_bhld(sink_buf, CLATTN_DTYPE_F32, 1, H, 1, 1);
    desc.attention.score_mod = "score - slopes[h] * (float)abs(q_idx + meta[0] - kv_idx)";
    desc.attention.mask_mod = "meta[1 + q_idx + meta[0]] == meta[1 + kv_idx]";
    desc.attention.mod_buffers[0] = (clattn_mod_buffer){"slopes", slope_buf, CLATTN_MOD_F32, H};
    desc.attention.mod_buffers[1] = (clattn_mod_buffer){"meta", meta_buf, CLATTN_MOD_I32, 1 + T};
    mha_run_ok(ctx, l.dev, &desc, &dx.t, NULL, &full.t);
    float *want = malloc(B * T * D * sizeof *want);
    assert_true(seq_read(ctx, &full, want));

    /* The full call against the reference: the built-in ALiBi and the documents' bool mask. */
    uint8_t *docs = malloc(B * H * T * T);
    assert_non_null(docs);
    for (size_t r = 0; r < (size_t)B * H * T; ++r)
        for (size_t j = 0; j < T; ++j) docs[r * T + j] = meta[1 + r % T] == meta[1 + j];
    cla_ref_mha ref = full_causal_ref(&l, B, T, x);
    ref.attention.softcap = 0.75f;
    ref.attention.sinks = sinks;
    ref.attention.alibi_slopes = slopes;
    ref.attention.bool_mask.data = docs;
    const size_t msize[4] = {B, H, T, T}, mstride[4] = {H * T * T, T * T, T, 1};
    memcpy(ref.attention.bool_mask.size, msize, sizeof msize);
    memcpy(ref.attention.bool_mask.stride, mstride, sizeof mstride);
    double ref_out[B * T * D];
    ref.out = ref_out;
    assert_int_equal(cla_reference_mha(&ref), 0);
    const double rel = check_mha_rel_tolerance(&l.cfg, T);
    expect_close("full call", want, ref_out, B * T * D, rel, CLATTN_DTYPE_F32, "decode with mods: full call");

    clattn_kv_cache *cache = NULL;
    assert_status(clattn_kv_cache_create(ctx, &cfg, B, T, &cache), CLATTN_SUCCESS);
    desc.cache = cache;
    desc.cache_mode = CLATTN_CACHE_APPEND;
    desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    static const size_t chunks[] = {3, 1, 4, 2, 1};
    size_t pos = 0;
    for (size_t i = 0; i < CLA_ARRAY_SIZE(chunks); ++i) {
        const size_t n = chunks[i];
        const cl_int at = (cl_int)pos;
        assert_int_equal(
            clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), meta_buf, CL_TRUE, 0, sizeof at, &at, 0, NULL, NULL),
            CL_SUCCESS);
        clattn_tensor xs = rows_view(&dx, pos, n);
        dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, n, D, 2, NULL);
        mha_run_ok(ctx, l.dev, &desc, &xs, NULL, &out.t);
        pos += n;
        float got[B * T * D];
        if (!seq_read(ctx, &out, got)) fail_msg("decode step %zu: bytes outside the output were written", i);
        double sel[B * T * D];
        full_call_rows(want, B, T, D, pos - n, n, sel);
        char what[64];
        snprintf(what, sizeof what, "decode with mods, step %zu", i);
        expect_close(what, got, sel, B * n * D, rel, CLATTN_DTYPE_F32, "decode with mods vs full call");
        seq_release(&out);
    }
    assert_int_equal(pos, T);
    clattn_kv_cache_free(cache);
    clReleaseMemObject(slope_buf);
    clReleaseMemObject(sink_buf);
    clReleaseMemObject(meta_buf);
    free(docs);
    free(want);
    free(x);
    seq_release(&dx);
    seq_release(&full);
    mha_layer_free(&l);
}

/* Cross-attention: the memory is projected into the cache by the first call, later calls READ it. */
static void cross_attention_cache(void **state) {
    (void)state;
    const clattn_mha_config cfg = {16, 12, 3, 1, 5, 7};
    const size_t B = 2, M = 9, D = 16;
    mha_layer l;
    mha_layer_make(ctx, &l, &cfg, false, true, 9);
    unsigned seed = 99;
    float *mem = mha_rand_array(B * M * 12, 1.0f, &seed);
    dev_seq dm = seq_make(ctx, CLATTN_DTYPE_F32, B, M, 12, 0, mem);
    clattn_kv_cache *cache = NULL;
    assert_status(clattn_kv_cache_create(ctx, &cfg, B, M, &cache), CLATTN_SUCCESS);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.cache = cache;
    desc.residual = 1;
    const size_t steps[] = {2, 1, 1, 3};
    for (int i = 0; i < 4; ++i) {
        const size_t n = steps[i];
        float *x = mha_rand_array(B * n * D, 1.0f, &seed);
        dev_seq dx = seq_make(ctx, CLATTN_DTYPE_BF16, B, n, D, 0, x);
        dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, n, D, 0, NULL);
        desc.cache_mode = i == 0 ? CLATTN_CACHE_APPEND : CLATTN_CACHE_READ;
        mha_run_ok(ctx, l.dev, &desc, &dx.t, i == 0 ? &dm.t : NULL, &out.t);
        assert_int_equal(clattn_kv_cache_length(cache), M);

        cla_ref_mha ref;
        memset(&ref, 0, sizeof ref);
        ref.config = cfg;
        ref.weights = l.host;
        ref.batch = B;
        ref.q_len = n;
        ref.x = x;
        ref.past = mem; /* the cache's contents by construction */
        ref.past_len = M;
        ref.read_only = true;
        ref.residual = 1;
        ref.attention.scale = NAN;
        ref.attention.window_left = ref.attention.window_right = CLATTN_WINDOW_UNBOUNDED;
        double *ref_out = calloc(B * n * D, sizeof *ref_out);
        ref.out = ref_out;
        assert_int_equal(cla_reference_mha(&ref), 0);
        float *got = malloc(B * n * D * sizeof *got);
        assert_true(seq_read(ctx, &out, got));
        expect_close("cross cache", got, ref_out, B * n * D, check_mha_rel_tolerance(&l.cfg, M), CLATTN_DTYPE_F32,
                     "cross-attention through the cache");
        free(got);
        free(ref_out);
        free(x);
        seq_release(&dx);
        seq_release(&out);
    }
    /* Filling a cache with a memory and no queries (Lq = 0) works as well, and a READ of an empty cache gives
     * rows whose every key is masked: out = b_O + x. */
    clattn_kv_cache_reset(cache);
    float *none = mha_rand_array(B * D, 1.0f, &seed);
    dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, B, 1, D, 0, none);
    dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, 1, D, 0, NULL);
    desc.cache_mode = CLATTN_CACHE_READ;
    mha_run_ok(ctx, l.dev, &desc, &dx.t, NULL, &out.t);
    float *got = malloc(B * D * sizeof *got);
    double *want = malloc(B * D * sizeof *want);
    assert_true(seq_read(ctx, &out, got));
    for (size_t b = 0; b < B; ++b)
        for (size_t c = 0; c < D; ++c) want[b * D + c] = (double)none[b * D + c] + l.w[B_O][c];
    expect_close("empty cache", got, want, B * D, 1e-6, CLATTN_DTYPE_F32, "READ of an empty cache");
    clattn_tensor x0 = rows_view(&dx, 0, 0), o0 = rows_view(&out, 0, 0);
    desc.cache_mode = CLATTN_CACHE_APPEND;
    mha_run_ok(ctx, l.dev, &desc, &x0, &dm.t, &o0);
    assert_int_equal(clattn_kv_cache_length(cache), M);
    free(got);
    free(want);
    free(none);
    seq_release(&dx);
    seq_release(&out);
    clattn_kv_cache_free(cache);
    free(mem);
    seq_release(&dm);
    mha_layer_free(&l);
}

static void cache_capacity(void **state) {
    (void)state;
    const clattn_mha_config cfg = {8, 0, 2, 0, 4, 0};
    mha_layer l;
    mha_layer_make(ctx, &l, &cfg, true, false, 3);
    clattn_kv_cache *cache = NULL;
    assert_status(clattn_kv_cache_create(ctx, &cfg, 1, 4, &cache), CLATTN_SUCCESS);
    unsigned seed = 5;
    float *x = mha_rand_array(3 * 8, 1.0f, &seed);
    dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, 1, 3, 8, 0, x);
    dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, 1, 3, 8, 0, NULL);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.cache = cache;
    desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    mha_run_ok(ctx, l.dev, &desc, &dx.t, NULL, &out.t);
    assert_int_equal(clattn_kv_cache_length(cache), 3);
    dev_seq out2 = seq_make(ctx, CLATTN_DTYPE_F32, 1, 2, 8, 0, NULL);
    clattn_tensor x2 = rows_view(&dx, 0, 2);
    assert_status(clattn_mha(ctx, l.dev, &desc, &x2, NULL, &out2.t, NULL, 0, NULL, NULL), CLATTN_ERROR_CAPACITY);
    const char *msg = clattn_context_last_error(ctx);
    if (!strstr(msg, "3 of 4") || !strstr(msg, "2 more")) fail_msg("capacity message lacks the numbers: %s", msg);
    assert_int_equal(clattn_kv_cache_length(cache), 3);
    clFinish(clattn_context_cl_queue(ctx));
    assert_true(seq_untouched(ctx, &out2));
    /* One more token fits exactly. */
    clattn_tensor x1 = rows_view(&dx, 0, 1), o1 = rows_view(&out2, 0, 1);
    mha_run_ok(ctx, l.dev, &desc, &x1, NULL, &o1);
    assert_int_equal(clattn_kv_cache_length(cache), 4);
    clattn_kv_cache_free(cache);
    free(x);
    seq_release(&dx);
    seq_release(&out);
    seq_release(&out2);
    mha_layer_free(&l);
}

/* ---- bad arguments: a specific status, a message, and nothing written ---- */

static void expect_rejected(const clattn_mha_weights *w, const clattn_mha_desc *desc, const clattn_tensor *x,
                            const clattn_tensor *memory, const clattn_tensor *out, const dev_seq *poisoned,
                            clattn_status want, const char *what) {
    const size_t len = desc && desc->cache ? clattn_kv_cache_length(desc->cache) : 0;
    clattn_status st = clattn_mha(ctx, w, desc, x, memory, out, NULL, 0, NULL, NULL);
    if (st != want)
        fail_msg("%s: status %d (%s), expected %d (%s): %s", what, (int)st, clattn_status_string(st), (int)want,
                 clattn_status_string(want), clattn_context_last_error(ctx));
    if (!*clattn_context_last_error(ctx)) fail_msg("%s: no message", what);
    clFinish(clattn_context_cl_queue(ctx));
    if (poisoned && !seq_untouched(ctx, poisoned)) fail_msg("%s: the output was written", what);
    if (desc && desc->cache && clattn_kv_cache_length(desc->cache) != len) fail_msg("%s: the cache changed", what);
}

static void bad_arguments(void **state) {
    (void)state;
    const clattn_mha_config cfg = {8, 6, 2, 1, 4, 0};
    const size_t B = 2, L = 3, M = 4;
    mha_layer l;
    mha_layer_make(ctx, &l, &cfg, false, true, 4);
    unsigned seed = 3;
    float *x = mha_rand_array(B * L * 8, 1.0f, &seed), *m = mha_rand_array(B * M * 6, 1.0f, &seed);
    dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, B, L, 8, 0, x);
    dev_seq dm = seq_make(ctx, CLATTN_DTYPE_F32, B, M, 6, 0, m);
    dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, L, 8, 0, NULL);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    const clattn_tensor *xm = &dm.t;

    expect_rejected(NULL, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_NULL_POINTER, "NULL weights");
    expect_rejected(l.dev, NULL, &dx.t, xm, &out.t, &out, CLATTN_ERROR_NULL_POINTER, "NULL desc");
    expect_rejected(l.dev, &desc, NULL, xm, &out.t, &out, CLATTN_ERROR_NULL_POINTER, "NULL x");
    expect_rejected(l.dev, &desc, &dx.t, xm, NULL, &out, CLATTN_ERROR_NULL_POINTER, "NULL out");
    assert_status(clattn_mha(NULL, l.dev, &desc, &dx.t, xm, &out.t, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_mha(ctx, l.dev, &desc, &dx.t, xm, &out.t, NULL, 1, NULL, NULL), CLATTN_ERROR_NULL_POINTER);

    clattn_tensor t = dx.t;
    t.dtype = CLATTN_DTYPE_BOOL;
    expect_rejected(l.dev, &desc, &t, xm, &out.t, &out, CLATTN_ERROR_INVALID_DTYPE, "x of dtype BOOL");
    t = out.t;
    t.dtype = (clattn_dtype)9;
    expect_rejected(l.dev, &desc, &dx.t, xm, &t, &out, CLATTN_ERROR_INVALID_DTYPE, "out of an unknown dtype");
    t = dx.t;
    t.size[3] = 7;
    expect_rejected(l.dev, &desc, &t, xm, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "x narrower than d_model");
    t = dx.t;
    t.size[1] = 2;
    t.size[2] = 1;
    expect_rejected(l.dev, &desc, &t, xm, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "x with heads 2");
    t = out.t;
    t.size[2] = 2;
    expect_rejected(l.dev, &desc, &dx.t, xm, &t, &out, CLATTN_ERROR_INVALID_SHAPE, "out shorter than x");
    t = dm.t;
    t.size[0] = 1;
    expect_rejected(l.dev, &desc, &dx.t, &t, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "memory of another batch");
    t = dm.t;
    t.size[3] = 5;
    expect_rejected(l.dev, &desc, &dx.t, &t, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "memory of another width");
    expect_rejected(l.dev, &desc, &dx.t, NULL, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE,
                    "self-attention with kv_d_model != d_model");
    t = dx.t;
    t.stride[3] = 2;
    t.size[3] = 8;
    t.size[2] = 1;
    expect_rejected(l.dev, &desc, &t, xm, &out.t, &out, CLATTN_ERROR_INVALID_STRIDE, "x with width stride 2");
    t = out.t;
    t.offset = out.total - cla_tensor_elements(&out.t) + 1; /* one element past the end */
    expect_rejected(l.dev, &desc, &dx.t, xm, &t, &out, CLATTN_ERROR_BUFFER_TOO_SMALL, "out past its buffer");
    t = out.t;
    t.stride[2] = 4;
    expect_rejected(l.dev, &desc, &dx.t, xm, &t, &out, CLATTN_ERROR_INVALID_STRIDE, "out rows that alias");

    /* Overlaps: out on the memory, out on part of x. */
    dev_seq shared = seq_make(ctx, CLATTN_DTYPE_F32, B, M, 8, 0, NULL);
    clattn_tensor mem_in_shared = clattn_tensor_seq(shared.t.buffer, CLATTN_DTYPE_F32, B, M, 6);
    clattn_tensor out_in_shared = clattn_tensor_seq(shared.t.buffer, CLATTN_DTYPE_F32, B, L, 8);
    out_in_shared.offset = 40;
    expect_rejected(l.dev, &desc, &dx.t, &mem_in_shared, &out_in_shared, &shared, CLATTN_ERROR_INVALID_ARGUMENT,
                    "out overlapping the memory");
    clattn_tensor x_in_shared = clattn_tensor_seq(shared.t.buffer, CLATTN_DTYPE_F32, B, L, 8);
    clattn_tensor out_shifted = x_in_shared;
    out_shifted.offset = 8;
    expect_rejected(l.dev, &desc, &x_in_shared, xm, &out_shifted, &shared, CLATTN_ERROR_INVALID_ARGUMENT,
                    "out overlapping part of x");
    /* The serving formats are clattn_sdpa's, on the caller's own tensors: the layer refuses them. */
    static const int32_t cu[3] = {0, 2, 3};
    desc.attention.seq_count = 2;
    desc.attention.cu_seqlens_q = cu;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_UNSUPPORTED, "packed sequences");
    clattn_mha_desc_init(&desc);
    desc.attention.k_scale = dx.t;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_UNSUPPORTED, "an 8-bit key scale");
    clattn_mha_desc_init(&desc);
    /* The attention's own arguments are checked before anything is enqueued. */
    dev_seq lse = seq_make(ctx, CLATTN_DTYPE_F32, 1, 1, B * 2 * L, 0, NULL);
    desc.attention.lse = clattn_tensor_bhld(out.t.buffer, CLATTN_DTYPE_F32, B, 2, L, 1);
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_ARGUMENT, "lse overlapping out");
    desc.attention.lse = clattn_tensor_bhld(lse.t.buffer, CLATTN_DTYPE_F32, B, 2, L, 2);
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "lse of the wrong shape");
    clattn_sdpa_desc_init(&desc.attention);
    cl_mem mask_buf = mha_buffer(ctx, B * L * M * sizeof(float), NULL);
    desc.attention.mask = clattn_tensor_bhld(mask_buf, CLATTN_DTYPE_F32, 1, 1, L, M + 1);
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_MASK, "mask of the wrong length");
    clattn_sdpa_desc_init(&desc.attention);
    desc.attention.causal = (clattn_causal)7;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_MASK, "unknown causal value");
    clattn_sdpa_desc_init(&desc.attention);

    /* Weights and caches of another context, or of another shape. */
    clattn_context *other = test_context();
    mha_layer lo;
    mha_layer_make(other, &lo, &cfg, false, false, 4);
    clattn_kv_cache *other_cache = NULL;
    assert_status(clattn_kv_cache_create(other, &cfg, B, 8, &other_cache), CLATTN_SUCCESS);
    expect_rejected(lo.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_ARGUMENT,
                    "weights of another context");
    desc.cache = other_cache;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_ARGUMENT,
                    "cache of another context");
    clattn_kv_cache *cache = NULL;
    const clattn_mha_config other_cfg = {8, 6, 2, 2, 4, 0};
    assert_status(clattn_kv_cache_create(ctx, &other_cfg, B, 8, &cache), CLATTN_SUCCESS);
    desc.cache = cache;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "cache of other heads");
    clattn_kv_cache_free(cache);
    assert_status(clattn_kv_cache_create(ctx, &cfg, B + 1, 8, &cache), CLATTN_SUCCESS);
    desc.cache = cache;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_SHAPE, "cache of another batch");
    clattn_kv_cache_free(cache);
    assert_status(clattn_kv_cache_create(ctx, &cfg, B, 8, &cache), CLATTN_SUCCESS);
    desc.cache = cache;
    desc.cache_mode = CLATTN_CACHE_READ;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_ARGUMENT, "READ with a memory");
    desc.cache_mode = (clattn_cache_mode)5;
    expect_rejected(l.dev, &desc, &dx.t, xm, &out.t, &out, CLATTN_ERROR_INVALID_ARGUMENT, "unknown cache mode");
    desc.cache_mode = CLATTN_CACHE_APPEND;
    clattn_tensor keys;
    assert_status(clattn_kv_cache_tensors(cache, &keys, NULL), CLATTN_SUCCESS);
    clattn_tensor out_in_cache = clattn_tensor_seq(keys.buffer, CLATTN_DTYPE_F32, B, L, 8);
    expect_rejected(l.dev, &desc, &dx.t, xm, &out_in_cache, NULL, CLATTN_ERROR_INVALID_ARGUMENT,
                    "out inside the cache");
    /* After all that, a valid call through the same cache works. */
    mha_run_ok(ctx, l.dev, &desc, &dx.t, xm, &out.t);
    assert_int_equal(clattn_kv_cache_length(cache), M);
    clattn_kv_cache_free(cache);

    clattn_kv_cache_free(other_cache);
    mha_layer_free(&lo);
    clattn_context_free(other);
    clReleaseMemObject(mask_buf);
    seq_release(&lse);
    seq_release(&shared);
    seq_release(&dx);
    seq_release(&dm);
    seq_release(&out);
    free(x);
    free(m);
    mha_layer_free(&l);
}

static void bad_weights_and_configs(void **state) {
    (void)state;
    const clattn_mha_config cfg = {8, 0, 2, 0, 4, 0};
    float w[8 * 24] = {0};
    clattn_mha_weights_host h;
    clattn_mha_weights *out = (clattn_mha_weights *)&h; /* must be set to NULL on failure */
    clattn_mha_weights_host_init(&h);
    h.w_q = w;
    h.w_k = w;
    h.w_o = w;
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, &out), CLATTN_ERROR_NULL_POINTER);
    assert_null(out);
    if (!strstr(clattn_context_last_error(ctx), "w_v")) fail_msg("message: %s", clattn_context_last_error(ctx));
    h.w_v = w;
    h.w_qkv = w;
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, &out), CLATTN_ERROR_INVALID_ARGUMENT);
    h.w_q = h.w_k = h.w_v = NULL;
    h.w_o = NULL;
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, &out), CLATTN_ERROR_NULL_POINTER);
    h.w_o = w;
    h.b_q = w;
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, &out), CLATTN_ERROR_INVALID_ARGUMENT);
    h.b_q = NULL;
    clattn_mha_config c = cfg;
    c.kv_d_model = 6;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_SHAPE);
    c = cfg;
    c.kv_heads = 3;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_HEADS);
    c = cfg;
    c.heads = 0;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_HEADS);
    c = cfg;
    c.head_dim = 0;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_HEAD_DIM);
    c = cfg;
    c.head_dim = CLATTN_MAX_HEAD_DIM + 1;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_HEAD_DIM);
    c = cfg;
    c.d_model = 0;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_INVALID_SHAPE);
    c = cfg;
    c.d_model = SIZE_MAX / 2;
    assert_status(clattn_mha_weights_create(ctx, &c, &h, &out), CLATTN_ERROR_SIZE_OVERFLOW);
    assert_status(clattn_mha_weights_create(ctx, NULL, &h, &out), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_mha_weights_create(ctx, &cfg, NULL, &out), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_mha_weights_create(NULL, &cfg, &h, &out), CLATTN_ERROR_NULL_POINTER);
    /* The packed layout works, and the config comes back resolved. */
    assert_status(clattn_mha_weights_create(ctx, &cfg, &h, &out), CLATTN_SUCCESS);
    clattn_mha_config back;
    assert_status(clattn_mha_weights_config(out, &back), CLATTN_SUCCESS);
    assert_int_equal(back.kv_d_model, 8);
    assert_int_equal(back.kv_heads, 2);
    assert_int_equal(back.v_head_dim, 4);
    clattn_mha_weights_free(out);
    clattn_mha_weights_free(NULL);

    clattn_kv_cache *cache = (clattn_kv_cache *)&h;
    c = cfg;
    c.kv_heads = 3;
    assert_status(clattn_kv_cache_create(ctx, &c, 1, 4, &cache), CLATTN_ERROR_INVALID_HEADS);
    assert_null(cache);
    assert_status(clattn_kv_cache_create(ctx, &cfg, SIZE_MAX / 4, SIZE_MAX / 4, &cache),
                  CLATTN_ERROR_SIZE_OVERFLOW);
    assert_status(clattn_kv_cache_create(ctx, &cfg, 1, 4, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_kv_cache_tensors(NULL, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    clattn_kv_cache_free(NULL);
    clattn_kv_cache_reset(NULL);
    assert_int_equal(clattn_kv_cache_length(NULL), 0);
}

/* ---- fault injection ---- */

/* Fails device operation 1, 2, 3, ... of a cache-appending call until one gets through: each failure is a clean
 * status with a message, leaves no temporary alive and the cache's length as it was; the call that gets through
 * matches the reference. */
static void faults(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; ++variant) {
        const clattn_mha_config cfg = {12, 0, 3, variant ? 3 : 1, 4, 0};
        const size_t B = 2, L = 3, D = 12;
        mha_layer l;
        mha_layer_make(ctx, &l, &cfg, variant == 1, true, 21);
        unsigned seed = 8;
        float *x = mha_rand_array(B * L * D, 1.0f, &seed);
        dev_seq dx = seq_make(ctx, variant ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_F16, B, L, D, 0, x);
        dev_seq out = seq_make(ctx, variant ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32, B, L, D, 0, NULL);
        clattn_kv_cache *cache = NULL;
        assert_status(clattn_kv_cache_create(ctx, &cfg, B, 8, &cache), CLATTN_SUCCESS);
        clattn_mha_desc desc;
        clattn_mha_desc_init(&desc);
        desc.residual = 1;
        desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        /* Variant 0 decodes through a cache (separate weights, GQA); variant 1 is the packed path with weights. */
        dev_seq wts = {0};
        if (variant) {
            wts = seq_make(ctx, CLATTN_DTYPE_F32, B * 3, L, L, 0, NULL);
            desc.attention.weights = clattn_tensor_bhld(wts.t.buffer, CLATTN_DTYPE_F32, B, 3, L, L);
        } else {
            desc.cache = cache;
        }
        long n = 1;
        for (; n < 200; ++n) {
            cla_fault_inject(ctx, n);
            clattn_status st = clattn_mha(ctx, l.dev, &desc, &dx.t, NULL, &out.t, NULL, 0, NULL, NULL);
            bool used = ctx->fault_countdown == 0;
            cla_fault_inject(ctx, 0);
            clFinish(clattn_context_cl_queue(ctx));
            if (ctx->live_temps != 0) fail_msg("step %ld: %ld temporaries left alive", n, ctx->live_temps);
            if (!used) {
                if (st != CLATTN_SUCCESS)
                    fail_msg("the run without a fault failed: %s", clattn_context_last_error(ctx));
                break;
            }
            if (st != CL_OUT_OF_RESOURCES && st != CL_MEM_OBJECT_ALLOCATION_FAILURE && st != CLATTN_ERROR_CLBLAST)
                fail_msg("step %ld: unexpected status %d (%s): %s", n, (int)st, clattn_status_string(st),
                         clattn_context_last_error(ctx));
            if (!*clattn_context_last_error(ctx)) fail_msg("step %ld: no message", n);
            assert_int_equal(clattn_kv_cache_length(cache), 0);
        }
        if (n < 4) fail_msg("only %ld device operations in an MHA call", n - 1);
        assert_int_equal(clattn_kv_cache_length(cache), variant ? 0 : L);

        cla_ref_mha ref;
        memset(&ref, 0, sizeof ref);
        ref.config = cfg;
        ref.weights = l.host;
        ref.batch = B;
        ref.q_len = L;
        ref.x = x;
        ref.residual = 1;
        ref.attention.scale = NAN;
        ref.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        ref.attention.window_left = ref.attention.window_right = CLATTN_WINDOW_UNBOUNDED;
        double ref_out[2 * 3 * 12];
        ref.out = ref_out;
        assert_int_equal(cla_reference_mha(&ref), 0);
        float got[2 * 3 * 12];
        assert_true(seq_read(ctx, &out, got));
        expect_close("after faults", got, ref_out, B * L * D, check_mha_rel_tolerance(&l.cfg, L), out.t.dtype,
                     "fault sweep");
        clattn_kv_cache_free(cache);
        seq_release(&wts);
        seq_release(&dx);
        seq_release(&out);
        free(x);
        mha_layer_free(&l);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(self_attention),
        cmocka_unit_test(cross_attention),
        cmocka_unit_test(grouped_query_heads),
        cmocka_unit_test(masks),
        cmocka_unit_test(lse_and_weights),
        cmocka_unit_test(score_modifiers),
        cmocka_unit_test(user_mods),
        cmocka_unit_test(storage_dtypes),
        cmocka_unit_test(odd_shapes),
        cmocka_unit_test(wide_heads),
        cmocka_unit_test(in_place_residual),
        cmocka_unit_test(empty_sizes),
        cmocka_unit_test(decode_matches_full_call),
        cmocka_unit_test(decode_with_mods),
        cmocka_unit_test(cross_attention_cache),
        cmocka_unit_test(cache_capacity),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(bad_weights_and_configs),
        cmocka_unit_test(faults),
    };
    return cmocka_run_group_tests_name("mha", tests, setup, teardown);
}
