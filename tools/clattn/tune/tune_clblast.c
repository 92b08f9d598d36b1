// SPDX-License-Identifier: Apache-2.0
/* `clattn tune --clblast`: tunes the parameters of the CLBlast kernels that the multi-head layer's projection GEMMs
 * run (Xgemm for large products, XgemmDirect for small ones, and GemmRoutine's size that picks between them), so
 * that the whole layer is tuned, not just the attention kernels.
 *
 * The candidates are a short list of known-good sets (CPU-shaped: small work-groups, long vectors, no local memory;
 * GPU-shaped: 8x8 to 16x16 work-groups with local-memory tiles) checked against the device's limits by
 * clattn_clblast_check before anything runs. They are searched one kernel at a time, because each GEMM shape runs
 * exactly one of the kernels: the Xgemm sets first, then the XgemmDirect sets with the best Xgemm, then the routine
 * switch with both. Each candidate runs in the same worker processes as the kernel candidates (tune_run.c), so one
 * that crashes CLBlast is recorded and skipped; the worker verifies every product against a double-precision host
 * product before timing it with profiling events.
 *
 * CLBlast has no call that restores its own parameters once overridden, so a worker that must time a kernel at
 * CLBlast's default after overriding it starts itself afresh (exec, keeping its pipes) with that candidate. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <clblast_c.h>

#include "cli.h"
#include "support_buffers.h"
#include "support_random.h"
#include "support_timing.h"
#include "tune.h"
#include "tune_clblast.h"

/* ---- the candidates ---- */

typedef struct named_set {
    const char *name;
    size_t v[CLATTN_CLBLAST_MAX_PARAMS];
} named_set;

/* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN; "default" leaves CLBlast's own. */
static const named_set xgemm_sets[] = {
    {"default", {0}},
    {"cpu_v4", {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4}},
    {"cpu_v8", {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 1, 1, 8, 8}},
    {"cpu_4x4v8", {0, 1, 32, 2, 4, 4, 32, 4, 4, 32, 0, 0, 0, 0, 8, 8}},
    {"cpu_big", {0, 1, 16, 1, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8}},
    {"cpu_k64", {0, 1, 64, 4, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 2, 2}},
    {"cpu_8x4", {0, 1, 32, 4, 8, 4, 64, 8, 4, 64, 0, 0, 0, 0, 4, 4}},
    {"cpu_16x16", {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 0, 0, 0, 0, 4, 4}},
    {"gpu_16x16", {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2}},
    {"gpu_8x8", {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 1, 1, 1, 1, 4, 4}},
    {"gpu_128", {0, 1, 32, 2, 32, 8, 128, 32, 16, 128, 1, 1, 0, 0, 4, 2}},
    {"gpu_small", {0, 1, 16, 2, 16, 16, 32, 16, 16, 32, 1, 1, 0, 0, 1, 1}},
    {"gpu_kwi8", {0, 1, 32, 8, 16, 16, 128, 16, 16, 128, 1, 1, 1, 1, 4, 4}},
};

/* KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD */
static const named_set direct_sets[] = {
    {"default", {0}},
    {"cpu_v4", {2, 8, 8, 8, 8, 1, 1, 4, 4, 32}},
    {"cpu_v2", {2, 8, 8, 8, 8, 1, 1, 2, 2, 32}},
    {"cpu_4x4v8", {8, 4, 4, 4, 4, 0, 0, 8, 8, 32}},
    {"cpu_16x16", {2, 16, 16, 16, 16, 1, 1, 4, 4, 64}},
    {"cpu_v8", {2, 8, 8, 8, 8, 1, 1, 8, 8, 64}},
    {"gpu_16x16", {2, 16, 16, 16, 16, 1, 1, 2, 2, 32}},
    {"gpu_8x8", {8, 8, 8, 8, 8, 1, 1, 1, 1, 16}},
    {"gpu_16x8", {2, 16, 8, 8, 16, 1, 1, 4, 4, 64}},
};

