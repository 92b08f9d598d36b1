// SPDX-License-Identifier: Apache-2.0
/* `clattn run additive` and `clattn run luong`: one seq2seq attention call (Bahdanau's additive score, or Luong's
 * dot, general or concat score) on NumPy .npy files or on seeded random inputs, optionally compared with the
 * double-precision reference. Sequences are [B, L, width] (or [L, width] for one batch item), weights row-major
 * multiplying from the right, as clattn_seq2seq_weights_host describes them. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"
#include "check_tolerance.h"
#include "reference_seq2seq.h"
#include "run_common.h"

/* Everything one run owns, freed in one place. */
typedef struct s2s_run {
    const char *cmd;
    clattn_score score;
    size_t B, Lq, Lk, Dq, Dk, Dv, A;
    clattn_dtype storage;
    float *query, *keys, *values, *w_q, *w_k, *w, *v, *bias, *mask, *context, *weights;
    uint8_t *bool_mask;
    size_t mask_shape[4]; /* the --mask's sizes as [B|1, 1, Lq|1, Lk|1] */
    int32_t *key_lengths;
} s2s_run;

static void free_run(s2s_run *r) {
    float *all[] = {r->query, r->keys, r->values, r->w_q,     r->w_k,    r->w,
                    r->v,     r->bias, r->mask,   r->context, r->weights};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) free(all[i]);
    free(r->bool_mask);
    free(r->key_lengths);
}

/* Reads a float array whose shape, padded on the left with ones to `nd` dims, must match `want` where want is not
 * 0; the actual sizes go to `got`. */
static int read_array(const s2s_run *r, const char *opt, const char *path, int nd, const size_t *want, size_t *got,
                      float **data) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0)
        return cli_error(r->cmd, CLI_USAGE, "--%s %s: %s", opt, path, err);
    int rc = CLI_OK;
    if (a.ndim < 1 || a.ndim > nd) {
        rc = cli_error(r->cmd, CLI_USAGE, "--%s %s: expected at most %d dimensions, found %d", opt, path, nd,
                       a.ndim);
    } else {
        for (int i = 0; i < nd; ++i) got[i] = i < nd - a.ndim ? 1 : a.shape[i - (nd - a.ndim)];
        for (int i = 0; i < nd && rc == CLI_OK; ++i)
            if (want[i] && got[i] != want[i])
                rc = cli_error(r->cmd, CLI_USAGE, "--%s %s: dimension %d is %zu but must be %zu", opt, path, i,
                               got[i], want[i]);
    }
    if (rc == CLI_OK && !(*data = npy_to_f32(&a, err, sizeof err)))
        rc = cli_error(r->cmd, CLI_USAGE, "--%s %s: %s (use float32 or float16)", opt, path, err);
    npy_free(&a);
    return rc;
}

/* n random values in [-2, 2) times `scale` (weights get 1/sqrt(fan-in), so that tanh is not saturated). */
static float *random_array(size_t n, float scale, unsigned *seed) {
    return support_random_array(n, scale, CLATTN_DTYPE_F32, seed);
}

static bool hidden(clattn_score s) {
    return s == CLATTN_SCORE_ADDITIVE || s == CLATTN_SCORE_CONCAT;
}

