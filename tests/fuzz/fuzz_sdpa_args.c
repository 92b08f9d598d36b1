// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the argument validation of clattn_sdpa (cla_sdpa_validate in src/attention/sdpa.c). The
 * validator is the only thing between a caller's sizes, strides and offsets and a kernel that reads and writes
 * device memory, so whatever it accepts must be safe to run. The input decodes into a clattn_sdpa_desc and four
 * tensor views over a few device buffers of known sizes; the validator runs (nothing is ever enqueued), and when it
 * accepts, this file re-derives from first principles, in 128-bit arithmetic, that every view lies inside its
 * buffer, that the shapes fit together, and that no output shares a byte with another output element or with any
 * other view. A call accepted against those rules aborts, which libFuzzer reports as a crash.
 *
 * Input layout (every read past the end gives zeros, so any byte string decodes):
 *   flags, causal, impl, window left, window right, scale                       the desc
 *   B, Hq, Hkv, Lq, Lk, Dk, Dv                                                  the intended shape
 *   q, k, v, out, then mask, key lengths, lse, weights when the flags ask       the views
 * A view is: buffer byte, dtype byte, layout byte, then optional size perturbation, offset and strides. Sizes come
 * from decode_size(): mostly small, sometimes 16-bit, sometimes a boundary value (SIZE_MAX / 4 + 1 ...), sometimes
 * 64 raw bits. tests/fuzz/make_seeds.py writes the seed corpus in this layout.
 *
 * Build and run: tools/scripts/fuzz.sh (see tests/fuzz/README.md). */
#define _POSIX_C_SOURCE 200809L /* sigaction */

#include "sdpa_internal.h"

#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, "fuzz_sdpa_args: the validator accepted a call it should not have (line %d): %s\n",    \
                    __LINE__, #cond);                                                                              \
            abort();                                                                                               \
        }                                                                                                          \
    } while (0)

typedef unsigned __int128 u128;

/* ---- fixed objects, created once ---- */

/* Buffer 0 is "no buffer"; 1..6 belong to the context, of sizes that sit just on either side of typical views;
 * 7 belongs to another OpenCL context. Small, because an accepted output is enumerated element by element. */
#define NBUF 8
static const size_t buffer_bytes[NBUF] = {0, 4, 64, 1024, 4096, 4098, 65536, 4096};
static cl_mem buffers[NBUF];
static clattn_context *ctx;
static cl_context foreign_ctx;
static cl_command_queue foreign_queue;
static cl_event user_event;
/* FUZZ_VERBOSE=1 prints what the validator said about each input: for checking that seeds decode as meant. */
static bool verbose;

static void die(const char *what, cl_int err) {
    fprintf(stderr, "fuzz_sdpa_args: %s failed: %d\n", what, err);
    exit(2);
}

/* PoCL and its LLVM install handlers for SIGABRT, SIGSEGV and others when the first context is created, and
 * libFuzzer leaves an existing handler alone: a failed CHECK would then die without the crash input being saved.
 * This harness never runs a kernel, so the driver's handlers are not needed; put back what was there before. */
static const int crash_signals[] = {SIGABRT, SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
static struct sigaction saved_actions[sizeof crash_signals / sizeof crash_signals[0]];

static void save_signal_handlers(void) {
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; ++i)
        sigaction(crash_signals[i], NULL, &saved_actions[i]);
}

