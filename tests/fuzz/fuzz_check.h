// SPDX-License-Identifier: Apache-2.0
/* The invariant check of the libFuzzer targets: a failed one names the target (FUZZ_TARGET, defined before this
 * header is included) and the line, and aborts so that the fuzzer keeps the input as a crash. */
#ifndef CLATTN_FUZZ_CHECK_H
#define CLATTN_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                                \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, FUZZ_TARGET ": invariant failed at line %d: %s\n", __LINE__, #cond);                   \
            abort();                                                                                               \
        }                                                                                                          \
    } while (0)

#endif
