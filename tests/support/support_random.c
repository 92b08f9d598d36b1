// SPDX-License-Identifier: Apache-2.0
/* Seeded random inputs (see support_random.h). */
#include "support_random.h"

#include <math.h>
#include <stdlib.h>

float support_random(unsigned *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    return ((float)(*seed >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

float *support_random_array(size_t n, float scale, clattn_dtype dt, unsigned *seed) {
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; ++i) x[i] = clattn_dtype_round(dt, support_random(seed) * scale);
    return x;
}

void support_round_array(float *x, size_t n, clattn_dtype dt) {
    for (size_t i = 0; i < n; ++i) x[i] = clattn_dtype_round(dt, x[i]);
}

int support_random_mask(size_t n, clattn_mask_kind kind, clattn_dtype dt, float **additive, uint8_t **boolean) {
    unsigned seed = 45678u;
    if (kind == CLATTN_MASK_ADDITIVE) {
        float *m = *additive = malloc((n + 1) * sizeof *m);
        if (!m) return -1;
        for (size_t i = 0; i < n; ++i) {
            const float r = support_random(&seed);
            m[i] = r < -1.5f ? -INFINITY : clattn_dtype_round(dt, r);
        }
    } else if (kind == CLATTN_MASK_BOOL) {
        uint8_t *m = *boolean = malloc(n + 1);
        if (!m) return -1;
        for (size_t i = 0; i < n; ++i) m[i] = support_random(&seed) >= -1.5f;
    }
    return 0;
}
