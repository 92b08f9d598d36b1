// SPDX-License-Identifier: Apache-2.0
/* Declarations shared by the library's source files: the context structure, error reporting, logging, hashing,
 * and the program-cache interface. Nothing here is part of the public API. */
#ifndef CLATTN_INTERNAL_H
#define CLATTN_INTERNAL_H

#include "clattn_advanced.h" /* which includes clattn.h: the library defines both APIs */

#include <stdarg.h>
#include <stdbool.h>

#if defined(__GNUC__)
#define CLA_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CLA_PRINTF(fmt, args)
#endif

#define CLA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The most tunable operations (tuning.c's table) a context keeps per-operation state for. */
#define CLA_MAX_TUNE_OPS 8

/* Every environment variable the library reads, captured once when a context is created (cla_env_read in
 * context.c) and used there and then: nothing on a call path reads the environment. README.md, "Environment
 * variables", lists them. A field is NULL when its variable is unset or empty. CLATTN_DEVICE alone is read where a
 * device is selected (device.c), which is context creation or clattn_devices_select. */
typedef struct cla_env {
    const char *max_launch_pairs; /* CLATTN_MAX_LAUNCH_PAIRS */
    const char *kernel_dir;       /* CLATTN_KERNEL_DIR */
    const char *build_options;    /* CLATTN_BUILD_OPTIONS */
    const char *binary_dir;       /* CLATTN_BINARY_DIR */
    const char *compile;          /* CLATTN_COMPILE */
    const char *cache;            /* CLATTN_CACHE */
    const char *cache_dir;        /* CLATTN_CACHE_DIR */
    const char *tuning;           /* CLATTN_TUNING */
    const char *tuning_dir;       /* CLATTN_TUNING_DIR */
    const char *impl;             /* CLATTN_IMPL */
    const char *fused_params;     /* CLATTN_FUSED_PARAMS */
    const char *seq2seq_params;   /* CLATTN_SEQ2SEQ_PARAMS */
    const char *unfused_chunk;    /* CLATTN_UNFUSED_CHUNK_BYTES */
    const char *xdg_cache_home;   /* XDG_CACHE_HOME */
    const char *xdg_data_home;    /* XDG_DATA_HOME */
    const char *home;             /* HOME */
} cla_env;

void cla_env_read(cla_env *env);

/* The most keys whose terms one fp32 accumulator of a kernel (or of a CLBlast GEMM) may sum. A running fp32 sum of
 * n terms of one sign drifts by up to about n * 2^-28 of itself, and past 2^24 terms it stops growing (each term is
 * below half its ulp): 2^28 equal values then average to a quarter of themselves. The attention paths cut longer
 * reductions (key splits, GEMMs over ranges of keys) or refuse them. */
#define CLA_MAX_KEYS_PER_SUM ((size_t)1 << 20)

/* One built program in the context's memory cache, with the kernels created from it. */
typedef struct cla_kernel_entry {
    char *name;
    cl_kernel kernel;
} cla_kernel_entry;

typedef struct cla_program_entry {
    char *source_name;
    char *options;
    char *prefix; /* text ahead of the source (the caller's score_mod/mask_mod), NULL for none */
    cl_program program;
    cla_kernel_entry *kernels;
    size_t kernel_count;
} cla_program_entry;

struct clattn_context {
    cl_platform_id platform;
    cl_device_id device; /* the primary device: devices[0] */
    cl_context cl_ctx;
    cl_command_queue queue; /* the primary device's queue: queues[0] (one reference, held here) */
    clattn_device_info info;
    bool profiling;

    /* Every device of the context, the primary one first, with an in-order queue each (queues[0] is `queue`).
     * Attention calls split over them (sdpa_split.c); programs are built for all of them (program.c). */
    size_t device_count;
    cl_device_id *devices;
    cl_command_queue *queues;
    clattn_device_info *infos;
    size_t sub_buffer_align; /* bytes: the largest CL_DEVICE_MEM_BASE_ADDR_ALIGN of the devices */

    clattn_log_fn log;
    void *log_user;
    uint64_t max_launch_pairs; /* 0: no limit */

    /* Settings from the environment, read once at creation (cla_env), or from the advanced API's setters. */
    clattn_impl preferred_impl;   /* CLATTN_IMPL: the implementation of AUTO calls without weights */
    uint64_t unfused_chunk_bytes; /* CLATTN_UNFUSED_CHUNK_BYTES: a tighter bound on unfused temporaries; 0: none */
    /* Kernel-parameter overrides ("name=value,..." or NULL), by the slot of the operation in cla_tune_ops(), and
     * where each came from, for messages (kernel_params.c). */
    char *kernel_params[CLA_MAX_TUNE_OPS];
    const char *kernel_params_origin[CLA_MAX_TUNE_OPS];
    /* clattn_context_set_target: `info` describes a device that is not present, and own_info is the real one. */
    bool has_target;
    clattn_device_info own_info;

