// SPDX-License-Identifier: Apache-2.0
/* Attention at the sizes users run (CTest label `large`): the unfused path's temporaries crossing and landing
 * exactly on its chunk limits (512 MiB, and max_alloc / 2 of a device with a smaller maximum allocation), offsets
 * past 2^31 bytes and past 2^31 elements, [B, L, H, D] views with large strides, long decode sequences (up to the
 * 2^28 keys the kernels address), many heads, batches, GQA and sliding windows, the tiled kernel GPUs run, and the
 * split over several devices. Every case runs the fused and the unfused implementation on the same inputs
 * (sdpa_case_run_both): each against the double-precision reference on a sample of rows that covers every (batch,
 * head) slice, and the two against each other on every element; outputs are poisoned around their views. A size a
 * path cannot serve is an error that writes nothing. Small shapes are test_sdpa.c's; these are the ones where
 * chunking, 32-bit offsets and long fp32 sums go wrong (the CLBlast offset bug that made the 8th slice on wrong at
 * L = 4096 hid from those). */
#include "sdpa_case.h"

#include "internal.h"

#include "clattn_advanced.h"

#include <limits.h>
#include <math.h>

#define MIB           ((size_t)1 << 20)
#define SAMPLE        256                 /* rows compared with the reference per case */
#define UNFUSED_LIMIT ((size_t)512 << 20) /* sdpa_unfused.c's bound on each group of temporaries */

static clattn_context *ctx;

static int setup(void **state) {
    (void)state;
    unsetenv("CLATTN_UNFUSED_CHUNK_BYTES"); /* the library's own limits and choices are under test */
    unsetenv("CLATTN_FUSED_PARAMS");        /* read once, when the context is created */
    ctx = test_context();
    return 0;
}

TEST_CONTEXT_TEARDOWN(ctx);

/* A case of B x H heads of Lq x Lk with head dim D, f32, [B, H, L, D], compared on a sample of rows. */
static sdpa_case large_case(size_t B, size_t Hq, size_t Hkv, size_t Lq, size_t Lk, size_t D) {
    sdpa_case c = sdpa_case_of(CLATTN_IMPL_AUTO, B, Hq, Hkv, Lq, Lk, D);
    c.sample_rows = SAMPLE;
    return c;
}

/* Temporary bytes of the last call on `on` (the unfused one of sdpa_case_run_both). */
static uint64_t last_call_bytes(clattn_context *on) {
    clattn_memory_stats m;
    assert_status(clattn_context_memory_stats(on, &m), CLATTN_SUCCESS);
    return m.last_call_bytes;
}

/* The unfused path's per-row temporaries (scores, 1/rowsum, output) for unpacked fp32 inputs, in bytes. */
static size_t row_bytes(size_t Lk, size_t Dv) {
    return sizeof(float) * (Lk + 1 + Dv);
}

/* ---- the 512 MiB chunk limit ---- */

/* The shapes that were wrong from the 8th (batch, head) slice on: 8 heads of 4096 rows need 520 MiB of
 * temporaries, so the unfused path runs chunks of 7 slices and then the rest. lse and the weights too. */
static void chunks_crossing_the_limit(void **state) {
    (void)state;
    sdpa_case c = large_case(1, 8, 8, 4096, 4096, 64);
    c.want_lse = c.want_weights = true;
    sdpa_case_run_both(ctx, &c);
    assert_true(last_call_bytes(ctx) <= UNFUSED_LIMIT);

    /* Two batch items of 4 heads: the second chunk starts at the last head of the second item. */
    c = large_case(2, 4, 4, 4096, 4096, 64);
    c.want_lse = true;
    c.seed = 2;
    sdpa_case_run_both(ctx, &c);
}

/* Lk = 4031 makes a row of temporaries exactly 16 KiB, so 8 heads of 4096 rows are exactly 512 MiB: the first chunk
 * lands on the limit and the 9th head is a chunk alone. In [B, L, H, D], so that CLBlast reads the queries in place
 * with a row stride of H * D. */
