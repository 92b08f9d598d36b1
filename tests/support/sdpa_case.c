// SPDX-License-Identifier: Apache-2.0
/* The attention test harness (see sdpa_case.h). A case is prepared once (inputs staged and uploaded, the reference
 * computed for every row or for a sample), then run on the device by one implementation or both. */
#include "sdpa_case.h"

#include <float.h>
#include <math.h>

#include "check_tolerance.h"
#include "dtype.h"
#include "internal.h"
#include "reference.h"

#define POISON_BYTE  0x7b /* f32 1.3e36, f16 60800, bf16 1.3e36: finite, far from any attention output */
#define CANARY_ELEMS 64

void sdpa_case_init(sdpa_case *c) {
    memset(c, 0, sizeof *c);
    c->batch = c->q_heads = c->kv_heads = 1;
    c->q_len = c->kv_len = 7;
    c->head_dim = 16;
    c->dtype = CLATTN_DTYPE_F32;
    c->scale = NAN;
    c->window_left = c->window_right = CLATTN_WINDOW_UNBOUNDED;
    c->mask_dtype = CLATTN_DTYPE_F32;
    c->weights_dtype = CLATTN_DTYPE_F32;
    c->mask_neg_value = -INFINITY;
    c->seed = 1;
    c->nan_q_row = -1;
}

sdpa_case sdpa_case_of(clattn_impl impl, size_t batch, size_t q_heads, size_t kv_heads, size_t q_len, size_t kv_len,
                       size_t head_dim) {
    sdpa_case c;
    sdpa_case_init(&c);
    c.impl = impl;
    const size_t shape[6] = {batch, q_heads, kv_heads, q_len, kv_len, head_dim};
    size_t *field[6] = {&c.batch, &c.q_heads, &c.kv_heads, &c.q_len, &c.kv_len, &c.head_dim};
    for (int i = 0; i < 6; ++i) *field[i] = shape[i];
    return c;
}

void sdpa_case_describe(const sdpa_case *c, char *buf, size_t size) {
    static const char *dt[] = {"f32", "f16", "bf16", "bool"};
    static const char *impl[] = {"auto", "fused", "unfused"};
    /* Also the window alignments, whose DEFAULT is "none" here. */
    static const char *causal[] = {"none", "top-left", "bottom-right"};
    snprintf(
        buf, size,
        "B=%zu Hq=%zu Hkv=%zu Lq=%zu Lk=%zu D=%zu Dv=%zu %s %s off=%zu pad=%zu causal=%s window=(%lld,%lld)/%s "
        "mask=%d%s%s%s%s%s kl=%s lse=%d w=%d(%s) impl=%s seed=%u sample=%zu softcap=%g sinks=%d alibi=%d",
        c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, c->head_dim,
        c->v_head_dim ? c->v_head_dim : c->head_dim, dt[c->dtype], c->layout ? "BLHD" : "BHLD", c->offset,
        c->row_pad, causal[c->causal], (long long)c->window_left, (long long)c->window_right,
        causal[c->window_align], c->mask_kind, c->mask_bcast_batch ? "/bcast-b" : "",
        c->mask_bcast_heads ? "/bcast-h" : "", c->mask_bcast_q ? "/bcast-q" : "", c->mask_bcast_k ? "/bcast-k" : "",
        c->mask_stride0 ? "/stride0" : "", c->key_lengths ? "yes" : "no", c->want_lse, c->want_weights,
        dt[c->weights_dtype], impl[c->impl], c->seed, c->sample_rows, (double)c->softcap, c->sinks, c->alibi);
}

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f; /* [-2, 2) */
}

/* A tensor as the device will see it: `offset` elements, the view, then a canary. The host keeps only the window
 * around the view (test_view_window), so that a view far into a large buffer costs host memory for itself alone. */
typedef struct staged {
    clattn_tensor view;   /* buffer filled in at upload */
    size_t total;         /* elements in the device buffer */
    size_t first, count;  /* the host window: elements [first, first + count) of the buffer */
    unsigned char *bytes; /* the window */
    float *logical;       /* inputs: [B,H,L,D] contiguous floats as rounded to the dtype */
} staged;

