// SPDX-License-Identifier: Apache-2.0
/* clattn: portable attention on any OpenCL device.
 *
 * The one public header. C11; usable from C++ (extern "C").
 *
 * Conventions
 * - Every fallible function returns clattn_status. CLATTN_SUCCESS is 0; OpenCL's own (negative) error codes pass
 *   through unchanged; clattn's own codes live in the range -3000..-3999. clattn_status_string() names any code and
 *   clattn_context_last_error() gives the detailed message of the last failure on a context.
 * - The library never aborts, exits or prints. Warnings (a corrupt cache entry rebuilt, a cache directory that
 *   cannot be written) go to the log callback installed with the context options, if any.
 * - Handles are opaque, with create/free pairs; every free function accepts NULL.
 * - Threading: a context may be used by one thread at a time. Separate contexts are independent and may be used
 *   concurrently from different threads. Free functions without a context (version, status strings, device
 *   enumeration) are thread-safe.
 * - Sizes and offsets of tensors are in elements, not bytes.
 *
 * Stability
 * - Everything here is stable unless its section says EXPERIMENTAL: a stable declaration keeps its meaning within a
 *   minor series, and status values never change once released. While the version is 0.x, the minor version (and
 *   with it the shared library's SONAME, libclattn.so.0.MINOR) changes whenever the API or ABI does.
 * - EXPERIMENTAL sections (tuning) may change in any minor release.
 * - include/clattn_advanced.h holds the advanced API for tools, tests and kernel development (kernel-parameter
 *   overrides, program recording and export, the tuner's view of the kernels); all of it is experimental.
 */
#ifndef CLATTN_H
#define CLATTN_H

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(CLATTN_BUILDING_LIBRARY)
#define CLATTN_API __declspec(dllexport)
#else
#define CLATTN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define CLATTN_API __attribute__((visibility("default")))
#else
#define CLATTN_API
#endif

/* ---- Version ------------------------------------------------------------------------------------------------- */

#define CLATTN_VERSION_MAJOR  0
#define CLATTN_VERSION_MINOR  2
#define CLATTN_VERSION_PATCH  0
#define CLATTN_VERSION_NUMBER (CLATTN_VERSION_MAJOR * 10000 + CLATTN_VERSION_MINOR * 100 + CLATTN_VERSION_PATCH)
#define CLATTN_VERSION_STRING "0.2.0"

/* The version of the library actually loaded, as CLATTN_VERSION_NUMBER would give it. */
CLATTN_API unsigned clattn_version_number(void);
CLATTN_API const char *clattn_version_string(void);

/* ---- Status codes -------------------------------------------------------------------------------------------- */

typedef int32_t clattn_status;

enum {
    CLATTN_SUCCESS = 0,
    /* OpenCL's codes (CL_OUT_OF_RESOURCES, CL_BUILD_PROGRAM_FAILURE, ...) are returned as they are. */

    CLATTN_ERROR_INVALID_ARGUMENT = -3000,    /* an argument is wrong in a way no specific code below names */
    CLATTN_ERROR_NULL_POINTER = -3001,        /* a required pointer or handle is NULL */
    CLATTN_ERROR_INVALID_SHAPE = -3002,       /* tensor sizes that do not fit together */
    CLATTN_ERROR_INVALID_STRIDE = -3003,      /* strides that alias elements of an output or are impossible */
    CLATTN_ERROR_BUFFER_TOO_SMALL = -3004,    /* a tensor runs past the end of its cl_mem */
    CLATTN_ERROR_INVALID_HEADS = -3005,       /* query heads not a multiple of key/value heads */
    CLATTN_ERROR_INVALID_HEAD_DIM = -3006,    /* head dimension 0 or beyond what the device supports */
    CLATTN_ERROR_INVALID_DTYPE = -3007,       /* unknown or unsupported element type */
    CLATTN_ERROR_INVALID_MASK = -3008,        /* mask shape, type or window that cannot be used */
    CLATTN_ERROR_SIZE_OVERFLOW = -3009,       /* a size whose byte count overflows size_t */
    CLATTN_ERROR_OUT_OF_HOST_MEMORY = -3010,  /* malloc failed */
    CLATTN_ERROR_NO_PLATFORM = -3011,         /* the OpenCL ICD loader found no platform */
    CLATTN_ERROR_NO_DEVICE = -3012,           /* no device matches the selection */
    CLATTN_ERROR_INVALID_DEVICE_SPEC = -3013, /* a device selection string that cannot be parsed */
    CLATTN_ERROR_BUILD_FAILED = -3014,        /* a kernel failed to compile; the build log is in last_error */
    CLATTN_ERROR_KERNEL_NOT_FOUND = -3015,    /* no kernel source or kernel function of that name */
    CLATTN_ERROR_NO_COMPILER = -3016,         /* the device cannot compile and no prebuilt binary was found */
    CLATTN_ERROR_INVALID_BINARY = -3017,      /* a prebuilt binary that does not load on this device */
    CLATTN_ERROR_IO = -3018,                  /* reading or writing a file failed */
    CLATTN_ERROR_INVALID_FILE = -3019,        /* a file that is malformed, truncated or of the wrong kind */
    CLATTN_ERROR_CLBLAST = -3020,             /* CLBlast reported an error; its code is in last_error */
    CLATTN_ERROR_UNSUPPORTED = -3021,         /* valid, but not supported on this device or by this build */
    CLATTN_ERROR_CAPACITY = -3022,            /* a fixed-capacity object (a KV cache) is full */
    CLATTN_ERROR_INTERNAL = -3023,            /* a bug in clattn; please report it with last_error */
    CLATTN_ERROR_DEVICE_LIMIT = -3024, /* no kernel parameters fit the device's local memory or work-group limits */
    CLATTN_ERROR_INVALID_SEQLENS = -3025,     /* cu_seqlens or seqlens_k out of order or past their tensors */
    CLATTN_ERROR_INVALID_BLOCK_TABLE = -3026, /* a paged cache's block table names a page that does not exist */
    CLATTN_ERROR_INVALID_SCALE = -3027,       /* an 8-bit K/V scale tensor missing, of the wrong shape or type */
    CLATTN_ERROR_INVALID_SLOT = -3028,        /* a slot mapping names a slot past the cache, or one slot twice */
};

/* A short, stable name and description for any status: clattn's own, OpenCL's, or unknown ones. Never NULL. */
CLATTN_API const char *clattn_status_string(clattn_status status);

/* ---- Devices ------------------------------------------------------------------------------------------------- */

typedef enum clattn_device_type {
    CLATTN_DEVICE_TYPE_OTHER = 0,
    CLATTN_DEVICE_TYPE_GPU = 1,
    CLATTN_DEVICE_TYPE_CPU = 2,
    CLATTN_DEVICE_TYPE_ACCELERATOR = 3,
} clattn_device_type;

/* Everything clattn knows about one OpenCL device. Strings are NUL-terminated and truncated if longer. */
typedef struct clattn_device_info {
    unsigned platform_index;
    unsigned device_index;
    char platform_name[128];
    char platform_vendor[128];
    char platform_version[128];
    char name[128];
    char vendor[128];
    char driver_version[128];
    char device_version[128];   /* "OpenCL 3.0 ..." */
    char opencl_c_version[128]; /* "OpenCL C 1.2 ..." */
    clattn_device_type type;
    unsigned compute_units;
    unsigned max_clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    int local_mem_is_dedicated; /* 1: real on-chip local memory; 0: emulated in global memory */
    size_t max_work_group_size;
    unsigned max_work_item_dims;
    size_t max_work_item_sizes[3];
    unsigned preferred_vector_width_float;
    unsigned preferred_vector_width_half;
    unsigned native_vector_width_float;
    int has_fp16;      /* cl_khr_fp16: half arithmetic (fp16 storage works everywhere) */
    int has_fp64;      /* cl_khr_fp64 */
    int has_subgroups; /* cl_khr_subgroups or cl_intel_subgroups */
    int compiler_available;
    int is_default; /* the device that the default selection picks */
} clattn_device_info;

