// SPDX-License-Identifier: Apache-2.0
/* clattn_kv_append: new keys and values written into their slots of paged and dense caches of every storage type,
 * with shuffled slots and skipped (-1) tokens. A host model of every cache and scale byte (clattn_dtype_pack,
 * clattn_quantize_rows) is compared with the device's buffers byte for byte, so that a wrong code, a wrong scale, a
 * slot written that should not be and a write past the view (into the canary) are all caught. The device's fp8 and
 * int8 conversions are checked bit for bit against the host's on values chosen to hit every code, its ties, fp8
 * subnormals, saturation, NaN and float subnormals. Then clattn_sdpa runs over appended paged caches (a prefill
 * chunk and a decode step) against the double-precision reference, every invalid argument gets its exact status
 * with the caches left untouched, and each device operation of a call fails in turn. --tiny runs small shapes of
 * each kernel shape for Oclgrind. */
#include "check_tolerance.h"
#include "fault_steps.h"
#include "reference.h"
#include "support_buffers.h"
#include "support_random.h"
#include "test_util.h"

#include <math.h>

TEST_CONTEXT_SETUP(ctx);
TEST_CONTEXT_TEARDOWN(ctx);

#define POISON     0x7b /* every byte of a cache before it is written */
#define CANARY     64   /* poisoned bytes after each buffer's view */
#define MAX_HEADS  8
#define ARRAY_N(a) (sizeof(a) / sizeof((a)[0]))

/* How a cache's scales are given (none for F32/F16/BF16 caches). */
enum { SCALE_NONE, SCALE_PER_SLOT, SCALE_PER_HEAD, SCALE_PER_TENSOR };

/* A cache on the device and the host model of every byte of its buffers. Paged caches are vLLM's [N, S, Hkv, D]
 * (viewed [N, Hkv, S, D]); a dense one is [B, Hkv, L, D] itself. */
typedef struct kv_cache {
    clattn_dtype dt, sdt;
    int scale_kind;
    bool dense;
    size_t pages, heads, rows, dim;
    clattn_tensor view, scale;
    cl_mem buf, sbuf;
    uint8_t *model, *scale_model;
    size_t bytes, scale_bytes;
    float given[MAX_HEADS]; /* per-head or per-tensor scales as stored */
} kv_cache;

static size_t element_of(const kv_cache *c, size_t page, size_t head, size_t row, size_t d) {
    const clattn_tensor *v = &c->view;
    return v->offset + page * v->stride[0] + head * v->stride[1] + row * v->stride[2] + d * v->stride[3];
}

static kv_cache make_cache(clattn_dtype dt, int scale_kind, clattn_dtype sdt, size_t pages, size_t heads,
                           size_t rows, size_t dim, size_t offset, bool dense, unsigned seed) {
    kv_cache c;
    memset(&c, 0, sizeof c);
    c.dt = dt;
    c.sdt = sdt;
    c.scale_kind = scale_kind;
    c.dense = dense;
    c.pages = pages;
    c.heads = heads;
    c.rows = rows;
    c.dim = dim;
    assert_true(heads <= MAX_HEADS);
    const size_t esz = clattn_dtype_size(dt), elements = offset + pages * rows * heads * dim;
    c.bytes = elements * esz + CANARY;
    c.model = malloc(c.bytes);
    memset(c.model, POISON, c.bytes);
    cl_int err = 0;
    c.buf = support_buffer(ctx, c.model, c.bytes, &err);
    assert_non_null(c.buf);
    c.view = dense ? clattn_tensor_bhld(c.buf, dt, pages, heads, rows, dim)
                   : clattn_tensor_blhd(c.buf, dt, pages, heads, rows, dim);
    c.view.offset = offset;
    if (scale_kind == SCALE_NONE) return c;
    const size_t ssz = clattn_dtype_size(sdt);
    const size_t count = scale_kind == SCALE_PER_SLOT   ? pages * rows * heads
                         : scale_kind == SCALE_PER_HEAD ? heads
                                                        : 1;
    const size_t soffset = scale_kind == SCALE_PER_SLOT ? 2 : 1; /* views that do not start at 0 */
    c.scale_bytes = (soffset + count) * ssz + CANARY;
    c.scale_model = malloc(c.scale_bytes);
    memset(c.scale_model, POISON, c.scale_bytes);
    if (scale_kind != SCALE_PER_SLOT) {
        /* Scales of about max |x| / 127 or / 448 for values in [-2, 2], different per head. */
        const float top = dt == CLATTN_DTYPE_I8 ? 127.0f : 448.0f;
        for (size_t h = 0; h < count; ++h) {
            c.given[h] = clattn_dtype_round(sdt, (1.5f + 0.25f * (float)h + 0.1f * support_random(&seed)) / top);
            assert_status(clattn_dtype_pack(sdt, &c.given[h], c.scale_model + (soffset + h) * ssz, 1),
                          CLATTN_SUCCESS);
        }
    }
    c.sbuf = support_buffer(ctx, c.scale_model, c.scale_bytes, &err);
    assert_non_null(c.sbuf);
    if (scale_kind == SCALE_PER_SLOT)
        c.scale = dense ? clattn_tensor_bhld(c.sbuf, sdt, pages, heads, rows, 1)
                        : clattn_tensor_blhd(c.sbuf, sdt, pages, heads, rows, 1);
    else if (scale_kind == SCALE_PER_HEAD)
        c.scale = clattn_tensor_bhld(c.sbuf, sdt, 1, heads, 1, 1);
    else
        c.scale = clattn_tensor_bhld(c.sbuf, sdt, 1, 1, 1, 1);
    c.scale.offset = soffset;
    return c;
}

static void free_cache(kv_cache *c) {
    clReleaseMemObject(c->buf);
    if (c->sbuf) clReleaseMemObject(c->sbuf);
    free(c->model);
    free(c->scale_model);
}

/* The scale a row of cache c gets at (slot, head) on the host: computed as clattn_quantize_rows does (then rounded
 * to the scale tensor's type), or the given one. */