/* XGEMM_MIN_INDIRECT_SIZE: products of m*n*k below its cube run the direct kernel. */
static const named_set routine_sets[] = {
    {"default", {0}},
    {"indirect", {1}},     /* always Xgemm (with its copy kernels where sizes need padding) */
    {"direct", {1 << 14}}, /* always XgemmDirect */
};

#define COUNT(a) (int)(sizeof(a) / sizeof(a[0]))

static const named_set *const set_tables[CLATTN_CLBLAST_KERNEL_COUNT] = {xgemm_sets, direct_sets, routine_sets};
static const int set_counts[CLATTN_CLBLAST_KERNEL_COUNT] = {COUNT(xgemm_sets), COUNT(direct_sets),
                                                            COUNT(routine_sets)};

static const char *xgemm_labels[COUNT(xgemm_sets)], *direct_labels[COUNT(direct_sets)],
    *routine_labels[COUNT(routine_sets)];
static clattn_tune_space clblast_space;

/* The candidates as a space of one labelled parameter per kernel ("xgemm=cpu_v8,direct=default,..."), so that the
 * evaluation session, its log and its resume work as they do for the attention kernels. */
static const clattn_tune_space *space(void) {
    if (clblast_space.name) return &clblast_space;
    const char **labels[CLATTN_CLBLAST_KERNEL_COUNT] = {xgemm_labels, direct_labels, routine_labels};
    static const char *const names[CLATTN_CLBLAST_KERNEL_COUNT] = {"xgemm", "direct", "routine"};
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k) {
        clattn_tune_param *p = &clblast_space.params[k];
        for (int i = 0; i < set_counts[k]; ++i) labels[k][i] = set_tables[k][i].name;
        p->name = names[k];
        p->count = set_counts[k] < CLATTN_TUNE_MAX_VALUES ? set_counts[k] : CLATTN_TUNE_MAX_VALUES;
        for (int i = 0; i < p->count; ++i) p->values[i] = i;
        p->labels = labels[k];
        p->label_count = set_counts[k];
    }
    clblast_space.name = "clblast_gemm";
    clblast_space.param_count = CLATTN_CLBLAST_KERNEL_COUNT;
    return &clblast_space;
}

/* The identity of the candidates: a 64-bit FNV-1a of CLBlast's version and every set's name and values, as 16 hex
 * digits. The log's results stay valid while it stays the same. */
static void candidates_hash(char out[17]) {
    uint64_t h = 14695981039346656037ull;
    const char *version = clattn_clblast_version();
    for (const char *c = version; *c; ++c) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k)
        for (int i = 0; i < set_counts[k]; ++i) {
            for (const char *c = set_tables[k][i].name; *c; ++c) h = (h ^ (unsigned char)*c) * 1099511628211ull;
            for (int j = 0; j < CLATTN_CLBLAST_MAX_PARAMS; ++j) h = (h ^ set_tables[k][i].v[j]) * 1099511628211ull;
        }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* "MxNxK,..." into at most `max` shapes. */
static int parse_shapes(const char *text, size_t (*shapes)[3], int max) {
    int n = 0;
    const char *p = text;
    while (*p && n < max) {
        char *end = NULL;
        for (int d = 0; d < 3; ++d) {
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 8192 || (d < 2 && *end != 'x')) return -1;
            shapes[n][d] = (size_t)v;
            p = d < 2 ? end + 1 : end;
        }
        ++n;
        if (*p == ',')
            ++p;
        else if (*p)
            return -1;
    }
    return *p ? -1 : n;
}

/* ---- the worker ---- */

typedef struct shape_data {
    size_t m, n, k;
    cl_mem a, b, c;
    double *ref, *bound; /* the product and the sum of |a||b| per element, for the tolerance */
} shape_data;

