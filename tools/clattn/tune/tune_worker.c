// SPDX-License-Identifier: Apache-2.0
/* The worker process of `clattn tune` (`clattn tune --worker ...`, started by the tuner, never by hand): it sets up
 * one problem class on the device, computes the double-precision reference once, then reads candidate parameter
 * sets from stdin, one per line, and answers each with one line:
 *   ok MEDIAN_MS MIN_MS              verified against the reference, then timed with profiling events
 *   fail build|wrong|resources|error MESSAGE
 * A candidate that crashes or hangs the driver takes this process with it; the tuner sees the broken pipe or its
 * own time limit, records the failure and starts a new worker. Keeping candidates out of the tuner's process is
 * what makes that possible.
 *
 * With --programs it prints the programs one call of the class builds (with --first's parameters, else the
 * context's choice) and exits: what tests/test_tuning.c inspects to see that the class's features are timed.
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

#include "check_tolerance.h"
#include "cli.h"
#include "clattn_advanced.h"
#include "reference_seq2seq.h"
#include "support_buffers.h"
#include "support_compare.h"
#include "support_random.h"
#include "support_sdpa_inputs.h"
#include "support_timing.h"
#include "tune.h"
#include "tune_clblast.h"
#include "tune_serving.h"

#define CMD         "tune --worker"
#define USER_SLOPE  0.0625f
#define USER_WINDOW 8

typedef struct worker_setup {
    clattn_context *ctx;
    clattn_tuning_query p; /* the class's problem */
    /* The class's score modifiers (clattn_tune_class.mods bits: 1 softcap, 2 sinks, 4 ALiBi, 8 score_mod, 16
     * mask_mod), compiled into the kernel that is timed, with the values `clattn bench --mods` uses. */
    long mods;
    float *sinks, *slopes;
    cl_mem dsinks, dslopes;
    /* A class with a score_mod or mask_mod times representative ones that the reference can state: an ALiBi-like
     * score_mod of slope USER_SLOPE (ref_slopes: the reference's ALiBi slopes, the built-in's plus it) and a
     * mask_mod that keeps keys up to USER_WINDOW past the query (the reference's right window); both aligned as
     * the built-in window is. */
    char score_expr[96], mask_expr[96];
    float *ref_slopes;
    tune_serving serving; /* the class's serving format: packed, paged, 8-bit K/V */
    support_sdpa_inputs in;
    double *ref;
    long repeat, warmup;
} worker_setup;

/* The class's modifiers: their values and buffers. Returns NULL or why not. */
static const char *setup_mods(worker_setup *w) {
    if (w->mods <= 0) return NULL;
    const size_t H = w->p.heads;
    w->sinks = malloc((H + 1) * sizeof *w->sinks);
    w->slopes = malloc((H + 1) * sizeof *w->slopes);
    if (!w->sinks || !w->slopes) return "out of host memory for the score modifiers";
    support_mod_values(H, w->sinks, w->slopes);
    w->dsinks = support_buffer(w->ctx, w->sinks, H * sizeof(float), NULL);
    w->dslopes = support_buffer(w->ctx, w->slopes, H * sizeof(float), NULL);
    if (!w->dsinks || !w->dslopes) return "allocating the score modifiers' buffers failed";
    /* The expressions see q_idx as the row; the built-in window aligns it to the last key with causal masking. */
    const long off = w->p.causal ? (long)w->p.kv_len - (long)w->p.q_len : 0;
    snprintf(w->score_expr, sizeof w->score_expr, "score - %.4ff * (float)abs(q_idx + %ld - kv_idx)", USER_SLOPE,
             off);
    snprintf(w->mask_expr, sizeof w->mask_expr, "kv_idx - (q_idx + %ld) <= %d", off, USER_WINDOW);
    w->ref_slopes = calloc(H + 1, sizeof *w->ref_slopes);
    if (!w->ref_slopes) return "out of host memory for the score modifiers";
    for (size_t h = 0; h < H; ++h)
        w->ref_slopes[h] = (w->mods & CLATTN_TUNE_MODS_ALIBI ? w->slopes[h] : 0.0f) +
                           (w->mods & CLATTN_TUNE_MODS_SCORE_FN ? USER_SLOPE : 0.0f);
    return NULL;
}

