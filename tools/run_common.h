/* Pieces shared by the `clattn run` commands (sdpa, mha, additive/luong) and the inputs of `clattn bench`: seeded
 * random values, size lists, the --mask and --key-lengths loaders, device buffers in a storage dtype, .npy outputs
 * and the comparison of an output with the double-precision reference. Each command keeps its own option checks
 * and messages; what is here is the part that is the same logic everywhere. */
#ifndef CLATTN_RUN_COMMON_H
#define CLATTN_RUN_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "npy.h"

/* The next value in [-2, 2) of the seeded sequence every command draws its random inputs from (a 32-bit LCG), so
 * that the same seed gives the same inputs in run, bench and the tests that reproduce them. */
float run_random(unsigned *seed);

/* `n` random values times `scale`, each rounded to storage type `dt` (so that a host copy is exactly what the
 * device holds); NULL when out of memory. */
float *run_random_array(size_t n, float scale, clattn_dtype dt, unsigned *seed);

/* Rounds `n` floats in place to what they are after a round trip through storage type `dt`. */
void run_round_to_dtype(float *x, size_t n, clattn_dtype dt);

/* Parses exactly `n` comma-separated sizes, each at most `max`, into out. Returns 0, or -1 on anything else. */
int run_parse_sizes(const char *text, size_t *out, int n, unsigned long long max);

/* A --mask array: float additive (converted from float32/16/64) or bool (bool or uint8), with its shape padded to
 * four dimensions. The caller validates the shape in `check`, which sees the array as read and fills shape[4]
 * (pre-filled with the dimensions padded on the left with ones, or all ones beyond 4-D); it prints its own message
 * and returns the exit code, or CLI_OK to go on. */
typedef struct run_mask {
    float *additive;
    uint8_t *bool_mask;
    size_t shape[4];
} run_mask;
typedef int (*run_mask_check_fn)(void *user, const char *path, const npy_array *a, size_t shape[4]);
int run_load_mask(const char *cmd, const char *path, run_mask_check_fn check, void *user, run_mask *m);

/* A --key-lengths array: int32 or int64 [batch], each in 0..kv_len, into a new int32 array. `split_messages`
 * reports a wrong shape and a wrong dtype separately (run sdpa's wording) rather than in one message. */
int run_load_key_lengths(const char *cmd, const char *path, size_t batch, size_t kv_len, bool split_messages,
                         int32_t **out);

/* A device buffer of `bytes` (at least 4: OpenCL has no empty buffers) holding a copy of `host`, or uninitialised
 * when host is NULL. NULL on failure, with the OpenCL error in *err when err is not NULL. */
cl_mem run_buffer(clattn_context *ctx, const void *host, size_t bytes, cl_int *err);

/* A device buffer of `n` elements of storage type `dt`, converted from the floats of `host` (or uninitialised). */
cl_mem run_buffer_storage(clattn_context *ctx, const float *host, size_t n, clattn_dtype dt, cl_int *err);

/* Reads `n` elements of storage type `dt` back into floats (blocking). Returns the OpenCL status. */
cl_int run_read_storage(clattn_context *ctx, cl_mem buffer, float *host, size_t n, clattn_dtype dt);

/* Writes a float32 .npy file; prints "writing <what> to <path>: ..." under `cmd` on failure. */
int run_write_npy(const char *cmd, const char *path, const char *what, int ndim, const size_t *shape,
                  const float *data);

/* The largest difference between `got` and the reference, absolute or relative to max(1, |ref|); a NaN on one side
 * only counts as infinitely wrong, a NaN on both as agreement. *ref_max (if not NULL) receives the largest finite
 * |ref|. */
double run_max_error(const float *got, const double *ref, size_t n, bool relative, double *ref_max);

#endif
