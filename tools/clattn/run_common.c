// SPDX-License-Identifier: Apache-2.0
/* Shared pieces of the `clattn run` and `clattn bench` commands (see run_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "run_common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

/* The one rule of every command's --mask (see run_load_mask). */
static int check_mask_shape(const char *cmd, const char *path, const npy_array *a, const size_t want[4],
                            bool batch_leads, size_t shape[4]) {
    for (int i = 0; i < 4; ++i) shape[i] = 1;
    for (int i = 0; i < a->ndim && a->ndim <= 4; ++i) shape[4 - a->ndim + i] = a->shape[i];
    if (a->ndim == 3 && batch_leads) {
        shape[0] = a->shape[0];
        shape[1] = 1;
    }
    bool ok = a->ndim >= 2 && a->ndim <= 4 && shape[2] == want[2] && shape[3] == want[3];
    for (int i = 0; i < 2; ++i) ok = ok && (shape[i] == 1 || shape[i] == want[i]);
    if (ok) return CLI_OK;
    return cli_error(cmd, CLI_USAGE,
                     "--mask %s: expected a shape that broadcasts to [%zu, %zu, %zu, %zu]: [Lq, Lk], %s or [B, H, "
                     "Lq, Lk] with each of B and H 1 or its size; found %d-D [%zu, %zu, %zu, %zu]",
                     path, want[0], want[1], want[2], want[3], batch_leads ? "[B, Lq, Lk]" : "[H, Lq, Lk]", a->ndim,
                     shape[0], shape[1], shape[2], shape[3]);
}

int run_load_mask(const char *cmd, const char *path, const size_t want[4], bool batch_leads, run_mask *m) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0) return cli_error(cmd, CLI_USAGE, "--mask %s: %s", path, err);
    int rc = check_mask_shape(cmd, path, &a, want, batch_leads, m->shape);
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

/* A float32 [heads] array of option `option` into a new array. */
static int load_head_values(const char *cmd, const char *option, const char *path, size_t heads, float **out) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0)
        return cli_error(cmd, CLI_USAGE, "--%s %s: %s", option, path, err);
    int rc = CLI_OK;
    if (a.ndim != 1 || a.shape[0] != heads)
        rc = cli_error(cmd, CLI_USAGE, "--%s %s: expected shape [%zu] (one value per query head)", option, path,
                       heads);
    else if (a.dtype != NPY_F32)
        rc =
            cli_error(cmd, CLI_USAGE, "--%s %s: expected float32, found %s", option, path, npy_dtype_name(a.dtype));
    else if (!(*out = malloc((heads + 1) * sizeof **out)))
        rc = cli_error(cmd, CLI_FAILED, "out of host memory");
    else
        memcpy(*out, a.data, heads * sizeof **out);
    npy_free(&a);
    return rc;
}

int run_load_score_mods(const cli_command *c, size_t heads, run_score_mods *m) {
    memset(m, 0, sizeof *m);
    const char *s;
    int rc = CLI_OK;
    if ((s = cli_value(c, "softcap"))) {
        char *end = NULL;
        errno = 0;
        const double x = strtod(s, &end);
        if (end == s || *end || errno || !(x > 0.0) || !isfinite((float)x))
            return cli_error(c->name, CLI_USAGE,
                             "--softcap %s: expected a positive finite number (Gemma 2 uses 50)", s);
        m->softcap = (float)x;
    }
    if ((s = cli_value(c, "sinks")) && (rc = load_head_values(c->name, "sinks", s, heads, &m->sinks))) return rc;
    if ((s = cli_value(c, "alibi-slopes")) &&
        (rc = load_head_values(c->name, "alibi-slopes", s, heads, &m->alibi_slopes)))
        return rc;
    return CLI_OK;
}

void run_score_mods_free(run_score_mods *m) {
    free(m->sinks);
    free(m->alibi_slopes);
    memset(m, 0, sizeof *m);
}

int run_write_npy(const char *cmd, const char *path, const char *what, int ndim, const size_t *shape,
                  const float *data) {
    char err[512];
    if (npy_write(path, NPY_F32, ndim, shape, data, err, sizeof err) != 0)
        return cli_error(cmd, CLI_FAILED, "writing %s to %s: %s", what, path, err);
    return CLI_OK;
}
