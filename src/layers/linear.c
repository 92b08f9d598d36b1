// SPDX-License-Identifier: Apache-2.0
/* Linear projections of the attention layers: y = x W (+ b) as CLBlast fp32 GEMMs over sequence tensors, and the
 * store of a layer's fp32 result into the caller's output. The kernels are in kernels_cl/linear.cl.
 *
 * CLBlast reads only fp32 rows with unit stride, takes no wait list and passes offsets as int, so a tensor it
 * cannot read in place is packed into a contiguous fp32 temporary first, and each GEMM is fenced by barriers so
 * that it follows the chain on in-order and out-of-order queues alike. */
#include "linear.h"

#include "blas.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define SOURCE_NAME "linear"

clattn_status cla_upload_f32(clattn_context *ctx, const float *data, size_t count, const char *what, cl_mem *out) {
    *out = NULL;
    if (count > SIZE_MAX / sizeof(float))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "uploading %s: %zu floats overflow size_t", what, count);
    cl_int err = CL_SUCCESS;
    if (cla_fault_due(ctx)) {
        err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    } else if (count == 0) {
        *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY, sizeof(float), NULL, &err);
    } else {
        /* CL_MEM_COPY_HOST_PTR copies before returning, so the caller's array may go right after. */
        *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, count * sizeof(float),
                              (void *)data, &err);
    }
    if (err != CL_SUCCESS) {
        *out = NULL;
        return cla_fail(ctx, err, "uploading %s (%zu bytes) to '%s' failed: %d %s", what, count * sizeof(float),
                        ctx->info.name, err, cla_cl_error_text(err));
    }
    return CLATTN_SUCCESS;
}

/* Whether the last element of a matrix region lies below INT_MAX elements, as CLBlast's int offsets need. */
static bool fits_int(size_t offset, size_t batch, size_t batch_stride, size_t rows, size_t ld, size_t cols) {
    if (batch == 0 || rows == 0 || cols == 0) return true;
    size_t last = offset;
    const size_t steps[3][2] = {{batch - 1, batch_stride}, {rows - 1, ld}, {cols - 1, 1}};
    for (int i = 0; i < 3; ++i) {
        if (steps[i][1] && steps[i][0] > ((size_t)INT_MAX - last) / steps[i][1]) return false;
        last += steps[i][0] * steps[i][1];
    }
    return last < (size_t)INT_MAX;
}

/* One GEMM in the chain, C = A B with one weight B for the whole batch (b_stride 0), between barriers. */
static clattn_status chain_sgemm(clattn_context *ctx, cla_chain *chain, cla_gemm *g, const char *what) {
    cl_int err = cla_chain_barrier(chain);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "%s: enqueueing the barrier before the GEMM failed: %d %s", what, err,
                        cla_cl_error_text(err));
    cl_event e = NULL;
    /* CLBlast rejects a C stride of 0 even for a single matrix, so give it a real one. */
    if (g->batch <= 1) g->c_stride = g->m * g->c_ld;
    clattn_status st = cla_gemm_enqueue(ctx, g, &chain->queue, &e, what);
    if (st != CLATTN_SUCCESS) return st;
    if (!e) {
        /* Without an event of its own, a barrier over the whole queue marks the GEMM's end. */
        err = clEnqueueBarrierWithWaitList(chain->queue, 0, NULL, &e);
        if (err != CL_SUCCESS)
            return cla_fail(ctx, err, "%s: enqueueing the barrier after the GEMM failed: %d %s", what, err,
                            cla_cl_error_text(err));
    }
    cla_chain_push(chain, e);
    return CLATTN_SUCCESS;
}

/* Runs a kernel of linear.cl over the grid (width, rows, batch). */
static clattn_status run_grid(clattn_context *ctx, cla_chain *chain, cl_kernel k, size_t width, size_t rows,
                              size_t batch, const char *what) {
    const size_t global[3] = {width, rows, batch};
    return cla_chain_kernel(ctx, chain, k, 3, global, NULL, what);
}

