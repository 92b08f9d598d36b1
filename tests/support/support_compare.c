// SPDX-License-Identifier: Apache-2.0
/* Comparisons with the reference and order statistics (see support_compare.h). */
#include "support_compare.h"

#include <math.h>
#include <stdlib.h>

double support_max_error(const float *got, const double *ref, size_t n, bool relative, double *ref_max) {
    double worst = 0.0, biggest = 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double r = ref[i], a = fabs(r);
        double e = fabs((double)got[i] - r);
        if (relative && a > 1.0) e /= a;
        if (isnan(e)) e = isnan(got[i]) && isnan(r) ? 0.0 : INFINITY;
        if (e > worst) worst = e;
        if (isfinite(a) && a > biggest) biggest = a;
    }
    if (ref_max) *ref_max = biggest;
    return worst;
}

int support_compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double support_sort_median(double *values, size_t n) {
    qsort(values, n, sizeof *values, support_compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}
