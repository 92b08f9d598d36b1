// SPDX-License-Identifier: Apache-2.0
/* The library's one doorway to CLBlast: every call is serialised process-wide (see blas.c), and CLBlast's status
 * codes get names for error messages. */
#ifndef CLATTN_BLAS_H
#define CLATTN_BLAS_H

#include "internal.h"

#include <clblast_c.h>

/* C_t = alpha op(A_t) op(B_t) + beta C_t for t < batch_count, as CLBlastSgemmStridedBatched defines it, under the
 * CLBlast lock, and right for every offset and stride (blas.c says which calls CLBlast 1.5 gets wrong and how they
 * are served instead). A batch of one needs no meaningful strides. */
CLBlastStatusCode cla_blas_sgemm_strided_batched(CLBlastLayout layout, CLBlastTranspose a_transpose,
                                                 CLBlastTranspose b_transpose, size_t m, size_t n, size_t k,
                                                 float alpha, cl_mem a, size_t a_offset, size_t a_ld,
                                                 size_t a_stride, cl_mem b, size_t b_offset, size_t b_ld,
                                                 size_t b_stride, float beta, cl_mem c, size_t c_offset,
                                                 size_t c_ld, size_t c_stride, size_t batch_count,
                                                 cl_command_queue *queue, cl_event *event);

/* CLBlastOverrideParameters for fp32, under the CLBlast lock. CLBlast keeps the parameters per device for the whole
 * process: every later GEMM on that device, from any context, uses them. */
CLBlastStatusCode cla_blas_override(cl_device_id device, const char *kernel, size_t count, const char **names,
                                    const size_t *values);

/* CLBlast's own codes by name, OpenCL's through cla_cl_error_name; "" if unknown. */
const char *cla_blas_status_name(CLBlastStatusCode s);

#endif