/* Where element (b, h, l, d) of the view lies in the window. */
static size_t window_index(const staged *s, size_t b, size_t h, size_t l, size_t d) {
    const clattn_tensor *t = &s->view;
    return t->offset + b * t->stride[0] + h * t->stride[1] + l * t->stride[2] + d * t->stride[3] - s->first;
}

/* Stages a [B, H, L, D] tensor in `layout`, each sequence position followed by `pad` elements; returns 0, or -1 if
 * the host is out of memory. Inputs get their logical values. */
static int stage(staged *s, clattn_dtype dt, int layout, size_t offset, size_t pad, size_t B, size_t H, size_t L,
                 size_t D, bool input) {
    memset(s, 0, sizeof *s);
    s->view =
        layout == LAYOUT_BLHD ? clattn_tensor_blhd(NULL, dt, B, H, L, D) : clattn_tensor_bhld(NULL, dt, B, H, L, D);
    s->view.offset = offset;
    if (layout == LAYOUT_BLHD) {
        s->view.stride[2] = H * D + pad;
        s->view.stride[0] = L * s->view.stride[2];
    } else {
        s->view.stride[2] = D + pad;
        s->view.stride[1] = L * s->view.stride[2];
        s->view.stride[0] = H * s->view.stride[1];
    }
    test_view_window(&s->view, CANARY_ELEMS, &s->first, &s->count, &s->total);
    const size_t es = clattn_dtype_size(dt);
    s->bytes = malloc(s->count * es + 1);
    if (s->bytes) memset(s->bytes, POISON_BYTE, s->count * es);
    if (input) s->logical = calloc(B * H * L * D + 1, sizeof(float));
    return s->bytes && (!input || s->logical) ? 0 : -1;
}

/* Writes logical values into the staged bytes (rounded to the dtype) and keeps the rounded values. */
static void stage_fill(staged *s) {
    const clattn_tensor *t = &s->view;
    const size_t es = clattn_dtype_size(t->dtype);
    size_t n = 0;
    for (size_t b = 0; b < t->size[0]; ++b)
        for (size_t h = 0; h < t->size[1]; ++h)
            for (size_t l = 0; l < t->size[2]; ++l)
                for (size_t d = 0; d < t->size[3]; ++d, ++n) {
                    float x = cla_round_to_dtype(s->logical[n], t->dtype);
                    s->logical[n] = x;
                    cla_convert_to_storage(&x, s->bytes + window_index(s, b, h, l, d) * es, 1, t->dtype);
                }
}

static cl_mem upload(clattn_context *ctx, const staged *s) {
    const size_t es = clattn_dtype_size(s->view.dtype);
    return test_upload_window(ctx, s->total * es, s->first * es, s->bytes, s->count * es);
}

static void stage_free(staged *s) {
    free(s->bytes);
    free(s->logical);
    memset(s, 0, sizeof *s);
}

/* Tolerance for one element: grows with the reduction length, plus the output storage rounding. */
static double tolerance(const sdpa_case *c, clattn_dtype out_dt, double ref) {
    double rel = check_sdpa_rel_tolerance(c->kv_len);
    /* A logit stored in fp32 carries an error proportional to its size, and a large additive mask sets the size. */
    rel += 4.0 * fabs(c->mask_constant) * FLT_EPSILON;
    /* ALiBi biases grow with the distance between query and key, and with them the logits' rounding. */
    if (c->alibi) rel += 4.0 * (c->alibi_slope ? fabs(c->alibi_slope) : 0.5) * (double)c->kv_len * FLT_EPSILON;
    rel += check_storage_rel_tolerance(out_dt);
    double mag = fabs(ref) > 1.0 ? fabs(ref) : 1.0;
    if (c->input_scale > 1.0f) mag *= 4.0; /* large logits: exp() amplifies the logits' rounding */
    return 1e-6 + rel * mag;
}

static bool same_or_close(double got, double want, double tol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return !isnan(got) && fabs(got - want) <= tol;
}

