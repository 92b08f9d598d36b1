// SPDX-License-Identifier: Apache-2.0
/* Enqueueing helpers: ordered chains of commands after the caller's events, and kernel arguments with errors that
 * name the kernel. */
#include "sdpa_internal.h"

#include <stdio.h>
#include <string.h>

void cla_chain_begin(cla_chain *c, clattn_context *ctx, cl_command_queue queue, cl_uint wait_count,
                     const cl_event *wait_list) {
    c->ctx = ctx;
    c->queue = queue;
    c->wait_count = wait_count;
    c->wait_list = wait_count ? wait_list : NULL;
    c->last = NULL;
}

cl_uint cla_chain_wait_count(const cla_chain *c) {
    return c->last ? 1 : c->wait_count;
}

const cl_event *cla_chain_wait_list(const cla_chain *c) {
    return c->last ? &c->last : c->wait_list;
}

void cla_chain_push(cla_chain *c, cl_event e) {
    if (c->last) clReleaseEvent(c->last);
    c->last = e;
}

cl_int cla_chain_barrier(cla_chain *c) {
    if (!c->last && c->wait_count == 0) return CL_SUCCESS;
    if (cla_fault_due(c->ctx)) return CL_OUT_OF_RESOURCES;
    cl_event e = NULL;
    cl_int err = clEnqueueBarrierWithWaitList(c->queue, cla_chain_wait_count(c), cla_chain_wait_list(c), &e);
    if (err == CL_SUCCESS) cla_chain_push(c, e);
    return err;
}

cl_int cla_chain_end(cla_chain *c, cl_event *event) {
    if (!c->last && event) {
        cl_event e = NULL;
        cl_int err = clEnqueueMarkerWithWaitList(c->queue, c->wait_count, c->wait_list, &e);
        if (err != CL_SUCCESS) return err;
        c->last = e;
    }
    if (event) {
        *event = c->last;
    } else if (c->last) {
        clReleaseEvent(c->last);
    }
    c->last = NULL;
    return CL_SUCCESS;
}

void cla_chain_abort(cla_chain *c) {
    if (c->last) clReleaseEvent(c->last);
    c->last = NULL;
}

clattn_status cla_chain_kernel(clattn_context *ctx, cla_chain *c, cl_kernel k, cl_uint dims, const size_t *global,
                               const size_t *local, const char *what) {
    return cla_chain_kernel_at(ctx, c, k, dims, NULL, global, local, what);
}

clattn_status cla_chain_kernel_at(clattn_context *ctx, cla_chain *c, cl_kernel k, cl_uint dims,
                                  const size_t *offset, const size_t *global, const size_t *local,
                                  const char *what) {
    cl_event e = NULL;
    cl_int err = cla_fault_due(ctx) ? CL_OUT_OF_RESOURCES
                                    : clEnqueueNDRangeKernel(c->queue, k, dims, offset, global, local,
                                                             cla_chain_wait_count(c), cla_chain_wait_list(c), &e);
    if (err != CL_SUCCESS) {
        return cla_fail(ctx, err, "enqueueing kernel %s on '%s' failed: %d %s (global %zu x %zu, local %zu x %zu)",
                        what, ctx->info.name, err, cla_cl_error_text(err), global[0], dims > 1 ? global[1] : 1,
                        local ? local[0] : 0, local && dims > 1 ? local[1] : 0);
    }
    cla_chain_push(c, e);
    return CLATTN_SUCCESS;
}

/* A kernel that is NULL was not built: programs are being recorded (which ends the call), or a bug. */
static clattn_status not_built(clattn_context *ctx, const char *what) {
    return cla_fail(ctx, ctx->recording ? CLATTN_ERROR_UNSUPPORTED : CLATTN_ERROR_INTERNAL,
                    "kernel %s was not built (%s)", what,
                    ctx->recording ? "programs are being recorded, not built or run" : "a bug in clattn");
}

