// SPDX-License-Identifier: Apache-2.0
/* clattn: the advanced and experimental API.
 *
 * EXPERIMENTAL: everything in this header may change or disappear in any minor release (0.x.0 now, 1.x.0 after a
 * 1.0), without a deprecation period. It is exported by the shared library like the stable API in clattn.h; what
 * is experimental is its shape, not its presence. It serves the clattn program (the tuner, `clattn kernels
 * export|pack`), the tests and kernel development, which must not reach inside the library: no field access, no
 * private header, no environment variable set at run time. An application should need clattn.h alone. (The idea is
 * zstd's ZSTD_STATIC_LINKING_ONLY section; the kernel-parameter call is CLBlast's CLBlastOverrideParameters.)
 *
 * Strings and buffers the library allocates for the caller here are freed with clattn_free. */
#ifndef CLATTN_ADVANCED_H
#define CLATTN_ADVANCED_H

#include "clattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frees memory that a function of this header allocated for the caller. NULL is fine. */
CLATTN_API void clattn_free(void *memory);

/* ---- Context settings for tuning and kernel development ---- */

/* Sets (params) or clears (NULL or "") the parameters a tunable kernel family uses on this context, over the tuning
 * database and the built-in defaults, for every later call; CLATTN_FUSED_PARAMS and CLATTN_SEQ2SEQ_PARAMS set the
 * same when a context is created. `operation` names the family as clattn_tuning_query.operation does:
 *   "sdpa_fused"        "variant=tiled|cpu,rows=N,block_n=N,wg=N,local=0|1,splits=N"
 *   "seq2seq_additive"  "wg=N,block_n=N,rows=N,vec=1|4|8"
 * Parameters left out take their defaults, and the whole is shrunk to the device's limits. An unknown operation or
 * a malformed text is CLATTN_ERROR_INVALID_ARGUMENT, with the reason in the last error, and keeps the previous
 * setting. clattn_tuning_lookup reports an override as CLATTN_TUNING_OVERRIDE. */
CLATTN_API clattn_status clattn_context_set_kernel_params(clattn_context *context, const char *operation,
                                                          const char *params);

/* Replaces the extra OpenCL compiler options appended to every program the context builds (CLATTN_BUILD_OPTIONS at
 * creation); NULL or "" removes them. Programs are kept by their full options, so later calls build (or find) the
 * programs of the new options. */
CLATTN_API clattn_status clattn_context_set_build_options(clattn_context *context, const char *options);

/* Makes the context choose kernels and programs for another device, described by `target` (NULL: its own device
 * again): kernel variants and parameters, build options and program keys follow the description. This is how
 * `clattn kernels export --target fpga` lists what a device that is not present needs. While a target is set the
 * context builds and runs nothing: record programs (clattn_program_record_begin) and describe them
 * (clattn_program_describe); a call that would build a program is CLATTN_ERROR_UNSUPPORTED.
 * clattn_context_device_info reports the target. */
CLATTN_API clattn_status clattn_context_set_target(clattn_context *context, const clattn_device_info *target);

/* ---- Kernel programs: recording and export (devices that cannot compile at run time) ---- */

/* Starts recording: until clattn_program_record_end, operations on the context validate their arguments and note
 * each program they would build, building and running nothing; their first device operation fails with
 * CLATTN_ERROR_UNSUPPORTED, which ends the call. Driving the operations over a set of shapes so lists exactly the
 * programs the library would build for them. A context of several devices records what one device builds. */
CLATTN_API clattn_status clattn_program_record_begin(clattn_context *context);
/* How many programs were recorded, and the one at `index` in the order first asked for: the name of its kernel
 * source (kernels_cl/<name>.cl) and the operation's build options, valid until clattn_program_record_end. */
CLATTN_API size_t clattn_program_record_count(const clattn_context *context);
CLATTN_API clattn_status clattn_program_recorded(const clattn_context *context, size_t index,
                                                 const char **source_name, const char **options);
