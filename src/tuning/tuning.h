// SPDX-License-Identifier: Apache-2.0
/* Tunable operations and the tuning database, inside the library: one description per tunable operation (its
 * parameter space, the constraints that prune it on a device, its built-in defaults per device type), the problem
 * classes that tuned entries are keyed by, and the database that maps (device, kernel source, class) to the
 * parameters to use. The tuner (tools/clattn/tune/cmd_tune.c), the benchmark, the tests and the operations
 * themselves all read the same descriptions, so a parameter exists in exactly one place.
 *
 * Adding an operation: a cla_tune_op in the table of tuning.c (name, kernel sources, parameter list, builtin and
 * check functions), and a lookup in the operation's host code through cla_tuning_choose(). */
#ifndef CLATTN_TUNING_H
#define CLATTN_TUNING_H

#include "clattn_advanced.h"
#include "internal.h"

/* The types the advanced API (include/clattn_advanced.h) shows the tuner are these very ones. */
#define CLA_TUNE_MAX_PARAMS  CLATTN_TUNE_MAX_PARAMS
#define CLA_TUNE_MAX_VALUES  CLATTN_TUNE_MAX_VALUES
#define CLA_TUNE_PARAMS_TEXT CLATTN_TUNE_PARAMS_TEXT
#define CLA_TUNE_CLASS_TEXT  CLATTN_TUNE_CLASS_TEXT

/* A value the tuner may give a parameter is one of its listed values; a database entry may use any value the
 * parameter accepts (the check function decides). */
typedef clattn_tune_param cla_tune_param;

/* One point of an operation's space: values in the order of its parameter list. */
typedef clattn_tune_config cla_tune_config;

enum { CLA_PHASE_PREFILL = CLATTN_TUNE_PREFILL, CLA_PHASE_DECODE = CLATTN_TUNE_DECODE };

/* A concrete problem, as an operation sees it at run time. */
typedef struct cla_tune_problem {
    size_t head_dim, v_head_dim;
    clattn_dtype dtype;
    int mask_kind; /* 0 none, 1 additive, 2 boolean (CLA_MASK_* of sdpa_internal.h) */
    bool causal;
    size_t batch, heads, q_len, kv_len;
    size_t group; /* query heads per key/value head (0 counts as 1): the rows the flash kernel packs per head */
    int mods; /* score modifiers compiled into the attention kernels: CLA_MODS_* bits (0 for other operations) */
    /* The serving formats of the keys and values: CLATTN_TUNE_KV_PACKED or _PAGED (0: dense), and their 8-bit
     * storage type (CLATTN_DTYPE_I8 or _FP8_E4M3; 0: the call's dtype). */
    int kv_layout, kv_dtype;
    bool block_mask; /* the call reads a block mask (clattn_sdpa_desc.block_mask): no tuning class, a rule only */
} cla_tune_problem;

enum {
    CLA_MODS_SOFTCAP = CLATTN_TUNE_MODS_SOFTCAP,
    CLA_MODS_SINKS = CLATTN_TUNE_MODS_SINKS,
    CLA_MODS_ALIBI = CLATTN_TUNE_MODS_ALIBI,
    CLA_MODS_SCORE_FN = CLATTN_TUNE_MODS_SCORE_FN,
    CLA_MODS_MASK_FN = CLATTN_TUNE_MODS_MASK_FN
};

/* A problem class: what a database entry applies to. In database entries a field of -1 is a wildcard (an entry
 * with wildcards is a device default); classes of concrete problems have every field their operation keys set
 * (v_dim for operations whose classes key the value width; for the attention kernels only where the value head dim
 * differs from the query/key one, -1 otherwise). */
typedef clattn_tune_class cla_tune_class;

/* One variant's kernel: kernels_cl/<source>.cl and the kernel's name in it. */
typedef struct cla_tune_kernel {
    const char *source, *kernel;
} cla_tune_kernel;