/* The attention classes: the benchmark's random problem (q, k, v, and the class's [Lq, Lk] mask broadcast over
 * batch and heads), the class's score modifiers, and its reference output. */
static const char *setup(worker_setup *w) {
    const clattn_tuning_query *p = &w->p;
    support_sdpa_inputs *in = &w->in;
    in->batch = p->batch;
    in->heads = in->kv_heads = p->heads;
    in->q_len = p->q_len;
    in->kv_len = p->kv_len;
    in->head_dim = p->head_dim;
    in->dtype = p->dtype;
    in->mask_kind = p->mask;
    static char why[256];
    if (support_sdpa_inputs_make(w->ctx, in, why, sizeof why) != 0) return why;
    const char *bad = tune_serving_setup(w->ctx, in, &w->serving); /* before the reference: 8-bit K/V change it */
    if (!bad) bad = setup_mods(w);
    if (bad) return bad;
    const long m = w->mods > 0 ? w->mods : 0;
    w->ref = support_sdpa_inputs_reference_mods(
        in, p->causal, CLATTN_WINDOW_UNBOUNDED,
        m & CLATTN_TUNE_MODS_MASK_FN ? USER_WINDOW : CLATTN_WINDOW_UNBOUNDED, NULL,
        m & CLATTN_TUNE_MODS_SOFTCAP ? SUPPORT_SOFTCAP : 0.0f, m & CLATTN_TUNE_MODS_SINKS ? w->sinks : NULL,
        m & (CLATTN_TUNE_MODS_ALIBI | CLATTN_TUNE_MODS_SCORE_FN) ? w->ref_slopes : NULL);
    return w->ref ? NULL : "the reference computation failed";
}

static void free_setup(worker_setup *w) {
    support_sdpa_inputs_free(&w->in);
    tune_serving_free(&w->serving);
    free(w->ref);
    free(w->sinks);
    free(w->slopes);
    free(w->ref_slopes);
    if (w->dsinks) clReleaseMemObject(w->dsinks);
    if (w->dslopes) clReleaseMemObject(w->dslopes);
}

/* One call of the fused kernel with the candidate's parameters (set on the context by the caller). */
static int run_once(void *user, cl_command_queue queue, cl_event *done) {
    worker_setup *w = user;
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.impl = CLATTN_IMPL_FUSED;
    desc.causal = w->p.causal;
    const long m = w->mods > 0 ? w->mods : 0;
    if (m & CLATTN_TUNE_MODS_SOFTCAP) desc.softcap = SUPPORT_SOFTCAP;
    if (m & CLATTN_TUNE_MODS_SINKS)
        desc.sinks = clattn_tensor_bhld(w->dsinks, CLATTN_DTYPE_F32, 1, w->p.heads, 1, 1);
    if (m & CLATTN_TUNE_MODS_ALIBI)
        desc.alibi_slopes = clattn_tensor_bhld(w->dslopes, CLATTN_DTYPE_F32, 1, w->p.heads, 1, 1);
    if (m & CLATTN_TUNE_MODS_SCORE_FN) desc.score_mod = w->score_expr;
    if (m & CLATTN_TUNE_MODS_MASK_FN) desc.mask_mod = w->mask_expr;
    clattn_tensor q, k, v, o;
    support_sdpa_inputs_tensors(&w->in, &desc, &q, &k, &v, &o);
    tune_serving_apply(&w->serving, &w->in, &desc, &k, &v);
    return clattn_sdpa(w->ctx, &desc, &q, &k, &v, &o, queue, 0, NULL, done);
}

/* ---- the additive (seq2seq) attention kernel ----
 * Its classes time the fused kernel alone (clattn_seq2seq_attention_projected), on projections made here: the
 * projection GEMMs before it are CLBlast's, not this kernel's parameters, and would only add their own time and
 * noise. The reference runs with identity weights W_q and W_k, so that its projections are these very numbers.
 * in.dq and in.dk hold the projections (fp32), in.dv the values and in.dout the context. */
