// SPDX-License-Identifier: Apache-2.0
/* Kernel sources: the copies of kernels_cl/ embedded at build time, or files from CLATTN_KERNEL_DIR during kernel
 * development. Every program is the shared prelude (common.cl) followed by its own file. */
#include "internal.h"
#include "kernels_embedded.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const *cla_source_names(void) {
    return cla_embedded_kernel_names;
}

static const cla_embedded_kernel *find_embedded(const char *name) {
    for (size_t i = 0; i < cla_embedded_kernel_count; ++i)
        if (strcmp(cla_embedded_kernels[i].name, name) == 0) return &cla_embedded_kernels[i];
    return NULL;
}

/* Reads <dir>/<name>.cl into a malloc'd buffer. */
static clattn_status read_from_dir(clattn_context *ctx, const char *dir, const char *name, char **text,
                                   size_t *length) {
    size_t need = strlen(dir) + strlen(name) + 5;
    char *path = malloc(need);
    CLA_FAIL_ON(!path, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory loading kernel source '%s'", name);
    snprintf(path, need, "%s/%s.cl", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        clattn_status st = cla_fail(ctx, CLATTN_ERROR_KERNEL_NOT_FOUND,
                                    "kernel source '%s' not found (CLATTN_KERNEL_DIR is set, so clattn looked for "
                                    "%s). Unset CLATTN_KERNEL_DIR to use the embedded kernels.",
                                    name, path);
        free(path);
        return st;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                clattn_status st = cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                                            "out of host memory reading kernel source %s", path);
                free(path);
                return st;
            }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        free(buf);
        clattn_status st = cla_fail(ctx, CLATTN_ERROR_IO,
                                    "reading kernel source %s failed; check the file and "
                                    "CLATTN_KERNEL_DIR",
                                    path);
        free(path);
        return st;
    }
    free(path);
    buf[len] = '\0';
    *text = buf;
    *length = len;
    return CLATTN_SUCCESS;
}

static clattn_status load_one(clattn_context *ctx, const char *name, char **text, size_t *length) {
    if (ctx->kernel_dir) return read_from_dir(ctx, ctx->kernel_dir, name, text, length);
    const cla_embedded_kernel *k = find_embedded(name);
    CLA_FAIL_ON(!k, ctx, CLATTN_ERROR_KERNEL_NOT_FOUND, "no kernel source named '%s' is built in", name);
    char *buf = malloc(k->size + 1);
    CLA_FAIL_ON(!buf, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory loading kernel source '%s'", name);
    memcpy(buf, k->data, k->size);
    buf[k->size] = '\0';
    *text = buf;
    *length = k->size;
    return CLATTN_SUCCESS;
}

clattn_status cla_source_load(clattn_context *ctx, const char *name, char **text, size_t *length) {
    char *prelude = NULL, *body = NULL;
    size_t plen = 0, blen = 0;
    clattn_status st = load_one(ctx, "common", &prelude, &plen);
    if (st == CLATTN_SUCCESS && strcmp(name, "common") != 0) st = load_one(ctx, name, &body, &blen);
    if (st != CLATTN_SUCCESS) {
        free(prelude);
        return st;
    }
    if (!body) {
        *text = prelude;
        *length = plen;
        return CLATTN_SUCCESS;
    }
    /* The #line directive keeps compiler messages pointing at the right line of the kernel's own file. */
    char line[300];
    int ln = snprintf(line, sizeof line, "\n#line 1 \"%s.cl\"\n", name);
    size_t total = plen + (size_t)ln + blen;
    char *all = malloc(total + 1);
    if (!all) {
        free(prelude);
        free(body);
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    memcpy(all, prelude, plen);
    memcpy(all + plen, line, (size_t)ln);
    memcpy(all + plen + ln, body, blen);
    all[total] = '\0';
    free(prelude);
    free(body);
    *text = all;
    *length = total;
    return CLATTN_SUCCESS;
}