static void chunk_exactly_at_the_limit(void **state) {
    (void)state;
    sdpa_case c = large_case(1, 9, 9, 4096, 4031, 64);
    assert_int_equal(8 * c.q_len * row_bytes(c.kv_len, c.head_dim), UNFUSED_LIMIT);
    c.layout = LAYOUT_BLHD;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.want_lse = true;
    c.seed = 4;
    sdpa_case_run_both(ctx, &c);
    assert_int_equal(last_call_bytes(ctx), UNFUSED_LIMIT);
}

/* ---- max_alloc / 2 of a smaller device ---- */

/* A context that believes its device allows allocations of `max_alloc` bytes, so the unfused path bounds each group
 * of temporaries by max_alloc / 2 (below 512 MiB) as it would on such a device. */
static clattn_context *small_device(uint64_t max_alloc) {
    clattn_context *c = test_context();
    c->info.max_alloc_bytes = max_alloc;
    return c;
}

/* With a 64 MiB maximum allocation the limit is 32 MiB: 2048 rows of 16 KiB. Query rows in blocks that land exactly
 * on it (4096 rows), that cross it by one row (4097, causal with a window so that the blocks see different key
 * ranges), and chunks of exactly 4 heads that are one GQA group each. */
static void row_blocks_and_chunks_at_half_max_alloc(void **state) {
    (void)state;
    const size_t limit = 32 * MIB;
    clattn_context *small = small_device(2 * limit);
    sdpa_case c = large_case(1, 2, 2, 4096, 4031, 64);
    assert_int_equal(2048 * row_bytes(c.kv_len, c.head_dim), limit);
    c.want_lse = c.want_weights = true;
    c.seed = 5;
    sdpa_case_run_both(small, &c);
    assert_int_equal(last_call_bytes(small), limit);

    c = large_case(1, 1, 1, 4097, 4031, 64);
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.window_left = 1500; /* the second block's rows see keys the first one's do not */
    c.want_lse = c.want_weights = true;
    c.seed = 6;
    sdpa_case_run_both(small, &c);
    assert_int_equal(last_call_bytes(small), limit);

    c = large_case(2, 12, 3, 512, 4031, 64);
    assert_int_equal(4 * c.q_len * row_bytes(c.kv_len, c.head_dim), limit);
    c.want_lse = true;
    c.seed = 7;
    sdpa_case_run_both(small, &c);
    assert_int_equal(last_call_bytes(small), limit);
    clattn_context_free(small);
}

/* fp16 keys and values are packed to fp32, 32768 keys x (128 + 128) x 4 bytes = exactly the 32 MiB limit per
 * key/value head: a decode step of 32 query heads over 4 key/value heads runs one GQA group per chunk. */
static void packed_keys_exactly_at_half_max_alloc(void **state) {
    (void)state;
    clattn_context *small = small_device(64 * MIB);
    sdpa_case c = large_case(2, 32, 4, 1, 32768, 128);
    c.dtype = CLATTN_DTYPE_F16;
    c.want_lse = true;
    c.seed = 8;
    sdpa_case_run_both(small, &c);
    clattn_context_free(small);
}

/* One key/value head of 65536 fp16 keys packs to 64 MiB, past the 32 MiB limit: the unfused path cannot serve the
 * call and says so, writing nothing, and the fused path (which needs no such temporaries) serves it. */
