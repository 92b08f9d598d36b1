// SPDX-License-Identifier: Apache-2.0
/* `clattn bench mha` and `clattn bench additive`: time the attention layers (projections included) on the device
 * with OpenCL profiling events, like `clattn bench sdpa`, and report ms, GFLOP/s and the device memory each call
 * allocates. Multi-head attention runs with its attention step fused and unfused side by side, and as a KV-cache
 * decoding step with --decode; seq2seq attention runs every score kind (additive, dot, general, concat). --check
 * compares every measured output with the double-precision reference, as `clattn bench sdpa --check` does. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench_check.h"
#include "bench_timing.h"
#include "check_tolerance.h"
#include "cli.h"
#include "reference_mha.h"
#include "reference_seq2seq.h"
#include "run_common.h"

#define MAX_SWEEP 64

enum { FORMAT_TABLE = 0, FORMAT_JSON = 1, FORMAT_CSV = 2 };

/* A shape is a set of named sizes; each operation names its own (see the option tables below). */
#define MAX_FIELDS 10

typedef struct layer_shape {
    size_t value[MAX_FIELDS];
} layer_shape;

typedef struct field_def {
    const char *name;       /* option name and sweep name */
    const char *value_name; /* the option's value in the help */
    size_t fallback;        /* default value; 0 with `follows` >= 0: copy that field */
    int follows;            /* index of the field whose value an absent option copies, or -1 */
    const char *help;
} field_def;

/* Everything the options of one run decide. */
typedef struct layer_config {
    const char *cmd;
    const field_def *fields;
    size_t field_count;
    layer_shape shapes[MAX_SWEEP];
    size_t shape_count;
    int sweep_field; /* -1: no sweep */
    clattn_dtype dtype;
    long repeat, warmup;
    bool check; /* --check: compare each output with the reference */
    int format;
} layer_config;

static int parse_count(const char *cmd, const char *opt, const char *text, long long lo, long long hi,
                       long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!text[0] || *end || errno || v < lo || v > hi)
        return cli_error(cmd, CLI_USAGE, "--%s '%s': expected an integer from %lld to %lld", opt, text, lo, hi);
    *out = v;
    return CLI_OK;
}

/* Fills the first `count` entries of a command's options table with the shape options, one per field. */
static void field_options(const field_def *fields, size_t count, cli_option *options) {
    for (size_t i = 0; i < count; ++i)
        options[i] = (cli_option){fields[i].name, fields[i].value_name, fields[i].help, NULL};
}

/* Reads the shape options, the sweep, dtype, repeat, warm-up and output format shared by both operations. */
static int parse_common(const cli_command *cmd, layer_config *c) {
    layer_shape base;
    bool given[MAX_FIELDS] = {false};
    int rc;
    for (size_t i = 0; i < c->field_count; ++i) {
        const char *text = cli_value(cmd, c->fields[i].name);
        base.value[i] = c->fields[i].fallback;
        if (!text) continue;
        long long v = 0; /* parse_count sets it; GCC -O3 cannot tell */
        if ((rc = parse_count(c->cmd, c->fields[i].name, text, 0, 1 << 24, &v))) return rc;
        base.value[i] = (size_t)v;
        given[i] = true;
    }
    c->sweep_field = -1;
    c->shape_count = 1;
    c->shapes[0] = base;
    const char *sweep = cli_value(cmd, "sweep");
    if (sweep) {
        const char *eq = strchr(sweep, '=');
        for (size_t i = 0; eq && i < c->field_count; ++i)
            if (strlen(c->fields[i].name) == (size_t)(eq - sweep) &&
                strncmp(sweep, c->fields[i].name, (size_t)(eq - sweep)) == 0)
                c->sweep_field = (int)i;
        if (c->sweep_field < 0)
            return cli_error(c->cmd, CLI_USAGE,
                             "--sweep '%s': expected NAME=V1,V2,... with NAME one of the shape "
                             "options (see --help)",
                             sweep);
        c->shape_count = 0;
        for (const char *p = eq + 1;;) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno || v < 0 || v > (1 << 24) || (*end != ',' && *end != '\0'))
                return cli_error(c->cmd, CLI_USAGE, "--sweep '%s': values must be integers from 0 to 2^24", sweep);
            if (c->shape_count == MAX_SWEEP)
                return cli_error(c->cmd, CLI_USAGE, "--sweep: at most %d values", MAX_SWEEP);
            layer_shape s = base;
            s.value[c->sweep_field] = (size_t)v;
            given[c->sweep_field] = true;
            c->shapes[c->shape_count++] = s;
            if (*end == '\0') break;
            p = end + 1;
        }
    }
    /* Absent sizes that follow another one (kv lengths follow lengths, ...) take its value per shape. */
    for (size_t si = 0; si < c->shape_count; ++si)
        for (size_t i = 0; i < c->field_count; ++i)
            if (!given[i] && c->fields[i].follows >= 0)
                c->shapes[si].value[i] = c->shapes[si].value[c->fields[i].follows];
    c->dtype = CLATTN_DTYPE_F32;
    const char *dt = cli_value(cmd, "dtype");
    if (dt && (rc = cli_parse_dtype(c->cmd, dt, &c->dtype))) return rc;
    long long v = 10;
    if (cli_value(cmd, "repeat") && (rc = parse_count(c->cmd, "repeat", cli_value(cmd, "repeat"), 1, 100000, &v)))
        return rc;
    c->repeat = (long)v;
    v = 2;
    if (cli_value(cmd, "warmup") && (rc = parse_count(c->cmd, "warmup", cli_value(cmd, "warmup"), 1, 100000, &v)))
        return rc;
    c->warmup = (long)v;
    if (cli_flag(cmd, "json") && cli_flag(cmd, "csv"))
        return cli_error(c->cmd, CLI_USAGE, "--json and --csv exclude each other");
    c->check = cli_flag(cmd, "check");
    c->format = cli_flag(cmd, "json") ? FORMAT_JSON : cli_flag(cmd, "csv") ? FORMAT_CSV : FORMAT_TABLE;
    return CLI_OK;
}