/* The text that goes ahead of that program's source (the code of a call's score_mod and mask_mod, with their
 * buffers' names and types), or NULL for a program of the source alone; valid until clattn_program_record_end. Such
 * a program is described and built with the _prefixed calls below, and the binary it gives is found only by calls
 * with the same expressions and buffer names and types. */
CLATTN_API clattn_status clattn_program_recorded_prefix(const clattn_context *context, size_t index,
                                                        const char **prefix);
CLATTN_API void clattn_program_record_end(clattn_context *context);

#define CLATTN_BINARY_FILE_NAME_SIZE 40

/* A program (a kernel source and an operation's options) as the context builds it. The strings are allocated by
 * the library: clattn_program_description_free releases them. */
typedef struct clattn_program_description {
    char *source; /* the complete text that is compiled */
    size_t source_length;
    char *build_options; /* the complete build options */
    char *key;           /* the key that the disk cache and the prebuilt binaries are looked up by */
    char binary_file[CLATTN_BINARY_FILE_NAME_SIZE]; /* the file name of its prebuilt binary, "<hash>.bin" */
} clattn_program_description;

CLATTN_API clattn_status clattn_program_describe(clattn_context *context, const char *source_name,
                                                 const char *options, clattn_program_description *description);
/* The same with `prefix` (NULL: none) ahead of the source, as clattn_program_recorded_prefix gives it. */
CLATTN_API clattn_status clattn_program_describe_prefixed(clattn_context *context, const char *source_name,
                                                          const char *prefix, const char *options,
                                                          clattn_program_description *description);
CLATTN_API void clattn_program_description_free(clattn_program_description *description);

/* The device binary of a program for the context's device, built (or found in the caches) as an operation would
 * build it; *binary is allocated by the library (clattn_free). */
CLATTN_API clattn_status clattn_program_build_binary(clattn_context *context, const char *source_name,
                                                     const char *options, unsigned char **binary, size_t *size);
CLATTN_API clattn_status clattn_program_build_binary_prefixed(clattn_context *context, const char *source_name,
                                                              const char *prefix, const char *options,
                                                              unsigned char **binary, size_t *size);

/* Writes the binary of the program with key `key` into directory `dir`, in the format and under the name
 * (clattn_program_description.binary_file) that the library loads prebuilt binaries by (CLATTN_BINARY_DIR,
 * clattn_context_options.binary_dir): the key in full and a checksum with the bytes, written to a temporary file
 * and renamed into place. CLATTN_ERROR_IO with the reason in `message` on failure. */
CLATTN_API clattn_status clattn_binary_write(const char *dir, const char *key, const void *binary, size_t size,
                                             char *message, size_t message_size);

/* ---- Single kernels, without the operations around them ---- */

/* The fused score kernel of additive and concat seq2seq attention alone, on projections the caller made:
 * query_projection is q W_q + b [B, 1, Lq, attn_dim] and desc->key_projection (required) is k W_k
 * [B, 1, Lk, attn_dim], both F32 with width stride 1; values [B, 1, Lk, value_dim] are required; the rest as
 * clattn_seq2seq_attention. The tuner times the kernel this way, without the projection GEMMs, which are
 * CLBlast's. */
CLATTN_API clattn_status clattn_seq2seq_attention_projected(
    clattn_context *context, const clattn_seq2seq_weights *weights, const clattn_seq2seq_desc *desc,
    const clattn_tensor *query_projection, const clattn_tensor *values, const clattn_tensor *context_out,
    cl_command_queue queue, cl_uint num_wait_events, const cl_event *wait_list, cl_event *event);

/* ---- Tunable kernels: their descriptions, problem classes and the tuning database (`clattn tune`) ---- */

#define CLATTN_TUNE_MAX_PARAMS  8
#define CLATTN_TUNE_MAX_VALUES  16
#define CLATTN_TUNE_PARAMS_TEXT 256 /* room for "variant=cpu,rows=24,..." */
#define CLATTN_TUNE_CLASS_TEXT  96  /* room for "prefill:d64:L1024:f32:causal:additive" */

/* One tunable kernel family ("sdpa_fused", "seq2seq_additive"): its parameter space, the constraints that prune
 * it on a device and its built-in defaults. Static; never freed. */