typedef struct s2s_class {
    bool active;
    clattn_seq2seq_weights *weights; /* identity W_q, W_k and the scoring vector v */
    clattn_seq2seq_desc desc;
    clattn_tensor qp, values, context;
    float *identity, *v_attn;
} s2s_class;
static s2s_class s2s;

static const char *s2s_setup(worker_setup *w) {
    const clattn_tuning_query *p = &w->p;
    support_sdpa_inputs *in = &w->in;
    const clattn_dtype dt = p->dtype;
    const size_t B = p->batch, Lq = p->q_len, Lk = p->kv_len, A = p->head_dim, Dv = p->v_head_dim;
    in->nq = B * Lq * A;
    in->nk = B * Lk * A;
    unsigned sq = 12345u, sk = 23456u, sv = 34567u, sa = 56789u;
    in->q = support_random_array(in->nq, 1.0f, CLATTN_DTYPE_F32, &sq);
    in->k = support_random_array(in->nk, 1.0f, CLATTN_DTYPE_F32, &sk);
    in->v = support_random_array(B * Lk * Dv, 1.0f, dt, &sv);
    s2s.v_attn = support_random_array(A, 1.0f, CLATTN_DTYPE_F32, &sa);
    s2s.identity = calloc(A * A, sizeof *s2s.identity);
    if (!in->q || !in->k || !in->v || !s2s.v_attn || !s2s.identity ||
        support_random_mask(Lq * Lk, p->mask, dt, &in->mask, &in->bool_mask) != 0)
        return "out of host memory for the inputs";
    /* Scores of order one, as a trained v gives, so that the softmax is neither flat nor one-hot. */
    for (size_t a = 0; a < A; ++a) s2s.v_attn[a] *= (float)(1.0 / sqrt((double)A));
    for (size_t a = 0; a < A; ++a) s2s.identity[a * A + a] = 1.0f;
    in->dq = support_buffer_storage(w->ctx, in->q, in->nq, CLATTN_DTYPE_F32, NULL);
    in->dk = support_buffer_storage(w->ctx, in->k, in->nk, CLATTN_DTYPE_F32, NULL);
    in->dv = support_buffer_storage(w->ctx, in->v, B * Lk * Dv, dt, NULL);
    in->dout = support_buffer_storage(w->ctx, NULL, B * Lq * Dv, dt, NULL);
    if (in->mask) in->dmask = support_buffer_storage(w->ctx, in->mask, Lq * Lk, dt, NULL);
    if (in->bool_mask) in->dmask = support_buffer(w->ctx, in->bool_mask, Lq * Lk, NULL);
    if (!in->dq || !in->dk || !in->dv || !in->dout || (p->mask && !in->dmask))
        return "allocating the device buffers failed";
    const clattn_seq2seq_config config = {CLATTN_SCORE_ADDITIVE, A, A, A};
    clattn_seq2seq_weights_host host;
    memset(&host, 0, sizeof host);
    host.w_q = host.w_k = s2s.identity;
    host.v = s2s.v_attn;
    if (clattn_seq2seq_weights_create(w->ctx, &config, &host, &s2s.weights) != CLATTN_SUCCESS)
        return "uploading the weights failed";
    clattn_seq2seq_desc_init(&s2s.desc);
    if (in->dmask) s2s.desc.mask = clattn_tensor_seq(in->dmask, in->bool_mask ? CLATTN_DTYPE_BOOL : dt, 1, Lq, Lk);
    s2s.desc.key_projection = clattn_tensor_seq(in->dk, CLATTN_DTYPE_F32, B, Lk, A);
    s2s.qp = clattn_tensor_seq(in->dq, CLATTN_DTYPE_F32, B, Lq, A);
    s2s.values = clattn_tensor_seq(in->dv, dt, B, Lk, Dv);
    s2s.context = clattn_tensor_seq(in->dout, dt, B, Lq, Dv);
    w->ref = malloc((B * Lq * Dv + 1) * sizeof *w->ref);
    if (!w->ref) return "out of host memory for the reference";
    cla_ref_seq2seq r = {.score = CLATTN_SCORE_ADDITIVE, .batch = B, .q_len = Lq, .kv_len = Lk};
    r.query_dim = r.key_dim = r.attn_dim = A;
    r.value_dim = Dv;
    r.query = in->q;
    r.keys = in->k;
    r.values = in->v;
    r.w_q = r.w_k = s2s.identity;
    r.v = s2s.v_attn;
    r.mask = in->mask;
    r.bool_mask = in->bool_mask;
    r.mask_batch = 1;
    r.context = w->ref;
    if (cla_reference_seq2seq(&r) != 0) return "the reference computation failed";
    s2s.active = true;
    return NULL;
}

