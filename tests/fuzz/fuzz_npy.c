// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the .npy reader of the command-line tool (tools/clattn/npy.c). The files it reads come from
 * users, so any byte string must either parse into a self-consistent array or fail with a message; never crash,
 * read out of bounds or leak. Each input is parsed twice, from memory (npy_parse) and from a file (npy_read, which
 * takes a different route: it reads the header first and the data straight into place), and the two must agree.
 *
 * Build and run: tools/scripts/fuzz.sh (see tests/fuzz/README.md). */
#define _GNU_SOURCE /* memfd_create */

#include "npy.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A regular file that lives in memory: npy_read needs a path, and a memfd keeps the disk out of the loop. */
static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    file_fd = memfd_create("fuzz_npy", 0);
    if (file_fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    return 0;
}

/* IEEE binary16 decoded by arithmetic, independently of the bit manipulation in src/dtype.c. */
static float half_by_arithmetic(uint16_t h) {
    int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double v;
    if (exponent == 0)
        v = ldexp(mantissa, -24);
    else if (exponent == 31)
        v = mantissa ? NAN : INFINITY;
    else
        v = ldexp(mantissa + 1024, exponent - 25);
    return (float)(sign ? -v : v);
}

/* Equal as values, with every NaN equal to every NaN and -0 distinct from +0. */
static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

#define FUZZ_TARGET "fuzz_npy"
#include "fuzz_check.h"

/* Everything a successful parse promises, checked against the input bytes. */
static void check_array(const npy_array *a, const uint8_t *data, size_t size) {
    CHECK(a->ndim >= 0 && a->ndim <= NPY_MAX_DIMS);
    CHECK(a->data != NULL);
    size_t esize = npy_dtype_size(a->dtype);
    CHECK(esize != 0);
    CHECK(strcmp(npy_dtype_name(a->dtype), "unknown") != 0);
    /* The product in 128 bits, so that an overflow in the parser cannot hide behind one here. */
    unsigned __int128 product = 1;
    for (int d = 0; d < a->ndim; ++d) {
        product *= a->shape[d];
        if (product > SIZE_MAX) product = (unsigned __int128)SIZE_MAX + 1; /* saturate; only 0 can follow */
    }
    CHECK(product == a->count);
    /* The data is the tail of the file, exactly. */
    unsigned __int128 bytes = (unsigned __int128)a->count * esize;
    CHECK(bytes <= size);
    CHECK(memcmp(a->data, data + size - (size_t)bytes, (size_t)bytes) == 0);

    char err[128] = "";
    float *f = npy_to_f32(a, err, sizeof err);
    if (a->dtype != NPY_F32 && a->dtype != NPY_F16 && a->dtype != NPY_F64) {
        CHECK(f == NULL);
        CHECK(err[0] != '\0');
        return;
    }
    CHECK(f != NULL);
    const unsigned char *src = a->data;
    for (size_t i = 0; i < a->count; ++i) {
        float want;
        if (a->dtype == NPY_F32) {
            memcpy(&want, src + 4 * i, 4);
        } else if (a->dtype == NPY_F16) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            want = half_by_arithmetic(h);
        } else {
            double d;
            memcpy(&d, src + 8 * i, 8);
            want = (float)d;
        }
        CHECK(same_float(f[i], want));
    }
    free(f);
}

static void same_arrays(const npy_array *a, const npy_array *b) {
    CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->count == b->count);
    CHECK(memcmp(a->shape, b->shape, sizeof a->shape) == 0);
    CHECK(memcmp(a->data, b->data, a->count * npy_dtype_size(a->dtype)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    npy_array a;
    char err[256] = "";
    int rc = npy_parse(data, size, &a, err, sizeof err);
    if (rc == 0) {
        check_array(&a, data, size);
    } else {
        CHECK(rc == -1);
        CHECK(a.data == NULL);
        CHECK(err[0] != '\0');
    }

    /* The error paths with no message buffer and with one too small for the message. */
    npy_array b;
    char tiny[4] = {'x', 'x', 'x', 'x'};
    CHECK(npy_parse(data, size, &b, NULL, 0) == rc);
    npy_free(&b);
    CHECK(npy_parse(data, size, &b, tiny, sizeof tiny) == rc);
    CHECK(rc == 0 || tiny[sizeof tiny - 1] == '\0'); /* truncated, but still a string */
    npy_free(&b);

    /* The same bytes as a file. */
    CHECK(ftruncate(file_fd, 0) == 0);
    CHECK(size == 0 || pwrite(file_fd, data, size, 0) == (ssize_t)size);
    npy_array c;
    int file_rc = npy_read(file_path, &c, err, sizeof err);
    CHECK(file_rc == rc);
    if (rc == 0) same_arrays(&a, &c);
    npy_free(&c);

    npy_free(&a);
    npy_free(&a); /* freeing twice is documented as safe */
    return 0;
}
