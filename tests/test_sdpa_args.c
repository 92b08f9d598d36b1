// SPDX-License-Identifier: Apache-2.0
/* Invalid arguments to clattn_sdpa and clattn_sdpa_host: each gets its own status and a message naming the
 * argument, and no output is written (outputs are poisoned beforehand and checked afterwards). */
#include "test_util.h"

#include <math.h>

static clattn_context *ctx;
static cl_mem bq, bk, bv, bo, bo2, bl, bw, small, bmask;
static clattn_tensor q, k, v, out;
static clattn_sdpa_desc desc;

#define B      2
#define H      4
#define L      8
#define D      16
#define POISON 0x5a

static int setup(void **state) {
    (void)state;
    ctx = test_context();
    size_t n = (size_t)B * H * L * D * sizeof(float);
    bq = test_filled_buffer(ctx, n, 0);
    bk = test_filled_buffer(ctx, n, 0);
    bv = test_filled_buffer(ctx, n, 0);
    bo = test_filled_buffer(ctx, n, POISON);
    bo2 = test_filled_buffer(ctx, n, POISON);
    bl = test_filled_buffer(ctx, (size_t)B * H * L * sizeof(float), POISON);
    bw = test_filled_buffer(ctx, (size_t)B * H * L * L * sizeof(float), POISON);
    small = test_filled_buffer(ctx, 64, POISON);
    bmask = test_filled_buffer(ctx, (size_t)B * H * L * L * sizeof(float), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cl_mem all[] = {bq, bk, bv, bo, bo2, bl, bw, small, bmask};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) clReleaseMemObject(all[i]);
    clattn_context_free(ctx);
    return 0;
}

static int reset(void **state) {
    (void)state;
    q = clattn_tensor_bhld(bq, CLATTN_DTYPE_F32, B, H, L, D);
    k = clattn_tensor_bhld(bk, CLATTN_DTYPE_F32, B, H, L, D);
    v = clattn_tensor_bhld(bv, CLATTN_DTYPE_F32, B, H, L, D);
    out = clattn_tensor_bhld(bo, CLATTN_DTYPE_F32, B, H, L, D);
    clattn_sdpa_desc_init(&desc);
    return 0;
}

/* Every byte of an output buffer still holds the poison. */
static void assert_untouched(cl_mem m) {
    size_t size = 0;
    clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL);
    test_expect_unwritten(ctx, m, size, POISON);
}

/* Runs clattn_sdpa with the current arguments and expects `status`, a message containing `needle`, and no output.
 */
static void expect(clattn_status status, const char *needle) {
    clFinish(clattn_context_cl_queue(ctx));
    cl_event ev = (cl_event)0x1;
    clattn_status st = clattn_sdpa(ctx, &desc, &q, &k, &v, &out, NULL, 0, NULL, &ev);
    if (st != status)
        fail_msg("expected %s, got %s: %s", clattn_status_string(status), clattn_status_string(st),
                 clattn_context_last_error(ctx));
    if (needle && !strstr(clattn_context_last_error(ctx), needle))
        fail_msg("message '%s' does not mention '%s'", clattn_context_last_error(ctx), needle);
    assert_ptr_equal(ev, (cl_event)0x1); /* no event handed out on failure */
    clFinish(clattn_context_cl_queue(ctx));
    assert_untouched(bo);
    assert_untouched(bl);
    assert_untouched(bw);
}

