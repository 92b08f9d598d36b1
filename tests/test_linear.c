// SPDX-License-Identifier: Apache-2.0
/* The linear projections of the attention layers (src/layers/linear.c): y = x W + b for every storage type, strided
 * and padded inputs, batched and folded GEMMs, an empty reduction, and the final store with bias and residual (in
 * place too), each against a double-precision product on the host. */
#include "test_util.h"

#include <math.h>

#include "dtype.h"
#include "internal.h"
#include "linear.h"

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

static cl_mem make_buffer(clattn_context *ctx, size_t bytes, const void *data) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)data, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void read_buffer(clattn_context *ctx, cl_mem m, size_t bytes, void *dst) {
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, dst, 0, NULL, NULL),
                     CL_SUCCESS);
}

typedef struct linear_case {
    size_t B, L, K, N;
    clattn_dtype dtype;
    size_t row_pad;   /* extra elements after each input row */
    size_t batch_gap; /* extra elements between input batch items */
    size_t y_gap;     /* extra rows between result batch items */
    bool bias;
} linear_case;

static void run_linear_case(clattn_context *ctx, const linear_case *c) {
    unsigned seed = 7u + (unsigned)(c->B * 31 + c->L * 7 + c->K * 3 + c->N);
    const size_t ld = c->K + c->row_pad, bs = c->L * ld + c->batch_gap;
    const size_t x_count = c->B * bs + 1;
    float *x = calloc(x_count, sizeof(float));
    float *w = malloc((c->K * c->N + 1) * sizeof(float));
    float *bias = malloc((c->N + 1) * sizeof(float));
    for (size_t i = 0; i < x_count; ++i) x[i] = cla_round_to_dtype(rnd(&seed), c->dtype);
    for (size_t i = 0; i < c->K * c->N; ++i) w[i] = rnd(&seed);
    for (size_t i = 0; i < c->N; ++i) bias[i] = rnd(&seed);
    const size_t esize = clattn_dtype_size(c->dtype);
    void *xs = malloc(x_count * esize);
    cla_convert_to_storage(x, xs, x_count, c->dtype);

    cl_mem xb = make_buffer(ctx, x_count * esize, xs), wb = NULL, bb = NULL;
    assert_int_equal(cla_upload_f32(ctx, w, c->K * c->N, "W", &wb), CLATTN_SUCCESS);
    assert_int_equal(cla_upload_f32(ctx, bias, c->N, "bias", &bb), CLATTN_SUCCESS);
    const size_t y_bs = (c->L + c->y_gap) * c->N, y_count = c->B * y_bs + 1;
    float *poison = malloc(y_count * sizeof(float));
    for (size_t i = 0; i < y_count; ++i) poison[i] = 1234.5f;
    cl_mem yb = make_buffer(ctx, y_count * sizeof(float), poison);

    clattn_tensor xt = clattn_tensor_seq(xb, c->dtype, c->B, c->L, c->K);
    xt.stride[2] = ld;
    xt.stride[0] = bs;
    cla_chain chain;
    cla_chain_begin(&chain, ctx, clattn_context_cl_queue(ctx), 0, NULL);
    cla_matrix wm = {wb, 0, c->N};
    cla_rows y = {yb, 0, c->N, y_bs};
    assert_status(cla_linear(ctx, &chain, &xt, wm, c->N, c->bias ? bb : NULL, 0, y, "test projection"),
                  CLATTN_SUCCESS);
    assert_int_equal(cla_chain_end(&chain, NULL), CL_SUCCESS);
    float *got = malloc(y_count * sizeof(float));
    read_buffer(ctx, yb, y_count * sizeof(float), got);
    for (size_t b = 0; b < c->B; ++b)
        for (size_t r = 0; r < c->L + c->y_gap; ++r)
            for (size_t n = 0; n < c->N; ++n) {
                const float g = got[b * y_bs + r * c->N + n];
                if (r >= c->L) {
                    assert_true(g == 1234.5f); /* gaps stay untouched */
                    continue;
                }
                double want = c->bias ? bias[n] : 0.0, mag = fabs(want);
                for (size_t k = 0; k < c->K; ++k) {
                    double p = (double)x[b * bs + r * ld + k] * w[k * c->N + n];
                    want += p;
                    mag += fabs(p);
                }
                if (fabs(g - want) > 1e-5 * (1.0 + mag) * (1.0 + c->K / 64.0))
                    fail_msg("B%zu L%zu K%zu N%zu dtype %d: y[%zu,%zu,%zu] = %g, expected %g", c->B, c->L, c->K,
                             c->N, (int)c->dtype, b, r, n, g, want);
            }
    assert_true(got[y_count - 1] == 1234.5f);
    assert_int_equal(ctx->live_temps, 0);
    clReleaseMemObject(xb);
    clReleaseMemObject(wb);
    clReleaseMemObject(bb);
    clReleaseMemObject(yb);
    free(x);
    free(w);
    free(bias);
    free(xs);
    free(poison);
    free(got);
}