/* ---- a prepared case: inputs on the device and the reference ---- */

typedef struct prepared {
    staged q, k, v, mask;
    uint8_t *bool_vals;
    cl_mem bq, bk, bv, bm, bkl;
    /* The score modifiers' per-head values [Hq] and their device copies (views in sinks_view, alibi_view). */
    float *sinks, *slopes;
    cl_mem bsinks, bslopes;
    clattn_tensor sinks_view, alibi_view;
    /* The rows compared, as flat indices (b * Hq + h) * Lq + i, sorted; NULL: every row. ref_* hold the reference
     * of the n_rows compared rows, in that order: out [n][Dv], lse [n], weights [n][Lk]. */
    size_t *rows, n_rows;
    double *ref_out, *ref_lse, *ref_w;
} prepared;

static void prepared_free(prepared *p) {
    cl_mem all[] = {p->bq, p->bk, p->bv, p->bm, p->bkl, p->bsinks, p->bslopes};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (all[i]) clReleaseMemObject(all[i]);
    free(p->sinks);
    free(p->slopes);
    stage_free(&p->q);
    stage_free(&p->k);
    stage_free(&p->v);
    stage_free(&p->mask);
    free(p->bool_vals);
    free(p->rows);
    free(p->ref_out);
    free(p->ref_lse);
    free(p->ref_w);
    memset(p, 0, sizeof *p);
}

/* Whether the mask broadcasts over each dimension of [B, Hq, Lq, Lk], and the sizes it is stored with (1 there). */
static void mask_stored(const sdpa_case *c, bool bcast[4], size_t size[4]) {
    const bool bc[4] = {c->mask_bcast_batch, c->mask_bcast_heads, c->mask_bcast_q, c->mask_bcast_k};
    const size_t full[4] = {c->batch, c->q_heads, c->q_len, c->kv_len};
    for (int d = 0; d < 4; ++d) {
        bcast[d] = bc[d];
        size[d] = bc[d] ? 1 : full[d];
    }
}

/* The mask's reference view over `data` (floats or bytes): its stored sizes, contiguous, stride 0 where it
 * broadcasts. */
static void mask_geometry(const sdpa_case *c, size_t size[4], size_t stride[4]) {
    bool bcast[4];
    mask_stored(c, bcast, size);
    size_t n = 1;
    for (int d = 3; d >= 0; --d) {
        stride[d] = bcast[d] ? 0 : n;
        n *= size[d];
    }
}

