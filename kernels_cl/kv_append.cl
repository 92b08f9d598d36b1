// SPDX-License-Identifier: Apache-2.0
/* kv_append: writes new keys (or values) into their slots of a cache, as vLLM's reshape_and_cache does, converting
 * them to the cache's storage type and quantizing them for an 8-bit cache (src/layers/kv_append.c is its host
 * side). One work-group of WG_SIZE work-items per (token, head): grid (WG_SIZE, T, Hkv). Token t goes to slot
 * slots[t] (-1: not written), which is row slot % block of page slot / block of the cache.
 *
 * SRC_DTYPE and DST_DTYPE are the clattn_dtype codes of the new rows (0..2) and of the cache (0..2, 4 int8, 5 fp8
 * E4M3). SCALE_MODE says where an 8-bit row's scale comes from: 1, read from the scale tensor (per head, per
 * tensor); 2, computed from the row, max |x| / 127 (int8) or / 448 (fp8), and written to the scale tensor (one per
 * slot and head). SCALE_DTYPE is the scale tensor's type (0 or 1).
 *
 * The quantized bytes and computed scales are those of clattn_quantize_rows (src/dtype.c) on the host, bit for bit,
 * on any device: OpenCL lets a device divide with an error of 2.5 ulp and flush subnormal floats, so the divisions,
 * products and conversions of the 8-bit path are done on the bits, in integers. */

#ifndef SRC_DTYPE
#define SRC_DTYPE 0
#endif
#ifndef DST_DTYPE
#define DST_DTYPE 0
#endif
#ifndef SCALE_MODE
#define SCALE_MODE 0
#endif
#ifndef SCALE_DTYPE
#define SCALE_DTYPE 0
#endif
#ifndef WG_SIZE
#define WG_SIZE 64
#endif

/* The same storage type on both sides is copied as raw bits, so every value, NaN payloads included, arrives as it
 * was sent; and the 8-bit path reads fp32 rows as bits, which no float register can flush or quieten. SRC_BITS(i)
 * is the bits of element i of an 8-bit path's row as a float (a bfloat16's are its top half). */
#define RAW_COPY (SRC_DTYPE == DST_DTYPE)
#if SRC_DTYPE == 0 && (RAW_COPY || DST_DTYPE >= 4)
#define SRC_T uint
#elif RAW_COPY
#define SRC_T ushort
#else
#define SRC_T STORAGE(SRC_DTYPE)
#endif
#if RAW_COPY
#define DST_T SRC_T
#else
#define DST_T STORAGE(DST_DTYPE)
#endif
#define SCALE_T STORAGE(SCALE_DTYPE)
#if SRC_DTYPE == 0
#define SRC_BITS(i) (src[i])
#elif SRC_DTYPE == 2
#define SRC_BITS(i) ((uint)src[i] << 16)
#else
#define SRC_BITS(i) as_uint(vload_half((i), src))
#endif

/* value >> shift (1..31) rounded to nearest, ties to even. */
CLA_INLINE uint cla_shift_rne(uint value, uint shift) {
    const uint kept = value >> shift, rest = value & ((1u << shift) - 1u), mid = 1u << (shift - 1u);
    return kept + (rest > mid || (rest == mid && (kept & 1u)));
}

/* OCP fp8 E4M3 of x, as src/dtype.c's cla_f32_to_fp8: nearest, ties to even, saturating to +-448, NaN to NaN
 * (0x7f with x's sign). On the bits alone, so that it needs neither denormal floats nor a rounding mode. */
CLA_INLINE uchar cla_f32_to_fp8(float x) {
    const uint u = as_uint(x), sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uchar)(sign | 0x7fu);
    if (a >= 0x43e00000u) return (uchar)(sign | 0x7eu); /* 448 and past: E4M3 has no infinity */
    if (a >= 0x3c800000u)                               /* 2^-6 and past: normal codes, 3 of 23 mantissa bits */
        return (uchar)(sign | cla_shift_rne(a - (120u << 23), 20u));
    /* Subnormal codes, m 2^-9: a normal float is sig 2^(e - 150), so m = sig 2^(e - 141), rounded. Below 2^-10
     * (e < 117, and every subnormal float) it rounds to zero. */
    const uint e = a >> 23;
    if (e < 117u) return (uchar)sign;
    return (uchar)(sign | cla_shift_rne((a & 0x7fffffu) | 0x800000u, 141u - e));
}