static void test_linear_shapes(void **state) {
    clattn_context *ctx = *state;
    const linear_case cases[] = {
        {1, 1, 1, 1, CLATTN_DTYPE_F32, 0, 0, 0, false},   {2, 5, 7, 3, CLATTN_DTYPE_F32, 0, 0, 0, true},
        {3, 17, 40, 33, CLATTN_DTYPE_F32, 3, 5, 0, true}, {2, 9, 16, 24, CLATTN_DTYPE_F32, 0, 0, 2, true},
        {2, 9, 16, 24, CLATTN_DTYPE_F16, 1, 0, 1, true},  {3, 4, 31, 5, CLATTN_DTYPE_BF16, 0, 2, 0, false},
        {2, 6, 0, 4, CLATTN_DTYPE_F32, 0, 0, 0, true},    {2, 6, 0, 4, CLATTN_DTYPE_F32, 0, 0, 0, false},
        {0, 6, 8, 4, CLATTN_DTYPE_F32, 0, 0, 0, true},    {1, 65, 64, 129, CLATTN_DTYPE_F32, 0, 0, 0, true},
    };
    for (size_t i = 0; i < CLA_ARRAY_SIZE(cases); ++i) run_linear_case(ctx, &cases[i]);
}

/* out = acc + bias + residual in each storage type, with the residual a separate tensor or out itself. */
static void test_store_rows(void **state) {
    clattn_context *ctx = *state;
    const size_t B = 2, L = 5, N = 6;
    const clattn_dtype dts[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (size_t d = 0; d < 3; ++d)
        for (int in_place = 0; in_place < 2; ++in_place) {
            unsigned seed = 99u + (unsigned)d;
            float acc[60], bias[6], res[60];
            for (size_t i = 0; i < 60; ++i) acc[i] = rnd(&seed);
            for (size_t i = 0; i < 6; ++i) bias[i] = rnd(&seed);
            for (size_t i = 0; i < 60; ++i) res[i] = cla_round_to_dtype(rnd(&seed), dts[d]);
            const size_t es = clattn_dtype_size(dts[d]);
            unsigned char res_s[60 * 4], out_s[60 * 4];
            cla_convert_to_storage(res, res_s, 60, dts[d]);
            cl_mem accb = make_buffer(ctx, sizeof acc, acc), bb = make_buffer(ctx, sizeof bias, bias);
            cl_mem rb = make_buffer(ctx, 60 * es, res_s);
            cl_mem ob = in_place ? rb : make_buffer(ctx, 60 * es, NULL);
            clattn_tensor rt = clattn_tensor_seq(rb, dts[d], B, L, N), ot = clattn_tensor_seq(ob, dts[d], B, L, N);
            cla_chain chain;
            cla_chain_begin(&chain, ctx, clattn_context_cl_queue(ctx), 0, NULL);
            cla_rows rows = {accb, 0, N, L * N};
            assert_status(cla_store_rows(ctx, &chain, rows, bb, 0, &rt, &ot, "test store"), CLATTN_SUCCESS);
            assert_int_equal(cla_chain_end(&chain, NULL), CL_SUCCESS);
            read_buffer(ctx, ob, 60 * es, out_s);
            float got[60];
            cla_convert_from_storage(out_s, got, 60, dts[d]);
            for (size_t i = 0; i < 60; ++i) {
                float want = cla_round_to_dtype(acc[i] + bias[i % N] + res[i], dts[d]);
                if (fabsf(got[i] - want) > 1e-6f + 1e-2f * fabsf(want) * (d > 0))
                    fail_msg("dtype %d in place %d: out[%zu] = %g, expected %g", (int)dts[d], in_place, i, got[i],
                             want);
            }
            clReleaseMemObject(accb);
            clReleaseMemObject(bb);
            clReleaseMemObject(rb);
            if (!in_place) clReleaseMemObject(ob);
        }
}

static int setup(void **state) {
    *state = test_context();
    return 0;
}

static int teardown(void **state) {
    clattn_context_free(*state);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_shapes),
        cmocka_unit_test(test_store_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
