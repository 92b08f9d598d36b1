// SPDX-License-Identifier: Apache-2.0
/* `clattn kernels export` and `clattn kernels pack`: the kernel programs a configuration needs, for devices that
 * cannot compile at run time (FPGAs).
 *
 * export drives the real attention code paths, with the library recording (src/program.c) instead of building,
 * over a set of problem classes and tiny shapes, so the list of programs is exactly what the library would build
 * and cannot drift from it. For each program it writes the complete source (common.cl and the kernel file, as
 * compiled), its build options and a manifest; with --build it also compiles each program for the device and
 * writes the binary in the format the library loads (CLATTN_BINARY_DIR). pack wraps the outputs of an offline
 * compiler (aoc, v++) into that format, keyed for the device they will run on. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clattn_advanced.h"
#include "cli.h"
#include "kernels_variants.h"

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool write_text(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(text, 1, len, f) == len;
    return (fclose(f) == 0) && ok;
}

/* A whole file of at most `limit` bytes, NUL-terminated; NULL if it cannot be read. */
static unsigned char *read_all(const char *path, size_t limit, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len >= 0 && (unsigned long)len <= limit && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)len + 1);
        if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        *size = (size_t)len;
    }
    return buf;
}

/* Splits a comma-separated list in place; returns the number of items (at most `max`), or -1 if too many. */
static int split_list(char *text, char **items, int max) {
    int n = 0;
    for (char *tok = strtok(text, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) return -1;
        items[n++] = tok;
    }
    return n;
}

/* ---- targets: devices that are not present ---- */

/* A device class: the figures of a typical member that the choice of programs depends on (type, local memory and
 * whether it is on chip, work-group limits, compute units for the key splits, fp16). Each stands in for the real
 * device's names; `clattn kernels pack` keys binaries for the real device. The GPU classes let anyone compile
 * exactly what such a GPU would build with that vendor's offline compiler (tools/scripts/gpu_compile_report.sh). */
typedef struct target_class {
    const char *name, *device, *vendor;
    clattn_device_type type;
    unsigned compute_units, clock_mhz;
    unsigned local_kib;
    int local_dedicated;
    unsigned max_group;
    int fp16, compiler;
} target_class;

/* clang-format off */
static const target_class target_classes[] = {
    {"fpga", "generic FPGA", "generic", CLATTN_DEVICE_TYPE_ACCELERATOR, 1, 300, 64, 1, 256, 0, 0},
    {"nvidia", "NVIDIA GPU (class)", "NVIDIA Corporation", CLATTN_DEVICE_TYPE_GPU, 132, 1755, 48, 1, 1024, 1, 1},
    {"amd", "AMD GPU (class)", "Advanced Micro Devices, Inc.", CLATTN_DEVICE_TYPE_GPU, 110, 1700, 64, 1, 256, 1, 1},
    {"intel", "Intel GPU (class)", "Intel(R) Corporation", CLATTN_DEVICE_TYPE_GPU, 96, 1300, 64, 1, 512, 1, 1},
    {"adreno", "Qualcomm Adreno GPU (class)", "QUALCOMM", CLATTN_DEVICE_TYPE_GPU, 4, 900, 32, 1, 1024, 1, 1},
    {"mali", "ARM Mali GPU (class)", "ARM", CLATTN_DEVICE_TYPE_GPU, 16, 850, 32, 0, 384, 1, 1},
    {"apple", "Apple GPU (class)", "Apple", CLATTN_DEVICE_TYPE_GPU, 32, 1300, 32, 1, 256, 0, 1},
    {"gpu", "generic GPU (class)", "generic", CLATTN_DEVICE_TYPE_GPU, 16, 1000, 32, 1, 256, 0, 1},
};
/* clang-format on */

static const target_class *find_target(const char *name) {
    for (size_t i = 0; i < sizeof target_classes / sizeof target_classes[0]; ++i)
        if (strcmp(target_classes[i].name, name) == 0) return &target_classes[i];
    return NULL;
}

