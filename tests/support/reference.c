// SPDX-License-Identifier: Apache-2.0
/* Double-precision CPU reference of scaled dot-product attention. Every device result is judged against this, so
 * it favours obvious correctness over speed: one row at a time, logits in double, a two-pass softmax. */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

int64_t cla_sdpa_window_pos(int64_t i, int64_t lq, int64_t lk, clattn_causal causal, clattn_window_align align) {
    const bool bottom_right = align == CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT ||
                              (align == CLATTN_WINDOW_ALIGN_DEFAULT && causal == CLATTN_CAUSAL_BOTTOM_RIGHT);
    return bottom_right ? i + (lk - lq) : i;
}

bool cla_sdpa_key_allowed(int64_t i, int64_t j, int64_t lq, int64_t lk, clattn_causal causal,
                          clattn_window_align align, int64_t window_left, int64_t window_right) {
    /* Bottom-right alignment lines the last query up with the last key; top-left lines up the first ones. The
     * causal mask has its own; the window has `align`'s. */
    const int64_t causal_pos = causal == CLATTN_CAUSAL_BOTTOM_RIGHT ? i + (lk - lq) : i;
    if (causal != CLATTN_CAUSAL_NONE && j > causal_pos) return false;
    const int64_t pos = cla_sdpa_window_pos(i, lq, lk, causal, align);
    /* Compared as distances (pos - j <= left rather than j >= pos - left) so that a huge window cannot overflow. */
    if (window_left != CLATTN_WINDOW_UNBOUNDED && pos - j > window_left) return false;
    if (window_right != CLATTN_WINDOW_UNBOUNDED && j - pos > window_right) return false;
    return true;
}

static const float *elem(const cla_ref_tensor *t, size_t b, size_t h, size_t i, size_t d) {
    return t->data + b * t->stride[0] + h * t->stride[1] + i * t->stride[2] + d * t->stride[3];
}

/* Masks broadcast over a dimension of size 1 as well as through a zero stride. */
static size_t mask_offset(const size_t size[4], const size_t stride[4], size_t b, size_t h, size_t i, size_t j) {
    size_t idx[4] = {b, h, i, j};
    size_t off = 0;
    for (int d = 0; d < 4; d++) off += (size[d] == 1 ? 0 : idx[d]) * stride[d];
    return off;
}

