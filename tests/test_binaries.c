// SPDX-License-Identifier: Apache-2.0
/* Prebuilt program binaries, the path for devices that cannot compile (FPGAs), tested whole on PoCL: `clattn
 * kernels export --build` writes the programs attention needs, a context with source compilation turned off loads
 * them and gives bitwise the same results as one that compiles; a missing binary is CLATTN_ERROR_NO_COMPILER naming
 * the file; corrupt, truncated, huge, foreign or driver-rejected files are CLATTN_ERROR_INVALID_BINARY; the
 * manifest lists files that exist and hold what the library compiles; `clattn kernels pack` wraps an offline
 * compiler's outputs; the compiled-in variants a deployment asks for (score modifiers, paged and 8-bit K/V, the
 * caller's score_mod/mask_mod) export and load the same way. */
#include "test_util.h"

#include "internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static char *work;            /* the test's temporary directory */
static char export_dir[1024]; /* export --build output, shared by the tests */

/* The classes exported: one head dim, fp32, no mask, prefill and decode (nine programs on PoCL). */
#define CLASSES "--head-dims 32 --dtypes f32 --causal none --phases prefill,decode"

typedef struct shape {
    size_t b, hq, hkv, lq, lk, d;
} shape;

/* Decode with short keys (one pass), and 20 queries over 1100 keys (row blocks of 24, split over the keys). */
static const shape shapes[] = {{1, 2, 2, 1, 100, 32}, {1, 1, 1, 20, 1100, 32}};

static int run_cli(const char *args) {
    char cmd[16384];
    const char *dev = test_device_spec();
    snprintf(cmd, sizeof cmd, "'%s' kernels %s%s%s%s > '%s/cli.log' 2>&1", CLATTN_CLI, args,
             *dev ? " --device '" : "", dev, *dev ? "'" : "", work);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int setup(void **state) {
    (void)state;
    work = test_make_temp_dir("binaries");
    setenv("CLATTN_CACHE", "0", 1); /* every program comes from a build or from the binary directory */
    unsetenv("CLATTN_COMPILE");
    unsetenv("CLATTN_BINARY_DIR");
    snprintf(export_dir, sizeof export_dir, "%s/export", work);
    char args[8192];
    snprintf(args, sizeof args, "export --out '%s' --build " CLASSES, export_dir);
    int rc = run_cli(args);
    if (rc != 0) {
        char log[8192];
        snprintf(log, sizeof log, "cat '%s/cli.log' >&2", work);
        if (system(log) != 0) fprintf(stderr, "(no log)\n");
        fprintf(stderr, "clattn kernels export exited with %d\n", rc);
        return -1;
    }
    return 0;
}

TEST_TEMP_DIR_TEARDOWN(work);

static clattn_context *context_with(const char *binary_dir, clattn_compile_policy compile) {
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = test_device_spec();
    o.binary_dir = binary_dir;
    o.compile = compile;
    return test_context_with(&o);
}

/* Seeded inputs in [-2, 2]. */
static void fill(float *x, size_t n, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
    }
}

/* Runs one fused attention call on host arrays; *out (malloc'd) receives the output on success. */
static clattn_status run_shape(clattn_context *ctx, const shape *s, float **out) {
    size_t nq = s->b * s->hq * s->lq * s->d, nk = s->b * s->hkv * s->lk * s->d;
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    float *o = malloc(nq * sizeof *o);
    assert_true(q && k && v && o);
    fill(q, nq, 1);
    fill(k, nk, 2);
    fill(v, nk, 3);
    memset(o, 0xff, nq * sizeof *o);
    clattn_sdpa_host_desc d = test_host_desc(s->b, s->hq, s->hkv, s->lq, s->lk, s->d);
    d.impl = CLATTN_IMPL_FUSED; /* the unfused path needs CLBlast, which compiles its own kernels */
    clattn_status st = clattn_sdpa_host(ctx, &d, q, k, v, o);
    free(q);
    free(k);
    free(v);
    if (st == CLATTN_SUCCESS) {
        *out = o;
    } else {
        free(o);
        *out = NULL;
    }
    return st;
}

