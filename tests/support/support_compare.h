// SPDX-License-Identifier: Apache-2.0
/* Comparing results with the double-precision reference, and the order statistics of timings: shared by the tests,
 * the clattn program's --check and its tuner. */
#ifndef CLATTN_SUPPORT_COMPARE_H
#define CLATTN_SUPPORT_COMPARE_H

#include <stdbool.h>
#include <stddef.h>

/* The largest difference between `got` and the reference, absolute or relative to max(1, |ref|); a NaN on one side
 * only counts as infinitely wrong, a NaN on both as agreement. *ref_max (if not NULL) receives the largest finite
 * |ref|. */
double support_max_error(const float *got, const double *ref, size_t n, bool relative, double *ref_max);

/* A qsort comparison of doubles, ascending. */
int support_compare_doubles(const void *a, const void *b);

/* Sorts `n` (at least 1) values ascending and returns their median. */
double support_sort_median(double *values, size_t n);

#endif
