// SPDX-License-Identifier: Apache-2.0
/* The library's doorway to CLBlast (src/blas.c): every strided-batched GEMM it is asked for gives the product that
 * the offsets and strides describe, on CLBlast's direct kernel, on its indirect kernel (which CLBlast 1.5 runs with
 * the offset and batch stride of an operand it reads in place silently dropped), and on whichever CLBlast picks by
 * default. Each case is checked against a double-precision product on the host, and every element of C outside the
 * matrices must keep its poison. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "blas.h"

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

#define POISON 4321.5f

typedef struct gemm_case {
    size_t m, n, k, batch;
    bool b_trans;
    size_t a_offset, b_offset, c_offset;
    size_t a_pad, b_pad, c_pad; /* extra elements per row (leading dimension minus row length) */
    size_t a_gap, c_gap;        /* extra elements between matrices of the batch */
    bool b_shared;              /* batch stride 0: one B for every matrix */
} gemm_case;

static cl_mem make_buffer(clattn_context *ctx, size_t count, const float *data) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              count * sizeof(float), (void *)data, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void run_case(clattn_context *ctx, const gemm_case *c) {
    unsigned seed = 11u + (unsigned)(c->m * 7 + c->n * 5 + c->k * 3 + c->batch + c->b_offset);
    const size_t lda = c->k + c->a_pad, a_stride = c->m * lda + c->a_gap;
    const size_t b_rows = c->b_trans ? c->n : c->k, b_cols = c->b_trans ? c->k : c->n;
    const size_t ldb = b_cols + c->b_pad, b_stride = c->b_shared ? 0 : b_rows * ldb;
    const size_t ldc = c->n + c->c_pad, c_stride = c->m * ldc + c->c_gap;
    const size_t a_count = c->a_offset + c->batch * a_stride, c_count = c->c_offset + c->batch * c_stride + 1;
    const size_t b_count = c->b_offset + (c->b_shared ? 1 : c->batch) * b_rows * ldb;
    float *a = malloc(a_count * sizeof(float)), *b = malloc(b_count * sizeof(float));
    float *got = malloc(c_count * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(got);
    for (size_t i = 0; i < a_count; ++i) a[i] = rnd(&seed);
    for (size_t i = 0; i < b_count; ++i) b[i] = rnd(&seed);
    for (size_t i = 0; i < c_count; ++i) got[i] = POISON;
    cl_mem ab = make_buffer(ctx, a_count, a), bb = make_buffer(ctx, b_count, b),
           cb = make_buffer(ctx, c_count, got);

    cl_command_queue queue = clattn_context_cl_queue(ctx);
    cl_event done = NULL;
    const cla_gemm call = {.m = c->m,
                           .n = c->n,
                           .k = c->k,
                           .batch = c->batch,
                           .b_transposed = c->b_trans,
                           .alpha = 1.0f,
                           .a = ab,
                           .b = bb,
                           .c = cb,
                           .a_offset = c->a_offset,
                           .a_ld = lda,
                           .a_stride = a_stride,
                           .b_offset = c->b_offset,
                           .b_ld = ldb,
                           .b_stride = b_stride,
                           .c_offset = c->c_offset,
                           .c_ld = ldc,
                           .c_stride = c_stride};
    CLBlastStatusCode s = cla_blas_gemm(&call, &queue, &done);
    if (s != CLBlastSuccess) fail_msg("CLBlast status %d %s", (int)s, cla_blas_status_name(s));
    assert_non_null(done);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    assert_int_equal(clEnqueueReadBuffer(queue, cb, CL_TRUE, 0, c_count * sizeof(float), got, 0, NULL, NULL),
                     CL_SUCCESS);

    for (size_t t = 0; t < c->batch; ++t) {
        const float *at = a + c->a_offset + t * a_stride, *bt = b + c->b_offset + t * b_stride;
        for (size_t i = 0; i < c->m; ++i)
            for (size_t j = 0; j < c->n; ++j) {
                double want = 0.0, mag = 0.0;
                for (size_t p = 0; p < c->k; ++p) {
                    const double x = at[i * lda + p], y = c->b_trans ? bt[j * ldb + p] : bt[p * ldb + j];
                    want += x * y;
                    mag += fabs(x * y);
                }
                float *g = &got[c->c_offset + t * c_stride + i * ldc + j];
                const double tol = 8.0 * (double)(c->k + 1) * FLT_EPSILON * mag + 1e-6;
                if (!(fabs((double)*g - want) <= tol))
                    fail_msg("m %zu n %zu k %zu batch %zu b_trans %d offsets %zu/%zu/%zu: C[%zu][%zu][%zu] = %g, "
                             "want %g",
                             c->m, c->n, c->k, c->batch, (int)c->b_trans, c->a_offset, c->b_offset, c->c_offset, t,
                             i, j, (double)*g, want);
                *g = POISON; /* checked; what is left must all be poison */
            }
    }
    for (size_t i = 0; i < c_count; ++i)
        if (got[i] != POISON) fail_msg("C[%zu] outside the matrices was written (%g)", i, (double)got[i]);
    clReleaseMemObject(ab);
    clReleaseMemObject(bb);
    clReleaseMemObject(cb);
    free(a);
    free(b);
    free(got);
}

/* Tile multiples of every CLBlast parameter set (which is where CLBlast reads operands in place) and odd sizes. */
static const size_t shapes[][3] = {{64, 64, 64}, {128, 64, 256}, {37, 29, 41}, {1, 64, 128}};

static void run_all(clattn_context *ctx) {
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
        for (int variant = 0; variant < 8; ++variant) {
            gemm_case c = {.m = shapes[s][0], .n = shapes[s][1], .k = shapes[s][2]};
            c.batch = variant & 1 ? 3 : 1;
            c.b_trans = variant & 2;
            const bool offsets = variant & 4;
            c.a_offset = offsets ? 7 : 0;
            c.b_offset = offsets ? c.k * c.n * 2 + 5 : 0;
            c.c_offset = offsets ? 3 : 0;
            run_case(ctx, &c);
            c.b_shared = true; /* a weight broadcast over the batch */
            run_case(ctx, &c);
            c.b_shared = false;
            c.a_gap = 5; /* matrices not back to back */
            c.c_gap = 2;
            run_case(ctx, &c);
            c.a_pad = 3; /* leading dimensions wider than the rows */
            c.b_pad = 1;
            c.c_pad = 2;
            run_case(ctx, &c);
        }
    }
}

