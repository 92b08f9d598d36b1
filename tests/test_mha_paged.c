// SPDX-License-Identifier: Apache-2.0
/* The paged KV cache of multi-head attention (clattn_mha_desc.pages) against the double-precision reference of one
 * sequence at a time: an engine's schedule of packed prefill chunks and decode steps over shuffled pages, a page
 * shared by two sequences' prompts, reading without appending, fp32/fp16 and 8-bit pages; every bad argument gives
 * its status and leaves the pages and the output as they were. */
#include "mha_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_tolerance.h"
#include "reference_mha.h"

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

enum { SEQS = 3, PAGES = 16, PAGE = 8, STRIDE = 4, MAX_TOKENS = STRIDE * PAGE };

/* The engine's side: its layer, its pages on the device and its bookkeeping of every sequence's tokens. */
typedef struct engine {
    mha_layer l;
    clattn_dtype page_dtype;
    cl_mem kbuf, vbuf, ksbuf, vsbuf;
    clattn_mha_pages pages;
    int32_t table[SEQS * STRIDE];
    int32_t lens[SEQS];
    int32_t spare;       /* a page no sequence uses */
    float *tokens[SEQS]; /* each sequence's inputs so far, [MAX_TOKENS, d_model] */
} engine;

static const clattn_mha_config config = {24, 0, 4, 2, 8, 6};

static cl_mem filled_buffer(size_t bytes, unsigned char byte) {
    unsigned char *fill = malloc(bytes);
    assert_non_null(fill);
    memset(fill, byte, bytes);
    cl_mem m = mha_buffer(ctx, bytes, fill);
    free(fill);
    return m;
}

/* Pages of `dtype` in vLLM's [num_blocks, block_size, Hkv, d] layout, poisoned, and a shuffled block table: the
 * pages of sequence b are table[b][..]. 8-bit pages get a scale per slot and head (I8, computed by the appends)
 * or per head (FP8, given). */
static void engine_make(engine *e, clattn_dtype dtype, unsigned seed) {
    memset(e, 0, sizeof *e);
    mha_layer_make(ctx, &e->l, &config, seed % 2 == 0, true, seed);
    const clattn_mha_config *c = &e->l.cfg;
    e->page_dtype = dtype;
    const size_t es = clattn_dtype_size(dtype), slots = (size_t)PAGES * PAGE;
    e->kbuf = filled_buffer(slots * c->kv_heads * c->head_dim * es, MHA_POISON_BYTE);
    e->vbuf = filled_buffer(slots * c->kv_heads * c->v_head_dim * es, MHA_POISON_BYTE);
    clattn_mha_pages *pg = &e->pages;
    pg->seq_count = SEQS;
    pg->block_table = e->table;
    pg->block_table_stride = STRIDE;
    pg->cached_lens = e->lens;
    pg->k_cache = clattn_tensor_blhd(e->kbuf, dtype, PAGES, c->kv_heads, PAGE, c->head_dim);
    pg->v_cache = clattn_tensor_blhd(e->vbuf, dtype, PAGES, c->kv_heads, PAGE, c->v_head_dim);
    if (dtype == CLATTN_DTYPE_I8) {
        e->ksbuf = filled_buffer(slots * c->kv_heads * sizeof(float), 0);
        e->vsbuf = filled_buffer(slots * c->kv_heads * sizeof(float), 0);
        pg->k_scale = clattn_tensor_blhd(e->ksbuf, CLATTN_DTYPE_F32, PAGES, c->kv_heads, PAGE, 1);
        pg->v_scale = clattn_tensor_blhd(e->vsbuf, CLATTN_DTYPE_F32, PAGES, c->kv_heads, PAGE, 1);
    } else if (dtype == CLATTN_DTYPE_FP8_E4M3) {
        float per_head[8];
        for (size_t h = 0; h < c->kv_heads; ++h) per_head[h] = 8.0f / 448.0f * (1.0f + 0.25f * (float)h);
        e->ksbuf = mha_buffer(ctx, c->kv_heads * sizeof(float), per_head);
        e->vsbuf = mha_buffer(ctx, c->kv_heads * sizeof(float), per_head);
        pg->k_scale = clattn_tensor_bhld(e->ksbuf, CLATTN_DTYPE_F32, 1, c->kv_heads, 1, 1);
        pg->v_scale = clattn_tensor_bhld(e->vsbuf, CLATTN_DTYPE_F32, 1, c->kv_heads, 1, 1);
    }
    /* Pages in a shuffled order; sequence 2's first page is sequence 0's (a shared prompt, see the schedule). */
    int32_t order[PAGES];
    for (int i = 0; i < PAGES; ++i) order[i] = i;
    unsigned s = seed * 7919u + 1u;
    for (int i = PAGES - 1; i > 0; --i) {
        s = s * 1103515245u + 12345u;
        const int j = (int)((s >> 8) % (unsigned)(i + 1));
        const int32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < SEQS * STRIDE; ++i) e->table[i] = order[i];
    e->spare = e->table[2 * STRIDE];
    e->table[2 * STRIDE] = e->table[0];
    for (int b = 0; b < SEQS; ++b) {
        e->tokens[b] = calloc((size_t)MAX_TOKENS * c->d_model, sizeof(float));
        assert_non_null(e->tokens[b]);
    }
}

