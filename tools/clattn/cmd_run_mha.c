// SPDX-License-Identifier: Apache-2.0
/* `clattn run mha`: one multi-head attention layer (projections, attention, output projection, optional residual)
 * on NumPy .npy activations and weights, or on seeded random ones, optionally compared with the double-precision
 * reference. Weights multiply from the right (x @ W), as the library takes them. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"
#include "check_tolerance.h"
#include "reference_mha.h"
#include "run_common.h"

#define CMD "run mha"

/* The weight arrays, in the order of their options. */
enum { W_QKV, B_QKV, W_Q, W_K, W_V, B_Q, B_K, B_V, W_O, B_O, W_COUNT };
static const char *const weight_option[W_COUNT] = {"w-qkv", "b-qkv", "w-q", "w-k", "w-v",
                                                   "b-q",   "b-k",   "b-v", "w-o", "b-o"};

/* Everything one run owns, freed in one place. */
typedef struct run_data {
    size_t batch, q_len, mem_len; /* mem_len: rows of the memory (cross-attention) */
    int x_ndim;
    clattn_mha_config cfg; /* resolved */
    float *x, *memory, *w[W_COUNT], *mask, *out;
    size_t mask_shape[4];
    uint8_t *bool_mask;
    int32_t *key_lengths;
    clattn_mha_weights_host host;
    run_score_mods mods;
    run_mod_buffers mod_buffers;
    const char *score_mod, *mask_mod;
} run_data;

static void free_run(run_data *r) {
    free(r->x);
    free(r->memory);
    for (int i = 0; i < W_COUNT; ++i) free(r->w[i]);
    free(r->mask);
    free(r->out);
    free(r->bool_mask);
    free(r->key_lengths);
    run_score_mods_free(&r->mods);
    run_mod_buffers_free(&r->mod_buffers);
}

static int parse_size(const char *opt, const char *text, size_t *out) {
    if (text[0] == '-' || run_parse_sizes(text, out, 1, 1ull << 31) != 0)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected a non-negative integer", opt, text);
    return CLI_OK;
}

/* Reads a float array of `ndim_min`..`ndim` dimensions into shape[ndim] (missing leading ones are 1); *found, if
 * not NULL, receives the file's own number of dimensions. */
static int read_floats(const char *opt, const char *path, int ndim_min, int ndim, size_t *shape, float **data,
                       int *found) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0) return cli_error(CMD, CLI_USAGE, "--%s %s: %s", opt, path, err);
    int rc = CLI_OK;
    if (a.ndim < ndim_min || a.ndim > ndim) {
        rc = cli_error(CMD, CLI_USAGE, "--%s %s: expected a %d-D array, found %d-D", opt, path, ndim, a.ndim);
    } else if (a.dtype != NPY_F32 && a.dtype != NPY_F16 && a.dtype != NPY_F64) {
        rc = cli_error(CMD, CLI_USAGE, "--%s %s: expected float32, float16 or float64, found %s", opt, path,
                       npy_dtype_name(a.dtype));
    } else {
        for (int i = 0; i < ndim; ++i) shape[i] = 1;
        for (int i = 0; i < a.ndim; ++i) shape[ndim - a.ndim + i] = a.shape[i];
        if (found) *found = a.ndim;
        *data = npy_to_f32(&a, err, sizeof err);
        if (!*data) rc = cli_error(CMD, CLI_FAILED, "--%s %s: %s", opt, path, err);
    }
    npy_free(&a);
    return rc;
}

static int expect_shape(const char *opt, const size_t *got, const size_t *want, int ndim) {
    for (int i = 0; i < ndim; ++i)
        if (got[i] != want[i]) {
            char g[96] = "", w[96] = "";
            for (int k = 0; k < ndim; ++k) {
                snprintf(g + strlen(g), sizeof g - strlen(g), "%s%zu", k ? ", " : "", got[k]);
                snprintf(w + strlen(w), sizeof w - strlen(w), "%s%zu", k ? ", " : "", want[k]);
            }
            return cli_error(CMD, CLI_USAGE, "--%s: shape [%s] does not fit the layer, which needs [%s]", opt, g,
                             w);
        }
    return CLI_OK;
}

