// SPDX-License-Identifier: Apache-2.0
/* Seq2seq attention (additive/Bahdanau and the Luong dot, general and concat scores) against the double-precision
 * reference: every score, dtype, odd sizes, key lengths, masks, weights, the fused kernel's parameter shapes, a
 * long sequence without [Lq, Lk, attn_dim] memory, bad arguments (specific statuses, outputs untouched) and a
 * fault-injection sweep. */
#include "fault_steps.h"
#include "seq2seq_case.h"

#include <math.h>

#include "internal.h"

TEST_CONTEXT_SETUP(ctx);

static int teardown(void **state) {
    (void)state;
    clattn_cache_stats cs;
    if (clattn_context_cache_stats(ctx, &cs) == CLATTN_SUCCESS)
        printf("programs: %llu built, %llu from the disk cache\n", (unsigned long long)cs.builds,
               (unsigned long long)cs.disk_hits);
    if (getenv("S2S_LIST_PROGRAMS"))
        for (size_t i = 0; i < ctx->program_count; ++i)
            printf("%s %s\n", ctx->programs[i].source_name, ctx->programs[i].options);
    clattn_context_free(ctx);
    unsetenv("CLATTN_SEQ2SEQ_PARAMS");
    return 0;
}

static const clattn_score all_scores[] = {CLATTN_SCORE_ADDITIVE, CLATTN_SCORE_DOT, CLATTN_SCORE_GENERAL,
                                          CLATTN_SCORE_CONCAT};

/* A case with the dims a score allows: dot needs query_dim == key_dim. */
static s2s_case make_case(clattn_score score) {
    s2s_case c;
    s2s_case_init(&c);
    c.score = score;
    if (score == CLATTN_SCORE_DOT) c.query_dim = c.key_dim;
    return c;
}

static void every_score(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s) {
        s2s_case c = make_case(all_scores[s]);
        c.batch = 2;
        c.q_len = 5;
        c.kv_len = 33;
        c.value_dim = 7;
        c.bias = all_scores[s] == CLATTN_SCORE_ADDITIVE;
        c.want_weights = true;
        c.offset = 3;
        s2s_case_run(ctx, &c);
        c.want_weights = false;
        c.value_dim = 0; /* the keys are the values */
        c.q_len = 1;     /* one decoder step */
        c.bias = false;
        s2s_case_run(ctx, &c);
    }
}

static void dtypes(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s)
        for (int dt = 1; dt <= 2; ++dt) {
            s2s_case c = make_case(all_scores[s]);
            c.dtype = (clattn_dtype)dt;
            c.batch = 2;
            c.q_len = 4;
            c.kv_len = 19;
            c.value_dim = 7;
            c.want_weights = true;
            c.weights_dtype = (clattn_dtype)(3 - dt);
            c.seed = (unsigned)(s * 3 + dt);
            s2s_case_run(ctx, &c);
        }
}

static void odd_sizes(void **state) {
    (void)state;
    /* Key lengths 1, 33 and 257 (tile sizes plus and minus one), attn_dim 24 and 100, query_dim != key_dim != value
     * width, one and several queries. */
    static const size_t lks[] = {1, 33, 257};
    for (size_t l = 0; l < 3; ++l)
        for (size_t s = 0; s < 4; ++s) {
            s2s_case c = make_case(all_scores[s]);
            c.batch = 3;
            c.q_len = l == 1 ? 1 : 6;
            c.kv_len = lks[l];
            c.attn_dim = l == 2 ? 100 : 24;
            c.query_dim = 13;
            c.key_dim = all_scores[s] == CLATTN_SCORE_DOT ? 13 : 9;
            c.value_dim = 17;
            c.want_weights = true;
            c.seed = (unsigned)(l * 7 + s);
            s2s_case_run(ctx, &c);
        }
}

