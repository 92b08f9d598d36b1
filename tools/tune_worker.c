/* The worker process of `clattn tune` (`clattn tune --worker ...`, started by the tuner, never by hand): it sets up
 * one problem class on the device, computes the double-precision reference once, then reads candidate parameter
 * sets from stdin, one per line, and answers each with one line:
 *   ok MEDIAN_MS MIN_MS              verified against the reference, then timed with profiling events
 *   fail build|wrong|resources|error MESSAGE
 * A candidate that crashes or hangs the driver takes this process with it; the tuner sees the broken pipe or its
 * own time limit, records the failure and starts a new worker. Keeping candidates out of the tuner's process is
 * what makes that possible.
 *
 * Test hooks (CLATTN_TUNE_TEST_FAIL, for tests/test_tuning.c): a ';'-separated list of KIND@PARAMS, where KIND is
 * build (the candidate is compiled with an option the compiler rejects), wrong (its output is perturbed before the
 * check), crash or hang. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "check_tolerance.h"
#include "dtype.h"
#include "internal.h"
#include "reference.h"
#include "reference_seq2seq.h"
#include "seq2seq_internal.h"
#include "tune.h"
#include "tune_clblast.h"
#include "tuning.h"

#define CMD "tune --worker"

typedef struct worker_setup {
    clattn_context *ctx;
    cla_tune_problem p;
    cl_mem q, k, v, out, mask;
    float *hq, *hk, *hv, *hmask;
    uint8_t *hbool;
    double *ref;
    size_t nq, nk, no;
    long repeat, warmup;
} worker_setup;

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f;
}

static float *random_values(size_t n, unsigned seed, clattn_dtype dt) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; x && i < n; ++i) x[i] = cla_round_to_dtype(rnd(&seed), dt);
    return x;
}

static cl_mem upload(clattn_context *ctx, const void *host, size_t bytes) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) return NULL;
    if (host && bytes &&
        clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, host, 0, NULL, NULL) !=
            CL_SUCCESS) {
        clReleaseMemObject(m);
        return NULL;
    }
    return m;
}

static cl_mem upload_floats(clattn_context *ctx, const float *x, size_t n, clattn_dtype dt) {
    size_t bytes = n * clattn_dtype_size(dt);
    void *tmp = malloc(bytes ? bytes : 1);
    if (!tmp) return NULL;
    cla_convert_to_storage(x, tmp, n, dt);
    cl_mem m = upload(ctx, tmp, bytes);
    free(tmp);
    return m;
}

/* Inputs in [-2, 2) rounded to the storage type, a mask over [Lq, Lk] broadcast over batch and heads with about
 * one key in eight removed, and the reference output. */
/* The class's random [Lq, Lk] mask, broadcast over batch and heads: additive (kind 1, about one key in eight
 * masked with -inf) or boolean (kind 2); kind 0 makes none. Returns why it failed, or NULL. */
static const char *make_mask(worker_setup *w, int kind, size_t nmask, clattn_dtype dt) {
    unsigned seed = 45678u;
    if (kind == 1) {
        w->hmask = malloc((nmask ? nmask : 1) * sizeof *w->hmask);
        if (!w->hmask) return "out of host memory for the mask";
        for (size_t i = 0; i < nmask; ++i) {
            float r = rnd(&seed);
            w->hmask[i] = r < -1.5f ? -INFINITY : cla_round_to_dtype(r, dt);
        }
        if (!(w->mask = upload_floats(w->ctx, w->hmask, nmask, dt))) return "allocating the mask failed";
    } else if (kind == 2) {
        w->hbool = malloc(nmask ? nmask : 1);
        if (!w->hbool) return "out of host memory for the mask";
        for (size_t i = 0; i < nmask; ++i) w->hbool[i] = rnd(&seed) >= -1.5f;
        if (!(w->mask = upload(w->ctx, w->hbool, nmask))) return "allocating the mask failed";
    }
    return NULL;
}

