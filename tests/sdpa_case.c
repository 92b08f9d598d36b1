/* The attention test harness (see sdpa_case.h). */
#include "sdpa_case.h"

#include <float.h>
#include <math.h>

#include "check_tolerance.h"
#include "dtype.h"
#include "internal.h"
#include "reference.h"

static int run_case(clattn_context *ctx, const sdpa_case *c, float **out_copy, char *err, size_t err_size);

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
    c->mask_neg_value = -INFINITY;
    c->seed = 1;
    c->nan_q_row = -1;
}

void sdpa_case_describe(const sdpa_case *c, char *buf, size_t size) {
    static const char *dt[] = {"f32", "f16", "bf16", "bool"};
    static const char *impl[] = {"auto", "fused", "unfused"};
    static const char *causal[] = {"none", "top-left", "bottom-right"};
    snprintf(
        buf, size,
        "B=%zu Hq=%zu Hkv=%zu Lq=%zu Lk=%zu D=%zu Dv=%zu %s %s off=%zu causal=%s window=(%lld,%lld) mask=%d%s%s "
        "kl=%s lse=%d w=%d impl=%s seed=%u",
        c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, c->head_dim,
        c->v_head_dim ? c->v_head_dim : c->head_dim, dt[c->dtype], c->layout ? "BLHD" : "BHLD", c->offset,
        causal[c->causal], (long long)c->window_left, (long long)c->window_right, c->mask_kind,
        c->mask_bcast_batch ? "/bcast-b" : "", c->mask_bcast_heads ? "/bcast-h" : "", c->key_lengths ? "yes" : "no",
        c->want_lse, c->want_weights, impl[c->impl], c->seed);
}

static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f; /* [-2, 2) */
}

/* A tensor in host memory, laid out as the device will see it: `offset` elements, the view, then a canary. */
typedef struct staged {
    clattn_tensor view; /* buffer filled in later */
    size_t total;       /* elements in the buffer */
    unsigned char *bytes;
    float *logical; /* [B,H,L,D] contiguous floats as rounded to the dtype */
} staged;

static size_t view_index(const clattn_tensor *t, size_t b, size_t h, size_t l, size_t d) {
    return t->offset + b * t->stride[0] + h * t->stride[1] + l * t->stride[2] + d * t->stride[3];
}

static void stage(staged *s, clattn_dtype dt, int layout, size_t offset, size_t B, size_t H, size_t L, size_t D) {
    s->view =
        layout == LAYOUT_BLHD ? clattn_tensor_blhd(NULL, dt, B, H, L, D) : clattn_tensor_bhld(NULL, dt, B, H, L, D);
    s->view.offset = offset;
    s->total = offset + B * H * L * D + CANARY_ELEMS;
    s->bytes = malloc(s->total * clattn_dtype_size(dt));
    memset(s->bytes, POISON_BYTE, s->total * clattn_dtype_size(dt));
    s->logical = calloc(B * H * L * D + 1, sizeof(float));
}

/* Writes logical values into the staged bytes (rounded to the dtype) and keeps the rounded values. */
static void stage_fill(staged *s) {
    const clattn_tensor *t = &s->view;
    size_t n = 0;
    for (size_t b = 0; b < t->size[0]; ++b)
        for (size_t h = 0; h < t->size[1]; ++h)
            for (size_t l = 0; l < t->size[2]; ++l)
                for (size_t d = 0; d < t->size[3]; ++d, ++n) {
                    float x = cla_round_to_dtype(s->logical[n], t->dtype);
                    s->logical[n] = x;
                    size_t at = view_index(t, b, h, l, d);
                    cla_convert_to_storage(&x, s->bytes + at * clattn_dtype_size(t->dtype), 1, t->dtype);
                }
}

static cl_mem upload(clattn_context *ctx, const staged *s) {
    cl_int err;
    size_t bytes = s->total * clattn_dtype_size(s->view.dtype);
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                              s->bytes, &err);
    return err == CL_SUCCESS ? m : NULL;
}

static void stage_free(staged *s) {
    free(s->bytes);
    free(s->logical);
}