/* The reference of every row in one call, or of each sampled row alone (placed in its sequence by q_first). */
static int reference(const sdpa_case *c, prepared *p) {
    const size_t B = c->batch, Hq = c->q_heads, Hkv = c->kv_heads, Lq = c->q_len, Lk = c->kv_len;
    const size_t Dk = c->head_dim, Dv = c->v_head_dim ? c->v_head_dim : c->head_dim;
    const size_t n = p->rows ? p->n_rows : B * Hq * Lq;
    p->ref_out = calloc(n * Dv + 1, sizeof(double));
    p->ref_lse = calloc(n + 1, sizeof(double));
    p->ref_w = c->want_weights ? calloc(n * Lk + 1, sizeof(double)) : NULL;
    if (!p->ref_out || !p->ref_lse || (c->want_weights && !p->ref_w)) return -1;
    cla_ref_sdpa r;
    memset(&r, 0, sizeof r);
    r.q = cla_ref_dense(p->q.logical, B, Hq, Lq, Dk);
    r.k = cla_ref_dense(p->k.logical, B, Hkv, Lk, Dk);
    r.v = cla_ref_dense(p->v.logical, B, Hkv, Lk, Dv);
    r.scale = isnan(c->scale) ? 1.0 / sqrt((double)Dk) : (double)c->scale;
    r.causal = c->causal;
    r.window_left = c->window_left;
    r.window_right = c->window_right;
    r.window_align = c->window_align;
    if (c->mask_kind == MASK_ADD) {
        r.mask.data = p->mask.logical;
        mask_geometry(c, r.mask.size, r.mask.stride);
    } else if (c->mask_kind == MASK_BOOL) {
        r.bool_mask.data = p->bool_vals;
        mask_geometry(c, r.bool_mask.size, r.bool_mask.stride);
    }
    r.key_lengths = c->key_lengths;
    r.softcap = c->softcap;
    r.sinks = p->sinks;
    r.alibi_slopes = p->slopes;
    r.out = p->ref_out;
    r.lse = p->ref_lse;
    r.weights = p->ref_w;
    if (!p->rows) return cla_reference_sdpa(&r);

    /* One row at a time: views of that row's query, its key/value head and its mask row. */
    const size_t group = Hq / Hkv;
    for (size_t s = 0; s < n; ++s) {
        const size_t row = p->rows[s], i = row % Lq, bh = row / Lq, b = bh / Hq, h = bh % Hq;
        cla_ref_sdpa one = r;
        one.q = cla_ref_dense(p->q.logical + row * Dk, 1, 1, 1, Dk);
        one.k = cla_ref_dense(p->k.logical + (b * Hkv + h / group) * Lk * Dk, 1, 1, Lk, Dk);
        one.v = cla_ref_dense(p->v.logical + (b * Hkv + h / group) * Lk * Dv, 1, 1, Lk, Dv);
        one.q_first = i;
        one.q_seq_len = Lq;
        cla_ref_tensor *m = c->mask_kind == MASK_ADD ? &one.mask : NULL;
        cla_ref_bool_tensor *bm = c->mask_kind == MASK_BOOL ? &one.bool_mask : NULL;
        const size_t *st = m ? m->stride : bm ? bm->stride : NULL;
        if (st) {
            const size_t at = b * st[0] + h * st[1] + i * st[2]; /* broadcast dimensions have stride 0 */
            const size_t sz[4] = {1, 1, 1, c->mask_bcast_k ? 1 : Lk};
            if (m) {
                m->data += at;
                memcpy(m->size, sz, sizeof sz);
            } else {
                bm->data += at;
                memcpy(bm->size, sz, sizeof sz);
            }
        }
        one.key_lengths = c->key_lengths ? c->key_lengths + b : NULL;
        one.sinks = p->sinks ? p->sinks + h : NULL;
        one.alibi_slopes = p->slopes ? p->slopes + h : NULL;
        one.out = p->ref_out + s * Dv;
        one.lse = p->ref_lse + s;
        one.weights = p->ref_w ? p->ref_w + s * Lk : NULL;
        if (cla_reference_sdpa(&one) != 0) return -1;
    }
    return 0;
}

