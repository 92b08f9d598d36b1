// SPDX-License-Identifier: Apache-2.0
/* `clattn run sdpa`: one attention call on NumPy .npy files (so any framework can cross-check clattn), or on
 * seeded random inputs of a given shape, optionally compared with the double-precision reference. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "npy.h"
#include "check_tolerance.h"
#include "reference.h"
#include "run_common.h"
#include "run_serving.h"

#define CMD "run sdpa"

/* Everything one run owns, freed in one place. */
typedef struct run_data {
    npy_array q_npy, k_npy, v_npy;
    float *q, *k, *v, *mask, *out, *lse, *weights;
    uint8_t *bool_mask;
    int32_t *key_lengths;
    run_score_mods mods;
    run_mod_buffers mod_buffers;
    run_block_mask block_mask;
} run_data;

static void free_run(run_data *r) {
    npy_free(&r->q_npy);
    npy_free(&r->k_npy);
    npy_free(&r->v_npy);
    void *owned[] = {r->q, r->k, r->v, r->mask, r->out, r->lse, r->weights, r->bool_mask, r->key_lengths};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i) free(owned[i]);
    run_score_mods_free(&r->mods);
    run_mod_buffers_free(&r->mod_buffers);
    npy_free(&r->block_mask.array);
}

/* --block-mask and --block-size (run_load_block_mask) into the host descriptor. */
static int load_block_mask(const cli_command *cmd, clattn_sdpa_host_desc *d, run_data *r) {
    const int rc = run_load_block_mask(cmd, &r->block_mask);
    if (rc != CLI_OK || !r->block_mask.array.data) return rc;
    d->block_mask = r->block_mask.array.data;
    memcpy(d->block_mask_shape, r->block_mask.shape, sizeof d->block_mask_shape);
    d->block_mask_q = r->block_mask.bq;
    d->block_mask_k = r->block_mask.bk;
    return CLI_OK;
}

/* Reads a [B,H,L,D] float tensor. */
static int read_bhld(const char *path, const char *what, npy_array *a, float **data) {
    char err[512];
    if (npy_read(path, a, err, sizeof err) != 0) return cli_error(CMD, CLI_USAGE, "--%s %s: %s", what, path, err);
    if (a->ndim != 4)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected a 4-D [batch, heads, seq, head_dim] array, found %d-D",
                         what, path, a->ndim);
    if (a->dtype != NPY_F32 && a->dtype != NPY_F16)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected float32 or float16, found %s", what, path,
                         npy_dtype_name(a->dtype));
    *data = npy_to_f32(a, err, sizeof err);
    if (!*data) return cli_error(CMD, CLI_FAILED, "--%s %s: %s", what, path, err);
    return CLI_OK;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Compares out (and lse/weights) with the reference on the inputs as the device stored them. */