typedef struct clblast_worker {
    clattn_context *ctx;
    shape_data shapes[CLATTN_TUNE_MAX_PARAMS];
    int count;
    long repeat, warmup;
    bool overridden[CLATTN_CLBLAST_KERNEL_COUNT];
    int applied[CLATTN_CLBLAST_KERNEL_COUNT];
    const char *device, *cls, *repeat_text, *warmup_text; /* for restarting itself */
} clblast_worker;

static const char *setup_shape(clattn_context *ctx, shape_data *s, unsigned seed) {
    float *a = malloc(s->m * s->k * sizeof *a), *b = malloc(s->k * s->n * sizeof *b);
    s->ref = malloc(s->m * s->n * sizeof *s->ref);
    s->bound = malloc(s->m * s->n * sizeof *s->bound);
    const char *why = NULL;
    if (!a || !b || !s->ref || !s->bound) why = "out of host memory";
    for (size_t i = 0; !why && i < s->m * s->k; ++i) a[i] = support_random(&seed);
    for (size_t i = 0; !why && i < s->k * s->n; ++i) b[i] = support_random(&seed);
    if (!why) {
        /* Row by row with B's rows streamed, so the host product stays cache-friendly at 512x1536x512. */
        for (size_t r = 0; r < s->m; ++r) {
            double *ref = s->ref + r * s->n, *bound = s->bound + r * s->n;
            memset(ref, 0, s->n * sizeof *ref);
            memset(bound, 0, s->n * sizeof *bound);
            for (size_t j = 0; j < s->k; ++j) {
                const double x = a[r * s->k + j];
                const float *brow = b + j * s->n;
                for (size_t c = 0; c < s->n; ++c) {
                    ref[c] += x * brow[c];
                    bound[c] += fabs(x * brow[c]);
                }
            }
        }
        s->a = support_buffer(ctx, a, s->m * s->k * sizeof *a, NULL);
        s->b = support_buffer(ctx, b, s->k * s->n * sizeof *b, NULL);
        s->c = support_buffer(ctx, NULL, s->m * s->n * sizeof(float), NULL);
        if (!s->a || !s->b || !s->c) why = "allocating the device buffers failed";
    }
    free(a);
    free(b);
    return why;
}

/* One GEMM as the multi-head layer's projections make it: row-major, no transposes, one matrix (which the
 * library's CLBlast doorway hands to CLBlastSgemm as it is). */
static int gemm(void *user, cl_command_queue queue, cl_event *done) {
    const shape_data *s = user;
    return (int)CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, s->m, s->n, s->k, 1.0f,
                             s->a, 0, s->k, s->b, 0, s->n, 0.0f, s->c, 0, s->n, &queue, done);
}

static const char *failure_kind(CLBlastStatusCode st) {
    if (st == (CLBlastStatusCode)CL_BUILD_PROGRAM_FAILURE || st == (CLBlastStatusCode)CL_COMPILER_NOT_AVAILABLE)
        return "build";
    if (st == (CLBlastStatusCode)CL_INVALID_WORK_GROUP_SIZE || st == CLBlastInvalidLocalMemUsage ||
        st == (CLBlastStatusCode)CL_OUT_OF_RESOURCES || st == (CLBlastStatusCode)CL_MEM_OBJECT_ALLOCATION_FAILURE ||
        st == (CLBlastStatusCode)CL_OUT_OF_HOST_MEMORY)
        return "resources";
    return "error";
}

/* Verifies, then times one shape: the median and minimum of the timed runs in *median, *min; false with the
 * answer's failure text in `fail`. */