/* A short name of a device type: "gpu", "cpu", "accelerator"; "other" for any other value. Never NULL. */
CLATTN_API const char *clattn_device_type_name(clattn_device_type type);

/* Enumerates every device of every platform in platform, device order.
 * Writes up to `capacity` entries to `infos` (which may be NULL when capacity is 0) and the total number of devices
 * to `*count`. `message`, if not NULL, receives a readable explanation on failure (at most message_size bytes).
 * Returns CLATTN_ERROR_NO_PLATFORM when no OpenCL platform is installed. */
CLATTN_API clattn_status clattn_devices_list(clattn_device_info *infos, size_t capacity, size_t *count,
                                             char *message, size_t message_size);

/* Which device a selection string picks, without creating a context. Spec forms (see clattn_context_create):
 * NULL or "" (default, or the CLATTN_DEVICE environment variable), "gpu", "cpu", "accelerator", "P:D", or a
 * case-insensitive substring of the device or platform name. */
CLATTN_API clattn_status clattn_devices_select(const char *spec, clattn_device_info *info, char *message,
                                               size_t message_size);

/* ---- Contexts ------------------------------------------------------------------------------------------------ */

/* A context owns a device (or several of one model, clattn_context_options.devices), a command queue per device,
 * compiled programs and the last error. One thread at a time. */
typedef struct clattn_context clattn_context;

typedef enum clattn_log_level {
    CLATTN_LOG_DEBUG = 0,
    CLATTN_LOG_INFO = 1,
    CLATTN_LOG_WARNING = 2,
} clattn_log_level;

typedef void (*clattn_log_fn)(void *user, clattn_log_level level, const char *message);

/* Where a context's kernel programs come from (clattn_context_options.compile). */
typedef enum clattn_compile_policy {
    /* Compile from source (kept in memory and in the on-disk cache), except: a device that reports no compiler
     * loads prebuilt binaries from the binary directory, and an accelerator (an FPGA, whose compiles take hours)
     * uses a prebuilt binary from there when one exists. */
    CLATTN_COMPILE_AUTO = 0,
    /* Never compile: every program comes from the binary directory; a missing one is CLATTN_ERROR_NO_COMPILER,
     * naming the file looked for. */
    CLATTN_COMPILE_NEVER = 1,
} clattn_compile_policy;

typedef struct clattn_context_options {
    /* Device selection; NULL or "" uses CLATTN_DEVICE, then the default (first GPU, else accelerator, else CPU).
     * "gpu" | "cpu" | "accelerator" | "P:D" (platform and device index) | a substring of the device or platform
     * name (case-insensitive). */
    const char *device;
    /* Create the command queue with profiling enabled (needed for event timings). Default 0. */
    int enable_profiling;
    /* Receives warnings and debug messages; NULL discards them. */
    clattn_log_fn log;
    void *log_user;
    /* Split attention kernels so that one launch covers at most this many query-key pairs (whole batch-head
     * slices, at least one per launch): a GPU that also drives a display may end a kernel that runs too long.
     * 0 (the default) means no limit. CLATTN_MAX_LAUNCH_PAIRS in the environment overrides it. */
    uint64_t max_launch_pairs;
    /* A directory of prebuilt program binaries, as `clattn kernels export --build` or `clattn kernels pack` write
     * them (files named by the hash of each program's key, checked against the key before use). NULL: the
     * CLATTN_BINARY_DIR environment variable, if set. */
    const char *binary_dir;
    /* CLATTN_COMPILE_AUTO (the default) or CLATTN_COMPILE_NEVER; with AUTO, CLATTN_COMPILE=0 in the environment
     * means NEVER. */
    clattn_compile_policy compile;
    /* Where a failed creation explains itself (there is no context to ask); may be NULL. */
    char *error_message;
    size_t error_message_size;
    /* Several devices of one platform in one context (NULL or "": one device, chosen by `device`, which is ignored
     * when this is set): a comma-separated list of device specs as for `device` ("0:0,0:1"), or "all" (every
     * device of the default device's platform and type), "all:gpu", "all:cpu", "all:accelerator" (every device of
     * that type on the platform of the first one). The devices must be the same model with the same driver (name,
     * vendor, driver and device versions), so that one program binary serves them all; a mixed set is
     * CLATTN_ERROR_UNSUPPORTED (use one context per device). The context gets one cl_context over the devices and
     * one in-order queue per device; attention calls (clattn_sdpa, and the attention step of clattn_mha) split
     * their batch (or, with one batch item, their key/value head groups) over the devices, with results identical
     * to one device. The first device is the primary one: clattn_context_cl_device, clattn_context_cl_queue and
     * clattn_context_device_info give it. */
    const char *devices;
} clattn_context_options;

/* Fills `options` with the defaults. */
CLATTN_API void clattn_context_options_init(clattn_context_options *options);

/* Creates a context on the device that `device_spec` selects (see clattn_context_options.device). */
CLATTN_API clattn_status clattn_context_create(const char *device_spec, clattn_context **context);
CLATTN_API clattn_status clattn_context_create_with_options(const clattn_context_options *options,
                                                            clattn_context **context);

/* Joins an application's own OpenCL objects. clattn retains them (and releases its references on free). The queue
 * must belong to `cl_ctx` and `device`. `options` may be NULL; its device field is ignored. */
CLATTN_API clattn_status clattn_context_create_from_cl(cl_context cl_ctx, cl_device_id device,
                                                       cl_command_queue queue,
                                                       const clattn_context_options *options,
                                                       clattn_context **context);

CLATTN_API void clattn_context_free(clattn_context *context);

/* The detailed message of the last failed call on this context ("" if none). Valid until the next call. */
CLATTN_API const char *clattn_context_last_error(const clattn_context *context);

/* The primary (first) device of the context. */
CLATTN_API clattn_status clattn_context_device_info(const clattn_context *context, clattn_device_info *info);
/* How many devices the context runs on (1 unless created with clattn_context_options.devices; 0 for NULL). */
CLATTN_API size_t clattn_context_device_count(const clattn_context *context);
/* The device at `index` (0 is the primary one): its information and its OpenCL handle. An index past the last
 * device is CLATTN_ERROR_INVALID_ARGUMENT (and a NULL cl_device_id). */
CLATTN_API clattn_status clattn_context_device_info_at(const clattn_context *context, size_t index,
                                                       clattn_device_info *info);
CLATTN_API cl_device_id clattn_context_cl_device_at(const clattn_context *context, size_t index);
CLATTN_API cl_context clattn_context_cl_context(const clattn_context *context);
CLATTN_API cl_device_id clattn_context_cl_device(const clattn_context *context);
CLATTN_API cl_command_queue clattn_context_cl_queue(const clattn_context *context);

/* Counters of the program caches, for diagnosing start-up time. */
typedef struct clattn_cache_stats {
    uint64_t memory_hits;  /* programs found already built in this context */
    uint64_t disk_hits;    /* programs loaded from the on-disk binary cache */
    uint64_t disk_writes;  /* programs written to the on-disk cache */
    uint64_t disk_rejects; /* on-disk entries found corrupt, stale or mismatched, and rebuilt */
    uint64_t builds;       /* programs compiled from source */
    uint64_t binary_loads; /* programs loaded from the prebuilt binary directory */
} clattn_cache_stats;

CLATTN_API clattn_status clattn_context_cache_stats(const clattn_context *context, clattn_cache_stats *stats);