    /* Last error: a growable buffer, because build logs can be long. `call` is the public entry point in progress
     * (CLA_ENTER), which leads every message. */
    char *last_error;
    const char *call;
    size_t last_error_capacity;

    /* Program caches. */
    cla_program_entry *programs;
    size_t program_count;
    size_t program_capacity;
    bool disk_cache_enabled;
    char *cache_dir;           /* NULL when disabled or unusable */
    char *kernel_dir;          /* CLATTN_KERNEL_DIR: load sources from here instead of the embedded copies */
    char *extra_build_options; /* CLATTN_BUILD_OPTIONS, appended to every build */
    char *binary_dir;          /* prebuilt binaries (options.binary_dir or CLATTN_BINARY_DIR); NULL: none */
    int compile_policy;        /* clattn_compile_policy, after CLATTN_COMPILE */
    bool recording;            /* cla_program_record_begin: note programs, build and run nothing */
    struct cla_recorded_program *recorded;
    size_t recorded_count;
    clattn_cache_stats stats;
    clattn_memory_stats memory;
    long live_temps;      /* temporaries created by cla_temp_buffer and not yet released */
    long fault_countdown; /* tests: the n-th device operation from now fails; 0 = never */

    /* The device's tuning database, read at creation (tuning_db.c). */
    struct cla_tuning_state *tuning;
};

/* ---- errors and logging (status.c) ---- */

/* The library's error idiom. Every public entry point that takes a context starts with CLA_ENTER(ctx): it clears
 * the last error and records the entry point's own name (__func__) on the context, and cla_fail then leads every
 * message of that call with it, so that a message reads "clattn_sdpa: k: size[0] (batch) is 2 but q's batch is 1"
 * and no message types a function's name. Messages name what failed (the argument, the kernel, the
 * device) and what to do; an OpenCL code is written "%d %s" with cla_cl_error_text. The library never calls its
 * own public entry points (it calls the internal functions behind them), so the name stays the one the caller
 * called. Read-only accessors use CLA_ACCESSOR_FAIL_ON instead (below); they take a const context, which the object
 * itself never is, hence the casts. Context creation has no context yet: it writes its reasons, under the same
 * lead, to the options' message buffer (context.c). */
void cla_enter(clattn_context *ctx, const char *call);
#define CLA_ENTER(ctx) cla_enter((clattn_context *)(ctx), __func__)
/* Records "<call>: <message>" as the context's last error and returns `status`. `ctx` may be NULL. */
clattn_status cla_fail(clattn_context *ctx, clattn_status status, const char *fmt, ...) CLA_PRINTF(3, 4);
/* The one-line form (PoCL's POCL_RETURN_ERROR_ON): when `cond` holds, records the message as cla_fail does and
 * returns `status` from the enclosing function. */
#define CLA_FAIL_ON(cond, ctx, status, ...)                                                                        \
    do {                                                                                                           \
        if (cond) return cla_fail((ctx), (status), __VA_ARGS__);                                                   \
    } while (0)
/* The form for read-only accessors (a const context): they leave the last error alone when they succeed, since a
 * caller may read them between a failed call and its message, and name themselves only when they fail. */
#define CLA_ACCESSOR_FAIL_ON(cond, ctx, status, ...)                                                               \
    do {                                                                                                           \
        if (cond) {                                                                                                \
            CLA_ENTER(ctx);                                                                                        \
            return cla_fail((clattn_context *)(ctx), (status), __VA_ARGS__);                                       \
        }                                                                                                          \
    } while (0)
/* Appends text to the last error (used for build logs). */
void cla_append_error(clattn_context *ctx, const char *text);
void cla_log(const clattn_context *ctx, clattn_log_level level, const char *fmt, ...) CLA_PRINTF(3, 4);
/* The name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), or NULL if it is not one. */
const char *cla_cl_error_name(cl_int code);
/* The same for messages: "" when the code has no name (the number is printed beside it). */
const char *cla_cl_error_text(cl_int code);
/* Writes a formatted message into a caller's optional buffer. */
void cla_write_message(char *buffer, size_t size, const char *fmt, ...) CLA_PRINTF(3, 4);

/* ---- hashing (hash.c) ---- */

typedef struct cla_hash {
    uint64_t a, b; /* two independent 64-bit FNV-1a lanes: 128 bits in all */
} cla_hash;