typedef struct clattn_tune_op clattn_tune_op;

/* One parameter of a kernel family, as its description in the library states it once for the host code, the parser
 * of overrides and database entries, the tuner and the build: the values the tuner tries, the names of the values
 * 0..label_count-1 for an enumerated one ("tiled", "cpu", else NULL), the values it accepts (an override or a
 * database entry may hold any of them: min..max, or the listed values alone), and the build option it becomes.
 * A tool's own space may leave the fields after label_count zero: then it accepts 0 to 2^20 and builds nothing. */
typedef struct clattn_tune_param {
    const char *name;
    int count;
    int values[CLATTN_TUNE_MAX_VALUES];
    const char *const *labels;
    int label_count;
    int min, max;       /* accepted range; max 0: 0 to 2^20 */
    int listed_only;    /* accepts only the listed values ("vec=1|4|8") */
    const char *define; /* the kernel's define (-D<define>=<value>), NULL if the parameter is the host's alone */
    unsigned variants;  /* the variants it builds for (bit i: value i of the family's first, labelled parameter); 0:
                           every variant */
} clattn_tune_param;

/* A parameter list: a kernel family's (clattn_tune_op_space), a narrowed copy of it, or a tool's own. */
typedef struct clattn_tune_space {
    const char *name;
    int param_count;
    clattn_tune_param params[CLATTN_TUNE_MAX_PARAMS];
} clattn_tune_space;

/* One point of a space: values in the order of its parameters. */
typedef struct clattn_tune_config {
    int v[CLATTN_TUNE_MAX_PARAMS];
} clattn_tune_config;

enum { CLATTN_TUNE_PREFILL = 0, CLATTN_TUNE_DECODE = 1 };
/* The bits of clattn_tune_class.mods. */
enum {
    CLATTN_TUNE_MODS_SOFTCAP = 1,
    CLATTN_TUNE_MODS_SINKS = 2,
    CLATTN_TUNE_MODS_ALIBI = 4,
    /* A call with a score_mod or a mask_mod (whatever its expression: the tuner times a representative one). */
    CLATTN_TUNE_MODS_SCORE_FN = 8,
    CLATTN_TUNE_MODS_MASK_FN = 16,
    CLATTN_TUNE_MODS_COUNT = 5 /* bits */
};
/* The values of clattn_tune_class.kv_layout. */
enum { CLATTN_TUNE_KV_PACKED = 1, CLATTN_TUNE_KV_PAGED = 2 };

/* A problem class, what a database entry applies to. -1 in a field is a wildcard (a device default). */
typedef struct clattn_tune_class {
    int head_dim;  /* the attention kernels' head dim; seq2seq_additive: the attention (hidden) width */
    int dtype;     /* clattn_dtype */
    int mask_kind; /* clattn_mask_kind */
    int causal;    /* 0 or 1 */
    int phase;     /* CLATTN_TUNE_PREFILL or CLATTN_TUNE_DECODE */
    int v_dim; /* seq2seq_additive: the value width; attention: the value head dim where it differs from head_dim
                * (-1 where they are equal) */
    long seq;  /* sequence-length bucket: the key length rounded up to a power of two */
    /* The attention kernels' score modifiers, which are compiled in: bits 1 softcap, 2 sinks, 4 ALiBi, 8 a
     * score_mod, 16 a mask_mod ("softcap", "sinks", "alibi", "score_mod", "mask_mod" in class text). An entry
     * without them (-1, as every entry tuned on plain calls is stored) serves calls with any modifiers; one with
     * them is preferred for exactly those. A long, so that the struct has no padding and compares bytewise. */
    long mods;
    /* The serving formats, which are compiled in too: the keys' and values' layout (CLATTN_TUNE_KV_PACKED, _PAGED:
     * "packed", "paged" in class text) and their 8-bit storage type (CLATTN_DTYPE_I8, _FP8_E4M3: "i8", "fp8").
     * -1 (dense, the dtype's own; every entry tuned before these existed) serves calls of any, as for mods. */
    long kv_layout;
    long kv_dtype;
} clattn_tune_class;