static clattn_status bias_kernel(clattn_context *ctx, cla_chain *chain, cla_rows y, size_t rows, size_t batch,
                                 size_t n, cl_mem bias, size_t bias_offset, bool overwrite, const char *what) {
    char options[64];
    snprintf(options, sizeof options, "-DHAS_BIAS=%d", bias != NULL);
    cl_kernel k = NULL;
    clattn_status st = cla_kernel_get(ctx, SOURCE_NAME, options, "linear_bias", &k);
    if (st != CLATTN_SUCCESS) return st;
    cl_long y_off = (cl_long)y.offset, y_ld = (cl_long)y.ld, y_bs = (cl_long)y.batch_stride;
    cl_long b_off = (cl_long)bias_offset;
    cl_int ow = overwrite;
    cl_mem b = bias ? bias : y.buffer; /* unread without HAS_BIAS, but every argument needs a value */
    const cla_named_arg args[] = {
        CLA_NAMED("y", y.buffer),          CLA_NAMED("y_offset", y_off), CLA_NAMED("y_ld", y_ld),
        CLA_NAMED("y_batch_stride", y_bs), CLA_NAMED("bias", b),         CLA_NAMED("bias_offset", b_off),
        CLA_NAMED("overwrite", ow),
    };
    st = cla_set_named_args(ctx, k, "linear_bias", cla_args_linear_bias.names, args, CLA_ARRAY_SIZE(args));
    if (st != CLATTN_SUCCESS) return st;
    return run_grid(ctx, chain, k, n, rows, batch, what);
}

/* Packs x [B, 1, L, K] into contiguous fp32 rows [B * L, K]. */
static clattn_status pack_rows(clattn_context *ctx, cla_chain *chain, const clattn_tensor *x, cl_mem dst,
                               const char *what) {
    char options[64];
    snprintf(options, sizeof options, "-DIN_DTYPE=%d", (int)x->dtype);
    cl_kernel k = NULL;
    clattn_status st = cla_kernel_get(ctx, SOURCE_NAME, options, "linear_pack", &k);
    if (st != CLATTN_SUCCESS) return st;
    cl_long x_off = (cl_long)x->offset;
    cl_long4 x_str = cla_strides4(x);
    const cla_named_arg args[] = {CLA_NAMED("x", x->buffer), CLA_NAMED("x_offset", x_off),
                                  CLA_NAMED("x_strides", x_str), CLA_NAMED("dst", dst)};
    st = cla_set_named_args(ctx, k, "linear_pack", cla_args_linear_pack.names, args, CLA_ARRAY_SIZE(args));
    if (st != CLATTN_SUCCESS) return st;
    return run_grid(ctx, chain, k, x->size[3], x->size[2], x->size[0], what);
}