/* Parses a layer benchmark's command line into `cmd` and `c`: the shape options, which fill the first
 * `field_count` entries of `options` from `fields`, and the rest of what parse_common reads. Returns -1 to go on,
 * else the exit status (CLI_OK after printing the help). */
static int parse_layer_command(const char *name, const char *summary, cli_option *options, size_t option_count,
                               const field_def *fields, size_t field_count, int argc, char **argv, cli_command *cmd,
                               layer_config *c) {
    field_options(fields, field_count, options);
    *cmd = (cli_command){name, summary, "[options]", options, option_count};
    int rc = cli_parse(cmd, argc, argv);
    if (rc >= 0) return rc;
    *c = (layer_config){.cmd = name, .fields = fields, .field_count = field_count};
    rc = parse_common(cmd, c);
    return rc != CLI_OK ? rc : -1;
}

/* A device buffer of `count` random elements in [-2, 2) stored as `dt`. With `host`, the values as the device
 * stores them are kept there for the reference (the caller frees them). */
static int random_buffer(const char *cmd, clattn_context *ctx, size_t count, clattn_dtype dt, unsigned seed,
                         cl_mem *out, float **host) {
    float *x = support_random_array(count, 1.0f, dt, &seed);
    if (!x) return cli_error(cmd, CLI_FAILED, "out of host memory for %zu elements", count);
    cl_int err = CL_SUCCESS;
    *out = support_buffer_storage(ctx, x, count, dt, &err);
    if (host)
        *host = x;
    else
        free(x);
    if (!*out)
        return cli_error(cmd, CLI_FAILED, "allocating %zu bytes of device memory failed: OpenCL error %d",
                         count * clattn_dtype_size(dt), err);
    return CLI_OK;
}

/* Random host weights of `count` floats in [-1, 1), scaled so that projections keep their inputs' magnitude. */
static float *random_weights(size_t count, size_t fan_in, unsigned seed) {
    const float scale = fan_in ? 1.0f / sqrtf((float)fan_in) : 1.0f;
    return support_random_array(count, 0.5f * scale, CLATTN_DTYPE_F32, &seed);
}

/* One measured configuration, printed as a table row, a JSON object or a CSV row. */
typedef struct layer_result {
    const char *op, *impl;
    const layer_config *c;
    const layer_shape *shape;
    bench_timing t;
    double flops, gflops;
    bench_check check; /* with --check */
} layer_result;

static void print_header(const layer_config *c, const clattn_device_info *info, const char *title) {
    if (c->format == FORMAT_CSV) {
        printf("op,impl,device,dtype");
        for (size_t i = 0; i < c->field_count; ++i) printf(",%s", c->fields[i].name);
        printf(",repeat,warmup,timer,median_ms,min_ms,max_ms,flops,gflops,temp_bytes,max_error,tolerance\n");
        return;
    }
    if (c->format != FORMAT_TABLE) return;
    printf("device: %s (%s, %s)\n%s, %s, %ld timed runs after %ld warm-up\n\n", info->name, info->platform_name,
           info->driver_version, title, clattn_dtype_name(c->dtype), c->repeat, c->warmup);
    for (size_t i = 0; i < c->field_count; ++i)
        printf("%*s ", (int)(strlen(c->fields[i].name) > 5 ? strlen(c->fields[i].name) : 5), c->fields[i].name);
    printf(" %-16s %9s %8s %8s %8s %8s%s\n", "impl", "median ms", "min ms", "max ms", "GFLOP/s", "temp MiB",
           c->check ? "  max error" : "");
}

static void print_result(const layer_result *r, const clattn_device_info *info, cJSON *json) {
    const layer_config *c = r->c;
    if (c->format == FORMAT_TABLE) {
        for (size_t i = 0; i < c->field_count; ++i)
            printf("%*zu ", (int)(strlen(c->fields[i].name) > 5 ? strlen(c->fields[i].name) : 5),
                   r->shape->value[i]);
        printf(" %-16s %9.3f %8.3f %8.3f %8.2f %8.2f", r->impl, r->t.median_ms, r->t.min_ms, r->t.max_ms, r->gflops,
               (double)r->t.temp_bytes / (1024.0 * 1024.0));
        if (c->check) bench_check_table_cell(&r->check);
        printf("\n");
    } else if (c->format == FORMAT_CSV) {
        printf("%s,%s,", r->op, r->impl);
        bench_csv_string(info->name);
        printf(",%s", clattn_dtype_name(c->dtype));
        for (size_t i = 0; i < c->field_count; ++i) printf(",%zu", r->shape->value[i]);
        printf(",%ld,%ld,%s,%.6f,%.6f,%.6f,%.0f,%.4f,%llu,", c->repeat, c->warmup,
               r->t.host_timer ? "host" : "events", r->t.median_ms, r->t.min_ms, r->t.max_ms, r->flops, r->gflops,
               (unsigned long long)r->t.temp_bytes);
        bench_check_csv(&r->check);
        printf("\n");
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", r->op);
        cJSON_AddStringToObject(o, "impl", r->impl);
        cJSON_AddStringToObject(o, "device", info->name);
        cJSON_AddStringToObject(o, "dtype", clattn_dtype_name(c->dtype));
        for (size_t i = 0; i < c->field_count; ++i) {
            char key[32];
            /* JSON keys use underscores, like bench sdpa's kv_seq. */
            snprintf(key, sizeof key, "%s", c->fields[i].name);
            for (char *p = key; *p; ++p)
                if (*p == '-') *p = '_';
            cJSON_AddNumberToObject(o, key, (double)r->shape->value[i]);
        }
        cJSON_AddNumberToObject(o, "repeat", (double)c->repeat);
        cJSON_AddNumberToObject(o, "warmup", (double)c->warmup);
        cJSON_AddStringToObject(o, "timer", r->t.host_timer ? "host" : "events");
        cJSON_AddNumberToObject(o, "median_ms", r->t.median_ms);
        cJSON_AddNumberToObject(o, "min_ms", r->t.min_ms);
        cJSON_AddNumberToObject(o, "max_ms", r->t.max_ms);
        cJSON_AddNumberToObject(o, "flops", r->flops);
        cJSON_AddNumberToObject(o, "gflops", r->gflops);
        cJSON_AddNumberToObject(o, "temp_bytes", (double)r->t.temp_bytes);
        if (c->check) bench_check_json(o, &r->check);
        cJSON_AddItemToArray(json, o);
    }
    fflush(stdout);
}