static clattn_status set_arg(clattn_context *ctx, cl_kernel k, const char *what, cl_uint i, size_t size,
                             const void *value) {
    cl_int err = clSetKernelArg(k, i, size, value);
    if (err == CL_SUCCESS) return CLATTN_SUCCESS;
    return cla_fail(ctx, CLATTN_ERROR_INTERNAL, "setting argument %u of kernel %s failed: %d %s", i, what, err,
                    cla_cl_error_text(err));
}

clattn_status cla_set_named_args(clattn_context *ctx, cl_kernel k, const char *what, const char *const *names,
                                 const cla_named_arg *args, size_t count) {
    if (!k) return not_built(ctx, what);
    size_t n = 0;
    for (; names[n]; ++n) {
        const cla_named_arg *a = NULL;
        for (size_t j = 0; j < count && !a; ++j)
            if (strcmp(args[j].name, names[n]) == 0) a = &args[j];
        CLA_FAIL_ON(!a, ctx, CLATTN_ERROR_INTERNAL, "kernel %s: no value for its argument '%s' (a bug in clattn)",
                    what, names[n]);
        clattn_status st = set_arg(ctx, k, what, (cl_uint)n, a->size, a->value);
        if (st != CLATTN_SUCCESS) return st;
    }
    CLA_FAIL_ON(n != count, ctx, CLATTN_ERROR_INTERNAL,
                "kernel %s: it takes %zu arguments, not %zu (a bug in clattn)", what, n, count);
    return CLATTN_SUCCESS;
}

void cla_temp_begin(clattn_context *ctx) {
    ctx->memory.last_call_bytes = 0;
}

void cla_fault_inject(clattn_context *ctx, long n) {
    ctx->fault_countdown = n;
}

bool cla_fault_due(clattn_context *ctx) {
    /* While programs are being recorded (clattn kernels export), nothing may reach the device. */
    if (ctx && ctx->recording) return true;
    return ctx && ctx->fault_countdown > 0 && --ctx->fault_countdown == 0;
}

void cla_temp_release(clattn_context *ctx, cl_mem *mem) {
    if (!*mem) return;
    clReleaseMemObject(*mem);
    *mem = NULL;
    ctx->live_temps--;
}

clattn_status cla_temp_buffer(clattn_context *ctx, size_t bytes, const char *what, cl_mem *out) {
    cl_int err = CL_SUCCESS;
    *out = NULL;
    if (cla_fault_due(ctx))
        err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    else
        *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return cla_fail(ctx, err, "allocating %zu bytes of device memory for %s on '%s' failed: %d %s%s", bytes,
                        what, ctx->info.name, err, cla_cl_error_text(err),
                        err == CL_INVALID_BUFFER_SIZE ? " (larger than the device's maximum allocation)" : "");
    }
    ctx->live_temps++;
    ctx->memory.last_call_bytes += bytes;
    if (ctx->memory.last_call_bytes > ctx->memory.peak_call_bytes)
        ctx->memory.peak_call_bytes = ctx->memory.last_call_bytes;
    return CLATTN_SUCCESS;
}

clattn_status cla_temp_buffer_from(clattn_context *ctx, size_t bytes, const void *host, cl_mem_flags access,
                                   const char *what, cl_mem *out) {
    cl_int err = CL_SUCCESS;
    *out = NULL;
    if (cla_fault_due(ctx))
        err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
    else
        *out = clCreateBuffer(ctx->cl_ctx, access | CL_MEM_COPY_HOST_PTR, bytes, (void *)host, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return cla_fail(ctx, err, "copying %zu bytes of %s to '%s' failed: %d %s", bytes, what, ctx->info.name, err,
                        cla_cl_error_text(err));
    }
    ctx->live_temps++;
    ctx->memory.last_call_bytes += bytes;
    if (ctx->memory.last_call_bytes > ctx->memory.peak_call_bytes)
        ctx->memory.peak_call_bytes = ctx->memory.last_call_bytes;
    return CLATTN_SUCCESS;
}