void cla_hash_init(cla_hash *h);
void cla_hash_bytes(cla_hash *h, const void *data, size_t size);
void cla_hash_string(cla_hash *h, const char *s); /* hashes the string and its terminating NUL */
/* 32 lowercase hex digits and a NUL. */
void cla_hash_hex(const cla_hash *h, char out[33]);

/* ---- devices (device.c) ---- */

typedef struct cla_device_entry {
    cl_platform_id platform;
    cl_device_id device;
    clattn_device_info info;
} cla_device_entry;

/* Every device of every platform; the caller frees *entries. */
clattn_status cla_devices_enumerate(cla_device_entry **entries, size_t *count, char *message, size_t message_size);
/* Index into entries of the device that spec selects (spec NULL/"" means CLATTN_DEVICE, then default). */
clattn_status cla_devices_pick(const cla_device_entry *entries, size_t count, const char *spec, size_t *index,
                               char *message, size_t message_size);
clattn_status cla_device_query_info(cl_platform_id platform, cl_device_id device, clattn_device_info *info);
/* Indices into entries of the devices that a list spec selects (clattn_context_options.devices: "P:D,P:D",
 * "all", "all:gpu", ...), at most `capacity`; every one on one platform, none twice. */
clattn_status cla_devices_pick_list(const cla_device_entry *entries, size_t count, const char *spec,
                                    size_t *indices, size_t capacity, size_t *picked, char *message,
                                    size_t message_size);
/* Whether two devices may share one multi-device context: the same platform, model and driver, so that one
 * program binary (and one disk-cache key) serves both. Writes why not into `why` when they may not. */
bool cla_devices_compatible(const clattn_device_info *a, const clattn_device_info *b, char *why, size_t why_size);

/* ---- kernel sources (sources.c) ---- */

/* The text of kernels_cl/<name>.cl, embedded or from CLATTN_KERNEL_DIR. *text is malloc'd; the caller frees it. */
clattn_status cla_source_load(clattn_context *ctx, const char *name, char **text, size_t *length);
/* The names of all embedded kernel sources (without .cl), in a NULL-terminated static list. */
const char *const *cla_source_names(void);

/* ---- programs (program.c) ---- */

/* A program from one device binary, for every device of the context (they are one model, so the binary is
 * replicated), then built with `options`. On failure returns NULL with *err set, *step naming the call and, if
 * `log` is not NULL, the driver's build log in *log (malloc'd, or NULL). */
cl_program cla_program_from_binary(clattn_context *ctx, const unsigned char *binary, size_t size,
                                   const char *options, cl_int *err, const char **step, char **log);

/* A built program for kernels_cl/<source_name>.cl with these extra build options (-D defines), from the memory
 * cache, the disk cache, or a fresh build. The context owns the program. */
clattn_status cla_program_get(clattn_context *ctx, const char *source_name, const char *options,
                              cl_program *program);
/* A kernel from such a program, created once and kept by the context. */
clattn_status cla_kernel_get(clattn_context *ctx, const char *source_name, const char *options,
                             const char *kernel_name, cl_kernel *kernel);
/* The same for a program whose source has `prefix` (text that defines things for it: the caller's score_mod and
 * mask_mod) ahead of it; NULL: none. The prefix is part of the program's identity in both caches. */
clattn_status cla_program_get_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                       const char *options, cl_program *program);
clattn_status cla_kernel_get_prefixed(clattn_context *ctx, const char *source_name, const char *prefix,
                                      const char *options, const char *kernel_name, cl_kernel *kernel);
void cla_programs_release(clattn_context *ctx);
/* The device's build log of a program (malloc'd), or NULL if there is none or it cannot be read. */
char *cla_build_log(const clattn_context *ctx, cl_program program);
/* The disk-cache key of a program (malloc'd), or NULL if its source cannot be loaded. */
char *cla_program_cache_key(clattn_context *ctx, const char *source_name, const char *options);
/* The complete build options of a program (base, the operation's, CLATTN_BUILD_OPTIONS), malloc'd. */
char *cla_program_full_options(const clattn_context *ctx, const char *options);
/* The device binary of a program (with the text `prefix` ahead of its source, or NULL) for this context's device,
 * built (or found) as cla_program_get_prefixed would; *binary is malloc'd. Used by `clattn kernels export --build`.
 */
clattn_status cla_program_binary(clattn_context *ctx, const char *source_name, const char *prefix,
                                 const char *options, unsigned char **binary, size_t *size);