static void restore_signal_handlers(void) {
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; ++i)
        sigaction(crash_signals[i], &saved_actions[i], NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    save_signal_handlers();
    char msg[1024] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.error_message = msg;
    o.error_message_size = sizeof msg;
    clattn_status st = clattn_context_create_with_options(&o, &ctx);
    if (st != CLATTN_SUCCESS) {
        fprintf(stderr, "fuzz_sdpa_args: no clattn context (%s): %s\n", clattn_status_string(st), msg);
        exit(2);
    }
    cl_int err;
    cl_device_id dev = clattn_context_cl_device(ctx);
    for (int i = 1; i < NBUF - 1; ++i) {
        buffers[i] = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, buffer_bytes[i], NULL, &err);
        if (err != CL_SUCCESS) die("clCreateBuffer", err);
    }
    foreign_ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    if (err != CL_SUCCESS) die("clCreateContext", err);
    buffers[NBUF - 1] = clCreateBuffer(foreign_ctx, CL_MEM_READ_WRITE, buffer_bytes[NBUF - 1], NULL, &err);
    if (err != CL_SUCCESS) die("clCreateBuffer (foreign)", err);
    foreign_queue = clCreateCommandQueue(foreign_ctx, dev, 0, &err);
    if (err != CL_SUCCESS) die("clCreateCommandQueue", err);
    /* Never completed and never waited on: the validator only passes wait lists along. */
    user_event = clCreateUserEvent(clattn_context_cl_context(ctx), &err);
    if (err != CL_SUCCESS) die("clCreateUserEvent", err);
    restore_signal_handlers();
    return 0;
}

/* ---- decoding ---- */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r) {
    if (r->n == 0) return 0;
    r->n--;
    return *r->p++;
}

static uint64_t uint_le(reader *r, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= (uint64_t)u8(r) << (8 * i);
    return v;
}

/* Sizes where arithmetic in a validator tends to go wrong: products and sums that wrap, limits of int32 kernels. */
static const size_t boundary_sizes[32] = {0,
                                          1,
                                          2,
                                          3,
                                          255,
                                          256,
                                          257,
                                          4096,
                                          16384,
                                          65535,
                                          65536,
                                          INT32_MAX / 2,
                                          INT32_MAX / 2 + 1,
                                          INT32_MAX,
                                          (size_t)INT32_MAX + 1,
                                          UINT32_MAX,
                                          (size_t)1 << 32,
                                          SIZE_MAX / 1024,
                                          SIZE_MAX / 16,
                                          SIZE_MAX / 8,
                                          SIZE_MAX / 4 - 1,
                                          SIZE_MAX / 4,
                                          SIZE_MAX / 4 + 1,
                                          SIZE_MAX / 3 + 1,
                                          SIZE_MAX / 2,
                                          SIZE_MAX / 2 + 1,
                                          ((size_t)1 << 62) + 1,
                                          (size_t)1 << 63,
                                          ((size_t)1 << 63) + 1,
                                          SIZE_MAX - 3,
                                          SIZE_MAX - 1,
                                          SIZE_MAX};

static size_t decode_size(reader *r) {
    uint8_t b = u8(r);
    if (b < 0x80) return b & 0x3f;
    if (b < 0xc0) return (size_t)uint_le(r, 2);
    if (b < 0xe0) return boundary_sizes[b & 31];
    return (size_t)uint_le(r, 8);
}

/* An enum field: mostly a valid value, sometimes anything an int can hold. */
static int decode_enum(reader *r, int count) {
    static const int odd[8] = {-1, INT32_MIN, INT32_MAX, 3, 4, 255, 256, -2};
    uint8_t b = u8(r);
    return b < 0xf8 ? b % count : odd[b & 7];
}

static int64_t decode_window(reader *r) {
    static const int64_t odd[8] = {INT64_MIN,     -2,       -1, 0, INT32_MAX, (int64_t)INT32_MAX + 1,
                                   INT64_MAX - 1, INT64_MAX};
    uint8_t b = u8(r);
    if (b < 0x40) return CLATTN_WINDOW_UNBOUNDED;
    if (b < 0xc0) return b - 0x40;
    if (b < 0xf0) return odd[b & 7];
    return (int64_t)uint_le(r, 8);
}

