// SPDX-License-Identifier: Apache-2.0
/* Status codes and their names, the per-context last-error text, the log callback, the version functions, and the
 * small string helpers the messages use. */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct status_name {
    clattn_status code;
    const char *text;
} status_name;

static const status_name clattn_names[] = {
    {CLATTN_SUCCESS, "CLATTN_SUCCESS: success"},
    {CLATTN_ERROR_INVALID_ARGUMENT, "CLATTN_ERROR_INVALID_ARGUMENT: invalid argument"},
    {CLATTN_ERROR_NULL_POINTER, "CLATTN_ERROR_NULL_POINTER: a required pointer or handle is NULL"},
    {CLATTN_ERROR_INVALID_SHAPE, "CLATTN_ERROR_INVALID_SHAPE: tensor sizes do not fit together"},
    {CLATTN_ERROR_INVALID_STRIDE, "CLATTN_ERROR_INVALID_STRIDE: strides alias output elements or are impossible"},
    {CLATTN_ERROR_BUFFER_TOO_SMALL, "CLATTN_ERROR_BUFFER_TOO_SMALL: a tensor runs past the end of its buffer"},
    {CLATTN_ERROR_INVALID_HEADS, "CLATTN_ERROR_INVALID_HEADS: query heads are not a multiple of key/value heads"},
    {CLATTN_ERROR_INVALID_HEAD_DIM, "CLATTN_ERROR_INVALID_HEAD_DIM: unsupported head dimension"},
    {CLATTN_ERROR_INVALID_DTYPE, "CLATTN_ERROR_INVALID_DTYPE: unknown or unsupported element type"},
    {CLATTN_ERROR_INVALID_MASK, "CLATTN_ERROR_INVALID_MASK: mask shape, type or window cannot be used"},
    {CLATTN_ERROR_SIZE_OVERFLOW, "CLATTN_ERROR_SIZE_OVERFLOW: a size overflows size_t"},
    {CLATTN_ERROR_OUT_OF_HOST_MEMORY, "CLATTN_ERROR_OUT_OF_HOST_MEMORY: host memory allocation failed"},
    {CLATTN_ERROR_NO_PLATFORM, "CLATTN_ERROR_NO_PLATFORM: no OpenCL platform is installed"},
    {CLATTN_ERROR_NO_DEVICE, "CLATTN_ERROR_NO_DEVICE: no OpenCL device matches the selection"},
    {CLATTN_ERROR_INVALID_DEVICE_SPEC, "CLATTN_ERROR_INVALID_DEVICE_SPEC: device selection cannot be parsed"},
    {CLATTN_ERROR_BUILD_FAILED, "CLATTN_ERROR_BUILD_FAILED: a kernel failed to compile"},
    {CLATTN_ERROR_KERNEL_NOT_FOUND, "CLATTN_ERROR_KERNEL_NOT_FOUND: no such kernel source or function"},
    {CLATTN_ERROR_NO_COMPILER, "CLATTN_ERROR_NO_COMPILER: the device cannot compile and no binary was found"},
    {CLATTN_ERROR_INVALID_BINARY, "CLATTN_ERROR_INVALID_BINARY: a prebuilt binary does not load on this device"},
    {CLATTN_ERROR_IO, "CLATTN_ERROR_IO: reading or writing a file failed"},
    {CLATTN_ERROR_INVALID_FILE, "CLATTN_ERROR_INVALID_FILE: a file is malformed, truncated or of the wrong kind"},
    {CLATTN_ERROR_CLBLAST, "CLATTN_ERROR_CLBLAST: CLBlast reported an error"},
    {CLATTN_ERROR_UNSUPPORTED, "CLATTN_ERROR_UNSUPPORTED: not supported on this device or by this build"},
    {CLATTN_ERROR_CAPACITY, "CLATTN_ERROR_CAPACITY: the object's capacity is exhausted"},
    {CLATTN_ERROR_INTERNAL, "CLATTN_ERROR_INTERNAL: internal error in clattn"},
    {CLATTN_ERROR_DEVICE_LIMIT, "CLATTN_ERROR_DEVICE_LIMIT: no kernel parameters fit the device's limits"},
    {CLATTN_ERROR_INVALID_SEQLENS, "CLATTN_ERROR_INVALID_SEQLENS: sequence lengths out of order or out of range"},
    {CLATTN_ERROR_INVALID_BLOCK_TABLE, "CLATTN_ERROR_INVALID_BLOCK_TABLE: a block table entry names no page"},
    {CLATTN_ERROR_INVALID_SCALE, "CLATTN_ERROR_INVALID_SCALE: a K/V scale tensor is missing or malformed"},
    {CLATTN_ERROR_INVALID_SLOT,
     "CLATTN_ERROR_INVALID_SLOT: a slot mapping names no slot of the cache, or one twice"},
};