/* One launch of the additive kernel with the candidate's parameters (set on the context by the caller). */
static int s2s_run_once(void *user, cl_command_queue queue, cl_event *done) {
    worker_setup *w = user;
    return clattn_seq2seq_attention_projected(w->ctx, s2s.weights, &s2s.desc, &s2s.qp, &s2s.values, &s2s.context,
                                              queue, 0, NULL, done);
}

static void s2s_free(void) {
    clattn_seq2seq_weights_free(s2s.weights);
    free(s2s.identity);
    free(s2s.v_attn);
    memset(&s2s, 0, sizeof s2s);
}

static support_call_fn candidate(void) {
    return s2s.active ? s2s_run_once : run_once;
}

/* --programs (for tests and for looking): the programs one call of the class builds with the parameters `params`
 * (NULL: the context's choice), as "program SOURCE OPTIONS" lines, recorded by the library instead of run. */
static void print_programs(worker_setup *w, const char *params) {
    if (params && clattn_context_set_kernel_params(w->ctx, w->p.operation, params) != CLATTN_SUCCESS) {
        printf("error %s\n", clattn_context_last_error(w->ctx));
        return;
    }
    clattn_program_record_begin(w->ctx);
    cl_event done = NULL;
    candidate()(w, clattn_context_cl_queue(w->ctx), &done); /* fails at its first device operation, as it should */
    if (done) clReleaseEvent(done);
    for (size_t i = 0; i < clattn_program_record_count(w->ctx); ++i) {
        const char *source = NULL, *options = NULL, *prefix = NULL;
        if (clattn_program_recorded(w->ctx, i, &source, &options) != CLATTN_SUCCESS ||
            clattn_program_recorded_prefix(w->ctx, i, &prefix) != CLATTN_SUCCESS)
            continue;
        /* The score_mod/mask_mod code goes ahead of the source, not into the options: name its switches. */
        printf("program %s %s%s%s\n", source, options,
               prefix && strstr(prefix, "#define HAS_SCORE_FN 1") ? " +HAS_SCORE_FN" : "",
               prefix && strstr(prefix, "#define HAS_MASK_FN 1") ? " +HAS_MASK_FN" : "");
    }
    clattn_program_record_end(w->ctx);
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

/* Evaluates one candidate and prints its answer line. */
static void evaluate(void *worker, const char *params) {
    worker_setup *w = worker;
    const char *fault = test_fault(params);
    if (fault && strcmp(fault, "crash") == 0) {
        signal(SIGSEGV, SIG_DFL); /* the OpenCL driver may have a handler of its own */
        raise(SIGSEGV);
    }
    if (fault && strcmp(fault, "hang") == 0)
        for (;;) pause();
    clattn_status st = clattn_context_set_kernel_params(w->ctx, w->p.operation, params);
    const bool bad_build = fault && strcmp(fault, "build") == 0;
    if (!st && bad_build) st = clattn_context_set_build_options(w->ctx, "-clattn-test-invalid-option");
    cl_command_queue queue = clattn_context_cl_queue(w->ctx);
    cl_event done = NULL;
    if (!st) st = candidate()(w, queue, &done);
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
    const size_t n = w->p.batch * w->p.heads * w->p.q_len * w->p.v_head_dim;
    float *out = malloc((n + 1) * sizeof *out);
    if (!out || support_read_storage(w->ctx, w->in.dout, out, n, w->p.dtype) != CL_SUCCESS) {
        free(out);
        printf("fail error reading the output back failed\n");
        return;
    }
    if (fault && strcmp(fault, "wrong") == 0 && n) out[n / 2] += 1.0f;
    /* The additive score adds a reduction over the attention width to the one over the keys. */
    const double tol = check_sdpa_tolerance(w->p.kv_len + (s2s.active ? w->p.head_dim : 0), w->p.dtype);
    const double worst = support_max_error(out, w->ref, n, false, NULL);
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
    support_timing t;
    const support_time_result r = support_time_calls(queue, w->warmup, w->repeat, false, candidate(), w, times, &t);
    free(times);
    if (r == SUPPORT_TIME_CALL)
        printf("fail %s %s on a timed run\n", failure_kind(t.call_status), clattn_status_string(t.call_status));
    else if (r == SUPPORT_TIME_DEVICE)
        printf("fail %s timed run failed: OpenCL error %d\n", failure_kind(t.cl_error), t.cl_error);
    else
        printf("ok %.6f %.6f\n", t.median_ms, t.min_ms);
}

void tune_worker_serve(void (*answer)(void *worker, const char *params), void *worker) {
    char line[CLATTN_TUNE_PARAMS_TEXT + 8];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        answer(worker, line);
        fflush(stdout);
    }
}