static void unfused_refuses_what_it_cannot_chunk(void **state) {
    (void)state;
    clattn_context *small = small_device(64 * MIB);
    const size_t Lk = 65536, D = 128, es = 2, margin = 64;
    const unsigned char poison = 0x7b;
    clattn_tensor t[4];
    t[0] = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F16, 1, 8, 1, D);
    t[1] = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F16, 1, 1, Lk, D);
    t[2] = t[1];
    t[3] = t[0];
    const size_t inputs = Lk * D * es, out = 8 * D * es + margin;
    unsigned char *bytes = malloc(inputs);
    assert_non_null(bytes);
    memset(bytes, 0, inputs); /* zeros: a valid attention */
    for (int i = 0; i < 3; ++i) {
        t[i].buffer = test_upload_window(small, i ? inputs : 8 * D * es, 0, bytes, i ? inputs : 8 * D * es);
        assert_non_null(t[i].buffer);
    }
    memset(bytes, poison, out);
    t[3].buffer = test_upload_window(small, out, 0, bytes, out);
    assert_non_null(t[3].buffer);
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.impl = CLATTN_IMPL_UNFUSED;
    assert_status(clattn_sdpa(small, &desc, &t[0], &t[1], &t[2], &t[3], NULL, 0, NULL, NULL),
                  CLATTN_ERROR_DEVICE_LIMIT);
    if (!strstr(clattn_context_last_error(small), "CLATTN_IMPL_FUSED"))
        fail_msg("the message does not point to the fused path: %s", clattn_context_last_error(small));
    assert_int_equal(clFinish(clattn_context_cl_queue(small)), CL_SUCCESS);
    assert_int_equal(test_read_window(small, t[3].buffer, 0, out, bytes), 0);
    for (size_t i = 0; i < out; ++i)
        if (bytes[i] != poison) fail_msg("byte %zu of the output was written by a call that failed", i);
    desc.impl = CLATTN_IMPL_FUSED;
    assert_status(clattn_sdpa(small, &desc, &t[0], &t[1], &t[2], &t[3], NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    assert_int_equal(test_read_window(small, t[3].buffer, 0, out, bytes), 0);
    for (size_t i = 0; i < 8 * D * es; ++i)
        if (bytes[i] != 0) fail_msg("byte %zu of the fused output is %d, not 0", i, bytes[i]);
    for (int i = 0; i < 4; ++i) clReleaseMemObject(t[i].buffer);
    free(bytes);
    clattn_context_free(small);
}

/* ---- the longest sequences ---- */

/* An f32 tensor [1, 1, L, D] whose L rows all are `row`, in a buffer of its own: `stored` L times, else once and
 * repeated by a sequence stride of 0. */
static clattn_tensor repeated_row(const float *row, size_t L, size_t D, bool stored) {
    clattn_tensor t = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, 1, 1, L, D);
    const size_t rows = stored ? L : 1, bytes = rows * D * sizeof(float);
    if (!stored) t.stride[2] = 0;
    t.stride[1] = t.stride[0] = rows * D;
    float *host = malloc(bytes);
    assert_non_null(host);
    for (size_t i = 0; i < rows; ++i) memcpy(host + i * D, row, D * sizeof(float));
    t.buffer = test_upload_window(ctx, bytes, 0, host, bytes);
    assert_non_null(t.buffer);
    free(host);
    return t;
}

/* Runs one query over Lk keys and values that repeat one row into poisoned outputs; returns the status, and in out
 * and lse what the outputs hold afterwards. */
static clattn_status run_repeated(clattn_impl impl, const clattn_tensor *q, size_t Lk, const float *k_row,
                                  const float *v_row, bool stored, float *out, float *lse) {
    const size_t D = q->size[3];
    float poison[8];
    memset(poison, 0x7b, sizeof poison);
    clattn_tensor k = repeated_row(k_row, Lk, D, stored), v = repeated_row(v_row, Lk, D, stored);
    clattn_tensor o = repeated_row(poison, 1, D, false);
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.impl = impl;
    desc.lse = repeated_row(poison, 1, 1, false);
    clattn_status st = clattn_sdpa(ctx, &desc, q, &k, &v, &o, NULL, 0, NULL, NULL);
    assert_int_equal(clFinish(clattn_context_cl_queue(ctx)), CL_SUCCESS);
    assert_int_equal(test_read_window(ctx, o.buffer, 0, D * sizeof(float), out), 0);
    assert_int_equal(test_read_window(ctx, desc.lse.buffer, 0, sizeof(float), lse), 0);
    clattn_tensor *all[] = {&k, &v, &o, &desc.lse};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) clReleaseMemObject(all[i]->buffer);
    return st;
}

/* Checks the result of equal keys: out is the value row, lse = logit + ln Lk. */
static void expect_uniform(const char *what, const float *out, const float *v_row, size_t D, float lse,
                           double logit, size_t Lk) {
    for (size_t d = 0; d < D; ++d)
        if (fabsf(out[d] - v_row[d]) > 1e-6f) fail_msg("%s: out[%zu] = %.9g, not %.9g", what, d, out[d], v_row[d]);
    const double want = logit + log((double)Lk);
    if (fabs(lse - want) > 1e-5 * want) fail_msg("%s: lse = %.9g, not %.9g", what, lse, want);
}