static const char *setup(worker_setup *w) {
    const cla_tune_problem *p = &w->p;
    const clattn_dtype dt = p->dtype;
    w->nq = p->batch * p->heads * p->q_len * p->head_dim;
    w->nk = p->batch * p->heads * p->kv_len * p->head_dim;
    w->no = w->nq;
    w->hq = random_values(w->nq, 12345u, dt);
    w->hk = random_values(w->nk, 23456u, dt);
    w->hv = random_values(w->nk, 34567u, dt);
    if (!w->hq || !w->hk || !w->hv) return "out of host memory for the inputs";
    w->q = upload_floats(w->ctx, w->hq, w->nq, dt);
    w->k = upload_floats(w->ctx, w->hk, w->nk, dt);
    w->v = upload_floats(w->ctx, w->hv, w->nk, dt);
    w->out = upload(w->ctx, NULL, w->no * clattn_dtype_size(dt));
    if (!w->q || !w->k || !w->v || !w->out) return "allocating the device buffers failed";
    const size_t nmask = p->q_len * p->kv_len;
    const char *why = make_mask(w, p->mask_kind, nmask, dt);
    if (why) return why;
    w->ref = malloc((w->no ? w->no : 1) * sizeof *w->ref);
    if (!w->ref) return "out of host memory for the reference";
    cla_ref_sdpa r;
    memset(&r, 0, sizeof r);
    r.q = cla_ref_dense(w->hq, p->batch, p->heads, p->q_len, p->head_dim);
    r.k = cla_ref_dense(w->hk, p->batch, p->heads, p->kv_len, p->head_dim);
    r.v = cla_ref_dense(w->hv, p->batch, p->heads, p->kv_len, p->head_dim);
    r.scale = 1.0 / sqrt((double)p->head_dim);
    r.causal = p->causal ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
    r.window_left = r.window_right = CLATTN_WINDOW_UNBOUNDED;
    if (w->hmask) r.mask = cla_ref_dense(w->hmask, 1, 1, p->q_len, p->kv_len);
    if (w->hbool) {
        r.bool_mask.data = w->hbool;
        const size_t size[4] = {1, 1, p->q_len, p->kv_len}, stride[4] = {0, 0, p->kv_len, 1};
        memcpy(r.bool_mask.size, size, sizeof size);
        memcpy(r.bool_mask.stride, stride, sizeof stride);
    }
    r.out = w->ref;
    if (cla_reference_sdpa(&r) != 0) return "the reference computation failed";
    return NULL;
}

/* One call of the fused kernel with the candidate's parameters (set on the context by the caller). */
static clattn_status run_once(worker_setup *w, cl_event *done) {
    const cla_tune_problem *p = &w->p;
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.impl = CLATTN_IMPL_FUSED;
    desc.causal = p->causal ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
    if (w->mask)
        desc.mask = clattn_tensor_bhld(w->mask, p->mask_kind == 2 ? CLATTN_DTYPE_BOOL : p->dtype, 1, 1, p->q_len,
                                       p->kv_len);
    const clattn_tensor q = clattn_tensor_bhld(w->q, p->dtype, p->batch, p->heads, p->q_len, p->head_dim);
    const clattn_tensor k = clattn_tensor_bhld(w->k, p->dtype, p->batch, p->heads, p->kv_len, p->head_dim);
    const clattn_tensor v = clattn_tensor_bhld(w->v, p->dtype, p->batch, p->heads, p->kv_len, p->head_dim);
    const clattn_tensor o = clattn_tensor_bhld(w->out, p->dtype, p->batch, p->heads, p->q_len, p->head_dim);
    return clattn_sdpa(w->ctx, &desc, &q, &k, &v, &o, NULL, 0, NULL, done);
}

/* ---- the additive (seq2seq) attention kernel ----
 * Its classes time the fused kernel alone, on projections made here: the projection GEMMs before it are CLBlast's,
 * not this kernel's parameters, and would only add their own time and noise. The reference runs with identity
 * weights W_q and W_k, so that its projections are these very numbers. w->q and w->k hold the projections (fp32),
 * w->v the values and w->out the context. */
typedef struct s2s_class {
    bool active;
    clattn_seq2seq_weights *weights; /* identity W_q, W_k and the scoring vector v */
    cla_seq2seq_plan plan;
    float *identity, *v_attn;
} s2s_class;
static s2s_class s2s;