/* A family by name; NULL if unknown. */
CLATTN_API const clattn_tune_op *clattn_tune_op_find(const char *name);
CLATTN_API const char *clattn_tune_op_name(const clattn_tune_op *op);
/* A copy of its parameter list, to narrow or enumerate. */
CLATTN_API void clattn_tune_op_space(const clattn_tune_op *op, clattn_tune_space *space);
/* Its built-in parameters for a problem (clattn_tuning_query's fields; operation ignored) on a device. */
CLATTN_API void clattn_tune_op_default(const clattn_tune_op *op, const clattn_device_info *device,
                                       const clattn_tuning_query *problem, clattn_tune_config *config);
/* NULL if `config` can run the problem on the device, else why not (a static string). Called before anything is
 * built: the tuner prunes with it, and a database entry that fails it is never used. */
CLATTN_API const char *clattn_tune_op_check(const clattn_tune_op *op, const clattn_device_info *device,
                                            const clattn_tuning_query *problem, const clattn_tune_config *config);
/* The hash of the family's kernel sources as the context loads them (32 hex digits), which keys database entries:
 * an entry tuned with other kernels is never used. */
CLATTN_API clattn_status clattn_tune_op_source_hash(clattn_context *context, const clattn_tune_op *op,
                                                    char hash[33]);

/* The points of a space: the product of its value lists, first parameter slowest. */
CLATTN_API size_t clattn_tune_space_size(const clattn_tune_space *space);
CLATTN_API void clattn_tune_space_point(const clattn_tune_space *space, size_t index, clattn_tune_config *config);
/* The index of a parameter, -1 if the space has none of that name. */
CLATTN_API int clattn_tune_space_param_index(const clattn_tune_space *space, const char *name);
/* One value of a parameter as an override writes it (a label or a number), checked against what the parameter
 * accepts: CLATTN_ERROR_INVALID_ARGUMENT if it is not one of them. The parser of whole configurations uses it. */
CLATTN_API clattn_status clattn_tune_param_value(const clattn_tune_param *param, const char *text, int *value);
/* "name=value,..." in parameter order, labels for enumerated values; and back (parameters not named keep their
 * value; CLATTN_ERROR_INVALID_ARGUMENT with a reason in `why` for an unknown name, a bad value or bad syntax). */
CLATTN_API void clattn_tune_config_format(const clattn_tune_space *space, const clattn_tune_config *config,
                                          char *text, size_t size);
CLATTN_API clattn_status clattn_tune_config_parse(const clattn_tune_space *space, const char *text,
                                                  clattn_tune_config *config, char *why, size_t why_size);
CLATTN_API int clattn_tune_config_equal(const clattn_tune_space *space, const clattn_tune_config *a,
                                        const clattn_tune_config *b);

/* A class as `clattn tune --shapes` writes it: an attention class ("prefill:d64:L1024[:f16][:causal][:bool]", the
 * fused kernels) or a prefixed one ("additive[:decode]:a256[:v512]:L2048..."), with its family. Fields left out
 * take concrete defaults (f32, no mask, not causal, prefill). A class that no call ever looks up (fused heads past
 * CLATTN_MAX_FUSED_HEAD_DIM, additive values wider than the kernel's column slice) is CLATTN_ERROR_INVALID_ARGUMENT
 * with the reason in `why`. */
CLATTN_API clattn_status clattn_tune_class_parse(const char *text, const clattn_tune_op **op,
                                                 clattn_tune_class *cls, char *why, size_t why_size);
CLATTN_API void clattn_tune_class_format(const clattn_tune_op *op, const clattn_tune_class *cls, char *text,
                                         size_t size);
/* The problem the tuner times for a concrete class (batch, heads and lengths chosen for the phase). */
CLATTN_API void clattn_tune_class_problem(const clattn_tune_op *op, const clattn_tune_class *cls,
                                          clattn_tuning_query *problem);

/* The device database file of the context ($CLATTN_TUNING_DIR, else $XDG_DATA_HOME/clattn/tuning, else
 * ~/.local/share/clattn/tuning, as read at creation), whether or not it exists or is read (CLATTN_TUNING=off);
 * with create_directory, its directory is created private to the user. CLATTN_ERROR_IO if none can be named. */