static void key_lengths(void **state) {
    (void)state;
    static const int32_t kl[3] = {0, 5, 21};
    for (size_t s = 0; s < 4; ++s) {
        s2s_case c = make_case(all_scores[s]);
        c.batch = 3;
        c.q_len = 4;
        c.kv_len = 21;
        c.value_dim = 7;
        c.key_lengths = kl;
        c.want_weights = true;
        s2s_case_run(ctx, &c);
        /* Keys past the lengths are never read: NaN there changes nothing. */
        c.nan_in_padding = true;
        s2s_case_run(ctx, &c);
    }
}

static void masks(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s)
        for (int kind = S2S_MASK_ADD; kind <= S2S_MASK_BOOL; ++kind)
            for (int bcast = 0; bcast < 2; ++bcast) {
                s2s_case c = make_case(all_scores[s]);
                c.batch = 2;
                c.q_len = 5;
                c.kv_len = 40;
                c.value_dim = 7;
                c.mask_kind = kind;
                c.mask_bcast = bcast;
                c.mask_dtype = bcast ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
                c.mask_fill_prob = 0.4f;
                c.masked_row = 2; /* a fully masked row: zeros */
                c.want_weights = true;
                c.seed = (unsigned)(s * 4 + (size_t)kind * 2 + (size_t)bcast);
                s2s_case_run(ctx, &c);
            }
    /* Masks that broadcast over the queries or the keys as well: the padding mask [B, 1, 1, Lk], [1, 1, Lq, 1]
     * (whole rows kept or masked) and [1, 1, 1, Lk], in f32, bf16 and bool, for every score. */
    static const bool shapes[][3] = {{0, 1, 0}, {1, 0, 1}, {1, 1, 0}};
    for (size_t s = 0; s < 4; ++s)
        for (size_t sh = 0; sh < CLA_ARRAY_SIZE(shapes); ++sh) {
            s2s_case c = make_case(all_scores[s]);
            c.batch = 3;
            c.q_len = 6;
            c.kv_len = 23;
            c.mask_kind = sh == 1 ? S2S_MASK_BOOL : S2S_MASK_ADD;
            c.mask_dtype = sh == 2 ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
            c.mask_bcast = shapes[sh][0];
            c.mask_bcast_q = shapes[sh][1];
            c.mask_bcast_k = shapes[sh][2];
            c.mask_fill_prob = 0.3f;
            c.want_weights = true;
            c.seed = (unsigned)(60 + s * 3 + sh);
            s2s_case_run(ctx, &c);
        }
}

static void nan_propagates(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s) {
        s2s_case c = make_case(all_scores[s]);
        c.q_len = 4;
        c.value_dim = 7;
        c.nan_query_row = 1;
        c.want_weights = true;
        s2s_case_run(ctx, &c);
    }
}

static void empty_sizes(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s) {
        s2s_case c = make_case(all_scores[s]);
        c.value_dim = 7;
        c.want_weights = true;
        c.kv_len = 0; /* no keys: zeros */
        s2s_case_run(ctx, &c);
        c.kv_len = 5;
        c.q_len = 0;
        c.want_weights = true;
        s2s_case_run(ctx, &c);
        c.q_len = 3;
        c.batch = 0;
        s2s_case_run(ctx, &c);
    }
}

/* The fused kernel's shapes: GPU-like groups sharing tiles (tile sizes not a multiple of the group, several rows),
 * the scalar score loop, and the kernel alone on host projections. */