static bool run_shape(clblast_worker *w, shape_data *s, double *median, double *min, char *fail, size_t size) {
    cl_command_queue queue = clattn_context_cl_queue(w->ctx);
    cl_event done = NULL;
    CLBlastStatusCode st = (CLBlastStatusCode)gemm(s, queue, &done);
    cl_int err = st == CLBlastSuccess && done ? clWaitForEvents(1, &done) : CL_SUCCESS;
    if (done) clReleaseEvent(done);
    if (st != CLBlastSuccess || err != CL_SUCCESS) {
        CLBlastStatusCode code = st != CLBlastSuccess ? st : (CLBlastStatusCode)err;
        snprintf(fail, size, "%s %zux%zux%zu: CLBlast status %d", failure_kind(code), s->m, s->n, s->k, (int)code);
        return false;
    }
    const size_t count = s->m * s->n;
    float *out = malloc(count * sizeof *out);
    if (!out || support_read_storage(w->ctx, s->c, out, count, CLATTN_DTYPE_F32) != CL_SUCCESS) {
        free(out);
        snprintf(fail, size, "error reading the product back failed");
        return false;
    }
    /* fp32 accumulation over k terms: a relative bound on the sum of magnitudes, plus a floor. */
    const double rel = 8.0 * (1.0 + (double)s->k) * FLT_EPSILON;
    for (size_t i = 0; i < count; ++i) {
        const double e = fabs((double)out[i] - s->ref[i]);
        if (!(e <= rel * s->bound[i] + 1e-5)) {
            snprintf(fail, size, "wrong %zux%zux%zu: element %zu is %.6g, the reference %.6g", s->m, s->n, s->k, i,
                     (double)out[i], s->ref[i]);
            free(out);
            return false;
        }
    }
    free(out);
    double *times = malloc((size_t)w->repeat * sizeof *times);
    if (!times) {
        snprintf(fail, size, "error out of host memory");
        return false;
    }
    support_timing t;
    const support_time_result r = support_time_calls(queue, w->warmup, w->repeat, false, gemm, s, times, &t);
    free(times);
    if (r != SUPPORT_TIME_OK) {
        const int code = r == SUPPORT_TIME_CALL ? t.call_status : t.cl_error;
        snprintf(fail, size, "%s a timed run failed: %d", failure_kind((CLBlastStatusCode)code), code);
        return false;
    }
    *median = t.median_ms;
    *min = t.min_ms;
    return true;
}

/* Overrides the kernels the candidate names. False if it needs CLBlast's default for a kernel this process has
 * already overridden (the caller restarts the process), or with a failure line in `fail`. */
static bool apply(clblast_worker *w, const clattn_tune_config *c, bool *restart, char *fail, size_t size) {
    *restart = false;
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k) {
        const int pick = c->v[k];
        if (pick == 0) {
            if (w->overridden[k]) *restart = true;
            continue;
        }
        if (w->overridden[k] && w->applied[k] == pick) continue;
        clattn_status st = clattn_clblast_override(w->ctx, k, set_tables[k][pick].v);
        w->overridden[k] = true;
        w->applied[k] = pick;
        if (st != CLATTN_SUCCESS) {
            snprintf(fail, size, "error %s", clattn_context_last_error(w->ctx));
            return false;
        }
    }
    return !*restart;
}

static void evaluate(void *worker, const char *line) {
    clblast_worker *w = worker;
    clattn_tune_config c;
    memset(&c, 0, sizeof c);
    char why[256], fail[512] = "";
    if (clattn_tune_config_parse(space(), line, &c, why, sizeof why) != CLATTN_SUCCESS) {
        printf("fail error %s\n", why);
        return;
    }
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k)
        if (c.v[k] < 0 || c.v[k] >= set_counts[k]) {
            printf("fail error unknown candidate\n");
            return;
        }
    bool restart = false;
    if (!apply(w, &c, &restart, fail, sizeof fail)) {
        if (restart) {
            /* A fresh process, same pipes, that answers for this candidate first (see the top of this file). */
            char self[4096];
            ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
            if (len > 0) {
                self[len] = '\0';
                fflush(stdout);
                execl(self, self, "tune", "--worker", "--device", w->device ? w->device : "", "--class", w->cls,
                      "--repeat", w->repeat_text, "--warmup", w->warmup_text, "--first", line, (char *)NULL);
            }
            printf("fail error cannot restart the worker to restore CLBlast's defaults\n");
            return;
        }
        printf("fail %s\n", fail);
        return;
    }
    double total = 0, total_min = 0;
    for (int i = 0; i < w->count; ++i) {
        double median = 0, min = 0;
        if (!run_shape(w, &w->shapes[i], &median, &min, fail, sizeof fail)) {
            for (char *p = fail; *p; ++p)
                if (*p == '\n' || *p == '\r') *p = ' ';
            printf("fail %s\n", fail);
            return;
        }
        fprintf(stderr, "clblast %s: %zux%zux%zu median %.3f ms min %.3f ms\n", line, w->shapes[i].m,
                w->shapes[i].n, w->shapes[i].k, median, min);
        total += median;
        total_min += min;
    }
    printf("ok %.6f %.6f\n", total, total_min);
}

