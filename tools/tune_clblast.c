/* `clattn tune --clblast`: tunes the parameters of the CLBlast kernels that the multi-head layer's projection GEMMs
 * run (Xgemm for large products, XgemmDirect for small ones, and GemmRoutine's size that picks between them), so
 * that the whole layer is tuned, not just the attention kernels.
 *
 * The candidates are a short list of known-good sets (CPU-shaped: small work-groups, long vectors, no local memory;
 * GPU-shaped: 8x8 to 16x16 work-groups with local-memory tiles) checked against the device's limits by
 * cla_clblast_check before anything runs. They are searched one kernel at a time, because each GEMM shape runs
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

#include "blas.h"
#include "cli.h"
#include "tune.h"
#include "tune_clblast.h"

/* ---- the candidates ---- */

typedef struct named_set {
    const char *name;
    size_t v[CLA_CLBLAST_MAX_PARAMS];
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

static const named_set *const set_tables[CLA_CLBLAST_KERNEL_COUNT] = {xgemm_sets, direct_sets, routine_sets};
static const int set_counts[CLA_CLBLAST_KERNEL_COUNT] = {COUNT(xgemm_sets), COUNT(direct_sets),
                                                         COUNT(routine_sets)};

static const char *xgemm_labels[COUNT(xgemm_sets)], *direct_labels[COUNT(direct_sets)],
    *routine_labels[COUNT(routine_sets)];
static cla_tune_param op_params[CLA_CLBLAST_KERNEL_COUNT];
static cla_tune_op clblast_op;

/* The candidates as an operation of one labelled parameter per kernel ("xgemm=cpu_v8,direct=default,..."), so
 * that the evaluation session, its log and its resume work as they do for the attention kernels. */
static const cla_tune_op *op(void) {
    if (clblast_op.name) return &clblast_op;
    const char **labels[CLA_CLBLAST_KERNEL_COUNT] = {xgemm_labels, direct_labels, routine_labels};
    static const char *const names[CLA_CLBLAST_KERNEL_COUNT] = {"xgemm", "direct", "routine"};
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
        for (int i = 0; i < set_counts[k]; ++i) labels[k][i] = set_tables[k][i].name;
        op_params[k].name = names[k];
        op_params[k].count = set_counts[k] < CLA_TUNE_MAX_VALUES ? set_counts[k] : CLA_TUNE_MAX_VALUES;
        for (int i = 0; i < op_params[k].count; ++i) op_params[k].values[i] = i;
        op_params[k].labels = labels[k];
        op_params[k].label_count = set_counts[k];
    }
    clblast_op.name = "clblast_gemm";
    clblast_op.param_count = CLA_CLBLAST_KERNEL_COUNT;
    clblast_op.params = op_params;
    return &clblast_op;
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
    shape_data shapes[CLA_TUNE_MAX_PARAMS];
    int count;
    long repeat, warmup;
    bool overridden[CLA_CLBLAST_KERNEL_COUNT];
    int applied[CLA_CLBLAST_KERNEL_COUNT];
    const char *device, *cls, *repeat_text, *warmup_text; /* for restarting itself */
} clblast_worker;

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

static cl_mem make_buffer(clattn_context *ctx, const float *host, size_t count) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, count * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return NULL;
    if (host && clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, count * sizeof(float), host, 0,
                                     NULL, NULL) != CL_SUCCESS) {
        clReleaseMemObject(m);
        return NULL;
    }
    return m;
}

static const char *setup_shape(clattn_context *ctx, shape_data *s, unsigned seed) {
    float *a = malloc(s->m * s->k * sizeof *a), *b = malloc(s->k * s->n * sizeof *b);
    s->ref = malloc(s->m * s->n * sizeof *s->ref);
    s->bound = malloc(s->m * s->n * sizeof *s->bound);
    const char *why = NULL;
    if (!a || !b || !s->ref || !s->bound) why = "out of host memory";
    for (size_t i = 0; !why && i < s->m * s->k; ++i) a[i] = rnd(&seed);
    for (size_t i = 0; !why && i < s->k * s->n; ++i) b[i] = rnd(&seed);
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
        s->a = make_buffer(ctx, a, s->m * s->k);
        s->b = make_buffer(ctx, b, s->k * s->n);
        s->c = make_buffer(ctx, NULL, s->m * s->n);
        if (!s->a || !s->b || !s->c) why = "allocating the device buffers failed";
    }
    free(a);
    free(b);
    return why;
}