/* Positions are 32-bit in the kernels and the library takes sequences of up to 2^28: 2^28 equal keys and values (a
 * sequence stride of 0) give the fused path the value row itself and lse = logit + ln 2^28 (powers of two, so that
 * the sums of 2^28 equal terms are exact in fp32). The unfused path, whose one row of scores would take 1 GiB,
 * refuses them with CLATTN_ERROR_DEVICE_LIMIT; 2^28 + 1 keys are CLATTN_ERROR_UNSUPPORTED for both. A refused call
 * writes nothing. */
static void longest_sequence(void **state) {
    (void)state;
    enum { D = 4 };
    const size_t Lk = (size_t)1 << 28;
    const float q_row[D] = {1.0f, 0.5f, -1.0f, 2.0f}, k_row[D] = {0.25f, 1.0f, 1.0f, 0.5f};
    const float v_row[D] = {1.0f, -2.0f, 0.5f, 4.0f};
    clattn_tensor q = repeated_row(q_row, 1, D, false);
    float out[D], lse;
    assert_status(run_repeated(CLATTN_IMPL_FUSED, &q, Lk, k_row, v_row, false, out, &lse), CLATTN_SUCCESS);
    expect_uniform("fused", out, v_row, D, lse, 0.75 / sqrt((double)D), Lk); /* q . k with the default scale */

    unsigned char untouched[D * sizeof(float)];
    memset(untouched, 0x7b, sizeof untouched);
    const struct {
        clattn_impl impl;
        size_t keys;
        clattn_status want;
    } refused[] = {{CLATTN_IMPL_UNFUSED, Lk, CLATTN_ERROR_DEVICE_LIMIT},
                   {CLATTN_IMPL_FUSED, Lk + 1, CLATTN_ERROR_UNSUPPORTED},
                   {CLATTN_IMPL_UNFUSED, Lk + 1, CLATTN_ERROR_UNSUPPORTED}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; ++i) {
        assert_status(run_repeated(refused[i].impl, &q, refused[i].keys, k_row, v_row, false, out, &lse),
                      refused[i].want);
        if (memcmp(out, untouched, sizeof out) != 0 || memcmp(&lse, untouched, sizeof lse) != 0)
            fail_msg("a refused call (case %zu) wrote its outputs", i);
    }
    clReleaseMemObject(q.buffer);
}

/* Rows of 2^25 stored keys (128 MiB of scores) on both paths: the unfused one's GEMM P V and row sums, like the
 * fused splits, sum at most CLA_MAX_KEYS_PER_SUM keys in one fp32 accumulator, so equal keys give the value row
 * exactly. */
static void long_rows_both_paths(void **state) {
    (void)state;
    enum { D = 2 };
    const size_t Lk = (size_t)1 << 25;
    const float q_row[D] = {1.0f, -0.5f}, k_row[D] = {0.5f, 0.25f}, v_row[D] = {4.0f, -0.5f};
    clattn_tensor q = repeated_row(q_row, 1, D, false);
    float out[D], lse;
    assert_status(run_repeated(CLATTN_IMPL_UNFUSED, &q, Lk, k_row, v_row, true, out, &lse), CLATTN_SUCCESS);
    expect_uniform("unfused", out, v_row, D, lse, 0.375 / sqrt((double)D), Lk);
    assert_status(run_repeated(CLATTN_IMPL_FUSED, &q, Lk, k_row, v_row, true, out, &lse), CLATTN_SUCCESS);
    expect_uniform("fused", out, v_row, D, lse, 0.375 / sqrt((double)D), Lk);
    clReleaseMemObject(q.buffer);
}

/* ---- offsets and strides ---- */

/* Every tensor (q, k, v, out, lse, weights) starts past byte 2^31 of its buffer; fp32 inputs are read in place by
 * CLBlast at element offsets of about 2^29. Once in one chunk, and once on a device whose smaller maximum
 * allocation makes the unfused path cut every head into blocks of 992 rows. */
static void byte_offsets_past_2_31(void **state) {
    (void)state;
    sdpa_case c = large_case(1, 4, 2, 1024, 2048, 64);
    c.offset = ((size_t)1 << 29) + 3;
    if (!test_device_allows(ctx, (c.offset + 4 * c.q_len * c.kv_len + 64) * sizeof(float),
                            "byte offsets past 2^31"))
        return;
    c.want_lse = c.want_weights = true;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.seed = 9;
    sdpa_case_run_both(ctx, &c);
    clattn_context *small = small_device(16 * MIB);
    c.seed = 16;
    sdpa_case_run_both(small, &c);
    clattn_context_free(small);
}