/* Stages the inputs, computes the reference and uploads the inputs. Returns 0, or -1 with a message in err. */
static int prepare(clattn_context *ctx, const sdpa_case *c, prepared *p, char *err, size_t err_size) {
    memset(p, 0, sizeof *p);
    const size_t B = c->batch, Hq = c->q_heads, Hkv = c->kv_heads, Lq = c->q_len, Lk = c->kv_len;
    const size_t Dk = c->head_dim, Dv = c->v_head_dim ? c->v_head_dim : c->head_dim;
    unsigned seed = c->seed * 2654435761u + 17;
    if (stage(&p->q, c->dtype, c->layout, c->offset, c->row_pad, B, Hq, Lq, Dk, true) ||
        stage(&p->k, c->dtype, c->layout, c->offset, c->row_pad, B, Hkv, Lk, Dk, true) ||
        stage(&p->v, c->dtype, c->layout, c->offset, c->row_pad, B, Hkv, Lk, Dv, true)) {
        snprintf(err, err_size, "out of host memory for the inputs");
        return -1;
    }
    float qs = c->input_scale > 0 ? c->input_scale : 1.0f;
    for (size_t i = 0; i < B * Hq * Lq * Dk; ++i) p->q.logical[i] = rnd(&seed) * qs;
    for (size_t i = 0; i < B * Hkv * Lk * Dk; ++i) p->k.logical[i] = rnd(&seed);
    for (size_t i = 0; i < B * Hkv * Lk * Dv; ++i) p->v.logical[i] = rnd(&seed);
    if (c->nan_q_row >= 0 && (size_t)c->nan_q_row < Lq && Dk) p->q.logical[(size_t)c->nan_q_row * Dk] = NAN;
    if (c->nan_in_padding && c->key_lengths)
        for (size_t b = 0; b < B; ++b)
            for (size_t h = 0; h < Hkv; ++h)
                for (size_t j = (size_t)(c->key_lengths[b] < 0 ? 0 : c->key_lengths[b]); j < Lk; ++j) {
                    p->k.logical[((b * Hkv + h) * Lk + j) * Dk] = NAN;
                    p->v.logical[((b * Hkv + h) * Lk + j) * Dv] = NAN;
                }
    stage_fill(&p->q);
    stage_fill(&p->k);
    stage_fill(&p->v);

    if (c->mask_kind) {
        bool bcast[4];
        size_t ms[4];
        mask_stored(c, bcast, ms);
        const size_t mn = ms[0] * ms[1] * ms[2] * ms[3];
        clattn_dtype mdt = c->mask_kind == MASK_BOOL ? CLATTN_DTYPE_BOOL : c->mask_dtype;
        if (stage(&p->mask, mdt, LAYOUT_BHLD, c->offset, 0, ms[0], ms[1], ms[2], ms[3], true)) {
            snprintf(err, err_size, "out of host memory for the mask");
            return -1;
        }
        for (size_t i = 0; i < mn; ++i) {
            bool masked = ((rnd(&seed) + 2.0f) / 4.0f) < c->mask_fill_prob;
            float val = c->mask_constant != 0.0f ? c->mask_constant : rnd(&seed);
            p->mask.logical[i] =
                c->mask_kind == MASK_BOOL ? (masked ? 0.0f : 1.0f) : (masked ? c->mask_neg_value : val);
        }
        if (c->mask_kind == MASK_BOOL) {
            p->bool_vals = malloc(mn + 1);
            if (!p->bool_vals) {
                snprintf(err, err_size, "out of host memory for the mask");
                return -1;
            }
            for (size_t i = 0; i < mn; ++i) {
                p->bool_vals[i] = p->mask.logical[i] != 0.0f;
                p->mask.bytes[c->offset - p->mask.first + i] = p->bool_vals[i];
            }
        } else {
            stage_fill(&p->mask);
        }
    }

    if (c->sinks || c->alibi) {
        p->sinks = c->sinks ? calloc(Hq + 1, sizeof(float)) : NULL;
        p->slopes = c->alibi ? calloc(Hq + 1, sizeof(float)) : NULL;
        if ((c->sinks && !p->sinks) || (c->alibi && !p->slopes)) {
            snprintf(err, err_size, "out of host memory for the score modifiers");
            return -1;
        }
        for (size_t h = 0; h < Hq; ++h) {
            if (p->sinks) p->sinks[h] = c->sink_bias + 2.0f * rnd(&seed);
            if (p->slopes) p->slopes[h] = (c->alibi_slope ? c->alibi_slope : 0.5f) / (float)(h + 1);
        }
    }

    if (c->sample_rows) p->n_rows = test_sample_rows(B * Hq, Lq, c->sample_rows, c->seed, &p->rows);
    if (reference(c, p) != 0) {
        snprintf(err, err_size, "the reference failed (out of memory?)");
        return -1;
    }

    p->bq = upload(ctx, &p->q);
    p->bk = upload(ctx, &p->k);
    p->bv = upload(ctx, &p->v);
    if (c->mask_kind) p->bm = upload(ctx, &p->mask);
    if (c->key_lengths) {
        /* A private copy with one spare element: OpenCL has no empty buffers. */
        int32_t *kl = calloc(B + 1, sizeof *kl);
        if (kl) {
            memcpy(kl, c->key_lengths, B * sizeof *kl);
            p->bkl = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                    (B + 1) * sizeof(int32_t), kl, NULL);
        }
        free(kl);
    }
    /* The per-head values at `offset`, every other float when row_pad asks for strides. */
    const size_t hstride = c->row_pad ? 2 : 1;
    float *const values[2] = {p->sinks, p->slopes};
    cl_mem *const bufs[2] = {&p->bsinks, &p->bslopes};
    clattn_tensor *const views[2] = {&p->sinks_view, &p->alibi_view};
    for (int m = 0; m < 2; ++m) {
        if (!values[m]) continue;
        const size_t n = c->offset + Hq * hstride + 1;
        float *host = calloc(n, sizeof(float));
        if (host) {
            for (size_t h = 0; h < Hq; ++h) host[c->offset + h * hstride] = values[m][h];
            *bufs[m] = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                      n * sizeof(float), host, NULL);
        }
        free(host);
        if (!*bufs[m]) {
            snprintf(err, err_size, "creating the test's score-modifier buffers failed");
            return -1;
        }
        *views[m] = clattn_tensor_bhld(*bufs[m], CLATTN_DTYPE_F32, 1, Hq, 1, 1);
        views[m]->offset = c->offset;
        views[m]->stride[1] = hstride;
    }
    if (!p->bq || !p->bk || !p->bv || (c->mask_kind && !p->bm) || (c->key_lengths && !p->bkl)) {
        snprintf(err, err_size, "creating the test's device buffers failed");
        return -1;
    }
    return 0;
}