static void kernel_shapes(void **state) {
    (void)state;
    static const char *params[] = {"wg=8,block_n=16,rows=3,vec=4", "wg=4,block_n=6,rows=2,vec=1",
                                   "wg=1,block_n=5,rows=4,vec=8", NULL};
    static const int32_t kl[2] = {13, 0};
    for (size_t p = 0; params[p]; ++p) {
        assert_status(clattn_context_set_kernel_params(ctx, "seq2seq_additive", params[p]), CLATTN_SUCCESS);
        for (int v = 0; v < 2; ++v) {
            s2s_case c = make_case(v == 1 ? CLATTN_SCORE_CONCAT : CLATTN_SCORE_ADDITIVE);
            c.batch = 2;
            c.q_len = 7;
            c.kv_len = 29;
            c.attn_dim = v ? 100 : 16;
            c.value_dim = v ? 37 : 7;
            c.bias = v == 0;
            c.mask_kind = v == 1 ? S2S_MASK_BOOL : S2S_MASK_ADD;
            c.mask_fill_prob = 0.3f;
            c.key_lengths = v == 1 ? kl : NULL;
            c.want_weights = true;
            c.weights_dtype = v == 1 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
            c.host_projection = v == 0;
            c.seed = (unsigned)(p * 3 + (size_t)v);
            s2s_case_run(ctx, &c);
        }
    }
    /* A typo must not test the defaults: the override is refused, naming the call and the key, and the one before
     * stays (here, none). */
    assert_status(clattn_context_set_kernel_params(ctx, "seq2seq_additive", NULL), CLATTN_SUCCESS);
    assert_status(clattn_context_set_kernel_params(ctx, "seq2seq_additive", "wg=1,bogus=3"),
                  CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(ctx), "clattn_context_set_kernel_params: seq2seq_additive: "));
    assert_non_null(strstr(clattn_context_last_error(ctx), "bogus"));
    s2s_case c = make_case(CLATTN_SCORE_ADDITIVE);
    s2s_case_run(ctx, &c);
}

/* Encoder widths of RNNs (512 to 2048 units), past the fused attention kernels' head dims: dot and general run
 * through attention's unfused path, additive and concat as column slices of the values. Keys as values (so the
 * values are as wide) and separate narrow values, masks, key lengths, fp16 and the weights output. */
static void wide_keys(void **state) {
    (void)state;
    static const size_t widths[] = {512, 1024, 2048};
    static const int32_t kl[2] = {23, 0};
    for (size_t w = 0; w < 3; ++w)
        for (int s = 1; s <= 2; ++s) {
            s2s_case c = make_case((clattn_score)s);
            c.batch = 2;
            c.q_len = w == 1 ? 1 : 4; /* a decoder step, and a whole target sequence */
            c.kv_len = 37;
            c.key_dim = widths[w];
            c.query_dim = s == CLATTN_SCORE_DOT ? widths[w] : 300;
            c.value_dim = w == 1 ? 96 : 0;
            c.dtype = w == 1 && s == CLATTN_SCORE_GENERAL ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
            c.mask_kind = w == 0 ? S2S_MASK_BOOL : w == 2 ? S2S_MASK_ADD : S2S_MASK_NONE;
            c.mask_fill_prob = 0.3f;
            c.masked_row = w == 0 ? 1 : -1;
            c.key_lengths = w == 1 ? kl : NULL;
            c.want_weights = true;
            c.seed = (unsigned)(w * 2 + (size_t)s);
            s2s_case_run(ctx, &c);
        }
    /* Additive and concat with 2048-wide keys as values: two slices of 1024; and 1500, two of 750. */
    for (int v = 0; v < 2; ++v) {
        s2s_case c = make_case(v ? CLATTN_SCORE_CONCAT : CLATTN_SCORE_ADDITIVE);
        c.batch = 2;
        c.q_len = 3;
        c.kv_len = 29;
        c.query_dim = 64;
        c.key_dim = v ? 1500 : 2048;
        c.attn_dim = 48;
        c.bias = v == 0;
        c.key_lengths = kl;
        c.want_weights = true;
        c.weights_dtype = v ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
        c.seed = (unsigned)(10 + v);
        s2s_case_run(ctx, &c);
    }
}