static float host_scale(const kv_cache *c, const float *x, size_t head) {
    if (c->scale_kind == SCALE_PER_HEAD) return c->given[head];
    if (c->scale_kind == SCALE_PER_TENSOR) return c->given[0];
    float most = 0.0f;
    for (size_t d = 0; d < c->dim; ++d)
        if (fabsf(x[d]) > most) most = fabsf(x[d]);
    return clattn_dtype_round(c->sdt, most / (c->dt == CLATTN_DTYPE_I8 ? 127.0f : 448.0f));
}

/* Writes row x of (slot, head) into the model as the device must: converted, or quantized with its scale. The
 * quantized bytes are checked against clattn_quantize_rows wherever it applies (an F32 scale it computes for I8, or
 * a positive one it is given for FP8, whose reciprocal is finite: else 0 * inf makes its zeros NaN). */
static void model_row(kv_cache *c, const float *x, size_t slot, size_t head) {
    const size_t page = slot / c->rows, row = slot % c->rows, esz = clattn_dtype_size(c->dt);
    uint8_t *dst = c->model + element_of(c, page, head, row, 0) * esz;
    assert_int_equal(c->view.stride[3], 1);
    if (c->scale_kind == SCALE_NONE) {
        assert_status(clattn_dtype_pack(c->dt, x, dst, c->dim), CLATTN_SUCCESS);
        return;
    }
    const float s = host_scale(c, x, head), inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (size_t d = 0; d < c->dim; ++d) {
        /* The device's 0 * inf: zero stays zero, an infinity becomes a NaN of its sign. */
        const float y = x[d] == 0.0f ? x[d] : isinf(x[d]) && inv == 0.0f ? copysignf(NAN, x[d]) : x[d] * inv;
        assert_status(clattn_dtype_pack(c->dt, &y, dst + d, 1), CLATTN_SUCCESS);
    }
    uint8_t check[512];
    float qs = s;
    assert_true(c->dim <= sizeof check);
    const bool computed_f32 = c->scale_kind == SCALE_PER_SLOT && c->sdt == CLATTN_DTYPE_F32;
    if ((c->dt == CLATTN_DTYPE_I8 && computed_f32) || (c->dt == CLATTN_DTYPE_FP8_E4M3 && s > 0.0f && isfinite(s) &&
                                                       isfinite(inv) && c->sdt == CLATTN_DTYPE_F32)) {
        assert_status(clattn_quantize_rows(c->dt, x, 1, c->dim, check, &qs), CLATTN_SUCCESS);
        assert_memory_equal(check, dst, c->dim);
        assert_true(memcmp(&qs, &s, sizeof s) == 0);
    }
    if (c->scale_kind == SCALE_PER_SLOT) {
        const size_t ssz = clattn_dtype_size(c->sdt);
        const size_t at =
            c->scale.offset + page * c->scale.stride[0] + head * c->scale.stride[1] + row * c->scale.stride[2];
        assert_status(clattn_dtype_pack(c->sdt, &s, c->scale_model + at * ssz, 1), CLATTN_SUCCESS);
    }
}

/* The value the cache holds at (slot, head, d), dequantized: what attention reads. */
static float model_value(const kv_cache *c, size_t slot, size_t head, size_t d) {
    const size_t page = slot / c->rows, row = slot % c->rows, esz = clattn_dtype_size(c->dt);
    float x = 0.0f;
    assert_status(clattn_dtype_unpack(c->dt, c->model + element_of(c, page, head, row, d) * esz, &x, 1),
                  CLATTN_SUCCESS);
    if (c->scale_kind == SCALE_NONE) return x;
    float s = 0.0f;
    if (c->scale_kind == SCALE_PER_SLOT) {
        const size_t at =
            c->scale.offset + page * c->scale.stride[0] + head * c->scale.stride[1] + row * c->scale.stride[2];
        assert_status(clattn_dtype_unpack(c->sdt, c->scale_model + at * clattn_dtype_size(c->sdt), &s, 1),
                      CLATTN_SUCCESS);
    } else {
        s = c->given[c->scale_kind == SCALE_PER_HEAD ? head : 0];
    }
    return x * s;
}

static void expect_bytes(const char *what, cl_mem m, const uint8_t *want, size_t bytes) {
    uint8_t *got = malloc(bytes);
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, got, 0, NULL, NULL),
                     CL_SUCCESS);
    for (size_t i = 0; i < bytes; ++i)
        if (got[i] != want[i])
            fail_msg("%s: byte %zu of %zu is 0x%02x, want 0x%02x", what, i, bytes, got[i], want[i]);
    free(got);
}

/* The device's cache and scale buffers hold exactly the model's bytes. */
static void expect_model(const kv_cache *c, const char *what) {
    char name[96];
    snprintf(name, sizeof name, "%s %s cache", what, clattn_dtype_name(c->dt));
    expect_bytes(name, c->buf, c->model, c->bytes);
    if (c->sbuf) {
        snprintf(name, sizeof name, "%s %s cache's %s scales", what, clattn_dtype_name(c->dt),
                 clattn_dtype_name(c->sdt));
        expect_bytes(name, c->sbuf, c->scale_model, c->scale_bytes);
    }
}

/* New rows [T, Hkv, D] of dtype dt on the device (at an element offset of 3) and their host values. */
typedef struct new_rows {
    float *x;
    cl_mem buf;
    clattn_tensor t;
} new_rows;

static new_rows make_rows(clattn_dtype dt, size_t tokens, size_t heads, size_t dim, const float *values) {
    new_rows r;
    const size_t n = tokens * heads * dim;
    r.x = malloc((n + 1) * sizeof *r.x);
    memcpy(r.x, values, n * sizeof *r.x);
    support_round_array(r.x, n, dt);
    float *staged = calloc(n + 3 + 1, sizeof *staged);
    memcpy(staged + 3, r.x, n * sizeof *staged);
    cl_int err = 0;
    r.buf = support_buffer_storage(ctx, staged, n + 3, dt, &err);
    assert_non_null(r.buf);
    free(staged);
    r.t = clattn_tensor_blhd(r.buf, dt, 1, heads, tokens, dim);
    r.t.offset = 3;
    return r;
}

