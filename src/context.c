// SPDX-License-Identifier: Apache-2.0
/* Contexts: creation on a selected device or from the caller's OpenCL objects, the one reading of the environment,
 * accessors, and teardown. */
#include "internal.h"
#include "tuning.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A variable's value, NULL when it is unset or empty. */
static const char *env_value(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* The one place the library reads the environment (besides CLATTN_DEVICE where a device is selected); README.md,
 * "Environment variables", lists the same set. */
void cla_env_read(cla_env *e) {
    e->max_launch_pairs = env_value("CLATTN_MAX_LAUNCH_PAIRS");
    e->kernel_dir = env_value("CLATTN_KERNEL_DIR");
    e->build_options = env_value("CLATTN_BUILD_OPTIONS");
    e->binary_dir = env_value("CLATTN_BINARY_DIR");
    e->compile = env_value("CLATTN_COMPILE");
    e->cache = env_value("CLATTN_CACHE");
    e->cache_dir = env_value("CLATTN_CACHE_DIR");
    e->tuning = env_value("CLATTN_TUNING");
    e->tuning_dir = env_value("CLATTN_TUNING_DIR");
    e->impl = env_value("CLATTN_IMPL");
    e->fused_params = env_value("CLATTN_FUSED_PARAMS");
    e->seq2seq_params = env_value("CLATTN_SEQ2SEQ_PARAMS");
    e->unfused_chunk = env_value("CLATTN_UNFUSED_CHUNK_BYTES");
    e->xdg_cache_home = env_value("XDG_CACHE_HOME");
    e->xdg_data_home = env_value("XDG_DATA_HOME");
    e->home = env_value("HOME");
}

/* A whole decimal number, or false. */
static bool parse_u64(const char *text, uint64_t *out) {
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || *text == '-') return false;
    *out = v;
    return true;
}

void clattn_context_options_init(clattn_context_options *options) {
    if (!options) return;
    memset(options, 0, sizeof *options);
}

/* A failed creation's reason, for the options' message buffer: there is no context to hold a last error, so the
 * creating entry point's name (`call`, its __func__) leads the text here, as cla_fail leads a context's. */
static void report(const clattn_context_options *o, const char *call, const char *msg) {
    if (o) cla_write_message(o->error_message, o->error_message_size, "%s: %s", call, msg);
}

/* Settings of the environment that are plain values. A malformed one is a warning, never a failed context. */
static void read_settings(clattn_context *ctx, const cla_env *e) {
    uint64_t v = 0;
    if (e->max_launch_pairs && parse_u64(e->max_launch_pairs, &v))
        ctx->max_launch_pairs = v;
    else if (e->max_launch_pairs)
        cla_log(ctx, CLATTN_LOG_WARNING, "CLATTN_MAX_LAUNCH_PAIRS='%s' is not a number; ignored",
                e->max_launch_pairs);
    if (e->unfused_chunk && parse_u64(e->unfused_chunk, &v) && v > 0)
        ctx->unfused_chunk_bytes = v;
    else if (e->unfused_chunk)
        cla_log(ctx, CLATTN_LOG_WARNING, "CLATTN_UNFUSED_CHUNK_BYTES='%s' is not a positive number; ignored",
                e->unfused_chunk);
    ctx->preferred_impl = CLATTN_IMPL_FUSED;
    if (e->impl && strcmp(e->impl, "unfused") == 0)
        ctx->preferred_impl = CLATTN_IMPL_UNFUSED;
    else if (e->impl && strcmp(e->impl, "fused") != 0)
        cla_log(ctx, CLATTN_LOG_WARNING, "CLATTN_IMPL='%s' is neither fused nor unfused; ignored", e->impl);
}

/* Everything that does not depend on how the OpenCL objects came about: caches and settings, from the options and
 * the environment, read here once. A failure leaves its reason in `msg`. */
