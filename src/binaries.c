// SPDX-License-Identifier: Apache-2.0
/* Prebuilt program binaries, for devices that cannot compile OpenCL C at run time (FPGAs, some accelerators) and
 * for contexts whose owner turned compilation off.
 *
 * A binary directory holds one file per program, in the disk cache's entry format (disk_cache.c) and named the same
 * way, by the hash of the program's key (program.c: source hash, build options, platform, device, driver). The key
 * is stored in the file and compared in full, and the binary carries a checksum, so a file renamed, truncated,
 * built for another device or planted by someone else is refused before the driver ever sees it. Unlike the cache,
 * the directory belongs to the user: a bad file is an error to report, never deleted. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool env_says_never(const char *v) {
    return strcmp(v, "0") == 0 || strcmp(v, "never") == 0 || strcmp(v, "off") == 0 || strcmp(v, "false") == 0;
}

clattn_status cla_binaries_setup(clattn_context *ctx, const clattn_context_options *o, const cla_env *e) {
    const char *dir = o && o->binary_dir && *o->binary_dir ? o->binary_dir : e->binary_dir;
    if (dir && *dir) {
        ctx->binary_dir = cla_strdup(dir);
        if (!ctx->binary_dir) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    ctx->compile_policy = o && o->compile == CLATTN_COMPILE_NEVER ? CLATTN_COMPILE_NEVER : CLATTN_COMPILE_AUTO;
    const char *env = e->compile;
    if (ctx->compile_policy == CLATTN_COMPILE_AUTO && env) {
        if (env_says_never(env))
            ctx->compile_policy = CLATTN_COMPILE_NEVER;
        else if (strcmp(env, "1") != 0 && strcmp(env, "auto") != 0)
            cla_log(ctx, CLATTN_LOG_WARNING, "CLATTN_COMPILE='%s' is neither 0 (never compile) nor auto; ignored",
                    env);
    }
    return CLATTN_SUCCESS;
}

bool cla_binaries_required(const clattn_context *ctx) {
    return ctx->compile_policy == CLATTN_COMPILE_NEVER || !ctx->info.compiler_available;
}

char *cla_binary_path(const char *dir, const char *key) {
    char name[CLA_ENTRY_NAME_SIZE];
    cla_entry_file_name(key, name);
    size_t n = strlen(dir) + sizeof name + 1;
    char *path = malloc(n);
    if (path) snprintf(path, n, "%s/%s", dir, name);
    return path;
}

/* Why this context does not compile, for the message of a missing binary. */
static const char *no_compile_reason(const clattn_context *ctx) {
    if (!ctx->info.compiler_available) return "reports no OpenCL compiler";
    return "has source compilation turned off (CLATTN_COMPILE=0 or clattn_context_options.compile)";
}

static clattn_status missing(clattn_context *ctx, const char *source_name, const char *full_options,
                             const char *path) {
    if (!cla_binaries_required(ctx)) return CLATTN_SUCCESS; /* an accelerator that can compile: build it */
    if (!ctx->binary_dir)
        return cla_fail(ctx, CLATTN_ERROR_NO_COMPILER,
                        "device '%s' %s, and no binary directory is set (CLATTN_BINARY_DIR or "
                        "clattn_context_options.binary_dir), so program kernels_cl/%s.cl with options '%s' cannot "
                        "be had. Write the programs with 'clattn kernels export --device SPEC --out DIR' (add "
                        "--build where the device can compile, or compile the exported sources offline and run "
                        "'clattn kernels pack') and point CLATTN_BINARY_DIR at DIR.",
                        ctx->info.name, no_compile_reason(ctx), source_name, full_options);
    return cla_fail(ctx, CLATTN_ERROR_NO_COMPILER,
                    "device '%s' %s, and the prebuilt binary of program kernels_cl/%s.cl with options '%s' is "
                    "missing: looked for %s. Write it with 'clattn kernels export --device SPEC --out %s --build' "
                    "(where the device can compile), or compile the exported sources offline and run 'clattn "
                    "kernels pack'; the export's manifest.json lists every program a configuration needs.",
                    ctx->info.name, no_compile_reason(ctx), source_name, full_options, path, ctx->binary_dir);
}

clattn_status cla_binary_load(clattn_context *ctx, const char *source_name, const char *full_options,
                              const char *key, cl_program *program) {
    *program = NULL;
    if (!ctx->binary_dir) return missing(ctx, source_name, full_options, NULL);
    char *path = cla_binary_path(ctx->binary_dir, key);
    CLA_FAIL_ON(!path, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                "out of host memory loading the binary of program "
                "kernels_cl/%s.cl",
                source_name);
    unsigned char *bin = NULL;
    size_t size = 0;
    bool absent = false;
    const char *problem = cla_entry_read(path, key, &bin, &size, &absent);
    clattn_status st = CLATTN_SUCCESS;
    if (problem && absent) {
        st = missing(ctx, source_name, full_options, path);
    } else if (problem) {
        st = cla_fail(ctx, CLATTN_ERROR_INVALID_BINARY,
                      "prebuilt binary %s for program kernels_cl/%s.cl with options '%s' on device '%s' cannot be "
                      "used: %s. Rewrite it with 'clattn kernels export --build' or 'clattn kernels pack' for this "
                      "device and this clattn version.",
                      path, source_name, full_options, ctx->info.name, problem);
    } else {
        /* One binary serves every device of the context (they are one model). */
        cl_int err = CL_SUCCESS;
        const char *step = NULL;
        char *log = NULL;
        cl_program prog = cla_program_from_binary(ctx, bin, size, full_options, &err, &step, &log);
        if (err == CL_SUCCESS) {
            *program = prog;
            ctx->stats.binary_loads++;
        } else {
            st = cla_fail(ctx, CLATTN_ERROR_INVALID_BINARY,
                          "the driver rejected prebuilt binary %s (program kernels_cl/%s.cl, options '%s') on "
                          "device '%s': %s returned %d %s",
                          path, source_name, full_options, ctx->info.name, step, err, cla_cl_error_text(err));
            if (log && *log) {
                cla_append_error(ctx, "\ndriver log:\n");
                cla_append_error(ctx, log);
            }
            free(log);
        }
    }
    if (st == CLATTN_ERROR_INVALID_BINARY && !cla_binaries_required(ctx)) {
        /* An accelerator that can compile builds from source instead, but says why its binary was passed over. */
        cla_log(ctx, CLATTN_LOG_WARNING, "%s; compiling from source instead", clattn_context_last_error(ctx));
        st = CLATTN_SUCCESS;
    }
    free(bin);
    free(path);
    return st;
}

clattn_status clattn_binary_write(const char *dir, const char *key, const void *binary, size_t size, char *message,
                                  size_t message_size) {
    if (!dir || !key || (!binary && size)) {
        cla_write_message(message, message_size, "%s: dir, key or binary is NULL", __func__);
        return CLATTN_ERROR_NULL_POINTER;
    }
    char *path = cla_binary_path(dir, key);
    if (!path) {
        cla_write_message(message, message_size, "%s: out of host memory", __func__);
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    /* The path's own address keeps concurrent writers' temporary names apart. */
    int err = cla_entry_write(path, key, binary, size, path);
    if (err)
        cla_write_message(message, message_size,
                          "%s: cannot write %s: %s; check that the directory exists and is "
                          "writable",
                          __func__, path, strerror(err));
    free(path);
    return err ? CLATTN_ERROR_IO : CLATTN_SUCCESS;
}