static CLBlastStatusCode gemm(clblast_worker *w, const shape_data *s, cl_event *done) {
    cl_command_queue q = clattn_context_cl_queue(w->ctx);
    /* As cla_linear calls it: row-major, no transposes, one matrix. */
    return cla_blas_sgemm_strided_batched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, s->m, s->n,
                                          s->k, 1.0f, s->a, 0, s->k, s->m * s->k, s->b, 0, s->n, 0, 0.0f, s->c, 0,
                                          s->n, s->m * s->n, 1, &q, done);
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

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Verifies, then times one shape: the median and minimum of the timed runs in *median, *min. NULL or the answer's
 * failure text (written to `fail`). */
static bool run_shape(clblast_worker *w, const shape_data *s, double *median, double *min, char *fail,
                      size_t size) {
    cl_event done = NULL;
    CLBlastStatusCode st = gemm(w, s, &done);
    cl_int err = st == CLBlastSuccess && done ? clWaitForEvents(1, &done) : CL_SUCCESS;
    if (done) clReleaseEvent(done);
    if (st != CLBlastSuccess || err != CL_SUCCESS) {
        CLBlastStatusCode code = st != CLBlastSuccess ? st : (CLBlastStatusCode)err;
        snprintf(fail, size, "%s %zux%zux%zu: CLBlast status %d %s", failure_kind(code), s->m, s->n, s->k,
                 (int)code, cla_blas_status_name(code));
        return false;
    }
    const size_t count = s->m * s->n;
    float *out = malloc(count * sizeof *out);
    if (!out || clEnqueueReadBuffer(clattn_context_cl_queue(w->ctx), s->c, CL_TRUE, 0, count * sizeof *out, out, 0,
                                    NULL, NULL) != CL_SUCCESS) {
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
    cl_command_queue queue = clattn_context_cl_queue(w->ctx);
    for (long r = 0; r < w->warmup + w->repeat; ++r) {
        const bool timed = r >= w->warmup;
        cl_event start = NULL;
        if (timed && clEnqueueMarkerWithWaitList(queue, 0, NULL, &start) != CL_SUCCESS) start = NULL;
        done = NULL;
        st = gemm(w, s, &done);
        err = st != CLBlastSuccess ? (cl_int)st : !done ? CL_INVALID_EVENT : clWaitForEvents(1, &done);
        cl_ulong t0 = 0, t1 = 0;
        if (!err && timed &&
            (!start || clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL) ||
             clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) || t1 < t0))
            err = CL_PROFILING_INFO_NOT_AVAILABLE;
        if (timed) times[r - w->warmup] = (double)(t1 - t0) * 1e-6;
        if (start) clReleaseEvent(start);
        if (done) clReleaseEvent(done);
        if (err) {
            free(times);
            snprintf(fail, size, "%s a timed run failed: %d", failure_kind((CLBlastStatusCode)err), err);
            return false;
        }
    }
    qsort(times, (size_t)w->repeat, sizeof *times, compare_doubles);
    const size_t n = (size_t)w->repeat;
    *median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    *min = times[0];
    free(times);
    return true;
}

/* Overrides the kernels the candidate names. False if it needs CLBlast's default for a kernel this process has
 * already overridden (the caller restarts the process), or with a failure line in `fail`. */
static bool apply(clblast_worker *w, const cla_tune_config *c, bool *restart, char *fail, size_t size) {
    *restart = false;
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
        const int pick = c->v[k];
        if (pick == 0) {
            if (w->overridden[k]) *restart = true;
            continue;
        }
        if (w->overridden[k] && w->applied[k] == pick) continue;
        const cla_clblast_kernel *kd = &cla_clblast_kernels[k];
        const char *names[CLA_CLBLAST_MAX_PARAMS];
        for (int i = 0; i < kd->count; ++i) names[i] = kd->params[i];
        CLBlastStatusCode st = cla_blas_override(clattn_context_cl_device(w->ctx), kd->name, (size_t)kd->count,
                                                 names, set_tables[k][pick].v);
        w->overridden[k] = true;
        w->applied[k] = pick;
        if (st != CLBlastSuccess) {
            snprintf(fail, size, "error CLBlastOverrideParameters(%s) failed with status %d %s", kd->name, (int)st,
                     cla_blas_status_name(st));
            return false;
        }
    }
    return !*restart;
}