/* Reads the weight files, derives the head widths from them and checks every shape. */
static int load_weights(const cli_command *cmd, run_data *r) {
    clattn_mha_config *c = &r->cfg;
    const char *paths[W_COUNT];
    for (int i = 0; i < W_COUNT; ++i) paths[i] = cli_value(cmd, weight_option[i]);
    const bool packed = paths[W_QKV] != NULL;
    if (packed && (paths[W_Q] || paths[W_K] || paths[W_V] || paths[B_Q] || paths[B_K] || paths[B_V]))
        return cli_error(CMD, CLI_USAGE, "give --w-qkv (and --b-qkv) or --w-q/--w-k/--w-v (and their biases)");
    if (!packed && (!paths[W_Q] || !paths[W_K] || !paths[W_V]))
        return cli_error(CMD, CLI_USAGE, "the weights are needed: --w-qkv, or all of --w-q, --w-k and --w-v");
    if (!paths[W_O]) return cli_error(CMD, CLI_USAGE, "--w-o (the output projection) is needed");
    if (!packed && paths[B_QKV]) return cli_error(CMD, CLI_USAGE, "--b-qkv goes with --w-qkv");
    size_t shape[W_COUNT][2];
    int rc;
    for (int i = 0; i < W_COUNT; ++i) {
        bool bias = i == B_QKV || i == B_Q || i == B_K || i == B_V || i == B_O;
        if (paths[i] &&
            (rc = read_floats(weight_option[i], paths[i], bias ? 1 : 2, bias ? 1 : 2, shape[i], &r->w[i], NULL)))
            return rc;
    }
    const size_t H = c->heads, Hkv = c->kv_heads;
    /* The head widths: from the options, else from the weights (a packed matrix with d_v = d_k). */
    if (!c->head_dim) {
        size_t cols = packed ? shape[W_QKV][1] : shape[W_Q][1], parts = packed ? H + 2 * Hkv : H;
        if (cols % parts != 0 || cols == 0)
            return cli_error(CMD, CLI_USAGE, "--%s has %zu columns, not a multiple of %zu heads; give --head-dim",
                             packed ? "w-qkv" : "w-q", cols, parts);
        c->head_dim = cols / parts;
    }
    if (!c->v_head_dim) {
        if (packed) {
            size_t rest = shape[W_QKV][1] > (H + Hkv) * c->head_dim ? shape[W_QKV][1] - (H + Hkv) * c->head_dim : 0;
            c->v_head_dim = rest % Hkv == 0 ? rest / Hkv : 0;
        } else {
            c->v_head_dim = shape[W_V][1] % Hkv == 0 ? shape[W_V][1] / Hkv : 0;
        }
        if (!c->v_head_dim)
            return cli_error(CMD, CLI_USAGE, "cannot derive the value head width; give --v-head-dim");
    }
    const size_t nq = H * c->head_dim, nk = Hkv * c->head_dim, nv = Hkv * c->v_head_dim;
    const size_t want[W_COUNT][2] = {{c->d_model, nq + nk + nv},
                                     {1, nq + nk + nv},
                                     {c->d_model, nq},
                                     {c->kv_d_model, nk},
                                     {c->kv_d_model, nv},
                                     {1, nq},
                                     {1, nk},
                                     {1, nv},
                                     {H * c->v_head_dim, c->d_model},
                                     {1, c->d_model}};
    for (int i = 0; i < W_COUNT; ++i) {
        bool bias = i == B_QKV || i == B_Q || i == B_K || i == B_V || i == B_O;
        if (paths[i] && (rc = expect_shape(weight_option[i], shape[i], bias ? &want[i][1] : want[i], bias ? 1 : 2)))
            return rc;
    }
    return CLI_OK;
}