/* Tolerance for one element: grows with the reduction length, plus the output storage rounding. */
static double tolerance(const sdpa_case *c, clattn_dtype out_dt, double ref) {
    double rel = check_sdpa_rel_tolerance(c->kv_len);
    /* A logit stored in fp32 carries an error proportional to its size, and a large additive mask sets the size. */
    rel += 4.0 * fabs(c->mask_constant) * FLT_EPSILON;
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

/* Reads an output back and checks the view against `ref` and the bytes outside the view for poison. Returns 0, or
 * -1 with a message in err. */
static int check_output(clattn_context *ctx, const sdpa_case *c, cl_mem buf, const staged *s, const double *ref,
                        const char *name, float **copy, char *err, size_t err_size) {
    const clattn_tensor *t = &s->view;
    size_t esize = clattn_dtype_size(t->dtype);
    size_t bytes = s->total * esize;
    unsigned char *got = malloc(bytes);
    unsigned char *inside = calloc(s->total, 1);
    float *values = copy ? malloc((cla_tensor_elements(t) + 1) * sizeof(float)) : NULL;
    char desc[512];
    sdpa_case_describe(c, desc, sizeof desc);
    int rc = 0;
    if (clEnqueueReadBuffer(clattn_context_cl_queue(ctx), buf, CL_TRUE, 0, bytes, got, 0, NULL, NULL) !=
        CL_SUCCESS) {
        snprintf(err, err_size, "%s: reading the output back failed", name);
        rc = -1;
    }
    size_t n = 0;
    for (size_t b = 0; b < t->size[0] && !rc; ++b)
        for (size_t h = 0; h < t->size[1] && !rc; ++h)
            for (size_t l = 0; l < t->size[2] && !rc; ++l)
                for (size_t d = 0; d < t->size[3] && !rc; ++d, ++n) {
                    size_t at = view_index(t, b, h, l, d);
                    inside[at] = 1;
                    float x;
                    cla_convert_from_storage(got + at * esize, &x, 1, t->dtype);
                    if (values) values[n] = x;
                    double tol = tolerance(c, t->dtype, ref[n]);
                    if (strcmp(name, "lse") == 0) tol *= 4.0;
                    if (!same_or_close(x, ref[n], tol)) {
                        snprintf(err, err_size,
                                 "%s[%zu,%zu,%zu,%zu] = %.9g, reference %.9g (tolerance %.3g)\n  case: %s", name, b,
                                 h, l, d, x, ref[n], tol, desc);
                        rc = -1;
                    }
                }
    /* Bytes outside the view (the offset region, the canary, gaps of strided layouts) must keep the poison. */
    for (size_t i = 0; i < s->total && !rc; ++i) {
        if (inside[i]) continue;
        for (size_t k = 0; k < esize; ++k)
            if (got[i * esize + k] != POISON_BYTE) {
                snprintf(err, err_size,
                         "%s: element %zu outside the view (offset %zu, %zu elements, canary after) was written\n  "
                         "case: %s",
                         name, i, t->offset, cla_tensor_elements(t), desc);
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

int sdpa_case_check(clattn_context *ctx, const sdpa_case *c, char *err, size_t err_size) {
    return run_case(ctx, c, NULL, err, err_size);
}

void sdpa_case_run(clattn_context *ctx, const sdpa_case *c, float **out_copy) {
    char err[2048] = "";
    if (run_case(ctx, c, out_copy, err, sizeof err) != 0) fail_msg("%s", err);
}

static int run_case(clattn_context *ctx, const sdpa_case *c, float **out_copy, char *err, size_t err_size) {
    const size_t B = c->batch, Hq = c->q_heads, Hkv = c->kv_heads, Lq = c->q_len, Lk = c->kv_len;
    const size_t Dk = c->head_dim, Dv = c->v_head_dim ? c->v_head_dim : c->head_dim;
    unsigned seed = c->seed * 2654435761u + 17;
    staged q, k, v, o, mask, lse, w;
    stage(&q, c->dtype, c->layout, c->offset, B, Hq, Lq, Dk);
    stage(&k, c->dtype, c->layout, c->offset, B, Hkv, Lk, Dk);
    stage(&v, c->dtype, c->layout, c->offset, B, Hkv, Lk, Dv);
    stage(&o, c->dtype, c->layout, c->offset, B, Hq, Lq, Dv);
    float qs = c->input_scale > 0 ? c->input_scale : 1.0f;
    for (size_t i = 0; i < B * Hq * Lq * Dk; ++i) q.logical[i] = rnd(&seed) * qs;
    for (size_t i = 0; i < B * Hkv * Lk * Dk; ++i) k.logical[i] = rnd(&seed);
    for (size_t i = 0; i < B * Hkv * Lk * Dv; ++i) v.logical[i] = rnd(&seed);
    if (c->nan_q_row >= 0 && (size_t)c->nan_q_row < Lq && Dk) q.logical[(size_t)c->nan_q_row * Dk] = NAN;
    if (c->nan_in_padding && c->key_lengths)
        for (size_t b = 0; b < B; ++b)
            for (size_t h = 0; h < Hkv; ++h)
                for (size_t j = (size_t)(c->key_lengths[b] < 0 ? 0 : c->key_lengths[b]); j < Lk; ++j) {
                    k.logical[((b * Hkv + h) * Lk + j) * Dk] = NAN;
                    v.logical[((b * Hkv + h) * Lk + j) * Dv] = NAN;
                }
    stage_fill(&q);
    stage_fill(&k);
    stage_fill(&v);

    const size_t mb = c->mask_bcast_batch ? 1 : B, mh = c->mask_bcast_heads ? 1 : Hq;
    if (c->mask_kind) {
        clattn_dtype mdt = c->mask_kind == MASK_BOOL ? CLATTN_DTYPE_BOOL : c->mask_dtype;
        stage(&mask, mdt, LAYOUT_BHLD, c->offset, mb, mh, Lq, Lk);
        for (size_t i = 0; i < mb * mh * Lq * Lk; ++i) {
            bool masked = ((rnd(&seed) + 2.0f) / 4.0f) < c->mask_fill_prob;
            float val = c->mask_constant != 0.0f ? c->mask_constant : rnd(&seed);
            mask.logical[i] =
                c->mask_kind == MASK_BOOL ? (masked ? 0.0f : 1.0f) : (masked ? c->mask_neg_value : val);
        }
        if (c->mask_kind == MASK_BOOL) {
            for (size_t i = 0; i < mb * mh * Lq * Lk; ++i) mask.bytes[c->offset + i] = mask.logical[i] != 0.0f;
        } else {
            stage_fill(&mask);
        }
    }
    if (c->want_lse) stage(&lse, CLATTN_DTYPE_F32, LAYOUT_BHLD, c->offset, B, Hq, Lq, 1);
    if (c->want_weights) stage(&w, CLATTN_DTYPE_F32, LAYOUT_BHLD, c->offset, B, Hq, Lq, Lk);

    /* The reference. */
    double *ref_out = calloc(B * Hq * Lq * Dv + 1, sizeof(double));
    double *ref_lse = calloc(B * Hq * Lq + 1, sizeof(double));
    double *ref_w = calloc(B * Hq * Lq * Lk + 1, sizeof(double));
    cla_ref_sdpa r;
    memset(&r, 0, sizeof r);
    r.q = cla_ref_dense(q.logical, B, Hq, Lq, Dk);
    r.k = cla_ref_dense(k.logical, B, Hkv, Lk, Dk);
    r.v = cla_ref_dense(v.logical, B, Hkv, Lk, Dv);
    r.scale = isnan(c->scale) ? 1.0 / sqrt((double)Dk) : (double)c->scale;
    r.causal = c->causal;
    r.window_left = c->window_left;
    r.window_right = c->window_right;
    uint8_t *bool_vals = NULL;
    if (c->mask_kind == MASK_ADD) {
        r.mask.data = mask.logical;
        size_t sz[4] = {mb, mh, Lq, Lk};
        size_t sd[4] = {c->mask_bcast_batch ? 0 : mh * Lq * Lk, c->mask_bcast_heads ? 0 : Lq * Lk, Lk, 1};
        memcpy(r.mask.size, sz, sizeof sz);
        memcpy(r.mask.stride, sd, sizeof sd);
    } else if (c->mask_kind == MASK_BOOL) {
        bool_vals = malloc(mb * mh * Lq * Lk + 1);
        for (size_t i = 0; i < mb * mh * Lq * Lk; ++i) bool_vals[i] = mask.logical[i] != 0.0f;
        r.bool_mask.data = bool_vals;
        size_t sz[4] = {mb, mh, Lq, Lk};
        size_t sd[4] = {c->mask_bcast_batch ? 0 : mh * Lq * Lk, c->mask_bcast_heads ? 0 : Lq * Lk, Lk, 1};
        memcpy(r.bool_mask.size, sz, sizeof sz);
        memcpy(r.bool_mask.stride, sd, sizeof sd);
    }
    r.key_lengths = c->key_lengths;
    r.out = ref_out;
    r.lse = ref_lse;
    r.weights = ref_w;
    int rc = 0;
    if (cla_reference_sdpa(&r) != 0) {
        snprintf(err, err_size, "the reference failed (out of memory?)");
        rc = -1;
    }

    /* The device run. */
    cl_mem bq = upload(ctx, &q), bk = upload(ctx, &k), bv = upload(ctx, &v), bo = upload(ctx, &o);
    cl_mem bm = NULL, bl = NULL, bw = NULL, bkl = NULL;
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.scale = c->scale;
    desc.causal = c->causal;
    desc.window_left = c->window_left;
    desc.window_right = c->window_right;
    desc.impl = c->impl;
    if (c->mask_kind) {
        bm = upload(ctx, &mask);
        desc.mask = mask.view;
        desc.mask.buffer = bm;
    }
    if (c->key_lengths) {
        /* A private copy with one spare element: OpenCL has no empty buffers. */
        int32_t *kl = calloc(B + 1, sizeof *kl);
        memcpy(kl, c->key_lengths, B * sizeof *kl);
        bkl = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                             (B + 1) * sizeof(int32_t), kl, NULL);
        free(kl);
        desc.key_lengths = bkl;
    }
    if (c->want_lse) {
        bl = upload(ctx, &lse);
        desc.lse = lse.view;
        desc.lse.buffer = bl;
    }
    if (c->want_weights) {
        bw = upload(ctx, &w);
        desc.weights = w.view;
        desc.weights.buffer = bw;
    }
    clattn_tensor tq = q.view, tk = k.view, tv = v.view, to = o.view;
    tq.buffer = bq;
    tk.buffer = bk;
    tv.buffer = bv;
    to.buffer = bo;
    cl_event done = NULL;
    if (!rc && (!bq || !bk || !bv || !bo || (c->mask_kind && !bm) || (c->key_lengths && !bkl) ||
                (c->want_lse && !bl) || (c->want_weights && !bw))) {
        snprintf(err, err_size, "creating the test's device buffers failed");
        rc = -1;
    }
    if (!rc) {
        clattn_status status = clattn_sdpa(ctx, &desc, &tq, &tk, &tv, &to, NULL, 0, NULL, &done);
        if (status != CLATTN_SUCCESS) {
            char d[512];
            sdpa_case_describe(c, d, sizeof d);
            snprintf(err, err_size, "clattn_sdpa: %s\n%s\n  case: %s", clattn_status_string(status),
                     clattn_context_last_error(ctx), d);
            rc = -1;
        } else if (!done || clWaitForEvents(1, &done) != CL_SUCCESS) {
            snprintf(err, err_size, "clattn_sdpa returned no event, or waiting for it failed");
            rc = -1;
        }
        if (done) clReleaseEvent(done);
    }
    if (!rc) rc = check_output(ctx, c, bo, &o, ref_out, "out", out_copy, err, err_size);
    if (!rc && c->want_lse) rc = check_output(ctx, c, bl, &lse, ref_lse, "lse", NULL, err, err_size);
    if (!rc && c->want_weights) rc = check_output(ctx, c, bw, &w, ref_w, "weights", NULL, err, err_size);

    cl_mem all[] = {bq, bk, bv, bo, bm, bl, bw, bkl};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        if (all[i]) clReleaseMemObject(all[i]);
    stage_free(&q);
    stage_free(&k);
    stage_free(&v);
    stage_free(&o);
    if (c->mask_kind) stage_free(&mask);
    if (c->want_lse) stage_free(&lse);
    if (c->want_weights) stage_free(&w);
    free(bool_vals);
    free(ref_out);
    free(ref_lse);
    free(ref_w);
    return rc;
}