static int load_random(s2s_run *r, const char *spec) {
    size_t s[6];
    if (run_parse_sizes(spec, s, 6, 1ull << 28) != 0)
        return cli_error(r->cmd, CLI_USAGE,
                         "--random %s: expected B,Lq,Lk,Dq,Dk,A (six sizes; A is ignored by dot "
                         "and general)",
                         spec);
    r->B = s[0];
    r->Lq = s[1];
    r->Lk = s[2];
    r->Dq = s[3];
    r->Dk = r->Dv = s[4];
    r->A = hidden(r->score) ? s[5] : 0;
    if (r->score == CLATTN_SCORE_DOT && r->Dq != r->Dk)
        return cli_error(r->cmd, CLI_USAGE, "--random: the dot score needs Dq == Dk");
    unsigned seed = 12345;
    const float sq = 1.0f / sqrtf((float)(r->Dq ? r->Dq : 1)), sk = 1.0f / sqrtf((float)(r->Dk ? r->Dk : 1));
    r->query = random_array(r->B * r->Lq * r->Dq, 1.0f, &seed);
    r->keys = random_array(r->B * r->Lk * r->Dk, 1.0f, &seed);
    bool ok = r->query && r->keys;
    if (r->score == CLATTN_SCORE_ADDITIVE) {
        r->w_q = random_array(r->Dq * r->A, sq, &seed);
        r->w_k = random_array(r->Dk * r->A, sk, &seed);
        r->bias = random_array(r->A, 0.5f, &seed);
        ok = ok && r->w_q && r->w_k && r->bias;
    } else if (r->score == CLATTN_SCORE_CONCAT) {
        r->w = random_array((r->Dq + r->Dk) * r->A, sq, &seed);
        ok = ok && r->w;
    } else if (r->score == CLATTN_SCORE_GENERAL) {
        r->w = random_array(r->Dq * r->Dk, sq, &seed);
        ok = ok && r->w;
    }
    if (hidden(r->score)) ok = ok && (r->v = random_array(r->A, 1.0f / sqrtf((float)(r->A ? r->A : 1)), &seed));
    return ok ? CLI_OK : cli_error(r->cmd, CLI_FAILED, "out of host memory for --random %s", spec);
}

/* Inputs and weights from files; the widths come from the queries, keys, values and weights. */
static int load_files(s2s_run *r, const cli_command *cmd) {
    const char *qp = cli_value(cmd, "query"), *kp = cli_value(cmd, "keys"), *vp = cli_value(cmd, "values");
    if (!qp || !kp) return cli_error(r->cmd, CLI_USAGE, "--query and --keys are required (or --random)");
    size_t want[3] = {0, 0, 0}, got[3];
    int rc = read_array(r, "query", qp, 3, want, got, &r->query);
    if (rc) return rc;
    r->B = got[0];
    r->Lq = got[1];
    r->Dq = got[2];
    want[0] = r->B;
    if ((rc = read_array(r, "keys", kp, 3, want, got, &r->keys))) return rc;
    r->Lk = got[1];
    r->Dk = r->Dv = got[2];
    if (vp) {
        want[1] = r->Lk;
        if ((rc = read_array(r, "values", vp, 3, want, got, &r->values))) return rc;
        r->Dv = got[2];
    }
    /* The weights the score needs, and none it does not use. */
    const char *names[] = {"w-q", "w-k", "w", "v", "bias"};
    float **slots[] = {&r->w_q, &r->w_k, &r->w, &r->v, &r->bias};
    bool needed[5] = {false}, allowed[5] = {false};
    const bool add = r->score == CLATTN_SCORE_ADDITIVE;
    needed[0] = needed[1] = allowed[0] = allowed[1] = add;
    needed[2] = allowed[2] = r->score == CLATTN_SCORE_GENERAL || r->score == CLATTN_SCORE_CONCAT;
    needed[3] = allowed[3] = hidden(r->score);
    allowed[4] = add;
    /* attn_dim comes from the first weight that has it. */
    r->A = 0;
    for (int i = 0; i < 5; ++i) {
        const char *path = cli_value(cmd, names[i]);
        if (!path && needed[i]) return cli_error(r->cmd, CLI_USAGE, "--%s is required for this score", names[i]);
        if (path && !allowed[i]) return cli_error(r->cmd, CLI_USAGE, "--%s is not used by this score", names[i]);
        if (!path) continue;
        size_t w2[2] = {0, r->A}, g2[2];
        if (i == 0) w2[0] = r->Dq;
        if (i == 1) w2[0] = r->Dk;
        if (i == 2) {
            w2[0] = r->score == CLATTN_SCORE_GENERAL ? r->Dq : r->Dq + r->Dk;
            w2[1] = r->score == CLATTN_SCORE_GENERAL ? r->Dk : r->A;
        }
        if (i >= 3) w2[0] = 1;
        if ((rc = read_array(r, names[i], path, 2, w2, g2, slots[i]))) return rc;
        if (hidden(r->score) && !r->A) r->A = g2[1];
    }
    if (r->score == CLATTN_SCORE_DOT && r->Dq != r->Dk)
        return cli_error(r->cmd, CLI_USAGE, "the dot score needs queries and keys of equal width, not %zu and %zu",
                         r->Dq, r->Dk);
    return CLI_OK;
}