/* Lk = 8192: the call allocates the projections, O((Lq + Lk) attn_dim), and nothing of size Lq x Lk x attn_dim. */
static void long_sequence(void **state) {
    (void)state;
    s2s_case c = make_case(CLATTN_SCORE_ADDITIVE);
    c.batch = 1;
    c.q_len = 4;
    c.kv_len = 8192;
    c.query_dim = 8;
    c.key_dim = 8;
    c.attn_dim = 32;
    c.bias = true;
    s2s_case_run(ctx, &c);
    clattn_memory_stats ms;
    assert_status(clattn_context_memory_stats(ctx, &ms), CLATTN_SUCCESS);
    const uint64_t projections = (uint64_t)(c.q_len + c.kv_len) * c.attn_dim * sizeof(float);
    const uint64_t full = (uint64_t)c.q_len * c.kv_len * c.attn_dim * sizeof(float);
    if (ms.last_call_bytes != projections)
        fail_msg("the call allocated %llu bytes; the projections alone are %llu (the full tensor would be %llu)",
                 (unsigned long long)ms.last_call_bytes, (unsigned long long)projections, (unsigned long long)full);
}

/* ---- bad arguments ---- */

#define BB     2
#define LQ     3
#define LK     5
#define DQ     4
#define DK     6
#define AD     8
#define POISON 0x5a

static void expect_poisoned(cl_mem m, size_t bytes) {
    test_expect_unwritten(ctx, m, bytes, POISON);
}

static void bad_weights(void **state) {
    (void)state;
    float wq[DQ * AD] = {0}, wk[DK * AD] = {0}, v[AD] = {0}, w[(DQ + DK) * AD] = {0};
    clattn_seq2seq_weights *sw = NULL;
    clattn_seq2seq_config cfg = {CLATTN_SCORE_ADDITIVE, DQ, DK, AD};
    clattn_seq2seq_weights_host h = {wq, wk, NULL, v, NULL};
    assert_status(clattn_seq2seq_weights_create(NULL, &cfg, &h, &sw), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_seq2seq_weights_create(ctx, NULL, &h, &sw), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, NULL, &sw), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, NULL), CLATTN_ERROR_NULL_POINTER);
    h.w_k = NULL; /* additive needs w_k */
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_NULL_POINTER);
    assert_non_null(strstr(clattn_context_last_error(ctx), "w_k"));
    h.w_k = wk;
    h.w = w; /* additive takes no w */
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_INVALID_ARGUMENT);
    h.w = NULL;
    cfg.attn_dim = 0;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_INVALID_HEAD_DIM);
    cfg.attn_dim = 5000;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_INVALID_HEAD_DIM);
    cfg.attn_dim = AD;
    cfg.query_dim = 0;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_INVALID_SHAPE);
    cfg.query_dim = DQ;
    cfg.score = (clattn_score)9;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_ERROR_INVALID_ARGUMENT);
    /* dot needs equal widths and no weights */
    clattn_seq2seq_config dot = {CLATTN_SCORE_DOT, DQ, DK, 0};
    clattn_seq2seq_weights_host none = {0};
    assert_status(clattn_seq2seq_weights_create(ctx, &dot, &none, &sw), CLATTN_ERROR_INVALID_SHAPE);
    dot.key_dim = DQ;
    assert_status(clattn_seq2seq_weights_create(ctx, &dot, &h, &sw), CLATTN_ERROR_INVALID_ARGUMENT);
    /* concat needs w and v, and no bias */
    clattn_seq2seq_config cc = {CLATTN_SCORE_CONCAT, DQ, DK, AD};
    clattn_seq2seq_weights_host ch = {NULL, NULL, w, NULL, NULL};
    assert_status(clattn_seq2seq_weights_create(ctx, &cc, &ch, &sw), CLATTN_ERROR_NULL_POINTER);
    ch.v = v;
    ch.bias = v;
    assert_status(clattn_seq2seq_weights_create(ctx, &cc, &ch, &sw), CLATTN_ERROR_INVALID_ARGUMENT);
    ch.bias = NULL;
    assert_status(clattn_seq2seq_weights_create(ctx, &cc, &ch, &sw), CLATTN_SUCCESS);
    clattn_seq2seq_weights_free(sw);
    /* general's key_dim goes through attention, up to CLATTN_MAX_HEAD_DIM */
    clattn_seq2seq_config gen = {CLATTN_SCORE_GENERAL, DQ, CLATTN_MAX_HEAD_DIM + 1, 0};
    clattn_seq2seq_weights_host gh = {NULL, NULL, w, NULL, NULL};
    assert_status(clattn_seq2seq_weights_create(ctx, &gen, &gh, &sw), CLATTN_ERROR_INVALID_HEAD_DIM);
    assert_null(sw);
    clattn_seq2seq_weights_free(NULL);
}