static void assert_runs_like_source(clattn_context *binary_ctx) {
    clattn_context *source_ctx = context_with(NULL, CLATTN_COMPILE_AUTO);
    for (size_t i = 0; i < CLA_ARRAY_SIZE(shapes); ++i) {
        float *from_binary = NULL, *from_source = NULL;
        clattn_status st = run_shape(binary_ctx, &shapes[i], &from_binary);
        if (st != CLATTN_SUCCESS)
            fail_msg("shape %zu from binaries: %s\n%s", i, clattn_status_string(st),
                     clattn_context_last_error(binary_ctx));
        assert_status(run_shape(source_ctx, &shapes[i], &from_source), CLATTN_SUCCESS);
        size_t n = shapes[i].b * shapes[i].hq * shapes[i].lq * shapes[i].d;
        assert_memory_equal(from_binary, from_source, n * sizeof(float));
        free(from_binary);
        free(from_source);
    }
    clattn_cache_stats bs, ss;
    clattn_context_cache_stats(binary_ctx, &bs);
    clattn_context_cache_stats(source_ctx, &ss);
    assert_int_equal(bs.builds, 0);
    assert_true(bs.binary_loads >= 2);
    assert_true(ss.builds >= 2);
    assert_int_equal(ss.binary_loads, 0);
    clattn_context_free(source_ctx);
}

static void exported_binaries_run_without_compiling_bitwise_like_source(void **state) {
    (void)state;
    clattn_context *ctx = context_with(export_dir, CLATTN_COMPILE_NEVER);
    assert_runs_like_source(ctx);
    clattn_context_free(ctx);
}

static void compile_env_zero_and_binary_dir_env_select_binaries(void **state) {
    (void)state;
    setenv("CLATTN_COMPILE", "0", 1);
    setenv("CLATTN_BINARY_DIR", export_dir, 1);
    clattn_context *ctx = context_with(NULL, CLATTN_COMPILE_AUTO);
    unsetenv("CLATTN_COMPILE");
    unsetenv("CLATTN_BINARY_DIR");
    assert_runs_like_source(ctx);
    clattn_context_free(ctx);
}

/* A context over a new, empty binary directory (*dir) with the given compile policy, on which the first shape's
 * run has just ended in `want`. */
static clattn_context *run_without_binaries(clattn_compile_policy compile, clattn_status want, char **dir) {
    *dir = test_make_temp_dir("nobinaries");
    clattn_context *ctx = context_with(*dir, compile);
    float *out = NULL;
    assert_status(run_shape(ctx, &shapes[0], &out), want);
    free(out);
    return ctx;
}

static void binary_dir_alone_does_not_stop_a_cpu_compiling(void **state) {
    (void)state;
    char *empty;
    clattn_context *ctx = run_without_binaries(CLATTN_COMPILE_AUTO, CLATTN_SUCCESS, &empty);
    clattn_cache_stats s;
    clattn_context_cache_stats(ctx, &s);
    assert_true(s.builds >= 1);
    clattn_context_free(ctx);
    test_remove_tree(empty);
    free(empty);
}

static void missing_binary_is_no_compiler_naming_file_and_program(void **state) {
    (void)state;
    char *empty;
    clattn_context *ctx = run_without_binaries(CLATTN_COMPILE_NEVER, CLATTN_ERROR_NO_COMPILER, &empty);
    const char *msg = clattn_context_last_error(ctx);
    assert_non_null(strstr(msg, empty));
    assert_non_null(strstr(msg, ".bin"));
    assert_non_null(strstr(msg, "kernels_cl/sdpa_fused"));
    assert_non_null(strstr(msg, "-DHEAD_DIM=32"));
    assert_non_null(strstr(msg, "clattn kernels export"));
    clattn_context_free(ctx);

    /* No directory at all: the message says how to give one. */
    ctx = context_with(NULL, CLATTN_COMPILE_NEVER);
    float *out = NULL;
    assert_status(run_shape(ctx, &shapes[0], &out), CLATTN_ERROR_NO_COMPILER);
    assert_non_null(strstr(clattn_context_last_error(ctx), "CLATTN_BINARY_DIR"));
    clattn_context_free(ctx);
    test_remove_tree(empty);
    free(empty);
}