/* ---- one device run ---- */

/* Reads an output's window back, checks the compared rows against `ref` ([n_rows][W]) and the bytes outside the
 * view for poison. With `copy`, returns every element of the view as floats, [B,H,L,W] (malloc'd). Returns 0, or -1
 * with a message in err. */
static int check_output(clattn_context *ctx, const sdpa_case *c, const prepared *p, cl_mem buf, const staged *s,
                        const double *ref, const char *name, float **copy, char *err, size_t err_size) {
    const clattn_tensor *t = &s->view;
    const size_t es = clattn_dtype_size(t->dtype), W = t->size[3], L = t->size[2];
    unsigned char *got = malloc(s->count * es + 1);
    unsigned char *inside = calloc(s->count + 1, 1);
    float *values = copy ? malloc((cla_tensor_elements(t) + 1) * sizeof(float)) : NULL;
    char desc[512];
    sdpa_case_describe(c, desc, sizeof desc);
    int rc = 0;
    if (!got || !inside || (copy && !values)) {
        snprintf(err, err_size, "%s: out of host memory for the check", name);
        rc = -1;
    } else if (test_read_window(ctx, buf, s->first * es, s->count * es, got) != 0) {
        snprintf(err, err_size, "%s: reading the output back failed", name);
        rc = -1;
    }
    size_t n = 0;
    for (size_t b = 0; b < t->size[0] && !rc; ++b)
        for (size_t h = 0; h < t->size[1]; ++h)
            for (size_t l = 0; l < L; ++l)
                for (size_t d = 0; d < W; ++d, ++n) {
                    const size_t at = window_index(s, b, h, l, d);
                    inside[at] = 1;
                    if (values) cla_convert_from_storage(got + at * es, &values[n], 1, t->dtype);
                }
    const size_t rows = p->rows ? p->n_rows : t->size[0] * t->size[1] * L;
    for (size_t r = 0; r < rows && !rc; ++r) {
        const size_t row = p->rows ? p->rows[r] : r, l = row % L, b = row / L / t->size[1],
                     h = row / L % t->size[1];
        for (size_t d = 0; d < W && !rc; ++d) {
            float x;
            cla_convert_from_storage(got + window_index(s, b, h, l, d) * es, &x, 1, t->dtype);
            const double want = ref[r * W + d];
            double tol = tolerance(c, t->dtype, want);
            if (strcmp(name, "lse") == 0) tol *= 4.0;
            if (!same_or_close(x, want, tol)) {
                snprintf(err, err_size, "%s[%zu,%zu,%zu,%zu] = %.9g, reference %.9g (tolerance %.3g)\n  case: %s",
                         name, b, h, l, d, x, want, tol, desc);
                rc = -1;
            }
        }
    }
    /* Bytes outside the view (the offset region, the canary, gaps of strided layouts) must keep the poison. */
    for (size_t i = 0; i < s->count && !rc; ++i) {
        if (inside[i]) continue;
        for (size_t k = 0; k < es; ++k)
            if (got[i * es + k] != POISON_BYTE) {
                snprintf(err, err_size,
                         "%s: element %zu outside the view (offset %zu, %zu elements, canary after) was written\n  "
                         "case: %s",
                         name, s->first + i, t->offset, cla_tensor_elements(t), desc);
                rc = -1;
                break;
            }
    }
    free(inside);
    free(got);
    if (copy && !rc) {
        *copy = values;
    } else {
        free(values);
    }
    return rc;
}