static void target_info(const target_class *t, clattn_device_info *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->platform_name, sizeof d->platform_name, "clattn target %s", t->name);
    snprintf(d->platform_vendor, sizeof d->platform_vendor, "%s", t->vendor);
    snprintf(d->platform_version, sizeof d->platform_version, "OpenCL 1.2");
    snprintf(d->name, sizeof d->name, "%s", t->device);
    snprintf(d->vendor, sizeof d->vendor, "%s", t->vendor);
    snprintf(d->driver_version, sizeof d->driver_version, "offline");
    snprintf(d->device_version, sizeof d->device_version, "OpenCL 1.2");
    snprintf(d->opencl_c_version, sizeof d->opencl_c_version, "OpenCL C 1.2");
    d->type = t->type;
    d->compute_units = t->compute_units;
    d->max_clock_mhz = t->clock_mhz;
    d->global_mem_bytes = 16ull << 30;
    d->max_alloc_bytes = 4ull << 30;
    d->local_mem_bytes = (uint64_t)t->local_kib << 10;
    d->local_mem_is_dedicated = t->local_dedicated;
    d->max_work_group_size = t->max_group;
    d->max_work_item_dims = 3;
    d->max_work_item_sizes[0] = d->max_work_item_sizes[1] = d->max_work_item_sizes[2] = t->max_group;
    d->preferred_vector_width_float = d->native_vector_width_float = 1;
    d->preferred_vector_width_half = t->fp16 ? 2 : 0;
    d->has_fp16 = t->fp16;
    d->compiler_available = t->compiler;
}

/* ---- the problem classes ---- */

enum { MAX_ITEMS = 16 };

typedef struct classes {
    size_t head_dims[MAX_ITEMS];
    int n_head_dims;
    clattn_dtype dtypes[MAX_ITEMS];
    int n_dtypes;
    clattn_causal causal[MAX_ITEMS];
    int n_causal;
    int masks[MAX_ITEMS]; /* 0 none, 1 additive (f32), 2 bool, 3 key lengths */
    int n_masks;
    bool prefill, decode;
    clattn_impl impls[2];
    int n_impls;
    bool lse, window;     /* also the variants that write the log-sum-exp, or have a sliding window */
    kernels_variants var; /* score modifiers, serving layouts, 8-bit K/V, the caller's mods */
} classes;

static const char *const mask_names[] = {"none", "additive", "bool", "key-lengths"};
static const char *const causal_names[] = {"none", "top-left", "bottom-right"};

static int parse_classes(const char *cmd, const cli_command *c, classes *cl) {
    char buf[512];
    char *items[MAX_ITEMS];
    int n;
#define LIST(opt, dflt)                                                                                            \
    do {                                                                                                           \
        const char *v_ = cli_value(c, opt);                                                                        \
        snprintf(buf, sizeof buf, "%s", v_ ? v_ : dflt);                                                           \
        n = split_list(buf, items, MAX_ITEMS);                                                                     \
        if (n <= 0) return cli_error(cmd, CLI_USAGE, "--%s: expected a comma-separated list", opt);                \
    } while (0)

    LIST("head-dims", "64,128");
    cl->n_head_dims = n;
    for (int i = 0; i < n; ++i) {
        char *end = NULL;
        unsigned long v = strtoul(items[i], &end, 10);
        if (*end || v == 0 || v > 1024) return cli_error(cmd, CLI_USAGE, "--head-dims: bad value '%s'", items[i]);
        cl->head_dims[i] = v;
    }
    LIST("dtypes", "f32,f16");
    cl->n_dtypes = n;
    for (int i = 0; i < n; ++i)
        if (cli_parse_dtype(cmd, items[i], &cl->dtypes[i]) != CLI_OK) return CLI_USAGE;
    LIST("causal", "none,bottom-right");
    cl->n_causal = n;
    for (int i = 0; i < n; ++i) {
        int k = 0;
        while (k < 3 && strcmp(items[i], causal_names[k]) != 0) ++k;
        if (k == 3)
            return cli_error(cmd, CLI_USAGE, "--causal: '%s' is not none, top-left or bottom-right", items[i]);
        cl->causal[i] = (clattn_causal)k;
    }
    LIST("masks", "none");
    cl->n_masks = n;
    for (int i = 0; i < n; ++i) {
        int k = 0;
        while (k < 4 && strcmp(items[i], mask_names[k]) != 0) ++k;
        if (k == 4)
            return cli_error(cmd, CLI_USAGE, "--masks: '%s' is not none, additive, bool or key-lengths", items[i]);
        cl->masks[i] = k;
    }
    LIST("phases", "prefill,decode");
    cl->prefill = cl->decode = false;
    for (int i = 0; i < n; ++i) {
        if (strcmp(items[i], "prefill") == 0)
            cl->prefill = true;
        else if (strcmp(items[i], "decode") == 0)
            cl->decode = true;
        else
            return cli_error(cmd, CLI_USAGE, "--phases: '%s' is not prefill or decode", items[i]);
    }
    LIST("impl", "fused");
    if (n > 2) return cli_error(cmd, CLI_USAGE, "--impl: fused, unfused or both");
    cl->n_impls = n;
    for (int i = 0; i < n; ++i) {
        if (strcmp(items[i], "fused") == 0)
            cl->impls[i] = CLATTN_IMPL_FUSED;
        else if (strcmp(items[i], "unfused") == 0)
            cl->impls[i] = CLATTN_IMPL_UNFUSED;
        else
            return cli_error(cmd, CLI_USAGE, "--impl: '%s' is not fused or unfused", items[i]);
    }
    LIST("extras", "none");
    cl->lse = cl->window = false;
    for (int i = 0; i < n; ++i) {
        if (strcmp(items[i], "lse") == 0)
            cl->lse = true;
        else if (strcmp(items[i], "window") == 0)
            cl->window = true;
        else if (strcmp(items[i], "none") != 0)
            return cli_error(cmd, CLI_USAGE, "--extras: '%s' is not none, lse or window", items[i]);
    }
#undef LIST
    return kernels_variants_parse(cmd, c, &cl->var);
}