static int load_mask_and_lengths(s2s_run *r, const cli_command *cmd) {
    const char *path = cli_value(cmd, "mask");
    if (path) {
        run_mask m = {0};
        const size_t want[4] = {r->B, 1, r->Lq, r->Lk};
        int rc = run_load_mask(r->cmd, path, want, true, &m);
        r->mask = m.additive;
        r->bool_mask = m.bool_mask;
        memcpy(r->mask_shape, m.shape, sizeof m.shape);
        if (rc) return rc;
    }
    if ((path = cli_value(cmd, "key-lengths")))
        return run_load_key_lengths(r->cmd, path, r->B, r->Lk, false, &r->key_lengths);
    return CLI_OK;
}

/* A device buffer holding n floats converted to `dt` (NULL host: uninitialised), or NULL after printing why. */
static cl_mem upload(const s2s_run *r, clattn_context *ctx, const float *host, size_t n, clattn_dtype dt,
                     const char *what) {
    cl_int err = CL_SUCCESS;
    cl_mem m = support_buffer_storage(ctx, host, n, dt, &err);
    if (!m) cli_error(r->cmd, CLI_FAILED, "allocating %s on the device failed: %d", what, err);
    return m;
}

static int download(const s2s_run *r, clattn_context *ctx, cl_mem m, float *host, size_t n, clattn_dtype dt) {
    cl_int err = support_read_storage(ctx, m, host, n, dt);
    return err == CL_SUCCESS ? CLI_OK : cli_error(r->cmd, CLI_FAILED, "reading the results back failed: %d", err);
}