static void null_arguments(void **state) {
    (void)state;
    assert_status(clattn_sdpa(NULL, &desc, &q, &k, &v, &out, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_sdpa(ctx, NULL, &q, &k, &v, &out, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    /* The error idiom leads every message with the entry point the caller called. */
    assert_string_equal(clattn_context_last_error(ctx), "clattn_sdpa: desc is NULL");
    assert_status(clattn_sdpa(ctx, &desc, NULL, &k, &v, &out, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, NULL, NULL, 0, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    assert_non_null(strstr(clattn_context_last_error(ctx), "out"));
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, &out, NULL, 2, NULL, NULL), CLATTN_ERROR_NULL_POINTER);
    k.buffer = NULL;
    expect(CLATTN_ERROR_NULL_POINTER, "k");
}

static void shape_mismatches(void **state) {
    (void)state;
    k.size[3] = D - 1;
    expect(CLATTN_ERROR_INVALID_SHAPE, "k");
    reset(state);
    v.size[2] = L - 1;
    expect(CLATTN_ERROR_INVALID_SHAPE, "v");
    reset(state);
    out.size[1] = H - 1;
    expect(CLATTN_ERROR_INVALID_SHAPE, "out");
    reset(state);
    k.size[0] = 1;
    expect(CLATTN_ERROR_INVALID_SHAPE, "batch");
}

static void heads_and_head_dims(void **state) {
    (void)state;
    k.size[1] = v.size[1] = 3; /* 4 query heads over 3 kv heads */
    expect(CLATTN_ERROR_INVALID_HEADS, "multiple");
    reset(state);
    k.size[1] = v.size[1] = 0;
    expect(CLATTN_ERROR_INVALID_HEADS, NULL);
    reset(state);
    q.size[3] = k.size[3] = 0;
    expect(CLATTN_ERROR_INVALID_HEAD_DIM, "1..65536");
    reset(state);
    q.size[3] = k.size[3] = CLATTN_MAX_HEAD_DIM + 1;
    expect(CLATTN_ERROR_INVALID_HEAD_DIM, NULL);
    reset(state);
    v.size[3] = 0;
    out.size[3] = 0;
    expect(CLATTN_ERROR_INVALID_HEAD_DIM, NULL);
}

/* A head past the fused kernels' bound, q/k or v alone, is an error for an explicitly fused call (it runs unfused
 * under AUTO, tests/test_sdpa.c), with a message that names the implementations that take it. */
static void fused_refuses_wide_heads(void **state) {
    static const size_t dims[][2] = {{CLATTN_MAX_FUSED_HEAD_DIM + 1, 16}, {16, 600}, {1000, 1000}};
    for (size_t i = 0; i < 3; ++i) {
        reset(state);
        const size_t dk = dims[i][0], dv = dims[i][1]; /* one row of each fits the 1024-float buffers */
        q = clattn_tensor_bhld(bq, CLATTN_DTYPE_F32, 1, 1, 1, dk);
        k = clattn_tensor_bhld(bk, CLATTN_DTYPE_F32, 1, 1, 1, dk);
        v = clattn_tensor_bhld(bv, CLATTN_DTYPE_F32, 1, 1, 1, dv);
        out = clattn_tensor_bhld(bo, CLATTN_DTYPE_F32, 1, 1, 1, dv);
        desc.impl = CLATTN_IMPL_FUSED;
        expect(CLATTN_ERROR_INVALID_HEAD_DIM, "CLATTN_IMPL_UNFUSED");
    }
}

static void dtypes(void **state) {
    (void)state;
    q.dtype = (clattn_dtype)42;
    expect(CLATTN_ERROR_INVALID_DTYPE, "q");
    reset(state);
    out.dtype = CLATTN_DTYPE_BOOL;
    expect(CLATTN_ERROR_INVALID_DTYPE, "out");
}

static void buffers_and_strides(void **state) {
    (void)state;
    q.buffer = small;
    expect(CLATTN_ERROR_BUFFER_TOO_SMALL, "q");
    reset(state);
    out.offset = 1; /* one element past the end */
    expect(CLATTN_ERROR_BUFFER_TOO_SMALL, "out");
    reset(state);
    out.stride[2] = 0; /* rows of the output share memory */
    expect(CLATTN_ERROR_INVALID_STRIDE, "out");
    reset(state);
    out.stride[1] = D; /* heads overlap rows */
    expect(CLATTN_ERROR_INVALID_STRIDE, NULL);
    reset(state);
    q.stride[0] = SIZE_MAX / 2;
    expect(CLATTN_ERROR_SIZE_OVERFLOW, "q");
    reset(state);
    out.buffer = bq; /* output overlapping an input */
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "overlaps");
}

static void masks_and_windows(void **state) {
    (void)state;
    desc.mask = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, B, H, L, L - 1);
    expect(CLATTN_ERROR_INVALID_MASK, "mask");
    reset(state);
    desc.mask = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, 3, H, L, L);
    expect(CLATTN_ERROR_INVALID_MASK, "1 or");
    reset(state);
    /* Every dimension broadcasts from 1 and only from 1: a size of neither 1 nor the full size in any of the four
     * is refused, naming the mask's sizes and the shape they had to broadcast to. */
    const size_t full[4] = {B, H, L, L};
    for (int dim = 0; dim < 4; ++dim) {
        size_t sz[4] = {1, 1, 1, 1};
        sz[dim] = full[dim] + 1;
        desc.mask = clattn_tensor_bhld(bmask, CLATTN_DTYPE_BOOL, sz[0], sz[1], sz[2], sz[3]);
        expect(CLATTN_ERROR_INVALID_MASK, "do not broadcast to [2, 4, 8, 8]");
        reset(state);
    }
    desc.mask = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F16, B, 1, L, 2);
    expect(CLATTN_ERROR_INVALID_MASK, "sizes [2, 1, 8, 2]");
    reset(state);
    /* A mask's extent is that of its own sizes: [B, 1, Lq, Lk] floats do not fit the 16 of `small`. */
    desc.mask = clattn_tensor_bhld(small, CLATTN_DTYPE_F32, B, 1, L, L);
    expect(CLATTN_ERROR_BUFFER_TOO_SMALL, "mask");
    reset(state);
    desc.mask = clattn_tensor_bhld(small, CLATTN_DTYPE_F32, B, H, L, L);
    expect(CLATTN_ERROR_BUFFER_TOO_SMALL, "mask");
    reset(state);
    desc.mask = clattn_tensor_bhld(bmask, (clattn_dtype)9, B, H, L, L);
    expect(CLATTN_ERROR_INVALID_MASK, "dtype");
    reset(state);
    desc.window_left = -2;
    expect(CLATTN_ERROR_INVALID_MASK, "window");
    reset(state);
    desc.causal = (clattn_causal)7;
    expect(CLATTN_ERROR_INVALID_MASK, "causal");
    reset(state);
    desc.key_lengths = small;
    desc.key_lengths_offset = 15; /* 2 values from element 15 of a 16-element buffer */
    expect(CLATTN_ERROR_BUFFER_TOO_SMALL, "key_lengths");
    reset(state);
    desc.impl = (clattn_impl)5;
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "impl");
    reset(state);
    desc.scale = INFINITY;
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "scale");
}