/* Query and key lengths that reach every kernel shape the library picks by length: decode rows (Lq < 8) and the
 * row blocks of 8, 16 and 24, each with short keys (one split) and long keys (split over the keys, where the rows
 * alone leave the device idle). The lengths only steer choices: nothing runs while recording. */
static const size_t decode_q[] = {1};
static const size_t prefill_q[] = {8, 16, 24, 64};
static const size_t kv_lens[] = {64, 4096};
enum { MAX_Q = 64, MAX_KV = 4096 };

typedef struct buffers {
    cl_mem q, k, v, out, mask, lengths, lse;
} buffers;

static void release_buffers(buffers *b) {
    cl_mem *all[] = {&b->q, &b->k, &b->v, &b->out, &b->mask, &b->lengths, &b->lse};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (*all[i]) clReleaseMemObject(*all[i]);
}

static int make_buffers(const char *cmd, clattn_context *ctx, size_t max_d, buffers *b) {
    memset(b, 0, sizeof *b);
    cl_context c = clattn_context_cl_context(ctx);
    /* q, k, v, out, a mask, key lengths, lse */
    size_t sizes[] = {MAX_Q * max_d * 4, MAX_KV * max_d * 4,         MAX_KV * max_d * 4,
                      MAX_Q * max_d * 4, (size_t)MAX_Q * MAX_KV * 4, 4,
                      MAX_Q * 4};
    cl_mem *dst[] = {&b->q, &b->k, &b->v, &b->out, &b->mask, &b->lengths, &b->lse};
    for (size_t i = 0; i < sizeof dst / sizeof dst[0]; ++i) {
        cl_int err = CL_SUCCESS;
        *dst[i] = clCreateBuffer(c, CL_MEM_READ_WRITE, sizes[i], NULL, &err);
        if (err != CL_SUCCESS) {
            release_buffers(b);
            return cli_error(cmd, CLI_FAILED, "allocating %zu bytes for the recording shapes failed: %d", sizes[i],
                             err);
        }
    }
    return CLI_OK;
}

/* Drives one attention call with the library recording. Validation errors mean the class cannot run on this
 * device and are reported; the failure of the first device operation (every one fails while recording) is the
 * expected end of the call. */
