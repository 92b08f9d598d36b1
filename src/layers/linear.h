// SPDX-License-Identifier: Apache-2.0
/* Linear projections for the attention layers: y = x W (+ b) as CLBlast fp32 GEMMs over sequence tensors of any
 * storage dtype, and the final store of a layer's fp32 result into the caller's output (bias, residual, dtype).
 * Shared by multi-head attention (mha.c) and seq2seq attention (seq2seq.c). */
#ifndef CLATTN_LINEAR_H
#define CLATTN_LINEAR_H

#include "sdpa_internal.h"

/* A row-major fp32 matrix in a device buffer: element (r, c) at offset + r * ld + c. Column slices of a packed
 * weight are the same buffer with a larger offset. */
typedef struct cla_matrix {
    cl_mem buffer;
    size_t offset;
    size_t ld;
} cla_matrix;

/* fp32 rows of a result per batch: row r of batch b starts at offset + b * batch_stride + r * ld. */
typedef struct cla_rows {
    cl_mem buffer;
    size_t offset;
    size_t ld;
    size_t batch_stride;
} cla_rows;

/* Uploads host fp32 data [rows, cols] (row-major) into a new read-only device buffer, blocking until copied. `what`
 * names it in errors. The buffer is the caller's (clReleaseMemObject), not a counted temporary. */
clattn_status cla_upload_f32(clattn_context *ctx, const float *data, size_t count, const char *what, cl_mem *out);

/* y[b, r, :n] = x[b, 0, r, :] W[:, :n] (+ bias[:n]) for every batch b and row r < x->size[2]; K = x->size[3] must
 * equal W's row count (the caller checks shapes). x may be F32, F16 or BF16 with any strides: it is read in place
 * when CLBlast can (fp32, unit width stride), otherwise converted into a temporary first. `bias` is fp32 [n] at
 * bias_offset, or NULL. y must not overlap x. Enqueued in order on the chain; temporaries are released before
 * returning (OpenCL keeps them alive for the enqueued commands). */
clattn_status cla_linear(clattn_context *ctx, cla_chain *chain, const clattn_tensor *x, cla_matrix w, size_t n,
                         cl_mem bias, size_t bias_offset, cla_rows y, const char *what);

/* out[b, 0, r, c] = acc[b, r, c] (+ bias[c]) (+ residual[b, 0, r, c]) converted to out's dtype, for the shape of
 * out ([B, 1, L, N]). `residual` (any float dtype and strides, same shape) may be NULL, and may be out itself. */
clattn_status cla_store_rows(clattn_context *ctx, cla_chain *chain, cla_rows acc, cl_mem bias, size_t bias_offset,
                             const clattn_tensor *residual, const clattn_tensor *out, const char *what);

#endif
