/* Shared pieces of the `clattn run` and `clattn bench` commands (see run_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "run_common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dtype.h"

float run_random(unsigned *seed) {
    *seed = *seed * 1664525u + 1013904223u;
    return ((float)(*seed >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

float *run_random_array(size_t n, float scale, clattn_dtype dt, unsigned *seed) {
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; ++i) x[i] = cla_round_to_dtype(run_random(seed) * scale, dt);
    return x;
}

void run_round_to_dtype(float *x, size_t n, clattn_dtype dt) {
    for (size_t i = 0; i < n; ++i) x[i] = cla_round_to_dtype(x[i], dt);
}

int run_parse_sizes(const char *text, size_t *out, int n, unsigned long long max) {
    const char *p = text;
    for (int i = 0; i < n; ++i) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v > max) return -1;
        out[i] = (size_t)v;
        if (*end != (i + 1 < n ? ',' : '\0')) return -1;
        p = end + 1;
    }
    return 0;
}

int run_load_mask(const char *cmd, const char *path, run_mask_check_fn check, void *user, run_mask *m) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0) return cli_error(cmd, CLI_USAGE, "--mask %s: %s", path, err);
    for (int i = 0; i < 4; ++i) m->shape[i] = 1;
    for (int i = 0; i < a.ndim && a.ndim <= 4; ++i) m->shape[4 - a.ndim + i] = a.shape[i];
    int rc = check(user, path, &a, m->shape);
    if (rc == CLI_OK && (a.dtype == NPY_BOOL || a.dtype == NPY_U8)) {
        m->bool_mask = malloc(a.count + 1);
        if (m->bool_mask)
            memcpy(m->bool_mask, a.data, a.count);
        else
            rc = cli_error(cmd, CLI_FAILED, "out of host memory");
    } else if (rc == CLI_OK && !(m->additive = npy_to_f32(&a, err, sizeof err))) {
        rc = cli_error(cmd, CLI_USAGE, "--mask %s: %s (use float32 additive or bool)", path, err);
    }
    npy_free(&a);
    return rc;
}

int run_load_key_lengths(const char *cmd, const char *path, size_t batch, size_t kv_len, bool split_messages,
                         int32_t **out) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0)
        return cli_error(cmd, CLI_USAGE, "--key-lengths %s: %s", path, err);
    int rc = CLI_OK;
    const bool shape_ok = a.ndim == 1 && a.shape[0] == batch, dtype_ok = a.dtype == NPY_I32 || a.dtype == NPY_I64;
    if (split_messages && !shape_ok)
        rc = cli_error(cmd, CLI_USAGE, "--key-lengths %s: expected shape [%zu] (one length per batch item)", path,
                       batch);
    else if (split_messages && !dtype_ok)
        rc = cli_error(cmd, CLI_USAGE, "--key-lengths %s: expected int32 or int64, found %s", path,
                       npy_dtype_name(a.dtype));
    else if (!shape_ok || !dtype_ok)
        rc = cli_error(cmd, CLI_USAGE, "--key-lengths %s: expected int32 or int64 of shape [%zu]", path, batch);
    else if (!(*out = malloc((batch + 1) * sizeof **out)))
        rc = cli_error(cmd, CLI_FAILED, "out of host memory");
    for (size_t b = 0; rc == CLI_OK && b < batch; ++b) {
        int64_t x = a.dtype == NPY_I32 ? ((const int32_t *)a.data)[b] : ((const int64_t *)a.data)[b];
        if (x < 0 || x > (int64_t)kv_len)
            rc = cli_error(cmd, CLI_USAGE, "--key-lengths %s: value %lld at %zu is outside 0..%zu", path,
                           (long long)x, b, kv_len);
        else
            (*out)[b] = (int32_t)x;
    }
    npy_free(&a);
    return rc;
}

cl_mem run_buffer(clattn_context *ctx, const void *host, size_t bytes, cl_int *err) {
    cl_int e = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx),
                              CL_MEM_READ_WRITE | (host && bytes ? CL_MEM_COPY_HOST_PTR : 0), bytes ? bytes : 4,
                              host && bytes ? (void *)host : NULL, &e);
    if (err) *err = e;
    return e == CL_SUCCESS ? m : NULL;
}

cl_mem run_buffer_storage(clattn_context *ctx, const float *host, size_t n, clattn_dtype dt, cl_int *err) {
    const size_t bytes = n * clattn_dtype_size(dt);
    if (!host || dt == CLATTN_DTYPE_F32) return run_buffer(ctx, host, bytes, err);
    void *tmp = malloc(bytes + 1);
    if (!tmp) {
        if (err) *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    cla_convert_to_storage(host, tmp, n, dt);
    cl_mem m = run_buffer(ctx, tmp, bytes, err);
    free(tmp);
    return m;
}

cl_int run_read_storage(clattn_context *ctx, cl_mem buffer, float *host, size_t n, clattn_dtype dt) {
    if (n == 0) return CL_SUCCESS;
    const size_t bytes = n * clattn_dtype_size(dt);
    void *tmp = dt == CLATTN_DTYPE_F32 ? (void *)host : malloc(bytes);
    if (!tmp) return CL_OUT_OF_HOST_MEMORY;
    cl_int err = clEnqueueReadBuffer(clattn_context_cl_queue(ctx), buffer, CL_TRUE, 0, bytes, tmp, 0, NULL, NULL);
    if (tmp != host) {
        if (err == CL_SUCCESS) cla_convert_from_storage(tmp, host, n, dt);
        free(tmp);
    }
    return err;
}

int run_write_npy(const char *cmd, const char *path, const char *what, int ndim, const size_t *shape,
                  const float *data) {
    char err[512];
    if (npy_write(path, NPY_F32, ndim, shape, data, err, sizeof err) != 0)
        return cli_error(cmd, CLI_FAILED, "writing %s to %s: %s", what, path, err);
    return CLI_OK;
}

double run_max_error(const float *got, const double *ref, size_t n, bool relative, double *ref_max) {
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