/* The score modifiers: a softcap that is negative, NaN or infinite; sinks and ALiBi slopes of the wrong dtype,
 * length or shape, in too small a buffer, or overlapping an output. Each is refused before anything runs, with
 * every output untouched; a valid set runs. */
static void score_modifiers(void **state) {
    const float caps[] = {-1.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 4; ++i) {
        desc.softcap = caps[i];
        expect(CLATTN_ERROR_INVALID_ARGUMENT, "softcap");
    }
    for (int which = 0; which < 2; ++which) {
        const char *name = which ? "alibi_slopes" : "sinks";
        clattn_tensor *t = which ? &desc.alibi_slopes : &desc.sinks;
        reset(state);
        *t = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F16, 1, H, 1, 1);
        expect(CLATTN_ERROR_INVALID_DTYPE, name);
        *t = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, 1, H - 1, 1, 1); /* one value short */
        expect(CLATTN_ERROR_INVALID_SHAPE, name);
        *t = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, B, H, 1, 1); /* per batch item */
        expect(CLATTN_ERROR_INVALID_SHAPE, name);
        *t = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, 1, H, 1, 2);
        expect(CLATTN_ERROR_INVALID_SHAPE, name);
        *t = clattn_tensor_bhld(small, CLATTN_DTYPE_F32, 1, H, 1, 1);
        t->offset = 14; /* 4 values from element 14 of a 16-element buffer */
        expect(CLATTN_ERROR_BUFFER_TOO_SMALL, name);
        *t = clattn_tensor_bhld(bo, CLATTN_DTYPE_F32, 1, H, 1, 1); /* inside the output */
        expect(CLATTN_ERROR_INVALID_ARGUMENT, "overlaps");
    }
    /* All three together, valid: the call runs (the poison is restored for the tests that follow). */
    reset(state);
    desc.softcap = 20.0f;
    desc.sinks = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, 1, H, 1, 1);
    desc.alibi_slopes = clattn_tensor_bhld(bmask, CLATTN_DTYPE_F32, 1, H, 1, 1);
    desc.alibi_slopes.offset = H;
    cl_event ev = NULL;
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, &out, NULL, 0, NULL, &ev), CLATTN_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    unsigned char poison[(size_t)B * H * L * D * sizeof(float)];
    memset(poison, POISON, sizeof poison);
    assert_int_equal(
        clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), bo, CL_TRUE, 0, sizeof poison, poison, 0, NULL, NULL),
        CL_SUCCESS);
}

