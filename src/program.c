// SPDX-License-Identifier: Apache-2.0
/* Kernel programs: build options, the per-context memory cache, the disk cache, prebuilt binaries (binaries.c),
 * builds from source with their logs turned into readable errors, and the recording of the programs an operation
 * needs (for `clattn kernels export`). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bumped whenever the way programs are built changes in a way the key does not otherwise capture. */
#define PROGRAM_KEY_VERSION "clattn-program-key 1"

static cla_program_entry *find_program(clattn_context *ctx, const char *source_name, const char *prefix,
                                       const char *options) {
    for (size_t i = 0; i < ctx->program_count; ++i) {
        cla_program_entry *e = &ctx->programs[i];
        if (strcmp(e->source_name, source_name) == 0 && strcmp(e->options, options) == 0 &&
            strcmp(e->prefix ? e->prefix : "", prefix ? prefix : "") == 0)
            return e;
    }
    return NULL;
}

/* Options every program gets, ahead of the operation's own defines. */
static const char *base_options(const clattn_context *ctx) {
    /* OpenCL C 1.2 is what the kernels are written in; a 1.1-only device gets its default dialect. */
    if (strstr(ctx->info.opencl_c_version, "OpenCL C 1.0") || strstr(ctx->info.opencl_c_version, "OpenCL C 1.1"))
        return "";
    return "-cl-std=CL1.2";
}

/* base, then the operation's options, then CLATTN_BUILD_OPTIONS (for debugging: -g, -cl-opt-disable, ...). */
static char *concat_options(const clattn_context *ctx, const char *ops) {
    const char *a = base_options(ctx);
    const char *extra = ctx->extra_build_options ? ctx->extra_build_options : "";
    size_t n = strlen(a) + strlen(ops) + strlen(extra) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s%s", a, (*a && *ops) ? " " : "", ops, *extra ? " " : "", extra);
    return s;
}

/* The disk-cache key: everything the compiled binary depends on. */
static char *make_key(const clattn_context *ctx, const char *source_name, const char *source, size_t source_len,
                      const char *options) {
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_bytes(&h, source, source_len);
    char hex[33];
    cla_hash_hex(&h, hex);
    const char *fmt = "%s\nclattn %s\nsource %s %s\noptions %s\nplatform %s\nplatform-version %s\ndevice %s\n"
                      "device-version %s\ndriver %s\n";
    const clattn_device_info *i = &ctx->info;
    int n = snprintf(NULL, 0, fmt, PROGRAM_KEY_VERSION, CLATTN_VERSION_STRING, source_name, hex, options,
                     i->platform_name, i->platform_version, i->name, i->device_version, i->driver_version);
    if (n < 0) return NULL;
    char *key = malloc((size_t)n + 1);
    if (key)
        snprintf(key, (size_t)n + 1, fmt, PROGRAM_KEY_VERSION, CLATTN_VERSION_STRING, source_name, hex, options,
                 i->platform_name, i->platform_version, i->name, i->device_version, i->driver_version);
    return key;
}

char *cla_build_log(const clattn_context *ctx, cl_program program) {
    size_t size = 0;
    /* The size bound keeps a driver's runaway log (or a hostile binary's) from taking the host's memory. */
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) != CL_SUCCESS ||
        size > (64u << 20))
        return NULL;
    char *log = malloc(size + 1);
    if (!log) return NULL;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log, NULL) != CL_SUCCESS) size = 0;
    log[size] = '\0';
    return log;
}

/* The device binary of a built program (malloc'd), or NULL if the driver does not give one. A program of a
 * multi-device context has one binary per device, all of one model: the primary device's serves them all. */
