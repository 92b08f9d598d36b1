// SPDX-License-Identifier: Apache-2.0
/* Double-precision reference of seq2seq attention (see reference_seq2seq.h). The scores come first, as plain
 * formulas over double projections; the masked softmax and the weighted sum follow the same contract as the
 * scaled dot-product reference (reference.c): masked keys are never read, a fully masked row is zeros. */
#include "reference_seq2seq.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

/* rows x[n, in] times w[in, out] (plus bias) into y[n, out], in double. Each sum runs over k in order; the loops
 * walk w by rows, which keeps encoder widths of thousands fast enough for the large tests. */
static void project(const float *x, size_t n, size_t in, const float *w, size_t out, const float *bias, double *y) {
    for (size_t r = 0; r < n; ++r) {
        double *yr = y + r * out;
        for (size_t c = 0; c < out; ++c) yr[c] = bias ? (double)bias[c] : 0.0;
        for (size_t k = 0; k < in; ++k) {
            const double xk = (double)x[r * in + k];
            for (size_t c = 0; c < out; ++c) yr[c] += xk * (double)w[k * out + c];
        }
    }
}

static bool weights_present(const cla_ref_seq2seq *a) {
    switch (a->score) {
    case CLATTN_SCORE_ADDITIVE:
        return a->w_q && a->w_k && a->v;
    case CLATTN_SCORE_CONCAT:
        return a->w && a->v;
    case CLATTN_SCORE_GENERAL:
        return a->w != NULL;
    case CLATTN_SCORE_DOT:
        return a->query_dim == a->key_dim;
    }
    return false;
}

int cla_reference_seq2seq_scores(const cla_ref_seq2seq *a, double *scores) {
    if (!a || !scores || !a->query || !a->keys || !weights_present(a)) return -1;
    const size_t B = a->batch, Lq = a->q_len, Lk = a->kv_len, Dq = a->query_dim, Dk = a->key_dim;
    const bool hidden = a->score == CLATTN_SCORE_ADDITIVE || a->score == CLATTN_SCORE_CONCAT;
    /* Width of the projected queries and keys: attn_dim for the tanh scores, key_dim for general. */
    const size_t P = hidden ? a->attn_dim : Dk;
    double *qp = malloc((Lq * P + 1) * sizeof *qp), *kp = malloc((Lk * P + 1) * sizeof *kp);
    if (!qp || !kp) {
        free(qp);
        free(kp);
        return -1;
    }
    /* Concat's W is [W_q; W_k] stacked by rows: [q; k] W = q W_q + k W_k. */
    const float *wq = a->score == CLATTN_SCORE_CONCAT ? a->w : a->w_q;
    const float *wk = a->score == CLATTN_SCORE_CONCAT ? a->w + Dq * a->attn_dim : a->w_k;
    for (size_t b = 0; b < B; ++b) {
        const float *q = a->query + b * Lq * Dq, *k = a->keys + b * Lk * Dk;
        if (hidden) {
            project(q, Lq, Dq, wq, P, a->score == CLATTN_SCORE_ADDITIVE ? a->bias : NULL, qp);
            project(k, Lk, Dk, wk, P, NULL, kp);
        } else {
            if (a->score == CLATTN_SCORE_GENERAL)
                project(q, Lq, Dq, a->w, Dk, NULL, qp); /* q W, then a dot product with k */
            else
                for (size_t x = 0; x < Lq * Dq; ++x) qp[x] = q[x];
            for (size_t x = 0; x < Lk * Dk; ++x) kp[x] = k[x];
        }
        for (size_t i = 0; i < Lq; ++i)
            for (size_t j = 0; j < Lk; ++j) {
                double e = 0.0;
                for (size_t c = 0; c < P; ++c)
                    e += hidden ? (double)a->v[c] * tanh(qp[i * P + c] + kp[j * P + c])
                                : qp[i * P + c] * kp[j * P + c];
                scores[(b * Lq + i) * Lk + j] = e;
            }
    }
    free(qp);
    free(kp);
    return 0;
}

int cla_reference_seq2seq(const cla_ref_seq2seq *a) {
    if (!a || !a->context) return -1;
    const size_t B = a->batch, Lq = a->q_len, Lk = a->kv_len;
    const size_t Dv = a->values ? a->value_dim : a->key_dim;
    const float *h = a->values ? a->values : a->keys;
    double *e = malloc((B * Lq * Lk + 1) * sizeof *e);
    bool *keep = malloc((Lk + 1) * sizeof *keep);
    if (!e || !keep || cla_reference_seq2seq_scores(a, e) != 0) {
        free(e);
        free(keep);
        return -1;
    }
    for (size_t b = 0; b < B; ++b) {
        size_t klen = Lk;
        if (a->key_lengths) {
            int32_t n = a->key_lengths[b];
            klen = n < 0 ? 0 : (size_t)n < Lk ? (size_t)n : Lk;
        }
        const size_t mb = a->mask_batch == 1 ? 0 : b;
        const size_t mq = a->mask_q_len ? a->mask_q_len : Lq, mk = a->mask_kv_len ? a->mask_kv_len : Lk;
        for (size_t i = 0; i < Lq; ++i) {
            double *row = e + (b * Lq + i) * Lk;
            double *out = a->context + (b * Lq + i) * Dv;
            double *w = a->weights ? a->weights + (b * Lq + i) * Lk : NULL;
            /* Which keys take part, their masked scores, and the maximum (a NaN is the maximum: it must spread). */
            double max = -INFINITY;
            bool saw_nan = false;
            size_t kept = 0;
            for (size_t j = 0; j < Lk; ++j) {
                const size_t m = (mb * mq + (mq == 1 ? 0 : i)) * mk + (mk == 1 ? 0 : j);
                keep[j] = j < klen && (!a->bool_mask || a->bool_mask[m] != 0);
                if (keep[j] && a->mask) {
                    if (a->mask[m] <= -FLT_MAX)
                        keep[j] = false;
                    else
                        row[j] += a->mask[m];
                }
                if (!keep[j]) continue;
                ++kept;
                if (isnan(row[j]))
                    saw_nan = true;
                else if (row[j] > max)
                    max = row[j];
            }
            if (saw_nan) max = NAN;
            for (size_t d = 0; d < Dv; ++d) out[d] = 0.0;
            if (kept == 0) { /* fully masked: zeros, not 0/0 */
                if (w)
                    for (size_t j = 0; j < Lk; ++j) w[j] = 0.0;
                continue;
            }
            double sum = 0.0;
            for (size_t j = 0; j < Lk; ++j)
                if (keep[j]) sum += exp(row[j] - max);
            for (size_t j = 0; j < Lk; ++j) {
                /* A masked key's value is never read, so a NaN there stays out. */
                const double p = keep[j] ? exp(row[j] - max) / sum : 0.0;
                if (w) w[j] = p;
                if (!keep[j]) continue;
                const float *hv = h + (b * Lk + j) * Dv;
                for (size_t d = 0; d < Dv; ++d) out[d] += p * (double)hv[d];
            }
        }
    }
    free(e);
    free(keep);
    return 0;
}
