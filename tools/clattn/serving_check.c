// SPDX-License-Identifier: Apache-2.0
/* Serving layouts: positions of each sequence's rows, and --check one sequence at a time (see serving_check.h). */
#include "serving_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "support_compare.h"

static size_t span(const int32_t *cu, size_t b) {
    return cu[b + 1] > cu[b] ? (size_t)(cu[b + 1] - cu[b]) : 0;
}

size_t serving_q_len(const serving_seqs *s, size_t b) {
    return s->cu_q ? span(s->cu_q, b) : s->q_len;
}

size_t serving_k_len(const serving_seqs *s, size_t b) {
    if (s->cu_k) return span(s->cu_k, b);
    if (s->seqlens_k) return s->seqlens_k[b] > 0 ? (size_t)s->seqlens_k[b] : 0;
    return s->kv_len;
}

size_t serving_max_q(const serving_seqs *s) {
    size_t m = s->cu_q ? 0 : s->q_len;
    for (size_t b = 0; s->cu_q && b < s->count; ++b)
        if (serving_q_len(s, b) > m) m = serving_q_len(s, b);
    return m;
}

size_t serving_max_k(const serving_seqs *s) {
    size_t m = s->cu_k || s->seqlens_k ? 0 : s->kv_len;
    for (size_t b = 0; (s->cu_k || s->seqlens_k) && b < s->count; ++b)
        if (serving_k_len(s, b) > m) m = serving_k_len(s, b);
    return m;
}

void serving_q_at(const serving_seqs *s, size_t b, size_t i, size_t *i0, size_t *i2) {
    *i0 = s->cu_q ? 0 : b;
    *i2 = s->cu_q ? (size_t)s->cu_q[b] + i : i;
}

void serving_k_at(const serving_seqs *s, size_t b, size_t j, size_t *i0, size_t *i2) {
    if (s->cu_k) {
        *i0 = 0;
        *i2 = (size_t)s->cu_k[b] + j;
    } else if (s->block_table) {
        *i0 = (size_t)s->block_table[b * s->table_stride + j / s->page];
        *i2 = j % s->page;
    } else {
        *i0 = b;
        *i2 = j;
    }
}

typedef void (*position_fn)(const serving_seqs *, size_t, size_t, size_t *, size_t *);

/* Sequence b's `len` rows of every head of a view into dense [heads, len, dim]. */
static void gather(const serving_seqs *s, position_fn at, size_t b, size_t len, const float *data,
                   const clattn_tensor *view, float *dst) {
    const size_t heads = view->size[1], dim = view->size[3];
    for (size_t h = 0; h < heads; ++h)
        for (size_t i = 0; i < len; ++i) {
            size_t i0, i2;
            at(s, b, i, &i0, &i2);
            const float *src = data + i0 * view->stride[0] + h * view->stride[1] + i2 * view->stride[2];
            for (size_t d = 0; d < dim; ++d) dst[(h * len + i) * dim + d] = src[d * view->stride[3]];
        }
}

/* Sequence b's slice of a contiguous array of `shape` (a mask, or a block mask counted in blocks): its batch item,
 * its lq rows and lk keys from the top-left. */
static void mask_slice(const size_t shape[4], size_t b, size_t lq, size_t lk, size_t size[4], size_t stride[4],
                       size_t *offset) {
    size_t full[4];
    size_t n = 1;
    for (int d = 3; d >= 0; --d) {
        full[d] = n;
        n *= shape[d];
    }
    *offset = shape[0] > 1 ? b * full[0] : 0;
    size[0] = 1;
    size[1] = shape[1];
    size[2] = shape[2] > 1 ? lq : 1;
    size[3] = shape[3] > 1 ? lk : 1;
    stride[0] = 0;
    for (int d = 1; d < 4; ++d) stride[d] = shape[d] > 1 ? full[d] : 0;
}

