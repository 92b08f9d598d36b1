// SPDX-License-Identifier: Apache-2.0
/* Seeded random inputs shared by the tests, the clattn program's run and bench commands and its tuner: one 32-bit
 * linear congruential generator, so that a seed draws the same values everywhere (a test can reproduce what
 * `clattn run --random` drew), in [-2, 2) as the tolerances of check_tolerance.h assume. */
#ifndef CLATTN_SUPPORT_RANDOM_H
#define CLATTN_SUPPORT_RANDOM_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"

/* The next value in [-2, 2) of the sequence that `seed` holds the state of. */
float support_random(unsigned *seed);

/* `n` values times `scale`, each rounded to storage type `dt` (so that a host copy is exactly what the device
 * holds), in a malloc'd array of n + 1 floats (never of size 0); NULL when out of memory. */
float *support_random_array(size_t n, float scale, clattn_dtype dt, unsigned *seed);

/* Rounds `n` floats in place to what they are after a round trip through storage type `dt`. */
void support_round_array(float *x, size_t n, clattn_dtype dt);

/* The random mask of `n` elements that the benchmark and the tuner draw (seed 45678): additive offsets in [-2, 2)
 * rounded to `dt` with about one key in eight at -inf (CLATTN_MASK_ADDITIVE, into *additive), or about one key in
 * eight false (CLATTN_MASK_BOOL, into *boolean); nothing for CLATTN_MASK_NONE. Returns 0, or -1 when out of
 * memory. */
int support_random_mask(size_t n, clattn_mask_kind kind, clattn_dtype dt, float **additive, uint8_t **boolean);

#endif
