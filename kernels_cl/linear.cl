// SPDX-License-Identifier: Apache-2.0
/* Helper kernels of the linear projections of the attention layers (src/layers/linear.c): packing a sequence tensor
 * of any storage type into contiguous fp32 rows for CLBlast, adding a bias to GEMM results, and the final store of
 * a layer's fp32 result into the caller's output with bias, residual and conversion. Sequence tensors are [B, 1, L,
 * width] views with long4 element strides; grids are (width, L, B). */

#ifndef IN_DTYPE
#define IN_DTYPE 0
#endif
#ifndef RES_DTYPE
#define RES_DTYPE 0
#endif
#ifndef OUT_DTYPE
#define OUT_DTYPE 0
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif
#ifndef HAS_RESIDUAL
#define HAS_RESIDUAL 0
#endif

/* dst[(b * L + r) * K + c] = x[b, 0, r, c] as fp32. */
__kernel void linear_pack(__global const STORAGE(IN_DTYPE) * x, long x_offset, long4 x_strides,
                          __global float *dst) {
    const size_t c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    const size_t K = get_global_size(0), L = get_global_size(1);
    const long src = x_offset + (long)b * x_strides.x + (long)r * x_strides.z + (long)c * x_strides.w;
    dst[(b * L + r) * K + c] = LOAD(IN_DTYPE, x, src);
}

/* y[offset + b * batch_stride + r * ld + c] = (overwrite ? 0 : y) + bias[c] (bias optional through HAS_BIAS):
 * the bias of a projection after its GEMM, or the whole result when the reduction is empty. */
__kernel void linear_bias(__global float *y, long y_offset, long y_ld, long y_batch_stride,
                          __global const float *bias, long bias_offset, int overwrite) {
    const size_t c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    const long i = y_offset + (long)b * y_batch_stride + (long)r * y_ld + (long)c;
    float v = overwrite ? 0.0f : y[i];
#if HAS_BIAS
    v += bias[bias_offset + (long)c];
#endif
    y[i] = v;
}

/* out[b, 0, r, c] = acc[...] (+ bias[c]) (+ residual[b, 0, r, c]) in out's storage type. residual may be out
 * itself: each element is read before it is written, by the same work-item. */
__kernel void linear_store(__global const float *acc, long acc_offset, long acc_ld, long acc_batch_stride,
                           __global const float *bias, long bias_offset,
                           __global const STORAGE(RES_DTYPE) * residual, long res_offset, long4 res_strides,
                           __global STORAGE(OUT_DTYPE) * out, long out_offset, long4 out_strides) {
    const size_t c = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    float v = acc[acc_offset + (long)b * acc_batch_stride + (long)r * acc_ld + (long)c];
#if HAS_BIAS
    v += bias[bias_offset + (long)c];
#endif
#if HAS_RESIDUAL
    v += LOAD(RES_DTYPE, residual,
              res_offset + (long)b * res_strides.x + (long)r * res_strides.z + (long)c * res_strides.w);
#endif
    STORE(OUT_DTYPE, out, out_offset + (long)b * out_strides.x + (long)r * out_strides.z + (long)c * out_strides.w,
          v);
}