CLATTN_API clattn_status clattn_tuning_database_file(clattn_context *context, int create_directory, char *path,
                                                     size_t size);

/* One tuned result to store. */
typedef struct clattn_tuning_record {
    const clattn_tune_op *op;
    const char *source_hash; /* clattn_tune_op_source_hash */
    clattn_tune_class cls;
    const char *params; /* clattn_tune_config_format's text */
    double ms;          /* the measured median */
    double default_ms;  /* the built-in default's, 0 if unmeasured */
} clattn_tuning_record;

/* Adds a result to the database file at `path` for `device` (rereading the file first, so that other entries stay;
 * a file of another device or driver, or a malformed one, is started afresh, and `message` says so), and with
 * `phase_default` also as the device default of its family and phase (and score modifiers: a default stored from a
 * class with modifiers serves calls with those alone). Written atomically. CLATTN_ERROR_IO with the
 * reason in `message` on failure. */
CLATTN_API clattn_status clattn_tuning_database_store(const char *path, const clattn_device_info *device,
                                                      const clattn_tuning_record *record, int phase_default,
                                                      char *message, size_t message_size);

/* ---- CLBlast's GEMM kernels (`clattn tune --clblast`) ---- */

enum {
    CLATTN_CLBLAST_XGEMM = 0,
    CLATTN_CLBLAST_XGEMM_DIRECT = 1,
    CLATTN_CLBLAST_GEMM_ROUTINE = 2,
    CLATTN_CLBLAST_KERNEL_COUNT = 3
};
#define CLATTN_CLBLAST_MAX_PARAMS 16

/* CLBlast's name of a kernel ("Xgemm"), the number of its parameters and their names, in the order that values
 * are given in. */
typedef struct clattn_clblast_kernel {
    const char *name;
    int count;
    const char *const *params;
} clattn_clblast_kernel;

/* Parameters for CLBlast's fp32 GEMM kernels, as the database's "clblast" section holds them. */
typedef struct clattn_clblast_params {
    char version[32]; /* the CLBlast they were tuned with */
    char shapes[128]; /* the GEMM shapes they were tuned on, "MxNxK,..." */
    double ms, default_ms;
    int given[CLATTN_CLBLAST_KERNEL_COUNT]; /* 0: CLBlast's own parameters for that kernel */
    size_t values[CLATTN_CLBLAST_KERNEL_COUNT][CLATTN_CLBLAST_MAX_PARAMS];
} clattn_clblast_params;

/* The kernel at `index` (below CLATTN_CLBLAST_KERNEL_COUNT), NULL past the last. */
CLATTN_API const clattn_clblast_kernel *clattn_clblast_kernel_at(int index);
/* The version of the CLBlast the library was built with ("1.5.3"). */
CLATTN_API const char *clattn_clblast_version(void);
/* NULL if the values are valid for the kernel and fit the device (work-group size, local memory), else why not. */
CLATTN_API const char *clattn_clblast_check(int kernel, const size_t *values, const clattn_device_info *device);
/* "KWG=32,KWI=2,..." */
CLATTN_API void clattn_clblast_format(int kernel, const size_t *values, char *text, size_t size);
/* Gives CLBlast the values for a kernel on the context's devices (CLBlastOverrideParameters, fp32, under the
 * library's CLBlast lock). CLBlast keeps them per device for the whole process: every later GEMM on those devices,
 * from any context, uses them. CLATTN_ERROR_CLBLAST with CLBlast's code in the last error on failure. */
CLATTN_API clattn_status clattn_clblast_override(clattn_context *context, int kernel, const size_t *values);
/* Stores the parameters as the "clblast" section of the database file at `path` for `device`, keeping its kernel
 * entries; as clattn_tuning_database_store otherwise. */
CLATTN_API clattn_status clattn_tuning_database_store_clblast(const char *path, const clattn_device_info *device,
                                                              const clattn_clblast_params *params, char *message,
                                                              size_t message_size);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_ADVANCED_H */