static unsigned char *program_binary(const clattn_context *ctx, cl_program program, size_t *size) {
    const size_t n = ctx->device_count ? ctx->device_count : 1;
    size_t *sizes = calloc(n, sizeof *sizes);
    unsigned char **ptrs = calloc(n, sizeof *ptrs);
    unsigned char *bin = NULL;
    bool ok = sizes && ptrs &&
              clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, n * sizeof *sizes, sizes, NULL) == CL_SUCCESS &&
              sizes[0] > 0;
    /* Room for every device's copy: the spec lets NULL entries skip a device, but PoCL 3.1 writes through them. */
    for (size_t i = 0; ok && i < n; ++i) ok = (ptrs[i] = malloc(sizes[i] ? sizes[i] : 1)) != NULL;
    if (ok && clGetProgramInfo(program, CL_PROGRAM_BINARIES, n * sizeof *ptrs, ptrs, NULL) == CL_SUCCESS) {
        bin = ptrs[0];
        ptrs[0] = NULL;
        *size = sizes[0];
    }
    for (size_t i = 0; ptrs && i < n; ++i) free(ptrs[i]);
    free(sizes);
    free(ptrs);
    return bin;
}

cl_program cla_program_from_binary(clattn_context *ctx, const unsigned char *binary, size_t size,
                                   const char *options, cl_int *err, const char **step, char **log) {
    const size_t n = ctx->device_count;
    size_t *sizes = calloc(n, sizeof *sizes);
    const unsigned char **bins = calloc(n, sizeof *bins);
    cl_int *bin_status = calloc(n, sizeof *bin_status);
    cl_program program = NULL;
    *step = "clCreateProgramWithBinary";
    *err = CL_OUT_OF_HOST_MEMORY;
    if (sizes && bins && bin_status) {
        for (size_t i = 0; i < n; ++i) {
            sizes[i] = size;
            bins[i] = binary;
        }
        program = clCreateProgramWithBinary(ctx->cl_ctx, (cl_uint)n, ctx->devices, sizes, bins, bin_status, err);
        for (size_t i = 0; i < n && *err == CL_SUCCESS; ++i)
            if (bin_status[i] != CL_SUCCESS) *err = bin_status[i];
        if (*err == CL_SUCCESS) {
            *step = "clBuildProgram";
            *err = clBuildProgram(program, (cl_uint)n, ctx->devices, options, NULL, NULL);
        }
    }
    free(sizes);
    free(bins);
    free(bin_status);
    if (*err == CL_SUCCESS) return program;
    if (log) *log = program ? cla_build_log(ctx, program) : NULL;
    if (program) clReleaseProgram(program);
    return NULL;
}

/* Tries the disk cache; returns a built program or NULL (a bad entry counts as a reject and is removed). */
static cl_program load_cached(clattn_context *ctx, const char *key, const char *options) {
    unsigned char *bin = NULL;
    size_t size = 0;
    if (!cla_disk_cache_read(ctx, key, &bin, &size)) return NULL;
    cl_int err = CL_SUCCESS;
    const char *step = NULL;
    cl_program program = cla_program_from_binary(ctx, bin, size, options, &err, &step, NULL);
    free(bin);
    if (program) return program;
    cla_log(ctx, CLATTN_LOG_WARNING, "cached program binary rejected by the driver (%d %s); rebuilding from source",
            err, cla_cl_error_text(err));
    ctx->stats.disk_rejects++;
    char *path = cla_disk_cache_path(ctx, key);
    if (path) remove(path);
    free(path);
    return NULL;
}

