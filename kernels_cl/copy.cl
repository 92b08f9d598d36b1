// SPDX-License-Identifier: Apache-2.0
/* copy_view: copies a 4-D view [B, H, L, D] element by element, as raw bits (so every value, NaN payloads
 * included, arrives unchanged), between any element offsets and strides. It places each device's part of an
 * attention call split over several devices (src/attention/sdpa_split.c) into the caller's output, new keys and
 * values into a KV cache, and makes the compact copies the CPU kernel reads. ELEM_BYTES is the element size: 4
 * (fp32), 2 (fp16, bf16) or 1. ROW_VEC (1, 4 or 8) is the elements a work-item copies: more than 1 only where both
 * views' rows are contiguous (unit D stride) and D is a multiple of it, as one vector load and store, since copying
 * an element per work-item costs a CPU device about as much index arithmetic as the copy itself. The grid is
 * (D / ROW_VEC, L, B * H); `heads` is H. */

#ifndef ELEM_BYTES
#define ELEM_BYTES 4
#endif
#ifndef ROW_VEC
#define ROW_VEC 1
#endif

#if ELEM_BYTES == 4
#define CLA_ELEM uint
#elif ELEM_BYTES == 2
#define CLA_ELEM ushort
#else
#define CLA_ELEM uchar
#endif

__kernel void copy_view(__global const CLA_ELEM *src, long src_offset, long4 src_strides, __global CLA_ELEM *dst,
                        long dst_offset, long4 dst_strides, int heads) {
    const long d = (long)get_global_id(0) * ROW_VEC, l = (long)get_global_id(1), bh = (long)get_global_id(2);
    const long b = bh / heads, h = bh % heads;
    const long from = src_offset + b * src_strides.x + h * src_strides.y + l * src_strides.z + d * src_strides.w;
    const long to = dst_offset + b * dst_strides.x + h * dst_strides.y + l * dst_strides.z + d * dst_strides.w;
#if ROW_VEC == 8
    vstore8(vload8(0, src + from), 0, dst + to);
#elif ROW_VEC == 4
    vstore4(vload4(0, src + from), 0, dst + to);
#else
    dst[to] = src[from];
#endif
}