/* int8 of x, as src/dtype.c's cla_f32_to_i8: nearest, ties to even, saturating to [-127, 127], NaN to 0. rint is
 * exact and a subnormal rounds to 0 whether or not the device flushes it. */
CLA_INLINE char cla_f32_to_i8(float x) {
    const uint a = as_uint(x) & 0x7fffffffu;
    if (a > 0x7f800000u) return 0;
    const int v = a >= 0x42fe0000u ? 127 : (int)rint(as_float(a));
    return (char)(as_uint(x) >> 31 ? -v : v);
}

/* The float nearest (ties to even) to sig 2^exp, plus a fraction of its last bit when `sticky`, as bits: sig > 0
 * of at most 50 bits, and at least two bits more than a float keeps wherever the fraction is set. Overflow gives
 * inf, and results below 2^-126 come out subnormal, as IEEE arithmetic gives them. */
CLA_INLINE uint cla_round_bits(ulong sig, int exp, bool sticky) {
    const int len = 64 - (int)clz(sig);
    const int e = max(exp + len - 1, -126); /* the exponent of the result (of its last place + 23) */
    if (e > 127) return 0x7f800000u;
    const int shift = e - 23 - exp; /* bits of sig below the result's last place */
    ulong kept;
    if (shift <= 0) {
        kept = sig << -shift;
    } else if (shift > len) {
        kept = 0; /* below half the smallest subnormal */
    } else {
        const ulong rest = sig & ((1ul << shift) - 1ul), mid = 1ul << (shift - 1);
        kept = (sig >> shift) + (rest > mid || (rest == mid && (sticky || (sig >> shift & 1ul))));
    }
    /* kept is the significand with its leading bit (a carry into the exponent adds itself), or a subnormal's. */
    const ulong bits = ((ulong)(e + 126) << 23) + kept;
    return bits >= 0x7f800000ul ? 0x7f800000u : (uint)bits;
}

/* A positive finite float's bits as sig 2^exp with sig in [2^23, 2^24) (subnormals normalised). */
CLA_INLINE ulong cla_normal_sig(uint a, int *exp) {
    const uint e = a >> 23, m = a & 0x7fffffu;
    if (e) {
        *exp = (int)e - 150;
        return m | 0x800000u;
    }
    const int lead = (int)clz(m) - 8; /* m < 2^23: shifts its top bit to bit 23 */
    *exp = -149 - lead;
    return (ulong)m << lead;
}

/* a / b correctly rounded, for a >= 0 and b > 0 (bits; b may be inf, not both inf): the quotient of the
 * significands to 26 or 27 bits by one 64-bit integer division, the remainder as the sticky bit. */
CLA_INLINE uint cla_div_bits(uint a, uint b) {
    if (a == 0u || b == 0x7f800000u) return 0u;
    if (a == 0x7f800000u) return a;
    int ea, eb;
    const ulong sa = cla_normal_sig(a, &ea) << 26, sb = cla_normal_sig(b, &eb);
    return cla_round_bits(sa / sb, ea - 26 - eb, sa % sb != 0ul);
}

/* x * y correctly rounded (bits), y >= 0: a NaN x passed on quieted with its sign (as x86 and ARM hosts do) and the
 * 48-bit product of the significands rounded once. Where IEEE makes 0 * inf a NaN of no particular sign, a zero x
 * stays zero (a row of tiny values, whose 1 / scale overflows, keeps its zeros) and an infinite x becomes a NaN of
 * its own sign. */
CLA_INLINE uint cla_mul_bits(uint x, uint y) {
    const uint sign = (x ^ y) & 0x80000000u, ax = x & 0x7fffffffu, ay = y & 0x7fffffffu;
    if (ax > 0x7f800000u) return x | 0x400000u;
    if (ay > 0x7f800000u) return y | 0x400000u;
    if (ax == 0u) return sign;
    if (ay == 0u) return ax == 0x7f800000u ? x | 0x400000u : sign;
    if (ax == 0x7f800000u || ay == 0x7f800000u) return sign | 0x7f800000u;
    const uint ex = ax >> 23, ey = ay >> 23;
    const ulong sx = ex ? (ax & 0x7fffffu) | 0x800000u : ax, sy = ey ? (ay & 0x7fffffu) | 0x800000u : ay;
    return sign | cla_round_bits(sx * sy, (ex ? (int)ex - 150 : -149) + (ey ? (int)ey - 150 : -149), false);
}