/* Forces CLBlast's choice between its kernels for every size: a minimum indirect size of 1 sends everything to the
 * indirect kernel, a huge one everything to the direct kernel. The setting is CLBlast's, for the whole process. */
static void force_min_indirect(clattn_context *ctx, size_t size) {
    const char *name = "XGEMM_MIN_INDIRECT_SIZE";
    CLBlastStatusCode s = cla_blas_override(clattn_context_cl_device(ctx), "GemmRoutine", 1, &name, &size);
    if (s != CLBlastSuccess) fail_msg("CLBlastOverrideParameters: %d %s", (int)s, cla_blas_status_name(s));
}

static void test_default_choice(void **state) {
    (void)state;
    clattn_context *ctx = test_context();
    run_all(ctx);
    clattn_context_free(ctx);
}

static void test_indirect_kernel(void **state) {
    (void)state;
    clattn_context *ctx = test_context();
    force_min_indirect(ctx, 1);
    run_all(ctx);
    clattn_context_free(ctx);
}

static void test_direct_kernel(void **state) {
    (void)state;
    clattn_context *ctx = test_context();
    force_min_indirect(ctx, 1u << 20);
    run_all(ctx);
    clattn_context_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_choice),
        cmocka_unit_test(test_indirect_kernel),
        cmocka_unit_test(test_direct_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