static void evaluate(clblast_worker *w, const char *line) {
    cla_tune_config c;
    memset(&c, 0, sizeof c);
    char why[256], fail[512] = "";
    if (!cla_tune_config_parse(op(), line, &c, why, sizeof why)) {
        printf("fail error %s\n", why);
        return;
    }
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k)
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
    const char *device = NULL, *cls = NULL, *first = NULL;
    clblast_worker w;
    memset(&w, 0, sizeof w);
    w.repeat = 5;
    w.warmup = 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--device") == 0) device = argv[i + 1];
        if (strcmp(argv[i], "--class") == 0) cls = argv[i + 1];
        if (strcmp(argv[i], "--repeat") == 0) w.repeat = atol(argv[i + 1]);
        if (strcmp(argv[i], "--warmup") == 0) w.warmup = atol(argv[i + 1]);
        if (strcmp(argv[i], "--first") == 0) first = argv[i + 1];
    }
    char repeat_text[32], warmup_text[32];
    snprintf(repeat_text, sizeof repeat_text, "%ld", w.repeat);
    snprintf(warmup_text, sizeof warmup_text, "%ld", w.warmup);
    w.device = device;
    w.cls = cls;
    w.repeat_text = repeat_text;
    w.warmup_text = warmup_text;
    if (w.repeat < 1) w.repeat = 1;
    if (w.warmup < 0) w.warmup = 0;
    size_t shapes[CLA_TUNE_MAX_PARAMS][3];
    w.count = cls ? parse_shapes(cls + strlen(TUNE_CLBLAST_CLASS_PREFIX), shapes, CLA_TUNE_MAX_PARAMS) : -1;
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
    char line[CLA_TUNE_PARAMS_TEXT + 8];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        evaluate(&w, line);
        fflush(stdout);
    }
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
    cla_tune_config c;
    memset(&c, 0, sizeof c);
    c.v[0] = x;
    c.v[1] = d;
    c.v[2] = r;
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k)
        if (c.v[k] && cla_clblast_check(k, set_tables[k][c.v[k]].v, info)) {
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

int tune_clblast_run(const tune_clblast_options *o, cla_clblast_section *out, double *default_ms, char *best_text,
                     size_t best_size) {
    memset(out, 0, sizeof *out);
    *default_ms = 0;
    best_text[0] = '\0';
    size_t shapes[CLA_TUNE_MAX_PARAMS][3];
    if (parse_shapes(o->shapes, shapes, CLA_TUNE_MAX_PARAMS) <= 0)
        return cli_error("tune", CLI_USAGE,
                         "--clblast-shapes %s: expected MxNxK[,MxNxK...] (at most 8, each 1..8192)", o->shapes);
    tune_session s;
    memset(&s, 0, sizeof s);
    snprintf(s.cls_text, sizeof s.cls_text, "%s%s", TUNE_CLBLAST_CLASS_PREFIX, o->shapes);
    if (strlen(o->shapes) + strlen(TUNE_CLBLAST_CLASS_PREFIX) >= sizeof s.cls_text)
        return cli_error("tune", CLI_USAGE, "--clblast-shapes %s: too long", o->shapes);
    /* The log's results stay valid while CLBlast's version and the candidate sets stay the same. */
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_string(&h, cla_clblast_version());
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k)
        for (int i = 0; i < set_counts[k]; ++i) {
            cla_hash_string(&h, set_tables[k][i].name);
            cla_hash_bytes(&h, set_tables[k][i].v, sizeof set_tables[k][i].v);
        }
    char hash[33];
    cla_hash_hex(&h, hash);
    s.self = o->self;
    s.device = o->device;
    s.log_path = o->log_path;
    s.source_hash = hash;
    s.op = op();
    s.candidate_timeout = o->candidate_timeout;
    s.deadline = o->deadline;
    s.repeat = o->repeat;
    s.warmup = o->warmup;
    s.budget = o->budget;
    s.quiet = o->quiet;
    tune_session_open(&s);
    if (o->fresh) s.record_count = 0;
    s.expected = set_counts[0] + set_counts[1] + set_counts[2] - 2;
    printf("%s: CLBlast %s, %d Xgemm, %d XgemmDirect and %d routine candidates\n", s.cls_text,
           cla_clblast_version(), set_counts[0] - 1, set_counts[1] - 1, set_counts[2] - 1);
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
        const cla_tune_config *c = &s.records[i].config;
        if (!c->v[0] && !c->v[1] && !c->v[2] && s.records[i].result.status == TUNE_OK)
            *default_ms = s.records[i].result.ms;
    }
    int rc = CLI_OK;
    if (s.have_best) {
        snprintf(out->version, sizeof out->version, "%s", cla_clblast_version());
        snprintf(out->shapes, sizeof out->shapes, "%s", o->shapes);
        out->ms = s.best_ms;
        out->default_ms = *default_ms;
        for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
            const int pick = s.best.v[k];
            out->given[k] = pick != 0;
            if (pick) memcpy(out->values[k], set_tables[k][pick].v, sizeof out->values[k]);
        }
        cla_tune_config_format(s.op, &s.best, best_text, best_size);
    } else {
        rc = CLI_FAILED;
    }
    tune_session_close(&s);
    return rc;
}