/* Device memory that operations allocated for their own temporaries (inputs and outputs are the caller's). */
typedef struct clattn_memory_stats {
    uint64_t last_call_bytes; /* allocated by the most recent operation on this context */
    uint64_t peak_call_bytes; /* the most any single operation on this context has allocated */
} clattn_memory_stats;

CLATTN_API clattn_status clattn_context_memory_stats(const clattn_context *context, clattn_memory_stats *stats);

/* ---- Tensors ------------------------------------------------------------------------------------------------- */

typedef enum clattn_dtype {
    CLATTN_DTYPE_F32 = 0,
    CLATTN_DTYPE_F16 = 1,  /* IEEE half storage; arithmetic is always fp32 */
    CLATTN_DTYPE_BF16 = 2, /* bfloat16 storage; arithmetic is always fp32 */
    CLATTN_DTYPE_BOOL = 3, /* one byte per element, nonzero = true; boolean masks only */
    /* 8-bit key/value storage, scaled inside the attention kernels (clattn_sdpa_desc.k_scale, v_scale): */
    CLATTN_DTYPE_I8 = 4,       /* signed 8-bit integers; value = i8 * scale */
    CLATTN_DTYPE_FP8_E4M3 = 5, /* OCP 8-bit float E4M3 (bias 7, no infinities, max 448); value = fp8 * scale */
    CLATTN_DTYPE_I32 = 6,      /* signed 32-bit integers; block masks only (clattn_sdpa_desc.block_mask) */
} clattn_dtype;

/* Bytes per element of a dtype, 0 for an unknown one. */
CLATTN_API size_t clattn_dtype_size(clattn_dtype dtype);

/* A short name of a dtype: "f32", "f16", "bf16", "bool", "i8", "fp8", "i32"; "unknown" for any other value. Never
 * NULL. */
CLATTN_API const char *clattn_dtype_name(clattn_dtype dtype);

/* Host conversions between float and a storage type, rounding to nearest even as the device's storage does (IEEE
 * half: subnormals exact, overflow to infinity; bfloat16: the top half of a binary32; a NaN stays a quiet NaN;
 * I8: saturating to [-127, 127], NaN to 0; FP8_E4M3: saturating to +-448, NaN to NaN). No scale is applied here
 * (clattn_quantize_rows does that). pack writes `n` floats of `src` to `dst` stored as `dtype`, unpack reads them
 * back; `dst` needs no alignment and may be `src` itself. Any other dtype is CLATTN_ERROR_INVALID_DTYPE and writes
 * nothing. */
CLATTN_API clattn_status clattn_dtype_pack(clattn_dtype dtype, const float *src, void *dst, size_t n);
CLATTN_API clattn_status clattn_dtype_unpack(clattn_dtype dtype, const void *src, float *dst, size_t n);
/* The value `x` has after a round trip through storage type `dtype` (`x` itself for F32 and non-float types). */
CLATTN_API float clattn_dtype_round(clattn_dtype dtype, float x);

/* Quantizes `rows` rows of `cols` floats (row r at src + r * cols) to I8 or FP8_E4M3 as the attention kernels read
 * them: value = stored * scale. I8 rows get their own scale, max |x| / 127 (0 for a row of zeros), written to
 * scales[r]; FP8_E4M3 rows use the one scale in scales[0] (given, > 0), which `clattn_quantize_rows` does not
 * change. dst receives rows * cols bytes. This is what clattn_kv_append does on the device for new keys and values,
 * for callers that fill a cache on the host. */
CLATTN_API clattn_status clattn_quantize_rows(clattn_dtype dtype, const float *src, size_t rows, size_t cols,
                                              void *dst, float *scales);

/* A 4-D view of a device buffer: sizes [batch, heads, seq, dim] and strides, both in elements. A stride of 0
 * broadcasts that dimension (inputs and masks only; outputs must not alias). `offset` is in elements. */
typedef struct clattn_tensor {
    cl_mem buffer;
    size_t offset;
    clattn_dtype dtype;
    size_t size[4];
    size_t stride[4];
} clattn_tensor;

/* A tensor stored contiguously as [batch, heads, seq, dim]. */
CLATTN_API clattn_tensor clattn_tensor_bhld(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t heads,
                                            size_t seq, size_t dim);
/* A tensor stored contiguously as [batch, seq, heads, dim] (the layout projections produce), viewed as
 * [batch, heads, seq, dim] through its strides. */
CLATTN_API clattn_tensor clattn_tensor_blhd(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t heads,
                                            size_t seq, size_t dim);

/* ---- Scaled dot-product attention ---------------------------------------------------------------------------- */

/* Causal masking and its alignment when the query and key lengths differ:
 * TOP_LEFT: query i sees keys j <= i (PyTorch is_causal).
 * BOTTOM_RIGHT: query i sees keys j <= i + Lk - Lq (FlashAttention 2.1 and later). */
typedef enum clattn_causal {
    CLATTN_CAUSAL_NONE = 0,
    CLATTN_CAUSAL_TOP_LEFT = 1,
    CLATTN_CAUSAL_BOTTOM_RIGHT = 2,
} clattn_causal;

typedef enum clattn_impl {
    CLATTN_IMPL_AUTO = 0,    /* the library chooses (CLATTN_IMPL in the environment overrides) */
    CLATTN_IMPL_FUSED = 1,   /* flash-style kernel, O(L*d) memory; head dims up to CLATTN_MAX_FUSED_HEAD_DIM */
    CLATTN_IMPL_UNFUSED = 2, /* CLBlast GEMMs and a softmax kernel, O(Lq*Lk) memory; any head dim */
} clattn_impl;

/* Head dims (Dk and Dv, each on its own) that attention takes: 1..CLATTN_MAX_HEAD_DIM. The fused kernels keep a
 * query row and an output row per work-item, so they take 1..CLATTN_MAX_FUSED_HEAD_DIM (576: DeepSeek MLA's
 * 576/512, Gemma's 256 and 512); CLATTN_IMPL_AUTO runs a call with a wider head on the unfused implementation
 * (whatever CLATTN_IMPL says), and CLATTN_IMPL_FUSED with one is CLATTN_ERROR_INVALID_HEAD_DIM. Heads wider than
 * 256 run fused under AUTO on CPU devices only: the GPU kernel's rows would not stay in registers there, so other
 * devices take them unfused unless a call asks for CLATTN_IMPL_FUSED. The unfused implementation sizes nothing by
 * the head dim (it is a GEMM size and a kernel argument); the bound keeps every index the kernels form with it in
 * range and is far above any model's head or RNN width. Its temporaries grow with the width: where they pass what
 * the device may allocate, the call is CLATTN_ERROR_DEVICE_LIMIT. */
#define CLATTN_MAX_FUSED_HEAD_DIM 576
#define CLATTN_MAX_HEAD_DIM       65536

#define CLATTN_WINDOW_UNBOUNDED (-1)

/* Where the sliding window and ALiBi place query i among the keys when the query and key lengths differ:
 * DEFAULT: as the causal mask does (bottom-right with CLATTN_CAUSAL_BOTTOM_RIGHT, else top-left).
 * TOP_LEFT: at position i. BOTTOM_RIGHT: at position i + Lk - Lq, whatever the causal mask; FlashAttention aligns
 * its windows and ALiBi so even without a causal mask. */
typedef enum clattn_window_align {
    CLATTN_WINDOW_ALIGN_DEFAULT = 0,
    CLATTN_WINDOW_ALIGN_TOP_LEFT = 1,
    CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT = 2,
} clattn_window_align;

/* Options of one attention call. Initialise with clattn_sdpa_desc_init(); a field left at its default has no
 * effect. Shapes: q [B, Hq, Lq, Dk], k [B, Hkv, Lk, Dk], v [B, Hkv, Lk, Dv], out [B, Hq, Lq, Dv], Hq a multiple of
 * Hkv (grouped-query attention). */