/* Runs the prepared case with `impl` into freshly poisoned outputs (weights only if `weights`) and checks them.
 * out_copy and lse_copy (may be NULL) receive every element of out and lse. Returns 0, or -1 with a message. */
static int run_impl(clattn_context *ctx, const sdpa_case *c, const prepared *p, clattn_impl impl, bool weights,
                    float **out_copy, float **lse_copy, char *err, size_t err_size) {
    const size_t B = c->batch, Hq = c->q_heads, Lq = c->q_len, Lk = c->kv_len;
    const size_t Dv = c->v_head_dim ? c->v_head_dim : c->head_dim;
    staged o, lse, w;
    memset(&lse, 0, sizeof lse);
    memset(&w, 0, sizeof w);
    int rc = stage(&o, c->dtype, c->layout, c->offset, c->row_pad, B, Hq, Lq, Dv, false);
    if (!rc && c->want_lse) rc = stage(&lse, CLATTN_DTYPE_F32, LAYOUT_BHLD, c->offset, 0, B, Hq, Lq, 1, false);
    if (!rc && weights) rc = stage(&w, c->weights_dtype, LAYOUT_BHLD, c->offset, 0, B, Hq, Lq, Lk, false);
    if (rc) snprintf(err, err_size, "out of host memory for the outputs");
    cl_mem bo = NULL, bl = NULL, bw = NULL;
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.impl = impl;
    desc.scale = c->scale;
    desc.causal = c->causal;
    desc.window_left = c->window_left;
    desc.window_right = c->window_right;
    desc.window_align = c->window_align;
    if (!rc) {
        bo = upload(ctx, &o);
        if (c->want_lse) bl = upload(ctx, &lse);
        if (weights) bw = upload(ctx, &w);
        if (!bo || (c->want_lse && !bl) || (weights && !bw)) {
            snprintf(err, err_size, "creating the test's output buffers failed");
            rc = -1;
        }
    }
    if (c->mask_kind) {
        desc.mask = p->mask.view;
        desc.mask.buffer = p->bm;
        if (c->mask_stride0) {
            bool bcast[4];
            size_t ms[4];
            const size_t full[4] = {c->batch, c->q_heads, c->q_len, c->kv_len};
            mask_stored(c, bcast, ms);
            for (int d = 0; d < 4; ++d)
                if (bcast[d]) {
                    desc.mask.size[d] = full[d];
                    desc.mask.stride[d] = 0;
                }
        }
    }
    desc.key_lengths = p->bkl;
    desc.softcap = c->softcap;
    desc.sinks = p->sinks_view;
    desc.alibi_slopes = p->alibi_view;
    if (c->want_lse) {
        desc.lse = lse.view;
        desc.lse.buffer = bl;
    }
    if (weights) {
        desc.weights = w.view;
        desc.weights.buffer = bw;
    }
    clattn_tensor tq = p->q.view, tk = p->k.view, tv = p->v.view, to = o.view;
    tq.buffer = p->bq;
    tk.buffer = p->bk;
    tv.buffer = p->bv;
    to.buffer = bo;
    sdpa_case run = *c;
    run.impl = impl;
    run.want_weights = weights;
    if (!rc) {
        cl_event done = NULL;
        clattn_status status = clattn_sdpa(ctx, &desc, &tq, &tk, &tv, &to, NULL, 0, NULL, &done);
        if (status != CLATTN_SUCCESS) {
            char d[512];
            sdpa_case_describe(&run, d, sizeof d);
            snprintf(err, err_size, "clattn_sdpa: %s\n%s\n  case: %s", clattn_status_string(status),
                     clattn_context_last_error(ctx), d);
            rc = -1;
        } else if (!done || clWaitForEvents(1, &done) != CL_SUCCESS) {
            snprintf(err, err_size, "clattn_sdpa returned no event, or waiting for it failed");
            rc = -1;
        }
        if (done) clReleaseEvent(done);
    }
    if (!rc) rc = check_output(ctx, &run, p, bo, &o, p->ref_out, "out", out_copy, err, err_size);
    if (!rc && c->want_lse) rc = check_output(ctx, &run, p, bl, &lse, p->ref_lse, "lse", lse_copy, err, err_size);
    if (!rc && weights) rc = check_output(ctx, &run, p, bw, &w, p->ref_w, "weights", NULL, err, err_size);
    cl_mem all[] = {bo, bl, bw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (all[i]) clReleaseMemObject(all[i]);
    stage_free(&o);
    stage_free(&lse);
    stage_free(&w);
    return rc;
}

static int run_case(clattn_context *ctx, const sdpa_case *c, float **out_copy, char *err, size_t err_size) {
    prepared p;
    int rc = prepare(ctx, c, &p, err, err_size);
    if (!rc) rc = run_impl(ctx, c, &p, c->impl, c->want_weights, out_copy, NULL, err, err_size);
    prepared_free(&p);
    return rc;
}

int sdpa_case_check(clattn_context *ctx, const sdpa_case *c, char *err, size_t err_size) {
    return run_case(ctx, c, NULL, err, err_size);
}

void sdpa_case_run(clattn_context *ctx, const sdpa_case *c, float **out_copy) {
    char err[2048] = "";
    if (run_case(ctx, c, out_copy, err, sizeof err) != 0) fail_msg("%s", err);
}

/* Every element of two implementations' results within twice the tolerance (each is within it of the truth). */
static int compare_impls(const sdpa_case *c, const float *fused, const float *unfused, size_t n, size_t width,
                         const char *name, double scale, char *err, size_t err_size) {
    for (size_t i = 0; i < n; ++i) {
        const double tol = 2.0 * scale * tolerance(c, c->dtype, fused[i]);
        if (!same_or_close(unfused[i], fused[i], tol)) {
            char d[512];
            sdpa_case_describe(c, d, sizeof d);
            snprintf(err, err_size,
                     "%s element %zu (row %zu): fused %.9g, unfused %.9g (tolerance %.3g)\n  case: %s", name, i,
                     i / width, fused[i], unfused[i], tol, d);
            return -1;
        }
    }
    return 0;
}

void sdpa_case_run_both(clattn_context *ctx, const sdpa_case *c) {
    char err[2048] = "";
    const size_t Dv = c->v_head_dim ? c->v_head_dim : c->head_dim, rows = c->batch * c->q_heads * c->q_len;
    float *out[2] = {NULL, NULL}, *lse[2] = {NULL, NULL};
    prepared p;
    int rc = prepare(ctx, c, &p, err, sizeof err);
    if (!rc) rc = run_impl(ctx, c, &p, CLATTN_IMPL_FUSED, false, &out[0], &lse[0], err, sizeof err);
    if (!rc) rc = run_impl(ctx, c, &p, CLATTN_IMPL_UNFUSED, c->want_weights, &out[1], &lse[1], err, sizeof err);
    prepared_free(&p);
    if (!rc) rc = compare_impls(c, out[0], out[1], rows * Dv, Dv, "out", 1.0, err, sizeof err);
    if (!rc && c->want_lse) rc = compare_impls(c, lse[0], lse[1], rows, 1, "lse", 4.0, err, sizeof err);
    for (int i = 0; i < 2; ++i) {
        free(out[i]);
        free(lse[i]);
    }
    if (rc) fail_msg("%s", err);
}