static int record_call(const char *cmd, clattn_context *ctx, const buffers *b, const classes *cl,
                       const kernels_variant *var, kernels_variant_state *vs, size_t d, clattn_dtype dt,
                       clattn_causal causal, int mask, clattn_impl impl, int extras, size_t lq, size_t lk) {
    clattn_tensor q, k, v, o;
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    if (!kernels_variant_apply(var, &cl->var, vs, lq, lk, d, dt, b->q, b->k, b->v, b->out, &desc, &q, &k, &v, &o))
        return CLI_OK;
    desc.causal = causal;
    desc.impl = impl;
    if (mask == 1) desc.mask = clattn_tensor_bhld(b->mask, CLATTN_DTYPE_F32, 1, 1, lq, lk);
    if (mask == 2) desc.mask = clattn_tensor_bhld(b->mask, CLATTN_DTYPE_BOOL, 1, 1, lq, lk);
    if (mask == 3) desc.key_lengths = b->lengths;
    if (extras & 1) desc.lse = clattn_tensor_bhld(b->lse, CLATTN_DTYPE_F32, 1, 1, lq, 1);
    if (extras & 2) desc.window_left = 16;
    clattn_status st = clattn_sdpa(ctx, &desc, &q, &k, &v, &o, NULL, 0, NULL, NULL);
    bool invalid = (st <= CLATTN_ERROR_INVALID_ARGUMENT && st >= CLATTN_ERROR_OUT_OF_HOST_MEMORY) ||
                   st == CLATTN_ERROR_DEVICE_LIMIT;
    if (!invalid) return CLI_OK;
    char what[96];
    kernels_variant_describe(var, what, sizeof what);
    return cli_error(cmd, CLI_FAILED,
                     "attention with head dim %zu, %s, causal %s, mask %s%s%s, Lq %zu, Lk %zu cannot run on this "
                     "device: %s\n%s",
                     d, clattn_dtype_name(dt), causal_names[causal], mask_names[mask], *what ? ", " : "", what, lq,
                     lk, clattn_status_string(st), clattn_context_last_error(ctx));
}

static int record_classes(const char *cmd, clattn_context *ctx, const classes *cl) {
    size_t max_d = 0;
    for (int i = 0; i < cl->n_head_dims; ++i)
        if (cl->head_dims[i] > max_d) max_d = cl->head_dims[i];
    buffers b;
    int rc = make_buffers(cmd, ctx, max_d, &b);
    if (rc != CLI_OK) return rc;
    size_t qs[8];
    size_t nq = 0;
    if (cl->decode)
        for (size_t i = 0; i < sizeof decode_q / sizeof decode_q[0]; ++i) qs[nq++] = decode_q[i];
    if (cl->prefill)
        for (size_t i = 0; i < sizeof prefill_q / sizeof prefill_q[0]; ++i) qs[nq++] = prefill_q[i];
    /* The variants' small inputs: per-head values (sinks 0.5, an ALiBi slope) and K/V scales. */
    kernels_variant_state vs;
    memset(&vs, 0, sizeof vs);
    const float small[16] = {0.5f, 0.25f, 0.5f, 0.5f};
    cl_int err = CL_SUCCESS;
    vs.head_values = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                    sizeof small, (void *)small, &err);
    if (err == CL_SUCCESS)
        vs.scales = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                   sizeof small, (void *)small, &err);
    if (err != CL_SUCCESS) rc = cli_error(cmd, CLI_FAILED, "allocating the variants' inputs failed: %d", err);
    const kernels_variants *kv = &cl->var;
    const bool user_mods = kv->score_mod || kv->mask_mod;
    clattn_program_record_begin(ctx);
    for (int a = 0; a < cl->n_head_dims && rc == CLI_OK; ++a)
        for (int t = 0; t < cl->n_dtypes && rc == CLI_OK; ++t)
            for (int c = 0; c < cl->n_causal && rc == CLI_OK; ++c)
                for (int m = 0; m < cl->n_masks && rc == CLI_OK; ++m)
                    for (int i = 0; i < cl->n_impls && rc == CLI_OK; ++i)
                        for (int e = 0; e < 4 && rc == CLI_OK; ++e) {
                            if (((e & 1) && !cl->lse) || ((e & 2) && !cl->window)) continue;
                            for (int u = 0; u < kv->n_mods && rc == CLI_OK; ++u)
                                for (int l = 0; l < kv->n_layouts && rc == CLI_OK; ++l)
                                    for (int p = 0; p < kv->n_pages && rc == CLI_OK; ++p)
                                        for (int z = 0; z < kv->n_kv_dtypes * (1 + user_mods) && rc == CLI_OK;
                                             ++z) {
                                            /* With the caller's mods given, each variant without and with them. */
                                            const kernels_variant var = {kv->mods[u], kv->layouts[l],
                                                                         kv->kv_dtypes[z % kv->n_kv_dtypes],
                                                                         kv->pages[p], z >= kv->n_kv_dtypes};
                                            const bool paged =
                                                var.layout == LAYOUT_PAGED || var.layout == LAYOUT_PACKED_PAGED;
                                            /* Page sizes count for the paged layouts alone. */
                                            if (!paged && p > 0) continue;
                                            /* Serving formats, 8-bit K/V and the caller's mods are fused only;
                                             * packed keys and paged caches take no key lengths. */
                                            const bool serving = var.layout != LAYOUT_DENSE;
                                            if (cl->impls[i] == CLATTN_IMPL_UNFUSED &&
                                                (serving || var.kv_dtype >= 0 || var.user_mods))
                                                continue;
                                            if (serving && cl->masks[m] == 3) continue;
                                            for (size_t x = 0; x < nq && rc == CLI_OK; ++x)
                                                for (size_t y = 0;
                                                     y < sizeof kv_lens / sizeof kv_lens[0] && rc == CLI_OK; ++y)
                                                    rc = record_call(cmd, ctx, &b, cl, &var, &vs, cl->head_dims[a],
                                                                     cl->dtypes[t], cl->causal[c], cl->masks[m],
                                                                     cl->impls[i], e, qs[x], kv_lens[y]);
                                        }
                        }
    release_buffers(&b);
    if (vs.head_values) clReleaseMemObject(vs.head_values);
    if (vs.scales) clReleaseMemObject(vs.scales);
    return rc;
}