static double check_against_reference(const clattn_sdpa_host_desc *d, const run_data *r, double *worst_lse) {
    const size_t B = d->batch, Hq = d->q_heads, Hkv = d->kv_heads, Lq = d->q_len, Lk = d->kv_len;
    const size_t Dk = d->head_dim, Dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    size_t nq = B * Hq * Lq * Dk, nk = B * Hkv * Lk * Dk, nv = B * Hkv * Lk * Dv, no = B * Hq * Lq * Dv;
    float *q = malloc((nq + 1) * sizeof *q), *k = malloc((nk + 1) * sizeof *k), *v = malloc((nv + 1) * sizeof *v);
    double *out = calloc(no + 1, sizeof *out), *lse = calloc(B * Hq * Lq + 1, sizeof *lse);
    double worst = INFINITY;
    if (!q || !k || !v || !out || !lse) goto done;
    for (size_t i = 0; i < nq; ++i) q[i] = clattn_dtype_round(d->storage, r->q[i]);
    for (size_t i = 0; i < nk; ++i) k[i] = clattn_dtype_round(d->storage, r->k[i]);
    for (size_t i = 0; i < nv; ++i) v[i] = clattn_dtype_round(d->storage, r->v[i]);
    cla_ref_sdpa ref;
    memset(&ref, 0, sizeof ref);
    ref.q = cla_ref_dense(q, B, Hq, Lq, Dk);
    ref.k = cla_ref_dense(k, B, Hkv, Lk, Dk);
    ref.v = cla_ref_dense(v, B, Hkv, Lk, Dv);
    ref.scale = isnan(d->scale) ? 1.0 / sqrt((double)Dk) : d->scale;
    ref.causal = d->causal;
    ref.window_left = d->window_left;
    ref.window_right = d->window_right;
    ref.window_align = d->window_align;
    /* load_mask gave every size of mask_shape (none is 0). */
    size_t mst[4];
    const size_t *msz = d->mask_shape;
    run_mask_strides(msz, mst);
    if (d->mask) {
        ref.mask.data = d->mask;
        memcpy(ref.mask.size, msz, sizeof ref.mask.size);
        memcpy(ref.mask.stride, mst, sizeof mst);
    }
    if (d->bool_mask) {
        ref.bool_mask.data = d->bool_mask;
        memcpy(ref.bool_mask.size, msz, sizeof ref.bool_mask.size);
        memcpy(ref.bool_mask.stride, mst, sizeof mst);
    }
    if (d->block_mask) {
        ref.block_mask.data = d->block_mask;
        memcpy(ref.block_mask.size, d->block_mask_shape, sizeof ref.block_mask.size);
        run_mask_strides(d->block_mask_shape, ref.block_mask.stride);
        ref.block_mask.block_q = d->block_mask_q;
        ref.block_mask.block_k = d->block_mask_k;
    }
    ref.key_lengths = d->key_lengths;
    ref.softcap = d->softcap;
    ref.sinks = d->sinks;
    ref.alibi_slopes = d->alibi_slopes;
    ref.out = out;
    ref.lse = lse;
    if (cla_reference_sdpa(&ref) != 0) goto done;
    worst = support_max_error(r->out, out, no, false, NULL);
    *worst_lse = 0.0;
    if (r->lse)
        for (size_t i = 0; i < B * Hq * Lq; ++i) {
            double e = (isinf(lse[i]) && r->lse[i] == lse[i]) ? 0.0 : fabs((double)r->lse[i] - lse[i]);
            if (!(e <= *worst_lse)) *worst_lse = e;
        }
done:
    free(q);
    free(k);
    free(v);
    free(out);
    free(lse);
    return worst;
}

static int load_mask(const char *path, clattn_sdpa_host_desc *d, run_data *r) {
    run_mask m = {0};
    const size_t want[4] = {d->batch, d->q_heads, d->q_len, d->kv_len};
    int rc = run_load_mask(CMD, path, want, false, &m);
    r->mask = m.additive;
    r->bool_mask = m.bool_mask;
    if (rc != CLI_OK) return rc;
    memcpy(d->mask_shape, m.shape, sizeof m.shape);
    d->mask = r->mask;
    d->bool_mask = r->bool_mask;
    return CLI_OK;
}

/* The call's sizes (v_head_dim 0: the head dim). */
static void set_shape(clattn_sdpa_host_desc *d, size_t batch, size_t q_heads, size_t kv_heads, size_t q_len,
                      size_t kv_len, size_t head_dim, size_t v_head_dim) {
    d->batch = batch;
    d->q_heads = q_heads;
    d->kv_heads = kv_heads;
    d->q_len = q_len;
    d->kv_len = kv_len;
    d->head_dim = head_dim;
    d->v_head_dim = v_head_dim;
}