void tune_worker_args_parse(int argc, char **argv, tune_worker_args *a) {
    memset(a, 0, sizeof *a);
    a->repeat = 5;
    a->warmup = 2;
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "--programs") == 0) { /* the one flag: every other option takes a value */
            a->programs = true;
            continue;
        }
        if (i + 1 == argc) break;
        if (strcmp(argv[i], "--device") == 0) a->device = argv[i + 1];
        if (strcmp(argv[i], "--class") == 0) a->cls = argv[i + 1];
        if (strcmp(argv[i], "--repeat") == 0) a->repeat = atol(argv[i + 1]);
        if (strcmp(argv[i], "--warmup") == 0) a->warmup = atol(argv[i + 1]);
        if (strcmp(argv[i], "--first") == 0) a->first = argv[i + 1];
        ++i;
    }
}

int tune_worker_main(int argc, char **argv) {
    tune_worker_args args;
    tune_worker_args_parse(argc, argv, &args);
    const char *device = args.device, *cls_text = args.cls;
    worker_setup w;
    memset(&w, 0, sizeof w);
    w.repeat = args.repeat;
    w.warmup = args.warmup;
    if (cls_text && strncmp(cls_text, TUNE_CLBLAST_CLASS_PREFIX, strlen(TUNE_CLBLAST_CLASS_PREFIX)) == 0)
        return tune_clblast_worker(argc, argv);
    if (w.repeat < 1) w.repeat = 1;
    if (w.warmup < 0) w.warmup = 0;
    clattn_tune_class cls;
    const clattn_tune_op *op = NULL;
    char why[256];
    if (!cls_text || clattn_tune_class_parse(cls_text, &op, &cls, why, sizeof why) != CLATTN_SUCCESS) {
        printf("error bad worker arguments\n");
        return CLI_USAGE;
    }
    clattn_tune_class_problem(op, &cls, &w.p);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cli_open_context(CMD, device, true, &w.ctx) != CLI_OK) {
        printf("error cannot create a context on the device\n");
        return CLI_FAILED;
    }
    const bool s2s_op = strcmp(w.p.operation, "seq2seq_additive") == 0;
    w.mods = s2s_op ? 0 : cls.mods;
    w.serving.layout = s2s_op ? -1 : cls.kv_layout;
    w.serving.kv_dtype = s2s_op ? -1 : cls.kv_dtype;
    const char *bad = s2s_op ? s2s_setup(&w) : setup(&w);
    if (bad) {
        printf("error %s\n", bad);
        return CLI_FAILED;
    }
    if (args.programs) {
        print_programs(&w, args.first);
    } else {
        printf("ready\n");
        tune_worker_serve(evaluate, &w);
    }
    free_setup(&w);
    s2s_free();
    clattn_context_free(w.ctx);
    return CLI_OK;
}
