// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the host conversions in src/dtype.c: exact encodings, round-to-nearest-even ties, subnormals,
 * overflow, infinities and NaN for IEEE half and bfloat16, and the round trip of every 16-bit pattern. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h"

/* A float and its bit pattern. */
typedef union {
    float f;
    uint32_t u;
} f32_pun;

static float from_bits(uint32_t u) {
    return (f32_pun){.u = u}.f;
}

static uint32_t to_bits(float x) {
    return (f32_pun){.f = x}.u;
}

static void test_f16_exact(void **state) {
    (void)state;
    assert_int_equal(cla_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(cla_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(cla_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(cla_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(cla_f32_to_f16(0.5f), 0x3800);
    assert_int_equal(cla_f32_to_f16(0.333251953125f), 0x3555);      /* the half nearest 1/3, exactly */
    assert_int_equal(cla_f32_to_f16(65504.0f), 0x7bff);             /* largest finite */
    assert_int_equal(cla_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);    /* smallest normal */
    assert_int_equal(cla_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);    /* smallest subnormal */
    assert_int_equal(cla_f32_to_f16(ldexpf(1023.0f, -24)), 0x03ff); /* largest subnormal */
    assert_int_equal(cla_f32_to_f16(ldexpf(-3.0f, -24)), 0x8003);
    assert_true(cla_f16_to_f32(0x3c00) == 1.0f);
    assert_true(cla_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(cla_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(cla_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(cla_f16_to_f32(0x8000) == 0.0f && signbit(cla_f16_to_f32(0x8000)));
    /* Rounding of an inexact value: 1.1 -> 0x3c66 (1.099609375). */
    assert_int_equal(cla_f32_to_f16(1.1f), 0x3c66);
}

static void test_f16_ties_to_even(void **state) {
    (void)state;
    /* Halfway between 1 and 1 + 2^-10 goes down to the even 1; halfway between 1 + 2^-10 and 1 + 2^-9 goes up. */
    assert_int_equal(cla_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(cla_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);
    /* Just above the tie rounds up, just below rounds down. */
    assert_int_equal(cla_f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -23)), 0x3c01);
    assert_int_equal(cla_f32_to_f16(1.0f + ldexpf(1.0f, -11) - ldexpf(1.0f, -23)), 0x3c00);
    assert_int_equal(cla_f32_to_f16(-(1.0f + ldexpf(3.0f, -11))), 0xbc02);
    /* Ties in the subnormal range: 2^-25 is halfway between 0 and 2^-24 and goes to 0; 3 * 2^-25 goes to 2. */
    assert_int_equal(cla_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);
    assert_int_equal(cla_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);
    assert_int_equal(cla_f32_to_f16(ldexpf(5.0f, -25)), 0x0002);
    assert_int_equal(cla_f32_to_f16(ldexpf(1.0f, -25) + ldexpf(1.0f, -40)), 0x0001);
    assert_int_equal(cla_f32_to_f16(ldexpf(1.0f, -26)), 0x0000);
    assert_int_equal(cla_f32_to_f16(-ldexpf(1.0f, -30)), 0x8000);    /* underflow keeps the sign */
    assert_int_equal(cla_f32_to_f16(from_bits(0x00000001)), 0x0000); /* float subnormals flush to zero */
    /* Rounding up out of the subnormal range lands on the smallest normal. */
    assert_int_equal(cla_f32_to_f16(ldexpf(1023.5f, -24)), 0x0400);
    assert_int_equal(cla_f32_to_f16(ldexpf(1022.5f, -24)), 0x03fe);
}

static void test_f16_overflow_inf_nan(void **state) {
    (void)state;
    /* 65520 is halfway between 65504 and 65536 (which does not exist): ties to even gives inf. */
    assert_int_equal(cla_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(cla_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(cla_f32_to_f16(65536.0f), 0x7c00);
    assert_int_equal(cla_f32_to_f16(100000.0f), 0x7c00); /* the first binade above half's range, not a NaN */
    assert_int_equal(cla_f32_to_f16(-131071.0f), 0xfc00);
    assert_int_equal(cla_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(cla_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(cla_f32_to_f16(FLT_MAX), 0x7c00);
    assert_int_equal(cla_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(cla_f32_to_f16(-INFINITY), 0xfc00);
    assert_true(isinf(cla_f16_to_f32(0x7c00)) && cla_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(cla_f16_to_f32(0xfc00)) && cla_f16_to_f32(0xfc00) < 0);

    /* NaN stays NaN, quiet, with its sign; a signalling NaN whose payload lives only in the low bits must not
     * truncate to inf. */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f802000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = cla_f32_to_f16(from_bits(nans[i]));
        assert_int_equal(h & 0x7c00, 0x7c00);
        assert_int_not_equal(h & 0x03ff, 0);
        assert_int_not_equal(h & 0x0200, 0);
        assert_int_equal(h >> 15, nans[i] >> 31);
        assert_true(isnan(cla_f16_to_f32(h)));
    }
    assert_true(isnan(cla_f16_to_f32(0x7c01)));
    assert_true(isnan(cla_f16_to_f32(0xfe00)) && signbit(cla_f16_to_f32(0xfe00)));
}

/* The value of a half bit pattern computed from its definition, independently of the converter. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0) return s * ldexp(m, -24);
    if (e == 31) return m ? NAN : s * INFINITY;
    return s * ldexp(1024 + m, e - 25);
}

static void test_f16_all_patterns(void **state) {
    (void)state;
    for (uint32_t p = 0; p <= 0xffff; p++) {
        uint16_t h = (uint16_t)p;
        float x = cla_f16_to_f32(h);
        double want = f16_value(h);
        uint16_t back = cla_f32_to_f16(x);
        if (isnan(want)) {
            assert_true(isnan(x));
            assert_int_equal(signbit(x) != 0, (h & 0x8000) != 0);
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0 && (back & 0x8000) == (h & 0x8000));
            if (h & 0x0200) /* quiet NaNs keep their payload exactly */
                assert_int_equal(back, h);
        } else {
            if ((double)x != want || (signbit(x) != 0) != (signbit(want) != 0))
                fail_msg("f16 0x%04x -> %.9g, want %.9g", (unsigned)h, (double)x, want);
            if (back != h) fail_msg("f16 0x%04x -> %.9g -> 0x%04x", (unsigned)h, (double)x, (unsigned)back);
        }
    }
}

static void test_bf16(void **state) {
    (void)state;
    const float exact[] = {1.0f, -2.0f, 0.0f, -0.0f};
    const uint16_t exact_bits[] = {0x3f80, 0xc000, 0x0000, 0x8000};
    for (size_t i = 0; i < 4; i++) assert_int_equal(cla_f32_to_bf16(exact[i]), exact_bits[i]);
    assert_true(cla_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(cla_bf16_to_f32(0x4049) == 3.140625f);
    /* Ties to even, just above and just below. */
    assert_int_equal(cla_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
    assert_int_equal(cla_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(cla_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    assert_int_equal(cla_f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
    assert_int_equal(cla_f32_to_bf16(from_bits(0xbf818000u)), 0xbf82);
    /* Subnormals round like everything else (a tie at odd 1 goes to 2). */
    assert_int_equal(cla_f32_to_bf16(from_bits(0x00018000u)), 0x0002);
    assert_int_equal(cla_f32_to_bf16(from_bits(0x00008000u)), 0x0000);
    /* Overflow: the largest float is above the largest bfloat16's rounding boundary. */
    assert_int_equal(cla_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(cla_f32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(cla_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(cla_f32_to_bf16(-INFINITY), 0xff80);
    /* NaN stays a quiet NaN with its sign, including payloads that rounding would carry into inf or truncate. */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t b = cla_f32_to_bf16(from_bits(nans[i]));
        assert_true(isnan(cla_bf16_to_f32(b)));
        assert_int_not_equal(b & 0x0040, 0);
        assert_int_equal(b >> 15, nans[i] >> 31);
    }
    /* Every pattern survives bf16 -> f32 -> bf16 (quiet NaNs included), and widening is exact. */
    for (uint32_t p = 0; p <= 0xffff; p++) {
        uint16_t b = (uint16_t)p;
        float x = cla_bf16_to_f32(b);
        assert_int_equal(to_bits(x), p << 16);
        bool is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0;
        if (!is_nan || (b & 0x40)) assert_int_equal(cla_f32_to_bf16(x), b);
    }
}

static void test_round_to_dtype(void **state) {
    (void)state;
    assert_true(cla_round_to_dtype(1.1f, CLATTN_DTYPE_F32) == 1.1f);
    assert_true(cla_round_to_dtype(1.1f, CLATTN_DTYPE_F16) == 1.099609375f);
    assert_true(cla_round_to_dtype(1.1f, CLATTN_DTYPE_BF16) == 1.1015625f);
    assert_true(cla_round_to_dtype(1.1f, CLATTN_DTYPE_BOOL) == 1.1f);
    assert_true(isinf(cla_round_to_dtype(1e6f, CLATTN_DTYPE_F16)));
    assert_true(cla_round_to_dtype(1e6f, CLATTN_DTYPE_BF16) == 999424.0f);
    assert_true(isnan(cla_round_to_dtype(NAN, CLATTN_DTYPE_F16)));
    assert_true(isnan(cla_round_to_dtype(NAN, CLATTN_DTYPE_BF16)));
}

static void test_convert_arrays(void **state) {
    (void)state;
    const float src[7] = {1.0f, -2.5f, 1.1f, 65520.0f, ldexpf(3.0f, -25), 0.0f, -1e-3f};
    const clattn_dtype types[3] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        /* Out of place into a deliberately misaligned buffer. */
        unsigned char storage[1 + 7 * 4];
        float back[7];
        cla_convert_to_storage(src, storage + 1, 7, types[t]);
        cla_convert_from_storage(storage + 1, back, 7, types[t]);
        for (int i = 0; i < 7; i++) {
            float want = cla_round_to_dtype(src[i], types[t]);
            assert_true(back[i] == want || (isnan(back[i]) && isnan(want)));
        }
        if (types[t] == CLATTN_DTYPE_F16) {
            uint16_t h;
            memcpy(&h, storage + 1 + 2 * 2, sizeof h);
            assert_int_equal(h, 0x3c66);
        }
        /* In place, both ways. */
        float buf[7];
        memcpy(buf, src, sizeof buf);
        cla_convert_to_storage(buf, buf, 7, types[t]);
        cla_convert_from_storage(buf, buf, 7, types[t]);
        for (int i = 0; i < 7; i++) assert_true(buf[i] == cla_round_to_dtype(src[i], types[t]));
    }
    /* A dtype that holds no floats leaves the destination alone. */
    float dst[2] = {7.0f, 8.0f};
    cla_convert_from_storage(src, dst, 2, CLATTN_DTYPE_BOOL);
    assert_true(dst[0] == 7.0f && dst[1] == 8.0f);
}

static void test_dtype_size(void **state) {
    (void)state;
    assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_F32), 4);
    assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_F16), 2);
    assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_BF16), 2);
    assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_BOOL), 1);
    assert_int_equal(clattn_dtype_size((clattn_dtype)99), 0);
    assert_int_equal(clattn_dtype_size((clattn_dtype)-1), 0);
}

/* The public face of the conversions (clattn.h): the same results as the library's own, names, and refusals. */
static void test_public_api(void **state) {
    (void)state;
    const char *const names[] = {"f32", "f16", "bf16", "bool"}; /* in the order of clattn_dtype */
    for (int dt = CLATTN_DTYPE_F32; dt <= CLATTN_DTYPE_BOOL; ++dt)
        assert_string_equal(clattn_dtype_name((clattn_dtype)dt), names[dt]);
    assert_string_equal(clattn_dtype_name((clattn_dtype)99), "unknown");
    assert_string_equal(clattn_device_type_name(CLATTN_DEVICE_TYPE_ACCELERATOR), "accelerator");
    assert_string_equal(clattn_device_type_name((clattn_device_type)-1), "other");
    const float x[5] = {1.0f, -2.5f, 65520.0f, 1e-8f, 0.1f};
    for (int dt = CLATTN_DTYPE_F32; dt <= CLATTN_DTYPE_BF16; ++dt) {
        uint16_t packed[10], expected[10];
        float back[5];
        assert_int_equal(clattn_dtype_pack((clattn_dtype)dt, x, packed, 5), CLATTN_SUCCESS);
        cla_convert_to_storage(x, expected, 5, (clattn_dtype)dt);
        assert_memory_equal(packed, expected, 5 * clattn_dtype_size((clattn_dtype)dt));
        assert_int_equal(clattn_dtype_unpack((clattn_dtype)dt, packed, back, 5), CLATTN_SUCCESS);
        for (int i = 0; i < 5; ++i) {
            assert_true(to_bits(back[i]) == to_bits(clattn_dtype_round((clattn_dtype)dt, x[i])));
            assert_true(to_bits(back[i]) == to_bits(cla_round_to_dtype(x[i], (clattn_dtype)dt)));
        }
    }
    float out[1] = {7.0f};
    uint8_t bytes[4] = {0};
    assert_int_equal(clattn_dtype_pack(CLATTN_DTYPE_BOOL, x, bytes, 1), CLATTN_ERROR_INVALID_DTYPE);
    assert_int_equal(clattn_dtype_unpack((clattn_dtype)7, bytes, out, 1), CLATTN_ERROR_INVALID_DTYPE);
    assert_true(out[0] == 7.0f); /* nothing written */
}

/* fp8 E4M3 (OCP): every code decodes to its value and encodes back to itself (NaN to NaN); exact values, ties to
 * even, subnormals, saturation at 448 and signed zero. */
static void test_fp8(void **state) {
    (void)state;
    for (int code = 0; code < 256; ++code) {
        const float x = cla_fp8_to_f32((uint8_t)code);
        if ((code & 0x7f) == 0x7f) {
            assert_true(isnan(x));
            assert_int_equal(cla_f32_to_fp8(x) & 0x7f, 0x7f);
            continue;
        }
        const unsigned e = (code >> 3) & 15u, m = code & 7u;
        const double want = (e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp((double)m, -9)) * (code & 0x80 ? -1 : 1);
        assert_true((double)x == want);
        assert_int_equal(cla_f32_to_fp8(x), code);
    }
    assert_int_equal(cla_f32_to_fp8(448.0f), 0x7e);
    assert_int_equal(cla_f32_to_fp8(1e9f), 0x7e); /* saturates: E4M3 has no infinity */
    assert_int_equal(cla_f32_to_fp8(-INFINITY), 0xfe);
    assert_int_equal(cla_f32_to_fp8(1.0625f), 0x38);   /* halfway between 1 and 1.125: to even (1) */
    assert_int_equal(cla_f32_to_fp8(1.1875f), 0x3a);   /* halfway between 1.125 and 1.25: to even (1.25) */
    assert_int_equal(cla_f32_to_fp8(0x1p-10f), 0x00);  /* half the smallest subnormal: to even (0) */
    assert_int_equal(cla_f32_to_fp8(0x1.8p-9f), 0x02); /* 1.5 subnormal steps: to even (2) */
    assert_int_equal(cla_f32_to_fp8(0x1.fp-7f), 0x08); /* rounds up out of the subnormals: 2^-6 */
    assert_int_equal(cla_f32_to_fp8(-0.0f), 0x80);
    assert_true(clattn_dtype_round(CLATTN_DTYPE_FP8_E4M3, 3.3f) == 3.25f);
}

/* int8: round half to even, saturate to +-127, NaN to 0; the row quantizer's scales and values. */
static void test_i8_and_quantize_rows(void **state) {
    (void)state;
    assert_int_equal(cla_f32_to_i8(2.5f), 2);
    assert_int_equal(cla_f32_to_i8(3.5f), 4);
    assert_int_equal(cla_f32_to_i8(-2.5f), -2);
    assert_int_equal(cla_f32_to_i8(200.0f), 127);
    assert_int_equal(cla_f32_to_i8(-200.0f), -127);
    assert_int_equal(cla_f32_to_i8(NAN), 0);
    const float rows[2][4] = {{1.0f, -2.54f, 0.5f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    int8_t q[8];
    float scales[2] = {0};
    assert_int_equal(clattn_quantize_rows(CLATTN_DTYPE_I8, &rows[0][0], 2, 4, q, scales), CLATTN_SUCCESS);
    assert_true(scales[0] == 2.54f / 127.0f);
    assert_int_equal(q[1], -127);
    assert_int_equal(q[0], cla_f32_to_i8(1.0f * (1.0f / scales[0])));
    assert_true(scales[1] == 0.0f); /* a row of zeros: scale 0, values 0 */
    for (int i = 4; i < 8; ++i) assert_int_equal(q[i], 0);
    uint8_t f8[8];
    float given = 0.5f;
    assert_int_equal(clattn_quantize_rows(CLATTN_DTYPE_FP8_E4M3, &rows[0][0], 2, 4, f8, &given), CLATTN_SUCCESS);
    assert_true(given == 0.5f);
    assert_int_equal(f8[0], cla_f32_to_fp8(2.0f));
    float bad = 0.0f;
    assert_int_equal(clattn_quantize_rows(CLATTN_DTYPE_FP8_E4M3, &rows[0][0], 1, 4, f8, &bad),
                     CLATTN_ERROR_INVALID_ARGUMENT);
    assert_int_equal(clattn_quantize_rows(CLATTN_DTYPE_F16, &rows[0][0], 1, 4, f8, scales),
                     CLATTN_ERROR_INVALID_DTYPE);
    float back[4];
    assert_int_equal(clattn_dtype_unpack(CLATTN_DTYPE_I8, q, back, 4), CLATTN_SUCCESS);
    assert_true(back[1] == -127.0f);
    assert_string_equal(clattn_dtype_name(CLATTN_DTYPE_I8), "i8");
    assert_string_equal(clattn_dtype_name(CLATTN_DTYPE_FP8_E4M3), "fp8");
    assert_int_equal(clattn_dtype_size(CLATTN_DTYPE_FP8_E4M3), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8),
        cmocka_unit_test(test_i8_and_quantize_rows),
        cmocka_unit_test(test_f16_exact),
        cmocka_unit_test(test_f16_ties_to_even),
        cmocka_unit_test(test_f16_overflow_inf_nan),
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_round_to_dtype),
        cmocka_unit_test(test_convert_arrays),
        cmocka_unit_test(test_dtype_size),
        cmocka_unit_test(test_public_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