static clattn_status finish_setup(clattn_context *ctx, const clattn_context_options *o, char *msg,
                                  size_t msg_size) {
    cla_env env;
    cla_env_read(&env);
    if (o) {
        ctx->log = o->log;
        ctx->log_user = o->log_user;
        ctx->max_launch_pairs = o->max_launch_pairs;
    }
    read_settings(ctx, &env);
    cla_write_message(msg, msg_size, "out of host memory creating a context");
    if (env.kernel_dir && !(ctx->kernel_dir = cla_strdup(env.kernel_dir))) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    if (env.build_options && !(ctx->extra_build_options = cla_strdup(env.build_options)))
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    clattn_status st = cla_binaries_setup(ctx, o, &env);
    if (st != CLATTN_SUCCESS) return st;
    ctx->cache_dir = cla_disk_cache_dir(ctx, &env);
    ctx->disk_cache_enabled = ctx->cache_dir != NULL;
    cla_tuning_load(ctx, &env); /* never fails: a missing or bad database means built-in defaults */
    /* A malformed override must not silently test the defaults: the context is refused, with the reason. */
    st = cla_kernel_params_from_env(ctx, &env);
    if (st != CLATTN_SUCCESS) cla_write_message(msg, msg_size, "%s", clattn_context_last_error(ctx));
    return st;
}

/* The end of both creations: the settings, then the context goes to the caller, or is freed with the reason
 * reported. */
static clattn_status finish_create(clattn_context *ctx, const clattn_context_options *o, clattn_context **context,
                                   const char *call) {
    char msg[1536] = "";
    clattn_status st = finish_setup(ctx, o, msg, sizeof msg);
    if (st != CLATTN_SUCCESS) {
        clattn_context_free(ctx);
        report(o, call, msg);
        return st;
    }
    *context = ctx;
    return CLATTN_SUCCESS;
}

static clattn_context *new_context(void) {
    clattn_context *ctx = calloc(1, sizeof *ctx);
    return ctx;
}

/* Records the context's devices (the primary one first) and their queues, which the context then owns; queues[0]
 * is also ctx->queue. On failure nothing is taken over. */