/* A buffer read by the score_mod and mask_mod expressions (clattn_sdpa_desc.mod_buffers). */
#define CLATTN_MAX_MOD_BUFFERS 2
typedef enum clattn_mod_dtype {
    CLATTN_MOD_F32 = 0, /* read as __global const float * */
    CLATTN_MOD_I32 = 1, /* read as __global const int * */
} clattn_mod_dtype;
typedef struct clattn_mod_buffer {
    const char *name; /* a C identifier the expressions use; not b, h, q_idx, kv_idx, score, nor starting "cla" */
    cl_mem buffer;    /* NULL: no buffer (and none after it) */
    clattn_mod_dtype dtype;
    size_t count; /* elements; the buffer must hold them */
} clattn_mod_buffer;

typedef struct clattn_sdpa_desc {
    float scale;          /* NAN (the default) means 1/sqrt(Dk) */
    clattn_causal causal; /* default CLATTN_CAUSAL_NONE */
    /* Sliding window: query i sees keys j with i' - left <= j <= i' + right, where i' = i + Lk - Lq for
     * bottom-right alignment (window_align) and i' = i otherwise. CLATTN_WINDOW_UNBOUNDED (the default) removes
     * that side. */
    int64_t window_left;
    int64_t window_right;
    /* The alignment of the window and ALiBi; DEFAULT follows `causal`. An unknown value is
     * CLATTN_ERROR_INVALID_MASK. */
    clattn_window_align window_align;
    clattn_impl impl;
    /* Optional mask that broadcasts to [B, Hq, Lq, Lk] like PyTorch's attn_mask: each size is 1 or the full size
     * (clattn_mask_broadcasts), so [B, 1, 1, Lk] (padding), [1, 1, Lq, Lk] and [1, 1, 1, Lk] all work; a size-1
     * dimension is read with stride 0 whatever its stride says, and a stride of 0 broadcasts a full-size one.
     * Dtype F32/F16/BF16 is added to the scaled logits; dtype BOOL keeps a key where the mask is true (PyTorch
     * SDPA's convention). Any other size is CLATTN_ERROR_INVALID_MASK. NULL buffer: none. */
    clattn_tensor mask;
    /* Optional int32 [B] key lengths (padding): keys j >= key_lengths[b] are masked. NULL: none. */
    cl_mem key_lengths;
    size_t key_lengths_offset; /* elements */
    /* Optional output: F32 [B, Hq, Lq, 1], the natural log-sum-exp of each row's scaled, masked logits (-inf for a
     * fully masked row). NULL buffer: not written. */
    clattn_tensor lse;
    /* Optional output: the attention weights [B, Hq, Lq, Lk] (zeros for a fully masked row). NULL: not written. */
    clattn_tensor weights;
    /* Score modifiers, in every implementation, with every mask. They act on each scaled logit s = scale * q.k in
     * this order: the softcap, then ALiBi, then the masks (causal, window, key lengths, `mask`).
     * Logit softcap (Gemma 2): s = softcap * tanh(s / softcap). 0 (the default): none; a negative, NaN or infinite
     * value is CLATTN_ERROR_INVALID_ARGUMENT. */
    float softcap;
    /* Attention sinks (gpt-oss): F32 [1, Hq, 1, 1], one logit per query head that joins every row's softmax
     * denominator and contributes no value (the weights then sum to less than 1; lse includes it; a fully masked
     * row still gives zeros, with lse = the sink). NULL buffer: none. */
    clattn_tensor sinks;
    /* ALiBi: F32 [1, Hq, 1, 1], slope[h]; -slope[h] * |i' - j| is added to the logit, i' aligned as for the window
     * (i + Lk - Lq with bottom-right window_align, else i), computed in the kernels. NULL buffer: none. */
    clattn_tensor alibi_slopes;
    /* The caller's score and mask functions (FlexAttention's score_mod and mask_mod), as OpenCL C expressions
     * compiled into the fused kernels; NULL or "": none. They see `b`, `h`, `q_idx`, `kv_idx` (int: batch item,
     * query head, query row, key; always in range), the mod buffers below by their names, and OpenCL C's built-in
     * functions. score_mod also sees `score` (float: the scaled logit after softcap and ALiBi, natural units) and
     * gives the new logit; mask_mod gives nonzero where the key takes part. Both act before the other masks
     * (causal, window, key lengths, `mask`), and only on keys those leave in. An expression may not contain `;`,
     * `{`, `}`, `#`, a quote, a backslash or a line break, and its parentheses and brackets must balance
     * (CLATTN_ERROR_INVALID_ARGUMENT); one that does not compile is CLATTN_ERROR_BUILD_FAILED with the compiler's
     * log, where file "score_mod" or "mask_mod" line 1 is the expression. Each distinct expression is a program of
     * its own, built once and cached like any other. They need a fused kernel: AUTO runs one (at any head dim up to
     * CLATTN_MAX_FUSED_HEAD_DIM, on any device), and UNFUSED, weights or larger head dims are
     * CLATTN_ERROR_UNSUPPORTED. On packed and paged calls (seq_count, below) `b` is the sequence and `q_idx`,
     * `kv_idx` are positions inside it. */
    const char *score_mod;
    const char *mask_mod;
    /* Up to CLATTN_MAX_MOD_BUFFERS device buffers the expressions read as `__global const float *NAME` or
     * `__global const int *NAME`, from element 0; a NULL buffer ends the list. The expressions must index them in
     * range (count elements): the kernels do not check. */
    clattn_mod_buffer mod_buffers[CLATTN_MAX_MOD_BUFFERS];
    /* Block mask (FlexAttention's block_mask): I32 flags per (query block, key block), a tensor that broadcasts
     * like `mask` (each size 1 or the full size, clattn_mask_broadcasts; size-1 dimensions read with stride 0) to
     * [B, Hq, ceil(Lq / block_mask_q), ceil(Lk / block_mask_k)]. Query row i and key j of batch item b and head h
     * fall in block [b, h, i / block_mask_q, j / block_mask_k]. Flag 0: no key of the block takes part (the keys
     * are masked, as by `mask`), and the kernels skip the work of their tiles whose every (row, key) lies in such
     * blocks, so excluded tiles cost nothing. Flag 2 (a "full" block): every key of the block takes part as far as
     * mask_mod is concerned, which is not evaluated there (the other masks still apply). Any other nonzero flag:
     * the keys are evaluated as usual (mask_mod, then the other masks). A row whose every block is 0 is fully
     * masked (zeros, lse -inf). A wrong dtype or a shape that does not broadcast is CLATTN_ERROR_INVALID_MASK. Like
     * score_mod and mask_mod it needs a fused kernel (AUTO runs one); UNFUSED, weights and larger head dims are
     * CLATTN_ERROR_UNSUPPORTED. Packed and paged calls (seq_count, below) count blocks within each sequence: the
     * flags broadcast to [seq_count, Hq, ceil(max_q / block_mask_q), ceil(max_k / block_mask_k)], max_q and max_k
     * the longest sequence's query rows and keys, and query i and key j of sequence b (positions inside the
     * sequence, as for causal masks and windows there) fall in block [b, h, i / block_mask_q, j / block_mask_k].
     * NULL buffer: none. */
    clattn_tensor block_mask;
    /* The block mask's block sizes in query rows and keys: any positive value, independent of the kernels' tiles
     * (128 and 128 by default, FlexAttention's; 0 with a block mask is CLATTN_ERROR_INVALID_ARGUMENT). */
    size_t block_mask_q, block_mask_k;

    /* ---- Serving formats: packed variable-length batches, paged KV caches, 8-bit KV (experimental) ----
     * The index arrays below are host memory (int32), as the scheduler of a serving engine holds them: the call
     * checks every index before anything is enqueued, schedules the work by the real lengths (as FlashInfer's plan
     * step does), and copies them to the device with its commands, so they may be reused as soon as it returns.
     * They need the fused kernels (AUTO picks them; UNFUSED is CLATTN_ERROR_UNSUPPORTED), take no weights and no
     * key_lengths, and run on one device of the context. Masks broadcast to [B, Hq, max_q, max_k], indexed by the
     * positions inside each sequence (block masks likewise, by blocks of those positions); causal alignment,
     * windows and ALiBi apply per sequence, with the sequence's own key length as Lk; lse follows q's rows. */
    size_t seq_count; /* B: the sequences of a packed, paged or dense-cache (seqlens_k) call (0 with none) */
    /* Packed queries (FlashAttention's varlen): q [1, Hq, total_q, Dk], out [1, Hq, total_q, Dv] and lse
     * [1, Hq, total_q, 1]; sequence b is rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1] - 1. A [total, H, D] array is
     * clattn_tensor_blhd(buffer, dtype, 1, H, total, D). [seq_count + 1] entries from 0, never decreasing, ending
     * at total_q. NULL: q is [B, Hq, Lq, Dk] with B = seq_count. */
    const int32_t *cu_seqlens_q;
    /* Packed keys and values: k [1, Hkv, total_k, Dk], v [1, Hkv, total_k, Dv], indexed like cu_seqlens_q. */
    const int32_t *cu_seqlens_k;
    /* Paged KV cache (flash_attn_with_kvcache, vLLM): k [num_blocks, Hkv, block_size, Dk] and v [num_blocks, Hkv,
     * block_size, Dv], block_size a power of two from 8 to 256 (vLLM's [num_blocks, block_size, Hkv, D] cache is
     * clattn_tensor_blhd(buffer, dtype, num_blocks, Hkv, block_size, D)). Key j of sequence b is row
     * j % block_size of page block_table[b * block_table_stride + j / block_size]; sequence b has seqlens_k[b]
     * keys (at most block_table_stride * block_size). Pages may come in any order and be shared. */
    const int32_t *block_table; /* [seq_count, block_table_stride] */
    size_t block_table_stride;  /* max_blocks_per_seq: entries per sequence */
    /* [seq_count]. Without block_table it gives a dense cache its lengths (flash_attn_with_kvcache's
     * cache_seqlens): k [B, Hkv, Lk_cap, Dk] and v [B, Hkv, Lk_cap, Dv] with any strides, sequence b's keys their
     * first seqlens_k[b] rows (0 to Lk_cap, else CLATTN_ERROR_INVALID_SEQLENS; the rows past it are never read).
     * Unlike key_lengths, which only masks and keeps the alignment at the tensor's Lk, seqlens_k[b] is the
     * sequence's Lk for causal alignment, windows and ALiBi. */
    const int32_t *seqlens_k;
    /* 8-bit keys and values (k or v of dtype I8 or FP8_E4M3, each on its own): the kernels read them and scale
     * them in registers. The scale tensor (F32 or F16) broadcasts to [k.size[0], Hkv, k.size[2], 1]: one scale per
     * token and head ([.., Hkv, .., 1], as I8 caches use), or one per head ([1, Hkv, 1, 1], as FP8 caches use).
     * Required for an 8-bit k or v, and refused for any other. */
    clattn_tensor k_scale;
    clattn_tensor v_scale;
} clattn_sdpa_desc;