/* Seeded random activations and weights (with biases), the weights scaled by 1/sqrt(fan-in). */
static int make_random(const cli_command *cmd, run_data *r, size_t d_model) {
    clattn_mha_config *c = &r->cfg;
    if (!c->head_dim) {
        if (d_model % c->heads)
            return cli_error(CMD, CLI_USAGE, "d_model %zu is not a multiple of --heads %zu; give --head-dim",
                             d_model, c->heads);
        c->head_dim = d_model / c->heads;
    }
    if (!c->v_head_dim) c->v_head_dim = c->head_dim;
    const size_t H = c->heads, Hkv = c->kv_heads, nq = H * c->head_dim, nk = Hkv * c->head_dim,
                 nv = Hkv * c->v_head_dim;
    const bool packed = cli_flag(cmd, "packed");
    if (packed && c->kv_d_model != c->d_model)
        return cli_error(CMD, CLI_USAGE, "--packed needs the memory as wide as x");
    size_t count[W_COUNT] = {0};
    float scale[W_COUNT];
    for (int i = 0; i < W_COUNT; ++i) scale[i] = 0.5f;
    if (packed) {
        count[W_QKV] = c->d_model * (nq + nk + nv);
        count[B_QKV] = nq + nk + nv;
    } else {
        count[W_Q] = c->d_model * nq;
        count[W_K] = c->kv_d_model * nk;
        count[W_V] = c->kv_d_model * nv;
        count[B_Q] = nq;
        count[B_K] = nk;
        count[B_V] = nv;
    }
    count[W_O] = H * c->v_head_dim * c->d_model;
    count[B_O] = c->d_model;
    scale[W_QKV] = scale[W_Q] = 1.0f / sqrtf((float)c->d_model);
    scale[W_K] = scale[W_V] = 1.0f / sqrtf((float)c->kv_d_model);
    scale[W_O] = 1.0f / sqrtf((float)(H * c->v_head_dim));
    unsigned seed = 12345;
    const size_t nx = r->batch * r->q_len * c->d_model, nm = r->batch * r->mem_len * c->kv_d_model;
    r->x = support_random_array(nx, 1.0f, CLATTN_DTYPE_F32, &seed);
    r->memory = r->mem_len ? support_random_array(nm, 1.0f, CLATTN_DTYPE_F32, &seed) : NULL;
    if (!r->x || (r->mem_len && !r->memory)) return cli_error(CMD, CLI_FAILED, "out of memory");
    for (int i = 0; i < W_COUNT; ++i) {
        if (!count[i]) continue;
        r->w[i] = support_random_array(count[i], scale[i], CLATTN_DTYPE_F32, &seed);
        if (!r->w[i]) return cli_error(CMD, CLI_FAILED, "out of memory");
    }
    return CLI_OK;
}

static int load_mask(const char *path, run_data *r, size_t kv_len) {
    run_mask m = {0};
    const size_t want[4] = {r->batch, r->cfg.heads, r->q_len, kv_len};
    int rc = run_load_mask(CMD, path, want, false, &m);
    r->mask = m.additive;
    r->bool_mask = m.bool_mask;
    memcpy(r->mask_shape, m.shape, sizeof m.shape);
    return rc;
}

