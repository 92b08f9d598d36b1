// SPDX-License-Identifier: Apache-2.0
/* Shared pieces of the `clattn run` and `clattn bench` commands (see run_common.h). */
#define _POSIX_C_SOURCE 200809L
#include "run_common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
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

/* Places a --mask of rank 1..4 among the four dimensions [B, H, Lq, Lk] as NumPy does, aligned from the right (with
 * `batch_leads`, against the three [B, Lq, Lk] of sequence tensors, whose H is 1), and applies the library's one
 * broadcasting rule (clattn_mask_broadcasts). */
static int check_mask_shape(const char *cmd, const char *path, const npy_array *a, const size_t want[4],
                            bool batch_leads, size_t shape[4]) {
    for (int i = 0; i < 4; ++i) shape[i] = 1;
    const int n = a->ndim;
    bool ok = n >= 1 && n <= 4;
    if (ok && batch_leads && n <= 3) {
        /* [B, Lq, Lk] aligned from the right, then the heads dimension of 1 put back in place. */
        for (int i = 0; i < n; ++i) shape[(4 - n + i) == 1 ? 0 : 4 - n + i] = a->shape[i];
    } else if (ok) {
        for (int i = 0; i < n; ++i) shape[4 - n + i] = a->shape[i];
    }
    if (ok && clattn_mask_broadcasts(shape, want)) return CLI_OK;
    char found[96] = "";
    for (int i = 0, at = 0; i < n && at < (int)sizeof found; ++i)
        at += snprintf(found + at, sizeof found - (size_t)at, "%s%zu", i ? ", " : "", a->shape[i]);
    if (batch_leads)
        return cli_error(
            cmd, CLI_USAGE,
            "--mask %s: shape [%s] does not broadcast to [%zu, %zu, %zu] ([B, Lq, Lk]): give rank 1 to "
            "3 (or [B, 1, Lq, Lk]), aligned from the right as in NumPy, each size 1 or the full size",
            path, found, want[0], want[2], want[3]);
    return cli_error(
        cmd, CLI_USAGE,
        "--mask %s: shape [%s] does not broadcast to [%zu, %zu, %zu, %zu] ([B, H, Lq, Lk]): give rank 1 "
        "to 4, aligned from the right as in NumPy ([Lk], [Lq, 1], [B, 1, 1, Lk], ...), each size 1 or "
        "the full size",
        path, found, want[0], want[1], want[2], want[3]);
}

size_t run_mask_strides(const size_t shape[4], size_t stride[4]) {
    size_t n = 1;
    for (int i = 3; i >= 0; --i) {
        stride[i] = n;
        n *= shape[i];
    }
    return n;
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

int run_load_block_mask(const cli_command *c, run_block_mask *m) {
    memset(m, 0, sizeof *m);
    m->bq = m->bk = 128;
    const char *path = cli_value(c, "block-mask"), *sizes = cli_value(c, "block-size");
    if (!path) {
        if (sizes) return cli_error(c->name, CLI_USAGE, "--block-size goes with --block-mask");
        return CLI_OK;
    }
    char err[512];
    npy_array *a = &m->array;
    if (npy_read(path, a, err, sizeof err) != 0)
        return cli_error(c->name, CLI_USAGE, "--block-mask %s: %s", path, err);
    if (a->dtype != NPY_I32 || a->ndim < 1 || a->ndim > 4)
        return cli_error(c->name, CLI_USAGE, "--block-mask %s: expected a 1-D to 4-D int32 array, found %d-D %s",
                         path, a->ndim, npy_dtype_name(a->dtype));
    for (int i = 0; i < 4; ++i) m->shape[i] = 1;
    for (int i = 0; i < a->ndim; ++i) m->shape[4 - a->ndim + i] = a->shape[i];
    if (sizes) {
        size_t s[2];
        if (run_parse_sizes(sizes, s, 2, 1ull << 28) == 0) {
            m->bq = s[0];
            m->bk = s[1];
        } else if (run_parse_sizes(sizes, s, 1, 1ull << 28) == 0) {
            m->bq = m->bk = s[0];
        } else {
            return cli_error(c->name, CLI_USAGE, "--block-size %s: expected BQ or BQ,BK (positive sizes)", sizes);
        }
    }
    return CLI_OK;
}

int run_load_mod_buffers(const char *cmd, const char *spec, run_mod_buffers *m) {
    memset(m, 0, sizeof *m);
    m->spec = malloc(strlen(spec) + 1);
    if (!m->spec) return cli_error(cmd, CLI_FAILED, "out of host memory");
    strcpy(m->spec, spec);
    char *rest = m->spec;
    while (rest && *rest) {
        char *next = strchr(rest, ',');
        if (next) *next++ = '\0';
        char *eq = strchr(rest, '=');
        if (m->count >= CLATTN_MAX_MOD_BUFFERS || !eq || eq == rest || !eq[1])
            return cli_error(cmd, CLI_USAGE, "--mod-buffer %s: expected NAME=FILE.npy, at most %d, comma-separated",
                             spec, CLATTN_MAX_MOD_BUFFERS);
        *eq = '\0';
        char err[512];
        npy_array *a = &m->array[m->count];
        if (npy_read(eq + 1, a, err, sizeof err) != 0)
            return cli_error(cmd, CLI_USAGE, "--mod-buffer %s=%s: %s", rest, eq + 1, err);
        m->name[m->count++] = rest;
        if (a->dtype != NPY_F32 && a->dtype != NPY_I32)
            return cli_error(cmd, CLI_USAGE, "--mod-buffer %s=%s: expected float32 or int32, found %s", rest,
                             eq + 1, npy_dtype_name(a->dtype));
        rest = next;
    }
    return CLI_OK;
}

void run_mod_buffers_free(run_mod_buffers *m) {
    for (size_t i = 0; i < m->count; ++i) npy_free(&m->array[i]);
    free(m->spec);
    memset(m, 0, sizeof *m);
}

int run_write_npy(const char *cmd, const char *path, const char *what, int ndim, const size_t *shape,
                  const float *data) {
    char err[512];
    if (npy_write(path, NPY_F32, ndim, shape, data, err, sizeof err) != 0)
        return cli_error(cmd, CLI_FAILED, "writing %s to %s: %s", what, path, err);
    return CLI_OK;
}