CLATTN_API void clattn_sdpa_desc_init(clattn_sdpa_desc *desc);

/* Whether a mask of sizes `mask_size` broadcasts to `shape` ([B, Hq, Lq, Lk] for attention): every size is 1 or
 * equal to the size in `shape`. This is NumPy's broadcasting rule once a mask of lower rank has been aligned to
 * four dimensions from the right ([Lk] as [1, 1, 1, Lk], [Lq, 1] as [1, 1, Lq, 1]); it is the one rule every call
 * taking a mask applies. Returns 1 or 0 (0 for a NULL argument). */
CLATTN_API int clattn_mask_broadcasts(const size_t mask_size[4], const size_t shape[4]);

/* out = softmax(q k^T * scale + mask) v on device buffers. Runs on `queue` (NULL: the context's queue), after the
 * events in `wait_list`; `event`, if not NULL, receives an event that completes when every output is written.
 * Does not wait for completion. On any error nothing is enqueued and no output is touched. In a context of several
 * devices (clattn_context_options.devices) the call is split over them, each part on its device's queue after the
 * wait list (and after what `queue` holds), joined on `queue` before `event`; `queue` may be any of its queues. */
CLATTN_API clattn_status clattn_sdpa(clattn_context *context, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                                     const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                                     cl_command_queue queue, cl_uint num_wait_events, const cl_event *wait_list,
                                     cl_event *event);

/* Host-memory convenience: every array is float32, contiguous [B, H, L, D]; it is converted to `storage` on the
 * device and the call blocks until the outputs are back. */
typedef struct clattn_sdpa_host_desc {
    size_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
    size_t v_head_dim; /* 0 means head_dim */
    clattn_dtype storage;
    float scale; /* NAN: 1/sqrt(head_dim) */
    clattn_causal causal;
    int64_t window_left, window_right;
    clattn_window_align window_align; /* as clattn_sdpa_desc.window_align */
    clattn_impl impl;
    const float *mask;        /* additive, contiguous of sizes mask_shape, or NULL */
    const uint8_t *bool_mask; /* boolean, contiguous of sizes mask_shape, nonzero keeps the key, or NULL */
    /* The mask's sizes: each 1 (broadcast) or the full size of [batch, q_heads, q_len, kv_len]; 0 means the full
     * size (the default after init, all zeros: a full mask). E.g. {batch, 1, 1, 0} for a padding mask
     * [B, 1, 1, Lk]. Sizes that do not broadcast are CLATTN_ERROR_INVALID_MASK. */
    size_t mask_shape[4];
    const int32_t *key_lengths; /* [batch], or NULL */
    float *lse;                 /* optional output [B, Hq, Lq] */
    float *weights;             /* optional output [B, Hq, Lq, Lk] */
    float softcap;              /* logit softcap as clattn_sdpa_desc.softcap; 0: none */
    const float *sinks;         /* [q_heads] attention-sink logits, or NULL */
    const float *alibi_slopes;  /* [q_heads] ALiBi slopes, or NULL */
    /* score_mod, mask_mod and their buffers as in clattn_sdpa_desc, the buffers' contents in host memory
     * (float or int32_t by dtype; data NULL ends the list). */
    const char *score_mod, *mask_mod;
    struct {
        const char *name;
        const void *data;
        clattn_mod_dtype dtype;
        size_t count;
    } mod_buffers[CLATTN_MAX_MOD_BUFFERS];
    /* The block mask as in clattn_sdpa_desc: int32 flags, contiguous of sizes block_mask_shape (each 1 or the full
     * size of [batch, q_heads, ceil(q_len / block_mask_q), ceil(kv_len / block_mask_k)]; 0 means the full size), or
     * NULL; block sizes 128 by default. */
    const int32_t *block_mask;
    size_t block_mask_shape[4];
    size_t block_mask_q, block_mask_k;
} clattn_sdpa_host_desc;

CLATTN_API void clattn_sdpa_host_desc_init(clattn_sdpa_host_desc *desc);
CLATTN_API clattn_status clattn_sdpa_host(clattn_context *context, const clattn_sdpa_host_desc *desc,
                                          const float *q, const float *k, const float *v, float *out);

/* ---- Writing new keys and values into a KV cache (experimental) --------------------------------------------- */

