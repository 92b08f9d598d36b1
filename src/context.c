/* Contexts: creation on a selected device or from the caller's OpenCL objects, accessors, and teardown. */
#include "internal.h"
#include "tuning.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void clattn_context_options_init(clattn_context_options *options) {
    if (!options) return;
    memset(options, 0, sizeof *options);
}

static void report(const clattn_context_options *o, const char *msg) {
    if (o) cla_write_message(o->error_message, o->error_message_size, "%s", msg);
}

/* Everything that does not depend on how the OpenCL objects came about: caches and settings. */
static clattn_status finish_setup(clattn_context *ctx, const clattn_context_options *o) {
    if (o) {
        ctx->log = o->log;
        ctx->log_user = o->log_user;
        ctx->max_launch_pairs = o->max_launch_pairs;
    }
    const char *limit = getenv("CLATTN_MAX_LAUNCH_PAIRS");
    if (limit && *limit) {
        char *end = NULL;
        unsigned long long v = strtoull(limit, &end, 10);
        if (*end == '\0')
            ctx->max_launch_pairs = v;
        else
            cla_log(ctx, CLATTN_LOG_WARNING, "CLATTN_MAX_LAUNCH_PAIRS='%s' is not a number; ignored", limit);
    }
    const char *dir = getenv("CLATTN_KERNEL_DIR");
    if (dir && *dir) {
        ctx->kernel_dir = cla_strdup(dir);
        if (!ctx->kernel_dir) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    const char *extra = getenv("CLATTN_BUILD_OPTIONS");
    if (extra && *extra) {
        ctx->extra_build_options = cla_strdup(extra);
        if (!ctx->extra_build_options) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    clattn_status st = cla_binaries_setup(ctx, o);
    if (st != CLATTN_SUCCESS) return st;
    ctx->cache_dir = cla_disk_cache_dir(ctx);
    ctx->disk_cache_enabled = ctx->cache_dir != NULL;
    cla_tuning_load(ctx); /* never fails: a missing or bad database means built-in defaults */
    return CLATTN_SUCCESS;
}

static clattn_context *new_context(void) {
    clattn_context *ctx = calloc(1, sizeof *ctx);
    return ctx;
}

clattn_status clattn_context_create(const char *device_spec, clattn_context **context) {
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = device_spec;
    return clattn_context_create_with_options(&o, context);
}

clattn_status clattn_context_create_with_options(const clattn_context_options *options, clattn_context **context) {
    if (!context) {
        report(options, "clattn_context_create: the context out-pointer is NULL");
        return CLATTN_ERROR_NULL_POINTER;
    }
    *context = NULL;
    char msg[1536] = "";
    cla_device_entry *entries = NULL;
    size_t count = 0, index = 0;
    clattn_status st = cla_devices_enumerate(&entries, &count, msg, sizeof msg);
    if (st == CLATTN_SUCCESS)
        st = cla_devices_pick(entries, count, options ? options->device : NULL, &index, msg, sizeof msg);
    if (st != CLATTN_SUCCESS) {
        free(entries);
        report(options, msg);
        return st;
    }
    cla_device_entry chosen = entries[index];
    free(entries);

    cl_int err = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)chosen.platform, 0};
    cl_context clctx = clCreateContext(props, 1, &chosen.device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        cla_write_message(msg, sizeof msg, "clCreateContext failed on device '%s' (%s): %d %s", chosen.info.name,
                          chosen.info.platform_name, err, cla_cl_error_name(err) ? cla_cl_error_name(err) : "");
        report(options, msg);
        return err;
    }
    cl_command_queue_properties qprops = (options && options->enable_profiling) ? CL_QUEUE_PROFILING_ENABLE : 0;
    /* clCreateCommandQueue is deprecated in 2.0 but is the one call every 1.2+ driver has. */
    cl_command_queue queue = clCreateCommandQueue(clctx, chosen.device, qprops, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(clctx);
        cla_write_message(msg, sizeof msg, "clCreateCommandQueue failed on device '%s': %d %s", chosen.info.name,
                          err, cla_cl_error_name(err) ? cla_cl_error_name(err) : "");
        report(options, msg);
        return err;
    }
    clattn_context *ctx = new_context();
    if (!ctx) {
        clReleaseCommandQueue(queue);
        clReleaseContext(clctx);
        report(options, "out of host memory creating a context");
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    ctx->platform = chosen.platform;
    ctx->device = chosen.device;
    ctx->cl_ctx = clctx;
    ctx->queue = queue;
    ctx->info = chosen.info;
    ctx->profiling = qprops != 0;
    st = finish_setup(ctx, options);
    if (st != CLATTN_SUCCESS) {
        clattn_context_free(ctx);
        report(options, "out of host memory creating a context");
        return st;
    }
    *context = ctx;
    return CLATTN_SUCCESS;
}

clattn_status clattn_context_create_from_cl(cl_context cl_ctx, cl_device_id device, cl_command_queue queue,
                                            const clattn_context_options *options, clattn_context **context) {
    if (!context || !cl_ctx || !device || !queue) {
        report(options, "clattn_context_create_from_cl: context out-pointer, cl_context, device and queue must "
                        "all be non-NULL");
        return CLATTN_ERROR_NULL_POINTER;
    }
    *context = NULL;
    cl_context queue_ctx = NULL;
    cl_device_id queue_dev = NULL;
    cl_command_queue_properties qprops = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof queue_ctx, &queue_ctx, NULL);
    if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof queue_dev, &queue_dev, NULL);
    if (err == CL_SUCCESS) err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL);
    if (err != CL_SUCCESS) {
        report(options, "clattn_context_create_from_cl: the command queue is not valid");
        return err;
    }
    if (queue_ctx != cl_ctx || queue_dev != device) {
        report(options, "clattn_context_create_from_cl: the queue belongs to another context or device");
        return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    cl_platform_id platform = NULL;
    err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    if (err != CL_SUCCESS) {
        report(options, "clattn_context_create_from_cl: the device is not valid");
        return err;
    }
    clattn_context *ctx = new_context();
    if (!ctx) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    clattn_status st = cla_device_query_info(platform, device, &ctx->info);
    if (st != CLATTN_SUCCESS) {
        free(ctx);
        return st;
    }
    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    ctx->platform = platform;
    ctx->device = device;
    ctx->cl_ctx = cl_ctx;
    ctx->queue = queue;
    ctx->profiling = (qprops & CL_QUEUE_PROFILING_ENABLE) != 0;
    st = finish_setup(ctx, options);
    if (st != CLATTN_SUCCESS) {
        clattn_context_free(ctx);
        return st;
    }
    *context = ctx;
    return CLATTN_SUCCESS;
}