static clattn_status build_from_source(clattn_context *ctx, const char *source_name, const char *source,
                                       size_t source_len, const char *options, cl_program *out) {
    if (!ctx->info.compiler_available)
        return cla_fail(ctx, CLATTN_ERROR_NO_COMPILER,
                        "device '%s' has no OpenCL compiler and kernel '%s' is not in the binary cache; build it "
                        "offline for this device",
                        ctx->info.name, source_name);
    cl_int err = CL_SUCCESS;
    const char *srcs[1] = {source};
    cl_program program = clCreateProgramWithSource(ctx->cl_ctx, 1, srcs, &source_len, &err);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "clCreateProgramWithSource failed for kernel '%s' on '%s': %d %s", source_name,
                        ctx->info.name, err, cla_cl_error_text(err));
    err = clBuildProgram(program, (cl_uint)ctx->device_count, ctx->devices, options, NULL, NULL);
    ctx->stats.builds++;
    if (err != CL_SUCCESS) {
        char *log = cla_build_log(ctx, program);
        clReleaseProgram(program);
        clattn_status st =
            err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS ? CLATTN_ERROR_BUILD_FAILED : err;
        cla_fail(ctx, st, "kernel '%s' failed to build for device '%s' (%s) with options '%s': %d %s\nbuild log:\n",
                 source_name, ctx->info.name, ctx->info.platform_name, options, err, cla_cl_error_text(err));
        cla_append_error(ctx, log && *log ? log : "(the driver gave no build log)");
        free(log);
        return st;
    }
    *out = program;
    return CLATTN_SUCCESS;
}