static clattn_status set_devices(clattn_context *ctx, const cl_device_id *devices, const clattn_device_info *infos,
                                 const cl_command_queue *queues, size_t n) {
    ctx->devices = calloc(n, sizeof *ctx->devices);
    ctx->queues = calloc(n, sizeof *ctx->queues);
    ctx->infos = calloc(n, sizeof *ctx->infos);
    if (!ctx->devices || !ctx->queues || !ctx->infos) {
        free(ctx->devices);
        free(ctx->queues);
        free(ctx->infos);
        ctx->devices = NULL;
        ctx->queues = NULL;
        ctx->infos = NULL;
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    ctx->device_count = n;
    ctx->sub_buffer_align = 1;
    for (size_t i = 0; i < n; ++i) {
        ctx->devices[i] = devices[i];
        ctx->queues[i] = queues[i];
        ctx->infos[i] = infos[i];
        /* Sub-buffers (of the outputs of split calls) must start at a multiple of every device's alignment. */
        cl_uint bits = 0;
        if (clGetDeviceInfo(devices[i], CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL) == CL_SUCCESS &&
            bits / 8 > ctx->sub_buffer_align)
            ctx->sub_buffer_align = bits / 8;
    }
    ctx->device = devices[0];
    ctx->queue = queues[0];
    ctx->info = infos[0];
    return CLATTN_SUCCESS;
}

static clattn_status create_with_options(const clattn_context_options *options, clattn_context **context,
                                         const char *call);

clattn_status clattn_context_create(const char *device_spec, clattn_context **context) {
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = device_spec;
    return create_with_options(&o, context, __func__);
}

/* The most devices one context takes; far more than any machine has of one model. */
#define MAX_CONTEXT_DEVICES 64

/* Picks the context's devices: one by options->device, or a list by options->devices, all of one model. */
static clattn_status pick_devices(const clattn_context_options *o, cla_device_entry *chosen, size_t *n, char *msg,
                                  size_t msg_size) {
    cla_device_entry *entries = NULL;
    size_t count = 0, index = 0;
    size_t indices[MAX_CONTEXT_DEVICES];
    clattn_status st = cla_devices_enumerate(&entries, &count, msg, msg_size);
    const bool list = o && o->devices && *o->devices;
    if (st == CLATTN_SUCCESS && list) {
        st = cla_devices_pick_list(entries, count, o->devices, indices, MAX_CONTEXT_DEVICES, n, msg, msg_size);
    } else if (st == CLATTN_SUCCESS) {
        st = cla_devices_pick(entries, count, o ? o->device : NULL, &index, msg, msg_size);
        indices[0] = index;
        *n = 1;
    }
    for (size_t i = 0; st == CLATTN_SUCCESS && i < *n; ++i) {
        chosen[i] = entries[indices[i]];
        char why[512];
        if (i > 0 && !cla_devices_compatible(&chosen[0].info, &chosen[i].info, why, sizeof why)) {
            cla_write_message(
                msg, msg_size,
                "Devices %u:%u (%s) and %u:%u (%s) cannot share one clattn context: %s. A context "
                "with several devices needs devices of one model and driver (one program binary "
                "serves them all); use one context per device instead (clattn_context_create(\"P:D\", "
                "...) for each, see README.md, \"Several devices\").",
                chosen[0].info.platform_index, chosen[0].info.device_index, chosen[0].info.name,
                chosen[i].info.platform_index, chosen[i].info.device_index, chosen[i].info.name, why);
            st = CLATTN_ERROR_UNSUPPORTED;
        }
    }
    free(entries);
    return st;
}

clattn_status clattn_context_create_with_options(const clattn_context_options *options, clattn_context **context) {
    return create_with_options(options, context, __func__);
}

/* Both device-picking creations; `call` names the entry point in the messages. */
static clattn_status create_with_options(const clattn_context_options *options, clattn_context **context,
                                         const char *call) {
    if (!context) {
        report(options, call, "context (the out-pointer) is NULL");
        return CLATTN_ERROR_NULL_POINTER;
    }
    *context = NULL;
    char msg[1536] = "";
    cla_device_entry chosen[MAX_CONTEXT_DEVICES];
    size_t n = 0;
    clattn_status st = pick_devices(options, chosen, &n, msg, sizeof msg);
    if (st != CLATTN_SUCCESS) {
        report(options, call, msg);
        return st;
    }
    cl_device_id devices[MAX_CONTEXT_DEVICES];
    clattn_device_info infos[MAX_CONTEXT_DEVICES];
    cl_command_queue queues[MAX_CONTEXT_DEVICES] = {NULL};
    for (size_t i = 0; i < n; ++i) {
        devices[i] = chosen[i].device;
        infos[i] = chosen[i].info;
    }

    cl_int err = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)chosen[0].platform, 0};
    cl_context clctx = clCreateContext(props, (cl_uint)n, devices, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        cla_write_message(msg, sizeof msg, "clCreateContext failed on device '%s' (%s)%s: %d %s",
                          chosen[0].info.name, chosen[0].info.platform_name,
                          n > 1 ? " and the other devices of the list" : "", err, cla_cl_error_text(err));
        report(options, call, msg);
        return err;
    }
    cl_command_queue_properties qprops = (options && options->enable_profiling) ? CL_QUEUE_PROFILING_ENABLE : 0;
    for (size_t i = 0; i < n && err == CL_SUCCESS; ++i) {
        /* clCreateCommandQueue is deprecated in 2.0 but is the one call every 1.2+ driver has. */
        queues[i] = clCreateCommandQueue(clctx, devices[i], qprops, &err);
        if (err != CL_SUCCESS)
            cla_write_message(msg, sizeof msg, "clCreateCommandQueue failed on device '%s' (%u:%u): %d %s",
                              infos[i].name, infos[i].platform_index, infos[i].device_index, err,
                              cla_cl_error_text(err));
    }
    clattn_context *ctx = err == CL_SUCCESS ? new_context() : NULL;
    if (err == CL_SUCCESS && !ctx) {
        err = CLATTN_ERROR_OUT_OF_HOST_MEMORY;
        cla_write_message(msg, sizeof msg, "out of host memory creating a context");
    }
    if (ctx && set_devices(ctx, devices, infos, queues, n) != CLATTN_SUCCESS) {
        free(ctx);
        ctx = NULL;
        err = CLATTN_ERROR_OUT_OF_HOST_MEMORY;
        cla_write_message(msg, sizeof msg, "out of host memory creating a context");
    }
    if (err != CL_SUCCESS) {
        for (size_t i = 0; i < n; ++i)
            if (queues[i]) clReleaseCommandQueue(queues[i]);
        clReleaseContext(clctx);
        report(options, call, msg);
        return err;
    }
    ctx->platform = chosen[0].platform;
    ctx->cl_ctx = clctx;
    ctx->profiling = qprops != 0;
    return finish_create(ctx, options, context, call);
}