void clattn_context_free(clattn_context *ctx) {
    if (!ctx) return;
    cla_programs_release(ctx);
    cla_program_record_end(ctx);
    cla_tuning_free(ctx);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx) clReleaseContext(ctx->cl_ctx);
    free(ctx->cache_dir);
    free(ctx->kernel_dir);
    free(ctx->extra_build_options);
    free(ctx->binary_dir);
    free(ctx->last_error);
    free(ctx);
}

clattn_status clattn_context_device_info(const clattn_context *ctx, clattn_device_info *info) {
    if (!ctx || !info) return CLATTN_ERROR_NULL_POINTER;
    *info = ctx->info;
    return CLATTN_SUCCESS;
}

cl_context clattn_context_cl_context(const clattn_context *ctx) {
    return ctx ? ctx->cl_ctx : NULL;
}

cl_device_id clattn_context_cl_device(const clattn_context *ctx) {
    return ctx ? ctx->device : NULL;
}

cl_command_queue clattn_context_cl_queue(const clattn_context *ctx) {
    return ctx ? ctx->queue : NULL;
}

clattn_status clattn_context_cache_stats(const clattn_context *ctx, clattn_cache_stats *stats) {
    if (!ctx || !stats) return CLATTN_ERROR_NULL_POINTER;
    *stats = ctx->stats;
    return CLATTN_SUCCESS;
}

clattn_status clattn_context_memory_stats(const clattn_context *ctx, clattn_memory_stats *stats) {
    if (!ctx || !stats) return CLATTN_ERROR_NULL_POINTER;
    *stats = ctx->memory;
    return CLATTN_SUCCESS;
}
