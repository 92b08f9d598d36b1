// SPDX-License-Identifier: Apache-2.0
/* The seq2seq attention test harness (see seq2seq_case.h). */
#include "seq2seq_case.h"

#include <math.h>

#include "check_tolerance.h"
#include "dtype.h"
#include "reference_seq2seq.h"
#include "seq2seq_internal.h"

#define POISON_BYTE  0x7b /* f32 1.3e36, f16 60800, bf16 1.3e36: finite, far from any attention output */
#define CANARY_ELEMS 32

void s2s_case_init(s2s_case *c) {
    memset(c, 0, sizeof *c);
    c->score = CLATTN_SCORE_ADDITIVE;
    c->batch = 1;
    c->q_len = 3;
    c->kv_len = 9;
    c->query_dim = 12;
    c->key_dim = 10;
    c->attn_dim = 16;
    c->dtype = CLATTN_DTYPE_F32;
    c->weights_dtype = CLATTN_DTYPE_F32;
    c->mask_dtype = CLATTN_DTYPE_F32;
    c->masked_row = -1;
    c->nan_query_row = -1;
    c->seed = 1;
}

void s2s_case_describe(const s2s_case *c, char *buf, size_t size) {
    static const char *dt[] = {"f32", "f16", "bf16", "bool"};
    static const char *sc[] = {"additive", "dot", "general", "concat"};
    snprintf(
        buf, size,
        "%s B=%zu Lq=%zu Lk=%zu Dq=%zu Dk=%zu Dv=%zu A=%zu %s bias=%d w=%d(%s) mask=%d(%s%s%s%s) kl=%s off=%zu "
        "host_proj=%d seed=%u",
        sc[c->score], c->batch, c->q_len, c->kv_len, c->query_dim, c->key_dim, c->value_dim, c->attn_dim,
        dt[c->dtype], c->bias, c->want_weights, dt[c->weights_dtype], c->mask_kind, dt[c->mask_dtype],
        c->mask_bcast ? ",bcast" : "", c->mask_bcast_q ? ",bcast-q" : "", c->mask_bcast_k ? ",bcast-k" : "",
        c->key_lengths ? "yes" : "no", c->offset, c->host_projection, c->seed);
}

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f; /* [-2, 2) */
}

/* A [B, 1, L, W] tensor staged as the device sees it: `offset` elements, the view, then a canary. The host keeps
 * the window around the view alone (test_view_window), so that an offset past 2^31 bytes costs no host memory. */
typedef struct staged {
    clattn_tensor view;
    size_t count, total;
    size_t first, window; /* the host window: elements [first, first + window) of the buffer */
    unsigned char *bytes; /* the window */
    float *logical;       /* the values as rounded to the dtype */
    cl_mem buffer;
} staged;

static void stage(staged *s, clattn_dtype dt, size_t offset, size_t B, size_t L, size_t W) {
    s->view = clattn_tensor_seq(NULL, dt, B, L, W);
    s->view.offset = offset;
    s->count = B * L * W;
    test_view_window(&s->view, CANARY_ELEMS, &s->first, &s->window, &s->total);
    s->bytes = malloc(s->window * clattn_dtype_size(dt) + 1);
    memset(s->bytes, POISON_BYTE, s->window * clattn_dtype_size(dt));
    s->logical = calloc(s->count + 1, sizeof(float));
    s->buffer = NULL;
}

/* Rounds the logical values to the dtype and writes them into the staged bytes (bool: one byte each). */
static void stage_fill(staged *s) {
    const clattn_dtype dt = s->view.dtype;
    const size_t es = clattn_dtype_size(dt);
    for (size_t i = 0; i < s->count; ++i) {
        unsigned char *at = s->bytes + (s->view.offset - s->first + i) * es;
        if (dt == CLATTN_DTYPE_BOOL) {
            *at = s->logical[i] != 0.0f;
            continue;
        }
        s->logical[i] = cla_round_to_dtype(s->logical[i], dt);
        cla_convert_to_storage(&s->logical[i], at, 1, dt);
    }
}