/* ---- bad files ---- */

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void spill(const char *path, const void *data, size_t size) {
    remove(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    fclose(f);
}

/* The .bin files of the export, as names. */
static int list_binaries(const char *dir, char names[][64], int max) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        /* 32 hex digits and ".bin": the length check bounds the copy. */
        if (len == 36 && strcmp(e->d_name + 32, ".bin") == 0 && n < max) memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    return n;
}

typedef enum mutation {
    FLIP_LAST_BYTE,
    TRUNCATE_HALF,
    EMPTY,
    OTHER_KEY,
    GARBAGE_BINARY,
    HUGE_SPARSE,
    FIFO,
    DIRECTORY,
} mutation;

/* The key stored in an entry file (the format: magic, u32 version, u32 key length, key, ...). */
static char *stored_key(const unsigned char *data, size_t size) {
    assert_true(size > 16);
    uint32_t len =
        (uint32_t)data[12] | (uint32_t)data[13] << 8 | (uint32_t)data[14] << 16 | (uint32_t)data[15] << 24;
    assert_true(len <= size - 16);
    char *key = malloc(len + 1);
    memcpy(key, data + 16, len);
    key[len] = '\0';
    return key;
}

/* A directory holding every exported binary changed by `m`; returns its path. */
static char *mutated_dir(mutation m) {
    char *dir = test_make_temp_dir("mutated");
    char names[64][64];
    int n = list_binaries(export_dir, names, 64);
    assert_true(n >= 2);
    for (int i = 0; i < n; ++i) {
        char src[8192], dst[8192];
        snprintf(src, sizeof src, "%s/%s", export_dir, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        size_t size = 0;
        unsigned char *data = slurp(src, &size);
        switch (m) {
        case FLIP_LAST_BYTE:
            data[size - 1] ^= 0x5a;
            spill(dst, data, size);
            break;
        case TRUNCATE_HALF:
            spill(dst, data, size / 2);
            break;
        case EMPTY:
            spill(dst, data, 0);
            break;
        case OTHER_KEY: {
            /* Another program's intact entry under this program's name. */
            size_t other_size = 0;
            char other[8192];
            snprintf(other, sizeof other, "%s/%s", export_dir, names[(i + 1) % n]);
            unsigned char *o = slurp(other, &other_size);
            spill(dst, o, other_size);
            free(o);
            break;
        }
        case GARBAGE_BINARY: {
            /* A well-formed entry for the right key whose binary is no program: only the driver can tell. */
            char *key = stored_key(data, size);
            const char junk[] = "this is not a program binary for any device";
            assert_int_equal(cla_entry_write(dst, key, (const unsigned char *)junk, sizeof junk, dir), 0);
            free(key);
            break;
        }
        case HUGE_SPARSE:
            spill(dst, data, 16);
            assert_int_equal(truncate(dst, (off_t)(1u << 30) + 1), 0);
            break;
        case FIFO:
            assert_int_equal(mkfifo(dst, 0600), 0);
            break;
        case DIRECTORY:
            assert_int_equal(mkdir(dst, 0700), 0);
            break;
        }
        free(data);
    }
    return dir;
}

static void bad_binary_files_are_invalid_binary_never_trusted(void **state) {
    (void)state;
    static const struct {
        mutation m;
        const char *reason;
    } cases[] = {
        {FLIP_LAST_BYTE, "checksum mismatch"},
        {TRUNCATE_HALF, "does not match the file size"},
        {EMPTY, "bad magic or truncated header"},
        {OTHER_KEY, "key mismatch"},
        {GARBAGE_BINARY, "the driver rejected"},
        {HUGE_SPARSE, "larger than"},
        {FIFO, "not a regular file"},
        {DIRECTORY, "not a regular file"},
    };
    for (size_t c = 0; c < CLA_ARRAY_SIZE(cases); ++c) {
        char *dir = mutated_dir(cases[c].m);
        clattn_context *ctx = context_with(dir, CLATTN_COMPILE_NEVER);
        float *out = NULL;
        clattn_status st = run_shape(ctx, &shapes[0], &out);
        const char *msg = clattn_context_last_error(ctx);
        if (st != CLATTN_ERROR_INVALID_BINARY || !strstr(msg, cases[c].reason) || !strstr(msg, dir))
            fail_msg("case %zu (%s): %s\n%s", c, cases[c].reason, clattn_status_string(st), msg);
        clattn_context_free(ctx);
        test_remove_tree(dir);
        free(dir);
    }
}

/* ---- the command-line export ---- */

static cJSON *read_manifest(const char *dir) {
    char path[8192];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t size = 0;
    unsigned char *text = slurp(path, &size);
    text[size] = '\0';
    cJSON *root = cJSON_Parse((const char *)text);
    free(text);
    assert_non_null(root);
    return root;
}

static const char *member(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static void export_manifest_lists_files_holding_what_the_library_builds(void **state) {
    (void)state;
    cJSON *root = read_manifest(export_dir);
    assert_string_equal(member(root, "clattn_version"), clattn_version_string());
    const cJSON *programs = cJSON_GetObjectItemCaseSensitive(root, "programs");
    assert_true(cJSON_IsArray(programs));
    /* Prefill and decode on a CPU: row blocks of 1, 8, 16 and 24, with and without a key split where the device
     * would split, and the merge of the splits; one binary each. */
    char names[64][64];
    assert_true(cJSON_GetArraySize(programs) >= 5);
    assert_int_equal(cJSON_GetArraySize(programs), list_binaries(export_dir, names, 64));
    clattn_context *ctx = context_with(NULL, CLATTN_COMPILE_AUTO);
    const cJSON *p = NULL;
    cJSON_ArrayForEach(p, programs) {
        const char *source = member(p, "source"), *options = member(p, "options");
        char path[8192];
        size_t size = 0;
        /* The .cl file is the whole source as compiled: common.cl and the kernel's file. */
        snprintf(path, sizeof path, "%s/%s", export_dir, member(p, "source_file"));
        unsigned char *text = slurp(path, &size);
        char *expected = NULL;
        size_t expected_len = 0;
        assert_status(cla_source_load(ctx, source, &expected, &expected_len), CLATTN_SUCCESS);
        assert_int_equal(size, expected_len);
        assert_memory_equal(text, expected, size);
        free(text);
        free(expected);
        /* The options file holds the complete build options. */
        snprintf(path, sizeof path, "%s/%s", export_dir, member(p, "options_file"));
        text = slurp(path, &size);
        text[size] = '\0';
        char *full = cla_program_full_options(ctx, options);
        assert_string_equal((char *)text, full);
        assert_string_equal(member(p, "build_options"), full);
        free(text);
        free(full);
        /* The key is the library's, and the binary is a valid entry for it. */
        char *key = cla_program_cache_key(ctx, source, options);
        assert_string_equal(member(p, "key"), key);
        snprintf(path, sizeof path, "%s/%s", export_dir, member(p, "binary_file"));
        unsigned char *bin = NULL;
        bool missing = false;
        const char *problem = cla_entry_read(path, key, &bin, &size, &missing);
        if (problem) fail_msg("%s: %s", path, problem);
        free(bin);
        free(key);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "binary_built")));
    }
    clattn_context_free(ctx);
    cJSON_Delete(root);
}