int tune_clblast_worker(int argc, char **argv) {
    tune_worker_args args;
    tune_worker_args_parse(argc, argv, &args);
    const char *device = args.device, *cls = args.cls, *first = args.first;
    clblast_worker w;
    memset(&w, 0, sizeof w);
    w.repeat = args.repeat;
    w.warmup = args.warmup;
    char repeat_text[32], warmup_text[32];
    snprintf(repeat_text, sizeof repeat_text, "%ld", w.repeat);
    snprintf(warmup_text, sizeof warmup_text, "%ld", w.warmup);
    w.device = device;
    w.cls = cls;
    w.repeat_text = repeat_text;
    w.warmup_text = warmup_text;
    if (w.repeat < 1) w.repeat = 1;
    if (w.warmup < 0) w.warmup = 0;
    size_t shapes[CLATTN_TUNE_MAX_PARAMS][3];
    w.count = cls ? parse_shapes(cls + strlen(TUNE_CLBLAST_CLASS_PREFIX), shapes, CLATTN_TUNE_MAX_PARAMS) : -1;
    if (w.count <= 0) {
        printf("error bad worker arguments\n");
        return CLI_USAGE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cli_open_context("tune --worker", device, true, &w.ctx) != CLI_OK) {
        printf("error cannot create a context on the device\n");
        return CLI_FAILED;
    }
    for (int i = 0; i < w.count; ++i) {
        shape_data *s = &w.shapes[i];
        s->m = shapes[i][0];
        s->n = shapes[i][1];
        s->k = shapes[i][2];
        const char *bad = setup_shape(w.ctx, s, 1000u + (unsigned)i);
        if (bad) {
            printf("error %s\n", bad);
            return CLI_FAILED;
        }
    }
    if (first)
        evaluate(&w, first);
    else
        printf("ready\n");
    tune_worker_serve(evaluate, &w);
    for (int i = 0; i < w.count; ++i) {
        shape_data *s = &w.shapes[i];
        cl_mem bufs[] = {s->a, s->b, s->c};
        for (int j = 0; j < 3; ++j)
            if (bufs[j]) clReleaseMemObject(bufs[j]);
        free(s->ref);
        free(s->bound);
    }
    clattn_context_free(w.ctx);
    return CLI_OK;
}

/* ---- the search ---- */

static bool evaluate_point(tune_session *s, int x, int d, int r, const clattn_device_info *info, size_t *pruned) {
    clattn_tune_config c;
    memset(&c, 0, sizeof c);
    c.v[0] = x;
    c.v[1] = d;
    c.v[2] = r;
    for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k)
        if (c.v[k] && clattn_clblast_check(k, set_tables[k][c.v[k]].v, info)) {
            ++*pruned;
            return true;
        }
    tune_result res;
    return tune_evaluate(s, &c, &res);
}

/* The pick for kernel `k` of the best point so far: the coordinate search keeps the best of each kernel found. */
static int best_pick(const tune_session *s, int k) {
    double best = INFINITY;
    int pick = 0;
    for (size_t i = 0; i < s->record_count; ++i) {
        const tune_record *rec = &s->records[i];
        if (rec->result.status == TUNE_OK && rec->result.ms < best) {
            best = rec->result.ms;
            pick = rec->config.v[k];
        }
    }
    return pick;
}