static void optional_outputs(void **state) {
    (void)state;
    desc.lse = clattn_tensor_bhld(bl, CLATTN_DTYPE_F16, B, H, L, 1);
    expect(CLATTN_ERROR_INVALID_DTYPE, "lse");
    reset(state);
    desc.lse = clattn_tensor_bhld(bl, CLATTN_DTYPE_F32, B, H, L, 2);
    expect(CLATTN_ERROR_INVALID_SHAPE, "lse");
    reset(state);
    desc.weights = clattn_tensor_bhld(bw, CLATTN_DTYPE_F32, B, H, L, L + 1);
    expect(CLATTN_ERROR_INVALID_SHAPE, "weights");
    reset(state);
    desc.weights = clattn_tensor_bhld(bw, CLATTN_DTYPE_F32, B, H, L, L);
    desc.impl = CLATTN_IMPL_FUSED;
    expect(CLATTN_ERROR_UNSUPPORTED, "weights");
    reset(state);
    desc.lse = clattn_tensor_bhld(bo, CLATTN_DTYPE_F32, B, H, L, 1); /* lse overlapping out */
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "overlaps");
}

static void foreign_queue_and_buffer(void **state) {
    (void)state;
    clattn_context *other = test_context();
    cl_command_queue oq = clattn_context_cl_queue(other);
    cl_event ev = NULL;
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, &out, oq, 0, NULL, &ev), CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(ctx), "queue"));
    cl_int err;
    cl_mem foreign = clCreateBuffer(clattn_context_cl_context(other), CL_MEM_READ_WRITE, 1 << 16, NULL, &err);
    q.buffer = foreign;
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "another OpenCL context");
    reset(state);
    desc.key_lengths = foreign;
    expect(CLATTN_ERROR_INVALID_ARGUMENT, "key_lengths");
    clReleaseMemObject(foreign);
    clattn_context_free(other);
}

static void context_usable_after_errors(void **state) {
    (void)state;
    k.size[1] = v.size[1] = 3;
    expect(CLATTN_ERROR_INVALID_HEADS, NULL);
    reset(state);
    cl_event ev = NULL;
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, &out, NULL, 0, NULL, &ev), CLATTN_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    assert_string_equal(clattn_context_last_error(ctx), "");
    /* Restore the poison for the tests that follow. */
    unsigned char poison[(size_t)B * H * L * D * sizeof(float)];
    memset(poison, POISON, sizeof poison);
    assert_int_equal(
        clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), bo, CL_TRUE, 0, sizeof poison, poison, 0, NULL, NULL),
        CL_SUCCESS);
}

