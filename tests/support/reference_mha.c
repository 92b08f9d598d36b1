// SPDX-License-Identifier: Apache-2.0
/* Double-precision CPU reference of multi-head attention (see reference_mha.h). Written for clarity: each
 * projection is a plain triple loop in double, the attention is cla_reference_sdpa on head views of the projected
 * rows. Q, K and V are handed to it as float, the precision the device stores them in. */
#include "reference_mha.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct widths {
    size_t d_model, kv_d_model, heads, kv_heads, dk, dv, nq, nk, nv, nqkv;
} widths;

static widths resolve(const clattn_mha_config *c) {
    widths w;
    w.d_model = c->d_model;
    w.kv_d_model = c->kv_d_model ? c->kv_d_model : c->d_model;
    w.heads = c->heads;
    w.kv_heads = c->kv_heads ? c->kv_heads : c->heads;
    w.dk = c->head_dim;
    w.dv = c->v_head_dim ? c->v_head_dim : c->head_dim;
    w.nq = w.heads * w.dk;
    w.nk = w.kv_heads * w.dk;
    w.nv = w.kv_heads * w.dv;
    w.nqkv = w.nq + w.nk + w.nv;
    return w;
}

size_t cla_ref_mha_kv_len(const cla_ref_mha *a) {
    size_t current = a->read_only ? 0 : a->memory ? a->memory_len : a->q_len;
    return (a->past ? a->past_len : 0) + current;
}

/* One projection: a weight [in, ld] whose columns col0 .. col0 + n are used, and an optional bias. */
typedef struct proj {
    const float *w;
    size_t ld, col0, n;
    const float *bias;
} proj;

/* y[r, :] = x[r, :] W + b for `rows` rows of width `in`, into float rows of width p.n, with the sums in double in
 * `acc` (p.n of them). Each sum runs over i in order; the loops walk W by rows, which keeps widths of thousands
 * fast enough for the large tests. */
static void project(const float *x, size_t rows, size_t in, proj p, double *acc, float *y) {
    for (size_t r = 0; r < rows; ++r) {
        for (size_t j = 0; j < p.n; ++j) acc[j] = p.bias ? (double)p.bias[p.col0 + j] : 0.0;
        for (size_t i = 0; i < in; ++i) {
            const double xi = (double)x[r * in + i];
            const float *wi = p.w + i * p.ld + p.col0;
            for (size_t j = 0; j < p.n; ++j) acc[j] += xi * (double)wi[j];
        }
        for (size_t j = 0; j < p.n; ++j) y[r * p.n + j] = (float)acc[j];
    }
}

/* A [B, heads, len, d] view of rows [B, len, heads * d]. */
static cla_ref_tensor head_view(const float *rows, size_t batch, size_t heads, size_t len, size_t d) {
    cla_ref_tensor t = cla_ref_dense(rows, batch, heads, len, d);
    t.stride[0] = len * heads * d;
    t.stride[1] = d;
    t.stride[2] = heads * d;
    t.stride[3] = 1;
    return t;
}