/* The device run: buffers, weights, one call, results back. */
static int run_device(s2s_run *r, clattn_context *ctx, bool want_weights) {
    const clattn_dtype dt = r->storage;
    const size_t nq = r->B * r->Lq * r->Dq, nk = r->B * r->Lk * r->Dk, nv = r->B * r->Lk * r->Dv;
    const size_t no = r->B * r->Lq * r->Dv, nw = r->B * r->Lq * r->Lk;
    r->context = malloc((no + 1) * sizeof(float));
    if (want_weights) r->weights = malloc((nw + 1) * sizeof(float));
    if (!r->context || (want_weights && !r->weights)) return cli_error(r->cmd, CLI_FAILED, "out of host memory");
    cl_mem bq = upload(r, ctx, r->query, nq, dt, "the queries"), bk = upload(r, ctx, r->keys, nk, dt, "the keys");
    cl_mem bv = r->values ? upload(r, ctx, r->values, nv, dt, "the values") : NULL;
    cl_mem bo = upload(r, ctx, NULL, no, dt, "the context");
    cl_mem bw = want_weights ? upload(r, ctx, NULL, nw, CLATTN_DTYPE_F32, "the weights") : NULL;
    size_t mask_strides[4];
    const size_t nm = run_mask_strides(r->mask_shape, mask_strides);
    cl_int err = CL_SUCCESS;
    cl_mem bm = r->mask        ? upload(r, ctx, r->mask, nm, CLATTN_DTYPE_F32, "the mask")
                : r->bool_mask ? support_buffer(ctx, r->bool_mask, nm, &err)
                               : NULL;
    if (r->bool_mask && !bm)
        cli_error(r->cmd, CLI_FAILED, "allocating %s on the device failed: %d", "the mask", err);
    cl_mem bkl = r->key_lengths ? support_buffer(ctx, r->key_lengths, r->B * sizeof(int32_t), &err) : NULL;
    if (r->key_lengths && !bkl)
        cli_error(r->cmd, CLI_FAILED, "allocating %s on the device failed: %d", "the key lengths", err);
    int rc = CLI_OK;
    if (!bq || !bk || !bo || (r->values && !bv) || (want_weights && !bw) || ((r->mask || r->bool_mask) && !bm) ||
        (r->key_lengths && !bkl))
        rc = CLI_FAILED;
    clattn_seq2seq_weights *sw = NULL;
    if (rc == CLI_OK) {
        clattn_seq2seq_config cfg = {r->score, r->Dq, r->Dk, r->A};
        clattn_seq2seq_weights_host h = {r->w_q, r->w_k, r->w, r->v, r->bias};
        clattn_status st = clattn_seq2seq_weights_create(ctx, &cfg, &h, &sw);
        if (st != CLATTN_SUCCESS) rc = cli_report_status(r->cmd, ctx, st, "uploading the weights");
    }
    if (rc == CLI_OK) {
        clattn_seq2seq_desc d;
        clattn_seq2seq_desc_init(&d);
        if (bm) {
            d.mask = clattn_tensor_seq(bm, r->mask ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_BOOL, r->mask_shape[0],
                                       r->mask_shape[2], r->mask_shape[3]);
        }
        d.key_lengths = bkl;
        if (bw) d.weights = clattn_tensor_seq(bw, CLATTN_DTYPE_F32, r->B, r->Lq, r->Lk);
        clattn_tensor q = clattn_tensor_seq(bq, dt, r->B, r->Lq, r->Dq),
                      k = clattn_tensor_seq(bk, dt, r->B, r->Lk, r->Dk);
        clattn_tensor v = clattn_tensor_seq(bv, dt, r->B, r->Lk, r->Dv),
                      o = clattn_tensor_seq(bo, dt, r->B, r->Lq, r->Dv);
        clattn_status st = clattn_seq2seq_attention(ctx, sw, &d, &q, &k, bv ? &v : NULL, &o, NULL, 0, NULL, NULL);
        if (st != CLATTN_SUCCESS) {
            rc = cli_report_status(r->cmd, ctx, st, "attention");
            if (cli_is_input_error(st)) rc = CLI_USAGE;
        }
    }
    if (rc == CLI_OK) rc = download(r, ctx, bo, r->context, no, dt);
    if (rc == CLI_OK && bw) rc = download(r, ctx, bw, r->weights, nw, CLATTN_DTYPE_F32);
    clattn_seq2seq_weights_free(sw);
    const cl_mem all[] = {bq, bk, bv, bo, bw, bm, bkl};
    cli_release_buffers(all, sizeof all / sizeof all[0]);
    return rc;
}