static void export_for_fpga_target_lists_tiled_programs_without_binaries(void **state) {
    (void)state;
    char dir[4200], args[8192];
    snprintf(dir, sizeof dir, "%s/fpga", work);
    snprintf(args, sizeof args, "export --target fpga --out '%s' " CLASSES, dir);
    assert_int_equal(run_cli(args), 0);
    cJSON *root = read_manifest(dir);
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(root, "device");
    assert_string_equal(member(device, "target"), "fpga");
    assert_string_equal(member(device, "type"), "accelerator");
    const cJSON *programs = cJSON_GetObjectItemCaseSensitive(root, "programs");
    assert_true(cJSON_GetArraySize(programs) >= 1);
    const cJSON *p = NULL;
    cJSON_ArrayForEach(p, programs) {
        /* The accelerator kernel, with a fixed work-group shape an FPGA compiler can size hardware for. */
        assert_string_equal(member(p, "source"), "sdpa_fused");
        assert_non_null(strstr(member(p, "options"), "-DUSE_LOCAL=1"));
        assert_non_null(strstr(member(p, "options"), "-DWG_SIZE="));
        assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "binary_built")));
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, member(p, "source_file"));
        assert_int_equal(access(path, R_OK), 0);
    }
    char names[4][64];
    assert_int_equal(list_binaries(dir, names, 4), 0);
    cJSON_Delete(root);
    /* Usage errors: an unknown target, --build with a target, no --out. */
    assert_int_equal(run_cli("export --target quantum --out /nonexistent"), 2);
    snprintf(args, sizeof args, "export --target fpga --build --out '%s'", dir);
    assert_int_equal(run_cli(args), 2);
    assert_int_equal(run_cli("export"), 2);
}

