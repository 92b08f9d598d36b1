// SPDX-License-Identifier: Apache-2.0
/* The library's one doorway to CLBlast: every call is serialised process-wide (see blas.c), and CLBlast's status
 * codes get names for error messages. */
#ifndef CLATTN_BLAS_H
#define CLATTN_BLAS_H

#include "internal.h"

#include <clblast_c.h>

/* One strided-batched GEMM, row-major: C_t = alpha A_t op(B_t) + beta C_t for t < batch, where matrix t of an
 * operand starts at its offset plus t times its batch stride (all in elements), as CLBlastSgemmStridedBatched
 * defines it. A batch of one needs no meaningful strides. */
typedef struct cla_gemm {
    size_t m, n, k, batch;
    bool b_transposed;
    float alpha, beta;
    cl_mem a, b, c;
    size_t a_offset, a_ld, a_stride;
    size_t b_offset, b_ld, b_stride;
    size_t c_offset, c_ld, c_stride;
} cla_gemm;

/* Enqueues `g` under the CLBlast lock, right for every offset and stride (blas.c says which calls CLBlast 1.5 gets
 * wrong and how they are served instead); `event`, if not NULL, completes after all of it. */
CLBlastStatusCode cla_blas_gemm(const cla_gemm *g, cl_command_queue *queue, cl_event *event);

/* cla_blas_gemm for an operation of a context, where a device operation may fail on purpose (cla_fault_due): a
 * failure becomes a status and a message naming `what`, the product's sizes and the device. CLBlast keeps its
 * tuned work-group shapes even where the device allows fewer work-items or less local memory; that is
 * CLATTN_ERROR_DEVICE_LIMIT, any other failure CLATTN_ERROR_CLBLAST. *event is NULL after a failure. */
clattn_status cla_gemm_enqueue(clattn_context *ctx, const cla_gemm *g, cl_command_queue *queue, cl_event *event,
                               const char *what);

/* CLBlastOverrideParameters for fp32, under the CLBlast lock. CLBlast keeps the parameters per device for the whole
 * process: every later GEMM on that device, from any context, uses them. */
CLBlastStatusCode cla_blas_override(cl_device_id device, const char *kernel, size_t count, const char **names,
                                    const size_t *values);

/* CLBlast's own codes by name, OpenCL's through cla_cl_error_name; "" if unknown. */
const char *cla_blas_status_name(CLBlastStatusCode s);

#endif