#define CL_NAME(x)                                                                                                 \
    { x, #x }
static const status_name opencl_names[] = {
    CL_NAME(CL_DEVICE_NOT_FOUND),
    CL_NAME(CL_DEVICE_NOT_AVAILABLE),
    CL_NAME(CL_COMPILER_NOT_AVAILABLE),
    CL_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE),
    CL_NAME(CL_OUT_OF_RESOURCES),
    CL_NAME(CL_OUT_OF_HOST_MEMORY),
    CL_NAME(CL_PROFILING_INFO_NOT_AVAILABLE),
    CL_NAME(CL_MEM_COPY_OVERLAP),
    CL_NAME(CL_IMAGE_FORMAT_MISMATCH),
    CL_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED),
    CL_NAME(CL_BUILD_PROGRAM_FAILURE),
    CL_NAME(CL_MAP_FAILURE),
    CL_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET),
    CL_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST),
    CL_NAME(CL_COMPILE_PROGRAM_FAILURE),
    CL_NAME(CL_LINKER_NOT_AVAILABLE),
    CL_NAME(CL_LINK_PROGRAM_FAILURE),
    CL_NAME(CL_DEVICE_PARTITION_FAILED),
    CL_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE),
    CL_NAME(CL_INVALID_VALUE),
    CL_NAME(CL_INVALID_DEVICE_TYPE),
    CL_NAME(CL_INVALID_PLATFORM),
    CL_NAME(CL_INVALID_DEVICE),
    CL_NAME(CL_INVALID_CONTEXT),
    CL_NAME(CL_INVALID_QUEUE_PROPERTIES),
    CL_NAME(CL_INVALID_COMMAND_QUEUE),
    CL_NAME(CL_INVALID_HOST_PTR),
    CL_NAME(CL_INVALID_MEM_OBJECT),
    CL_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR),
    CL_NAME(CL_INVALID_IMAGE_SIZE),
    CL_NAME(CL_INVALID_SAMPLER),
    CL_NAME(CL_INVALID_BINARY),
    CL_NAME(CL_INVALID_BUILD_OPTIONS),
    CL_NAME(CL_INVALID_PROGRAM),
    CL_NAME(CL_INVALID_PROGRAM_EXECUTABLE),
    CL_NAME(CL_INVALID_KERNEL_NAME),
    CL_NAME(CL_INVALID_KERNEL_DEFINITION),
    CL_NAME(CL_INVALID_KERNEL),
    CL_NAME(CL_INVALID_ARG_INDEX),
    CL_NAME(CL_INVALID_ARG_VALUE),
    CL_NAME(CL_INVALID_ARG_SIZE),
    CL_NAME(CL_INVALID_KERNEL_ARGS),
    CL_NAME(CL_INVALID_WORK_DIMENSION),
    CL_NAME(CL_INVALID_WORK_GROUP_SIZE),
    CL_NAME(CL_INVALID_WORK_ITEM_SIZE),
    CL_NAME(CL_INVALID_GLOBAL_OFFSET),
    CL_NAME(CL_INVALID_EVENT_WAIT_LIST),
    CL_NAME(CL_INVALID_EVENT),
    CL_NAME(CL_INVALID_OPERATION),
    CL_NAME(CL_INVALID_GL_OBJECT),
    CL_NAME(CL_INVALID_BUFFER_SIZE),
    CL_NAME(CL_INVALID_MIP_LEVEL),
    CL_NAME(CL_INVALID_GLOBAL_WORK_SIZE),
    CL_NAME(CL_INVALID_PROPERTY),
    CL_NAME(CL_INVALID_IMAGE_DESCRIPTOR),
    CL_NAME(CL_INVALID_COMPILER_OPTIONS),
    CL_NAME(CL_INVALID_LINKER_OPTIONS),
    CL_NAME(CL_INVALID_DEVICE_PARTITION_COUNT),
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
};
#undef CL_NAME

static const char *find_name(const status_name *table, size_t n, clattn_status code) {
    for (size_t i = 0; i < n; ++i)
        if (table[i].code == code) return table[i].text;
    return NULL;
}

const char *cla_cl_error_name(cl_int code) {
    return find_name(opencl_names, CLA_ARRAY_SIZE(opencl_names), code);
}

const char *cla_cl_error_text(cl_int code) {
    const char *name = cla_cl_error_name(code);
    return name ? name : "";
}