static clattn_status remember(clattn_context *ctx, const char *source_name, const char *prefix, const char *options,
                              cl_program program) {
    cla_program_entry *grown =
        cla_grow(ctx->programs, &ctx->program_capacity, ctx->program_count, sizeof *grown, 8);
    if (!grown) return CLATTN_ERROR_OUT_OF_HOST_MEMORY; /* cla_program_get's message names the program */
    ctx->programs = grown;
    cla_program_entry *e = &ctx->programs[ctx->program_count];
    memset(e, 0, sizeof *e);
    e->source_name = cla_strdup(source_name);
    e->options = cla_strdup(options);
    e->prefix = prefix ? cla_strdup(prefix) : NULL;
    if (!e->source_name || !e->options || (prefix && !e->prefix)) {
        free(e->source_name);
        free(e->options);
        free(e->prefix);
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    e->program = program;
    ctx->program_count++;
    return CLATTN_SUCCESS;
}

char *cla_program_full_options(const clattn_context *ctx, const char *options) {
    return concat_options(ctx, options ? options : "");
}

void cla_program_record_begin(clattn_context *ctx) {
    cla_program_record_end(ctx);
    ctx->recording = true;
}

const cla_recorded_program *cla_program_recorded(const clattn_context *ctx, size_t *count) {
    *count = ctx->recorded_count;
    return ctx->recorded;
}

void cla_program_record_end(clattn_context *ctx) {
    for (size_t i = 0; i < ctx->recorded_count; ++i) {
        free(ctx->recorded[i].source_name);
        free(ctx->recorded[i].options);
        free(ctx->recorded[i].prefix);
    }
    free(ctx->recorded);
    ctx->recorded = NULL;
    ctx->recorded_count = 0;
    ctx->recording = false;
}

/* Notes a program once; the list keeps the order in which operations first asked for them. */
static clattn_status record(clattn_context *ctx, const char *source_name, const char *prefix, const char *options) {
    for (size_t i = 0; i < ctx->recorded_count; ++i)
        if (strcmp(ctx->recorded[i].source_name, source_name) == 0 &&
            strcmp(ctx->recorded[i].options, options) == 0 &&
            strcmp(ctx->recorded[i].prefix ? ctx->recorded[i].prefix : "", prefix ? prefix : "") == 0)
            return CLATTN_SUCCESS;
    cla_recorded_program *grown = realloc(ctx->recorded, (ctx->recorded_count + 1) * sizeof *grown);
    if (!grown) return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory recording programs");
    ctx->recorded = grown;
    cla_recorded_program *r = &grown[ctx->recorded_count];
    r->source_name = cla_strdup(source_name);
    r->options = cla_strdup(options);
    r->prefix = prefix ? cla_strdup(prefix) : NULL;
    if (!r->source_name || !r->options || (prefix && !r->prefix)) {
        free(r->source_name);
        free(r->options);
        free(r->prefix);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory recording programs");
    }
    ctx->recorded_count++;
    return CLATTN_SUCCESS;
}

char *cla_program_cache_key(clattn_context *ctx, const char *source_name, const char *options) {
    char *source = NULL;
    size_t source_len = 0;
    if (cla_source_load(ctx, source_name, &source, &source_len) != CLATTN_SUCCESS) return NULL;
    char *full = concat_options(ctx, options ? options : "");
    char *key = full ? make_key(ctx, source_name, source, source_len, full) : NULL;
    free(source);
    free(full);
    return key;
}

/* The source with the caller's prefix ahead of it; common.cl's lines then count from 1 again. */
static clattn_status add_prefix(const char *prefix, char **source, size_t *source_len) {
    static const char reset[] = "\n#line 1 \"common.cl\"\n";
    const size_t plen = strlen(prefix), rlen = sizeof reset - 1;
    char *all = malloc(plen + rlen + *source_len + 1);
    if (!all) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    memcpy(all, prefix, plen);
    memcpy(all + plen, reset, rlen);
    memcpy(all + plen + rlen, *source, *source_len + 1);
    free(*source);
    *source = all;
    *source_len += plen + rlen;
    return CLATTN_SUCCESS;
}

clattn_status cla_program_get(clattn_context *ctx, const char *source_name, const char *options,
                              cl_program *program) {
    return cla_program_get_prefixed(ctx, source_name, NULL, options, program);
}

clattn_status cla_program_get_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                       const char *options, cl_program *program) {
    if (!options) options = "";
    cla_program_entry *hit = find_program(ctx, source_name, prefix, options);
    if (hit) {
        ctx->stats.memory_hits++;
        *program = hit->program;
        return CLATTN_SUCCESS;
    }
    if (ctx->recording) {
        *program = NULL;
        return record(ctx, source_name, prefix, options);
    }
    if (ctx->has_target)
        return cla_fail(
            ctx, CLATTN_ERROR_UNSUPPORTED,
            "program kernels_cl/%s.cl: the context describes another device (clattn_context_set_target) "
            "and builds nothing; record programs instead, or set the target back to NULL",
            source_name);
    char *source = NULL;
    size_t source_len = 0;
    clattn_status st = cla_source_load(ctx, source_name, &source, &source_len);
    if (st != CLATTN_SUCCESS) return st;
    if (prefix && add_prefix(prefix, &source, &source_len) != CLATTN_SUCCESS) {
        free(source);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory building kernel '%s'",
                        source_name);
    }
    char *full = concat_options(ctx, options);
    char *key = full ? make_key(ctx, source_name, source, source_len, full) : NULL;
    if (!full || !key) {
        free(source);
        free(full);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory building kernel '%s'",
                        source_name);
    }
    /* Devices that cannot compile take their programs from the binary directory only; an accelerator that can
     * compile still prefers a binary from there (its compiles take hours), then the cache, then the source. */
    cl_program prog = NULL;
    bool required = cla_binaries_required(ctx);
    if (required || (ctx->info.type == CLATTN_DEVICE_TYPE_ACCELERATOR && ctx->binary_dir))
        st = cla_binary_load(ctx, source_name, full, key, &prog);
    if (st == CLATTN_SUCCESS && !prog && !required) {
        if ((prog = load_cached(ctx, key, full)) != NULL) {
            ctx->stats.disk_hits++;
        } else {
            st = build_from_source(ctx, source_name, source, source_len, full, &prog);
            if (st == CLATTN_SUCCESS) {
                size_t bin_size = 0;
                unsigned char *bin = program_binary(ctx, prog, &bin_size);
                if (bin) cla_disk_cache_write(ctx, key, bin, bin_size);
                free(bin);
            }
        }
    }
    free(source);
    free(full);
    free(key);
    if (st != CLATTN_SUCCESS) return st;
    st = remember(ctx, source_name, prefix, options, prog);
    if (st != CLATTN_SUCCESS) {
        clReleaseProgram(prog);
        return cla_fail(ctx, st, "out of host memory caching kernel '%s'", source_name);
    }
    *program = prog;
    return CLATTN_SUCCESS;
}