/* Every GPU class exports the flash kernel for prefill, the decode kernel for decode (and sdpa_combine's program
 * for the key splits), shaped for that class: a work-group no larger than it allows, tiles that fit its local
 * memory. */
static void export_for_gpu_targets_lists_flash_programs(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int max_wg;
    } targets[] = {{"nvidia", 1024}, {"amd", 256},   {"intel", 512}, {"adreno", 1024},
                   {"mali", 384},    {"apple", 256}, {"gpu", 256}};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; ++t) {
        char dir[4200], args[8192];
        snprintf(dir, sizeof dir, "%s/gpu-%s", work, targets[t].name);
        snprintf(args, sizeof args, "export --target %s --out '%s' " CLASSES, targets[t].name, dir);
        assert_int_equal(run_cli(args), 0);
        cJSON *root = read_manifest(dir);
        const cJSON *device = cJSON_GetObjectItemCaseSensitive(root, "device");
        assert_string_equal(member(device, "target"), targets[t].name);
        assert_string_equal(member(device, "type"), "gpu");
        int flash = 0, decode = 0;
        const cJSON *p = NULL;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "programs")) {
            const char *options = member(p, "options");
            /* Decode calls take the decode kernel (sdpa_decode.cl), with the same work-group bound. */
            const bool is_decode = strcmp(member(p, "source"), "sdpa_decode") == 0;
            decode += is_decode;
            if (strcmp(member(p, "source"), "sdpa_flash") != 0 && !is_decode) {
                /* Only the combine step's program, which takes the common defines alone. */
                assert_string_equal(member(p, "source"), "sdpa_fused");
                assert_null(strstr(options, "-DWG_SIZE="));
                continue;
            }
            flash += !is_decode;
            const char *wg = strstr(options, "-DWG_SIZE=");
            assert_non_null(wg);
            assert_true(atoi(wg + 10) >= 1 && atoi(wg + 10) <= targets[t].max_wg);
        }
        assert_true(flash >= 1);
        assert_true(decode >= 1);
        cJSON_Delete(root);
    }
}