static const char *s2s_setup(worker_setup *w) {
    const cla_tune_problem *p = &w->p;
    const clattn_dtype dt = p->dtype;
    const size_t B = p->batch, Lq = p->q_len, Lk = p->kv_len, A = p->head_dim, Dv = p->v_head_dim;
    w->nq = B * Lq * A;
    w->nk = B * Lk * A;
    w->no = B * Lq * Dv;
    w->hq = random_values(w->nq, 12345u, CLATTN_DTYPE_F32);
    w->hk = random_values(w->nk, 23456u, CLATTN_DTYPE_F32);
    w->hv = random_values(B * Lk * Dv, 34567u, dt);
    s2s.v_attn = random_values(A, 56789u, CLATTN_DTYPE_F32);
    s2s.identity = calloc(A * A, sizeof *s2s.identity);
    if (!w->hq || !w->hk || !w->hv || !s2s.v_attn || !s2s.identity) return "out of host memory for the inputs";
    /* Scores of order one, as a trained v gives, so that the softmax is neither flat nor one-hot. */
    for (size_t a = 0; a < A; ++a) s2s.v_attn[a] *= (float)(1.0 / sqrt((double)A));
    for (size_t a = 0; a < A; ++a) s2s.identity[a * A + a] = 1.0f;
    w->q = upload_floats(w->ctx, w->hq, w->nq, CLATTN_DTYPE_F32);
    w->k = upload_floats(w->ctx, w->hk, w->nk, CLATTN_DTYPE_F32);
    w->v = upload_floats(w->ctx, w->hv, B * Lk * Dv, dt);
    w->out = upload(w->ctx, NULL, w->no * clattn_dtype_size(dt));
    if (!w->q || !w->k || !w->v || !w->out) return "allocating the device buffers failed";
    const size_t nmask = Lq * Lk;
    const char *why = make_mask(w, p->mask_kind, nmask, dt);
    if (why) return why;
    const clattn_seq2seq_config config = {CLATTN_SCORE_ADDITIVE, A, A, A};
    clattn_seq2seq_weights_host host;
    memset(&host, 0, sizeof host);
    host.w_q = host.w_k = s2s.identity;
    host.v = s2s.v_attn;
    if (clattn_seq2seq_weights_create(w->ctx, &config, &host, &s2s.weights) != CLATTN_SUCCESS)
        return "uploading the weights failed";
    clattn_seq2seq_desc desc;
    clattn_seq2seq_desc_init(&desc);
    if (w->mask) desc.mask = clattn_tensor_seq(w->mask, p->mask_kind == 2 ? CLATTN_DTYPE_BOOL : dt, 1, Lq, Lk);
    const clattn_tensor q = clattn_tensor_seq(w->q, CLATTN_DTYPE_F32, B, Lq, A);
    const clattn_tensor k = clattn_tensor_seq(w->k, CLATTN_DTYPE_F32, B, Lk, A);
    const clattn_tensor h = clattn_tensor_seq(w->v, dt, B, Lk, Dv);
    const clattn_tensor o = clattn_tensor_seq(w->out, dt, B, Lq, Dv);
    if (cla_seq2seq_validate(w->ctx, s2s.weights, &desc, &q, &k, &h, &o, NULL, 0, NULL, &s2s.plan) !=
        CLATTN_SUCCESS)
        return "the class's arguments were refused";
    w->ref = malloc((w->no ? w->no : 1) * sizeof *w->ref);
    if (!w->ref) return "out of host memory for the reference";
    cla_ref_seq2seq r;
    memset(&r, 0, sizeof r);
    r.score = CLATTN_SCORE_ADDITIVE;
    r.batch = B;
    r.q_len = Lq;
    r.kv_len = Lk;
    r.query_dim = r.key_dim = r.attn_dim = A;
    r.value_dim = Dv;
    r.query = w->hq;
    r.keys = w->hk;
    r.values = w->hv;
    r.w_q = r.w_k = s2s.identity;
    r.v = s2s.v_attn;
    r.mask = w->hmask;
    r.bool_mask = w->hbool;
    r.mask_batch = 1;
    r.context = w->ref;
    if (cla_reference_seq2seq(&r) != 0) return "the reference computation failed";
    s2s.active = true;
    return NULL;
}

/* One launch of the additive kernel with the candidate's parameters (set on the context by the caller). */
static clattn_status s2s_run_once(worker_setup *w, cl_event *done) {
    const size_t A = w->p.head_dim;
    const cla_rows qr = {w->q, 0, A, w->p.q_len * A}, kr = {w->k, 0, A, w->p.kv_len * A};
    cla_chain chain;
    cla_chain_begin(&chain, w->ctx, clattn_context_cl_queue(w->ctx), 0, NULL);
    clattn_status st = cla_seq2seq_additive_kernel(w->ctx, &s2s.plan, qr, kr, s2s.weights->v, 0, &chain);
    if (st != CLATTN_SUCCESS) {
        cla_chain_abort(&chain);
        return st;
    }
    return cla_chain_end(&chain, done);
}