/* ---- export ---- */

static cJSON *string_list(const char *const *names, const int *values, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; ++i) cJSON_AddItemToArray(a, cJSON_CreateString(names[values[i]]));
    return a;
}

static cJSON *classes_json(const classes *cl) {
    cJSON *o = cJSON_CreateObject();
    cJSON *hd = cJSON_AddArrayToObject(o, "head_dims");
    for (int i = 0; i < cl->n_head_dims; ++i)
        cJSON_AddItemToArray(hd, cJSON_CreateNumber((double)cl->head_dims[i]));
    cJSON *dt = cJSON_AddArrayToObject(o, "dtypes");
    for (int i = 0; i < cl->n_dtypes; ++i)
        cJSON_AddItemToArray(dt, cJSON_CreateString(clattn_dtype_name(cl->dtypes[i])));
    int v[MAX_ITEMS];
    for (int i = 0; i < cl->n_causal; ++i) v[i] = (int)cl->causal[i];
    cJSON_AddItemToObject(o, "causal", string_list(causal_names, v, cl->n_causal));
    cJSON_AddItemToObject(o, "masks", string_list(mask_names, cl->masks, cl->n_masks));
    cJSON *ph = cJSON_AddArrayToObject(o, "phases");
    if (cl->prefill) cJSON_AddItemToArray(ph, cJSON_CreateString("prefill"));
    if (cl->decode) cJSON_AddItemToArray(ph, cJSON_CreateString("decode"));
    cJSON *ex = cJSON_AddArrayToObject(o, "extras");
    if (cl->lse) cJSON_AddItemToArray(ex, cJSON_CreateString("lse"));
    if (cl->window) cJSON_AddItemToArray(ex, cJSON_CreateString("window"));
    cJSON *im = cJSON_AddArrayToObject(o, "impl");
    for (int i = 0; i < cl->n_impls; ++i)
        cJSON_AddItemToArray(im, cJSON_CreateString(cl->impls[i] == CLATTN_IMPL_FUSED ? "fused" : "unfused"));
    kernels_variants_json(&cl->var, o);
    return o;
}

static cJSON *device_json(const clattn_device_info *d, const char *target) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "type", clattn_device_type_name(d->type));
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "platform_version", d->platform_version);
    cJSON_AddStringToObject(o, "device_version", d->device_version);
    cJSON_AddStringToObject(o, "driver_version", d->driver_version);
    if (target)
        cJSON_AddStringToObject(o, "target", target);
    else
        cJSON_AddNullToObject(o, "target");
    return o;
}

/* One recorded program, copied out of the recording. */
typedef struct program_ref {
    char *source_name;
    char *prefix; /* the caller's score_mod/mask_mod code ahead of the source, or NULL */
    char *options;
} program_ref;