/* Recording (`clattn kernels export`): while on, cla_program_get notes each program an operation asks for and
 * builds nothing, cla_kernel_get hands back NULL kernels, and every device operation fails (cla_fault_due), so
 * that driving an operation lists exactly the programs it would build, without running anything. */
typedef struct cla_recorded_program {
    char *source_name;
    char *prefix; /* the caller's score_mod/mask_mod code ahead of the source (sdpa_mods.c), or NULL */
    char *options;
} cla_recorded_program;
void cla_program_record_begin(clattn_context *ctx);
/* The programs recorded so far, in the order first asked for; valid until cla_program_record_end. */
const cla_recorded_program *cla_program_recorded(const clattn_context *ctx, size_t *count);
void cla_program_record_end(clattn_context *ctx);

/* ---- prebuilt binaries (binaries.c) ---- */

/* Reads the binary directory and the compile policy from the options and the environment. */
clattn_status cla_binaries_setup(clattn_context *ctx, const clattn_context_options *options, const cla_env *env);
/* Whether programs must come from prebuilt binaries (no compiler, or compilation turned off). */
bool cla_binaries_required(const clattn_context *ctx);
/* Loads the prebuilt binary of a program. When it is absent: CLATTN_ERROR_NO_COMPILER if binaries are required
 * (the message names the file, the program and how to make it), else a miss (*program NULL, CLATTN_SUCCESS). A file
 * that does not check out or that the driver rejects: CLATTN_ERROR_INVALID_BINARY with the reason. */
clattn_status cla_binary_load(clattn_context *ctx, const char *source_name, const char *full_options,
                              const char *key, cl_program *program);
/* The path of the binary file for `key` in `dir` (malloc'd). */
char *cla_binary_path(const char *dir, const char *key);

/* ---- disk cache (disk_cache.c) ---- */

/* The cache directory from the environment, created private to the user; NULL (with a logged reason) if disabled or
 * unusable. The caller frees the result. */
char *cla_disk_cache_dir(const clattn_context *ctx, const cla_env *env);
/* Looks up `key` (any text); on a hit returns true and a malloc'd binary. A corrupt or mismatched entry is removed,
 * counted as a reject and reported as a miss. */
bool cla_disk_cache_read(clattn_context *ctx, const char *key, unsigned char **binary, size_t *size);
/* Stores a binary under `key` atomically; failures are logged, never fatal. */
void cla_disk_cache_write(clattn_context *ctx, const char *key, const unsigned char *binary, size_t size);
/* Why the bytes of a cache entry cannot be trusted for `key`, or NULL if they can; then *binary points into `data`.
 * The entry's bytes are untrusted input (fuzzed by tests/fuzz/fuzz_cache_entry.c). */
const char *cla_disk_cache_check_entry(const unsigned char *data, size_t size, const char *key,
                                       const unsigned char **binary, size_t *binary_size);
/* The path of the cache file that holds `key` (malloc'd), for tests and diagnostics. */
char *cla_disk_cache_path(const clattn_context *ctx, const char *key);

/* Entry files: the format of disk-cache entries, shared by prebuilt binaries (binaries.c). A file is named by the
 * hash of its key: "<32 hex digits>.bin". */
#define CLA_ENTRY_NAME_SIZE 37
void cla_entry_file_name(const char *key, char name[CLA_ENTRY_NAME_SIZE]);
/* Reads the entry file at `path` and checks it against `key` (cla_disk_cache_check_entry). Returns NULL and a
 * malloc'd copy of the binary, or why the file cannot be used; *missing is true when the file does not exist. */
const char *cla_entry_read(const char *path, const char *key, unsigned char **binary, size_t *size, bool *missing);
/* Writes an entry file atomically (a temporary file renamed into place). `unique` (any address) keeps concurrent
 * writers' temporary names apart. Returns 0 or an errno value. */
int cla_entry_write(const char *path, const char *key, const unsigned char *binary, size_t size,
                    const void *unique);

/* ---- device temporaries and fault injection (enqueue.c) ---- */

/* For tests of the error paths: the n-th device operation from now (a temporary allocation, a kernel launch, a
 * barrier, a CLBlast call) fails as the driver would; 0 turns it off. */
void cla_fault_inject(clattn_context *ctx, long n);
/* Whether the device operation about to run is the one that must fail. */
bool cla_fault_due(clattn_context *ctx);
/* Releases a temporary from cla_temp_buffer (NULL is fine) and clears the handle. */
void cla_temp_release(clattn_context *ctx, cl_mem *mem);

/* A sub-buffer of `parent`, bytes [origin, origin + size), counted with the temporaries (it allocates nothing)
 * and released with cla_temp_release. `origin` must be aligned to ctx->sub_buffer_align. */