/* Options, activations and weights into `r`, everything checked against everything else. */
static int prepare(const cli_command *cmd, run_data *r) {
    const char *s;
    int rc;
    clattn_mha_config *c = &r->cfg;
    if (!(s = cli_value(cmd, "heads"))) return cli_error(CMD, CLI_USAGE, "--heads H is needed");
    if ((rc = parse_size("heads", s, &c->heads))) return rc;
    if ((s = cli_value(cmd, "kv-heads")) && (rc = parse_size("kv-heads", s, &c->kv_heads))) return rc;
    if ((s = cli_value(cmd, "head-dim")) && (rc = parse_size("head-dim", s, &c->head_dim))) return rc;
    if ((s = cli_value(cmd, "v-head-dim")) && (rc = parse_size("v-head-dim", s, &c->v_head_dim))) return rc;
    if (!c->kv_heads) c->kv_heads = c->heads;
    if (!c->heads || c->heads % c->kv_heads)
        return cli_error(CMD, CLI_USAGE, "--heads %zu must be positive and a multiple of --kv-heads %zu", c->heads,
                         c->kv_heads);

    const char *random = cli_value(cmd, "random");
    if (random) {
        if (cli_value(cmd, "x") || cli_value(cmd, "memory"))
            return cli_error(CMD, CLI_USAGE, "give either --random or --x (and --memory), not both");
        for (int i = 0; i < W_COUNT; ++i)
            if (cli_value(cmd, weight_option[i]))
                return cli_error(CMD, CLI_USAGE, "--random makes its own weights; --%s is not used with it",
                                 weight_option[i]);
        char tail = 0;
        unsigned long long b, lq, lk, d;
        if (sscanf(random, "%llu,%llu,%llu,%llu%c", &b, &lq, &lk, &d, &tail) != 4 || d == 0 || b > 4096 ||
            lq > (1u << 20) || lk > (1u << 20) || d > 65536)
            return cli_error(CMD, CLI_USAGE, "--random %s: expected B,Lq,Lk,D_MODEL (Lk 0: self-attention)",
                             random);
        r->batch = (size_t)b;
        r->q_len = (size_t)lq;
        r->mem_len = (size_t)lk;
        r->x_ndim = 3;
        c->d_model = c->kv_d_model = (size_t)d;
        if ((rc = make_random(cmd, r, (size_t)d))) return rc;
    } else {
        const char *xp = cli_value(cmd, "x"), *mp = cli_value(cmd, "memory");
        if (!xp) return cli_error(CMD, CLI_USAGE, "--x X.npy (or --random) is needed");
        size_t xs[3], ms[3];
        if ((rc = read_floats("x", xp, 2, 3, xs, &r->x, &r->x_ndim))) return rc;
        r->batch = xs[0];
        r->q_len = xs[1];
        c->d_model = c->kv_d_model = xs[2];
        if (mp) {
            if ((rc = read_floats("memory", mp, 2, 3, ms, &r->memory, NULL))) return rc;
            if (ms[0] != r->batch)
                return cli_error(CMD, CLI_USAGE, "--memory: batch %zu differs from x's %zu", ms[0], r->batch);
            r->mem_len = ms[1];
            c->kv_d_model = ms[2];
        }
        if (!c->d_model || !c->kv_d_model) return cli_error(CMD, CLI_USAGE, "--x and --memory need a width >= 1");
        if ((rc = load_weights(cmd, r))) return rc;
    }
    r->host.w_qkv = r->w[W_QKV];
    r->host.b_qkv = r->w[B_QKV];
    r->host.w_q = r->w[W_Q];
    r->host.w_k = r->w[W_K];
    r->host.w_v = r->w[W_V];
    r->host.b_q = r->w[B_Q];
    r->host.b_k = r->w[B_K];
    r->host.b_v = r->w[B_V];
    r->host.w_o = r->w[W_O];
    r->host.b_o = r->w[B_O];
    const size_t kv_len = r->memory ? r->mem_len : r->q_len;
    if ((s = cli_value(cmd, "mask")) && (rc = load_mask(s, r, kv_len))) return rc;
    if ((s = cli_value(cmd, "key-lengths")) &&
        (rc = run_load_key_lengths(CMD, s, r->batch, kv_len, false, &r->key_lengths)))
        return rc;
    if ((rc = run_load_score_mods(cmd, c->heads, &r->mods))) return rc;
    r->score_mod = cli_value(cmd, "score-mod");
    r->mask_mod = cli_value(cmd, "mask-mod");
    if ((s = cli_value(cmd, "mod-buffer")) && (rc = run_load_mod_buffers(CMD, s, &r->mod_buffers))) return rc;
    /* The reference is C on doubles and cannot run OpenCL C. */
    if ((r->score_mod || r->mask_mod) && cli_flag(cmd, "check"))
        return cli_error(CMD, CLI_USAGE,
                         "--check cannot evaluate --score-mod/--mask-mod (OpenCL C); compare -o outputs with a run "
                         "of the built-in option they reproduce (--softcap, --alibi-slopes, --window, --causal, "
                         "--mask) instead");
    return CLI_OK;
}

/* `n` floats rounded in place to the storage dtype, so that --check compares with what the device saw, and
 * uploaded in that dtype. */
static cl_mem upload_storage(clattn_context *ctx, float *values, size_t n, clattn_dtype dt) {
    support_round_array(values, n, dt);
    return support_buffer_storage(ctx, values, n, dt, NULL);
}