/* The advanced API's opaque clattn_tune_op: the one description of a tunable kernel family. Its parameters say what
 * they accept and which build option each becomes (cla_tune_param); its kernels, one per variant (the values of a
 * first, labelled parameter, else one), share one argument list, which the kernels take from one macro of
 * kernels_cl/common.cl and the host sets by name (cla_set_named_args). */
typedef struct clattn_tune_op {
    const char *name;           /* the key in the database: "sdpa_fused" */
    const char *const *sources; /* kernel sources whose text is hashed into every entry, NULL-terminated */
    int param_count;
    const cla_tune_param *params;
    /* The built-in defaults for this device type (the library's heuristics). */
    void (*builtin)(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *out);
    /* NULL if `c` can run the problem on the device, else why not (a static string). Called before anything is
     * built, by the tuner to prune and by the lookup to refuse a database entry that does not fit. */
    const char *(*check)(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c);
    /* The environment's override for kernel development and tests, or NULL if the operation has none: sets *given
     * and fills `c` when one is set; an error status for a malformed one (a typo must not test the defaults). */
    clattn_status (*override)(clattn_context *ctx, const cla_tune_problem *p, cla_tune_config *c, bool *given);
    /* NULL for attention classes ("prefill:d64:L1024:causal"). Otherwise the word that starts the operation's
     * classes in --shapes and in displays ("additive"), and its classes read the other way: "aN" is the attention
     * width (kept in head_dim), "vN" the value width (v_dim), and there is no causal flag. */
    const char *shape_prefix;
    const cla_tune_kernel *kernels; /* by variant */
    const char *const *args;        /* the kernels' arguments in order, NULL-terminated */
} cla_tune_op;

/* The operations, NULL-terminated, and one by name (NULL if unknown). */
const cla_tune_op *const *cla_tune_ops(void);
const cla_tune_op *cla_tune_op_find(const char *name);
/* The position of an operation in that table (below CLA_MAX_TUNE_OPS), where contexts keep its state; -1 if none.
 */
int cla_tune_op_slot(const cla_tune_op *op);

/* The context's override of an operation's parameters ("name=value,..."), or NULL if none; *origin names where it
 * came from (CLATTN_FUSED_PARAMS, or the advanced API's call) for messages (kernel_params.c). */
const char *cla_kernel_params(const clattn_context *ctx, const cla_tune_op *op, const char **origin);
/* At context creation: CLATTN_FUSED_PARAMS and CLATTN_SEQ2SEQ_PARAMS become the context's overrides; a malformed
 * one fails with its reason in the last error. */
clattn_status cla_kernel_params_from_env(clattn_context *ctx, const cla_env *env);
void cla_kernel_params_free(clattn_context *ctx);
int cla_tune_param_index(const cla_tune_op *op, const char *name);

/* ---- what a description gives the host code (kernel_family.c) ---- */

/* The variant a configuration runs (the value of the family's labelled first parameter; 0 if it has none), and
 * its kernel. */
int cla_tune_variant(const cla_tune_op *op, const cla_tune_config *c);
const cla_tune_kernel *cla_tune_kernel_of(const cla_tune_op *op, const cla_tune_config *c);
/* The build options of a configuration's parameters for its variant, in parameter order, each with a leading
 * space: " -DROWS=24 -DBLOCK_N=48". */
void cla_tune_defines(const cla_tune_op *op, const cla_tune_config *c, char *out, size_t size);
/* Whether `text` is a value the parameter accepts (a label or a number in its range), and which. */
bool cla_tune_param_value(const cla_tune_param *pr, const char *text, int *value);
/* What a parameter accepts, for messages: "tiled|cpu", "1|4|8" or "1 to 4096". */
void cla_tune_param_describe(const cla_tune_param *pr, char *out, size_t size);
/* The context's override of a family's parameters, parsed by cla_tune_config_parse over a configuration of -1
 * (unset): *given says whether there is one; a malformed one fails with the override's origin, the reason and the
 * keys the family takes (kernel_params.c). */