static int stage_upload(clattn_context *ctx, staged *s) {
    const size_t es = clattn_dtype_size(s->view.dtype);
    s->buffer = test_upload_window(ctx, s->total * es, s->first * es, s->bytes, s->window * es);
    s->view.buffer = s->buffer;
    return s->buffer ? 0 : -1;
}

static void stage_free(staged *s) {
    if (s->buffer) clReleaseMemObject(s->buffer);
    free(s->bytes);
    free(s->logical);
    memset(s, 0, sizeof *s);
}

/* Tolerance for one element: grows with every reduction a result goes through (the projections, the score over
 * attn_dim, the softmax over Lk), plus the storage rounding of the output; the formula is shared with the CLI's
 * --check (tools/check_tolerance.c). */
static double tolerance(const s2s_case *c, clattn_dtype out_dt, double ref) {
    const double rel = check_seq2seq_rel_tolerance(c->kv_len, c->attn_dim, c->query_dim, c->key_dim) +
                       check_storage_rel_tolerance(out_dt);
    return 1e-6 + rel * (fabs(ref) > 1.0 ? fabs(ref) : 1.0);
}

static int compare(clattn_context *ctx, const s2s_case *c, const staged *s, const double *ref, const char *name,
                   char *err, size_t err_size) {
    const size_t es = clattn_dtype_size(s->view.dtype), view = s->view.offset - s->first;
    unsigned char *got = malloc(s->window * es + 1);
    char desc[512];
    s2s_case_describe(c, desc, sizeof desc);
    int rc = 0;
    if (!got || test_read_window(ctx, s->buffer, s->first * es, s->window * es, got) != 0) {
        snprintf(err, err_size, "%s: reading back failed", name);
        free(got);
        return -1;
    }
    const size_t W = s->view.size[3], L = s->view.size[2];
    for (size_t i = 0; i < s->count && !rc; ++i) {
        float x;
        cla_convert_from_storage(got + (view + i) * es, &x, 1, s->view.dtype);
        double want = ref[i], tol = tolerance(c, s->view.dtype, want);
        bool ok = isnan(want) ? isnan(x) : !isnan(x) && fabs(x - want) <= tol;
        if (!ok) {
            snprintf(err, err_size, "%s[%zu,0,%zu,%zu] = %.9g, reference %.9g (tolerance %.3g)\n  case: %s", name,
                     i / (W * L), i / W % L, i % W, x, want, tol, desc);
            rc = -1;
        }
    }
    /* The offset region and the canary keep their poison. */
    for (size_t i = 0; i < s->window * es && !rc; ++i) {
        size_t e = i / es;
        if (e >= view && e < view + s->count) continue;
        if (got[i] != POISON_BYTE) {
            snprintf(err, err_size, "%s: element %zu outside the view was written\n  case: %s", name, s->first + e,
                     desc);
            rc = -1;
        }
    }
    free(got);
    return rc;
}

/* out[n, P] = x[n, K] w[K, P] (+ bias), in float as a device GEMM would. */
static void host_project(const float *x, size_t n, size_t K, const float *w, size_t P, const float *bias,
                         float *out) {
    for (size_t r = 0; r < n; ++r)
        for (size_t c = 0; c < P; ++c) {
            float s = 0.0f;
            for (size_t k = 0; k < K; ++k) s += x[r * K + k] * w[k * P + c];
            out[r * P + c] = bias ? s + bias[c] : s;
        }
}