/* Writes one program's source and options, and with `build` its binary; adds its manifest entry. */
static int export_program(const char *cmd, clattn_context *ctx, const char *out, const program_ref *r, bool build,
                          cJSON *programs) {
    char *cl_path = NULL, *opt_path = NULL;
    unsigned char *bin = NULL;
    size_t bin_size = 0;
    int rc = CLI_OK;
    clattn_program_description d;
    clattn_status st = clattn_program_describe_prefixed(ctx, r->source_name, r->prefix, r->options, &d);
    if (st != CLATTN_SUCCESS) return cli_report_status(cmd, ctx, st, "loading a kernel source");
    char stem[160], cl_name[176], opt_name[176];
    snprintf(stem, sizeof stem, "%.100s-%.12s", r->source_name, d.binary_file);
    snprintf(cl_name, sizeof cl_name, "%s.cl", stem);
    snprintf(opt_name, sizeof opt_name, "%s.options", stem);
    cl_path = path_join(out, cl_name);
    opt_path = path_join(out, opt_name);
    if (!cl_path || !opt_path) {
        rc = cli_error(cmd, CLI_FAILED, "out of memory");
        goto out;
    }
    if (!write_text(cl_path, d.source, d.source_length) ||
        !write_text(opt_path, d.build_options, strlen(d.build_options))) {
        rc = cli_error(cmd, CLI_FAILED, "cannot write %s or %s: %s", cl_path, opt_path, strerror(errno));
        goto out;
    }
    if (build) {
        st = clattn_program_build_binary_prefixed(ctx, r->source_name, r->prefix, r->options, &bin, &bin_size);
        if (st != CLATTN_SUCCESS) {
            rc = cli_report_status(cmd, ctx, st, "building a program");
            goto out;
        }
        char why[1024];
        if (clattn_binary_write(out, d.key, bin, bin_size, why, sizeof why) != CLATTN_SUCCESS) {
            rc = cli_error(cmd, CLI_FAILED, "%s", why);
            goto out;
        }
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "source", r->source_name);
    cJSON_AddStringToObject(p, "options", r->options);
    cJSON_AddStringToObject(p, "build_options", d.build_options);
    cJSON_AddStringToObject(p, "key", d.key);
    cJSON_AddStringToObject(p, "source_file", cl_name);
    cJSON_AddStringToObject(p, "options_file", opt_name);
    cJSON_AddStringToObject(p, "binary_file", d.binary_file);
    cJSON_AddBoolToObject(p, "binary_built", build);
    cJSON_AddBoolToObject(p, "user_mods",
                          r->prefix != NULL); /* the source file holds the score_mod/mask_mod code */
    cJSON_AddItemToArray(programs, p);
out:
    clattn_program_description_free(&d);
    free(cl_path);
    free(opt_path);
    clattn_free(bin);
    return rc;
}

static int write_manifest(const char *cmd, const char *out, cJSON *root) {
    char *text = cJSON_Print(root);
    char *path = path_join(out, "manifest.json");
    int rc = CLI_OK;
    if (!text || !path || !write_text(path, text, strlen(text)))
        rc = cli_error(cmd, CLI_FAILED, "cannot write %s/manifest.json", out);
    free(text);
    free(path);
    return rc;
}

