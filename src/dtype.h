// SPDX-License-Identifier: Apache-2.0
/* Host-side conversions between float and the storage types of clattn (IEEE half, bfloat16). Used by the library
 * to stage host data, by the tests to round reference inputs exactly as the device sees them, and by the CLI. */
#ifndef CLATTN_DTYPE_H
#define CLATTN_DTYPE_H

#include "clattn.h"

#include <stddef.h>
#include <stdint.h>

/* IEEE binary16, round to nearest even; subnormals are exact, overflow gives inf, NaN stays a (quiet) NaN. */
uint16_t cla_f32_to_f16(float x);
float cla_f16_to_f32(uint16_t h);

/* bfloat16 (the top half of a binary32), round to nearest even; NaN stays a quiet NaN. */
uint16_t cla_f32_to_bf16(float x);
float cla_bf16_to_f32(uint16_t h);

/* OCP fp8 E4M3 (bias 7, max 448, no infinities, 0x7f NaN), round to nearest even, saturating; and int8,
 * round to nearest even, saturating to [-127, 127] (NaN gives 0). */
uint8_t cla_f32_to_fp8(float x);
float cla_fp8_to_f32(uint8_t v);
int8_t cla_f32_to_i8(float x);

/* The value `x` has after a round trip through storage type `dt`. F32 (and any type that does not store floats)
 * returns `x` unchanged. */
float cla_round_to_dtype(float x, clattn_dtype dt);

/* Converts `n` floats to F32/F16/BF16 storage and back. `dst` needs no particular alignment. The conversion may be
 * done in place (src == dst): to_storage walks forwards and from_storage backwards so that no element is
 * overwritten before it is read. Other dtypes leave `dst` untouched. */
void cla_convert_to_storage(const float *src, void *dst, size_t n, clattn_dtype dt);
void cla_convert_from_storage(const void *src, float *dst, size_t n, clattn_dtype dt);

#endif /* CLATTN_DTYPE_H */