int cla_reference_sdpa(const cla_ref_sdpa *a) {
    if (a == NULL || a->out == NULL) return -1;

    const size_t batch = a->q.size[0], hq = a->q.size[1], lq = a->q.size[2], dk = a->q.size[3];
    const size_t hkv = a->k.size[1], lk = a->k.size[2], dv = a->v.size[3];
    const size_t rows = batch * hq * lq;
    const size_t seq_len = a->q_seq_len ? a->q_seq_len : lq; /* the whole query sequence the rows belong to */
    if (rows > 0 && (hkv == 0 || hq % hkv != 0)) return -1;
    const size_t group = rows > 0 ? hq / hkv : 1;

    /* Per-row scratch: the logits and whether each key takes part. */
    double *logit = malloc((lk > 0 ? lk : 1) * sizeof *logit);
    bool *keep = malloc((lk > 0 ? lk : 1) * sizeof *keep);
    if (logit == NULL || keep == NULL) {
        free(logit);
        free(keep);
        return -1;
    }

    for (size_t b = 0; b < batch; b++) {
        size_t klen = lk;
        if (a->key_lengths != NULL) {
            int32_t n = a->key_lengths[b];
            klen = n < 0 ? 0 : (size_t)n < lk ? (size_t)n : lk;
        }
        for (size_t h = 0; h < hq; h++) {
            const size_t hk = h / group; /* grouped-query attention: consecutive query heads share a kv head */
            for (size_t i = 0; i < lq; i++) {
                const size_t row = (b * hq + h) * lq + i;
                double *out = a->out + row * dv;
                double *w = a->weights != NULL ? a->weights + row * lk : NULL;

                /* Pass 1: which keys take part, their logits, and the maximum. The maximum must not skip NaN (as
                 * fmax would): a NaN logit of a key that takes part has to reach the output. */
                size_t kept = 0;
                bool saw_nan = false;
                double max = -INFINITY;
                for (size_t j = 0; j < lk; j++) {
                    keep[j] = j < klen && cla_sdpa_key_allowed((int64_t)(a->q_first + i), (int64_t)j,
                                                               (int64_t)seq_len, (int64_t)lk, a->causal,
                                                               a->window_align, a->window_left, a->window_right);
                    if (keep[j] && a->bool_mask.data != NULL)
                        keep[j] =
                            a->bool_mask.data[mask_offset(a->bool_mask.size, a->bool_mask.stride, b, h, i, j)] != 0;
                    if (keep[j] && a->block_mask.data != NULL)
                        keep[j] = a->block_mask.data[mask_offset(a->block_mask.size, a->block_mask.stride, b, h,
                                                                 (a->q_first + i) / a->block_mask.block_q,
                                                                 j / a->block_mask.block_k)] != 0;
                    double add = 0.0;
                    if (keep[j] && a->mask.data != NULL) {
                        add = a->mask.data[mask_offset(a->mask.size, a->mask.stride, b, h, i, j)];
                        /* -inf and -FLT_MAX are both "masked" (fp16 users write the most negative finite value);
                         * a NaN compares false here and so propagates like any other NaN input. */
                        if (add <= -FLT_MAX) keep[j] = false;
                    }
                    if (!keep[j]) continue;
                    /* The key's values are only read once it is known to take part, so a NaN in a masked key
                     * never enters the arithmetic. */
                    double dot = 0.0;
                    for (size_t d = 0; d < dk; d++)
                        dot += (double)*elem(&a->q, b, h, i, d) * (double)*elem(&a->k, b, hk, j, d);
                    double s = a->scale * dot;
                    if (a->softcap > 0.0) s = a->softcap * tanh(s / a->softcap);
                    if (a->alibi_slopes != NULL) {
                        const int64_t q_pos = cla_sdpa_window_pos((int64_t)(a->q_first + i), (int64_t)seq_len,
                                                                  (int64_t)lk, a->causal, a->window_align);
                        s -= (double)a->alibi_slopes[h] * fabs((double)(q_pos - (int64_t)j));
                    }
                    logit[j] = s + add;
                    kept++;
                    if (isnan(logit[j]))
                        saw_nan = true;
                    else if (logit[j] > max)
                        max = logit[j];
                }
                if (saw_nan) max = NAN;
                /* An attention sink: one more logit in the denominator, with no value. */
                const double sink = a->sinks != NULL ? (double)a->sinks[h] : -INFINITY;
                if (a->sinks != NULL && !saw_nan && sink > max) max = sink;

                if (kept == 0) {
                    /* Fully masked row: zeros, not the 0/0 NaN a naive softmax gives; lse is the sink's alone. */
                    for (size_t d = 0; d < dv; d++) out[d] = 0.0;
                    if (w != NULL)
                        for (size_t j = 0; j < lk; j++) w[j] = 0.0;
                    if (a->lse != NULL) a->lse[row] = sink;
                    continue;
                }

                /* Pass 2: stable softmax, then the weighted sum of the kept values only. */
                double sum = a->sinks != NULL && sink > -INFINITY ? exp(sink - max) : 0.0;
                for (size_t j = 0; j < lk; j++)
                    if (keep[j]) {
                        logit[j] = exp(logit[j] - max);
                        sum += logit[j];
                    }
                for (size_t d = 0; d < dv; d++) out[d] = 0.0;
                for (size_t j = 0; j < lk; j++) {
                    if (!keep[j]) {
                        if (w != NULL) w[j] = 0.0;
                        continue;
                    }
                    double p = logit[j] / sum;
                    if (w != NULL) w[j] = p;
                    for (size_t d = 0; d < dv; d++) out[d] += p * (double)*elem(&a->v, b, hk, j, d);
                }
                if (a->lse != NULL) a->lse[row] = max + log(sum);
            }
        }
    }

    free(logit);
    free(keep);
    return 0;
}

cla_ref_tensor cla_ref_dense(const float *data, size_t b, size_t h, size_t l, size_t d) {
    cla_ref_tensor t = {.data = data, .size = {b, h, l, d}, .stride = {h * l * d, l * d, d, 1}};
    return t;
}