static void pack_wraps_offline_compiler_outputs_into_loadable_binaries(void **state) {
    (void)state;
    /* An "offline compiler" here is PoCL itself: the raw binaries inside the exported entries, saved as .aocx
     * next to a copy of the manifest, as aoc would leave them. */
    char dir[4200], path[8192];
    snprintf(dir, sizeof dir, "%s/pack", work);
    assert_int_equal(mkdir(dir, 0700), 0);
    cJSON *root = read_manifest(export_dir);
    char *text = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    spill(path, text, strlen(text));
    free(text);
    const cJSON *p = NULL;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "programs")) {
        snprintf(path, sizeof path, "%s/%s", export_dir, member(p, "binary_file"));
        unsigned char *bin = NULL;
        size_t size = 0;
        bool missing = false;
        assert_null(cla_entry_read(path, member(p, "key"), &bin, &size, &missing));
        const char *cl = member(p, "source_file");
        snprintf(path, sizeof path, "%s/%.*s.aocx", dir, (int)(strlen(cl) - 3), cl);
        spill(path, bin, size);
        free(bin);
    }
    cJSON_Delete(root);
    char args[8192];
    snprintf(args, sizeof args, "pack --dir '%s'", dir);
    assert_int_equal(run_cli(args), 0);
    clattn_context *ctx = context_with(dir, CLATTN_COMPILE_NEVER);
    assert_runs_like_source(ctx);
    clattn_context_free(ctx);
}

static void recording_lists_programs_and_builds_nothing(void **state) {
    (void)state;
    clattn_context *ctx = context_with(NULL, CLATTN_COMPILE_AUTO);
    cla_program_record_begin(ctx);
    float *out = NULL;
    clattn_status st = run_shape(ctx, &shapes[1], &out);
    assert_int_not_equal(st, CLATTN_SUCCESS); /* nothing may run while recording */
    size_t n = 0;
    const cla_recorded_program *r = cla_program_recorded(ctx, &n);
    assert_true(n >= 1);
    assert_non_null(strstr(r[0].options, "-DHEAD_DIM=32"));
    cla_program_record_end(ctx);
    clattn_cache_stats s;
    clattn_context_cache_stats(ctx, &s);
    assert_int_equal(s.builds, 0);
    /* After recording, the context works as usual. */
    assert_status(run_shape(ctx, &shapes[0], &out), CLATTN_SUCCESS);
    free(out);
    clattn_context_free(ctx);
}

/* ---- compiled-in variants: score modifiers, serving formats, 8-bit K/V, the caller's mods ---- */

/* What `clattn kernels export` is asked for beside the plain class: softcap with sinks, a paged cache of 16-key
 * pages, int8 K/V, and one score_mod/mask_mod pair reading a float buffer named sl. */
#define MOD_SCORE "score - sl[h] * (float)abs(q_idx - kv_idx)"
#define MOD_MASK  "kv_idx % 3 != 1"
#define VARIANTS                                                                                                   \
    "--head-dims 32 --dtypes f32 --causal none --phases decode --mods softcap+sinks --kv-layouts dense,paged "     \
    "--page-sizes 16 --kv-dtypes same,i8 --score-mod '" MOD_SCORE "' --mask-mod '" MOD_MASK                        \
    "' --mod-buffers sl=f32"

enum { V_DENSE, V_PAGED_I8, V_USER_MODS, V_OTHER_MODS };

static cl_mem buffer_of(clattn_context *ctx, const void *data, size_t bytes) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                              (void *)data, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

/* One decode step (2 heads, 100 keys, d 32) with softcap and sinks: dense fp32 K/V, a paged int8 cache (7 pages of
 * 16 keys, per-head scales), or dense with the exported score_mod/mask_mod (or another score_mod). *out (16 KiB,
 * malloc'd) receives the output on success. */