static void bad_calls(void **state) {
    (void)state;
    float wq[DQ * AD] = {0}, wk[DK * AD] = {0}, v[AD] = {0};
    clattn_seq2seq_config cfg = {CLATTN_SCORE_ADDITIVE, DQ, DK, AD};
    clattn_seq2seq_weights_host h = {wq, wk, NULL, v, NULL};
    clattn_seq2seq_weights *sw = NULL;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw), CLATTN_SUCCESS);
    const size_t ob = BB * LQ * DK * 4, wb = BB * LQ * LK * 4;
    cl_mem bq = test_filled_buffer(ctx, BB * LQ * DQ * 4, 0), bk = test_filled_buffer(ctx, BB * LK * DK * 4, 0),
           bo = test_filled_buffer(ctx, ob, POISON);
    cl_mem bw = test_filled_buffer(ctx, wb, POISON), bm = test_filled_buffer(ctx, BB * LQ * LK * 4, 0),
           bkl = test_filled_buffer(ctx, 4, 0);
    clattn_tensor q = clattn_tensor_seq(bq, CLATTN_DTYPE_F32, BB, LQ, DQ);
    clattn_tensor k = clattn_tensor_seq(bk, CLATTN_DTYPE_F32, BB, LK, DK);
    clattn_tensor o = clattn_tensor_seq(bo, CLATTN_DTYPE_F32, BB, LQ, DK);
    clattn_seq2seq_desc d;
    clattn_seq2seq_desc_init(&d);
    d.weights = clattn_tensor_seq(bw, CLATTN_DTYPE_F32, BB, LQ, LK);