static void engine_free(engine *e) {
    const cl_mem m[4] = {e->kbuf, e->vbuf, e->ksbuf, e->vsbuf};
    for (int i = 0; i < 4; ++i)
        if (m[i]) clReleaseMemObject(m[i]);
    for (int b = 0; b < SEQS; ++b) free(e->tokens[b]);
    mha_layer_free(&e->l);
}

/* The pages' bytes, to show that a refused call wrote none. */
static unsigned char *pages_snapshot(const engine *e, size_t *bytes) {
    const clattn_mha_config *c = &e->l.cfg;
    const size_t es = clattn_dtype_size(e->page_dtype), slots = (size_t)PAGES * PAGE;
    const size_t kb = slots * c->kv_heads * c->head_dim * es, vb = slots * c->kv_heads * c->v_head_dim * es;
    unsigned char *snap = malloc(kb + vb);
    assert_non_null(snap);
    cl_command_queue q = clattn_context_cl_queue(ctx);
    assert_int_equal(clEnqueueReadBuffer(q, e->kbuf, CL_TRUE, 0, kb, snap, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(q, e->vbuf, CL_TRUE, 0, vb, snap + kb, 0, NULL, NULL), CL_SUCCESS);
    *bytes = kb + vb;
    return snap;
}

/* How far 8-bit pages may move the layer's output: the keys' and values' rounding, relative to the output. */
static double page_tolerance(const engine *e, size_t kv_len) {
    const double rel = check_mha_rel_tolerance(&e->l.cfg, kv_len);
    if (e->page_dtype == CLATTN_DTYPE_I8) return rel + 2e-2;
    if (e->page_dtype == CLATTN_DTYPE_FP8_E4M3) return rel + 1.5e-1;
    if (e->page_dtype == CLATTN_DTYPE_F16 || e->page_dtype == CLATTN_DTYPE_BF16) return rel + 2e-2;
    return rel;
}

/* One call of the engine's schedule: `fresh[b]` new tokens of sequence b (packed when `packed`, else every
 * sequence the same count, [B, 1, n, d_model]), appended and attended, or attended without appending when
 * `read_only`. Checks every output row against the reference of its own sequence, then advances the lengths. */
static void engine_step(engine *e, const size_t fresh[SEQS], bool packed, bool read_only, unsigned *seed,
                        const char *what) {
    const clattn_mha_config *c = &e->l.cfg;
    const size_t D = c->d_model;
    int32_t cu[SEQS + 1] = {0};
    for (int b = 0; b < SEQS; ++b) cu[b + 1] = cu[b] + (int32_t)fresh[b];
    const size_t total = (size_t)cu[SEQS];
    if (!packed)
        for (int b = 1; b < SEQS; ++b) assert_int_equal(fresh[b], fresh[0]);
    float *x = mha_rand_array(total * D, 1.0f, seed);
    dev_seq dx = packed ? seq_make(ctx, CLATTN_DTYPE_F32, 1, total, D, 3, x)
                        : seq_make(ctx, CLATTN_DTYPE_F32, SEQS, fresh[0], D, 3, x);
    dev_seq out = packed ? seq_make(ctx, CLATTN_DTYPE_F32, 1, total, D, 5, NULL)
                         : seq_make(ctx, CLATTN_DTYPE_F32, SEQS, fresh[0], D, 5, NULL);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.residual = 1;
    desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    desc.cache_mode = read_only ? CLATTN_CACHE_READ : CLATTN_CACHE_APPEND;
    e->pages.cu_seqlens_q = packed ? cu : NULL;
    desc.pages = &e->pages;
    mha_run_ok(ctx, e->l.dev, &desc, &dx.t, NULL, &out.t);
    float *got = malloc((total ? total : 1) * D * sizeof *got);
    assert_non_null(got);
    if (!seq_read(ctx, &out, got)) fail_msg("%s: bytes outside the output were written", what);

    for (int b = 0; b < SEQS; ++b) {
        const size_t n = fresh[b], past = (size_t)e->lens[b];
        if (n == 0) continue;
        const float *xb = x + (size_t)cu[b] * D;
        cla_ref_mha ref;
        memset(&ref, 0, sizeof ref);
        ref.config = config;
        ref.weights = e->l.host;
        ref.batch = 1;
        ref.q_len = n;
        ref.x = xb;
        ref.past = e->tokens[b];
        ref.past_len = past;
        ref.read_only = read_only;
        ref.residual = 1;
        ref.attention.scale = NAN;
        ref.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        ref.attention.window_left = ref.attention.window_right = CLATTN_WINDOW_UNBOUNDED;
        double *want = calloc(n * D, sizeof *want);
        assert_non_null(want);
        ref.out = want;
        assert_int_equal(cla_reference_mha(&ref), 0);
        char label[160];
        snprintf(label, sizeof label, "%s, sequence %d (%zu cached, %zu new, pages %s)", what, b, past, n,
                 clattn_dtype_name(e->page_dtype));
        expect_close(label, got + (size_t)cu[b] * D, want, n * D, page_tolerance(e, past + (read_only ? 0 : n)),
                     CLATTN_DTYPE_F32, "paged mha");
        free(want);
        if (!read_only) {
            memcpy(e->tokens[b] + past * D, xb, n * D * sizeof *xb);
            e->lens[b] += (int32_t)n;
        }
    }
    free(got);
    free(x);
    seq_release(&dx);
    seq_release(&out);
}

/* Sequence 2 starts from sequence 0's first page: the engine shares it (its 8 tokens are the same prompt). */
static void share_prompt(engine *e) {
    assert_true(e->lens[0] >= PAGE);
    memcpy(e->tokens[2], e->tokens[0], (size_t)PAGE * e->l.cfg.d_model * sizeof(float));
    e->lens[2] = PAGE;
}

/* Continuous batching: packed prefill chunks (one of them empty), a shared prompt page, decode steps, a read. */
static void run_schedule(clattn_dtype dtype, unsigned seed) {
    engine e;
    engine_make(&e, dtype, seed);
    unsigned s = seed;
    const size_t prefill[SEQS] = {9, 1, 0};
    engine_step(&e, prefill, true, false, &s, "prefill");
    share_prompt(&e);
    const size_t chunk[SEQS] = {3, 6, 5};
    engine_step(&e, chunk, true, false, &s, "chunked prefill");
    const size_t one[SEQS] = {1, 1, 1};
    for (int step = 0; step < 3; ++step) engine_step(&e, one, false, false, &s, "decode");
    const size_t mixed[SEQS] = {1, 0, 4};
    engine_step(&e, mixed, true, false, &s, "decode and prefill together");
    const size_t two[SEQS] = {2, 2, 2};
    engine_step(&e, two, false, true, &s, "read without appending");
    engine_free(&e);
}

static void schedule_f32(void **state) {
    (void)state;
    run_schedule(CLATTN_DTYPE_F32, 2);
    run_schedule(CLATTN_DTYPE_F32, 3);
}

static void schedule_f16_and_8bit(void **state) {
    (void)state;
    run_schedule(CLATTN_DTYPE_F16, 4);
    run_schedule(CLATTN_DTYPE_I8, 5);
    run_schedule(CLATTN_DTYPE_FP8_E4M3, 6);
}

/* Every refused call: its status, and neither the pages nor the output written. */
static void expect_refused(engine *e, clattn_mha_desc *desc, const dev_seq *x, const clattn_tensor *memory,
                           const dev_seq *out, clattn_status want, const char *what) {
    size_t bytes = 0;
    unsigned char *before = pages_snapshot(e, &bytes);
    const clattn_status st = clattn_mha(ctx, e->l.dev, desc, &x->t, memory, &out->t, NULL, 0, NULL, NULL);
    clFinish(clattn_context_cl_queue(ctx));
    if (st != want)
        fail_msg("%s: status %d (%s), expected %d (%s): %s", what, (int)st, clattn_status_string(st), (int)want,
                 clattn_status_string(want), clattn_context_last_error(ctx));
    if (!*clattn_context_last_error(ctx)) fail_msg("%s: no message", what);
    if (!seq_untouched(ctx, out)) fail_msg("%s: the output was written", what);
    size_t after_bytes = 0;
    unsigned char *after = pages_snapshot(e, &after_bytes);
    if (memcmp(before, after, bytes) != 0) fail_msg("%s: the pages were written", what);
    free(before);
    free(after);
}

static void bad_arguments(void **state) {
    (void)state;
    engine e;
    engine_make(&e, CLATTN_DTYPE_F32, 8);
    e.table[2 * STRIDE] = e.spare; /* no shared page here: sequence 2 has its own prompt */
    const size_t D = e.l.cfg.d_model;
    unsigned s = 1;
    const size_t prefill[SEQS] = {9, 2, 3};
    engine_step(&e, prefill, true, false, &s, "prefill");
    float *x = mha_rand_array(SEQS * D, 1.0f, &s);
    dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, SEQS, 1, D, 0, x);
    dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, SEQS, 1, D, 0, NULL);
    dev_seq packed_x = seq_make(ctx, CLATTN_DTYPE_F32, 1, SEQS, D, 0, x);
    dev_seq packed_out = seq_make(ctx, CLATTN_DTYPE_F32, 1, SEQS, D, 0, NULL);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    desc.pages = &e.pages;
    e.pages.cu_seqlens_q = NULL;

    int32_t lens[SEQS];
    memcpy(lens, e.lens, sizeof lens);
    e.lens[1] = -1;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SEQLENS, "negative cached length");
    e.lens[1] = MAX_TOKENS;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SEQLENS, "no room for the new token");
    memcpy(e.lens, lens, sizeof lens);

    const int32_t saved = e.table[1 * STRIDE];
    e.table[1 * STRIDE] = PAGES;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_BLOCK_TABLE, "a page past the cache");
    e.table[1 * STRIDE] = -2;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_BLOCK_TABLE, "a negative page");
    /* Sequences 0 and 1 writing into the same page. */
    e.table[1 * STRIDE] = saved;
    const int32_t entry = e.lens[0] / PAGE, saved_entry = e.table[1 * STRIDE + entry];
    e.table[1 * STRIDE + entry] = e.table[entry];
    e.lens[1] = e.lens[0];
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SLOT, "one slot for two new tokens");
    e.table[1 * STRIDE + entry] = saved_entry;
    memcpy(e.lens, lens, sizeof lens);

    int32_t cu[SEQS + 1] = {0, 1, 2, 2};
    e.pages.cu_seqlens_q = cu;
    expect_refused(&e, &desc, &packed_x, NULL, &packed_out, CLATTN_ERROR_INVALID_SEQLENS, "cu short of x's rows");
    cu[1] = 2;
    cu[2] = 1;
    expect_refused(&e, &desc, &packed_x, NULL, &packed_out, CLATTN_ERROR_INVALID_SEQLENS, "decreasing cu");
    cu[1] = 1;
    cu[2] = 2;
    cu[3] = 3;
    expect_refused(&e, &desc, &packed_x, &packed_x.t, &packed_out, CLATTN_ERROR_UNSUPPORTED,
                   "packed with a memory");
    e.pages.cu_seqlens_q = NULL;

    e.pages.seq_count = 2;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SHAPE, "seq_count against x's batch");
    e.pages.seq_count = SEQS;
    e.pages.block_table = NULL;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_NULL_POINTER, "no block table");
    e.pages.block_table = e.table;

    clattn_kv_cache *cache = NULL;
    assert_status(clattn_kv_cache_create(ctx, &config, SEQS, 4, &cache), CLATTN_SUCCESS);
    desc.cache = cache;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_ARGUMENT, "a cache and pages");
    desc.cache = NULL;
    clattn_kv_cache_free(cache);

    clattn_tensor k_cache = e.pages.k_cache;
    e.pages.k_cache.size[1] = 1;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SHAPE, "pages of other heads");
    e.pages.k_cache = k_cache;
    e.pages.k_cache.dtype = CLATTN_DTYPE_I8;
    e.pages.v_cache.dtype = CLATTN_DTYPE_I8;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_SCALE, "8-bit pages without scales");
    e.pages.k_cache = k_cache;
    e.pages.v_cache.dtype = CLATTN_DTYPE_F32;

    desc.attention.seq_count = SEQS;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_UNSUPPORTED, "serving fields in desc->attention");
    desc.attention.seq_count = 0;
    desc.cache_mode = CLATTN_CACHE_READ;
    expect_refused(&e, &desc, &dx, &dx.t, &out, CLATTN_ERROR_INVALID_ARGUMENT, "memory with READ");
    desc.cache_mode = (clattn_cache_mode)7;
    expect_refused(&e, &desc, &dx, NULL, &out, CLATTN_ERROR_INVALID_ARGUMENT, "unknown cache mode");
    desc.cache_mode = CLATTN_CACHE_APPEND;

    /* After all that, the engine's next step still works and matches the reference. */
    const size_t one[SEQS] = {1, 1, 1};
    engine_step(&e, one, false, false, &s, "after refused calls");
    free(x);
    seq_release(&dx);
    seq_release(&out);
    seq_release(&packed_x);
    seq_release(&packed_out);
    engine_free(&e);
}