/* fp32 views that end just below element 2^31 - 1, the most CLBlast's int offsets reach in place: the inputs are
 * read there and the outputs (out, lse, weights) written there. */
static void element_offsets_just_below_2_31(void **state) {
    (void)state;
    sdpa_case c = large_case(2, 4, 4, 512, 512, 64);
    const size_t weights = c.batch * c.q_heads * c.q_len * c.kv_len, margin = 64;
    c.offset = (size_t)INT_MAX - weights - 2 * margin;
    if (!test_device_allows(ctx, (c.offset + weights + margin) * sizeof(float), "element offsets just below 2^31"))
        return;
    c.want_lse = c.want_weights = true;
    c.seed = 10;
    sdpa_case_run_both(ctx, &c);
}

/* fp16 [B, L, H, D] views at element offsets past 2^31 (byte 4 GiB), each sequence position 4096 elements apart (a
 * slice of a wide projection), with fp16 weights there too, a boolean mask past byte 2^31 and key lengths. */
static void element_offsets_past_2_31_with_large_strides(void **state) {
    (void)state;
    sdpa_case c = large_case(2, 8, 8, 1024, 1024, 64);
    c.dtype = CLATTN_DTYPE_F16;
    c.layout = LAYOUT_BLHD;
    c.row_pad = 4096 - 8 * 64;
    c.offset = ((size_t)1 << 31) + 5;
    if (!test_device_allows(ctx, (c.offset + 2 * 1024 * 4096 + 64) * 2, "element offsets past 2^31")) return;
    static const int32_t lengths[2] = {1024, 700};
    c.key_lengths = lengths;
    c.mask_kind = MASK_BOOL;
    c.mask_bcast_heads = true;
    c.mask_fill_prob = 0.2f;
    c.want_weights = true;
    c.weights_dtype = CLATTN_DTYPE_F16;
    c.seed = 11;
    sdpa_case_run_both(ctx, &c);
}

/* The tiled fused kernel (the variant GPUs and accelerators run; CPUs run sdpa_fused_cpu.cl) at element offsets
 * past 2^31 with strided fp16 views, a mask and key lengths, and in a decode step over 32768 keys split across
 * work-groups. */
static void tiled_variant_past_2_31(void **state) {
    (void)state;
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", "variant=tiled"), CLATTN_SUCCESS);
    sdpa_case c = large_case(2, 4, 2, 384, 512, 64);
    c.dtype = CLATTN_DTYPE_F16;
    c.layout = LAYOUT_BLHD;
    c.row_pad = 1000;
    c.offset = ((size_t)1 << 31) + 7;
    static const int32_t lengths[2] = {512, 301};
    c.key_lengths = lengths;
    c.mask_kind = MASK_ADD;
    c.mask_dtype = CLATTN_DTYPE_F16;
    c.mask_bcast_batch = true;
    c.mask_fill_prob = 0.1f;
    c.causal = CLATTN_CAUSAL_TOP_LEFT;
    c.seed = 50;
    if (test_device_allows(ctx, (c.offset + 2 * 512 * (4 * 64 + 1000) + 64) * 2, "tiled kernel past 2^31"))
        sdpa_case_run_both(ctx, &c);
    c = large_case(2, 16, 4, 1, 32768, 128);
    c.want_lse = true;
    c.seed = 51;
    sdpa_case_run_both(ctx, &c);
}

/* Whatever the test above did, the tests after it run the library's own choice. */
static int forget_fused_params(void **state) {
    (void)state;
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    return 0;
}

/* ---- several devices ---- */

/* Attention split over the devices of one context (CTest's test_large_sdpa_split runs this with two PoCL pthread
 * devices; with one device it skips): parts whose outputs lie past byte 2^31 of their buffers, written through
 * sub-buffers there (an aligned offset) or through temporaries copied into place (an unaligned one), split by batch
 * items and, with one item, by key/value head groups. */