#define CALL(qq, kk, vv, oo) clattn_seq2seq_attention(ctx, sw, &d, qq, kk, vv, oo, NULL, 0, NULL, NULL)
    assert_status(clattn_seq2seq_attention(NULL, sw, &d, &q, &k, NULL, &o, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_seq2seq_attention(ctx, NULL, &d, &q, &k, NULL, &o, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_NULL_POINTER);
    assert_status(CALL(NULL, &k, NULL, &o), CLATTN_ERROR_NULL_POINTER);
    assert_status(CALL(&q, &k, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_seq2seq_attention(ctx, sw, &d, &q, &k, NULL, &o, NULL, 2, NULL, NULL),
                  CLATTN_ERROR_NULL_POINTER);
    clattn_tensor t = q;
    t.size[3] = DQ + 1; /* not the weights' query_dim */
    assert_status(CALL(&t, &k, NULL, &o), CLATTN_ERROR_INVALID_SHAPE);
    assert_non_null(strstr(clattn_context_last_error(ctx), "query"));
    t = k;
    t.size[0] = 1; /* batch mismatch */
    assert_status(CALL(&q, &t, NULL, &o), CLATTN_ERROR_INVALID_SHAPE);
    t = q;
    t.size[1] = 2; /* sequence tensors have one head */
    t.stride[1] = 0;
    assert_status(CALL(&t, &k, NULL, &o), CLATTN_ERROR_INVALID_SHAPE);
    t = o;
    t.size[2] = LQ - 1;
    assert_status(CALL(&q, &k, NULL, &t), CLATTN_ERROR_INVALID_SHAPE);
    t = k;
    t.size[2] = LK - 1; /* values shorter than the keys */
    assert_status(CALL(&q, &k, &t, &o), CLATTN_ERROR_INVALID_SHAPE);
    t = q;
    t.dtype = CLATTN_DTYPE_BOOL;
    assert_status(CALL(&t, &k, NULL, &o), CLATTN_ERROR_INVALID_DTYPE);
    t = o;
    t.stride[2] = 1; /* rows overlap */
    assert_status(CALL(&q, &k, NULL, &t), CLATTN_ERROR_INVALID_STRIDE);
    t = o;
    t.offset = 1; /* past the end */
    assert_status(CALL(&q, &k, NULL, &t), CLATTN_ERROR_BUFFER_TOO_SMALL);
    t = o;
    t.buffer = bk; /* the output overlaps the keys */
    assert_status(CALL(&q, &k, NULL, &t), CLATTN_ERROR_INVALID_ARGUMENT);
    /* masks */
    d.mask = clattn_tensor_seq(bm, CLATTN_DTYPE_F32, BB, LQ, LK + 1);
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_MASK);
    d.mask = clattn_tensor_seq(bm, CLATTN_DTYPE_F32, 3, LQ, LK);
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_MASK);
    d.mask = clattn_tensor_seq(bm, (clattn_dtype)7, BB, LQ, LK);
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_MASK);
    clattn_seq2seq_desc_init(&d);
    d.weights = clattn_tensor_seq(bw, CLATTN_DTYPE_F32, BB, LQ, LK);
    /* key lengths: one int32 where two are needed */
    d.key_lengths = bkl;
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_BUFFER_TOO_SMALL);
    d.key_lengths = NULL;
    /* weights output */
    d.weights.size[3] = LK - 1;
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_SHAPE);
    d.weights = clattn_tensor_seq(bw, CLATTN_DTYPE_BOOL, BB, LQ, LK);
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_DTYPE);
    d.weights = clattn_tensor_seq(bo, CLATTN_DTYPE_F32, BB, LQ, LK); /* overlaps the context */
    assert_status(CALL(&q, &k, NULL, &o), CLATTN_ERROR_INVALID_ARGUMENT);
    /* weights of another context */
    clattn_context *other = test_context();
    assert_status(clattn_seq2seq_attention(other, sw, &d, &q, &k, NULL, &o, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_INVALID_ARGUMENT);
    clattn_context_free(other);
#undef CALL
    clFinish(clattn_context_cl_queue(ctx));
    expect_poisoned(bo, ob);
    expect_poisoned(bw, wb);
    cl_mem all[] = {bq, bk, bo, bw, bm, bkl};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(all); ++i) clReleaseMemObject(all[i]);
    clattn_seq2seq_weights_free(sw);
}

/* ---- faults ---- */

static int check_case(clattn_context *c_ctx, const void *c, char *err, size_t size) {
    return s2s_case_check(c_ctx, c, err, size);
}

static void faults(void **state) {
    (void)state;
    for (size_t s = 0; s < 4; ++s) {
        s2s_case c = make_case(all_scores[s]);
        c.batch = 2;
        c.value_dim = 7;
        c.dtype = CLATTN_DTYPE_F16; /* the projections pack their input first */
        c.want_weights = true;
        c.weights_dtype = CLATTN_DTYPE_BF16; /* the additive kernel's score scratch */
        c.bias = all_scores[s] == CLATTN_SCORE_ADDITIVE;
        assert_true(fail_each_step(ctx, check_case, &c, 100, false) >= 3);
    }
}

/* Keys projected once by clattn_seq2seq_project_keys (into a padded, strided buffer) and passed to the call give
 * the same context and weights as a call that projects them itself; misuse is refused before anything runs. */