/* Records the check of one measurement and says on stderr when it failed; `what` describes the measurement. */
static void note_check(const char *cmd, const char *what, layer_result *r, double max_error, double tolerance,
                       size_t *failed) {
    r->check.checked = true;
    r->check.max_error = max_error;
    r->check.tolerance = tolerance;
    if (bench_check_failed(&r->check)) {
        ++*failed;
        fprintf(stderr, "clattn %s: %s: the output differs from the reference by %.3g (tolerance %.3g)\n", cmd,
                what, max_error, tolerance);
    }
}

/* Prints the JSON array (only after every measurement succeeded). */
/* ------------------------------------------------------------------------------------------------------------ */
/* Multi-head attention */

enum { M_BATCH, M_SEQ, M_KV_SEQ, M_D_MODEL, M_HEADS, M_KV_HEADS, M_HEAD_DIM, M_DECODE, M_FIELDS };

static const field_def mha_fields[M_FIELDS] = {
    {"batch", "B", 1, -1, "batch size (default 1)"},
    {"seq", "L", 512, -1, "query length Lq (default 512)"},
    {"kv-seq", "L", 0, M_SEQ, "memory length for cross-attention (default: self-attention)"},
    {"d-model", "N", 512, -1, "model width (default 512)"},
    {"heads", "H", 8, -1, "query heads (default 8)"},
    {"kv-heads", "H", 0, M_HEADS, "key/value heads (default: --heads)"},
    {"head-dim", "D", 64, -1, "head width d_k = d_v (default 64)"},
    {"decode", "N", 0, -1, "time one KV-cache step of --seq new tokens after N cached ones (default 0: no cache)"},
};

typedef struct mha_call {
    clattn_context *ctx;
    clattn_mha_weights *weights;
    clattn_mha_desc desc;
    clattn_tensor x, memory, out;
    bool cross;
    size_t cached; /* decode: the cache length every timed step starts from */
} mha_call;

static clattn_status call_mha(void *user, cl_command_queue queue, cl_event *done) {
    mha_call *a = user;
    /* Every decoding step starts from the same cached prefix: the keys and values stay in place, only the length
     * goes back. */
    if (a->desc.cache) {
        clattn_status st = clattn_kv_cache_truncate(a->desc.cache, a->cached);
        if (st != CLATTN_SUCCESS) return st;
    }
    return clattn_mha(a->ctx, a->weights, &a->desc, &a->x, a->cross ? &a->memory : NULL, &a->out, queue, 0, NULL,
                      done);
}

/* --paged: the decode step's keys and values in the engine's pages instead of the layer's cache. Each sequence
 * owns ceil((cached + new) / block) pages taken in a shuffled order, as an engine's free list leaves them; every
 * timed step appends its new tokens at the same positions, as the cache's steps do. */
typedef struct mha_pages_data {
    clattn_mha_pages pages;
    int32_t *table, *lens;
    cl_mem k, v;
} mha_pages_data;

static void mha_pages_free(mha_pages_data *d) {
    free(d->table);
    free(d->lens);
    const cl_mem bufs[] = {d->k, d->v};
    cli_release_buffers(bufs, 2);
    memset(d, 0, sizeof *d);
}

/* Pages for B sequences of up to `tokens` tokens each, empty (cached_lens all 0). */
static int mha_pages_make(const char *cmd, clattn_context *ctx, const clattn_mha_config *cfg, size_t B,
                          size_t tokens, size_t block, mha_pages_data *d) {
    memset(d, 0, sizeof *d);
    const size_t per = (tokens + block - 1) / block, count = B * per > 0 ? B * per : 1;
    d->table = malloc(count * sizeof *d->table);
    d->lens = calloc(B ? B : 1, sizeof *d->lens);
    if (!d->table || !d->lens) return cli_error(cmd, CLI_FAILED, "out of host memory for the block table");
    for (size_t i = 0; i < count; ++i) d->table[i] = (int32_t)i;
    unsigned seed = 45678u;
    for (size_t i = count; i > 1; --i) {
        seed = seed * 1664525u + 1013904223u;
        const size_t j = (size_t)(seed >> 8) % i;
        const int32_t t = d->table[i - 1];
        d->table[i - 1] = d->table[j];
        d->table[j] = t;
    }
    cl_int err = CL_SUCCESS;
    const size_t kbytes = count * block * cfg->kv_heads * cfg->head_dim * sizeof(float);
    const size_t vbytes = count * block * cfg->kv_heads * cfg->v_head_dim * sizeof(float);
    d->k = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, kbytes, NULL, &err);
    if (err == CL_SUCCESS)
        d->v = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, vbytes, NULL, &err);
    if (err != CL_SUCCESS) return cli_error(cmd, CLI_FAILED, "allocating the pages failed: OpenCL error %d", err);
    clattn_mha_pages *pg = &d->pages;
    pg->seq_count = B;
    pg->cached_lens = d->lens;
    pg->block_table = d->table;
    pg->block_table_stride = per;
    pg->k_cache = clattn_tensor_blhd(d->k, CLATTN_DTYPE_F32, count, cfg->kv_heads, block, cfg->head_dim);
    pg->v_cache = clattn_tensor_blhd(d->v, CLATTN_DTYPE_F32, count, cfg->kv_heads, block, cfg->v_head_dim);
    return CLI_OK;
}