static void s2s_free(void) {
    clattn_seq2seq_weights_free(s2s.weights);
    free(s2s.identity);
    free(s2s.v_attn);
    memset(&s2s, 0, sizeof s2s);
}

static clattn_status run_candidate(worker_setup *w, cl_event *done) {
    return s2s.active ? s2s_run_once(w, done) : run_once(w, done);
}

static const char *failure_kind(clattn_status st) {
    if (st == CLATTN_ERROR_BUILD_FAILED || st == CL_BUILD_PROGRAM_FAILURE || st == CL_INVALID_BUILD_OPTIONS ||
        st == CLATTN_ERROR_NO_COMPILER)
        return "build";
    if (st == CL_OUT_OF_RESOURCES || st == CL_MEM_OBJECT_ALLOCATION_FAILURE || st == CL_OUT_OF_HOST_MEMORY ||
        st == CLATTN_ERROR_DEVICE_LIMIT || st == CL_INVALID_WORK_GROUP_SIZE)
        return "resources";
    return "error";
}

/* The test hook's verdict for a candidate: NULL, or "build", "wrong", "crash", "hang". */
static const char *test_fault(const char *params) {
    const char *spec = getenv("CLATTN_TUNE_TEST_FAIL");
    if (!spec) return NULL;
    static const char *const kinds[] = {"build", "wrong", "crash", "hang"};
    const char *p = spec;
    while (*p) {
        size_t len = strcspn(p, ";");
        const char *at = memchr(p, '@', len);
        if (at) {
            size_t klen = (size_t)(at - p), plen = len - klen - 1;
            for (size_t i = 0; i < 4; ++i)
                if (strlen(kinds[i]) == klen && strncmp(p, kinds[i], klen) == 0 && strlen(params) == plen &&
                    strncmp(at + 1, params, plen) == 0)
                    return kinds[i];
        }
        p += len;
        if (*p == ';') ++p;
    }
    return NULL;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Evaluates one candidate and prints its answer line. */
static void evaluate(worker_setup *w, const char *params) {
    const char *fault = test_fault(params);
    if (fault && strcmp(fault, "crash") == 0) {
        signal(SIGSEGV, SIG_DFL); /* the OpenCL driver may have a handler of its own */
        raise(SIGSEGV);
    }
    if (fault && strcmp(fault, "hang") == 0)
        for (;;) pause();
    clattn_status st =
        clattn_context_set_kernel_params(w->ctx, s2s.active ? "seq2seq_additive" : "sdpa_fused", params);
    const bool bad_build = fault && strcmp(fault, "build") == 0;
    if (!st && bad_build) st = clattn_context_set_build_options(w->ctx, "-clattn-test-invalid-option");
    cl_event done = NULL;
    if (!st) st = run_candidate(w, &done);
    if (bad_build) clattn_context_set_build_options(w->ctx, NULL);
    if (st != CLATTN_SUCCESS) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s", clattn_context_last_error(w->ctx));
        for (char *c = msg; *c; ++c)
            if (*c == '\n' || *c == '\r') *c = ' ';
        printf("fail %s %s: %s\n", failure_kind(st), clattn_status_string(st), msg);
        return;
    }
    cl_int err = clWaitForEvents(1, &done);
    clReleaseEvent(done);
    if (err != CL_SUCCESS) {
        printf("fail %s the kernel failed on the device: OpenCL error %d\n", failure_kind(err), err);
        return;
    }
    /* Verify before timing: a fast wrong answer is worth nothing. */
    const size_t bytes = w->no * clattn_dtype_size(w->p.dtype);
    void *raw = malloc(bytes ? bytes : 1);
    float *out = malloc((w->no ? w->no : 1) * sizeof *out);
    if (!raw || !out ||
        clEnqueueReadBuffer(clattn_context_cl_queue(w->ctx), w->out, CL_TRUE, 0, bytes, raw, 0, NULL, NULL)) {
        free(raw);
        free(out);
        printf("fail error reading the output back failed\n");
        return;
    }
    cla_convert_from_storage(raw, out, w->no, w->p.dtype);
    free(raw);
    if (fault && strcmp(fault, "wrong") == 0 && w->no) out[w->no / 2] += 1.0f;
    /* The additive score adds a reduction over the attention width to the one over the keys. */
    const double tol = check_sdpa_tolerance(w->p.kv_len + (s2s.active ? w->p.head_dim : 0), w->p.dtype);
    double worst = 0.0;
    for (size_t i = 0; i < w->no; ++i) {
        double e = fabs((double)out[i] - w->ref[i]);
        if (isnan(e)) e = INFINITY;
        if (e > worst) worst = e;
    }
    free(out);
    if (!(worst <= tol)) {
        printf("fail wrong max error %.3g against the reference (tolerance %.3g)\n", worst, tol);
        return;
    }
    double *times = malloc((size_t)w->repeat * sizeof *times);
    if (!times) {
        printf("fail error out of host memory\n");
        return;
    }
    cl_command_queue queue = clattn_context_cl_queue(w->ctx);
    for (long n = 0; n < w->warmup + w->repeat; ++n) {
        cl_event start = NULL;
        const bool timed = n >= w->warmup;
        if (timed && clEnqueueMarkerWithWaitList(queue, 0, NULL, &start) != CL_SUCCESS) start = NULL;
        st = run_candidate(w, &done);
        if (st != CLATTN_SUCCESS) {
            if (start) clReleaseEvent(start);
            free(times);
            printf("fail %s %s on a timed run\n", failure_kind(st), clattn_status_string(st));
            return;
        }
        err = clWaitForEvents(1, &done);
        cl_ulong t0 = 0, t1 = 0;
        if (timed) {
            if (!start || clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL) ||
                clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) || t1 < t0)
                err = err ? err : CL_PROFILING_INFO_NOT_AVAILABLE;
            times[n - w->warmup] = (double)(t1 - t0) * 1e-6;
        }
        if (start) clReleaseEvent(start);
        clReleaseEvent(done);
        if (err != CL_SUCCESS) {
            free(times);
            printf("fail %s timed run failed: OpenCL error %d\n", failure_kind(err), err);
            return;
        }
    }
    qsort(times, (size_t)w->repeat, sizeof *times, compare_doubles);
    const size_t n = (size_t)w->repeat;
    const double median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    printf("ok %.6f %.6f\n", median, times[0]);
    free(times);
}