clattn_status clattn_context_create_from_cl(cl_context cl_ctx, cl_device_id device, cl_command_queue queue,
                                            const clattn_context_options *options, clattn_context **context) {
    if (!context || !cl_ctx || !device || !queue) {
        report(options, __func__, "context (the out-pointer), cl_ctx, device and queue must all be non-NULL");
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
        char msg[160];
        cla_write_message(msg, sizeof msg, "queue: not a valid command queue (%d %s)", err, cla_cl_error_text(err));
        report(options, __func__, msg);
        return err;
    }
    if (queue_ctx != cl_ctx || queue_dev != device) {
        report(options, __func__, "queue: it belongs to another cl_context or device than the ones given");
        return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    cl_platform_id platform = NULL;
    err = clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    if (err != CL_SUCCESS) {
        char msg[160];
        cla_write_message(msg, sizeof msg, "device: not a valid cl_device_id (%d %s)", err, cla_cl_error_text(err));
        report(options, __func__, msg);
        return err;
    }
    clattn_context *ctx = new_context();
    if (!ctx) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    clattn_device_info info;
    clattn_status st = cla_device_query_info(platform, device, &info);
    if (st == CLATTN_SUCCESS) st = set_devices(ctx, &device, &info, &queue, 1);
    if (st != CLATTN_SUCCESS) {
        free(ctx);
        return st;
    }
    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    ctx->platform = platform;
    ctx->cl_ctx = cl_ctx;
    ctx->profiling = (qprops & CL_QUEUE_PROFILING_ENABLE) != 0;
    return finish_create(ctx, options, context, __func__);
}

void clattn_context_free(clattn_context *ctx) {
    if (!ctx) return;
    cla_programs_release(ctx);
    cla_program_record_end(ctx);
    cla_tuning_free(ctx);
    cla_kernel_params_free(ctx);
    for (size_t i = 1; i < ctx->device_count; ++i)
        if (ctx->queues[i]) clReleaseCommandQueue(ctx->queues[i]);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx) clReleaseContext(ctx->cl_ctx);
    /* What the context owns on the heap, itself last. */
    void *owned[] = {ctx->devices,    ctx->queues,     ctx->infos,
                     ctx->cache_dir,  ctx->kernel_dir, ctx->extra_build_options,
                     ctx->binary_dir, ctx->last_error, ctx};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i) free(owned[i]);
}

clattn_status clattn_context_set_target(clattn_context *ctx, const clattn_device_info *target) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    if (!ctx->has_target) ctx->own_info = ctx->info;
    /* Every choice reads ctx->info; the built programs are its own device's, so they go with a change. */
    cla_programs_release(ctx);
    ctx->has_target = target != NULL;
    ctx->info = target ? *target : ctx->own_info;
    return CLATTN_SUCCESS;
}

clattn_status clattn_context_device_info(const clattn_context *ctx, clattn_device_info *info) {
    if (!ctx || !info) return CLATTN_ERROR_NULL_POINTER;
    *info = ctx->info;
    return CLATTN_SUCCESS;
}

size_t clattn_context_device_count(const clattn_context *ctx) {
    return ctx ? ctx->device_count : 0;
}

clattn_status clattn_context_device_info_at(const clattn_context *ctx, size_t index, clattn_device_info *info) {
    if (!ctx || !info) return CLATTN_ERROR_NULL_POINTER;
    CLA_ACCESSOR_FAIL_ON(index >= ctx->device_count, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                         "index is %zu but the context has %zu device%s; give 0..%zu", index, ctx->device_count,
                         ctx->device_count == 1 ? "" : "s", ctx->device_count - 1);
    *info = ctx->infos[index];
    return CLATTN_SUCCESS;
}

cl_device_id clattn_context_cl_device_at(const clattn_context *ctx, size_t index) {
    return ctx && index < ctx->device_count ? ctx->devices[index] : NULL;
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