clattn_status cla_check_queue(clattn_context *ctx, cl_command_queue queue, cl_uint num_wait,
                              const cl_event *wait_list) {
    CLA_FAIL_ON(num_wait > 0 && !wait_list, ctx, CLATTN_ERROR_NULL_POINTER,
                "num_wait is %u but wait_list is NULL; pass the events or 0", num_wait);
    if (!queue) return CLATTN_SUCCESS;
    cl_context qctx = NULL;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL);
    CLA_FAIL_ON(err != CL_SUCCESS, ctx, err, "queue: not a valid command queue (%d %s)", err,
                cla_cl_error_text(err));
    CLA_FAIL_ON(qctx != ctx->cl_ctx, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "queue: it belongs to another OpenCL context; pass a queue of the clattn context's cl_context, or "
                "NULL for the context's own");
    return CLATTN_SUCCESS;
}

clattn_status cla_temp_sub_buffer(clattn_context *ctx, cl_mem parent, size_t origin, size_t size, const char *what,
                                  cl_mem *out) {
    cl_int err = CL_SUCCESS;
    *out = NULL;
    if (cla_fault_due(ctx)) {
        err = CL_OUT_OF_RESOURCES;
    } else {
        cl_buffer_region region = {origin, size};
        /* Flags 0: the sub-buffer inherits the parent's access and host-pointer flags. */
        *out = clCreateSubBuffer(parent, 0, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    }
    if (err != CL_SUCCESS) {
        *out = NULL;
        return cla_fail(
            ctx, err,
            "creating a sub-buffer of bytes [%zu, %zu) for %s on '%s' failed: %d %s (the origin must be "
            "a multiple of the devices' base address alignment, %zu bytes)",
            origin, origin + size, what, ctx->info.name, err, cla_cl_error_text(err), ctx->sub_buffer_align);
    }
    ctx->live_temps++;
    return CLATTN_SUCCESS;
}

clattn_status cla_chain_copy_view(clattn_context *ctx, cla_chain *c, const clattn_tensor *src,
                                  const clattn_tensor *dst, const char *what) {
    if (!dst->size[0] || !dst->size[1] || !dst->size[2] || !dst->size[3]) return CLATTN_SUCCESS;
    /* Elements per work-item: a vector of whole rows' elements where both views' rows are contiguous. */
    const size_t dim = dst->size[3];
    const bool rows = src->stride[3] == 1 && dst->stride[3] == 1;
    const size_t vec = rows && dim % 8 == 0 ? 8 : rows && dim % 4 == 0 ? 4 : 1;
    char options[64];
    snprintf(options, sizeof options, "-DELEM_BYTES=%zu -DROW_VEC=%zu", clattn_dtype_size(dst->dtype), vec);
    cl_kernel k = NULL;
    clattn_status st = cla_kernel_get(ctx, "copy", options, "copy_view", &k);
    if (st != CLATTN_SUCCESS) return st;
    cl_mem sbuf = src->buffer, dbuf = dst->buffer;
    cl_long src_offset = (cl_long)src->offset, dst_offset = (cl_long)dst->offset;
    cl_long4 src_strides = cla_strides4(src), dst_strides = cla_strides4(dst);
    cl_int heads = (cl_int)dst->size[1];
    const cla_named_arg args[] = {
        CLA_NAMED("src", sbuf),    CLA_NAMED("src_offset", src_offset), CLA_NAMED("src_strides", src_strides),
        CLA_NAMED("dst", dbuf),    CLA_NAMED("dst_offset", dst_offset), CLA_NAMED("dst_strides", dst_strides),
        CLA_NAMED("heads", heads),
    };
    st = cla_set_named_args(ctx, k, what, cla_args_copy_view.names, args, CLA_ARRAY_SIZE(args));
    if (st != CLATTN_SUCCESS) return st;
    const size_t global[3] = {dim / vec, dst->size[2], dst->size[0] * dst->size[1]};
    return cla_chain_kernel(ctx, c, k, 3, global, NULL, what);
}