/* Options into the host descriptor; inputs from files or random. */
static int prepare(const cli_command *cmd, clattn_sdpa_host_desc *d, run_data *r) {
    const char *random = cli_value(cmd, "random");
    const char *qp = cli_value(cmd, "q"), *kp = cli_value(cmd, "k"), *vp = cli_value(cmd, "v");
    int rc;
    if (random) {
        if (qp || kp || vp) return cli_error(CMD, CLI_USAGE, "give either --random or --q/--k/--v, not both");
        size_t s[6];
        if (run_parse_sizes(random, s, 6, 1ull << 31) != 0)
            return cli_error(CMD, CLI_USAGE, "--random %s: expected B,Hq,Hkv,Lq,Lk,D (six sizes)", random);
        set_shape(d, s[0], s[1], s[2], s[3], s[4], s[5], 0);
        size_t nq = s[0] * s[1] * s[3] * s[5], nk = s[0] * s[2] * s[4] * s[5];
        r->q = malloc((nq + 1) * sizeof(float));
        r->k = malloc((nk + 1) * sizeof(float));
        r->v = malloc((nk + 1) * sizeof(float));
        if (!r->q || !r->k || !r->v) return cli_error(CMD, CLI_FAILED, "out of memory for --random %s", random);
        unsigned seed = 12345;
        for (size_t i = 0; i < nq; ++i) r->q[i] = support_random(&seed);
        for (size_t i = 0; i < nk; ++i) r->k[i] = support_random(&seed);
        for (size_t i = 0; i < nk; ++i) r->v[i] = support_random(&seed);
    } else {
        if (!qp || !kp || !vp) return cli_error(CMD, CLI_USAGE, "--q, --k and --v are required (or --random)");
        if ((rc = read_bhld(qp, "q", &r->q_npy, &r->q))) return rc;
        if ((rc = read_bhld(kp, "k", &r->k_npy, &r->k))) return rc;
        if ((rc = read_bhld(vp, "v", &r->v_npy, &r->v))) return rc;
        const size_t *qs = r->q_npy.shape, *ks = r->k_npy.shape, *vs = r->v_npy.shape;
        if (ks[0] != qs[0] || vs[0] != qs[0] || ks[3] != qs[3] || vs[1] != ks[1] || vs[2] != ks[2])
            return cli_error(CMD, CLI_USAGE,
                             "shapes do not fit: q [%zu,%zu,%zu,%zu], k [%zu,%zu,%zu,%zu], v [%zu,%zu,%zu,%zu] "
                             "(need equal batch, k and q head dims, v heads and length equal to k's)",
                             qs[0], qs[1], qs[2], qs[3], ks[0], ks[1], ks[2], ks[3], vs[0], vs[1], vs[2], vs[3]);
        set_shape(d, qs[0], qs[1], ks[1], qs[2], ks[2], qs[3], vs[3]);
    }
    const char *s;
    if ((s = cli_value(cmd, "dtype")) && (rc = cli_parse_dtype(CMD, s, &d->storage))) return rc;
    if ((s = cli_value(cmd, "causal")) && (rc = cli_parse_causal(CMD, s, &d->causal))) return rc;
    if ((s = cli_value(cmd, "impl")) && (rc = cli_parse_impl(CMD, s, &d->impl))) return rc;
    if ((s = cli_value(cmd, "window")) && (rc = cli_parse_window(CMD, s, &d->window_left, &d->window_right)))
        return rc;
    if ((s = cli_value(cmd, "window-align")) && (rc = cli_parse_window_align(CMD, s, &d->window_align))) return rc;
    if ((s = cli_value(cmd, "scale")) && (rc = cli_parse_scale(CMD, s, &d->scale))) return rc;
    if ((s = cli_value(cmd, "mask")) && (rc = load_mask(s, d, r))) return rc;
    if ((s = cli_value(cmd, "key-lengths"))) {
        if ((rc = run_load_key_lengths(CMD, s, d->batch, d->kv_len, true, &r->key_lengths))) return rc;
        d->key_lengths = r->key_lengths;
    }
    if ((rc = run_load_score_mods(cmd, d->q_heads, &r->mods))) return rc;
    d->softcap = r->mods.softcap;
    d->sinks = r->mods.sinks;
    d->alibi_slopes = r->mods.alibi_slopes;
    d->score_mod = cli_value(cmd, "score-mod");
    d->mask_mod = cli_value(cmd, "mask-mod");
    if ((s = cli_value(cmd, "mod-buffer")) && (rc = run_load_mod_buffers(CMD, s, &r->mod_buffers))) return rc;
    for (size_t i = 0; i < r->mod_buffers.count; ++i) {
        const npy_array *a = &r->mod_buffers.array[i];
        d->mod_buffers[i].name = r->mod_buffers.name[i];
        d->mod_buffers[i].data = a->data;
        d->mod_buffers[i].dtype = run_mod_dtype(a);
        d->mod_buffers[i].count = a->count;
    }
    if ((rc = load_block_mask(cmd, d, r))) return rc;
    /* The reference is C on doubles and cannot run OpenCL C. */
    if ((d->score_mod || d->mask_mod) && cli_flag(cmd, "check"))
        return cli_error(CMD, CLI_USAGE,
                         "--check cannot evaluate --score-mod/--mask-mod (OpenCL C); compare -o outputs with a run "
                         "of the built-in option they reproduce (--softcap, --alibi-slopes, --window, --causal, "
                         "--mask) instead");
    return CLI_OK;
}