static void precomputed_keys(void **state) {
    (void)state;
    const clattn_score scores[] = {CLATTN_SCORE_ADDITIVE, CLATTN_SCORE_CONCAT};
    for (int i = 0; i < 2; ++i) {
        s2s_case c = make_case(scores[i]);
        c.project_keys = true;
        c.q_len = 1;
        c.want_weights = true;
        c.weights_dtype = CLATTN_DTYPE_F32;
        s2s_case_run(ctx, &c);
        /* The call allocated the projected queries alone: the keys' projection was taken as given. */
        clattn_memory_stats mem;
        assert_status(clattn_context_memory_stats(ctx, &mem), CLATTN_SUCCESS);
        assert_int_equal(mem.last_call_bytes, c.batch * c.q_len * c.attn_dim * sizeof(float));
        c.q_len = 5;
        c.mask_kind = S2S_MASK_BOOL;
        c.dtype = CLATTN_DTYPE_F16;
        s2s_case_run(ctx, &c);
    }
    /* Misuse: a score without a hidden layer, a wrong dtype, shape or stride. */
    const size_t B = 2, Lk = 7, D = 8, A = 6;
    float wbuf[(8 + 8) * 6 + 6] = {0};
    clattn_seq2seq_weights_host host = {wbuf, wbuf + D * A, NULL, wbuf + 2 * D * A, NULL};
    clattn_seq2seq_config cfg = {CLATTN_SCORE_ADDITIVE, D, D, A};
    clattn_seq2seq_weights *w = NULL, *dot = NULL;
    assert_status(clattn_seq2seq_weights_create(ctx, &cfg, &host, &w), CLATTN_SUCCESS);
    clattn_seq2seq_config dcfg = {CLATTN_SCORE_DOT, D, D, 0};
    clattn_seq2seq_weights_host none = {NULL, NULL, NULL, NULL, NULL};
    assert_status(clattn_seq2seq_weights_create(ctx, &dcfg, &none, &dot), CLATTN_SUCCESS);
    cl_mem kb = test_filled_buffer(ctx, B * Lk * D * sizeof(float), 0),
           pb = test_filled_buffer(ctx, B * Lk * A * sizeof(float), POISON);
    clattn_tensor keys = clattn_tensor_seq(kb, CLATTN_DTYPE_F32, B, Lk, D);
    clattn_tensor proj = clattn_tensor_seq(pb, CLATTN_DTYPE_F32, B, Lk, A);
    assert_status(clattn_seq2seq_project_keys(ctx, dot, &keys, &proj, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_INVALID_ARGUMENT);
    clattn_tensor bad = proj;
    bad.dtype = CLATTN_DTYPE_F16;
    assert_status(clattn_seq2seq_project_keys(ctx, w, &keys, &bad, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_INVALID_DTYPE);
    bad = clattn_tensor_seq(pb, CLATTN_DTYPE_F32, B, Lk - 1, A);
    assert_status(clattn_seq2seq_project_keys(ctx, w, &keys, &bad, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_INVALID_SHAPE);
    bad = proj;
    bad.stride[3] = 2;
    assert_status(clattn_seq2seq_project_keys(ctx, w, &keys, &bad, NULL, 0, NULL, NULL),
                  CLATTN_ERROR_INVALID_STRIDE);
    assert_status(clattn_seq2seq_project_keys(ctx, w, &keys, NULL, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    expect_poisoned(pb, B * Lk * A * sizeof(float));
    clReleaseMemObject(kb);
    clReleaseMemObject(pb);
    clattn_seq2seq_weights_free(w);
    clattn_seq2seq_weights_free(dot);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_score),   cmocka_unit_test(dtypes),
        cmocka_unit_test(odd_sizes),     cmocka_unit_test(key_lengths),
        cmocka_unit_test(masks),         cmocka_unit_test(nan_propagates),
        cmocka_unit_test(empty_sizes),   cmocka_unit_test(kernel_shapes),
        cmocka_unit_test(long_sequence), cmocka_unit_test(wide_keys),
        cmocka_unit_test(bad_weights),   cmocka_unit_test(bad_calls),
        cmocka_unit_test(faults),        cmocka_unit_test(precomputed_keys),
    };
    return cmocka_run_group_tests_name("seq2seq", tests, setup, teardown);
}