clattn_status cla_tune_override_parse(clattn_context *ctx, const cla_tune_op *op, cla_tune_config *c, bool *given,
                                      const char **origin);

/* "name=value,..." in parameter order, labels for enumerated values. */
void cla_tune_config_format(const cla_tune_op *op, const cla_tune_config *c, char *out, size_t size);
/* Parses "name=value,..." over `c` (parameters not named keep their value). Returns
 * false (with a reason) on an unknown name, a value the parameter does not accept or bad syntax. The one parser of
 * overrides, database entries and the tuner's candidates. */
bool cla_tune_config_parse(const cla_tune_op *op, const char *text, cla_tune_config *c, char *why, size_t why_size);
bool cla_tune_config_equal(const cla_tune_op *op, const cla_tune_config *a, const cla_tune_config *b);

/* The number of points of the full product space, and the point at `index` (mixed radix, first parameter
 * slowest). Points that fail the check are the caller's to skip. */
size_t cla_tune_space_size(const cla_tune_op *op);
void cla_tune_space_point(const cla_tune_op *op, size_t index, cla_tune_config *c);

/* The fused attention kernel's parameters, by index in its description. */
enum {
    CLA_FUSED_VARIANT =
        0, /* 0 tiled (sdpa_fused.cl), 1 cpu (sdpa_fused_cpu.cl), 2 flash (sdpa_flash.cl), 3 decode */
    CLA_FUSED_ROWS,
    CLA_FUSED_BLOCK_N,
    CLA_FUSED_WG,
    CLA_FUSED_LOCAL,
    CLA_FUSED_SPLITS,   /* 0: chosen by the shape */
    CLA_FUSED_GQA_PACK, /* cpu row shape: a work-item takes all the query heads of a key/value head */
    CLA_FUSED_PARAM_COUNT
};
enum { CLA_FUSED_TILED = 0, CLA_FUSED_CPU = 1, CLA_FUSED_FLASH = 2, CLA_FUSED_DECODE = 3 };
/* The flash kernel's keys per work-item of a tile (TN in sdpa_flash.cl): a tile of block_n keys is shared by
 * block_n / CLA_FLASH_TN work-items per row, and a group of wg work-items owns wg / (block_n / CLA_FLASH_TN) * rows
 * rows (cla_flash_block_rows). */
#define CLA_FLASH_TN 1
/* The work-items of a row that split the head dimension of its scores (DSPLIT in sdpa_flash.cl, which derives it
 * the same way): 4 where the row's work-items are a multiple of 4 and the head dimension has 4 float4s or more,
 * else 2 or 1 the same way. */
size_t cla_flash_dsplit(const cla_tune_problem *p, const cla_tune_config *c);
size_t cla_flash_block_rows(const cla_tune_config *c);
/* Bytes of local memory the flash kernel takes for a problem (as sdpa_flash.cl lays it out). */
size_t cla_flash_local_bytes(const cla_tune_problem *p, const cla_tune_config *c);
/* Bytes of local memory the decode kernel takes (as sdpa_decode.cl lays it out). */
size_t cla_decode_local_bytes(const cla_tune_problem *p, const cla_tune_config *c);
/* NULL if a flash configuration can run the problem on the device, else why not (part of the family's check, and
 * what an override of the flash variant must pass). */
const char *cla_flash_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c);
/* The decode kernel (sdpa_decode.cl) takes at most this many packed rows (query rows times the query heads of a
 * key/value head): its ROWS, a compile-time bound. */
#define CLA_DECODE_MAX_ROWS 16
/* NULL if a decode configuration can run the problem on the device, else why not. */
const char *cla_decode_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c);
extern const cla_tune_op cla_tune_op_sdpa_fused;
/* Completes a partial fused configuration (fields of -1 unset, as CLATTN_FUSED_PARAMS leaves them) with the
 * defaults of its variant (the device's variant when that is unset too), then shrinks it to the device's limits. */
