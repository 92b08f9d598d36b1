// SPDX-License-Identifier: Apache-2.0
/* Device buffers for tests, the clattn program and its tuner: made from host data (converted to a storage type
 * where asked) and read back as floats, through the public API alone. */
#ifndef CLATTN_SUPPORT_BUFFERS_H
#define CLATTN_SUPPORT_BUFFERS_H

#include <stddef.h>

#include "clattn.h"

/* A read-write buffer on the context of `bytes` (at least 4: OpenCL has no empty buffers) holding a copy of
 * `host`, or uninitialised when host is NULL. NULL on failure, with the OpenCL error in *err when err is not
 * NULL. */
cl_mem support_buffer(clattn_context *ctx, const void *host, size_t bytes, cl_int *err);

/* A buffer of `bytes` with every byte `fill` (poison for outputs that must be written). */
cl_mem support_filled_buffer(clattn_context *ctx, size_t bytes, unsigned char fill, cl_int *err);

/* A buffer of `n` elements of storage type `dt` (F32, F16 or BF16), converted from the floats of `host`, or
 * uninitialised when host is NULL. */
cl_mem support_buffer_storage(clattn_context *ctx, const float *host, size_t n, clattn_dtype dt, cl_int *err);

/* Reads `n` elements of storage type `dt` back into floats on the context's queue (blocking). Returns the OpenCL
 * status. */
cl_int support_read_storage(clattn_context *ctx, cl_mem buffer, float *host, size_t n, clattn_dtype dt);

#endif