/* Runs the layer on the device; out receives [B, Lq, d_model] floats. */
static int run_layer(clattn_context *ctx, run_data *r, clattn_dtype dt, const clattn_mha_desc *desc_in) {
    const clattn_mha_config *c = &r->cfg;
    const size_t B = r->batch, Lq = r->q_len, nx = B * Lq * c->d_model, nm = B * r->mem_len * c->kv_d_model;
    clattn_mha_desc desc = *desc_in;
    clattn_mha_weights *w = NULL;
    cl_mem xb = NULL, mb = NULL, ob = NULL, maskb = NULL, klb = NULL, sinkb = NULL, alibib = NULL;
    cl_mem modb[CLATTN_MAX_MOD_BUFFERS] = {NULL};
    int rc = CLI_OK;
    clattn_status st = clattn_mha_weights_create(ctx, c, &r->host, &w);
    if (st) {
        rc = cli_report_status(CMD, ctx, st, "uploading the weights");
        if (cli_is_input_error(st)) rc = CLI_USAGE;
    }
    r->out = malloc((nx + 1) * sizeof(float));
    if (rc == CLI_OK && !r->out) rc = cli_error(CMD, CLI_FAILED, "out of host memory");
    if (rc == CLI_OK) {
        xb = upload_storage(ctx, r->x, nx, dt);
        if (r->memory) mb = upload_storage(ctx, r->memory, nm, dt);
        ob = support_buffer(ctx, NULL, nx * clattn_dtype_size(dt), NULL);
        size_t mask_strides[4];
        const size_t mn = run_mask_strides(r->mask_shape, mask_strides);
        if (r->mask || r->bool_mask) {
            maskb = r->mask ? support_buffer(ctx, r->mask, mn * sizeof(float), NULL)
                            : support_buffer(ctx, r->bool_mask, mn, NULL);
            desc.attention.mask =
                clattn_tensor_bhld(maskb, r->mask ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_BOOL, r->mask_shape[0],
                                   r->mask_shape[1], r->mask_shape[2], r->mask_shape[3]);
        }
        if (r->key_lengths)
            desc.attention.key_lengths = klb = support_buffer(ctx, r->key_lengths, B * sizeof(int32_t), NULL);
        desc.attention.softcap = r->mods.softcap;
        if (r->mods.sinks) {
            sinkb = support_buffer(ctx, r->mods.sinks, c->heads * sizeof(float), NULL);
            desc.attention.sinks = clattn_tensor_bhld(sinkb, CLATTN_DTYPE_F32, 1, c->heads, 1, 1);
        }
        if (r->mods.alibi_slopes) {
            alibib = support_buffer(ctx, r->mods.alibi_slopes, c->heads * sizeof(float), NULL);
            desc.attention.alibi_slopes = clattn_tensor_bhld(alibib, CLATTN_DTYPE_F32, 1, c->heads, 1, 1);
        }
        desc.attention.score_mod = r->score_mod;
        desc.attention.mask_mod = r->mask_mod;
        bool mods_ok = true;
        for (size_t i = 0; i < r->mod_buffers.count; ++i) {
            const npy_array *a = &r->mod_buffers.array[i];
            modb[i] = support_buffer(ctx, a->data, a->count * 4, NULL);
            mods_ok = mods_ok && modb[i];
            desc.attention.mod_buffers[i] =
                (clattn_mod_buffer){r->mod_buffers.name[i], modb[i], run_mod_dtype(a), a->count};
        }
        if (!xb || (r->memory && !mb) || !ob || ((r->mask || r->bool_mask) && !maskb) || (r->key_lengths && !klb) ||
            (r->mods.sinks && !sinkb) || (r->mods.alibi_slopes && !alibib) || !mods_ok)
            rc = cli_error(CMD, CLI_FAILED, "allocating the device buffers failed");
    }
    if (rc == CLI_OK) {
        clattn_tensor x = clattn_tensor_seq(xb, dt, B, Lq, c->d_model);
        clattn_tensor m = clattn_tensor_seq(mb, dt, B, r->mem_len, c->kv_d_model);
        clattn_tensor o = clattn_tensor_seq(ob, dt, B, Lq, c->d_model);
        st = clattn_mha(ctx, w, &desc, &x, r->memory ? &m : NULL, &o, NULL, 0, NULL, NULL);
        if (st) {
            rc = cli_report_status(CMD, ctx, st, "multi-head attention");
            if (cli_is_input_error(st)) rc = CLI_USAGE;
        }
    }
    if (rc == CLI_OK) {
        cl_int err = support_read_storage(ctx, ob, r->out, nx, dt);
        if (err != CL_SUCCESS) rc = cli_error(CMD, CLI_FAILED, "reading the output back failed: %d", err);
    }
    const cl_mem all[] = {xb, mb, ob, maskb, klb, sinkb, alibib};
    cli_release_buffers(all, sizeof all / sizeof all[0]);
    cli_release_buffers(modb, CLATTN_MAX_MOD_BUFFERS);
    clattn_mha_weights_free(w);
    return rc;
}

