// SPDX-License-Identifier: Apache-2.0
/* Host conversions between float and the storage types (IEEE half, bfloat16, int8, fp8 E4M3), the row quantizer
 * of 8-bit KV caches, and clattn_dtype_size(). The bit
 * manipulation works on the binary32 encoding directly so that the result does not depend on the host's rounding
 * mode or on whether the compiler has a native _Float16. */
#include "dtype.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Shifts `value` right by `shift` (1..31) bits, rounding to nearest with ties to even. */
static uint32_t shift_right_rne(uint32_t value, unsigned shift) {
    uint32_t kept = value >> shift;
    uint32_t rest = value & ((UINT32_C(1) << shift) - 1u);
    uint32_t half = UINT32_C(1) << (shift - 1u);
    if (rest > half || (rest == half && (kept & 1u))) kept++;
    return kept;
}

uint16_t cla_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exponent = (u >> 23) & 0xffu;
    uint32_t mantissa = u & 0x7fffffu;

    if (exponent == 0xffu) {
        if (mantissa == 0) return (uint16_t)(sign | 0x7c00u);
        /* Keep the top payload bits and force the quiet bit so that the payload can never truncate to inf. */
        return (uint16_t)(sign | 0x7e00u | (mantissa >> 13));
    }

    int32_t e = (int32_t)exponent - 127 + 15; /* biased half exponent */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        /* Half subnormal (or zero): the value is m * 2^-24. With the implicit bit the float is
         * sig24 * 2^(e - 38), so m = sig24 >> (14 - e). Below 2^-25 everything rounds to zero; exactly 2^-25 is a
         * tie that rounds to even (zero), which the shift also gets right for e == -10. */
        if (e < -10) return sign;
        uint32_t significand = mantissa | 0x800000u;
        /* A carry out of the subnormal range lands on the smallest normal, which is the right encoding. */
        return (uint16_t)(sign | shift_right_rne(significand, (unsigned)(14 - e)));
    }
    /* Normal: a carry out of the mantissa increments the exponent, and out of the largest finite gives inf. */
    uint32_t rounded = shift_right_rne(((uint32_t)e << 23) | mantissa, 13);
    return (uint16_t)(sign | rounded);
}

float cla_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1fu) return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        if (mantissa == 0) return f32_from_bits(sign);
        /* Subnormal half: normalise, every one is a normal float. */
        int32_t e = -14;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            e--;
        }
        mantissa &= 0x3ffu;
        return f32_from_bits(sign | ((uint32_t)(e + 127) << 23) | (mantissa << 13));
    }
    return f32_from_bits(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
}

uint16_t cla_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu) != 0)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN; rounding could otherwise carry it into inf */
    /* Round to nearest even; a carry from the largest finite value correctly overflows to inf. */
    uint32_t bias = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + bias) >> 16);
}

float cla_bf16_to_f32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

/* x rounded to an integer, ties to even, whatever the host's rounding mode (|x| < 2^23). */
static float round_half_even(float x) {
    const float f = floorf(x), rest = x - f;
    if (rest > 0.5f || (rest == 0.5f && fmodf(f, 2.0f) != 0.0f)) return f + 1.0f;
    return f;
}

uint8_t cla_f32_to_fp8(float x) {
    const uint8_t sign = signbit(x) ? 0x80u : 0u;
    if (isnan(x)) return (uint8_t)(sign | 0x7fu);
    const float a = fabsf(x);
    if (a >= 448.0f) return (uint8_t)(sign | 0x7eu); /* saturate: E4M3 has no infinity */
    if (a < 0x1p-6f) return (uint8_t)(sign | (uint8_t)round_half_even(a * 0x1p9f)); /* subnormal; 8 = 2^-6 */
    int e = 0;
    (void)frexpf(a, &e); /* a = f 2^e with f in [0.5, 1) */
    e -= 1;              /* a = (1 + m/8) 2^e */
    float m = round_half_even((ldexpf(a, -e) - 1.0f) * 8.0f);
    if (m == 8.0f) {
        m = 0.0f;
        e += 1;
    }
    return (uint8_t)(sign | (uint8_t)((e + 7) << 3) | (uint8_t)m);
}

float cla_fp8_to_f32(uint8_t v) {
    const unsigned e = (v >> 3) & 15u, m = v & 7u;
    float a;
    if ((v & 0x7fu) == 0x7fu)
        a = NAN;
    else if (e == 0)
        a = ldexpf((float)m, -9);
    else
        a = ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
    return (v & 0x80u) ? -a : a;
}

int8_t cla_f32_to_i8(float x) {
    if (isnan(x)) return 0;
    if (x >= 127.0f) return 127;
    if (x <= -127.0f) return -127;
    return (int8_t)round_half_even(x);
}

float cla_round_to_dtype(float x, clattn_dtype dt) {
    switch (dt) {
    case CLATTN_DTYPE_I8:
        return (float)cla_f32_to_i8(x);
    case CLATTN_DTYPE_FP8_E4M3:
        return cla_fp8_to_f32(cla_f32_to_fp8(x));
    case CLATTN_DTYPE_F16:
        return cla_f16_to_f32(cla_f32_to_f16(x));
    case CLATTN_DTYPE_BF16:
        return cla_bf16_to_f32(cla_f32_to_bf16(x));
    default:
        return x;
    }
}