static float decode_scale(reader *r) {
    static const float odd[8] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MAX, FLT_TRUE_MIN, -NAN};
    uint8_t b = u8(r);
    if (b < 0x40) return odd[b & 7];
    if (b < 0x80) return (float)(b - 0x40) / 16.0f;
    uint32_t bits = (uint32_t)uint_le(r, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

enum {
    HAS_MASK = 1 << 0,
    HAS_KEY_LENGTHS = 1 << 1,
    HAS_LSE = 1 << 2,
    HAS_WEIGHTS = 1 << 3,
    HAS_QUEUE = 1 << 4,
    FOREIGN_QUEUE = 1 << 5,
    HAS_WAIT = 1 << 6,
    NULL_WAIT_LIST = 1 << 7,
};

/* One view: which buffer, dtype, and a layout that starts from the intended sizes. Layout byte: bits 0-1 choose
 * [B,H,L,D] contiguous, [B,L,H,D] contiguous, explicit strides, or contiguous with one stride (bits 4-5) set to 0;
 * bit 2 replaces one size (bits 6-7 choose it); bit 3 adds an element offset. */
static void decode_view(reader *r, const size_t want[4], clattn_tensor *t, int *buffer_index) {
    memset(t, 0, sizeof *t);
    *buffer_index = u8(r) % NBUF;
    t->buffer = buffers[*buffer_index];
    t->dtype = (clattn_dtype)decode_enum(r, 4);
    uint8_t layout = u8(r);
    memcpy(t->size, want, sizeof t->size);
    if (layout & 4) t->size[layout >> 6] = decode_size(r);
    if (layout & 8) t->offset = decode_size(r);
    const size_t *s = t->size;
    switch (layout & 3) { /* unsigned arithmetic: absurd sizes wrap here, and the validator must cope */
    case 0:
    case 3:
        t->stride[3] = 1;
        t->stride[2] = s[3];
        t->stride[1] = s[2] * s[3];
        t->stride[0] = s[1] * s[2] * s[3];
        if ((layout & 3) == 3) t->stride[(layout >> 4) & 3] = 0;
        break;
    case 1:
        t->stride[3] = 1;
        t->stride[1] = s[3];
        t->stride[2] = s[1] * s[3];
        t->stride[0] = s[2] * s[1] * s[3];
        break;
    case 2:
        for (int d = 0; d < 4; ++d) t->stride[d] = decode_size(r);
        break;
    }
}

/* ---- the independent check ---- */

static size_t element_bytes(clattn_dtype d) {
    static const size_t bytes[] = {
        [CLATTN_DTYPE_F32] = 4, [CLATTN_DTYPE_F16] = 2, [CLATTN_DTYPE_BF16] = 2, [CLATTN_DTYPE_BOOL] = 1};
    return (unsigned)d < sizeof bytes / sizeof bytes[0] ? bytes[d] : 0;
}

/* A view the call reads or writes, with the buffer it names. */
typedef struct view {
    const char *name;
    const clattn_tensor *t;
    int buffer;
    bool output;
} view;

static bool is_empty(const clattn_tensor *t) {
    for (int d = 0; d < 4; ++d)
        if (t->size[d] == 0) return true;
    return false;
}

/* Byte range [begin, end) that a non-empty view spans, exactly, in 128 bits. */
static void view_span(const clattn_tensor *t, u128 *begin, u128 *end) {
    size_t es = element_bytes(t->dtype);
    u128 last = t->offset;
    for (int d = 0; d < 4; ++d) last += (u128)(t->size[d] - 1) * t->stride[d];
    *begin = (u128)t->offset * es;
    *end = (last + 1) * es;
}

/* Marks every byte of every element of an output in `owner` (with the output's tag); two elements on one byte
 * abort. */
static void mark_output(const view *v, uint8_t *owner, uint8_t tag) {
    const clattn_tensor *t = v->t;
    size_t es = element_bytes(t->dtype);
    for (size_t i0 = 0; i0 < t->size[0]; ++i0)
        for (size_t i1 = 0; i1 < t->size[1]; ++i1)
            for (size_t i2 = 0; i2 < t->size[2]; ++i2)
                for (size_t i3 = 0; i3 < t->size[3]; ++i3) {
                    /* In bounds was checked already, so these products fit in the buffer. */
                    size_t e =
                        t->offset + i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
                    for (size_t b = e * es; b < (e + 1) * es; ++b) {
                        if (owner[b])
                            fprintf(stderr,
                                    "fuzz_sdpa_args: %s element [%zu,%zu,%zu,%zu] at byte %zu is also "
                                    "written by output #%d\n",
                                    v->name, i0, i1, i2, i3, b, owner[b]);
                        CHECK(owner[b] == 0);
                        owner[b] = tag;
                    }
                }
}

typedef struct call {
    clattn_sdpa_desc desc;
    clattn_tensor q, k, v, out;
    int buf_q, buf_k, buf_v, buf_out, buf_mask, buf_lengths, buf_lse, buf_weights;
    uint8_t flags;
} call;

static void check_accepted(const call *c, const cla_sdpa_plan *plan) {
    const clattn_sdpa_desc *d = &c->desc;
    const size_t B = c->q.size[0], Hq = c->q.size[1], Lq = c->q.size[2], Dk = c->q.size[3];
    const size_t Hkv = c->k.size[1], Lk = c->k.size[2], Dv = c->v.size[3];

    /* Shapes fit together. */
    const size_t want_k[4] = {B, Hkv, Lk, Dk}, want_v[4] = {B, Hkv, Lk, Dv}, want_out[4] = {B, Hq, Lq, Dv};
    CHECK(memcmp(c->k.size, want_k, sizeof want_k) == 0);
    CHECK(memcmp(c->v.size, want_v, sizeof want_v) == 0);
    CHECK(memcmp(c->out.size, want_out, sizeof want_out) == 0);
    CHECK(Dk >= 1 && Dk <= CLATTN_MAX_HEAD_DIM && Dv >= 1 && Dv <= CLATTN_MAX_HEAD_DIM);
    /* Heads wider than the fused kernels take run unfused, and an explicit fused call with one is refused. */
    if (plan->impl == CLATTN_IMPL_FUSED || c->desc.impl == CLATTN_IMPL_FUSED)
        CHECK(Dk <= CLATTN_MAX_FUSED_HEAD_DIM && Dv <= CLATTN_MAX_FUSED_HEAD_DIM);
    CHECK(Hkv == 0 ? Hq == 0 : Hq % Hkv == 0);
    CHECK(Lq <= INT32_MAX / 2 && Lk <= INT32_MAX / 2 && (u128)B * Hq <= INT32_MAX);
    if (c->desc.mask.buffer) {
        const clattn_tensor *m = &d->mask;
        CHECK(m->size[0] == B || m->size[0] == 1);
        CHECK(m->size[1] == Hq || m->size[1] == 1);
        /* Every dimension broadcasts (PyTorch's rule for attn_mask): the query and key ones too. */
        CHECK(m->size[2] == Lq || m->size[2] == 1);
        CHECK(m->size[3] == Lk || m->size[3] == 1);
        CHECK(element_bytes(m->dtype) != 0);
    }
    if (d->lse.buffer) {
        const size_t want[4] = {B, Hq, Lq, 1};
        CHECK(memcmp(d->lse.size, want, sizeof want) == 0 && d->lse.dtype == CLATTN_DTYPE_F32);
    }
    if (d->weights.buffer) {
        const size_t want[4] = {B, Hq, Lq, Lk};
        CHECK(memcmp(d->weights.size, want, sizeof want) == 0);
        CHECK(d->weights.dtype != CLATTN_DTYPE_BOOL && element_bytes(d->weights.dtype) != 0);
        CHECK(plan->impl == CLATTN_IMPL_UNFUSED);
    }
    const clattn_tensor *qkvo[4] = {&c->q, &c->k, &c->v, &c->out};
    for (int i = 0; i < 4; ++i) CHECK(qkvo[i]->dtype != CLATTN_DTYPE_BOOL && element_bytes(qkvo[i]->dtype) != 0);

    /* The desc's enumerations and numbers. */
    CHECK((int)d->causal >= CLATTN_CAUSAL_NONE && (int)d->causal <= CLATTN_CAUSAL_BOTTOM_RIGHT);
    CHECK((int)d->impl >= CLATTN_IMPL_AUTO && (int)d->impl <= CLATTN_IMPL_UNFUSED);
    CHECK(plan->impl == CLATTN_IMPL_FUSED || plan->impl == CLATTN_IMPL_UNFUSED);
    CHECK(d->window_left >= -1 && d->window_right >= -1);
    CHECK(plan->window_left >= -1 && plan->window_left < (int64_t)(Lq + Lk));
    CHECK(plan->window_right >= -1 && plan->window_right < (int64_t)(Lq + Lk));
    CHECK(isfinite(plan->scale));
    if (!isnan(d->scale)) CHECK(memcmp(&plan->scale, &d->scale, sizeof d->scale) == 0);
    if (c->flags & HAS_QUEUE) CHECK(!(c->flags & FOREIGN_QUEUE));
    if ((c->flags & HAS_WAIT)) CHECK(!(c->flags & NULL_WAIT_LIST));

    /* Every view that touches memory lies inside a buffer of this context. */
    view views[8];
    int n = 0;
    views[n++] = (view){"q", &c->q, c->buf_q, false};
    views[n++] = (view){"k", &c->k, c->buf_k, false};
    views[n++] = (view){"v", &c->v, c->buf_v, false};
    views[n++] = (view){"out", &c->out, c->buf_out, true};
    /* The plan's mask has the broadcast strides zeroed, which changes no byte it reaches; check the caller's. */
    if (d->mask.buffer) views[n++] = (view){"mask", &d->mask, c->buf_mask, false};
    if (d->lse.buffer) views[n++] = (view){"lse", &d->lse, c->buf_lse, true};
    if (d->weights.buffer) views[n++] = (view){"weights", &d->weights, c->buf_weights, true};
    u128 begin[8], end[8];
    for (int i = 0; i < n; ++i) {
        if (is_empty(views[i].t)) continue;
        view_span(views[i].t, &begin[i], &end[i]);
        if (end[i] > buffer_bytes[views[i].buffer] || views[i].buffer == 0 || views[i].buffer == NBUF - 1)
            fprintf(stderr, "fuzz_sdpa_args: %s spans bytes [%.0f, %.0f) of buffer %d (%zu bytes)\n", views[i].name,
                    (double)begin[i], (double)end[i], views[i].buffer, buffer_bytes[views[i].buffer]);
        CHECK(views[i].buffer != 0 && views[i].buffer != NBUF - 1);
        CHECK(end[i] <= buffer_bytes[views[i].buffer]);
    }
    /* Key lengths: B int32 values from the offset, when there is a batch to read them for. */
    u128 kl_begin = 0, kl_end = 0;
    if (d->key_lengths && B > 0) {
        kl_begin = (u128)d->key_lengths_offset * 4;
        kl_end = kl_begin + (u128)B * 4;
        if (kl_end > buffer_bytes[c->buf_lengths])
            fprintf(stderr, "fuzz_sdpa_args: key_lengths: %zu values from element %zu need %.0f bytes of %zu\n", B,
                    d->key_lengths_offset, (double)kl_end, buffer_bytes[c->buf_lengths]);
        CHECK(kl_end <= buffer_bytes[c->buf_lengths]);
        CHECK(c->buf_lengths != NBUF - 1); /* a buffer of another OpenCL context cannot be a kernel argument */
    }

    /* No output element shares a byte with another output element (within one output or across outputs), and no
     * input's span reaches a byte an output writes. Buffers are at most 64 KiB, so this is cheap. */
    static uint8_t owner[NBUF][65536];
    bool used[NBUF] = {false};
    for (int i = 0; i < n; ++i)
        if (views[i].output && !is_empty(views[i].t)) {
            if (!used[views[i].buffer]) memset(owner[views[i].buffer], 0, buffer_bytes[views[i].buffer]);
            used[views[i].buffer] = true;
            mark_output(&views[i], owner[views[i].buffer], (uint8_t)(i + 1));
        }
    for (int i = 0; i < n; ++i) {
        if (views[i].output || is_empty(views[i].t) || !used[views[i].buffer]) continue;
        for (size_t b = (size_t)begin[i]; b < (size_t)end[i]; ++b) {
            if (owner[views[i].buffer][b])
                fprintf(stderr, "fuzz_sdpa_args: %s reads byte %zu, which output #%d writes\n", views[i].name, b,
                        owner[views[i].buffer][b]);
            CHECK(owner[views[i].buffer][b] == 0);
        }
    }
    if (d->key_lengths && B > 0 && used[c->buf_lengths])
        for (size_t b = (size_t)kl_begin; b < (size_t)kl_end; ++b) CHECK(owner[c->buf_lengths][b] == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size};
    call c;
    memset(&c, 0, sizeof c);
    clattn_sdpa_desc_init(&c.desc);
    clattn_sdpa_desc *d = &c.desc;

    c.flags = u8(&r);
    d->causal = (clattn_causal)decode_enum(&r, 3);
    d->impl = (clattn_impl)decode_enum(&r, 3);
    d->window_left = decode_window(&r);
    d->window_right = decode_window(&r);
    d->scale = decode_scale(&r);

    size_t B = decode_size(&r), Hq = decode_size(&r), Hkv = decode_size(&r), Lq = decode_size(&r),
           Lk = decode_size(&r), Dk = decode_size(&r), Dv = decode_size(&r);
    const size_t want_q[4] = {B, Hq, Lq, Dk}, want_k[4] = {B, Hkv, Lk, Dk}, want_v[4] = {B, Hkv, Lk, Dv},
                 want_out[4] = {B, Hq, Lq, Dv};
    decode_view(&r, want_q, &c.q, &c.buf_q);
    decode_view(&r, want_k, &c.k, &c.buf_k);
    decode_view(&r, want_v, &c.v, &c.buf_v);
    decode_view(&r, want_out, &c.out, &c.buf_out);
    if (c.flags & HAS_MASK) {
        uint8_t broadcast = u8(&r);
        const size_t want[4] = {broadcast & 1 ? 1 : B, broadcast & 2 ? 1 : Hq, broadcast & 4 ? 1 : Lq,
                                broadcast & 8 ? 1 : Lk};
        decode_view(&r, want, &d->mask, &c.buf_mask);
    }
    if (c.flags & HAS_KEY_LENGTHS) {
        c.buf_lengths = u8(&r) % NBUF;
        d->key_lengths = buffers[c.buf_lengths];
        d->key_lengths_offset = decode_size(&r);
    }
    if (c.flags & HAS_LSE) {
        const size_t want[4] = {B, Hq, Lq, 1};
        decode_view(&r, want, &d->lse, &c.buf_lse);
    }
    if (c.flags & HAS_WEIGHTS) {
        const size_t want[4] = {B, Hq, Lq, Lk};
        decode_view(&r, want, &d->weights, &c.buf_weights);
    }
    cl_command_queue queue = NULL;
    if (c.flags & HAS_QUEUE) queue = c.flags & FOREIGN_QUEUE ? foreign_queue : clattn_context_cl_queue(ctx);
    cl_uint num_wait = c.flags & HAS_WAIT ? 1 : 0;
    const cl_event *wait_list = c.flags & NULL_WAIT_LIST ? NULL : &user_event;

    cla_sdpa_plan plan;
    clattn_status st = cla_sdpa_validate(ctx, d, &c.q, &c.k, &c.v, &c.out, queue, num_wait, wait_list, &plan);
    if (verbose)
        fprintf(stderr, "fuzz_sdpa_args: %s%s\n", st == CLATTN_SUCCESS ? "accepted" : "rejected: ",
                st == CLATTN_SUCCESS ? "" : clattn_context_last_error(ctx));
    if (st == CLATTN_SUCCESS) {
        check_accepted(&c, &plan);
    } else {
        /* A refusal always explains itself. */
        const char *msg = clattn_context_last_error(ctx);
        if (!msg || !*msg) {
            fprintf(stderr, "fuzz_sdpa_args: status %d with no message\n", (int)st);
            abort();
        }
    }
    return 0;
}