int cla_reference_mha(const cla_ref_mha *a) {
    if (!a || !a->out || !a->x || !a->weights.w_o) return -1;
    const widths w = resolve(&a->config);
    const clattn_mha_weights_host *h = &a->weights;
    const bool packed = h->w_qkv != NULL;
    if (!packed && !(h->w_q && h->w_k && h->w_v)) return -1;
    if (w.heads == 0 || w.kv_heads == 0 || w.heads % w.kv_heads != 0 || w.dk == 0) return -1;
    const size_t B = a->batch, Lq = a->q_len, past = a->past ? a->past_len : 0, Lk = cla_ref_mha_kv_len(a);
    const size_t cur = Lk - past;
    const float *cur_src = a->memory ? a->memory : a->x;
    const size_t cur_width = a->memory ? w.kv_d_model : w.d_model;
    if (!a->memory && !a->read_only && w.kv_d_model != w.d_model) return -1;

    proj pq, pk, pv;
    if (packed) {
        pq = (proj){h->w_qkv, w.nqkv, 0, w.nq, h->b_qkv};
        pk = (proj){h->w_qkv, w.nqkv, w.nq, w.nk, h->b_qkv};
        pv = (proj){h->w_qkv, w.nqkv, w.nq + w.nk, w.nv, h->b_qkv};
    } else {
        pq = (proj){h->w_q, w.nq, 0, w.nq, h->b_q};
        pk = (proj){h->w_k, w.nk, 0, w.nk, h->b_k};
        pv = (proj){h->w_v, w.nv, 0, w.nv, h->b_v};
    }

    float *q = malloc((B * Lq * w.nq + 1) * sizeof *q);
    float *k = malloc((B * Lk * w.nk + 1) * sizeof *k);
    float *v = malloc((B * Lk * w.nv + 1) * sizeof *v);
    double *att = malloc((B * w.heads * Lq * w.dv + 1) * sizeof *att);
    double *out = malloc((B * Lq * w.d_model + 1) * sizeof *out);
    /* One row of double sums, as wide as the widest projection. */
    const size_t widest = w.nq > w.nk ? (w.nq > w.nv ? w.nq : w.nv) : (w.nk > w.nv ? w.nk : w.nv);
    double *acc = malloc((widest + 1) * sizeof *acc);
    int rc = -1;
    if (!q || !k || !v || !att || !out || !acc) goto done;

    for (size_t b = 0; b < B; ++b) {
        project(a->x + b * Lq * w.d_model, Lq, w.d_model, pq, acc, q + b * Lq * w.nq);
        /* The cache's contents by construction: the past rows' keys and values, then this call's. */
        if (past) {
            project(a->past + b * past * w.kv_d_model, past, w.kv_d_model, pk, acc, k + b * Lk * w.nk);
            project(a->past + b * past * w.kv_d_model, past, w.kv_d_model, pv, acc, v + b * Lk * w.nv);
        }
        if (cur) {
            const float *src = cur_src + b * cur * cur_width;
            project(src, cur, cur_width, pk, acc, k + (b * Lk + past) * w.nk);
            project(src, cur, cur_width, pv, acc, v + (b * Lk + past) * w.nv);
        }
    }

    cla_ref_sdpa s = a->attention;
    s.q = head_view(q, B, w.heads, Lq, w.dk);
    s.k = head_view(k, B, w.kv_heads, Lk, w.dk);
    s.v = head_view(v, B, w.kv_heads, Lk, w.dv);
    if (isnan(s.scale)) s.scale = 1.0 / sqrt((double)w.dk);
    s.out = att; /* [B, H, Lq, dv] */
    if (cla_reference_sdpa(&s) != 0) goto done;

    /* Merge the heads ([B, Lq, H * dv] rows) and project: out = att W_O + b_O (+ x), each sum over the heads'
     * columns in order, walking W_O by rows. */
    for (size_t b = 0; b < B; ++b)
        for (size_t i = 0; i < Lq; ++i) {
            double *o = out + (b * Lq + i) * w.d_model;
            for (size_t c = 0; c < w.d_model; ++c) o[c] = h->b_o ? (double)h->b_o[c] : 0.0;
            for (size_t hh = 0; hh < w.heads; ++hh)
                for (size_t e = 0; e < w.dv; ++e) {
                    const double x = att[((b * w.heads + hh) * Lq + i) * w.dv + e];
                    const float *wo = h->w_o + (hh * w.dv + e) * w.d_model;
                    for (size_t c = 0; c < w.d_model; ++c) o[c] += x * (double)wo[c];
                }
            if (a->residual)
                for (size_t c = 0; c < w.d_model; ++c) o[c] += (double)a->x[(b * Lq + i) * w.d_model + c];
        }
    memcpy(a->out, out, B * Lq * w.d_model * sizeof *out);
    rc = 0;
done:
    free(q);
    free(k);
    free(v);
    free(att);
    free(out);
    free(acc);
    return rc;
}