/* The additive kernel alone on projections made here, through the internal entry point. */
static clattn_status run_kernel_only(clattn_context *ctx, const clattn_seq2seq_weights *w,
                                     const clattn_seq2seq_desc *desc, const staged *q, const staged *k,
                                     const clattn_tensor *values, const staged *o, const float *wq, const float *wk,
                                     const float *v, const float *bias, const s2s_case *c, cl_event *done) {
    const size_t B = c->batch, Lq = c->q_len, Lk = c->kv_len, A = c->attn_dim;
    float *qp = calloc(B * Lq * A + 1, sizeof(float)), *kp = calloc(B * Lk * A + 1, sizeof(float));
    host_project(q->logical, B * Lq, c->query_dim, wq, A, bias, qp);
    host_project(k->logical, B * Lk, c->key_dim, wk, A, NULL, kp);
    cl_context cl = clattn_context_cl_context(ctx);
    cl_mem bqp = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (B * Lq * A + 1) * 4, qp, NULL);
    cl_mem bkp = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (B * Lk * A + 1) * 4, kp, NULL);
    cl_mem bv = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, A * 4, (void *)v, NULL);
    free(qp);
    free(kp);
    cla_seq2seq_plan plan;
    clattn_status st =
        cla_seq2seq_validate(ctx, w, desc, &q->view, &k->view, values, &o->view, NULL, 0, NULL, &plan);
    if (st == CLATTN_SUCCESS) {
        cla_chain chain;
        cla_chain_begin(&chain, ctx, clattn_context_cl_queue(ctx), 0, NULL);
        const cla_rows qr = {bqp, 0, A, Lq * A}, kr = {bkp, 0, A, Lk * A};
        st = cla_seq2seq_additive_kernel(ctx, &plan, qr, kr, bv, 0, &chain);
        if (st == CLATTN_SUCCESS)
            cla_chain_end(&chain, done);
        else
            cla_chain_abort(&chain);
    }
    clReleaseMemObject(bqp);
    clReleaseMemObject(bkp);
    clReleaseMemObject(bv);
    return st;
}