static int kernels_export(int argc, char **argv) {
    const char *CMD = "kernels export";
    cli_option options[] = {
        {"device", "SPEC", "the device the programs are for (default: CLATTN_DEVICE, else the default device)",
         NULL},
        {"target", "NAME",
         "a device class that is not present: fpga, nvidia, amd, intel, adreno, mali, apple or gpu", NULL},
        {"out", "DIR", "where the sources, options, binaries and manifest.json go (created if missing)", NULL},
        {"build", NULL, "also compile each program for --device and write its binary, as CLATTN_BINARY_DIR wants",
         NULL},
        {"head-dims", "LIST", "head dimensions (default 64,128)", NULL},
        {"dtypes", "LIST", "storage types among f32,f16,bf16 (default f32,f16)", NULL},
        {"causal", "LIST", "among none,top-left,bottom-right (default none,bottom-right)", NULL},
        {"masks", "LIST", "among none,additive,bool,key-lengths (default none)", NULL},
        {"phases", "LIST", "among prefill,decode (default both)", NULL},
        {"impl", "LIST", "among fused,unfused (default fused; unfused also needs CLBlast, which compiles)", NULL},
        {"extras", "LIST", "also the variants with these, among lse,window (default none)", NULL},
        CLI_OPTIONS_EXPORT_VARIANTS,
    };
    static const char summary[] =
        "Write every kernel program that attention needs for a set of problem classes on a device: its complete\n"
        "source (.cl), its build options (.options) and manifest.json, for an offline compiler (Intel aoc,\n"
        "AMD/Xilinx v++); with --build, also the binaries the library loads from CLATTN_BINARY_DIR. --target\n"
        "writes what a device class that is not present gets by default: fpga (no run-time compiler), or the GPU\n"
        "classes nvidia, amd, intel, adreno, mali, apple and gpu (for tools/scripts/gpu_compile_report.sh).";
    cli_command cmd = {CMD, summary, "(--device SPEC | --target NAME) --out DIR [--build] [class options]", options,
                       sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;
    const char *out = cli_value(&cmd, "out");
    const char *target = cli_value(&cmd, "target");
    bool build = cli_flag(&cmd, "build");
    if (!out || !*out) return cli_error(CMD, CLI_USAGE, "--out DIR is required");
    const target_class *tc = target ? find_target(target) : NULL;
    if (target && !tc)
        return cli_error(CMD, CLI_USAGE,
                         "--target %s: the known targets are fpga, nvidia, amd, intel, adreno, mali, apple and gpu",
                         target);
    if (target && build)
        return cli_error(CMD, CLI_USAGE,
                         "--build compiles for a device that is present; it cannot go with --target");
    classes cl;
    if ((rc = parse_classes(CMD, &cmd, &cl)) != CLI_OK) return rc;
    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        return cli_error(CMD, CLI_FAILED, "cannot create %s: %s", out, strerror(errno));

    /* A target still borrows a device present here, for the buffers the recorded calls validate against; the
     * device's description is the target's, which is all the choice of programs depends on. */
    clattn_context *ctx = NULL;
    if ((rc = cli_open_context(CMD, cli_value(&cmd, "device"), false, &ctx)) != CLI_OK) return rc;
    clattn_device_info info;
    if (target) {
        target_info(tc, &info);
        clattn_context_set_target(ctx, &info);
    }
    clattn_context_device_info(ctx, &info);
    rc = record_classes(CMD, ctx, &cl);
    const size_t count = clattn_program_record_count(ctx);
    /* The list outlives the recording: copy it, then build with recording off. */
    program_ref *list = calloc(count ? count : 1, sizeof *list);
    for (size_t i = 0; list && i < count; ++i) {
        const char *source_name = NULL, *program_options = NULL, *prefix = NULL;
        if (clattn_program_recorded(ctx, i, &source_name, &program_options) != CLATTN_SUCCESS ||
            clattn_program_recorded_prefix(ctx, i, &prefix) != CLATTN_SUCCESS)
            continue;
        list[i].source_name = strdup(source_name);
        list[i].options = strdup(program_options);
        list[i].prefix = prefix ? strdup(prefix) : NULL;
    }
    clattn_program_record_end(ctx);
    if (rc == CLI_OK && !list) rc = cli_error(CMD, CLI_FAILED, "out of memory");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "clattn-kernels-export 1");
    cJSON_AddStringToObject(root, "clattn_version", clattn_version_string());
    cJSON_AddItemToObject(root, "device", device_json(&info, target));
    cJSON_AddItemToObject(root, "classes", classes_json(&cl));
    cJSON *programs = cJSON_AddArrayToObject(root, "programs");
    for (size_t i = 0; rc == CLI_OK && i < count; ++i) {
        if (!list[i].source_name || !list[i].options) {
            rc = cli_error(CMD, CLI_FAILED, "out of memory");
            break;
        }
        rc = export_program(CMD, ctx, out, &list[i], build, programs);
    }
    if (rc == CLI_OK) rc = write_manifest(CMD, out, root);
    if (rc == CLI_OK)
        printf("%zu programs for '%s'%s written to %s (manifest.json lists them)\n", count, info.name,
               build ? " with their binaries" : "", out);
    cJSON_Delete(root);
    for (size_t i = 0; list && i < count; ++i) {
        free(list[i].source_name);
        free(list[i].options);
        free(list[i].prefix);
    }
    free(list);
    clattn_context_free(ctx);
    return rc;
}

/* ---- pack ---- */