int tune_clblast_run(const tune_clblast_options *o, clattn_clblast_params *out, double *default_ms, char *best_text,
                     size_t best_size) {
    memset(out, 0, sizeof *out);
    *default_ms = 0;
    best_text[0] = '\0';
    size_t shapes[CLATTN_TUNE_MAX_PARAMS][3];
    if (parse_shapes(o->shapes, shapes, CLATTN_TUNE_MAX_PARAMS) <= 0)
        return cli_error("tune", CLI_USAGE,
                         "--clblast-shapes %s: expected MxNxK[,MxNxK...] (at most 8, each 1..8192)", o->shapes);
    tune_session s = {.self = o->self, .device = o->device, .repeat = o->repeat, .warmup = o->warmup};
    snprintf(s.cls_text, sizeof s.cls_text, "%s%s", TUNE_CLBLAST_CLASS_PREFIX, o->shapes);
    if (strlen(o->shapes) + strlen(TUNE_CLBLAST_CLASS_PREFIX) >= sizeof s.cls_text)
        return cli_error("tune", CLI_USAGE, "--clblast-shapes %s: too long", o->shapes);
    /* The log's results stay valid while CLBlast's version and the candidate sets stay the same. */
    char hash[17];
    candidates_hash(hash);
    s.log_path = o->log_path;
    s.source_hash = hash;
    s.space = space();
    s.candidate_timeout = o->candidate_timeout;
    s.deadline = o->deadline;
    s.budget = o->budget;
    s.quiet = o->quiet;
    tune_session_open(&s);
    if (o->fresh) s.record_count = 0;
    s.expected = set_counts[0] + set_counts[1] + set_counts[2] - 2;
    printf("%s: CLBlast %s, %d Xgemm, %d XgemmDirect and %d routine candidates\n", s.cls_text,
           clattn_clblast_version(), set_counts[0] - 1, set_counts[1] - 1, set_counts[2] - 1);
    fflush(stdout);
    size_t pruned = 0;
    bool go = evaluate_point(&s, 0, 0, 0, o->info, &pruned);
    for (int x = 1; go && x < set_counts[0]; ++x) go = evaluate_point(&s, x, 0, 0, o->info, &pruned);
    const int bx = best_pick(&s, 0);
    for (int d = 1; go && d < set_counts[1]; ++d) go = evaluate_point(&s, bx, d, 0, o->info, &pruned);
    const int bd = best_pick(&s, 1);
    for (int r = 1; go && r < set_counts[2]; ++r) go = evaluate_point(&s, bx, bd, r, o->info, &pruned);
    if (pruned) printf("%s: %zu candidates ruled out by the device's limits\n", s.cls_text, pruned);
    for (size_t i = 0; i < s.record_count; ++i) {
        const clattn_tune_config *c = &s.records[i].config;
        if (!c->v[0] && !c->v[1] && !c->v[2] && s.records[i].result.status == TUNE_OK)
            *default_ms = s.records[i].result.ms;
    }
    int rc = CLI_OK;
    if (s.have_best) {
        snprintf(out->version, sizeof out->version, "%s", clattn_clblast_version());
        snprintf(out->shapes, sizeof out->shapes, "%s", o->shapes);
        out->ms = s.best_ms;
        out->default_ms = *default_ms;
        for (int k = 0; k < CLATTN_CLBLAST_KERNEL_COUNT; ++k) {
            const int pick = s.best.v[k];
            out->given[k] = pick != 0;
            if (pick) memcpy(out->values[k], set_tables[k][pick].v, sizeof out->values[k]);
        }
        clattn_tune_config_format(space(), &s.best, best_text, best_size);
    } else {
        rc = CLI_FAILED;
    }
    tune_session_close(&s);
    return rc;
}