/* The largest difference from the reference, and the largest |reference| value. */
static double check_against_reference(const run_data *r, const clattn_mha_desc *d, double *ref_max) {
    const clattn_mha_config *c = &r->cfg;
    const size_t n = r->batch * r->q_len * c->d_model;
    double *out = calloc(n + 1, sizeof *out);
    if (!out) return INFINITY;
    cla_ref_mha ref = {.config = *c, .weights = r->host, .batch = r->batch, .q_len = r->q_len, .x = r->x};
    ref.memory = r->memory;
    ref.memory_len = r->mem_len;
    ref.residual = d->residual;
    ref.attention.scale = d->attention.scale;
    ref.attention.causal = d->attention.causal;
    ref.attention.window_left = d->attention.window_left;
    ref.attention.window_right = d->attention.window_right;
    const size_t *msz = r->mask_shape;
    size_t mst[4];
    run_mask_strides(msz, mst);
    if (r->mask) {
        ref.attention.mask.data = r->mask;
        memcpy(ref.attention.mask.size, msz, sizeof ref.attention.mask.size);
        memcpy(ref.attention.mask.stride, mst, sizeof mst);
    }
    if (r->bool_mask) {
        ref.attention.bool_mask.data = r->bool_mask;
        memcpy(ref.attention.bool_mask.size, msz, sizeof ref.attention.bool_mask.size);
        memcpy(ref.attention.bool_mask.stride, mst, sizeof mst);
    }
    ref.attention.key_lengths = r->key_lengths;
    ref.attention.softcap = r->mods.softcap;
    ref.attention.sinks = r->mods.sinks;
    ref.attention.alibi_slopes = r->mods.alibi_slopes;
    ref.out = out;
    double worst = INFINITY;
    *ref_max = 0.0;
    if (cla_reference_mha(&ref) == 0) worst = support_max_error(r->out, out, n, false, ref_max);
    free(out);
    return worst;
}