const char *clattn_status_string(clattn_status status) {
    const char *s = find_name(clattn_names, CLA_ARRAY_SIZE(clattn_names), status);
    if (s) return s;
    s = cla_cl_error_name(status);
    if (s) return s;
    if (status > -1024 && status < 0) return "an OpenCL error code unknown to clattn";
    if (status <= -1024 && status > -3000) return "an OpenCL extension or CLBlast error code unknown to clattn";
    return "an unknown status code";
}

/* Makes sure the last-error buffer can hold `needed` bytes; returns false if memory ran out. */
static bool reserve_error(clattn_context *ctx, size_t needed) {
    if (needed <= ctx->last_error_capacity) return true;
    size_t cap = ctx->last_error_capacity ? ctx->last_error_capacity : 256;
    while (cap < needed) cap *= 2;
    char *p = realloc(ctx->last_error, cap);
    if (!p) return false;
    if (!ctx->last_error) p[0] = '\0';
    ctx->last_error = p;
    ctx->last_error_capacity = cap;
    return true;
}

static void clear_error(clattn_context *ctx) {
    if (ctx->last_error) ctx->last_error[0] = '\0';
}

void cla_enter(clattn_context *ctx, const char *call) {
    if (!ctx) return;
    clear_error(ctx);
    ctx->call = call;
}

clattn_status cla_fail(clattn_context *ctx, clattn_status status, const char *fmt, ...) {
    if (!ctx) return status;
    /* "<call>: " first, then the message formatted after it; outside a call (context creation), the message alone.
     */
    const char *call = ctx->call ? ctx->call : "";
    const char *sep = ctx->call ? ": " : "";
    const size_t lead = strlen(call) + strlen(sep);
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && reserve_error(ctx, lead + (size_t)n + 1)) {
        snprintf(ctx->last_error, lead + 1, "%s%s", call, sep);
        vsnprintf(ctx->last_error + lead, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return status;
}

void cla_append_error(clattn_context *ctx, const char *text) {
    if (!ctx || !text) return;
    size_t have = ctx->last_error ? strlen(ctx->last_error) : 0;
    size_t add = strlen(text);
    if (!reserve_error(ctx, have + add + 1)) return;
    memcpy(ctx->last_error + have, text, add + 1);
}

void cla_log(const clattn_context *ctx, clattn_log_level level, const char *fmt, ...) {
    if (!ctx || !ctx->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, buf);
}

void cla_write_message(char *buffer, size_t size, const char *fmt, ...) {
    if (!buffer || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buffer, size, fmt, ap);
    va_end(ap);
}

const char *clattn_context_last_error(const clattn_context *context) {
    if (!context || !context->last_error) return "";
    return context->last_error;
}

void clattn_free(void *memory) {
    free(memory);
}

char *cla_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

clattn_status cla_check_given(clattn_context *ctx, const void *const *args, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; ++i) CLA_FAIL_ON(!args[i], ctx, CLATTN_ERROR_NULL_POINTER, "%s is NULL", names[i]);
    return CLATTN_SUCCESS;
}

void *cla_grow(void *items, size_t *capacity, size_t count, size_t size, size_t initial) {
    if (count < *capacity) return items;
    const size_t cap = *capacity ? *capacity * 2 : initial;
    void *grown = cap > SIZE_MAX / size ? NULL : realloc(items, cap * size);
    if (grown) *capacity = cap;
    return grown;
}

bool cla_list_next(const char **p) {
    if (**p != ',') return true;
    ++*p;
    return **p != '\0';
}

void cla_strlcpy(char *dst, const char *src, size_t size) {
    if (!dst || size == 0) return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Whether `needle` (nl bytes) begins at h, ignoring ASCII case. */
static bool matches_nocase(const char *h, const char *needle, size_t nl) {
    size_t i = 0;
    while (i < nl && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i])) ++i;
    return i == nl;
}

/* The search behind cla_contains_nocase and cla_has_word_nocase; whole_word asks for no letter or digit on either
 * side of the match. */
static bool find_nocase(const char *haystack, const char *needle, bool whole_word) {
    if (!haystack || !needle) return false;
    const size_t nl = strlen(needle);
    if (nl == 0) return true;
    for (const char *h = haystack; *h; ++h) {
        if (whole_word && h > haystack && isalnum((unsigned char)h[-1])) continue;
        if (matches_nocase(h, needle, nl) && !(whole_word && isalnum((unsigned char)h[nl]))) return true;
    }
    return false;
}

bool cla_contains_nocase(const char *haystack, const char *needle) {
    return find_nocase(haystack, needle, false);
}

bool cla_has_word_nocase(const char *text, const char *word) {
    return find_nocase(text, word, true);
}

unsigned clattn_version_number(void) {
    return CLATTN_VERSION_NUMBER;
}

const char *clattn_version_string(void) {
    return CLATTN_VERSION_STRING;
}