clattn_status cla_kernel_get(clattn_context *ctx, const char *source_name, const char *options,
                             const char *kernel_name, cl_kernel *kernel) {
    return cla_kernel_get_prefixed(ctx, source_name, NULL, options, kernel_name, kernel);
}

clattn_status cla_kernel_get_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                      const char *options, const char *kernel_name, cl_kernel *kernel) {
    cl_program program = NULL;
    clattn_status st = cla_program_get_prefixed(ctx, source_name, prefix, options, &program);
    if (st != CLATTN_SUCCESS) return st;
    if (ctx->recording) {
        *kernel = NULL; /* nothing is built, and nothing runs: every device operation fails while recording */
        return CLATTN_SUCCESS;
    }
    cla_program_entry *e = find_program(ctx, source_name, prefix, options ? options : "");
    for (size_t i = 0; i < e->kernel_count; ++i)
        if (strcmp(e->kernels[i].name, kernel_name) == 0) {
            *kernel = e->kernels[i].kernel;
            return CLATTN_SUCCESS;
        }
    cl_int err = CL_SUCCESS;
    cl_kernel k = clCreateKernel(program, kernel_name, &err);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err == CL_INVALID_KERNEL_NAME ? CLATTN_ERROR_KERNEL_NOT_FOUND : err,
                        "clCreateKernel('%s') from kernels_cl/%s.cl failed: %d %s", kernel_name, source_name, err,
                        cla_cl_error_text(err));
    cla_kernel_entry *grown = realloc(e->kernels, (e->kernel_count + 1) * sizeof *grown);
    char *name = cla_strdup(kernel_name);
    if (!grown || !name) {
        if (grown) e->kernels = grown;
        free(name);
        clReleaseKernel(k);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory creating kernel '%s'",
                        kernel_name);
    }
    e->kernels = grown;
    e->kernels[e->kernel_count].name = name;
    e->kernels[e->kernel_count].kernel = k;
    e->kernel_count++;
    *kernel = k;
    return CLATTN_SUCCESS;
}

void cla_programs_release(clattn_context *ctx) {
    for (size_t i = 0; i < ctx->program_count; ++i) {
        cla_program_entry *e = &ctx->programs[i];
        for (size_t k = 0; k < e->kernel_count; ++k) {
            clReleaseKernel(e->kernels[k].kernel);
            free(e->kernels[k].name);
        }
        free(e->kernels);
        clReleaseProgram(e->program);
        free(e->source_name);
        free(e->options);
        free(e->prefix);
    }
    free(ctx->programs);
    ctx->programs = NULL;
    ctx->program_count = ctx->program_capacity = 0;
}

clattn_status cla_program_binary(clattn_context *ctx, const char *source_name, const char *prefix,
                                 const char *options, unsigned char **binary, size_t *size) {
    cl_program program = NULL;
    clattn_status st = cla_program_get_prefixed(ctx, source_name, prefix, options, &program);
    if (st != CLATTN_SUCCESS) return st;
    CLA_FAIL_ON(!program, ctx, CLATTN_ERROR_UNSUPPORTED,
                "program kernels_cl/%s.cl: programs are being recorded, so none is built; end the recording "
                "(clattn_program_record_end) first",
                source_name);
    *binary = program_binary(ctx, program, size);
    if (!*binary)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the driver of '%s' gives no binary for program kernels_cl/%s.cl (CL_PROGRAM_BINARIES)",
                        ctx->info.name, source_name);
    return CLATTN_SUCCESS;
}

/* ---- the advanced API (include/clattn_advanced.h) ---- */

clattn_status clattn_context_set_build_options(clattn_context *ctx, const char *options) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    char *copy = NULL;
    CLA_FAIL_ON(options && *options && !(copy = cla_strdup(options)), ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                "out of host memory copying the build options");
    free(ctx->extra_build_options);
    ctx->extra_build_options = copy;
    /* The memory cache knows programs by the operation's options alone, so programs of the old options go. */
    cla_programs_release(ctx);
    return CLATTN_SUCCESS;
}