/* clattn_kv_append writes T new keys and values into their slots of a key cache and a value cache, as vLLM's
 * reshape_and_cache does: converted to the caches' storage types, and quantized on the device for 8-bit caches.
 *
 * k_new [1, Hkv, T, Dk] and v_new [1, Hkv, T, Dv] are F32, F16 or BF16 (a [T, Hkv, D] array is
 * clattn_tensor_blhd(buffer, dtype, 1, Hkv, T, D)). The caches, k_cache [N, Hkv, S, Dk] and v_cache [N, Hkv, S,
 * Dv], are of any dtype but BOOL and have N * S slots each: slot s is row s % S of index s / S. For a paged cache
 * as clattn_sdpa reads it (vLLM's [num_blocks, block_size, Hkv, D] is clattn_tensor_blhd(buffer, dtype, num_blocks,
 * Hkv, block_size, D)), slot = page * block_size + offset, vLLM's slot mapping; for a dense cache [B, Hkv, L, D],
 * slot = b * L + position. Rows of the same storage type are copied bit for bit; others are converted to nearest
 * even as clattn_dtype_pack converts them.
 *
 * 8-bit caches (I8, FP8_E4M3) need their scale tensor in desc, F32 or F16 broadcasting to [N, Hkv, S, 1] as in
 * clattn_sdpa_desc. One of exactly [N, Hkv, S, 1] holds a scale per slot and head, and the call computes the scale
 * of each row it writes, max |x| / 127 for I8 and max |x| / 448 for FP8 (0 for a row of zeros), stores it (an F16
 * tensor rounds it) and quantizes the row with the stored scale; the scales of other slots are left as they are.
 * Any other shape ([1, Hkv, 1, 1] per head, [1, 1, 1, 1] per tensor) is read: each row is quantized with the scale
 * given for its slot and head. Either way the codes are clattn_quantize_rows's, bit for bit on any device: x times
 * (1 / scale) rounded to nearest even, saturating (I8 to [-127, 127], NaN to 0; FP8 to +-448, NaN stays NaN), with
 * 1 / scale taken as 0 for a scale that is zero, negative or NaN. Where that product is 0 * inf, which IEEE makes a
 * NaN of no fixed sign (a scale below 2^-128, or an infinite x with 1 / scale 0), a zero stays zero and an infinity
 * becomes a NaN of its sign. */
typedef struct clattn_kv_append_desc {
    /* Host int32 [T]: each new token's slot, or -1 to skip the token (padding). Every entry is checked before
     * anything is enqueued: one past the caches' N * S slots or below -1, and a slot given to two tokens, are
     * CLATTN_ERROR_INVALID_SLOT. The call copies it to the device with its commands, so it may be reused as soon as
     * the call returns. May be NULL when T is 0. */
    const int32_t *slot_mapping;
    /* The scales of an 8-bit k_cache and v_cache (required for them, refused for any other dtype), as above. */
    clattn_tensor k_scale;
    clattn_tensor v_scale;
} clattn_kv_append_desc;

CLATTN_API void clattn_kv_append_desc_init(clattn_kv_append_desc *desc);

/* Writes k_new and v_new into their slots of k_cache and v_cache (and the computed scales into desc's scale tensors
 * of one scale per slot). Sizes must agree: Hkv, T and the head dims between the new rows and their cache, N and S
 * between the caches (CLATTN_ERROR_INVALID_SHAPE). The caches and computed scale tensors may not share memory with
 * each other or with the new rows (CLATTN_ERROR_INVALID_ARGUMENT): a buffer of all the keys followed by all the
 * values (vLLM's [2, num_blocks, ...]) is fine, pages that interleave keys and values are not. Queue and events as
 * clattn_sdpa. Every argument is checked first: a refused call enqueues nothing and touches no cache or scale (a
 * driver that fails to enqueue the values' kernel after the keys' leaves the keys written). Runs on one device of
 * the context. */
CLATTN_API clattn_status clattn_kv_append(clattn_context *context, const clattn_kv_append_desc *desc,
                                          const clattn_tensor *k_new, const clattn_tensor *v_new,
                                          const clattn_tensor *k_cache, const clattn_tensor *v_cache,
                                          cl_command_queue queue, cl_uint num_wait_events,
                                          const cl_event *wait_list, cl_event *event);

/* -------------------------------------------------------------------------------------------------------------- */
/* Sequence tensors
 *
 * The layers below take activations as clattn_tensor views of size [batch, 1, seq, width] (the heads dimension is
 * 1): x, memory and out of multi-head attention, the queries, keys, values and context of seq2seq attention. Their
 * width dimension must have stride 1 (the projections are GEMMs on rows). */

/* A sequence tensor stored contiguously as [batch, seq, width]. */
CLATTN_API clattn_tensor clattn_tensor_seq(cl_mem buffer, clattn_dtype dtype, size_t batch, size_t seq,
                                           size_t width);

/* -------------------------------------------------------------------------------------------------------------- */
/* Multi-head attention
 *
 * out = [x +] concat_h(attention(x W_Q + b_Q, m W_K + b_K, m W_V + b_V)_h) W_O + b_O, where m is x (self-attention)
 * or a separate memory (cross-attention). Weights multiply from the right (x @ W), as in most checkpoints'
 * "in_features x out_features" layout; a PyTorch nn.Linear weight is the transpose. Projections run as CLBlast fp32
 * GEMMs; the weights, projected Q/K/V and the KV cache are fp32 on the device; x, memory and out may be F32, F16 or
 * BF16. */

typedef struct clattn_mha_config {
    size_t d_model;    /* width of x and of out */
    size_t kv_d_model; /* width of the memory in cross-attention; 0 means d_model */
    size_t heads;      /* query heads H */
    size_t kv_heads;   /* key/value heads (grouped-query attention, H a multiple of it); 0 means heads */
    size_t head_dim;   /* d_k, the width of each query and key head: 1..CLATTN_MAX_HEAD_DIM */
    size_t v_head_dim; /* d_v, the width of each value head (up to CLATTN_MAX_HEAD_DIM); 0 means head_dim */
} clattn_mha_config;

/* Host weights, float32, row-major: the packed w_qkv or else w_q, w_k and w_v; biases are optional (NULL). */
typedef struct clattn_mha_weights_host {
    /* [d_model, H*d_k + Hkv*d_k + Hkv*d_v], columns Q | K | V (requires kv_d_model == d_model) */
    const float *w_qkv;
    const float *b_qkv;           /* [H*d_k + Hkv*d_k + Hkv*d_v] (with w_qkv) */
    const float *w_q;             /* [d_model, H*d_k] */
    const float *w_k;             /* [kv_d_model, Hkv*d_k] */
    const float *w_v;             /* [kv_d_model, Hkv*d_v] */
    const float *b_q, *b_k, *b_v; /* [H*d_k], [Hkv*d_k], [Hkv*d_v] */
    const float *w_o;             /* [H*d_v, d_model] */
    const float *b_o;             /* [d_model] */
} clattn_mha_weights_host;

/* Device-resident weights of one layer, uploaded once and reused by every call. Belongs to the context it was
 * created with (and may only be used with it); free it before the context. */
typedef struct clattn_mha_weights clattn_mha_weights;

CLATTN_API void clattn_mha_weights_host_init(clattn_mha_weights_host *host);
CLATTN_API clattn_status clattn_mha_weights_create(clattn_context *context, const clattn_mha_config *config,
                                                   const clattn_mha_weights_host *host,
                                                   clattn_mha_weights **weights);
CLATTN_API void clattn_mha_weights_free(clattn_mha_weights *weights);
/* The layer's configuration with its defaults resolved (kv_d_model, kv_heads and v_head_dim never 0). */
CLATTN_API clattn_status clattn_mha_weights_config(const clattn_mha_weights *weights, clattn_mha_config *config);

/* A key/value cache for incremental decoding: the fp32 keys and values of one layer for up to `capacity` positions,
 * filled by clattn_mha calls. They are stored position-major, [batch, capacity, kv_heads, d], so that each call's
 * projections write their rows straight into place; clattn_kv_cache_tensors gives [batch, kv_heads, length, d]
 * views of them. Belongs to its context; one thread at a time, like the context. */