/* One sequence: the reference against the device's rows. Returns 0, or -1 out of memory. */
static int check_sequence(const serving_seqs *s, const serving_host *h, const serving_ref_options *o, size_t b,
                          double *worst_out, double *worst_lse) {
    const size_t lq = serving_q_len(s, b), lk = serving_k_len(s, b);
    const size_t hq = h->qv.size[1], hkv = h->kv.size[1], dk = h->qv.size[3], dv = h->vv.size[3];
    if (lq == 0) return 0;
    float *q = malloc((hq * lq * dk + 1) * sizeof *q), *k = malloc((hkv * lk * dk + 1) * sizeof *k);
    float *v = malloc((hkv * lk * dv + 1) * sizeof *v), *out = malloc((hq * lq * dv + 1) * sizeof *out);
    double *ref = calloc(hq * lq * dv + 1, sizeof *ref), *ref_lse = calloc(hq * lq + 1, sizeof *ref_lse);
    int rc = -1;
    if (!q || !k || !v || !out || !ref || !ref_lse) goto done;
    gather(s, serving_q_at, b, lq, h->q, &h->qv, q);
    gather(s, serving_k_at, b, lk, h->k, &h->kv, k);
    gather(s, serving_k_at, b, lk, h->v, &h->vv, v);
    gather(s, serving_q_at, b, lq, h->out, &h->ov, out);
    cla_ref_sdpa a;
    memset(&a, 0, sizeof a);
    a.q = cla_ref_dense(q, 1, hq, lq, dk);
    a.k = cla_ref_dense(k, 1, hkv, lk, dk);
    a.v = cla_ref_dense(v, 1, hkv, lk, dv);
    a.scale = o->scale;
    a.causal = o->causal;
    a.window_left = o->window_left;
    a.window_right = o->window_right;
    a.window_align = o->window_align;
    a.softcap = o->softcap;
    a.sinks = o->sinks;
    a.alibi_slopes = o->alibi_slopes;
    if (s->key_lengths) a.key_lengths = &s->key_lengths[b];
    size_t offset = 0;
    if (o->mask) {
        mask_slice(o->mask_shape, b, lq, lk, a.mask.size, a.mask.stride, &offset);
        a.mask.data = o->mask + offset;
    }
    if (o->bool_mask) {
        mask_slice(o->mask_shape, b, lq, lk, a.bool_mask.size, a.bool_mask.stride, &offset);
        a.bool_mask.data = o->bool_mask + offset;
    }
    if (o->block_mask) {
        a.block_mask.block_q = o->block_q;
        a.block_mask.block_k = o->block_k;
        mask_slice(o->block_mask_shape, b, (lq + o->block_q - 1) / o->block_q, (lk + o->block_k - 1) / o->block_k,
                   a.block_mask.size, a.block_mask.stride, &offset);
        a.block_mask.data = o->block_mask + offset;
    }
    a.out = ref;
    a.lse = ref_lse;
    if (cla_reference_sdpa(&a) != 0) goto done;
    const double e = support_max_error(out, ref, hq * lq * dv, false, NULL);
    if (!(e <= *worst_out)) *worst_out = e;
    for (size_t head = 0; h->lse && head < hq; ++head)
        for (size_t i = 0; i < lq; ++i) {
            size_t i0, i2;
            serving_q_at(s, b, i, &i0, &i2);
            const double got = h->lse[i0 * h->lv.stride[0] + head * h->lv.stride[1] + i2 * h->lv.stride[2]];
            const double want = ref_lse[head * lq + i];
            const double el = (isinf(want) && got == want) ? 0.0 : fabs(got - want);
            if (!(el <= *worst_lse)) *worst_lse = el;
        }
    rc = 0;
done:
    free(q);
    free(k);
    free(v);
    free(out);
    free(ref);
    free(ref_lse);
    return rc;
}

int serving_check(const serving_seqs *s, const serving_host *h, const serving_ref_options *o, double *worst_out,
                  double *worst_lse) {
    *worst_out = *worst_lse = 0.0;
    for (size_t b = 0; b < s->count; ++b)
        if (check_sequence(s, h, o, b, worst_out, worst_lse) != 0) return -1;
    return 0;
}
