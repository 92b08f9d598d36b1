// SPDX-License-Identifier: Apache-2.0
/* Tensor views: constructors, and the checks every operation runs before touching a device: sizes whose byte count
 * overflows, views that run past their buffer, outputs whose strides alias, outputs that overlap inputs. */
#include "internal.h"

#include <string.h>

clattn_tensor clattn_tensor_bhld(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t heads, size_t seq,
                                 size_t dim) {
    clattn_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = buffer;
    t.dtype = dtype;
    t.size[0] = batch;
    t.size[1] = heads;
    t.size[2] = seq;
    t.size[3] = dim;
    t.stride[3] = 1;
    t.stride[2] = dim;
    t.stride[1] = seq * dim;
    t.stride[0] = heads * seq * dim;
    return t;
}

clattn_tensor clattn_tensor_blhd(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t heads, size_t seq,
                                 size_t dim) {
    clattn_tensor t = clattn_tensor_bhld(buffer, dtype, batch, heads, seq, dim);
    t.stride[3] = 1;
    t.stride[1] = dim;
    t.stride[2] = heads * dim;
    t.stride[0] = seq * heads * dim;
    return t;
}

clattn_tensor clattn_tensor_seq(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t seq, size_t width) {
    return clattn_tensor_bhld(buffer, dtype, batch, 1, seq, width);
}

static bool mul_overflows(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return true;
    *out = a * b;
    return false;
}

static bool add_overflows(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return true;
    *out = a + b;
    return false;
}

size_t cla_tensor_elements(const clattn_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < 4; ++i)
        if (mul_overflows(n, t->size[i], &n)) return SIZE_MAX;
    return n;
}

clattn_status cla_tensor_extent(clattn_context *ctx, const clattn_tensor *t, const char *name, size_t *begin,
                                size_t *end) {
    size_t esize = clattn_dtype_size(t->dtype);
    size_t last = t->offset, total = 1;
    for (int i = 0; i < 4; ++i) {
        size_t step = 0;
        if (mul_overflows(total, t->size[i], &total))
            return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s: sizes [%zu, %zu, %zu, %zu] overflow size_t", name,
                            t->size[0], t->size[1], t->size[2], t->size[3]);
        if (t->size[i] == 0) continue;
        if (mul_overflows(t->size[i] - 1, t->stride[i], &step) || add_overflows(last, step, &last))
            return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW,
                            "%s: offset %zu with strides [%zu, %zu, %zu, %zu] "
                            "overflows size_t",
                            name, t->offset, t->stride[0], t->stride[1], t->stride[2], t->stride[3]);
    }
    size_t first_byte = 0, end_byte = 0;
    if (mul_overflows(t->offset, esize, &first_byte) || add_overflows(last, 1, &end_byte) ||
        mul_overflows(end_byte, esize, &end_byte))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s: byte offsets overflow size_t", name);
    if (mul_overflows(total, esize, &total))
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s: byte size overflows size_t", name);
    *begin = first_byte;
    *end = total == 0 ? first_byte : end_byte;
    return CLATTN_SUCCESS;
}

/* Whether distinct indices always land on distinct elements: sorted by stride, each stride must step over
 * everything the smaller dimensions span. */
static bool strides_are_injective(const clattn_tensor *t) {
    int order[4] = {0, 1, 2, 3};
    for (int i = 1; i < 4; ++i)
        for (int j = i; j > 0 && t->stride[order[j]] < t->stride[order[j - 1]]; --j) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    size_t span = 0; /* largest offset the smaller dimensions reach */
    for (int i = 0; i < 4; ++i) {
        int d = order[i];
        if (t->size[d] <= 1) continue;
        if (t->stride[d] <= span) return false;
        span += (t->size[d] - 1) * t->stride[d];
    }
    return true;
}

clattn_status cla_buffer_check(clattn_context *ctx, const char *name, cl_mem buffer, size_t *size) {
    cl_context mem_ctx = NULL;
    cl_int err = clGetMemObjectInfo(buffer, CL_MEM_SIZE, sizeof *size, size, NULL);
    if (err == CL_SUCCESS) err = clGetMemObjectInfo(buffer, CL_MEM_CONTEXT, sizeof mem_ctx, &mem_ctx, NULL);
    CLA_FAIL_ON(err != CL_SUCCESS, ctx, err, "%s: the buffer is not a valid cl_mem (%d %s)", name, err,
                cla_cl_error_text(err));
    CLA_FAIL_ON(mem_ctx != ctx->cl_ctx, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "%s: the buffer belongs to another OpenCL context; create it in the clattn context's cl_context",
                name);
    return CLATTN_SUCCESS;
}

clattn_status cla_tensor_check(clattn_context *ctx, const clattn_tensor *t, const char *name, bool is_output,
                               size_t *begin, size_t *end) {
    if (clattn_dtype_size(t->dtype) == 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "%s: unknown dtype %d", name, (int)t->dtype);
    if (!t->buffer) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "%s: the buffer is NULL", name);
    clattn_status st = cla_tensor_extent(ctx, t, name, begin, end);
    if (st != CLATTN_SUCCESS) return st;
    if (*end == *begin) return CLATTN_SUCCESS; /* an empty view touches nothing */
    size_t mem_size = 0;
    if ((st = cla_buffer_check(ctx, name, t->buffer, &mem_size)) != CLATTN_SUCCESS) return st;
    if (*end > mem_size)
        return cla_fail(ctx, CLATTN_ERROR_BUFFER_TOO_SMALL,
                        "%s: the view [%zu, %zu, %zu, %zu] with strides [%zu, %zu, %zu, %zu] and offset %zu needs "
                        "%zu bytes but the buffer has %zu",
                        name, t->size[0], t->size[1], t->size[2], t->size[3], t->stride[0], t->stride[1],
                        t->stride[2], t->stride[3], t->offset, *end, mem_size);
    if (is_output && !strides_are_injective(t))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_STRIDE,
                        "%s: strides [%zu, %zu, %zu, %zu] for sizes [%zu, %zu, %zu, %zu] make different output "
                        "elements share memory",
                        name, t->stride[0], t->stride[1], t->stride[2], t->stride[3], t->size[0], t->size[1],
                        t->size[2], t->size[3]);
    return CLATTN_SUCCESS;
}

clattn_status cla_check_overlaps(clattn_context *ctx, const cla_range *r, size_t n, const char *hint) {
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) {
            const cla_range *a = &r[i], *b = &r[j];
            if (!(a->output || b->output) || a->buffer != b->buffer) continue;
            if (a->alias_group && a->alias_group == b->alias_group) continue;
            if (a->begin < a->end && b->begin < b->end && a->begin < b->end && b->begin < a->end)
                return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                                "%s overlaps %s in the same buffer; outputs must not share memory with other "
                                "tensors%s",
                                a->name, b->name, hint);
        }
    return CLATTN_SUCCESS;
}

clattn_status cla_expect_size(clattn_context *ctx, const clattn_tensor *t, const char *name, int dim, size_t want,
                              const char *what) {
    static const char *const dims[] = {"batch", "heads", "seq", "dim"};
    if (t->size[dim] == want) return CLATTN_SUCCESS;
    return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE, "%s: size[%d] (%s) is %zu but %s is %zu", name, dim, dims[dim],
                    t->size[dim], what, want);
}