typedef struct clattn_kv_cache clattn_kv_cache;

CLATTN_API clattn_status clattn_kv_cache_create(clattn_context *context, const clattn_mha_config *config,
                                                size_t batch, size_t capacity, clattn_kv_cache **cache);
CLATTN_API void clattn_kv_cache_free(clattn_kv_cache *cache);
/* Forgets the cached tokens (length 0); keeps the memory. */
CLATTN_API void clattn_kv_cache_reset(clattn_kv_cache *cache);
CLATTN_API size_t clattn_kv_cache_length(const clattn_kv_cache *cache);
CLATTN_API size_t clattn_kv_cache_capacity(const clattn_kv_cache *cache);
/* Drops the tokens past `length` (at most the current length), e.g. to roll back rejected speculative tokens or to
 * restart from a shared prompt; the kept tokens stay in place. */
CLATTN_API clattn_status clattn_kv_cache_truncate(clattn_kv_cache *cache, size_t length);
/* Views of the cached keys [B, Hkv, length, d_k] and values [B, Hkv, length, d_v] (fp32), e.g. for clattn_sdpa. */
CLATTN_API clattn_status clattn_kv_cache_tensors(const clattn_kv_cache *cache, clattn_tensor *keys,
                                                 clattn_tensor *values);

typedef enum clattn_cache_mode {
    /* The keys and values of this call's key/value input (x, or the memory) are appended to the cache, and the
     * queries attend over everything cached: self-attention decoding step by step, or cross-attention whose
     * memory is projected on the first call. */
    CLATTN_CACHE_APPEND = 0,
    /* The queries attend over the cache as it is; nothing is projected or appended (memory must be NULL): the
     * later steps of cross-attention. */
    CLATTN_CACHE_READ = 1,
} clattn_cache_mode;

/* A paged KV cache the engine manages, as vLLM does: the pages, the block table and the free list are the engine's,
 * and each call says which pages each sequence owns and how many tokens they hold. clattn_mha projects the call's
 * new keys and values, writes them into their slots (quantizing them for 8-bit pages, as clattn_kv_append), then
 * attends over each sequence's cached and new tokens (clattn_sdpa's paged mode). The engine advances its own
 * lengths: after an APPEND call, sequence b holds cached_lens[b] + its new tokens. */
typedef struct clattn_mha_pages {
    size_t seq_count; /* B: the sequences of this call */
    /* NULL: x is [B, 1, L, d_model] and every sequence gets L new tokens. Else the sequences' new tokens are
     * packed without padding (continuous batching: prefill chunks and decode steps together): x and out are
     * [1, 1, total, d_model] and sequence b is rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1] - 1 ([B + 1] entries
     * from 0, never decreasing, ending at total; host memory). Self-attention only (memory must be NULL). */
    const int32_t *cu_seqlens_q;
    /* Host int32 [B]: the tokens sequence b's pages hold before this call (NULL: none yet). */
    const int32_t *cached_lens;
    /* Host int32 [B, block_table_stride]: token t of sequence b is row t % block_size of page
     * block_table[b * block_table_stride + t / block_size]. Pages may be shared between sequences for the tokens
     * they already hold (prefix sharing); a page written by this call must belong to one sequence. */
    const int32_t *block_table;
    size_t block_table_stride;
    /* The pages, as clattn_sdpa's paged k and v: k_cache [num_blocks, Hkv, block_size, d_k] and v_cache
     * [num_blocks, Hkv, block_size, d_v] (vLLM's [num_blocks, block_size, Hkv, d] is clattn_tensor_blhd), any
     * storage dtype: F32, F16, BF16, or I8 / FP8_E4M3 with k_scale and v_scale as in clattn_kv_append (one per
     * slot and head, computed and written by the append; or one per head, read). */
    clattn_tensor k_cache, v_cache;
    clattn_tensor k_scale, v_scale;
} clattn_mha_pages;

typedef struct clattn_mha_desc {
    /* The attention's options: scale, causal, window, impl, a mask broadcasting to [B, H, Lq, Lk] (as in
     * clattn_sdpa: [B, 1, 1, Lk] for padding), key_lengths, lse and weights
     * outputs; Lk counts every key attended (with a cache: the cached length after this call). With a cache, use
     * CLATTN_CAUSAL_BOTTOM_RIGHT so that new token i sees the cached tokens and itself. */
    clattn_sdpa_desc attention;
    int residual;           /* nonzero: out = x + MHA(x) (requires the output width to equal x's) */
    clattn_kv_cache *cache; /* NULL: none */
    /* With `cache` or `pages`: APPEND projects this call's keys and values into it, READ attends over what it
     * holds. */
    clattn_cache_mode cache_mode;
    /* The engine's paged KV cache (NULL: none; not with `cache`). desc->attention's own serving fields stay
     * empty: the layer fills them from these. Use CLATTN_CAUSAL_BOTTOM_RIGHT so that each new token sees its
     * sequence's cached tokens and itself; masks broadcast to [B, H, max new tokens, max keys] and lse follows
     * x's rows ([1, H, total, 1] when packed). */
    const clattn_mha_pages *pages;
} clattn_mha_desc;

CLATTN_API void clattn_mha_desc_init(clattn_mha_desc *desc);

/* Multi-head attention on device buffers. x [B, 1, Lq, d_model]; memory [B, 1, Lk, kv_d_model] or NULL for
 * self-attention; out [B, 1, Lq, d_model]. out may be x itself (an in-place residual update) but must not
 * overlap anything else. Queue, events and error behaviour as clattn_sdpa; on error the cache is unchanged. */
CLATTN_API clattn_status clattn_mha(clattn_context *context, const clattn_mha_weights *weights,
                                    const clattn_mha_desc *desc, const clattn_tensor *x,
                                    const clattn_tensor *memory, const clattn_tensor *out, cl_command_queue queue,
                                    cl_uint num_wait_events, const cl_event *wait_list, cl_event *event);

/* -------------------------------------------------------------------------------------------------------------- */
/* Seq2seq attention: additive (Bahdanau) and multiplicative (Luong)
 *
 * For each query q_i (a decoder state) over keys k_j (encoder states): e_ij = score(q_i, k_j),
 * alpha_i = softmax_j(e_ij + mask), context_i = sum_j alpha_ij v_j, where the values v are usually the keys
 * themselves. The additive and concat scores run as one fused kernel that never builds the [B, Lq, Lk, d_attn]
 * tensor; dot and general run as scaled dot-product attention with scale 1 (on its unfused implementation where a
 * width passes CLATTN_MAX_FUSED_HEAD_DIM). Value widths go up to CLATTN_MAX_HEAD_DIM for every score. */

typedef enum clattn_score {
    CLATTN_SCORE_ADDITIVE = 0, /* Bahdanau: v^T tanh(q W_q + k W_k + b) */
    CLATTN_SCORE_DOT = 1,      /* Luong dot: q . k (query_dim == key_dim) */
    CLATTN_SCORE_GENERAL = 2,  /* Luong general: q W k^T, W [query_dim, key_dim] */
    CLATTN_SCORE_CONCAT = 3,   /* Luong concat: v^T tanh([q; k] W), W [query_dim + key_dim, attn_dim] */
} clattn_score;

typedef struct clattn_seq2seq_config {
    clattn_score score;
    size_t query_dim; /* width of the queries */
    size_t key_dim;   /* width of the keys; dot and general: up to CLATTN_MAX_HEAD_DIM */
    size_t attn_dim;  /* additive and concat: width of the hidden layer of the score, 1..1024; otherwise ignored */
} clattn_seq2seq_config;

/* Host weights, float32, row-major, multiplying from the right. Which ones a score needs:
 * additive: w_q [query_dim, attn_dim], w_k [key_dim, attn_dim], v [attn_dim], bias [attn_dim] optional;
 * general: w [query_dim, key_dim]; concat: w [query_dim + key_dim, attn_dim], v [attn_dim]; dot: none. */