clattn_status cla_linear(clattn_context *ctx, cla_chain *chain, const clattn_tensor *x, cla_matrix w, size_t n,
                         cl_mem bias, size_t bias_offset, cla_rows y, const char *what) {
    const size_t B = x->size[0], L = x->size[2], K = x->size[3];
    if (B == 0 || L == 0 || n == 0) return CLATTN_SUCCESS;
    /* An empty reduction: CLBlast takes no k = 0, and the product is all zeros. */
    if (K == 0) return bias_kernel(ctx, chain, y, L, B, n, bias, bias_offset, true, what);

    if (!fits_int(w.offset, 1, 0, K, w.ld, n) || !fits_int(y.offset, B, y.batch_stride, L, y.ld, n))
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "%s: a weight or result matrix reaches past 2^31 elements, beyond what CLBlast addresses",
                        what);
    /* The rows of all batch items form one matrix when they follow each other evenly. */
    const bool y_folds = B == 1 || y.batch_stride == L * y.ld;
    const bool in_place = x->dtype == CLATTN_DTYPE_F32 && x->stride[3] == 1 && (x->stride[2] >= K || L == 1) &&
                          fits_int(x->offset, B, x->stride[0], L, x->stride[2], K);
    cla_gemm g = {.n = n, .k = K, .alpha = 1.0f, .b = w.buffer, .b_offset = w.offset, .b_ld = w.ld, .c = y.buffer};
    cl_mem packed = NULL;
    clattn_status st = CLATTN_SUCCESS;
    if (in_place) {
        g.a = x->buffer;
        g.a_offset = x->offset;
        g.a_ld = x->stride[2] >= K ? x->stride[2] : K; /* a single row may have any row stride */
        g.a_stride = x->stride[0];
    } else {
        if (!fits_int(0, 1, 0, B * L, K, K))
            return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                            "%s: the input (%zu x %zu rows of %zu) reaches past 2^31 elements once packed, beyond "
                            "what CLBlast addresses; project it in smaller batches",
                            what, B, L, K);
        st = cla_temp_buffer(ctx, B * L * K * sizeof(float), what, &packed);
        if (st == CLATTN_SUCCESS) st = pack_rows(ctx, chain, x, packed, what);
        g.a = packed;
        g.a_offset = 0;
        g.a_ld = K;
        g.a_stride = L * K;
    }
    if (st == CLATTN_SUCCESS) {
        const bool x_folds = B == 1 || g.a_stride == L * g.a_ld;
        if (x_folds && y_folds) {
            g.m = B * L;
            g.batch = 1;
        } else {
            g.m = L;
            g.batch = B;
        }
        g.c_offset = y.offset;
        g.c_ld = y.ld;
        g.c_stride = y.batch_stride;
        st = chain_sgemm(ctx, chain, &g, what);
    }
    /* OpenCL keeps the temporary alive until the enqueued commands that use it are done. */
    cla_temp_release(ctx, &packed);
    if (st == CLATTN_SUCCESS && bias) st = bias_kernel(ctx, chain, y, L, B, n, bias, bias_offset, false, what);
    return st;
}

clattn_status cla_store_rows(clattn_context *ctx, cla_chain *chain, cla_rows acc, cl_mem bias, size_t bias_offset,
                             const clattn_tensor *residual, const clattn_tensor *out, const char *what) {
    const size_t B = out->size[0], L = out->size[2], N = out->size[3];
    if (B == 0 || L == 0 || N == 0) return CLATTN_SUCCESS;
    char options[128];
    snprintf(options, sizeof options, "-DOUT_DTYPE=%d -DRES_DTYPE=%d -DHAS_BIAS=%d -DHAS_RESIDUAL=%d",
             (int)out->dtype, residual ? (int)residual->dtype : 0, bias != NULL, residual != NULL);
    cl_kernel k = NULL;
    clattn_status st = cla_kernel_get(ctx, SOURCE_NAME, options, "linear_store", &k);
    if (st != CLATTN_SUCCESS) return st;
    cl_long a_off = (cl_long)acc.offset, a_ld = (cl_long)acc.ld, a_bs = (cl_long)acc.batch_stride;
    cl_long b_off = (cl_long)bias_offset;
    cl_mem b = bias ? bias : acc.buffer; /* unread without HAS_BIAS or HAS_RESIDUAL */
    cl_mem r = residual ? residual->buffer : acc.buffer;
    cl_long r_off = residual ? (cl_long)residual->offset : 0;
    cl_long4 r_str = residual ? cla_strides4(residual) : cla_strides4(out);
    cl_long o_off = (cl_long)out->offset;
    cl_long4 o_str = cla_strides4(out);
    const cla_named_arg args[] = {
        CLA_NAMED("acc", acc.buffer),
        CLA_NAMED("acc_offset", a_off),
        CLA_NAMED("acc_ld", a_ld),
        CLA_NAMED("acc_batch_stride", a_bs),
        CLA_NAMED("bias", b),
        CLA_NAMED("bias_offset", b_off),
        CLA_NAMED("residual", r),
        CLA_NAMED("res_offset", r_off),
        CLA_NAMED("res_strides", r_str),
        CLA_NAMED("out", out->buffer),
        CLA_NAMED("out_offset", o_off),
        CLA_NAMED("out_strides", o_str),
    };
    st = cla_set_named_args(ctx, k, "linear_store", cla_args_linear_store.names, args, CLA_ARRAY_SIZE(args));
    if (st != CLATTN_SUCCESS) return st;
    return run_grid(ctx, chain, k, N, L, B, what);
}
