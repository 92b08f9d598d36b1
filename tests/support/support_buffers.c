// SPDX-License-Identifier: Apache-2.0
/* Device buffers from host data and back (see support_buffers.h). */
#include "support_buffers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

cl_mem support_buffer(clattn_context *ctx, const void *host, size_t bytes, cl_int *err) {
    cl_int e = CL_SUCCESS;
    const bool copy = host && bytes;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | (copy ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, copy ? (void *)host : NULL, &e);
    if (err) *err = e;
    return e == CL_SUCCESS ? m : NULL;
}

cl_mem support_filled_buffer(clattn_context *ctx, size_t bytes, unsigned char fill, cl_int *err) {
    unsigned char *host = malloc(bytes ? bytes : 1);
    if (!host) {
        if (err) *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    memset(host, fill, bytes);
    cl_mem m = support_buffer(ctx, host, bytes, err);
    free(host);
    return m;
}

cl_mem support_buffer_storage(clattn_context *ctx, const float *host, size_t n, clattn_dtype dt, cl_int *err) {
    const size_t bytes = n * clattn_dtype_size(dt);
    if (!host || dt == CLATTN_DTYPE_F32) return support_buffer(ctx, host, bytes, err);
    void *tmp = malloc(bytes + 1);
    if (!tmp || clattn_dtype_pack(dt, host, tmp, n) != CLATTN_SUCCESS) {
        free(tmp);
        if (err) *err = tmp ? CL_INVALID_VALUE : CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    cl_mem m = support_buffer(ctx, tmp, bytes, err);
    free(tmp);
    return m;
}

cl_int support_read_storage(clattn_context *ctx, cl_mem buffer, float *host, size_t n, clattn_dtype dt) {
    if (n == 0) return CL_SUCCESS;
    const size_t bytes = n * clattn_dtype_size(dt);
    void *tmp = dt == CLATTN_DTYPE_F32 ? (void *)host : malloc(bytes);
    if (!tmp) return CL_OUT_OF_HOST_MEMORY;
    cl_int err = clEnqueueReadBuffer(clattn_context_cl_queue(ctx), buffer, CL_TRUE, 0, bytes, tmp, 0, NULL, NULL);
    if (tmp != host) {
        if (err == CL_SUCCESS) clattn_dtype_unpack(dt, tmp, host, n);
        free(tmp);
    }
    return err;
}