/* The largest difference from the reference on the inputs as the device stored them, relative to max(1, |ref|). */
static double check(const s2s_run *r, double *worst_weights) {
    const size_t nq = r->B * r->Lq * r->Dq, nk = r->B * r->Lk * r->Dk, nv = r->B * r->Lk * r->Dv;
    const size_t no = r->B * r->Lq * r->Dv, nw = r->B * r->Lq * r->Lk;
    float *q = malloc((nq + 1) * sizeof *q), *k = malloc((nk + 1) * sizeof *k), *v = malloc((nv + 1) * sizeof *v);
    double *out = calloc(no + 1, sizeof *out), *w = calloc(nw + 1, sizeof *w);
    double worst = INFINITY;
    *worst_weights = 0.0;
    if (q && k && v && out && w) {
        memcpy(q, r->query, nq * sizeof *q);
        memcpy(k, r->keys, nk * sizeof *k);
        if (r->values) memcpy(v, r->values, nv * sizeof *v);
        support_round_array(q, nq, r->storage);
        support_round_array(k, nk, r->storage);
        support_round_array(v, r->values ? nv : 0, r->storage);
        cla_ref_seq2seq a = {r->score,
                             r->B,
                             r->Lq,
                             r->Lk,
                             r->Dq,
                             r->Dk,
                             r->Dv,
                             r->A,
                             q,
                             k,
                             r->values ? v : NULL,
                             r->w_q,
                             r->w_k,
                             r->w,
                             r->v,
                             r->bias,
                             r->mask,
                             r->bool_mask,
                             r->mask_shape[0],
                             r->key_lengths,
                             out,
                             w,
                             r->mask_shape[2],
                             r->mask_shape[3]};
        if (cla_reference_seq2seq(&a) == 0) {
            worst = support_max_error(r->context, out, no, true, NULL);
            if (r->weights) *worst_weights = support_max_error(r->weights, w, nw, false, NULL);
        }
    }
    free(q);
    free(k);
    free(v);
    free(out);
    free(w);
    return worst;
}

static int write_output(const s2s_run *r, const char *path, const char *what, size_t width, const float *data) {
    const size_t shape[3] = {r->B, r->Lq, width};
    return run_write_npy(r->cmd, path, what, 3, shape, data);
}