int s2s_case_check(clattn_context *ctx, const s2s_case *c, char *err, size_t err_size) {
    const size_t B = c->batch, Lq = c->q_len, Lk = c->kv_len, Dq = c->query_dim, Dk = c->key_dim, A = c->attn_dim;
    const size_t Dv = c->value_dim ? c->value_dim : Dk;
    const bool hidden = c->score == CLATTN_SCORE_ADDITIVE || c->score == CLATTN_SCORE_CONCAT;
    unsigned seed = c->seed * 2654435761u + 11;
    staged q, k, h, o, m, w;
    memset(&h, 0, sizeof h);
    memset(&m, 0, sizeof m);
    memset(&w, 0, sizeof w);
    stage(&q, c->dtype, c->offset, B, Lq, Dq);
    stage(&k, c->dtype, c->offset, B, Lk, Dk);
    stage(&o, c->dtype, c->offset, B, Lq, Dv);
    for (size_t i = 0; i < q.count; ++i) q.logical[i] = rnd(&seed);
    for (size_t i = 0; i < k.count; ++i) k.logical[i] = rnd(&seed);
    if (c->value_dim) {
        stage(&h, c->dtype, c->offset, B, Lk, Dv);
        for (size_t i = 0; i < h.count; ++i) h.logical[i] = rnd(&seed);
    }
    if (c->nan_query_row >= 0 && (size_t)c->nan_query_row < Lq) q.logical[(size_t)c->nan_query_row * Dq] = NAN;
    if (c->nan_in_padding && c->key_lengths)
        for (size_t b = 0; b < B; ++b)
            for (size_t j = (size_t)(c->key_lengths[b] > 0 ? c->key_lengths[b] : 0); j < Lk; ++j) {
                k.logical[(b * Lk + j) * Dk] = NAN;
                if (c->value_dim) h.logical[(b * Lk + j) * Dv] = NAN;
            }
    stage_fill(&q);
    stage_fill(&k);
    if (c->value_dim) stage_fill(&h);

    /* Weights scaled by 1/sqrt(fan-in), so that the tanh layer is neither saturated nor flat. */
    const size_t wrows = c->score == CLATTN_SCORE_GENERAL ? Dq : Dq + Dk;
    const size_t wcols = c->score == CLATTN_SCORE_GENERAL ? Dk : A;
    float *wall = malloc((wrows * wcols + 1) * sizeof(float));
    float *vv = malloc((A + 1) * sizeof(float)), *bias = malloc((A + 1) * sizeof(float));
    for (size_t i = 0; i < wrows * wcols; ++i)
        wall[i] = rnd(&seed) / sqrtf((float)(i < Dq * wcols ? Dq : Dk)) * 0.8f;
    for (size_t i = 0; i < A; ++i) vv[i] = rnd(&seed) / sqrtf((float)A) * 2.0f;
    for (size_t i = 0; i < A; ++i) bias[i] = rnd(&seed) * 0.5f;
    clattn_seq2seq_weights_host wh = {0};
    if (c->score == CLATTN_SCORE_ADDITIVE) {
        wh.w_q = wall;
        wh.w_k = wall + Dq * A;
        wh.bias = c->bias ? bias : NULL;
    } else if (c->score != CLATTN_SCORE_DOT) {
        wh.w = wall;
    }
    if (hidden) wh.v = vv;

    const size_t mb = c->mask_bcast ? 1 : B, mq = c->mask_bcast_q ? 1 : Lq, mk = c->mask_bcast_k ? 1 : Lk;
    if (c->mask_kind) {
        stage(&m, c->mask_kind == S2S_MASK_BOOL ? CLATTN_DTYPE_BOOL : c->mask_dtype, c->offset, mb, mq, mk);
        for (size_t i = 0; i < m.count; ++i) {
            bool masked = (rnd(&seed) + 2.0f) / 4.0f < c->mask_fill_prob;
            if (c->masked_row >= 0 && mq == Lq && (size_t)c->masked_row == i / mk % mq) masked = true;
            float val = rnd(&seed);
            m.logical[i] = c->mask_kind == S2S_MASK_BOOL ? (masked ? 0.0f : 1.0f) : (masked ? -INFINITY : val);
        }
        stage_fill(&m);
    }
    if (c->want_weights) stage(&w, c->weights_dtype, c->offset, B, Lq, Lk);

    /* The reference. */
    double *ref_o = calloc(B * Lq * Dv + 1, sizeof(double)), *ref_w = calloc(B * Lq * Lk + 1, sizeof(double));
    uint8_t *bm = NULL;
    cla_ref_seq2seq r;
    memset(&r, 0, sizeof r);
    r.score = c->score;
    r.batch = B;
    r.q_len = Lq;
    r.kv_len = Lk;
    r.query_dim = Dq;
    r.key_dim = Dk;
    r.value_dim = Dv;
    r.attn_dim = A;
    r.query = q.logical;
    r.keys = k.logical;
    r.values = c->value_dim ? h.logical : NULL;
    r.w_q = wh.w_q;
    r.w_k = wh.w_k;
    r.w = wh.w;
    r.v = wh.v;
    r.bias = wh.bias;
    r.mask_batch = mb;
    r.mask_q_len = mq;
    r.mask_kv_len = mk;
    if (c->mask_kind == S2S_MASK_ADD) r.mask = m.logical;
    if (c->mask_kind == S2S_MASK_BOOL) {
        bm = malloc(m.count + 1);
        for (size_t i = 0; i < m.count; ++i) bm[i] = m.logical[i] != 0.0f;
        r.bool_mask = bm;
    }
    r.key_lengths = c->key_lengths;
    r.context = ref_o;
    r.weights = ref_w;
    int rc = 0;
    if (cla_reference_seq2seq(&r) != 0) {
        snprintf(err, err_size, "the reference failed");
        rc = -1;
    }

    /* The device run. */
    clattn_seq2seq_config cfg = {c->score, Dq, Dk, A};
    clattn_seq2seq_weights *dw = NULL;
    cl_mem bkl = NULL;
    if (!rc) {
        clattn_status st = clattn_seq2seq_weights_create(ctx, &cfg, &wh, &dw);
        if (st != CLATTN_SUCCESS) {
            snprintf(err, err_size, "clattn_seq2seq_weights_create: %s: %s", clattn_status_string(st),
                     clattn_context_last_error(ctx));
            rc = -1;
        }
    }
    if (!rc && (stage_upload(ctx, &q) || stage_upload(ctx, &k) || stage_upload(ctx, &o) ||
                (c->value_dim && stage_upload(ctx, &h)) || (c->mask_kind && stage_upload(ctx, &m)) ||
                (c->want_weights && stage_upload(ctx, &w)))) {
        snprintf(err, err_size, "creating the test's buffers failed");
        rc = -1;
    }
    clattn_seq2seq_desc desc;
    clattn_seq2seq_desc_init(&desc);
    if (c->mask_kind) desc.mask = m.view;
    if (c->want_weights) desc.weights = w.view;
    if (!rc && c->key_lengths) {
        int32_t *kl = calloc(B + 1, sizeof *kl);
        memcpy(kl, c->key_lengths, B * sizeof *kl);
        bkl = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                             (B + 1) * sizeof *kl, kl, NULL);
        free(kl);
        desc.key_lengths = bkl;
    }
    cl_mem kproj = NULL;
    if (!rc && c->project_keys && hidden) {
        /* Rows padded by 3 floats and a batch gap of one row, so that the strides are taken from the view. */
        const size_t ld = A + 3, bs = (Lk + 1) * ld;
        kproj = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, (B * bs + 1) * sizeof(float),
                               NULL, NULL);
        desc.key_projection = clattn_tensor_seq(kproj, CLATTN_DTYPE_F32, B, Lk, A);
        desc.key_projection.stride[2] = ld;
        desc.key_projection.stride[0] = bs;
        clattn_status st =
            kproj ? clattn_seq2seq_project_keys(ctx, dw, &k.view, &desc.key_projection, NULL, 0, NULL, NULL)
                  : CLATTN_ERROR_OUT_OF_HOST_MEMORY;
        if (st != CLATTN_SUCCESS) {
            snprintf(err, err_size, "clattn_seq2seq_project_keys: %s: %s", clattn_status_string(st),
                     clattn_context_last_error(ctx));
            rc = -1;
        }
    }
    if (!rc) {
        cl_event done = NULL;
        const clattn_tensor *values = c->value_dim ? &h.view : NULL;
        clattn_status st =
            c->host_projection && hidden
                ? run_kernel_only(ctx, dw, &desc, &q, &k, values, &o, wall, wall + Dq * A, vv, wh.bias, c, &done)
                : clattn_seq2seq_attention(ctx, dw, &desc, &q.view, &k.view, values, &o.view, NULL, 0, NULL, &done);
        if (st != CLATTN_SUCCESS) {
            char d[512];
            s2s_case_describe(c, d, sizeof d);
            snprintf(err, err_size, "clattn_seq2seq_attention: %s\n%s\n  case: %s", clattn_status_string(st),
                     clattn_context_last_error(ctx), d);
            rc = -1;
        } else if (!done || clWaitForEvents(1, &done) != CL_SUCCESS) {
            snprintf(err, err_size, "no event, or waiting for it failed");
            rc = -1;
        }
        if (done) clReleaseEvent(done);
    }
    if (!rc) rc = compare(ctx, c, &o, ref_o, "context", err, err_size);
    if (!rc && c->want_weights) rc = compare(ctx, c, &w, ref_w, "weights", err, err_size);

    clattn_seq2seq_weights_free(dw);
    if (bkl) clReleaseMemObject(bkl);
    if (kproj) clReleaseMemObject(kproj);
    stage_free(&q);
    stage_free(&k);
    stage_free(&o);
    stage_free(&h);
    stage_free(&m);
    stage_free(&w);
    free(wall);
    free(vv);
    free(bias);
    free(bm);
    free(ref_o);
    free(ref_w);
    return rc;
}

void s2s_case_run(clattn_context *ctx, const s2s_case *c) {
    char err[2048] = "";
    if (s2s_case_check(ctx, c, err, sizeof err) != 0) fail_msg("%s", err);
}