static int kernels_pack(int argc, char **argv) {
    const char *CMD = "kernels pack";
    cli_option options[] = {
        {"device", "SPEC", "the device the binaries will run on (default: CLATTN_DEVICE, else the default)", NULL},
        {"dir", "DIR", "a directory written by 'clattn kernels export', with the offline compiler's outputs", NULL},
        {"ext", "EXT", "the offline compiler's output extension, next to each .cl file (default aocx)", NULL},
    };
    cli_command cmd = {
        CMD,
        "Wrap an offline compiler's outputs (DIR/<program>.<EXT>, one per .cl file that 'clattn kernels export'\n"
        "wrote) into the binaries the library loads from CLATTN_BINARY_DIR, keyed for --device.",
        "--dir DIR [--device SPEC] [--ext EXT]", options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;
    const char *dir = cli_value(&cmd, "dir");
    const char *ext = cli_value(&cmd, "ext") ? cli_value(&cmd, "ext") : "aocx";
    if (!dir || !*dir) return cli_error(CMD, CLI_USAGE, "--dir DIR is required");
    char *manifest_path = path_join(dir, "manifest.json");
    size_t size = 0;
    char *text = manifest_path ? (char *)read_all(manifest_path, 64u << 20, &size) : NULL;
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) {
        rc = cli_error(CMD, CLI_USAGE, "%s is missing or is not JSON", manifest_path ? manifest_path : dir);
        free(manifest_path);
        return rc;
    }
    free(manifest_path);
    clattn_context *ctx = NULL;
    if ((rc = cli_open_context(CMD, cli_value(&cmd, "device"), false, &ctx)) != CLI_OK) {
        cJSON_Delete(root);
        return rc;
    }
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    const cJSON *programs = cJSON_GetObjectItemCaseSensitive(root, "programs");
    int packed = 0, absent = 0;
    const cJSON *p = NULL;
    if (!cJSON_IsArray(programs)) rc = cli_error(CMD, CLI_USAGE, "manifest.json has no programs array");
    const cJSON *list = cJSON_IsArray(programs) ? programs : NULL;
    cJSON_ArrayForEach(p, list) {
        if (rc != CLI_OK) break;
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(p, "source");
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(p, "options");
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(p, "source_file");
        const cJSON *built = cJSON_GetObjectItemCaseSensitive(p, "build_options");
        if (!cJSON_IsString(src) || !cJSON_IsString(opt) || !cJSON_IsString(file) ||
            strlen(file->valuestring) < 4 || strchr(file->valuestring, '/')) {
            rc = cli_error(CMD, CLI_USAGE, "manifest.json: a program lacks source, options or source_file");
            break;
        }
        char raw_name[512];
        snprintf(raw_name, sizeof raw_name, "%.*s.%s", (int)(strlen(file->valuestring) - 3), file->valuestring,
                 ext);
        char *raw_path = path_join(dir, raw_name);
        size_t raw_size = 0;
        unsigned char *raw = raw_path ? read_all(raw_path, 1u << 30, &raw_size) : NULL;
        clattn_program_description d;
        memset(&d, 0, sizeof d);
        if (!raw || raw_size == 0) {
            fprintf(stderr, "clattn %s: %s is missing; compile %s with %s first\n", CMD,
                    raw_path ? raw_path : raw_name, file->valuestring, "the options in the .options file");
            ++absent;
        } else if (clattn_program_describe(ctx, src->valuestring, opt->valuestring, &d) != CLATTN_SUCCESS) {
            rc = cli_report_status(CMD, ctx, CLATTN_ERROR_KERNEL_NOT_FOUND, "computing a program key");
        } else {
            if (cJSON_IsString(built) && strcmp(built->valuestring, d.build_options) != 0)
                fprintf(stderr,
                        "clattn %s: warning: %s was exported with build options '%s', but '%s' builds with '%s'\n",
                        CMD, file->valuestring, built->valuestring, info.name, d.build_options);
            char why[1024];
            if (clattn_binary_write(dir, d.key, raw, raw_size, why, sizeof why) != CLATTN_SUCCESS)
                rc = cli_error(CMD, CLI_FAILED, "%s", why);
            else
                ++packed;
        }
        clattn_program_description_free(&d);
        free(raw);
        free(raw_path);
    }
    if (rc == CLI_OK) {
        printf("%d binaries packed for '%s' in %s%s\n", packed, info.name, dir,
               absent ? "; some compiler outputs are missing (see above)" : "");
        if (absent) rc = CLI_FAILED;
    }
    cJSON_Delete(root);
    clattn_context_free(ctx);
    return rc;
}

int cmd_kernels(int argc, char **argv) {
    static const cli_subcommand actions[] = {
        {"export", "write the programs a configuration needs (sources, options, manifest; --build: binaries)",
         kernels_export},
        {"pack", "wrap an offline compiler's outputs into binaries for CLATTN_BINARY_DIR", kernels_pack},
    };
    return cli_dispatch("kernels", "action", actions, sizeof actions / sizeof actions[0], argc, argv);
}
