// SPDX-License-Identifier: Apache-2.0
/* Reader and writer of NumPy .npy files for the clattn command-line tool. Input files are untrusted: every size is
 * checked, every multiplication guarded, and any malformed, truncated or hostile file gives an error message. */
#ifndef CLATTN_NPY_H
#define CLATTN_NPY_H

#include <stddef.h>

#define NPY_MAX_DIMS 8

typedef enum npy_dtype { NPY_F32, NPY_F16, NPY_F64, NPY_BOOL, NPY_U8, NPY_I32, NPY_I64 } npy_dtype;

typedef struct npy_array {
    npy_dtype dtype;
    int ndim;                   /* 0..NPY_MAX_DIMS; 0 is a scalar with count 1 */
    size_t shape[NPY_MAX_DIMS]; /* C order */
    size_t count;               /* product of the shape */
    void *data;                 /* native little-endian values, malloc'd; never NULL after a successful read */
} npy_array;

/* Parses a whole .npy file held in memory. Returns 0, or -1 with a message in `err` (which may be NULL). On failure
 * `*out` is left empty (data NULL), so npy_free() is always safe. */
int npy_parse(const void *bytes, size_t size, npy_array *out, char *err, size_t err_size);

/* Reads a .npy file; error messages start with the path. */
int npy_read(const char *path, npy_array *out, char *err, size_t err_size);

/* Writes `data` (count = product of shape elements of `dtype`, little-endian) as a version 1.0 .npy file. The file
 * is written under a temporary name in the same directory and renamed into place, so a failure never leaves a
 * partial output, and an existing file is replaced whole or not at all. */
int npy_write(const char *path, npy_dtype dtype, int ndim, const size_t *shape, const void *data, char *err,
              size_t err_size);

/* A malloc'd float32 copy of an F32, F16 or F64 array (F64 rounds to nearest, out of range becomes inf). Other
 * dtypes, and allocation failure, give NULL and a message. */
float *npy_to_f32(const npy_array *a, char *err, size_t err_size);

/* Frees the data and empties the array; accepts NULL and already-freed arrays. */
void npy_free(npy_array *a);

/* "float32", "float16", "float64", "bool", "uint8", "int32", "int64", or "unknown". */
const char *npy_dtype_name(npy_dtype dtype);

/* Bytes per element, 0 for an unknown dtype. */
size_t npy_dtype_size(npy_dtype dtype);

#endif /* CLATTN_NPY_H */