static clattn_status run_variant(clattn_context *ctx, int kind, float **out) {
    enum { H = 2, LK = 100, D = 32, PAGES = 7, PAGE = 16 };
    float q[H * D], k[H * LK * D], v[H * LK * D], o[H * D];
    fill(q, H * D, 4);
    fill(k, H * LK * D, 5);
    fill(v, H * LK * D, 6);
    int8_t k8[PAGES * H * PAGE * D], v8[PAGES * H * PAGE * D];
    for (size_t i = 0; i < sizeof k8; ++i)
        k8[i] = (int8_t)(k[i % (H * LK * D)] * 60.0f), v8[i] = (int8_t)(i * 37 % 255 - 127);
    const float sinks[H] = {0.5f, -0.5f}, slopes[H] = {0.25f, 0.125f}, scales[H] = {0.02f, 0.03f};
    cl_mem qb = buffer_of(ctx, q, sizeof q), ob = test_filled_buffer(ctx, sizeof o, 0x7f);
    const bool paged = kind == V_PAGED_I8;
    cl_mem kb = paged ? buffer_of(ctx, k8, sizeof k8) : buffer_of(ctx, k, sizeof k);
    cl_mem vb = paged ? buffer_of(ctx, v8, sizeof v8) : buffer_of(ctx, v, sizeof v);
    cl_mem sb = buffer_of(ctx, sinks, sizeof sinks), lb = buffer_of(ctx, slopes, sizeof slopes);
    cl_mem cb = buffer_of(ctx, scales, sizeof scales);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    d.impl = CLATTN_IMPL_FUSED;
    d.softcap = 30.0f;
    d.sinks = clattn_tensor_bhld(sb, CLATTN_DTYPE_F32, 1, H, 1, 1);
    const clattn_tensor qt = clattn_tensor_bhld(qb, CLATTN_DTYPE_F32, 1, H, 1, D);
    const clattn_tensor ot = clattn_tensor_bhld(ob, CLATTN_DTYPE_F32, 1, H, 1, D);
    clattn_tensor kt = clattn_tensor_bhld(kb, CLATTN_DTYPE_F32, 1, H, LK, D), vt = kt;
    vt.buffer = vb;
    static const int32_t table[PAGES] = {6, 2, 0, 5, 1, 3, 4}, seqlens[1] = {LK};
    if (paged) {
        kt = clattn_tensor_bhld(kb, CLATTN_DTYPE_I8, PAGES, H, PAGE, D);
        vt = kt;
        vt.buffer = vb;
        d.seq_count = 1;
        d.block_table = table;
        d.block_table_stride = PAGES;
        d.seqlens_k = seqlens;
        d.k_scale = d.v_scale = clattn_tensor_bhld(cb, CLATTN_DTYPE_F32, 1, H, 1, 1);
    }
    if (kind == V_USER_MODS || kind == V_OTHER_MODS) {
        d.score_mod = kind == V_USER_MODS ? MOD_SCORE : "score - sl[h]";
        d.mask_mod = MOD_MASK;
        d.mod_buffers[0] = (clattn_mod_buffer){"sl", lb, CLATTN_MOD_F32, H};
    }
    clattn_status st = clattn_sdpa(ctx, &d, &qt, &kt, &vt, &ot, NULL, 0, NULL, NULL);
    *out = NULL;
    if (st == CLATTN_SUCCESS) {
        *out = malloc(sizeof o);
        assert_int_equal(
            clEnqueueReadBuffer(clattn_context_cl_queue(ctx), ob, CL_TRUE, 0, sizeof o, *out, 0, NULL, NULL),
            CL_SUCCESS);
    }
    const cl_mem all[] = {qb, ob, kb, vb, sb, lb, cb};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(all); ++i) clReleaseMemObject(all[i]);
    return st;
}

/* Export builds the variants a deployment asks for; a context that cannot compile loads each from the binaries
 * and gives bitwise what a compiling context gives, and a call with another expression has no binary. */