/* The largest magnitude that an 8-bit code stores (the computed scale is max |x| over it). */
#if DST_DTYPE == 4
#define CLA_QMAX_BITS 0x42fe0000u /* 127 */
#else
#define CLA_QMAX_BITS 0x43e00000u /* 448 */
#endif

__kernel void kv_append(__global const SRC_T *src, long src_offset, long4 src_strides, __global DST_T *dst,
                        long dst_offset, long4 dst_strides, int block, __global const int *slots,
                        __global SCALE_T *scale, long scale_offset, long4 scale_strides, int dim) {
    const int lid = (int)get_local_id(0), t = (int)get_global_id(1), h = (int)get_global_id(2);
    const int slot = slots[t];
    if (slot < 0) return; /* the whole work-group: it shares t */
    const long page = slot / block, row = slot % block;
    const long from = src_offset + t * src_strides.z + h * src_strides.y;
    const long to = dst_offset + page * dst_strides.x + h * dst_strides.y + row * dst_strides.z;
    /* Every loop over the head dim runs the same number of times in every work-item, its body skipped past the end:
     * PoCL 3.1 ran the body of `for (d = lid; d < dim; d += WG_SIZE)` in work-items past dim in this kernel (whose
     * barriers make PoCL wrap each region in its own work-item loop), writing past the row. */
    const int steps = (dim + WG_SIZE - 1) / WG_SIZE;
#if DST_DTYPE < 4
    for (int i = 0; i < steps; ++i) {
        const int d = lid + i * WG_SIZE;
        if (d >= dim) continue;
#if RAW_COPY
        dst[to + d * dst_strides.w] = src[from + d * src_strides.w];
#else
        STORE(DST_DTYPE, dst, to + d * dst_strides.w, LOAD(SRC_DTYPE, src, from + d * src_strides.w));
#endif
    }
#else
    const long at = scale_offset + page * scale_strides.x + h * scale_strides.y + row * scale_strides.z;
#if SCALE_MODE == 2
    /* max |x| as bits: the order of non-negative floats is that of their bits, and NaNs (above inf) are skipped
     * as the host's comparisons skip them. */
    uint most = 0u;
    for (int i = 0; i < steps; ++i) {
        const int d = lid + i * WG_SIZE;
        if (d >= dim) continue;
        const uint a = SRC_BITS(from + d * src_strides.w) & 0x7fffffffu;
        if (a <= 0x7f800000u) most = max(most, a);
    }
    __local uint share[WG_SIZE];
    share[lid] = most;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int n = WG_SIZE / 2; n > 0; n /= 2) {
        if (lid < n) share[lid] = max(share[lid], share[lid + n]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    most = share[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    /* The scale as stored (an F16 tensor rounds it) is the one the codes are made with, so that code * stored scale
     * is what attention reads. The work-item that writes it reads it back and shares it. */
    if (lid == 0) {
        STORE(SCALE_DTYPE, scale, at, as_float(cla_div_bits(most, CLA_QMAX_BITS)));
        share[0] = as_uint(LOAD(SCALE_DTYPE, scale, at));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint s = share[0];
#else
    const uint s = as_uint(LOAD(SCALE_DTYPE, scale, at));
#endif
    /* 1 / s for a positive scale (inf gives 0), else 0: the host's `scale > 0 ? 1 / scale : 0`. */
    const uint inv = s - 1u < 0x7f800000u ? cla_div_bits(0x3f800000u, s) : 0u;
    for (int i = 0; i < steps; ++i) {
        const int d = lid + i * WG_SIZE;
        if (d >= dim) continue;
        const float x = as_float(cla_mul_bits(SRC_BITS(from + d * src_strides.w), inv));
#if DST_DTYPE == 4
        dst[to + d * dst_strides.w] = cla_f32_to_i8(x);
#else
        dst[to + d * dst_strides.w] = cla_f32_to_fp8(x);
#endif
    }
#endif
}