typedef struct clattn_seq2seq_weights_host {
    const float *w_q, *w_k, *w, *v, *bias;
} clattn_seq2seq_weights_host;

typedef struct clattn_seq2seq_weights clattn_seq2seq_weights;

CLATTN_API clattn_status clattn_seq2seq_weights_create(clattn_context *context, const clattn_seq2seq_config *config,
                                                       const clattn_seq2seq_weights_host *host,
                                                       clattn_seq2seq_weights **weights);
CLATTN_API void clattn_seq2seq_weights_free(clattn_seq2seq_weights *weights);

typedef struct clattn_seq2seq_desc {
    /* Optional mask broadcasting to [B, 1, Lq, Lk] (each size 1 or the full size, e.g. [B, 1, 1, Lk]): F32/F16/BF16
     * added to the scores, BOOL keeps a key where true. */
    clattn_tensor mask;
    /* Optional int32 [B] key lengths: keys j >= key_lengths[b] are masked. */
    cl_mem key_lengths;
    size_t key_lengths_offset;
    /* Optional output: the attention weights alpha [B, 1, Lq, Lk] (zeros for a fully masked row). */
    clattn_tensor weights;
    /* Optional input, additive and concat scores: the keys' projection k W_k [B, 1, Lk, attn_dim] (F32, width
     * stride 1) from clattn_seq2seq_project_keys. It depends on the encoder states alone, so a decoder computes it
     * once per source sequence and every step skips that GEMM, the largest part of a one-query step. NULL buffer:
     * the call projects the keys itself. */
    clattn_tensor key_projection;
} clattn_seq2seq_desc;

CLATTN_API void clattn_seq2seq_desc_init(clattn_seq2seq_desc *desc);

/* Writes k W_k [B, 1, Lk, attn_dim] (F32, width stride 1) for desc.key_projection of later calls with the same
 * keys; additive and concat scores only. Queue, events and error behaviour as clattn_sdpa. */
CLATTN_API clattn_status clattn_seq2seq_project_keys(clattn_context *context, const clattn_seq2seq_weights *weights,
                                                     const clattn_tensor *keys, const clattn_tensor *key_projection,
                                                     cl_command_queue queue, cl_uint num_wait_events,
                                                     const cl_event *wait_list, cl_event *event);

/* query [B, 1, Lq, query_dim] (Lq = 1 for one decoder step, or a whole target sequence), keys [B, 1, Lk, key_dim],
 * values [B, 1, Lk, value_dim] or NULL to use the keys, context [B, 1, Lq, value_dim]. Queue, events and error
 * behaviour as clattn_sdpa. */
CLATTN_API clattn_status clattn_seq2seq_attention(clattn_context *context, const clattn_seq2seq_weights *weights,
                                                  const clattn_seq2seq_desc *desc, const clattn_tensor *query,
                                                  const clattn_tensor *keys, const clattn_tensor *values,
                                                  const clattn_tensor *context_out, cl_command_queue queue,
                                                  cl_uint num_wait_events, const cl_event *wait_list,
                                                  cl_event *event);

/* -------------------------------------------------------------------------------------------------------------- */
/* Tuning (EXPERIMENTAL: operations are named by strings and the parameters are text; both may change in a minor
 * release)
 *
 * Kernel parameters (tile sizes, work-group shape, the CPU or GPU kernel variant) come from a per-device tuning
 * database that `clattn tune` writes: one JSON file per device in $CLATTN_TUNING_DIR, else
 * $XDG_DATA_HOME/clattn/tuning/, else ~/.local/share/clattn/tuning/. It is read when a context is created
 * (CLATTN_TUNING=off skips it). Entries are keyed by platform, device, driver version and the hash of the kernel
 * source they were tuned with (a stale entry is ignored, with a message in the log), and by problem class: head
 * dim, dtype, mask kind and causal flag, a sequence-length bucket, prefill or decode. Lookup falls back from the
 * exact class to the nearest sequence-length bucket, then the device's defaults, then built-in defaults for the
 * device type. A "clblast" section (`clattn tune --clblast`) holds parameters for CLBlast's GEMM kernels, which the
 * context applies to CLBlast for its device when it is created; CLBlast keeps them per device for the whole
 * process. */

/* Where the parameters of an operation come from, most specific last. */
typedef enum clattn_tuning_source {
    CLATTN_TUNING_BUILTIN = 0,        /* built-in defaults for the device type */
    CLATTN_TUNING_DEVICE_DEFAULT = 1, /* the database's defaults for this device */
    CLATTN_TUNING_NEAREST = 2,        /* the database entry of the nearest sequence-length bucket */
    CLATTN_TUNING_EXACT = 3,          /* the database entry of this problem class */
    CLATTN_TUNING_OVERRIDE = 4,       /* the context's override: clattn_context_set_kernel_params, or
                                         CLATTN_FUSED_PARAMS / CLATTN_SEQ2SEQ_PARAMS at its creation */
} clattn_tuning_source;

/* The kind of mask of a problem class. */
typedef enum clattn_mask_kind {
    CLATTN_MASK_NONE = 0,
    CLATTN_MASK_ADDITIVE = 1, /* an F32/F16/BF16 mask added to the scores */
    CLATTN_MASK_BOOL = 2,     /* a BOOL mask that keeps the keys where it is true */
} clattn_mask_kind;

/* One problem to look up. Initialise with clattn_tuning_query_init(). */
typedef struct clattn_tuning_query {
    /* "sdpa_fused" (the default): the fused attention kernels; "seq2seq_additive": the additive (Bahdanau, Luong
     * concat) kernel, whose head_dim is attn_dim, v_head_dim the value width, and which has no causal flag;
     * "clblast:Xgemm", "clblast:XgemmDirect", "clblast:GemmRoutine": the CLBlast GEMM parameters this context's
     * database applied (source EXACT) or none (BUILTIN: CLBlast's own), the other fields then unused. */
    const char *operation;
    size_t head_dim;       /* default 64 */
    size_t v_head_dim;     /* 0 (the default) means head_dim */
    clattn_dtype dtype;    /* storage type, default F32 */
    clattn_mask_kind mask; /* default CLATTN_MASK_NONE */
    clattn_causal causal;  /* default CLATTN_CAUSAL_NONE */
    size_t q_len, kv_len;  /* default 1024 and 1024; a q_len below 8 is a decode step */
    size_t batch, heads;   /* default 1 and 8 */
} clattn_tuning_query;

typedef struct clattn_tuning_choice {
    clattn_tuning_source source;
    char params[256];     /* the parameters, "variant=cpu,rows=24,block_n=48,wg=1,local=0,splits=0" */
    char query_class[96]; /* the problem class of the query, "prefill:d64:L1024:f32" */
    char entry_class[96]; /* the class of the database entry used ("" for built-in and override) */
    char database[1024];  /* the database file read for this context ("" if none was found) */
    double tuned_ms;      /* the time the tuner measured for the entry (0 if unknown) */
    double default_ms;    /* the time it measured for the built-in default (0 if unknown) */
} clattn_tuning_choice;

CLATTN_API void clattn_tuning_query_init(clattn_tuning_query *query);

/* Which parameters, from which entry, an operation will use on this context for a problem. Returns
 * CLATTN_ERROR_INVALID_ARGUMENT (with a message) for an unknown operation. */
CLATTN_API clattn_status clattn_tuning_lookup(clattn_context *context, const clattn_tuning_query *query,
                                              clattn_tuning_choice *choice);

/* A short name of a tuning source: "builtin", "device-default", "nearest", "exact", "override". */
CLATTN_API const char *clattn_tuning_source_name(clattn_tuning_source source);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