static void host_call_checks_its_arguments(void **state) {
    (void)state;
    float in[4] = {0}, o[4];
    memset(o, POISON, sizeof o);
    clattn_sdpa_host_desc d;
    clattn_sdpa_host_desc_init(&d);
    d.batch = d.q_heads = d.kv_heads = d.q_len = d.kv_len = 1;
    d.head_dim = 4;
    assert_status(clattn_sdpa_host(ctx, NULL, in, in, in, o), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_sdpa_host(ctx, &d, in, NULL, in, o), CLATTN_ERROR_NULL_POINTER);
    d.storage = CLATTN_DTYPE_BOOL;
    assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_INVALID_DTYPE);
    d.storage = CLATTN_DTYPE_F32;
    d.kv_heads = 0;
    assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_INVALID_HEADS);
    /* Found by the attention call inside the host form, and still named by the call the caller made. */
    const char *msg = clattn_context_last_error(ctx);
    const char *want = "clattn_sdpa_host: q has 1 heads and k/v have 0";
    if (strncmp(msg, want, strlen(want)) != 0) fail_msg("message: %s", msg);
    d.kv_heads = 1;
    float m[1] = {0};
    uint8_t bm[1] = {1};
    d.mask = m;
    d.bool_mask = bm;
    assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_INVALID_MASK);
    d.bool_mask = NULL;
    /* Each size must be 1, the full size or 0 (full): 2 is none of them for a size of 1. */
    for (int dim = 0; dim < 4; ++dim) {
        d.mask_shape[dim] = 2;
        assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_INVALID_MASK);
        assert_non_null(strstr(clattn_context_last_error(ctx), "does not broadcast"));
        d.mask_shape[dim] = 0;
    }
    d.mask_shape[0] = 1;
    d.batch = SIZE_MAX / 2;
    assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_SIZE_OVERFLOW);
    unsigned char *bytes = (unsigned char *)o;
    for (size_t i = 0; i < sizeof o; ++i) assert_int_equal(bytes[i], POISON);
    d.batch = 1;
    d.softcap = -3.0f; /* the score modifiers are checked like any argument */
    assert_status(clattn_sdpa_host(ctx, &d, in, in, in, o), CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(ctx), "softcap"));
    for (size_t i = 0; i < sizeof o; ++i) assert_int_equal(bytes[i], POISON);
    d.softcap = 0.0f;
    /* And a valid call works: one key, so the output is that key's value. */
    d.batch = 1;
    float vv[4] = {1, -2, 3, 0.5f};
    assert_status(clattn_sdpa_host(ctx, &d, in, in, vv, o), CLATTN_SUCCESS);
    for (int i = 0; i < 4; ++i) assert_true(fabsf(o[i] - vv[i]) < 1e-6f);
}

/* A kernel-parameter override of the flash variant that its kernel cannot take (after block_n is rounded to whole
 * float4s and the shape fitted to the device) is refused with the rule it breaks, when it is set or on the call it
 * cannot serve; nothing runs, and the defaults serve the call once it is cleared. */
static void flash_override_rules(void **state) {
    (void)state;
    static const struct {
        const char *params, *needle;
    } bad[] = {
        {"variant=flash,block_n=16,wg=12", "wg a multiple of block_n"},
        {"variant=flash,block_n=16,wg=4", "wg a multiple of block_n"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        const clattn_status st = clattn_context_set_kernel_params(ctx, "sdpa_fused", bad[i].params);
        const char *msg = clattn_context_last_error(ctx);
        if (st != CLATTN_ERROR_INVALID_ARGUMENT || !strstr(msg, bad[i].needle) ||
            !strstr(msg, "clattn_context_set_kernel_params"))
            fail_msg("[%s] %s: %s", bad[i].params, clattn_status_string(st), msg);
    }
    /* Rows a work-item past 4 are refused: on the set where the nominal head dims keep them (the flash kernel's
     * registers allow 5 there), else on the call, against its head dims. */
    desc.impl = CLATTN_IMPL_FUSED;
    if (clattn_context_set_kernel_params(ctx, "sdpa_fused", "variant=flash,rows=5") == CLATTN_SUCCESS)
        expect(CLATTN_ERROR_INVALID_ARGUMENT, "the flash variant takes rows 1 to 4");
    else
        assert_non_null(strstr(clattn_context_last_error(ctx), "the flash variant takes rows 1 to 4"));
    assert_status(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    assert_status(clattn_sdpa(ctx, &desc, &q, &k, &v, &out, NULL, 0, NULL, NULL), CLATTN_SUCCESS);
    clFinish(clattn_context_cl_queue(ctx));
}

#define T(fn) cmocka_unit_test_setup(fn, reset)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(null_arguments),
        T(shape_mismatches),
        T(heads_and_head_dims),
        T(fused_refuses_wide_heads),
        T(dtypes),
        T(buffers_and_strides),
        T(masks_and_windows),
        T(score_modifiers),
        T(optional_outputs),
        T(foreign_queue_and_buffer),
        T(context_usable_after_errors),
        T(host_call_checks_its_arguments),
        T(flash_override_rules),
    };
    return cmocka_run_group_tests_name("sdpa_args", tests, setup, teardown);
}