static int run_seq2seq(const char *name, bool luong, int argc, char **argv) {
    cli_option options[] = {
        {"score", "KIND", "dot, general or concat (luong only)", NULL},
        {"query", "Q.npy", "queries (decoder states) [B, Lq, Dq] or [Lq, Dq], float32 or float16", NULL},
        {"keys", "K.npy", "keys (encoder states) [B, Lk, Dk]", NULL},
        {"values", "V.npy", "values [B, Lk, Dv] (default: the keys)", NULL},
        {"w-q", "WQ.npy", "additive: W_q [Dq, A]", NULL},
        {"w-k", "WK.npy", "additive: W_k [Dk, A]", NULL},
        {"w", "W.npy", "general: W [Dq, Dk]; concat: W [Dq + Dk, A]", NULL},
        {"v", "V.npy", "additive and concat: v [A]", NULL},
        {"bias", "B.npy", "additive: bias [A] (optional)", NULL},
        {"random", "B,Lq,Lk,Dq,Dk,A", "seeded random inputs and weights instead of files", NULL},
        {"mask", "M.npy",
         "float32 additive or bool mask that broadcasts to [B, Lq, Lk] (rank 1-3, or [B, 1, Lq, Lk])", NULL},
        CLI_OPTION_KEY_LENGTHS_FILE,
        {"dtype", "TYPE", "storage type of queries, keys, values and context: f32 (default), f16 or bf16", NULL},
        {"out", "O.npy", "write the context [B, Lq, Dv] as float32 (also -o)", NULL},
        {"weights-out", "W.npy", "write the attention weights [B, Lq, Lk]", NULL},
        {"check", NULL, "compare with the double-precision reference", NULL},
        CLI_OPTION_DEVICE,
    };
    cli_command cmd = {name,
                       luong
                           ? "Luong (multiplicative) attention of a seq2seq decoder: score q.k (dot), q W k "
                             "(general) or v.tanh([q; k] W) (concat), softmax over the keys, weighted sum."
                           : "Bahdanau (additive) attention of a seq2seq decoder: score v.tanh(q W_q + k W_k + b), "
                             "softmax over the keys, weighted sum of the values.",
                       luong ? "--score dot|general|concat (--query Q.npy --keys K.npy [weights] | --random "
                               "B,Lq,Lk,Dq,Dk,A) [options]"
                             : "(--query Q.npy --keys K.npy --w-q WQ.npy --w-k WK.npy --v V.npy | --random "
                               "B,Lq,Lk,Dq,Dk,A) [options]",
                       luong ? options : options + 1, sizeof options / sizeof options[0] - (luong ? 0 : 1)};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;

    s2s_run r;
    memset(&r, 0, sizeof r);
    r.cmd = name;
    r.score = CLATTN_SCORE_ADDITIVE;
    const char *s;
    if (luong) {
        s = cli_value(&cmd, "score");
        if (!s) return cli_error(name, CLI_USAGE, "--score dot|general|concat is required");
        if (strcmp(s, "dot") == 0)
            r.score = CLATTN_SCORE_DOT;
        else if (strcmp(s, "general") == 0)
            r.score = CLATTN_SCORE_GENERAL;
        else if (strcmp(s, "concat") == 0)
            r.score = CLATTN_SCORE_CONCAT;
        else
            return cli_error(name, CLI_USAGE, "--score %s: expected dot, general or concat", s);
    }
    const char *random = cli_value(&cmd, "random");
    static const char *file_opts[] = {"query", "keys", "values", "w-q", "w-k", "w", "v", "bias"};
    for (size_t i = 0; random && i < sizeof file_opts / sizeof file_opts[0]; ++i)
        if (cli_value(&cmd, file_opts[i]))
            return cli_error(name, CLI_USAGE, "give either --random or input files, not both (--%s)", file_opts[i]);
    rc = random ? load_random(&r, random) : load_files(&r, &cmd);
    if (rc == CLI_OK) rc = load_mask_and_lengths(&r, &cmd);
    if (rc == CLI_OK && (s = cli_value(&cmd, "dtype"))) rc = cli_parse_dtype(name, s, &r.storage);
    if (rc == CLI_OK && !cli_value(&cmd, "out") && !cli_value(&cmd, "weights-out") && !cli_flag(&cmd, "check") &&
        !random)
        rc = cli_error(name, CLI_USAGE, "nothing to do: give -o O.npy, --weights-out W.npy or --check");
    clattn_context *ctx = NULL;
    if (rc == CLI_OK) rc = cli_open_context(name, cli_value(&cmd, "device"), false, &ctx);
    const bool want_weights = cli_value(&cmd, "weights-out") || cli_flag(&cmd, "check");
    if (rc == CLI_OK) rc = run_device(&r, ctx, want_weights);
    /* Outputs are written only after the whole call succeeded, each atomically. */
    const char *path;
    if (rc == CLI_OK && (path = cli_value(&cmd, "weights-out")))
        rc = write_output(&r, path, "the weights", r.Lk, r.weights);
    if (rc == CLI_OK && (path = cli_value(&cmd, "out")))
        rc = write_output(&r, path, "the context", r.Dv, r.context);
    if (rc == CLI_OK) {
        static const char *scores[] = {"additive", "dot", "general", "concat"};
        printf("%s attention B=%zu Lq=%zu Lk=%zu Dq=%zu Dk=%zu Dv=%zu A=%zu %s\n", scores[r.score], r.B, r.Lq, r.Lk,
               r.Dq, r.Dk, r.Dv, r.A, clattn_dtype_name(r.storage));
        if (cli_flag(&cmd, "check")) {
            double worst_w = 0.0, worst = check(&r, &worst_w);
            const double tol =
                2.0 * check_seq2seq_rel_tolerance(r.Lk, r.A, r.Dq, r.Dk) + check_storage_abs_tolerance(r.storage);
            printf("largest difference from the double-precision reference: context %.3g (relative), weights "
                   "%.3g\n",
                   worst, worst_w);
            if (!(worst <= tol) || !(worst_w <= tol))
                rc = cli_error(name, CLI_FAILED, "the results differ from the reference by more than %.3g", tol);
        }
    }
    clattn_context_free(ctx);
    free_run(&r);
    return rc;
}

int cmd_run_additive(int argc, char **argv) {
    return run_seq2seq("run additive", false, argc, argv);
}

int cmd_run_luong(int argc, char **argv) {
    return run_seq2seq("run luong", true, argc, argv);
}
