// SPDX-License-Identifier: Apache-2.0
/* K/V stores in a storage type, quantized on upload where it is 8-bit (see serving_kv.h). */
#include "serving_kv.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "support_buffers.h"
#include "support_random.h"

/* The largest magnitude fp8 E4M3 holds: a head's largest value maps to it. */
#define FP8_E4M3_MAX 448.0f

int serving_parse_kv_dtype(const char *cmd, const char *text, clattn_dtype *dtype) {
    static const clattn_dtype kinds[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16, CLATTN_DTYPE_I8,
                                         CLATTN_DTYPE_FP8_E4M3};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; ++i)
        if (strcmp(text, clattn_dtype_name(kinds[i])) == 0) {
            *dtype = kinds[i];
            return CLI_OK;
        }
    return cli_error(cmd, CLI_USAGE, "--kv-dtype %s: expected f32, f16, bf16, i8 or fp8", text);
}

const char *serving_kv_scale_note(clattn_dtype storage) {
    return storage == CLATTN_DTYPE_I8         ? "a scale per token and head"
           : storage == CLATTN_DTYPE_FP8_E4M3 ? "a scale per head"
                                              : "";
}

void serving_kv_free(serving_kv *kv) {
    if (kv->tensor.buffer) clReleaseMemObject(kv->tensor.buffer);
    if (kv->scale.buffer) clReleaseMemObject(kv->scale.buffer);
    memset(kv, 0, sizeof *kv);
}

/* Rows [rows, cols] of `x` quantized into `dst`; each row's scale is scales[r] (i8: computed) or the scale of its
 * head (fp8: head_scale[head of the row]). `x` receives the dequantized values. */
static int quantize(clattn_dtype dt, float *x, size_t rows, size_t cols, size_t heads, size_t head_stride_rows,
                    const float *head_scale, uint8_t *dst, float *scales, float *back) {
    if (dt == CLATTN_DTYPE_I8 && clattn_quantize_rows(dt, x, rows, cols, dst, scales) != CLATTN_SUCCESS) return -1;
    for (size_t r = 0; r < rows; ++r) {
        float s = scales[r];
        if (dt == CLATTN_DTYPE_FP8_E4M3) {
            s = head_scale[(r / head_stride_rows) % heads];
            if (clattn_quantize_rows(dt, x + r * cols, 1, cols, dst + r * cols, &s) != CLATTN_SUCCESS) return -1;
        }
        if (clattn_dtype_unpack(dt, dst + r * cols, back, cols) != CLATTN_SUCCESS) return -1;
        for (size_t c = 0; c < cols; ++c) x[r * cols + c] = back[c] * s;
    }
    return 0;
}

int serving_kv_upload(const char *cmd, const char *what, clattn_context *ctx, float *host,
                      const clattn_tensor *layout, clattn_dtype storage, serving_kv *kv) {
    memset(kv, 0, sizeof *kv);
    const size_t heads = layout->size[1], dim = layout->size[3];
    const size_t n = layout->size[0] * heads * layout->size[2] * dim;
    kv->tensor = *layout;
    kv->tensor.dtype = storage;
    kv->value_bytes = n * clattn_dtype_size(storage);
    cl_int err = CL_SUCCESS;
    if (storage != CLATTN_DTYPE_I8 && storage != CLATTN_DTYPE_FP8_E4M3) {
        support_round_array(host, n, storage);
        if (!(kv->tensor.buffer = support_buffer_storage(ctx, host, n, storage, &err)))
            return cli_error(cmd, CLI_FAILED, "allocating the %s (%zu bytes) failed: OpenCL error %d", what,
                             kv->value_bytes, err);
        return CLI_OK;
    }
    /* Rows of the head dim are contiguous in both layouts; a row's head is (row / rows per head step) % heads,
     * where a head step is stride[1] elements (blhd: one row; bhld: a whole sequence). */
    const size_t rows = dim ? n / dim : 0, head_step = layout->stride[1] / (dim ? dim : 1);
    uint8_t *bytes = malloc(n + 1);
    float *scales = calloc(rows + 1, sizeof *scales), *back = malloc((dim + 1) * sizeof *back);
    float *head_scale = calloc(heads + 1, sizeof *head_scale);
    int rc = CLI_OK;
    if (!bytes || !scales || !back || !head_scale) rc = cli_error(cmd, CLI_FAILED, "out of host memory");
    if (rc == CLI_OK && storage == CLATTN_DTYPE_FP8_E4M3) {
        for (size_t r = 0; r < rows; ++r)
            for (size_t c = 0; c < dim; ++c) {
                float *m = &head_scale[(r / head_step) % heads];
                *m = fmaxf(*m, fabsf(host[r * dim + c]));
            }
        /* A head of zeros quantizes to zeros whatever the scale; the quantizer wants one above 0. */
        for (size_t h = 0; h < heads; ++h)
            head_scale[h] = head_scale[h] > 0.0f ? head_scale[h] / FP8_E4M3_MAX : 1.0f;
    }
    if (rc == CLI_OK &&
        quantize(storage, host, rows, dim, heads, head_step ? head_step : 1, head_scale, bytes, scales, back) != 0)
        rc = cli_error(cmd, CLI_FAILED, "quantizing the %s to %s failed (a value that is not finite?)", what,
                       clattn_dtype_name(storage));
    if (rc == CLI_OK && !(kv->tensor.buffer = support_buffer(ctx, bytes, n, &err)))
        rc = cli_error(cmd, CLI_FAILED, "allocating the %s (%zu bytes) failed: OpenCL error %d", what, n, err);
    if (rc == CLI_OK && storage == CLATTN_DTYPE_I8) {
        /* One scale per row, laid out as the rows are: the values' view without its head dim. */
        kv->scale = *layout;
        kv->scale.size[3] = 1;
        for (int d = 0; d < 3; ++d) kv->scale.stride[d] = layout->stride[d] / (dim ? dim : 1);
        kv->scale.stride[3] = 1;
        kv->scale_bytes = rows * sizeof(float);
        kv->scale.buffer = support_buffer(ctx, scales, kv->scale_bytes, &err);
    } else if (rc == CLI_OK) {
        kv->scale = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, 1, heads, 1, 1);
        kv->scale_bytes = heads * sizeof(float);
        kv->scale.buffer = support_buffer(ctx, head_scale, kv->scale_bytes, &err);
    }
    kv->scale.dtype = CLATTN_DTYPE_F32;
    if (rc == CLI_OK && !kv->scale.buffer)
        rc = cli_error(cmd, CLI_FAILED, "allocating the scales of the %s failed: OpenCL error %d", what, err);
    free(bytes);
    free(scales);
    free(back);
    free(head_scale);
    if (rc != CLI_OK) serving_kv_free(kv);
    return rc;
}