void cla_sdpa_fused_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c);
/* The context's override of the fused kernel's parameters (sdpa_fused.c; kernel_params.c keeps the text). */
clattn_status cla_sdpa_fused_override(clattn_context *ctx, const cla_tune_problem *p, cla_tune_config *c,
                                      bool *given);

/* The additive (Bahdanau, and Luong concat) attention kernel of kernels_cl/seq2seq.cl, by index in its
 * description. Its problem: head_dim is the attention width, v_head_dim the value width, dtype the values'
 * storage type, q_len and kv_len the query and key lengths, batch the batch. Values wider than
 * CLA_S2S_MAX_SLICE_DIM run as column slices of equal width (seq2seq.c), each a launch with the slice's width. */
#define CLA_S2S_MAX_SLICE_DIM 1024
enum {
    CLA_S2S_WG = 0,  /* work-items per group */
    CLA_S2S_BLOCK_N, /* keys per tile */
    CLA_S2S_ROWS,    /* query rows per group */
    CLA_S2S_VEC,     /* vector width of the score loop: 1, 4 or 8 */
    CLA_S2S_PARAM_COUNT
};
extern const cla_tune_op cla_tune_op_seq2seq;
/* Completes a partial configuration (fields of -1 unset, as CLATTN_SEQ2SEQ_PARAMS leaves them) with the device
 * type's defaults, then shrinks it towards the device's limits (work-group size, private accumulators, local
 * memory). The result may still not fit local memory when the attention width alone is too large: the check
 * says so. */
void cla_seq2seq_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c);
/* The context's override of the additive kernel's parameters (seq2seq.c; kernel_params.c keeps the text). */
clattn_status cla_seq2seq_override(clattn_context *ctx, const cla_tune_problem *p, cla_tune_config *c, bool *given);
/* Bytes of local memory a configuration needs for a problem. */
size_t cla_seq2seq_local_bytes(const cla_tune_problem *p, const cla_tune_config *c);

/* Classes. */
long cla_tune_seq_bucket(size_t len);
cla_tune_class cla_tune_class_of(const cla_tune_problem *p);
/* "prefill:d64:L1024:f32[:causal][:additive|:bool]", for display and --shapes; wildcards, "not causal" and "no
 * mask" are left out, so the text of a device default for one phase is just "prefill". */
void cla_tune_class_format(const cla_tune_class *c, char *out, size_t size);
/* Parses the tokens of that form in any order; unnamed fields stay wildcards, except that dtype, mask and causal
 * default to f32, none and not causal when `concrete` is set (the tuner's --shapes). */
bool cla_tune_class_parse(const char *text, bool concrete, cla_tune_class *c, char *why, size_t why_size);
/* The problem the tuner times for a concrete class: batch 1, 8 heads, the bucket's length (one query for
 * decode). */
cla_tune_problem cla_tune_class_problem(const cla_tune_class *c);

/* The same for any operation: the class of a problem as `op` keys it (cla_tune_class_of for the attention
 * kernels; with v_dim and without the causal flag for an operation with a shape_prefix), its text
 * ("additive:decode:a256:v256:L2048:f32" for those), and the problem the tuner times for it. */
cla_tune_class cla_tune_op_class_of(const cla_tune_op *op, const cla_tune_problem *p);
void cla_tune_op_class_format(const cla_tune_op *op, const cla_tune_class *c, char *out, size_t size);
cla_tune_problem cla_tune_op_class_problem(const cla_tune_op *op, const cla_tune_class *c);
/* A class of --shapes with its operation: "additive:..." (an operation's shape_prefix first) or an attention class
 * (the fused kernels). Concrete: for the prefixed form, the phase defaults to prefill, the value width to the
 * attention width, dtype and mask to f32 and none. */
bool cla_tune_shape_parse(const char *text, const cla_tune_op **op, cla_tune_class *c, char *why, size_t why_size);

/* The problem of a public query (clattn_tuning_lookup, the advanced API): v_head_dim 0 means head_dim. */
cla_tune_problem cla_tune_problem_of_query(const clattn_tuning_query *q);