clattn_status cla_temp_sub_buffer(clattn_context *ctx, cl_mem parent, size_t origin, size_t size, const char *what,
                                  cl_mem *out);

/* Starts the accounting of one operation's temporary device memory. */
void cla_temp_begin(clattn_context *ctx);
/* A read-write device buffer for an operation's own use, counted in the context's memory statistics. `what` names
 * it in the error message. */
clattn_status cla_temp_buffer(clattn_context *ctx, size_t bytes, const char *what, cl_mem *out);
/* The same, filled with `bytes` (> 0) of host data at creation (no queue is involved, so the host memory may be
 * reused as soon as it returns); `access` is CL_MEM_READ_ONLY, or CL_MEM_READ_WRITE where kernels write it. */
clattn_status cla_temp_buffer_from(clattn_context *ctx, size_t bytes, const void *host, cl_mem_flags access,
                                   const char *what, cl_mem *out);

/* ---- tensor views (tensor.c) ---- */

/* Number of elements (SIZE_MAX if it overflows). */
size_t cla_tensor_elements(const clattn_tensor *t);
/* The byte range [begin, end) a view touches (begin == end for an empty view), or SIZE_OVERFLOW. */
clattn_status cla_tensor_extent(clattn_context *ctx, const clattn_tensor *t, const char *name, size_t *begin,
                                size_t *end);
/* That `buffer` (named `name` in messages) is a cl_mem of the context's cl_context; its size in *size. */
clattn_status cla_buffer_check(clattn_context *ctx, const char *name, cl_mem buffer, size_t *size);
/* Checks dtype, buffer, overflow, bounds against CL_MEM_SIZE, the buffer's context and, for outputs, that no two
 * elements share memory. Returns the byte range like cla_tensor_extent. `name` appears in the message. */
clattn_status cla_tensor_check(clattn_context *ctx, const clattn_tensor *t, const char *name, bool is_output,
                               size_t *begin, size_t *end);
/* INVALID_SHAPE unless size[dim] of tensor `name` is `want`; the message names the dimension and says what `want`
 * is (`what`, e.g. "q's batch"). */
clattn_status cla_expect_size(clattn_context *ctx, const clattn_tensor *t, const char *name, int dim, size_t want,
                              const char *what);

/* The bytes [begin, end) of a buffer that one tensor of a call touches, for the rule that outputs share memory with
 * nothing else. Ranges with the same nonzero alias_group may overlap (an output that is deliberately its input). */
typedef struct cla_range {
    const char *name;
    cl_mem buffer;
    size_t begin, end;
    bool output;
    int alias_group;
} cla_range;

/* Fails with INVALID_ARGUMENT, naming both tensors, when an output range overlaps any other range. `hint` (may be
 * "") is appended to the message. */
clattn_status cla_check_overlaps(clattn_context *ctx, const cla_range *ranges, size_t n, const char *hint);

/* ---- small helpers ---- */

/* CLATTN_ERROR_NULL_POINTER, with "<name> is NULL" for the first of the `n` arguments that is NULL, or
 * CLATTN_SUCCESS when none is. */
clattn_status cla_check_given(clattn_context *ctx, const void *const *args, const char *const *names, size_t n);

/* A dtype that tensors of values may be stored in (every one but BOOL, which only masks take). */
static inline bool cla_is_float_dtype(clattn_dtype d) {
    return d == CLATTN_DTYPE_F32 || d == CLATTN_DTYPE_F16 || d == CLATTN_DTYPE_BF16;
}

char *cla_strdup(const char *s);
/* Room for one more element in a growable array of `count` elements of `size` bytes: `items` itself while there is
 * room, else the array reallocated to twice *capacity (at least `initial`), with *capacity updated; NULL when out
 * of memory, the array left as it was. */
void *cla_grow(void *items, size_t *capacity, size_t count, size_t size, size_t initial);
/* After an item of a comma-separated list: steps over the comma that follows it, if any. False when that comma ends
 * the list (an empty last item). */
bool cla_list_next(const char **p);
/* Safe string formatting into a fixed buffer (always NUL-terminates). */
void cla_strlcpy(char *dst, const char *src, size_t size);
/* Case-insensitive substring search. */
bool cla_contains_nocase(const char *haystack, const char *needle);
/* The same for a word of its own, with no letter or digit on either side ("Intel(R) Corporation" holds "intel",
 * "AuthenticAMD" does not hold "amd"). */
bool cla_has_word_nocase(const char *text, const char *word);

#endif /* CLATTN_INTERNAL_H */