static void free_rows(new_rows *r) {
    clReleaseMemObject(r->buf);
    free(r->x);
}

/* Values in [-2, 2) times a magnitude per (token, head) row: ordinary, tiny, large, and some rows of zeros. */
static float *random_values(size_t tokens, size_t heads, size_t dim, unsigned *seed) {
    static const float magnitude[] = {1.0f, 0.001f, 30.0f, 0.0f, 1.0f, 0.25f};
    float *x = malloc((tokens * heads * dim + 1) * sizeof *x);
    for (size_t r = 0; r < tokens * heads; ++r) {
        const float m = magnitude[(r * 7 + *seed) % ARRAY_N(magnitude)];
        for (size_t d = 0; d < dim; ++d) x[r * dim + d] = support_random(seed) * m;
    }
    return x;
}

/* `tokens` slots of a cache of `slots` in random order, every third of them -1 (a skipped token). */
static int32_t *random_slots(size_t tokens, size_t slots, unsigned *seed) {
    size_t *order = malloc((slots + 1) * sizeof *order);
    for (size_t i = 0; i < slots; ++i) order[i] = i;
    for (size_t i = slots; i > 1; --i) {
        const size_t j = (size_t)(fabsf(support_random(seed)) * 1e6f) % i, t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    int32_t *s = malloc((tokens + 1) * sizeof *s);
    size_t next = 0;
    for (size_t t = 0; t < tokens; ++t) s[t] = t % 3 == 1 || next == slots ? -1 : (int32_t)order[next++];
    free(order);
    return s;
}

static void model_append(kv_cache *c, const new_rows *r, const int32_t *slots, size_t tokens) {
    for (size_t t = 0; t < tokens; ++t)
        for (size_t h = 0; h < c->heads && slots[t] >= 0; ++h)
            model_row(c, r->x + (t * c->heads + h) * c->dim, (size_t)slots[t], h);
}

static clattn_kv_append_desc desc_of(const kv_cache *k, const kv_cache *v, const int32_t *slots) {
    clattn_kv_append_desc d;
    clattn_kv_append_desc_init(&d);
    d.slot_mapping = slots;
    d.k_scale = k->scale;
    d.v_scale = v->scale;
    return d;
}

/* Appends new rows of dtype src_dt into k and v, in the model too, and compares every byte. */
static void append_and_check(kv_cache *k, kv_cache *v, clattn_dtype src_dt, size_t tokens, const int32_t *slots,
                             unsigned *seed) {
    float *kx = random_values(tokens, k->heads, k->dim, seed), *vx = random_values(tokens, v->heads, v->dim, seed);
    new_rows kn = make_rows(src_dt, tokens, k->heads, k->dim, kx),
             vn = make_rows(src_dt, tokens, v->heads, v->dim, vx);
    const clattn_kv_append_desc d = desc_of(k, v, slots);
    cl_event done = NULL;
    assert_status(clattn_kv_append(ctx, &d, &kn.t, &vn.t, &k->view, &v->view, NULL, 0, NULL, &done),
                  CLATTN_SUCCESS);
    assert_non_null(done);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    model_append(k, &kn, slots, tokens);
    model_append(v, &vn, slots, tokens);
    char what[64];
    snprintf(what, sizeof what, "%s rows into the", clattn_dtype_name(src_dt));
    expect_model(k, what);
    expect_model(v, what);
    free_rows(&kn);
    free_rows(&vn);
    free(kx);
    free(vx);
}

/* F32, F16 and BF16 caches from rows of each type (the same type copied bit for bit), paged with an odd block
 * size and dense; head dims 1, 5 and 100 (past the work-group of 64: several elements per work-item); two calls,
 * the second overwriting some slots of the first. */
static void float_caches(void **state) {
    (void)state;
    unsigned seed = 11;
    static const clattn_dtype types[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (size_t c = 0; c < ARRAY_N(types); ++c)
        for (size_t s = 0; s < ARRAY_N(types); ++s) {
            const bool dense = (c + s) % 3 == 2;
            const size_t dk = s == 0 ? 100 : 5, dv = s == 1 ? 1 : 7;
            kv_cache k = make_cache(types[c], SCALE_NONE, 0, 5, 3, dense ? 11 : 6, dk, 1, dense, seed);
            kv_cache v = make_cache(types[s], SCALE_NONE, 0, 5, 3, dense ? 11 : 6, dv, 0, dense, seed);
            const size_t slots = k.pages * k.rows;
            int32_t *first = random_slots(19, slots, &seed), *second = random_slots(8, slots, &seed);
            append_and_check(&k, &v, types[s], 19, first, &seed);
            append_and_check(&k, &v, types[(s + 1) % 3], 8, second, &seed);
            free(first);
            free(second);
            free_cache(&k);
            free_cache(&v);
        }
}

/* 8-bit caches: int8 with a scale per slot and head computed on the device (F32 and F16 scales) or one per head
 * given, fp8 with one per head (F32 and F16), one per tensor, or one per slot computed; rows of zeros, tiny and
 * large rows; keys and values of different head dims and different storage. */
static void quantized_caches(void **state) {
    (void)state;
    unsigned seed = 21;
    typedef struct {
        clattn_dtype dt;
        int kind;
        clattn_dtype sdt;
    } kind;
    static const kind kinds[] = {
        {CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F32},
        {CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F16},
        {CLATTN_DTYPE_I8, SCALE_PER_HEAD, CLATTN_DTYPE_F32},
        {CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F32},
        {CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F16},
        {CLATTN_DTYPE_FP8_E4M3, SCALE_PER_TENSOR, CLATTN_DTYPE_F32},
        {CLATTN_DTYPE_FP8_E4M3, SCALE_PER_SLOT, CLATTN_DTYPE_F32},
        {CLATTN_DTYPE_FP8_E4M3, SCALE_PER_SLOT, CLATTN_DTYPE_F16},
    };
    static const clattn_dtype sources[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (size_t i = 0; i < ARRAY_N(kinds); ++i) {
        const kind *kk = &kinds[i], *vk = &kinds[(i + 3) % ARRAY_N(kinds)];
        const bool dense = i == 5;
        kv_cache k = make_cache(kk->dt, kk->kind, kk->sdt, 6, 2, dense ? 13 : 8, i % 2 ? 64 : 33, 0, dense, seed);
        kv_cache v = make_cache(vk->dt, vk->kind, vk->sdt, 6, 2, dense ? 13 : 8, i % 2 ? 3 : 130, 5, dense, seed);
        const size_t slots = k.pages * k.rows;
        int32_t *first = random_slots(30, slots, &seed), *second = random_slots(5, slots, &seed);
        append_and_check(&k, &v, sources[i % 3], 30, first, &seed);
        append_and_check(&k, &v, sources[(i + 1) % 3], 5, second, &seed);
        free(first);
        free(second);
        free_cache(&k);
        free_cache(&v);
    }
}

/* A per-head (one-head) cache's scale set to s, on the device and in the model. */
static void set_given_scale(kv_cache *c, float s) {
    assert_true(c->heads == 1 && c->sdt == CLATTN_DTYPE_F32 && c->scale_kind == SCALE_PER_HEAD);
    c->given[0] = s;
    const size_t at = c->scale.offset * sizeof s;
    memcpy(c->scale_model + at, &s, sizeof s);
    assert_int_equal(
        clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), c->sbuf, CL_TRUE, at, sizeof s, &s, 0, NULL, NULL),
        CL_SUCCESS);
}

/* Appends fp32 rows of the values kx and vx (n each, padded with zeros to whole rows of `dim`) into one-head caches
 * k and v, token t into slot T - 1 - t. */
static void append_values(kv_cache *k, kv_cache *v, const float *kx, const float *vx, size_t n, size_t dim) {
    const size_t tokens = (n + dim - 1) / dim;
    float *krows = calloc(tokens * dim + 1, sizeof *krows), *vrows = calloc(tokens * dim + 1, sizeof *vrows);
    memcpy(krows, kx, n * sizeof *krows);
    memcpy(vrows, vx, n * sizeof *vrows);
    int32_t *slots = malloc(tokens * sizeof *slots);
    for (size_t t = 0; t < tokens; ++t) slots[t] = (int32_t)(tokens - 1 - t);
    new_rows kn = make_rows(CLATTN_DTYPE_F32, tokens, 1, dim, krows),
             vn = make_rows(CLATTN_DTYPE_F32, tokens, 1, dim, vrows);
    const clattn_kv_append_desc d = desc_of(k, v, slots);
    assert_status(clattn_kv_append(ctx, &d, &kn.t, &vn.t, &k->view, &v->view, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    model_append(k, &kn, slots, tokens);
    model_append(v, &vn, slots, tokens);
    free_rows(&kn);
    free_rows(&vn);
    free(slots);
    free(krows);
    free(vrows);
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* The device's float to fp8 and to int8 conversions against the host's (src/dtype.c), bit for bit: every fp8
 * code's value, the midpoints between neighbouring codes (ties to even) and the floats either side of them, fp8
 * subnormals and the tie at half the smallest, float subnormals, 448 and past it, the int8 ties and 127 and past
 * it, infinities, NaNs of both signs, and random bit patterns. A scale of 1 makes the conversion the whole of the
 * quantization (x * (1 / 1) is x); a scale of 0.37 and computed int8 scales check the division and the product,
 * down to rows whose largest value is a float subnormal. */
static void conversions_bit_exact(void **state) {
    (void)state;
    enum { DIM = 64 };
    size_t cap = 8192, n = 0;
    float *x = malloc(cap * sizeof *x);
#define PUSH(v)                                                                                                    \
    do {                                                                                                           \
        assert_true(n < cap);                                                                                      \
        x[n++] = (v);                                                                                              \
    } while (0)
    for (int code = 0; code < 256; ++code) {
        uint8_t c = (uint8_t)code, next = (uint8_t)(code + 1);
        float a = 0.0f, b = 0.0f;
        assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, &c, &a, 1), CLATTN_SUCCESS);
        assert_status(clattn_dtype_unpack(CLATTN_DTYPE_FP8_E4M3, &next, &b, 1), CLATTN_SUCCESS);
        PUSH(a);
        if ((code & 0x7f) < 0x7e && !isnan(b)) {
            const float mid = a + (b - a) / 2; /* exact: the codes are 3-bit numbers of nearby exponents */
            PUSH(mid);
            PUSH(nextafterf(mid, 0.0f));
            PUSH(nextafterf(mid, INFINITY * mid));
        }
    }
    static const uint32_t special[] = {0x00000001u,
                                       0x007fffffu,
                                       0x80000001u,
                                       0x00800000u,
                                       0x3a800000u /* 2^-10 */,
                                       0x3a800001u,
                                       0xba800000u,
                                       0x3b000000u,
                                       0x43e00000u /* 448 */,
                                       0x43e00001u,
                                       0x43e80000u /* 464 */,
                                       0x43efffffu,
                                       0x43f00000u,
                                       0x7149f2cau,
                                       0x7f7fffffu,
                                       0x7f800000u,
                                       0xff800000u,
                                       0x7fc00000u,
                                       0xffc00000u,
                                       0x7f800001u,
                                       0x80000000u};
    for (size_t i = 0; i < ARRAY_N(special); ++i) PUSH(from_bits(special[i]));
    for (int i = -130; i <= 130; ++i) PUSH((float)i + 0.5f); /* int8 ties */
    PUSH(126.99999f);
    PUSH(127.0f);
    PUSH(127.00001f);
    unsigned seed = 31;
    while (n < 4096) {
        seed = seed * 1103515245u + 12345u;
        const uint32_t hi = seed >> 16;
        seed = seed * 1103515245u + 12345u;
        PUSH(from_bits(hi << 16 | seed >> 16));
    }
#undef PUSH
    const size_t tokens = (n + DIM - 1) / DIM;
    /* Scale 1 and 0.37: fp8 (every code) and int8 with given scales. */
    static const float given[] = {1.0f, 0.37f};
    for (size_t g = 0; g < ARRAY_N(given); ++g) {
        kv_cache k =
            make_cache(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F32, tokens, 1, 1, DIM, 0, false, 1);
        kv_cache v = make_cache(CLATTN_DTYPE_I8, SCALE_PER_HEAD, CLATTN_DTYPE_F32, tokens, 1, 1, DIM, 0, false, 1);
        set_given_scale(&k, given[g]);
        set_given_scale(&v, given[g]);
        append_values(&k, &v, x, x, n, DIM);
        if (g == 0) { /* with scale 1 the model is clattn_dtype_pack of the values themselves */
            uint8_t *packed = malloc(tokens * DIM);
            float *padded = calloc(tokens * DIM, sizeof *padded);
            memcpy(padded, x, n * sizeof *padded);
            assert_status(clattn_dtype_pack(CLATTN_DTYPE_FP8_E4M3, padded, packed, tokens * DIM), CLATTN_SUCCESS);
            for (size_t t = 0; t < tokens; ++t) /* slots were given in reverse */
                assert_memory_equal(k.model + (tokens - 1 - t) * DIM, packed + t * DIM, DIM);
            free(packed);
            free(padded);
        }
        expect_model(&k, given[g] == 1.0f ? "every fp8 code at scale 1:" : "values at scale 0.37:");
        expect_model(&v, given[g] == 1.0f ? "int8 ties at scale 1:" : "int8 at scale 0.37:");
        free_cache(&k);
        free_cache(&v);
    }
    /* Computed int8 and fp8 scales of rows of every size, down to rows of float subnormals (whose scale is
     * subnormal and whose 1 / scale overflows), rows with an infinity (scale inf, codes 0) and with NaNs. */
    enum { ROWS = 24, W = 16 };
    float rows[ROWS * W];
    for (size_t r = 0; r < ROWS; ++r) {
        const float m = r < 6 ? ldexpf(1.0f, -(int)(r * 26)) : r < 12 ? ldexpf(1.7f, (int)(r * 10) - 60) : 1.0f;
        for (size_t d = 0; d < W; ++d) rows[r * W + d] = support_random(&seed) * m;
    }
    rows[3 * W + 2] = from_bits(0x00000003u); /* a row whose largest value is a float subnormal */
    for (size_t d = 0; d < W; ++d) rows[4 * W + d] = from_bits((uint32_t)d * 0x00011111u | (d & 1u) << 31);
    rows[14 * W + 1] = NAN;
    rows[15 * W + 0] = -NAN;
    rows[16 * W + 7] = 254.0f; /* scale 2 exactly: codes at ties */
    for (size_t d = 0; d < W; ++d) rows[17 * W + d] = from_bits(bits_of(1.0f) + (uint32_t)d) * 127.0f;
    /* Infinities make a row's scale inf and its codes 0, and NaN for the infinities in fp8. */
    rows[13 * W + 5] = INFINITY;
    rows[15 * W + 9] = -INFINITY;
    kv_cache k = make_cache(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F32, ROWS, 1, 1, W, 0, false, 1);
    kv_cache v = make_cache(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_SLOT, CLATTN_DTYPE_F32, ROWS, 1, 1, W, 0, false, 1);
    append_values(&k, &v, rows, rows, ROWS * W, W);
    expect_model(&k, "computed scales:");
    expect_model(&v, "computed scales:");
    free_cache(&k);
    free_cache(&v);
    free(x);
}

/* clattn_sdpa over caches that clattn_kv_append filled: a prefill chunk of three sequences' keys (37, 1 and 20,
 * their tokens shuffled among padding) into shuffled pages of 16, then a decode step of one token each, then
 * attention of one query per sequence (GQA 4:2) through the block table, against the reference over the values the
 * model holds (dequantized). */
static void attention_case(clattn_dtype kdt, int kkind, clattn_dtype ksdt, clattn_dtype vdt, int vkind,
                           clattn_dtype vsdt, size_t dk, size_t dv, unsigned seed) {
    enum { B = 3, HQ = 4, HKV = 2, PAGE = 16, PER = 3, PAGES = 9 };
    static const int lens[B] = {37, 1, 20};
    kv_cache k = make_cache(kdt, kkind, ksdt, PAGES, HKV, PAGE, dk, 0, false, seed);
    kv_cache v = make_cache(vdt, vkind, vsdt, PAGES, HKV, PAGE, dv, 3, false, seed + 1);
    int32_t table[B * PER];
    int32_t *order = random_slots(PAGES * 3, PAGES, &seed); /* a shuffled subset of the pages, -1 between */
    size_t next = 0;
    for (size_t e = 0; e < B * PER; ++e) {
        while (order[next] < 0) ++next;
        table[e] = order[next++];
    }
    free(order);
    const size_t total = (size_t)(lens[0] + lens[1] + lens[2]);
    /* Prefill: every token of every sequence once, in a shuffled order, with a padding token after every fourth. */
    int32_t *slots = malloc((2 * total + 1) * sizeof *slots);
    size_t tokens = 0;
    int32_t *pick = random_slots(total * 3 / 2 + 3, total, &seed);
    for (size_t i = 0; i < total * 3 / 2 + 3; ++i) {
        if (pick[i] < 0) {
            if (i % 4 == 1) slots[tokens++] = -1;
            continue;
        }
        size_t b = 0, j = (size_t)pick[i];
        while (j >= (size_t)lens[b]) j -= (size_t)lens[b++];
        slots[tokens++] = table[b * PER + j / PAGE] * PAGE + (int32_t)(j % PAGE);
    }
    free(pick);
    size_t placed = 0;
    for (size_t t = 0; t < tokens; ++t) placed += slots[t] >= 0;
    assert_int_equal(placed, total);
    append_and_check(&k, &v, CLATTN_DTYPE_F32, tokens, slots, &seed);
    /* Decode: the next token of each sequence, out of order, with a padding token among them. */
    const int32_t step[] = {table[2 * PER + 1] * PAGE + 4, -1, table[0 * PER + 2] * PAGE + 5,
                            table[1 * PER] * PAGE + 1};
    append_and_check(&k, &v, CLATTN_DTYPE_F16, ARRAY_N(step), step, &seed);
    free(slots);

    int32_t seqlens[B];
    for (size_t b = 0; b < B; ++b) seqlens[b] = lens[b] + 1;
    float *q = support_random_array(B * HQ * dk, 1.0f, CLATTN_DTYPE_F32, &seed);
    cl_int err = 0;
    cl_mem qb = support_buffer_storage(ctx, q, B * HQ * dk, CLATTN_DTYPE_F32, &err);
    const size_t out_bytes = B * HQ * dv * sizeof(float);
    cl_mem ob = support_filled_buffer(ctx, out_bytes + CANARY, POISON, &err);
    assert_non_null(qb);
    assert_non_null(ob);
    const clattn_tensor qt = clattn_tensor_bhld(qb, CLATTN_DTYPE_F32, B, HQ, 1, dk);
    const clattn_tensor ot = clattn_tensor_bhld(ob, CLATTN_DTYPE_F32, B, HQ, 1, dv);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.seq_count = B;
    d.block_table = table;
    d.block_table_stride = PER;
    d.seqlens_k = seqlens;
    d.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
    d.k_scale = k.scale;
    d.v_scale = v.scale;
    assert_status(clattn_sdpa(ctx, &d, &qt, &k.view, &v.view, &ot, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    float *out = malloc(out_bytes + CANARY);
    assert_int_equal(
        clEnqueueReadBuffer(clattn_context_cl_queue(ctx), ob, CL_TRUE, 0, out_bytes + CANARY, out, 0, NULL, NULL),
        CL_SUCCESS);
    for (size_t i = 0; i < CANARY; ++i) assert_int_equal(((uint8_t *)out)[out_bytes + i], POISON);
    for (size_t b = 0; b < B; ++b) {
        const size_t L = (size_t)seqlens[b];
        float *kr = malloc(HKV * L * dk * sizeof *kr), *vr = malloc(HKV * L * dv * sizeof *vr);
        double *ref = calloc(HQ * dv, sizeof *ref);
        for (size_t h = 0; h < HKV; ++h)
            for (size_t j = 0; j < L; ++j) {
                const size_t slot = (size_t)table[b * PER + j / PAGE] * PAGE + j % PAGE;
                for (size_t x = 0; x < dk; ++x) kr[(h * L + j) * dk + x] = model_value(&k, slot, h, x);
                for (size_t x = 0; x < dv; ++x) vr[(h * L + j) * dv + x] = model_value(&v, slot, h, x);
            }
        cla_ref_sdpa a;
        memset(&a, 0, sizeof a);
        a.q = cla_ref_dense(q + b * HQ * dk, 1, HQ, 1, dk);
        a.k = cla_ref_dense(kr, 1, HKV, L, dk);
        a.v = cla_ref_dense(vr, 1, HKV, L, dv);
        a.scale = 1.0 / sqrt((double)dk);
        a.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        a.window_left = a.window_right = CLATTN_WINDOW_UNBOUNDED;
        a.out = ref;
        assert_int_equal(cla_reference_sdpa(&a), 0);
        /* The values are up to 60 (rows of magnitude 30): the tolerance scales with them. */
        const double tol = check_sdpa_tolerance(L, CLATTN_DTYPE_F32) * 64.0;
        for (size_t i = 0; i < HQ * dv; ++i)
            if (!(fabs(out[b * HQ * dv + i] - ref[i]) <= tol))
                fail_msg("%s/%s cache, sequence %zu, element %zu: got %.9g, want %.9g (tolerance %.3g)",
                         clattn_dtype_name(kdt), clattn_dtype_name(vdt), b, i, out[b * HQ * dv + i], ref[i], tol);
        free(kr);
        free(vr);
        free(ref);
    }
    free(out);
    free(q);
    clReleaseMemObject(qb);
    clReleaseMemObject(ob);
    free_cache(&k);
    free_cache(&v);
}

static void attention_over_appended_caches(void **state) {
    (void)state;
    attention_case(CLATTN_DTYPE_F32, SCALE_NONE, 0, CLATTN_DTYPE_F32, SCALE_NONE, 0, 32, 32, 41);
    attention_case(CLATTN_DTYPE_F16, SCALE_NONE, 0, CLATTN_DTYPE_BF16, SCALE_NONE, 0, 24, 16, 42);
    attention_case(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F32, CLATTN_DTYPE_I8, SCALE_PER_SLOT,
                   CLATTN_DTYPE_F16, 32, 20, 43);
    attention_case(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F32, CLATTN_DTYPE_FP8_E4M3, SCALE_PER_TENSOR,
                   CLATTN_DTYPE_F16, 16, 16, 44);
    attention_case(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_SLOT, CLATTN_DTYPE_F16, CLATTN_DTYPE_I8, SCALE_PER_HEAD,
                   CLATTN_DTYPE_F32, 40, 8, 45);
}

/* No tokens (slot_mapping may then be NULL), and tokens that are all skipped: success, an event, nothing written.
 */
static void empty_calls(void **state) {
    (void)state;
    unsigned seed = 51;
    kv_cache k = make_cache(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F32, 2, 2, 8, 4, 0, false, seed);
    kv_cache v = make_cache(CLATTN_DTYPE_F32, SCALE_NONE, 0, 2, 2, 8, 4, 0, false, seed);
    float *x = random_values(3, 2, 4, &seed);
    new_rows kn = make_rows(CLATTN_DTYPE_F32, 3, 2, 4, x), vn = make_rows(CLATTN_DTYPE_F32, 3, 2, 4, x);
    clattn_kv_append_desc d = desc_of(&k, &v, NULL);
    clattn_tensor k0 = kn.t, v0 = vn.t;
    k0.size[2] = v0.size[2] = 0;
    cl_event done = NULL;
    assert_status(clattn_kv_append(ctx, &d, &k0, &v0, &k.view, &v.view, NULL, 0, NULL, &done), CLATTN_SUCCESS);
    assert_non_null(done);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    static const int32_t skipped[] = {-1, -1, -1};
    d.slot_mapping = skipped;
    assert_status(clattn_kv_append(ctx, &d, &kn.t, &vn.t, &k.view, &v.view, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    expect_model(&k, "skipped tokens:");
    expect_model(&v, "skipped tokens:");
    free_rows(&kn);
    free_rows(&vn);
    free(x);
    free_cache(&k);
    free_cache(&v);
}

/* Each invalid argument: its exact status, a message led by the call's name, and both caches and the scales
 * untouched; then the valid call the refused ones were made from succeeds. */
static void invalid_arguments(void **state) {
    (void)state;
    unsigned seed = 61;
    kv_cache k = make_cache(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F32, 4, 3, 8, 16, 0, false, seed);
    kv_cache v = make_cache(CLATTN_DTYPE_F16, SCALE_NONE, 0, 4, 3, 8, 8, 0, false, seed);
    float *kx = random_values(5, 3, 16, &seed), *vx = random_values(5, 3, 8, &seed);
    new_rows kn = make_rows(CLATTN_DTYPE_F32, 5, 3, 16, kx), vn = make_rows(CLATTN_DTYPE_F32, 5, 3, 8, vx);
    int32_t slots[] = {3, -1, 17, 31, 0};
    const clattn_kv_append_desc good = desc_of(&k, &v, slots);
    clattn_kv_append_desc d = good;
    clattn_tensor a = kn.t, b = vn.t, kc = k.view, vc = v.view;
#define REFUSED(want)                                                                                              \
    do {                                                                                                           \
        assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), want);                     \
        assert_true(strncmp(clattn_context_last_error(ctx), "clattn_kv_append: ", 18) == 0);                       \
        expect_model(&k, "refused call:");                                                                         \
        expect_model(&v, "refused call:");                                                                         \
        d = good;                                                                                                  \
        a = kn.t;                                                                                                  \
        b = vn.t;                                                                                                  \
        kc = k.view;                                                                                               \
        vc = v.view;                                                                                               \
        slots[0] = 3;                                                                                              \
        slots[2] = 17;                                                                                             \
        slots[4] = 0;                                                                                              \
    } while (0)
    assert_status(clattn_kv_append(NULL, &d, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_kv_append(ctx, NULL, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_kv_append(ctx, &d, NULL, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, NULL, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, &vc, NULL, 1, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    /* Slots: past the 32 of the caches, below -1, given twice, missing. */
    slots[2] = 32;
    REFUSED(CLATTN_ERROR_INVALID_SLOT);
    slots[2] = 32;
    assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_ERROR_INVALID_SLOT);
    assert_non_null(
        strstr(clattn_context_last_error(ctx), "desc->slot_mapping[2] is 32 but the caches have 32 slots"));
    slots[2] = -2;
    REFUSED(CLATTN_ERROR_INVALID_SLOT);
    slots[4] = 3;
    assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_ERROR_INVALID_SLOT);
    assert_non_null(
        strstr(clattn_context_last_error(ctx), "desc->slot_mapping[0] and desc->slot_mapping[4] are both 3"));
    REFUSED(CLATTN_ERROR_INVALID_SLOT);
    d.slot_mapping = NULL;
    REFUSED(CLATTN_ERROR_NULL_POINTER);
    /* Dtypes. */
    a.dtype = CLATTN_DTYPE_I8;
    REFUSED(CLATTN_ERROR_INVALID_DTYPE);
    vc.dtype = CLATTN_DTYPE_BOOL;
    REFUSED(CLATTN_ERROR_INVALID_DTYPE);
    kc.dtype = (clattn_dtype)17;
    REFUSED(CLATTN_ERROR_INVALID_DTYPE);
    /* Shapes. */
    a.size[0] = 2;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    b.size[2] = 4;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    a.size[1] = 2;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    b.size[3] = 7;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    vc.size[0] = 3;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    vc.size[2] = 4;
    REFUSED(CLATTN_ERROR_INVALID_SHAPE);
    a.size[3] = kc.size[3] = 0;
    REFUSED(CLATTN_ERROR_INVALID_HEAD_DIM);
    /* Scales: missing for int8, given for fp16, of another type, of a shape that does not broadcast, aliasing. */
    d.k_scale.buffer = NULL;
    REFUSED(CLATTN_ERROR_INVALID_SCALE);
    d.v_scale = k.scale;
    REFUSED(CLATTN_ERROR_INVALID_SCALE);
    d.k_scale.dtype = CLATTN_DTYPE_BF16;
    REFUSED(CLATTN_ERROR_INVALID_SCALE);
    d.k_scale.size[1] = 2;
    REFUSED(CLATTN_ERROR_INVALID_SCALE);
    d.k_scale.stride[0] = 0;
    REFUSED(CLATTN_ERROR_INVALID_STRIDE);
    /* Buffers: too small, a NULL one, a cache whose rows alias. */
    kc.offset = 1000;
    REFUSED(CLATTN_ERROR_BUFFER_TOO_SMALL);
    b.buffer = NULL;
    REFUSED(CLATTN_ERROR_NULL_POINTER);
    vc.stride[2] = 0;
    REFUSED(CLATTN_ERROR_INVALID_STRIDE);
    /* Overlaps: the value cache over the key cache, new keys inside the key cache, computed scales inside the value
     * cache. */
    vc = clattn_tensor_blhd(k.buf, CLATTN_DTYPE_F16, 4, 3, 8, 8);
    REFUSED(CLATTN_ERROR_INVALID_ARGUMENT);
    a = clattn_tensor_blhd(k.buf, CLATTN_DTYPE_F32, 1, 3, 5, 16);
    REFUSED(CLATTN_ERROR_INVALID_ARGUMENT);
    d.k_scale = clattn_tensor_blhd(v.buf, CLATTN_DTYPE_F32, 4, 3, 8, 1);
    REFUSED(CLATTN_ERROR_INVALID_ARGUMENT);
#undef REFUSED
    /* The call they were all made from is valid. */
    assert_status(clattn_kv_append(ctx, &d, &a, &b, &kc, &vc, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    model_append(&k, &kn, slots, 5);
    model_append(&v, &vn, slots, 5);
    expect_model(&k, "after the refusals:");
    expect_model(&v, "after the refusals:");
    free_rows(&kn);
    free_rows(&vn);
    free(kx);
    free(vx);
    free_cache(&k);
    free_cache(&v);
}

/* One call of the fault test: its caches, rows and slots. */
typedef struct fault_arg {
    kv_cache *k, *v;
    const new_rows *kn, *vn;
    const int32_t *slots;
} fault_arg;

static int append_call(clattn_context *c, const void *arg, char *err, size_t size) {
    const fault_arg *a = arg;
    const clattn_kv_append_desc d = desc_of(a->k, a->v, a->slots);
    const clattn_status st =
        clattn_kv_append(c, &d, &a->kn->t, &a->vn->t, &a->k->view, &a->v->view, NULL, 0, NULL, NULL);
    if (st) snprintf(err, size, "%s: %s", clattn_status_string(st), clattn_context_last_error(c));
    return st != CLATTN_SUCCESS;
}

/* Every device operation of a call (the slot mapping's upload, the keys' kernel, the values' kernel) fails in turn,
 * as a driver out of memory or resources would: a clean status with a message, no temporary left alive, and the
 * same call then gets through and writes what it must. */
static void device_failures(void **state) {
    (void)state;
    unsigned seed = 81;
    kv_cache k = make_cache(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F16, 3, 2, 8, 12, 0, false, seed);
    kv_cache v = make_cache(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F32, 3, 2, 8, 6, 0, false, seed);
    float *kx = random_values(4, 2, 12, &seed), *vx = random_values(4, 2, 6, &seed);
    new_rows kn = make_rows(CLATTN_DTYPE_F32, 4, 2, 12, kx), vn = make_rows(CLATTN_DTYPE_BF16, 4, 2, 6, vx);
    static const int32_t slots[] = {17, 2, -1, 23};
    const fault_arg arg = {&k, &v, &kn, &vn, slots};
    assert_int_equal(fail_each_step(ctx, append_call, &arg, 10, true), 3);
    model_append(&k, &kn, slots, ARRAY_N(slots));
    model_append(&v, &vn, slots, ARRAY_N(slots));
    expect_model(&k, "after the failures:");
    expect_model(&v, "after the failures:");
    free_rows(&kn);
    free_rows(&vn);
    free(kx);
    free(vx);
    free_cache(&k);
    free_cache(&v);
}

/* Small shapes of each kernel shape, for Oclgrind (tests/oclgrind_run.sh: data races, uninitialised reads, API
 * misuse): conversions with work-groups of 4 and 1, a raw copy, int8 with computed F16 scales (the reduction over a
 * group of 8), fp8 with a per-head scale and with computed scales. */
static void tiny_shapes(void **state) {
    (void)state;
    unsigned seed = 71;
    static const int32_t slots[] = {5, -1, 0, 9, 2};
    kv_cache k = make_cache(CLATTN_DTYPE_F32, SCALE_NONE, 0, 2, 2, 6, 3, 1, false, seed);
    kv_cache v = make_cache(CLATTN_DTYPE_BF16, SCALE_NONE, 0, 2, 2, 6, 1, 0, false, seed);
    append_and_check(&k, &v, CLATTN_DTYPE_BF16, ARRAY_N(slots), slots, &seed);
    free_cache(&k);
    free_cache(&v);
    k = make_cache(CLATTN_DTYPE_I8, SCALE_PER_SLOT, CLATTN_DTYPE_F16, 2, 2, 6, 8, 0, false, seed);
    v = make_cache(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_HEAD, CLATTN_DTYPE_F32, 2, 2, 6, 5, 2, false, seed);
    append_and_check(&k, &v, CLATTN_DTYPE_F16, ARRAY_N(slots), slots, &seed);
    free_cache(&k);
    free_cache(&v);
    k = make_cache(CLATTN_DTYPE_FP8_E4M3, SCALE_PER_SLOT, CLATTN_DTYPE_F32, 2, 2, 6, 2, 0, false, seed);
    v = make_cache(CLATTN_DTYPE_F16, SCALE_NONE, 0, 2, 2, 6, 4, 0, false, seed);
    append_and_check(&k, &v, CLATTN_DTYPE_F32, ARRAY_N(slots), slots, &seed);
    free_cache(&k);
    free_cache(&v);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float_caches),          cmocka_unit_test(quantized_caches),
        cmocka_unit_test(conversions_bit_exact), cmocka_unit_test(attention_over_appended_caches),
        cmocka_unit_test(empty_calls),           cmocka_unit_test(invalid_arguments),
        cmocka_unit_test(device_failures),
    };
    const struct CMUnitTest tiny[] = {cmocka_unit_test(tiny_shapes)};
    if (argc > 1 && strcmp(argv[1], "--tiny") == 0)
        return cmocka_run_group_tests_name("kv_append_tiny", tiny, setup, teardown);
    return cmocka_run_group_tests_name("kv_append", tests, setup, teardown);
}