/* Multiply-adds count two FLOPs; attention counts 4 per (query, key, element) pair it does not mask. */
static double mha_flops(const layer_shape *s, bool causal) {
    const double B = (double)s->value[M_BATCH], Lq = (double)s->value[M_SEQ], H = (double)s->value[M_HEADS];
    const double Hkv = (double)s->value[M_KV_HEADS], D = (double)s->value[M_HEAD_DIM];
    const double dm = (double)s->value[M_D_MODEL], decode = (double)s->value[M_DECODE];
    const double Lnew =
        s->value[M_KV_SEQ] != s->value[M_SEQ] && !s->value[M_DECODE] ? (double)s->value[M_KV_SEQ] : Lq;
    const double Lk = decode ? decode + Lq : Lnew;
    double pairs = Lq * Lk;
    if (causal) {
        /* Bottom-right alignment: query i sees Lk - Lq + i + 1 keys. */
        pairs = Lq * (Lk - Lq) + Lq * (Lq + 1) / 2;
    }
    return 2.0 * B * Lq * dm * H * D + 2.0 * B * Lnew * dm * 2.0 * Hkv * D + 4.0 * B * H * pairs * D +
           2.0 * B * Lq * H * D * dm;
}

static int bench_mha(int argc, char **argv) {
    const char *CMD = "bench mha";
    cli_option options[] = {
        /* The shape options come first, filled from mha_fields. */
        [M_FIELDS] = {"sweep", "NAME=V,...", "one run per value of a shape option, e.g. seq=128,256,512", NULL},
        {"causal", NULL, "causal self-attention (bottom-right aligned)", NULL},
        {"bias", NULL, "projections with biases", NULL},
        {"residual", NULL, "out = x + attention", NULL},
        {"packed", NULL, "one packed Q|K|V weight (self-attention)", NULL},
        {"dtype", "TYPE", "storage of x and out: f32 (default), f16 or bf16", NULL},
        {"impl", "IMPL", "attention step: fused, unfused or all (default)", NULL},
        {"paged", "BLOCK",
         "with --decode: also time the step with the keys and values in shuffled fp32 pages of BLOCK tokens "
         "(clattn_mha_desc.pages)",
         NULL},
        BENCH_COMMON_OPTIONS,
    };
    static const char summary[] =
        "Time multi-head attention with its projections (CLBlast GEMMs) on the device, the attention "
        "step fused and\nunfused. With no options: B=1 L=512 d_model=512 H=8 D=64, fp32 "
        "self-attention. --decode N times one\nKV-cache step of --seq new tokens after N cached ones; --paged "
        "BLOCK also times it over a paged cache.";
    cli_command cmd;
    layer_config c;
    int rc = parse_layer_command(CMD, summary, options, sizeof options / sizeof options[0], mha_fields, M_FIELDS,
                                 argc, argv, &cmd, &c);
    if (rc >= 0) return rc;
    rc = CLI_OK;
    const bool causal = cli_flag(&cmd, "causal"), bias = cli_flag(&cmd, "bias");
    const bool residual = cli_flag(&cmd, "residual"), packed = cli_flag(&cmd, "packed");
    bool impls[2] = {true, true};
    const char *impl_text = cli_value(&cmd, "impl");
    if (impl_text) {
        if (strcmp(impl_text, "fused") == 0)
            impls[1] = false;
        else if (strcmp(impl_text, "unfused") == 0)
            impls[0] = false;
        else if (strcmp(impl_text, "all") != 0)
            return cli_error(CMD, CLI_USAGE, "--impl '%s': expected fused, unfused or all", impl_text);
    }
    size_t page = 0;
    const char *page_text = cli_value(&cmd, "paged");
    if (page_text) {
        char *end = NULL;
        const unsigned long b = strtoul(page_text, &end, 10);
        if (!page_text[0] || *end || b < 8 || b > 256 || (b & (b - 1)))
            return cli_error(CMD, CLI_USAGE, "--paged '%s': expected a power of two from 8 to 256", page_text);
        page = (size_t)b;
    }
    for (size_t i = 0; i < c.shape_count; ++i) {
        const size_t *v = c.shapes[i].value;
        if (page && !v[M_DECODE]) return cli_error(CMD, CLI_USAGE, "--paged times decoding steps; give --decode N");
        if (!v[M_HEADS] || !v[M_KV_HEADS] || v[M_HEADS] % v[M_KV_HEADS])
            return cli_error(CMD, CLI_USAGE, "--heads %zu must be a positive multiple of --kv-heads %zu",
                             v[M_HEADS], v[M_KV_HEADS]);
        if (v[M_DECODE] && v[M_KV_SEQ] != v[M_SEQ])
            return cli_error(CMD, CLI_USAGE, "--decode times self-attention steps; drop --kv-seq");
        if (packed && v[M_KV_SEQ] != v[M_SEQ])
            return cli_error(CMD, CLI_USAGE, "--packed weights are for self-attention; drop --kv-seq");
    }
    bench_run run;
    if ((rc = bench_run_open(&run, CMD, cli_value(&cmd, "device"), c.repeat, c.format == FORMAT_JSON))) return rc;
    clattn_context *ctx = run.ctx;
    const clattn_device_info info = run.info;
    double *times = run.times;
    cJSON *json = run.json;
    char title[160];
    snprintf(title, sizeof title, "mha, %s%s%s%s%s", causal ? "causal" : "non-causal", bias ? ", bias" : "",
             residual ? ", residual" : "", packed ? ", packed QKV" : "", ", GFLOP/s counts projections too");
    if (rc == CLI_OK) print_header(&c, &info, title);
    const bool progress = c.shape_count > 1 && isatty(STDERR_FILENO);
    size_t failed_checks = 0;
    bool skipped_note = false, wide_note = false;
    for (size_t si = 0; si < c.shape_count && rc == CLI_OK; ++si) {
        const layer_shape *s = &c.shapes[si];
        const size_t *v = s->value;
        const size_t B = v[M_BATCH], Lq = v[M_SEQ], dm = v[M_D_MODEL], H = v[M_HEADS], Hkv = v[M_KV_HEADS];
        const size_t D = v[M_HEAD_DIM], decode = v[M_DECODE];
        const bool cross = !decode && v[M_KV_SEQ] != Lq;
        const size_t Lk = cross ? v[M_KV_SEQ] : Lq;
        clattn_mha_config cfg = {.d_model = dm, .heads = H, .kv_heads = Hkv, .head_dim = D, .v_head_dim = D};
        const size_t nq = dm * H * D, nkv = dm * Hkv * D, no = H * D * dm;
        float *w_all = random_weights(nq + 2 * nkv + no + dm + H * D + 2 * Hkv * D, dm, 11u + (unsigned)si);
        mha_call a = {.ctx = ctx, .cross = cross, .cached = decode};
        clattn_kv_cache *cache = NULL;
        mha_pages_data pd = {0};
        cl_mem xb = NULL, mb = NULL, ob = NULL, prefix = NULL;
        /* Host copies of the inputs as the device stores them, kept for --check only. */
        float *hx = NULL, *hm = NULL, *hprefix = NULL, *packed_w = NULL;
        float **keep_x = c.check ? &hx : NULL, **keep_m = c.check ? &hm : NULL;
        float **keep_prefix = c.check ? &hprefix : NULL;
        /* Packed columns Q | K | V are the separate weights side by side; both forms share the random numbers, so
         * the two layouts time the same arithmetic. */
        clattn_mha_weights_host host;
        clattn_mha_weights_host_init(&host);
        if (!w_all) rc = cli_error(CMD, CLI_FAILED, "out of host memory for the weights");
        if (rc == CLI_OK) {
            if (packed) {
                const size_t n = H * D + 2 * Hkv * D;
                packed_w = malloc(dm * n * sizeof(float));
                if (!packed_w) rc = cli_error(CMD, CLI_FAILED, "out of host memory for the weights");
                for (size_t r = 0; packed_w && r < dm; ++r)
                    for (size_t col = 0; col < n; ++col)
                        packed_w[r * n + col] = w_all[(r * n + col) % (nq + 2 * nkv)];
                host.w_qkv = packed_w;
                host.b_qkv = bias ? w_all + nq + 2 * nkv + no + dm : NULL;
            } else {
                host.w_q = w_all;
                host.w_k = w_all + nq;
                host.w_v = w_all + nq + nkv;
                if (bias) {
                    host.b_q = w_all + nq + 2 * nkv + no + dm;
                    host.b_k = host.b_q + H * D;
                    host.b_v = host.b_k + Hkv * D;
                }
            }
            host.w_o = w_all + nq + 2 * nkv;
            host.b_o = bias ? w_all + nq + 2 * nkv + no : NULL;
            clattn_status st =
                rc == CLI_OK ? clattn_mha_weights_create(ctx, &cfg, &host, &a.weights) : CLATTN_SUCCESS;
            if (st != CLATTN_SUCCESS) rc = cli_report_status(CMD, ctx, st, "uploading the weights");
        }
        if (rc == CLI_OK) rc = random_buffer(CMD, ctx, B * Lq * dm, c.dtype, 21u + (unsigned)si, &xb, keep_x);
        if (rc == CLI_OK) rc = random_buffer(CMD, ctx, B * Lq * dm, c.dtype, 22u, &ob, NULL);
        if (rc == CLI_OK && cross) rc = random_buffer(CMD, ctx, B * Lk * dm, c.dtype, 23u, &mb, keep_m);
        clattn_mha_desc_init(&a.desc);
        a.desc.residual = residual;
        if (causal) a.desc.attention.causal = CLATTN_CAUSAL_BOTTOM_RIGHT;
        a.x = clattn_tensor_seq(xb, c.dtype, B, Lq, dm);
        a.out = clattn_tensor_seq(ob, c.dtype, B, Lq, dm);
        if (cross) a.memory = clattn_tensor_seq(mb, c.dtype, B, Lk, dm);
        if (rc == CLI_OK && decode) {
            /* Fill the cache with `decode` random tokens once, untimed. */
            clattn_status st = clattn_kv_cache_create(ctx, &cfg, B, decode + Lq, &cache);
            if (st != CLATTN_SUCCESS) rc = cli_report_status(CMD, ctx, st, "creating the KV cache");
            if (rc == CLI_OK) rc = random_buffer(CMD, ctx, B * decode * dm, c.dtype, 24u, &prefix, keep_prefix);
            if (rc == CLI_OK) {
                clattn_mha_desc fill = a.desc;
                fill.cache = cache;
                fill.residual = 0;
                cl_mem pout = NULL;
                rc = random_buffer(CMD, ctx, B * decode * dm, c.dtype, 25u, &pout, NULL);
                clattn_tensor px = clattn_tensor_seq(prefix, c.dtype, B, decode, dm);
                clattn_tensor po = clattn_tensor_seq(pout, c.dtype, B, decode, dm);
                if (rc == CLI_OK) st = clattn_mha(ctx, a.weights, &fill, &px, NULL, &po, NULL, 0, NULL, NULL);
                if (rc == CLI_OK && st != CLATTN_SUCCESS) rc = cli_report_status(CMD, ctx, st, "filling the cache");
                /* The same prefix into the pages, which then hold what the cache holds. */
                if (rc == CLI_OK && page) rc = mha_pages_make(CMD, ctx, &cfg, B, decode + Lq, page, &pd);
                if (rc == CLI_OK && page) {
                    fill.cache = NULL;
                    fill.pages = &pd.pages;
                    st = clattn_mha(ctx, a.weights, &fill, &px, NULL, &po, NULL, 0, NULL, NULL);
                    if (st != CLATTN_SUCCESS) rc = cli_report_status(CMD, ctx, st, "filling the pages");
                    for (size_t b = 0; b < B; ++b) pd.lens[b] = (int32_t)decode;
                }
                if (rc == CLI_OK) clFinish(clattn_context_cl_queue(ctx));
                if (pout) clReleaseMemObject(pout);
            }
            a.desc.cache = cache;
        }
        /* The reference: the whole layer in double precision, once per shape (both implementations must match
         * it). A decoding step sees the cached prefix as the reference's past tokens. */
        const size_t kv_total = decode ? decode + Lq : Lk;
        const bool can_check = c.check && mha_flops(s, false) / 2.0 <= BENCH_REFERENCE_LIMIT;
        if (c.check && !can_check) bench_check_skip_note(CMD, &skipped_note);
        double *ref = NULL, ref_max = 0.0;
        if (rc == CLI_OK && can_check) {
            cla_ref_mha rm = {.config = cfg, .weights = host, .batch = B, .q_len = Lq, .x = hx};
            rm.memory = cross ? hm : NULL;
            rm.memory_len = cross ? Lk : 0;
            rm.past = decode ? hprefix : NULL;
            rm.past_len = decode;
            rm.residual = residual;
            rm.attention.scale = a.desc.attention.scale;
            rm.attention.causal = a.desc.attention.causal;
            rm.attention.window_left = a.desc.attention.window_left;
            rm.attention.window_right = a.desc.attention.window_right;
            rm.out = ref = malloc((B * Lq * dm + 1) * sizeof *ref);
            if (!ref || cla_reference_mha(&rm) != 0)
                rc = cli_error(CMD, CLI_FAILED, "the reference could not be computed (out of host memory?)");
            for (size_t i = 0; rc == CLI_OK && i < B * Lq * dm; ++i)
                if (isfinite(ref[i]) && fabs(ref[i]) > ref_max) ref_max = fabs(ref[i]);
        }
        /* The tolerance of tests/test_mha.c, taken at the largest output (one number per measurement). */
        clattn_mha_config resolved = cfg;
        resolved.kv_d_model = dm;
        const double tolerance = 1e-5 +
                                 check_mha_rel_tolerance(&resolved, kv_total) * (ref_max > 1.0 ? ref_max : 1.0) +
                                 check_storage_rel_tolerance(c.dtype) * ref_max;
        const char *impl_names[3] = {"fused", "unfused", "paged"};
        const clattn_impl impl_values[3] = {CLATTN_IMPL_FUSED, CLATTN_IMPL_UNFUSED, CLATTN_IMPL_AUTO};
        for (int impl = 0; impl < 3 && rc == CLI_OK; ++impl) {
            if (impl < 2 ? !impls[impl] : !page) continue;
            /* The paged step: the same weights, prefix and new tokens, the keys and values in pages. */
            if (impl == 2) {
                a.desc.cache = NULL;
                a.desc.pages = &pd.pages;
            }
            /* Comparing both, heads past the fused kernels' bound run unfused alone (--impl fused gets the error).
             */
            if (impl == 0 && impls[1] && D > CLATTN_MAX_FUSED_HEAD_DIM) {
                if (!wide_note)
                    fprintf(stderr, "clattn %s: note: head dims above %d run on the unfused implementation only\n",
                            CMD, CLATTN_MAX_FUSED_HEAD_DIM);
                wide_note = true;
                continue;
            }
            if (progress) {
                fprintf(stderr, "\r[%zu/%zu] %s ...\033[K", si + 1, c.shape_count, impl_names[impl]);
                fflush(stderr);
            }
            a.desc.attention.impl = impl_values[impl];
            char label[32];
            snprintf(label, sizeof label, "%s%s", decode ? "decode " : "", impl_names[impl]);
            layer_result r = {.op = "mha", .impl = label, .c = &c, .shape = s};
            rc = bench_time_calls(CMD, "multi-head attention", ctx, c.warmup, c.repeat, call_mha, &a, times, &r.t);
            if (progress) fprintf(stderr, "\r\033[K");
            if (rc != CLI_OK) break;
            r.flops = mha_flops(s, causal);
            r.gflops = r.t.median_ms > 0.0 ? r.flops / (r.t.median_ms * 1e6) : 0.0;
            if (ref) {
                /* The output of the last timed call: every call computes the same thing. */
                double worst = 0.0;
                rc = bench_output_error(CMD, ctx, ob, B * Lq * dm, c.dtype, ref, &worst, NULL);
                if (rc != CLI_OK) break;
                char what[160];
                snprintf(what, sizeof what, "%s, B=%zu Lq=%zu Lk=%zu d_model=%zu H=%zu Hkv=%zu D=%zu", label, B, Lq,
                         kv_total, dm, H, Hkv, D);
                note_check(CMD, what, &r, worst, tolerance, &failed_checks);
            }
            print_result(&r, &info, json);
        }
        free(ref);
        clattn_kv_cache_free(cache);
        mha_pages_free(&pd);
        clattn_mha_weights_free(a.weights);
        free(packed_w);
        free(w_all);
        free(hx);
        free(hm);
        free(hprefix);
        const cl_mem bufs[] = {xb, mb, ob, prefix};
        cli_release_buffers(bufs, sizeof bufs / sizeof bufs[0]);
    }
    return bench_run_close(&run, CMD, rc, failed_checks);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Seq2seq (additive and Luong) attention */

enum { S_BATCH, S_SEQ, S_KV_SEQ, S_QUERY_DIM, S_KEY_DIM, S_ATTN_DIM, S_FIELDS };

static const field_def seq2seq_fields[S_FIELDS] = {
    {"batch", "B", 8, -1, "batch size (default 8)"},
    {"seq", "L", 1, -1, "queries per sequence Lq: 1 is one decoder step (default 1)"},
    {"kv-seq", "L", 512, -1, "keys (encoder states) per sequence Lk (default 512)"},
    {"query-dim", "N", 256, -1, "query (decoder state) width (default 256)"},
    {"key-dim", "N", 0, S_QUERY_DIM, "key (encoder state) width, also the values' (default: --query-dim)"},
    {"attn-dim", "N", 256, -1, "hidden width of the additive and concat scores (default 256)"},
};

typedef struct seq2seq_call {
    clattn_context *ctx;
    clattn_seq2seq_weights *weights;
    clattn_seq2seq_desc desc;
    clattn_tensor query, keys, context;
} seq2seq_call;

static clattn_status call_seq2seq(void *user, cl_command_queue queue, cl_event *done) {
    seq2seq_call *a = user;
    return clattn_seq2seq_attention(a->ctx, a->weights, &a->desc, &a->query, &a->keys, NULL, &a->context, queue, 0,
                                    NULL, done);
}

/* Projections count two FLOPs per multiply-add; an additive score counts 4 per (query, key, hidden unit): the
 * add, the tanh, the multiply and the sum; the weighted sum of values 2 per (query, key, value element). */
static double seq2seq_flops(const layer_shape *s, clattn_score score) {
    const double B = (double)s->value[S_BATCH], Lq = (double)s->value[S_SEQ], Lk = (double)s->value[S_KV_SEQ];
    const double dq = (double)s->value[S_QUERY_DIM], dk = (double)s->value[S_KEY_DIM];
    const double da = (double)s->value[S_ATTN_DIM];
    const double context = 2.0 * B * Lq * Lk * dk;
    switch (score) {
    case CLATTN_SCORE_DOT:
        return 2.0 * B * Lq * Lk * dk + context;
    case CLATTN_SCORE_GENERAL:
        return 2.0 * B * Lq * dq * dk + 2.0 * B * Lq * Lk * dk + context;
    default:
        return 2.0 * B * Lq * dq * da + 2.0 * B * Lk * dk * da + 4.0 * B * Lq * Lk * da + context;
    }
}

static int bench_seq2seq(int argc, char **argv) {
    const char *CMD = "bench additive";
    cli_option options[] = {
        /* The shape options come first, filled from seq2seq_fields. */
        [S_FIELDS] = {"sweep", "NAME=V,...", "one run per value of a shape option, e.g. kv-seq=128,512,2048", NULL},
        {"score", "KIND", "additive, dot, general, concat or all (default additive)", NULL},
        {"weights", NULL, "also write the attention weights [B, Lq, Lk]", NULL},
        {"project-keys", NULL,
         "additive and concat: project the keys once, untimed (clattn_seq2seq_project_keys), as a decoder "
         "does for its steps",
         NULL},
        {"dtype", "TYPE", "storage of queries, keys and context: f32 (default), f16 or bf16", NULL},
        BENCH_COMMON_OPTIONS,
    };
    static const char summary[] =
        "Time seq2seq attention (additive/Bahdanau, or Luong dot, general and concat scores) with its projections "
        "on\nthe device. With no options: one decoder step, B=8, Lk=512, widths 256, additive score, fp32.";
    cli_command cmd;
    layer_config c;
    int rc = parse_layer_command(CMD, summary, options, sizeof options / sizeof options[0], seq2seq_fields,
                                 S_FIELDS, argc, argv, &cmd, &c);
    if (rc >= 0) return rc;
    rc = CLI_OK;
    static const char *const score_names[] = {"additive", "dot", "general", "concat"};
    bool scores[4] = {true, false, false, false};
    const char *score_text = cli_value(&cmd, "score");
    if (score_text) {
        bool all = strcmp(score_text, "all") == 0, known = all;
        for (int i = 0; i < 4; ++i) {
            scores[i] = all || strcmp(score_text, score_names[i]) == 0;
            known = known || scores[i];
        }
        if (!known)
            return cli_error(CMD, CLI_USAGE, "--score '%s': expected additive, dot, general, concat or all",
                             score_text);
    }
    for (size_t i = 0; i < c.shape_count; ++i)
        if (scores[CLATTN_SCORE_DOT] && c.shapes[i].value[S_QUERY_DIM] != c.shapes[i].value[S_KEY_DIM])
            return cli_error(CMD, CLI_USAGE, "the dot score needs --query-dim equal to --key-dim");
    const bool want_weights = cli_flag(&cmd, "weights");
    const bool keys_once = cli_flag(&cmd, "project-keys");
    bench_run run;
    if ((rc = bench_run_open(&run, CMD, cli_value(&cmd, "device"), c.repeat, c.format == FORMAT_JSON))) return rc;
    clattn_context *ctx = run.ctx;
    const clattn_device_info info = run.info;
    double *times = run.times;
    cJSON *json = run.json;
    if (rc == CLI_OK)
        print_header(&c, &info,
                     want_weights ? "seq2seq attention with weights out, GFLOP/s counts projections too"
                                  : "seq2seq attention, GFLOP/s counts projections too");
    size_t failed_checks = 0;
    bool skipped_note = false;
    for (size_t si = 0; si < c.shape_count && rc == CLI_OK; ++si) {
        const layer_shape *s = &c.shapes[si];
        const size_t *v = s->value;
        const size_t B = v[S_BATCH], Lq = v[S_SEQ], Lk = v[S_KV_SEQ], dq = v[S_QUERY_DIM], dk = v[S_KEY_DIM];
        const size_t da = v[S_ATTN_DIM];
        cl_mem qb = NULL, kb = NULL, cb = NULL, wb = NULL;
        /* Host copies of the queries and keys as the device stores them, kept for --check only. */
        float *hq = NULL, *hk = NULL;
        rc = random_buffer(CMD, ctx, B * Lq * dq, c.dtype, 31u + (unsigned)si, &qb, c.check ? &hq : NULL);
        if (rc == CLI_OK) rc = random_buffer(CMD, ctx, B * Lk * dk, c.dtype, 32u, &kb, c.check ? &hk : NULL);
        if (rc == CLI_OK) rc = random_buffer(CMD, ctx, B * Lq * dk, c.dtype, 33u, &cb, NULL);
        if (rc == CLI_OK && want_weights)
            rc = random_buffer(CMD, ctx, B * Lq * Lk, CLATTN_DTYPE_F32, 34u, &wb, NULL);
        const size_t wsize = (dq + dk) * (da > dk ? da : dk) + 2 * da;
        float *w_all = random_weights(wsize, dq, 35u);
        if (rc == CLI_OK && !w_all) rc = cli_error(CMD, CLI_FAILED, "out of host memory for the weights");
        const size_t nctx = B * Lq * dk, nw = B * Lq * Lk;
        for (int score = 0; score < 4 && rc == CLI_OK; ++score) {
            if (!scores[score]) continue;
            clattn_seq2seq_config cfg = {(clattn_score)score, dq, dk, da};
            clattn_seq2seq_weights_host host = {NULL, NULL, NULL, NULL, NULL};
            if (score == CLATTN_SCORE_ADDITIVE) {
                host.w_q = w_all;
                host.w_k = w_all + dq * da;
                host.v = w_all + (dq + dk) * da;
                host.bias = host.v + da;
            } else if (score == CLATTN_SCORE_GENERAL) {
                host.w = w_all;
            } else if (score == CLATTN_SCORE_CONCAT) {
                host.w = w_all;
                host.v = w_all + (dq + dk) * da;
            }
            seq2seq_call a = {.ctx = ctx};
            clattn_status st = clattn_seq2seq_weights_create(ctx, &cfg, &host, &a.weights);
            if (st != CLATTN_SUCCESS) {
                rc = cli_report_status(CMD, ctx, st, "uploading the weights");
                break;
            }
            clattn_seq2seq_desc_init(&a.desc);
            if (wb) a.desc.weights = clattn_tensor_seq(wb, CLATTN_DTYPE_F32, B, Lq, Lk);
            a.query = clattn_tensor_seq(qb, c.dtype, B, Lq, dq);
            a.keys = clattn_tensor_seq(kb, c.dtype, B, Lk, dk);
            a.context = clattn_tensor_seq(cb, c.dtype, B, Lq, dk);
            /* The keys' projection, once per source sequence in a decoder, is then outside the timed calls. */
            const bool pre = keys_once && (score == CLATTN_SCORE_ADDITIVE || score == CLATTN_SCORE_CONCAT);
            cl_mem pb = NULL;
            if (pre) {
                rc = random_buffer(CMD, ctx, B * Lk * da, CLATTN_DTYPE_F32, 36u, &pb, NULL);
                a.desc.key_projection = clattn_tensor_seq(pb, CLATTN_DTYPE_F32, B, Lk, da);
                st = rc == CLI_OK ? clattn_seq2seq_project_keys(ctx, a.weights, &a.keys, &a.desc.key_projection,
                                                                NULL, 0, NULL, NULL)
                                  : CLATTN_SUCCESS;
                if (st != CLATTN_SUCCESS) rc = cli_report_status(CMD, ctx, st, "projecting the keys");
                if (rc != CLI_OK) {
                    if (pb) clReleaseMemObject(pb);
                    clattn_seq2seq_weights_free(a.weights);
                    break;
                }
            }
            char label[32];
            snprintf(label, sizeof label, "%s%s", score_names[score], pre ? " keys-once" : "");
            layer_result r = {.op = "seq2seq", .impl = label, .c = &c, .shape = s};
            rc = bench_time_calls(CMD, "seq2seq attention", ctx, c.warmup, c.repeat, call_seq2seq, &a, times, &r.t);
            clattn_seq2seq_weights_free(a.weights);
            if (pb) clReleaseMemObject(pb);
            if (rc != CLI_OK) break;
            r.flops = seq2seq_flops(s, (clattn_score)score) -
                      (pre ? 2.0 * (double)B * (double)Lk * (double)dk * (double)da : 0.0);
            r.gflops = r.t.median_ms > 0.0 ? r.flops / (r.t.median_ms * 1e6) : 0.0;
            /* The reference precomputes the projections, so its cost is about the layer's multiply-adds. */
            const bool can_check = c.check && r.flops / 2.0 <= BENCH_REFERENCE_LIMIT;
            if (c.check && !can_check) bench_check_skip_note(CMD, &skipped_note);
            if (can_check) {
                double *ref_ctx = malloc((nctx + 1) * sizeof *ref_ctx);
                double *ref_w = want_weights ? malloc((nw + 1) * sizeof *ref_w) : NULL;
                cla_ref_seq2seq rs = {.score = (clattn_score)score,
                                      .batch = B,
                                      .q_len = Lq,
                                      .kv_len = Lk,
                                      .query_dim = dq,
                                      .key_dim = dk,
                                      .value_dim = dk,
                                      .attn_dim = da,
                                      .query = hq,
                                      .keys = hk,
                                      .w_q = host.w_q,
                                      .w_k = host.w_k,
                                      .w = host.w,
                                      .v = host.v,
                                      .bias = host.bias,
                                      .mask_batch = 1,
                                      .context = ref_ctx,
                                      .weights = ref_w};
                if (!ref_ctx || (want_weights && !ref_w) || cla_reference_seq2seq(&rs) != 0)
                    rc = cli_error(CMD, CLI_FAILED, "the reference could not be computed (out of host memory?)");
                /* The tolerance of tests/support/seq2seq_case.c, taken at the largest context value; the attention
                 * weights (fp32, at most 1) are held to the same bound. */
                double worst = 0.0, worst_w = 0.0, ref_max = 0.0;
                if (rc == CLI_OK) rc = bench_output_error(CMD, ctx, cb, nctx, c.dtype, ref_ctx, &worst, &ref_max);
                if (rc == CLI_OK && wb)
                    rc = bench_output_error(CMD, ctx, wb, nw, CLATTN_DTYPE_F32, ref_w, &worst_w, NULL);
                if (rc == CLI_OK) {
                    const double rel =
                        check_seq2seq_rel_tolerance(Lk, da, dq, dk) + check_storage_rel_tolerance(c.dtype);
                    char what[160];
                    snprintf(what, sizeof what, "%s, B=%zu Lq=%zu Lk=%zu Dq=%zu Dk=%zu A=%zu", score_names[score],
                             B, Lq, Lk, dq, dk, da);
                    note_check(CMD, what, &r, worst > worst_w ? worst : worst_w,
                               1e-6 + rel * (ref_max > 1.0 ? ref_max : 1.0), &failed_checks);
                }
                free(ref_ctx);
                free(ref_w);
                if (rc != CLI_OK) break;
            }
            print_result(&r, &info, json);
        }
        free(w_all);
        free(hq);
        free(hk);
        const cl_mem bufs[] = {qb, kb, cb, wb};
        cli_release_buffers(bufs, sizeof bufs / sizeof bufs[0]);
    }
    return bench_run_close(&run, CMD, rc, failed_checks);
}

/* ------------------------------------------------------------------------------------------------------------ */

int cmd_bench_layer(const char *op, int argc, char **argv) {
    if (strcmp(op, "mha") == 0) return bench_mha(argc, argv);
    if (strcmp(op, "additive") == 0 || strcmp(op, "seq2seq") == 0) return bench_seq2seq(argc, argv);
    return cli_error("bench", CLI_USAGE, "unknown operation '%s' (known: sdpa, mha, additive)", op);
}