int tune_worker_main(int argc, char **argv) {
    const char *device = NULL, *cls_text = NULL;
    worker_setup w;
    memset(&w, 0, sizeof w);
    w.repeat = 5;
    w.warmup = 2;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--device") == 0) device = argv[i + 1];
        if (strcmp(argv[i], "--class") == 0) cls_text = argv[i + 1];
        if (strcmp(argv[i], "--repeat") == 0) w.repeat = atol(argv[i + 1]);
        if (strcmp(argv[i], "--warmup") == 0) w.warmup = atol(argv[i + 1]);
    }
    if (cls_text && strncmp(cls_text, TUNE_CLBLAST_CLASS_PREFIX, strlen(TUNE_CLBLAST_CLASS_PREFIX)) == 0)
        return tune_clblast_worker(argc, argv);
    if (w.repeat < 1) w.repeat = 1;
    if (w.warmup < 0) w.warmup = 0;
    cla_tune_class cls;
    const cla_tune_op *op = NULL;
    char why[256];
    if (!cls_text || !cla_tune_shape_parse(cls_text, &op, &cls, why, sizeof why)) {
        printf("error bad worker arguments\n");
        return CLI_USAGE;
    }
    w.p = cla_tune_op_class_problem(op, &cls);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cli_open_context(CMD, device, true, &w.ctx) != CLI_OK) {
        printf("error cannot create a context on the device\n");
        return CLI_FAILED;
    }
    const char *bad = op == &cla_tune_op_seq2seq ? s2s_setup(&w) : setup(&w);
    if (bad) {
        printf("error %s\n", bad);
        return CLI_FAILED;
    }
    printf("ready\n");
    char line[CLA_TUNE_PARAMS_TEXT + 8];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        evaluate(&w, line);
        fflush(stdout);
    }
    cl_mem bufs[] = {w.q, w.k, w.v, w.out, w.mask};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    free(w.hq);
    free(w.hk);
    free(w.hv);
    free(w.hmask);
    free(w.hbool);
    free(w.ref);
    s2s_free();
    clattn_context_free(w.ctx);
    return CLI_OK;
}