/* ---- the database (tuning_db.c) ---- */

typedef struct cla_tuning_entry {
    char op[32];
    char source_hash[33];
    cla_tune_class cls;
    char params[CLA_TUNE_PARAMS_TEXT]; /* "name=value,..." as stored; checked against the operation when used */
    double ms;                         /* measured median of the tuned configuration, 0 if unknown */
    double default_ms;                 /* the built-in default's, 0 if unknown */
} cla_tuning_entry;

typedef struct cla_tuning_db {
    char platform[128], device[128], driver[128];
    cla_tuning_entry *entries;
    size_t count, capacity;
    char *path; /* the file it was read from or is written to; NULL for one parsed from memory */
    /* The "clblast" section as JSON text, NULL if none. Kept as it was read, so that rewriting the kernel entries
     * never drops it; it is checked only when applied (cla_clblast_apply), so a bad section cannot cost the kernel
     * entries. */
    char *clblast;
} cla_tuning_db;

#define CLA_TUNING_FORMAT 1

/* Parses a database file's bytes (untrusted: fuzzed by tests/fuzz/fuzz_tuning_db.c) into db, which is an output:
 * it is initialised here (an uninitialised struct is fine; one that holds a database must be cleared first, or its
 * memory leaks). Returns false with a reason and an empty database for anything malformed; entries of unknown
 * operations are kept as they are. */
bool cla_tuning_db_parse(const char *text, size_t size, cla_tuning_db *db, char *why, size_t why_size);
/* The database as JSON text (malloc'd), NULL if out of memory. */
char *cla_tuning_db_to_json(const cla_tuning_db *db);
void cla_tuning_db_clear(cla_tuning_db *db);
/* Adds an entry, replacing one with the same operation, source hash and class. Returns false if out of memory. */
bool cla_tuning_db_put(cla_tuning_db *db, const cla_tuning_entry *e);
/* Writes the database atomically (temporary file, rename) to db->path, creating its directory private to the
 * user. Returns false with a reason. */
bool cla_tuning_db_save(const cla_tuning_db *db, char *why, size_t why_size);

/* The tuning directory ($CLATTN_TUNING_DIR, else $XDG_DATA_HOME/clattn/tuning, else ~/.local/share/clattn/tuning),
 * malloc'd; NULL if none can be named. */
char *cla_tuning_dir(const cla_env *env);
/* Creates the tuning directory (and its parents) with mode 0700; true if it exists afterwards. */
bool cla_tuning_make_dir(const char *dir);
/* The database file of a device in `dir` (malloc'd): its name says which device, a hash of platform, device and
 * driver makes it unique. */
char *cla_tuning_file(const char *dir, const clattn_device_info *info);
/* The hash of an operation's kernel sources as this library (or CLATTN_KERNEL_DIR) has them; false if they cannot
 * be loaded. */
bool cla_tuning_source_hash(clattn_context *ctx, const cla_tune_op *op, char out[33]);

/* ---- CLBlast's GEMM parameters (tuning_clblast.c) ----
 *
 * The multi-head layer's projections are CLBlast GEMMs. CLBlast picks its kernels' parameters from its own database
 * by device name, which often has no entry for the device (PoCL, new GPUs); `clattn tune --clblast` measures
 * parameter sets for the kernels those GEMMs run and stores the best in a "clblast" section of the device's tuning
 * database:
 *
 *   "clblast": {"version": "1.5.3", "shapes": "512x1536x512,512x512x512", "ms": 9.1, "default_ms": 12.3,
 *               "Xgemm": {"precision": 32, "params": {"GEMMK": 0, "KREG": 1, "KWG": 32, ...}},
 *               "XgemmDirect": {...}, "GemmRoutine": {...}}
 *
 * Each kernel is optional (one left out keeps CLBlast's choice); "params" must name every parameter of the kernel.
 * A context applies the section when it is created, through CLBlastOverrideParameters. */