static void exported_variants_load_without_compiling(void **state) {
    (void)state;
    char dir[1100], args[8192];
    snprintf(dir, sizeof dir, "%s/variants", work);
    snprintf(args, sizeof args, "export --out '%s' --build %s", dir, VARIANTS);
    assert_int_equal(run_cli(args), 0);
    cJSON *root = read_manifest(dir);
    const cJSON *p;
    int with_mods = 0, paged = 0, int8 = 0, softcap = 0, n = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "programs")) {
        const char *o = member(p, "options");
        with_mods += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "user_mods"));
        paged += strstr(o, "-DKV_LAYOUT=2 -DPAGE_SIZE=16") != NULL;
        int8 += strstr(o, "-DK_DTYPE=4") != NULL;
        softcap += strstr(o, "-DHAS_SOFTCAP=1 -DHAS_SINKS=1") != NULL;
        ++n;
    }
    cJSON_Delete(root);
    if (!with_mods || !paged || !int8 || softcap != n)
        fail_msg("%d programs: %d with the mods, %d paged, %d int8, %d with softcap and sinks", n, with_mods, paged,
                 int8, softcap);

    clattn_context *binary_ctx = context_with(dir, CLATTN_COMPILE_NEVER);
    clattn_context *source_ctx = context_with(NULL, CLATTN_COMPILE_AUTO);
    for (int kind = V_DENSE; kind <= V_USER_MODS; ++kind) {
        float *from_binary = NULL, *from_source = NULL;
        const clattn_status st = run_variant(binary_ctx, kind, &from_binary);
        if (st != CLATTN_SUCCESS)
            fail_msg("variant %d from binaries: %s\n%s", kind, clattn_status_string(st),
                     clattn_context_last_error(binary_ctx));
        assert_status(run_variant(source_ctx, kind, &from_source), CLATTN_SUCCESS);
        assert_memory_equal(from_binary, from_source, 2 * 32 * sizeof(float));
        free(from_binary);
        free(from_source);
    }
    clattn_cache_stats bs;
    clattn_context_cache_stats(binary_ctx, &bs);
    assert_int_equal(bs.builds, 0);
    assert_true(bs.binary_loads >= 3);
    float *none = NULL;
    assert_status(run_variant(binary_ctx, V_OTHER_MODS, &none), CLATTN_ERROR_NO_COMPILER);
    assert_null(none);
    clattn_context_free(binary_ctx);
    clattn_context_free(source_ctx);
    /* The options are checked. */
    snprintf(args, sizeof args, "export --out '%s' --mods softcap+softcap", dir);
    assert_int_equal(run_cli(args), 2);
    snprintf(args, sizeof args, "export --out '%s' --page-sizes 24 --kv-layouts paged", dir);
    assert_int_equal(run_cli(args), 2);
    snprintf(args, sizeof args, "export --out '%s' --kv-dtypes i4", dir);
    assert_int_equal(run_cli(args), 2);
    snprintf(args, sizeof args, "export --out '%s' --mod-buffers sl=f32", dir);
    assert_int_equal(run_cli(args), 2);
    snprintf(args, sizeof args, "export --out '%s' --score-mod score --mod-buffers sl=f64", dir);
    assert_int_equal(run_cli(args), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exported_binaries_run_without_compiling_bitwise_like_source),
        cmocka_unit_test(compile_env_zero_and_binary_dir_env_select_binaries),
        cmocka_unit_test(binary_dir_alone_does_not_stop_a_cpu_compiling),
        cmocka_unit_test(missing_binary_is_no_compiler_naming_file_and_program),
        cmocka_unit_test(bad_binary_files_are_invalid_binary_never_trusted),
        cmocka_unit_test(export_manifest_lists_files_holding_what_the_library_builds),
        cmocka_unit_test(export_for_fpga_target_lists_tiled_programs_without_binaries),
        cmocka_unit_test(export_for_gpu_targets_lists_flash_programs),
        cmocka_unit_test(pack_wraps_offline_compiler_outputs_into_loadable_binaries),
        cmocka_unit_test(recording_lists_programs_and_builds_nothing),
        cmocka_unit_test(exported_variants_load_without_compiling),
    };
    return cmocka_run_group_tests_name("binaries", tests, setup, teardown);
}