int cmd_run_mha(int argc, char **argv) {
    cli_option options[] = {
        {"x", "X.npy", "input [B, Lq, d_model] (or [Lq, d_model]), float32 or float16", NULL},
        {"memory", "M.npy", "cross-attention memory [B, Lk, kv_d_model]; without it, self-attention", NULL},
        {"random", "B,Lq,Lk,D", "seeded random input, memory (Lk > 0) and weights with biases instead of files",
         NULL},
        {"packed", NULL, "with --random: one packed w_qkv instead of w_q, w_k and w_v", NULL},
        {"heads", "H", "query heads (required)", NULL},
        {"kv-heads", "HKV", "key/value heads (grouped-query attention; default H)", NULL},
        {"head-dim", "DK", "width of a query/key head (default: from the weights)", NULL},
        {"v-head-dim", "DV", "width of a value head (default: from the weights)", NULL},
        {"w-qkv", "W.npy", "packed [d_model, H*DK + HKV*DK + HKV*DV], columns Q | K | V (self-attention)", NULL},
        {"b-qkv", "B.npy", "packed bias [H*DK + HKV*DK + HKV*DV]", NULL},
        {"w-q", "W.npy", "[d_model, H*DK]", NULL},
        {"w-k", "W.npy", "[kv_d_model, HKV*DK]", NULL},
        {"w-v", "W.npy", "[kv_d_model, HKV*DV]", NULL},
        {"b-q", "B.npy", "[H*DK]", NULL},
        {"b-k", "B.npy", "[HKV*DK]", NULL},
        {"b-v", "B.npy", "[HKV*DV]", NULL},
        {"w-o", "W.npy", "output projection [H*DV, d_model] (required with files)", NULL},
        {"b-o", "B.npy", "[d_model]", NULL},
        {"residual", NULL, "out = x + MHA(x)", NULL},
        CLI_OPTION_MASK_FILE,
        CLI_OPTION_KEY_LENGTHS_FILE,
        CLI_OPTION_CAUSAL_ALIGN,
        {"window", "L,R", "sliding window around the (aligned) query, -1 unbounded", NULL},
        CLI_OPTIONS_SCORE_MODS,
        CLI_OPTIONS_USER_MODS,
        {"scale", "S", "logit scale (default 1/sqrt(DK))", NULL},
        {"dtype", "TYPE", "storage of x, memory and out on the device: f32 (default), f16 or bf16", NULL},
        {"impl", "IMPL", "attention implementation: fused, unfused or auto (default)", NULL},
        {"out", "O.npy", "write the output [B, Lq, d_model] as float32 (also -o)", NULL},
        {"check", NULL, "compare with the double-precision reference and print the largest error", NULL},
        CLI_OPTION_DEVICE,
    };
    cli_command cmd = {CMD,
                       "Run one multi-head attention layer, out = [x +] concat_h(softmax(Q K^T * scale + mask) V) "
                       "W_O + b_O with Q = x W_Q + b_Q and K, V from x or the memory, on .npy files or random "
                       "inputs.",
                       "(--x X.npy [--memory M.npy] --w-o W.npy (--w-qkv W.npy | --w-q --w-k --w-v) | --random "
                       "B,Lq,Lk,D) --heads H [options] [-o O.npy]",
                       options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;

    run_data r;
    memset(&r, 0, sizeof r);
    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    clattn_dtype dt = CLATTN_DTYPE_F32;
    const char *s;
    rc = CLI_OK;
    desc.residual = cli_flag(&cmd, "residual");
    if ((s = cli_value(&cmd, "dtype"))) rc = cli_parse_dtype(CMD, s, &dt);
    if (rc == CLI_OK && (s = cli_value(&cmd, "causal"))) rc = cli_parse_causal(CMD, s, &desc.attention.causal);
    if (rc == CLI_OK && (s = cli_value(&cmd, "impl"))) rc = cli_parse_impl(CMD, s, &desc.attention.impl);
    if (rc == CLI_OK && (s = cli_value(&cmd, "window")))
        rc = cli_parse_window(CMD, s, &desc.attention.window_left, &desc.attention.window_right);
    if (rc == CLI_OK && (s = cli_value(&cmd, "scale"))) rc = cli_parse_scale(CMD, s, &desc.attention.scale);
    if (rc == CLI_OK) rc = prepare(&cmd, &r);
    if (rc == CLI_OK && !cli_value(&cmd, "out") && !cli_flag(&cmd, "check") && !cli_value(&cmd, "random"))
        rc = cli_error(CMD, CLI_USAGE, "nothing to do: give -o O.npy, --check, or both");
    clattn_context *ctx = NULL;
    if (rc == CLI_OK) rc = cli_open_context(CMD, cli_value(&cmd, "device"), false, &ctx);
    if (rc == CLI_OK) rc = run_layer(ctx, &r, dt, &desc);
    const clattn_mha_config *c = &r.cfg;
    if (rc == CLI_OK && (s = cli_value(&cmd, "out"))) {
        size_t shape[3] = {r.batch, r.q_len, c->d_model};
        bool two_d = r.x_ndim == 2;
        rc = run_write_npy(CMD, s, "the output", two_d ? 2 : 3, two_d ? shape + 1 : shape, r.out);
    }
    if (rc == CLI_OK) {
        printf("mha B=%zu Lq=%zu %s%zu d_model=%zu H=%zu Hkv=%zu DK=%zu DV=%zu %s done\n", r.batch, r.q_len,
               r.memory ? "cross Lk=" : "self Lk=", r.memory ? r.mem_len : r.q_len, c->d_model, c->heads,
               c->kv_heads, c->head_dim, c->v_head_dim, clattn_dtype_name(dt));
        if (cli_flag(&cmd, "check")) {
            double ref_max = 0.0;
            double worst = check_against_reference(&r, &desc, &ref_max);
            const size_t kv_len = r.memory ? r.mem_len : r.q_len;
            double tol = check_mha_rel_tolerance(c, kv_len) * (ref_max > 1.0 ? ref_max : 1.0) +
                         check_storage_rel_tolerance(dt) * ref_max;
            printf("largest difference from the double-precision reference: %.3g (tolerance %.3g)\n", worst, tol);
            if (!(worst <= tol))
                rc = cli_error(CMD, CLI_FAILED, "the output differs from the reference by %.3g (tolerance %.3g)",
                               worst, tol);
        }
    }
    clattn_context_free(ctx);
    free_run(&r);
    return rc;
}