static void split_over_devices(void **state) {
    (void)state;
    char message[1024] = "";
    clattn_context_options o;
    test_context_options(&o, message, sizeof message);
    o.devices = "all";
    clattn_context *all = NULL;
    if (clattn_context_create_with_options(&o, &all) != CLATTN_SUCCESS)
        fail_msg("a context over all devices: %s", message);
    if (clattn_context_device_count(all) < 2) {
        print_message(
            "skipped: one device here (test_large_sdpa_split runs this with POCL_DEVICES=\"pthread pthread\")\n");
        clattn_context_free(all);
        skip();
        return;
    }
    static const size_t offsets[2] = {(size_t)1 << 29, ((size_t)1 << 29) + 3};
    for (int i = 0; i < 2; ++i) {
        sdpa_case c = large_case(2, 8, 4, 512, 1024, 64);
        c.offset = offsets[i];
        if (!test_device_allows(all, (c.offset + 16 * 512 * 1024 + 64) * sizeof(float), "split outputs past 2^31"))
            break;
        c.want_lse = c.want_weights = true;
        c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        c.seed = 40 + (unsigned)i;
        sdpa_case_run_both(all, &c);
    }
    sdpa_case c = large_case(1, 16, 4, 1, 32768, 128);
    c.dtype = CLATTN_DTYPE_F16;
    c.layout = LAYOUT_BLHD;
    c.offset = ((size_t)1 << 31) + 1; /* fp16 elements: an fp32 lse there would pass the maximum allocation */
    c.seed = 42;
    if (test_device_allows(all, (c.offset + 32768 * 4 * 128 + 64) * 2, "split views past element 2^31"))
        sdpa_case_run_both(all, &c);
    clattn_context_free(all);
}

/* ---- long sequences, many heads ---- */

/* Decode steps over 32768 and 65536 keys: 32 query heads over 8 key/value heads in a batch of 2 (fp32), and 64
 * over 4 in [B, L, H, D] fp16 with four speculative queries (bottom-right causal), a sliding window of 4096 keys
 * and key lengths. */
static void long_decode(void **state) {
    (void)state;
    sdpa_case c = large_case(2, 32, 8, 1, 32768, 128);
    c.want_lse = true;
    c.seed = 12;
    sdpa_case_run_both(ctx, &c);

    c = large_case(2, 64, 4, 4, 65536, 64);
    c.dtype = CLATTN_DTYPE_F16;
    c.layout = LAYOUT_BLHD;
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.window_left = 4096; /* a sliding window, which the second item's key length cuts off in its middle */
    static const int32_t lengths[2] = {65536, 63000};
    c.key_lengths = lengths;
    c.want_lse = true;
    c.seed = 13;
    sdpa_case_run_both(ctx, &c);
}

/* Prefill with many heads: 64 query heads over 8 (GQA) in one chunk, and 32 heads of 128 in a batch of 2, causal.
 */
static void many_heads(void **state) {
    (void)state;
    sdpa_case c = large_case(1, 64, 8, 512, 512, 64);
    c.want_lse = c.want_weights = true;
    c.seed = 14;
    sdpa_case_run_both(ctx, &c);

    c = large_case(2, 32, 32, 256, 1024, 128);
    c.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    c.layout = LAYOUT_BLHD;
    c.want_lse = true;
    c.seed = 15;
    sdpa_case_run_both(ctx, &c);
}

/* An argument runs only the tests whose names match it (cmocka's filter: * and ? wildcards). */
int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_crossing_the_limit),
        cmocka_unit_test(chunk_exactly_at_the_limit),
        cmocka_unit_test(row_blocks_and_chunks_at_half_max_alloc),
        cmocka_unit_test(packed_keys_exactly_at_half_max_alloc),
        cmocka_unit_test(unfused_refuses_what_it_cannot_chunk),
        cmocka_unit_test(longest_sequence),
        cmocka_unit_test(long_rows_both_paths),
        cmocka_unit_test(byte_offsets_past_2_31),
        cmocka_unit_test(element_offsets_just_below_2_31),
        cmocka_unit_test(element_offsets_past_2_31_with_large_strides),
        cmocka_unit_test_teardown(tiled_variant_past_2_31, forget_fused_params),
        cmocka_unit_test(split_over_devices),
        cmocka_unit_test(long_decode),
        cmocka_unit_test(many_heads),
    };
    return cmocka_run_group_tests_name("large_sdpa", tests, setup, teardown);
}