/* Cross-attention over pages: the first call appends the encoder memory (kv_d_model differs from d_model), later
 * calls READ it with no memory, as a decoder's steps do. */
static void cross_attention_pages(void **state) {
    (void)state;
    const clattn_mha_config cfg = {16, 12, 2, 1, 8, 0};
    enum { B = 2, M = 11, L = 3, D = 16, KD = 12, NB = 4, BS = 8 };
    mha_layer l;
    mha_layer_make(ctx, &l, &cfg, false, true, 12);
    cl_mem kbuf = filled_buffer((size_t)NB * BS * 8 * sizeof(float), MHA_POISON_BYTE);
    cl_mem vbuf = filled_buffer((size_t)NB * BS * 8 * sizeof(float), MHA_POISON_BYTE);
    int32_t table[B * 2] = {3, 0, 1, 2}, lens[B] = {0, 0};
    clattn_mha_pages pg = {.seq_count = B, .cached_lens = lens, .block_table = table, .block_table_stride = 2};
    pg.k_cache = clattn_tensor_blhd(kbuf, CLATTN_DTYPE_F32, NB, 1, BS, 8);
    pg.v_cache = clattn_tensor_blhd(vbuf, CLATTN_DTYPE_F32, NB, 1, BS, 8);
    unsigned seed = 5;
    float *mem = mha_rand_array(B * M * KD, 1.0f, &seed);
    dev_seq dm = seq_make(ctx, CLATTN_DTYPE_F32, B, M, KD, 0, mem);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.pages = &pg;
    const double rel = check_mha_rel_tolerance(&l.cfg, M);
    for (int step = 0; step < 2; ++step) {
        float *x = mha_rand_array(B * L * D, 1.0f, &seed);
        dev_seq dx = seq_make(ctx, CLATTN_DTYPE_F32, B, L, D, 0, x);
        dev_seq out = seq_make(ctx, CLATTN_DTYPE_F32, B, L, D, 1, NULL);
        desc.cache_mode = step == 0 ? CLATTN_CACHE_APPEND : CLATTN_CACHE_READ;
        mha_run_ok(ctx, l.dev, &desc, &dx.t, step == 0 ? &dm.t : NULL, &out.t);
        float got[B * L * D];
        assert_true(seq_read(ctx, &out, got));
        cla_ref_mha ref;
        memset(&ref, 0, sizeof ref);
        ref.config = cfg;
        ref.weights = l.host;
        ref.batch = B;
        ref.q_len = L;
        ref.x = x;
        ref.memory = step == 0 ? mem : NULL;
        ref.memory_len = step == 0 ? M : 0;
        ref.past = step == 0 ? NULL : mem;
        ref.past_len = step == 0 ? 0 : M;
        ref.read_only = step == 1;
        ref.attention.scale = NAN;
        ref.attention.window_left = ref.attention.window_right = CLATTN_WINDOW_UNBOUNDED;
        double want[B * L * D];
        ref.out = want;
        assert_int_equal(cla_reference_mha(&ref), 0);
        expect_close(step == 0 ? "cross append" : "cross read", got, want, B * L * D, rel, CLATTN_DTYPE_F32,
                     "paged cross-attention");
        if (step == 0)
            for (int b = 0; b < B; ++b) lens[b] = M;
        free(x);
        seq_release(&dx);
        seq_release(&out);
    }
    free(mem);
    seq_release(&dm);
    clReleaseMemObject(kbuf);
    clReleaseMemObject(vbuf);
    mha_layer_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(schedule_f32),
        cmocka_unit_test(schedule_f16_and_8bit),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(cross_attention_pages),
    };
    return cmocka_run_group_tests_name("mha_paged", tests, setup, teardown);
}