enum {
    CLA_CLBLAST_XGEMM = CLATTN_CLBLAST_XGEMM,
    CLA_CLBLAST_XGEMM_DIRECT = CLATTN_CLBLAST_XGEMM_DIRECT,
    CLA_CLBLAST_GEMM_ROUTINE = CLATTN_CLBLAST_GEMM_ROUTINE,
    CLA_CLBLAST_KERNEL_COUNT = CLATTN_CLBLAST_KERNEL_COUNT
};
#define CLA_CLBLAST_MAX_PARAMS CLATTN_CLBLAST_MAX_PARAMS

/* CLBlast's kernel name (the key in the section), and its parameter names. */
typedef clattn_clblast_kernel cla_clblast_kernel;

extern const cla_clblast_kernel cla_clblast_kernels[CLA_CLBLAST_KERNEL_COUNT];

/* The section's values: sums of the medians over the shapes (0 if unknown), and values in the order of each
 * kernel's params. */
typedef clattn_clblast_params cla_clblast_section;

/* "1.5.3": the CLBlast this library was built with. */
const char *cla_clblast_version(void);
/* NULL if the kernel's values are valid and fit the device (work-group size, local memory), else why not. */
const char *cla_clblast_check(int kernel, const size_t *values, const clattn_device_info *d);
/* "KWG=32,KWI=2,..." */
void cla_clblast_format(int kernel, const size_t *values, char *out, size_t size);
/* Parses a section (JSON text); false with a reason for anything malformed. Checks no device limits. */
bool cla_clblast_section_parse(const char *text, cla_clblast_section *s, char *why, size_t why_size);
/* The section as JSON text (malloc'd), NULL if out of memory. */
char *cla_clblast_section_to_json(const cla_clblast_section *s);
/* Applies the context's database section to CLBlast for the context's device, logging what it applied; a malformed
 * or stale section, or a kernel whose parameters do not fit the device, is logged and applies nothing. */
void cla_clblast_apply(clattn_context *ctx);

/* What a context holds: its device's database (empty if none) and the source hash of each operation. */
typedef struct cla_tuning_state {
    cla_tuning_db db;
    char *file;                        /* the file looked for; NULL if no directory could be named */
    bool found;                        /* the file existed and was accepted */
    char hashes[CLA_MAX_TUNE_OPS][33]; /* per operation of cla_tune_ops(), "" until needed */
    /* What cla_clblast_apply gave CLBlast, per kernel ("" if nothing), and the section's times. */
    char clblast_applied[CLA_CLBLAST_KERNEL_COUNT][CLA_TUNE_PARAMS_TEXT];
    double clblast_ms, clblast_default_ms;
} cla_tuning_state;

/* Reads the context's device database at context creation; a missing file is no database, a malformed one or one
 * of another device is logged and ignored. Never fails the context. */
void cla_tuning_load(clattn_context *ctx, const cla_env *env);
void cla_tuning_free(clattn_context *ctx);

typedef struct cla_tune_choice {
    clattn_tuning_source source;
    cla_tune_config config;
    const cla_tuning_entry *entry; /* NULL for built-in */
} cla_tune_choice;

/* The parameters an operation uses for a problem: the environment's override, else the database entry of the exact
 * class, of the nearest sequence bucket, a device default, or the built-in default, whichever comes first and fits
 * the device. Fails only on a malformed override. */
clattn_status cla_tuning_choose(clattn_context *ctx, const cla_tune_op *op, const cla_tune_problem *p,
                                cla_tune_choice *out);
/* The database part of that lookup, against a given database and source hash (tests, fuzz target). Entries that do
 * not fit the device are skipped, with a message to log_ctx's log (which may be NULL). */
void cla_tuning_match(const clattn_context *log_ctx, const cla_tuning_db *db, const char *source_hash,
                      const clattn_device_info *d, const cla_tune_op *op, const cla_tune_problem *p,
                      cla_tune_choice *out);

#endif /* CLATTN_TUNING_H */