static int run_sdpa(int argc, char **argv) {
    cli_option options[] = {
        {"q", "Q.npy", "queries [B, Hq, Lq, D] (packed: [total_q, Hq, D]), float32 or float16", NULL},
        {"k", "K.npy", "keys [B, Hkv, Lk, D] (packed: [total_k, Hkv, D])", NULL},
        {"v", "V.npy", "values [B, Hkv, Lk, Dv] (packed: [total_k, Hkv, Dv])", NULL},
        {"cu-seqlens-q", "CQ.npy", "int32 [B+1] offsets of packed queries' sequences (FlashAttention varlen)",
         NULL},
        {"cu-seqlens-k", "CK.npy", "int32 [B+1] offsets of packed keys' and values' sequences", NULL},
        {"k-cache", "KC.npy", "paged key cache [num_blocks, block_size, Hkv, D] (vLLM), instead of --k", NULL},
        {"v-cache", "VC.npy", "paged value cache [num_blocks, block_size, Hkv, Dv], instead of --v", NULL},
        {"block-table", "BT.npy", "int32 [B, max_blocks]: the cache's pages of each sequence", NULL},
        {"seqlens-k", "SK.npy", "int32 [B]: the keys of each sequence in the paged cache, or in dense --k/--v",
         NULL},
        {"kv-dtype", "TYPE", "K/V storage on the device: f32, f16, bf16, i8 or fp8 (quantized); default --dtype",
         NULL},
        {"random", "B,Hq,Hkv,Lq,Lk,D", "seeded random inputs in [-2, 2) instead of files", NULL},
        CLI_OPTION_MASK_FILE,
        CLI_OPTION_KEY_LENGTHS_FILE,
        CLI_OPTION_CAUSAL_ALIGN,
        CLI_OPTION_WINDOW,
        CLI_OPTION_WINDOW_ALIGN,
        CLI_OPTIONS_SCORE_MODS,
        CLI_OPTIONS_USER_MODS,
        {"block-mask", "BM.npy",
         "int32 flags [B, Hq, ceil(Lq/BQ), ceil(Lk/BK)] (size-1 dims broadcast): 0 skips the block, 2 spares it "
         "the mask-mod; packed and paged runs: [sequences, Hq, ceil(max_q/BQ), ceil(max_k/BK)], blocks counted "
         "within each sequence",
         NULL},
        {"block-size", "BQ[,BK]", "the block mask's block sizes in queries and keys (default 128)", NULL},
        {"scale", "S", "logit scale (default 1/sqrt(D))", NULL},
        {"dtype", "TYPE", "storage type on the device: f32 (default), f16 or bf16", NULL},
        {"impl", "IMPL", "fused (head dims up to 576), unfused or auto (default: unfused for wider heads)", NULL},
        {"out", "O.npy", "write the output [B, Hq, Lq, Dv] as float32 (also -o)", NULL},
        {"weights", "W.npy", "write the attention weights [B, Hq, Lq, Lk]", NULL},
        {"lse", "LSE.npy", "write the log-sum-exp of each row [B, Hq, Lq]", NULL},
        {"check", NULL, "compare with the double-precision reference and print the largest errors", NULL},
        CLI_OPTION_DEVICE,
    };
    cli_command cmd = {
        CMD,
        "Run one scaled dot-product attention, softmax(Q K^T * scale + mask) V, on .npy files or random "
        "inputs.",
        "(--q Q.npy --k K.npy --v V.npy | --random B,Hq,Hkv,Lq,Lk,D) [options] [-o O.npy]\n"
        "       clattn run sdpa --q Q.npy (--k K.npy --v V.npy [--seqlens-k SK.npy] | --k-cache KC.npy --v-cache "
        "VC.npy --block-table "
        "BT.npy --seqlens-k SK.npy)\n"
        "                       [--cu-seqlens-q CQ.npy] [--cu-seqlens-k CK.npy] [--kv-dtype TYPE] [options] [-o "
        "O.npy]",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;
    if (run_serving_requested(&cmd)) return run_serving(&cmd);

    clattn_sdpa_host_desc d;
    clattn_sdpa_host_desc_init(&d);
    run_data r;
    memset(&r, 0, sizeof r);
    clattn_context *ctx = NULL;
    rc = prepare(&cmd, &d, &r);
    if (rc == CLI_OK && !cli_value(&cmd, "out") && !cli_flag(&cmd, "check") && !cli_value(&cmd, "random"))
        rc = cli_error(CMD, CLI_USAGE, "nothing to do: give -o O.npy, --check, or both");
    if (rc == CLI_OK) rc = cli_open_context(CMD, cli_value(&cmd, "device"), false, &ctx);
    const size_t Dv = d.v_head_dim ? d.v_head_dim : d.head_dim;
    const size_t no = d.batch * d.q_heads * d.q_len * Dv, nrows = d.batch * d.q_heads * d.q_len;
    if (rc == CLI_OK) {
        r.out = malloc((no + 1) * sizeof(float));
        if (cli_value(&cmd, "lse") || cli_flag(&cmd, "check")) r.lse = malloc((nrows + 1) * sizeof(float));
        if (cli_value(&cmd, "weights")) r.weights = malloc((nrows * d.kv_len + 1) * sizeof(float));
        if (!r.out || (cli_value(&cmd, "lse") && !r.lse) || (cli_value(&cmd, "weights") && !r.weights))
            rc = cli_error(CMD, CLI_FAILED, "out of host memory for the outputs");
    }
    double elapsed = 0.0;
    if (rc == CLI_OK) {
        d.lse = r.lse;
        d.weights = r.weights;
        double t0 = seconds_now();
        clattn_status st = clattn_sdpa_host(ctx, &d, r.q, r.k, r.v, r.out);
        elapsed = seconds_now() - t0;
        if (st != CLATTN_SUCCESS) {
            rc = cli_report_status(CMD, ctx, st, "attention");
            if (cli_is_input_error(st)) rc = CLI_USAGE;
        }
    }
    /* Outputs are written only after the whole call succeeded, each atomically. */
    const char *path;
    size_t oshape[4] = {d.batch, d.q_heads, d.q_len, Dv};
    size_t wshape[4] = {d.batch, d.q_heads, d.q_len, d.kv_len};
    if (rc == CLI_OK && (path = cli_value(&cmd, "weights")))
        rc = run_write_npy(CMD, path, "weights", 4, wshape, r.weights);
    if (rc == CLI_OK && (path = cli_value(&cmd, "lse"))) rc = run_write_npy(CMD, path, "lse", 3, oshape, r.lse);
    if (rc == CLI_OK && (path = cli_value(&cmd, "out"))) rc = run_write_npy(CMD, path, "output", 4, oshape, r.out);
    if (rc == CLI_OK) {
        clattn_device_info info;
        clattn_context_device_info(ctx, &info);
        printf("sdpa B=%zu Hq=%zu Hkv=%zu Lq=%zu Lk=%zu D=%zu Dv=%zu %s on %s: %.3f s including transfers "
               "(and compilation on a cold cache)\n",
               d.batch, d.q_heads, d.kv_heads, d.q_len, d.kv_len, d.head_dim, Dv, clattn_dtype_name(d.storage),
               info.name, elapsed);
        if (cli_flag(&cmd, "check")) {
            double worst_lse = 0.0;
            double worst = check_against_reference(&d, &r, &worst_lse);
            printf("largest difference from the double-precision reference: out %.3g, lse %.3g\n", worst,
                   worst_lse);
            const double tol = check_sdpa_tolerance(d.kv_len, d.storage);
            if (!(worst <= tol))
                rc = cli_error(CMD, CLI_FAILED,
                               "the output differs from the reference by "
                               "%.3g (tolerance %.3g)",
                               worst, tol);
        }
    }
    clattn_context_free(ctx);
    free_run(&r);
    return rc;
}

int cmd_run(int argc, char **argv) {
    static const cli_subcommand operations[] = {
        {"sdpa", "scaled dot-product attention", run_sdpa},
        {"mha", "multi-head attention with its projections (self or cross)", cmd_run_mha},
        {"additive", "additive (Bahdanau) attention of a seq2seq decoder", cmd_run_additive},
        {"luong", "multiplicative (Luong) attention: dot, general or concat scores", cmd_run_luong},
    };
    return cli_dispatch("run", "operation", operations, sizeof operations / sizeof operations[0], argc, argv);
}