clattn_status clattn_program_record_begin(clattn_context *ctx) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_program_record_begin(ctx);
    return CLATTN_SUCCESS;
}

size_t clattn_program_record_count(const clattn_context *ctx) {
    return ctx ? ctx->recorded_count : 0;
}

clattn_status clattn_program_recorded_prefix(const clattn_context *ctx, size_t index, const char **prefix) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ACCESSOR_FAIL_ON(!prefix, ctx, CLATTN_ERROR_NULL_POINTER, "prefix (the out-pointer) must not be NULL");
    CLA_ACCESSOR_FAIL_ON(index >= ctx->recorded_count, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                         "index is %zu but %zu programs were recorded (clattn_program_record_count)", index,
                         ctx->recorded_count);
    *prefix = ctx->recorded[index].prefix;
    return CLATTN_SUCCESS;
}

clattn_status clattn_program_recorded(const clattn_context *ctx, size_t index, const char **source_name,
                                      const char **options) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ACCESSOR_FAIL_ON(!source_name || !options, ctx, CLATTN_ERROR_NULL_POINTER,
                         "source_name and options (the out-pointers) must not be NULL");
    CLA_ACCESSOR_FAIL_ON(index >= ctx->recorded_count, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                         "index is %zu but %zu programs were recorded (clattn_program_record_count)", index,
                         ctx->recorded_count);
    *source_name = ctx->recorded[index].source_name;
    *options = ctx->recorded[index].options;
    return CLATTN_SUCCESS;
}

void clattn_program_record_end(clattn_context *ctx) {
    if (ctx) cla_program_record_end(ctx);
}

void clattn_program_description_free(clattn_program_description *d) {
    if (!d) return;
    free(d->source);
    free(d->build_options);
    free(d->key);
    memset(d, 0, sizeof *d);
}

clattn_status clattn_program_describe(clattn_context *ctx, const char *source_name, const char *options,
                                      clattn_program_description *d) {
    return clattn_program_describe_prefixed(ctx, source_name, NULL, options, d);
}

clattn_status clattn_program_describe_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                               const char *options, clattn_program_description *d) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!source_name || !d, ctx, CLATTN_ERROR_NULL_POINTER, "source_name and description must not be NULL");
    memset(d, 0, sizeof *d);
    clattn_status st = cla_source_load(ctx, source_name, &d->source, &d->source_length);
    if (st != CLATTN_SUCCESS) return st;
    if (prefix && add_prefix(prefix, &d->source, &d->source_length) != CLATTN_SUCCESS) {
        clattn_program_description_free(d);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory describing program %s",
                        source_name);
    }
    d->build_options = concat_options(ctx, options ? options : "");
    d->key = d->build_options ? make_key(ctx, source_name, d->source, d->source_length, d->build_options) : NULL;
    if (!d->key) {
        clattn_program_description_free(d);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory describing program %s",
                        source_name);
    }
    char name[CLA_ENTRY_NAME_SIZE];
    cla_entry_file_name(d->key, name);
    cla_strlcpy(d->binary_file, name, sizeof d->binary_file);
    return CLATTN_SUCCESS;
}

clattn_status clattn_program_build_binary(clattn_context *ctx, const char *source_name, const char *options,
                                          unsigned char **binary, size_t *size) {
    return clattn_program_build_binary_prefixed(ctx, source_name, NULL, options, binary, size);
}

clattn_status clattn_program_build_binary_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                                   const char *options, unsigned char **binary, size_t *size) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!source_name || !binary || !size, ctx, CLATTN_ERROR_NULL_POINTER,
                "source_name, binary and size must not be NULL");
    *binary = NULL;
    *size = 0;
    return cla_program_binary(ctx, source_name, prefix, options ? options : "", binary, size);
}