void cla_convert_to_storage(const float *src, void *dst, size_t n, clattn_dtype dt) {
    unsigned char *out = dst;
    switch (dt) {
    case CLATTN_DTYPE_F32:
        if ((const void *)src != dst) memmove(dst, src, n * sizeof(float));
        break;
    case CLATTN_DTYPE_F16:
    case CLATTN_DTYPE_BF16:
        /* Forwards: in place, element i is written to bytes [2i, 2i+2), which belong to float element i/2 <= i,
         * and element i itself is read before it is written. */
        for (size_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, &src[i], sizeof x);
            uint16_t h = dt == CLATTN_DTYPE_F16 ? cla_f32_to_f16(x) : cla_f32_to_bf16(x);
            memcpy(out + 2 * i, &h, sizeof h);
        }
        break;
    case CLATTN_DTYPE_I8:
    case CLATTN_DTYPE_FP8_E4M3:
        for (size_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, &src[i], sizeof x);
            out[i] = dt == CLATTN_DTYPE_I8 ? (unsigned char)cla_f32_to_i8(x) : cla_f32_to_fp8(x);
        }
        break;
    default:
        break;
    }
}

void cla_convert_from_storage(const void *src, float *dst, size_t n, clattn_dtype dt) {
    const unsigned char *in = src;
    switch (dt) {
    case CLATTN_DTYPE_F32:
        if (src != (const void *)dst) memmove(dst, src, n * sizeof(float));
        break;
    case CLATTN_DTYPE_F16:
    case CLATTN_DTYPE_BF16:
        /* Backwards, so that widening in place never overwrites a half that has not been read yet. */
        for (size_t i = n; i-- > 0;) {
            uint16_t h;
            memcpy(&h, in + 2 * i, sizeof h);
            float x = dt == CLATTN_DTYPE_F16 ? cla_f16_to_f32(h) : cla_bf16_to_f32(h);
            memcpy(&dst[i], &x, sizeof x);
        }
        break;
    case CLATTN_DTYPE_I8:
    case CLATTN_DTYPE_FP8_E4M3:
        for (size_t i = n; i-- > 0;) {
            float x = dt == CLATTN_DTYPE_I8 ? (float)(int8_t)in[i] : cla_fp8_to_f32(in[i]);
            memcpy(&dst[i], &x, sizeof x);
        }
        break;
    default:
        break;
    }
}

CLATTN_API size_t clattn_dtype_size(clattn_dtype dtype) {
    switch (dtype) {
    case CLATTN_DTYPE_F32:
    case CLATTN_DTYPE_I32:
        return 4;
    case CLATTN_DTYPE_F16:
    case CLATTN_DTYPE_BF16:
        return 2;
    case CLATTN_DTYPE_BOOL:
    case CLATTN_DTYPE_I8:
    case CLATTN_DTYPE_FP8_E4M3:
        return 1;
    default:
        return 0;
    }
}

const char *clattn_dtype_name(clattn_dtype dtype) {
    static const char *const names[] = {"f32", "f16", "bf16", "bool",
                                        "i8",  "fp8", "i32"}; /* in the order of clattn_dtype */
    return (unsigned)dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown";
}

static bool stores_floats(clattn_dtype dtype) {
    return dtype == CLATTN_DTYPE_F32 || dtype == CLATTN_DTYPE_F16 || dtype == CLATTN_DTYPE_BF16 ||
           dtype == CLATTN_DTYPE_I8 || dtype == CLATTN_DTYPE_FP8_E4M3;
}

clattn_status clattn_dtype_pack(clattn_dtype dtype, const float *src, void *dst, size_t n) {
    if (!stores_floats(dtype)) return CLATTN_ERROR_INVALID_DTYPE;
    if (n && (!src || !dst)) return CLATTN_ERROR_NULL_POINTER;
    cla_convert_to_storage(src, dst, n, dtype);
    return CLATTN_SUCCESS;
}

clattn_status clattn_dtype_unpack(clattn_dtype dtype, const void *src, float *dst, size_t n) {
    if (!stores_floats(dtype)) return CLATTN_ERROR_INVALID_DTYPE;
    if (n && (!src || !dst)) return CLATTN_ERROR_NULL_POINTER;
    cla_convert_from_storage(src, dst, n, dtype);
    return CLATTN_SUCCESS;
}

float clattn_dtype_round(clattn_dtype dtype, float x) {
    return cla_round_to_dtype(x, dtype);
}

clattn_status clattn_quantize_rows(clattn_dtype dtype, const float *src, size_t rows, size_t cols, void *dst,
                                   float *scales) {
    if (dtype != CLATTN_DTYPE_I8 && dtype != CLATTN_DTYPE_FP8_E4M3) return CLATTN_ERROR_INVALID_DTYPE;
    if (rows && cols && (!src || !dst || !scales)) return CLATTN_ERROR_NULL_POINTER;
    if (dtype == CLATTN_DTYPE_FP8_E4M3 && rows && cols && !(scales[0] > 0.0f && isfinite(scales[0])))
        return CLATTN_ERROR_INVALID_ARGUMENT;
    unsigned char *out = dst;
    for (size_t r = 0; r < rows; ++r) {
        const float *row = src + r * cols;
        float scale = scales[0];
        if (dtype == CLATTN_DTYPE_I8) {
            float most = 0.0f;
            for (size_t c = 0; c < cols; ++c)
                if (fabsf(row[c]) > most) most = fabsf(row[c]);
            scale = most / 127.0f;
            scales[r] = scale;
        }
        const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        for (size_t c = 0; c < cols; ++c)
            out[r * cols + c] = dtype == CLATTN_DTYPE_I8 ? (unsigned char)cla_f32_to_i8(row[c] * inv)
                                                         : cla_f32_to_fp8(row[c] * inv);
    }
    return CLATTN_SUCCESS;
}
