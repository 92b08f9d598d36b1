// SPDX-License-Identifier: Apache-2.0
/* The multi-head attention test harness (see mha_case.h). */
#include "mha_case.h"

#include <math.h>

#include "check_tolerance.h"
#include "dtype.h"
#include "internal.h"
#include "reference_mha.h"

#define CANARY 32 /* poisoned elements around each view */

float mha_rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / (float)(1u << 24)) * 4.0f - 2.0f; /* [-2, 2) */
}

float *mha_rand_array(size_t n, float scale, unsigned *seed) {
    float *a = malloc((n + 1) * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; ++i) a[i] = mha_rnd(seed) * scale;
    return a;
}

cl_mem mha_buffer(clattn_context *ctx, size_t bytes, const void *host) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)host, &err);
    if (err != CL_SUCCESS) fail_msg("clCreateBuffer(%zu bytes) failed: %d", bytes, err);
    return m;
}

/* ---- a layer's host weights ---- */

void mha_layer_make(clattn_context *ctx, mha_layer *l, const clattn_mha_config *cfg, bool packed, bool bias,
                    unsigned seed) {
    memset(l, 0, sizeof *l);
    clattn_mha_config c = *cfg;
    if (!c.kv_d_model) c.kv_d_model = c.d_model;
    if (!c.kv_heads) c.kv_heads = c.heads;
    if (!c.v_head_dim) c.v_head_dim = c.head_dim;
    l->cfg = c;
    const size_t nq = c.heads * c.head_dim, nk = c.kv_heads * c.head_dim, nv = c.kv_heads * c.v_head_dim;
    const float sm = 1.0f / sqrtf((float)c.d_model), sk = 1.0f / sqrtf((float)c.kv_d_model);
    unsigned s = seed * 7919u + 3;
    clattn_mha_weights_host_init(&l->host);
    if (packed) {
        l->host.w_qkv = l->w[W_QKV] = mha_rand_array(c.d_model * (nq + nk + nv), sm, &s);
        if (bias) l->host.b_qkv = l->w[B_QKV] = mha_rand_array(nq + nk + nv, 0.5f, &s);
    } else {
        l->host.w_q = l->w[W_Q] = mha_rand_array(c.d_model * nq, sm, &s);
        l->host.w_k = l->w[W_K] = mha_rand_array(c.kv_d_model * nk, sk, &s);
        l->host.w_v = l->w[W_V] = mha_rand_array(c.kv_d_model * nv, sk, &s);
        if (bias) {
            l->host.b_q = l->w[B_Q] = mha_rand_array(nq, 0.5f, &s);
            l->host.b_k = l->w[B_K] = mha_rand_array(nk, 0.5f, &s);
            l->host.b_v = l->w[B_V] = mha_rand_array(nv, 0.5f, &s);
        }
    }
    l->host.w_o = l->w[W_O] = mha_rand_array(c.heads * c.v_head_dim * c.d_model, 1.0f / sqrtf((float)nv), &s);
    if (bias) l->host.b_o = l->w[B_O] = mha_rand_array(c.d_model, 0.5f, &s);
    assert_status(clattn_mha_weights_create(ctx, cfg, &l->host, &l->dev), CLATTN_SUCCESS);
}

void mha_layer_free(mha_layer *l) {
    clattn_mha_weights_free(l->dev);
    for (int i = 0; i < W_COUNT; ++i) free(l->w[i]);
    memset(l, 0, sizeof *l);
}

/* ---- sequence tensors on the device ---- */

void seq_release(dev_seq *s) {
    if (s->t.buffer) clReleaseMemObject(s->t.buffer);
    s->t.buffer = NULL;
}

dev_seq seq_make(clattn_context *ctx, clattn_dtype dt, size_t B, size_t L, size_t W, size_t offset, float *values) {
    dev_seq s;
    s.t = clattn_tensor_seq(NULL, dt, B, L, W);
    s.t.offset = offset;
    test_view_window(&s.t, CANARY, &s.first, &s.count, &s.total);
    const size_t es = clattn_dtype_size(dt);
    unsigned char *bytes = malloc(s.count * es);
    assert_non_null(bytes);
    memset(bytes, MHA_POISON_BYTE, s.count * es);
    if (values)
        for (size_t i = 0; i < B * L * W; ++i) {
            values[i] = cla_round_to_dtype(values[i], dt);
            cla_convert_to_storage(&values[i], bytes + (offset - s.first + i) * es, 1, dt);
        }
    s.t.buffer = test_upload_window(ctx, s.total * es, s.first * es, bytes, s.count * es);
    if (!s.t.buffer) fail_msg("creating a buffer of %zu bytes failed", s.total * es);
    free(bytes);
    return s;
}

/* The window's bytes (malloc'd). */
static unsigned char *read_window(clattn_context *ctx, const dev_seq *s) {
    const size_t es = clattn_dtype_size(s->t.dtype);
    unsigned char *bytes = malloc(s->count * es + 1);
    assert_non_null(bytes);
    assert_int_equal(test_read_window(ctx, s->t.buffer, s->first * es, s->count * es, bytes), 0);
    return bytes;
}

bool seq_read(clattn_context *ctx, const dev_seq *s, float *values) {
    const size_t es = clattn_dtype_size(s->t.dtype), n = cla_tensor_elements(&s->t);
    const size_t view = (s->t.offset - s->first) * es;
    unsigned char *bytes = read_window(ctx, s);
    if (values) cla_convert_from_storage(bytes + view, values, n, s->t.dtype);
    bool clean = true;
    for (size_t i = 0; i < s->count * es; ++i) {
        bool inside = i >= view && i < view + n * es;
        if (!inside && bytes[i] != MHA_POISON_BYTE) clean = false;
    }
    free(bytes);
    return clean;
}

bool seq_untouched(clattn_context *ctx, const dev_seq *s) {
    const size_t es = clattn_dtype_size(s->t.dtype);
    unsigned char *bytes = read_window(ctx, s);
    bool clean = true;
    for (size_t i = 0; i < s->count * es; ++i) clean = clean && bytes[i] == MHA_POISON_BYTE;
    free(bytes);
    return clean;
}

/* ---- comparison with the reference ---- */

void expect_close(const char *what, const float *got, const double *ref, size_t n, double rel, clattn_dtype dt,
                  const char *desc) {
    double scale = 1.0;
    for (size_t i = 0; i < n; ++i)
        if (isfinite(ref[i]) && fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; ++i) {
        double tol = 1e-5 + rel * scale + check_storage_rel_tolerance(dt) * fabs(ref[i]);
        bool ok = isinf(ref[i]) ? (double)got[i] == ref[i] : !isnan(got[i]) && fabs(got[i] - ref[i]) <= tol;
        if (!ok)
            fail_msg("%s[%zu] = %.9g, reference %.9g (tolerance %.3g)\n  case: %s", what, i, got[i], ref[i], tol,
                     desc);
    }
}

void mha_run_ok(clattn_context *ctx, const clattn_mha_weights *w, const clattn_mha_desc *desc,
                const clattn_tensor *x, const clattn_tensor *memory, const clattn_tensor *out) {
    cl_event done = NULL;
    clattn_status st = clattn_mha(ctx, w, desc, x, memory, out, NULL, 0, NULL, &done);
    if (st != CLATTN_SUCCESS)
        fail_msg("clattn_mha: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
}

/* ---- one layer call described as a case ---- */

void mha_case_init(mha_case *c) {
    memset(c, 0, sizeof *c);
    c->cfg.d_model = 16;
    c->cfg.heads = 2;
    c->cfg.head_dim = 8;
    c->batch = 2;
    c->q_len = 5;
    c->mem_len = 6;
    c->x_dtype = c->out_dtype = CLATTN_DTYPE_F32;
    c->window_left = c->window_right = CLATTN_WINDOW_UNBOUNDED;
    c->seed = 1;
}

void mha_case_describe(const mha_case *c, char *buf, size_t size) {
    static const char *dt[] = {"f32", "f16", "bf16"};
    snprintf(
        buf, size,
        "B=%zu Lq=%zu %s Lm=%zu d_model=%zu kv_d_model=%zu H=%zu Hkv=%zu dk=%zu dv=%zu %s bias=%d residual=%d "
        "in_place=%d x=%s out=%s causal=%d window=(%lld,%lld) mask=%d%s/dims%x kl=%d lse=%d weights=%d impl=%d "
        "softcap=%g sinks=%d alibi=%d user_mods=%d",
        c->batch, c->q_len, c->cross ? "cross" : "self", c->mem_len, c->cfg.d_model, c->cfg.kv_d_model,
        c->cfg.heads, c->cfg.kv_heads, c->cfg.head_dim, c->cfg.v_head_dim, c->packed ? "packed" : "separate",
        c->bias, c->residual, c->in_place, dt[c->x_dtype], dt[c->out_dtype], (int)c->causal,
        (long long)c->window_left, (long long)c->window_right, c->mask, c->mask_bcast ? "/bcast" : "",
        c->mask_bcast_dims, c->key_lengths, c->lse, c->weights, (int)c->impl, (double)c->softcap, c->sinks,
        c->alibi, c->user_mods);
    if (c->sample_rows) snprintf(buf + strlen(buf), size - strlen(buf), " sample=%zu", c->sample_rows);
}

/* The reference of the sampled output rows (flat b * Lq + i, sorted) into ref_out [n][d_model]: per batch item, its
 * sampled rows of x attend over all of its key/value rows (x itself, or the memory), which is the layer's result
 * for them when a row's attention does not depend on its position. */
static void sampled_reference(const cla_ref_mha *all, const mha_case *c, const size_t *rows, size_t n,
                              double *ref_out) {
    const size_t d = all->config.d_model, Lq = c->q_len, Lk = c->cross ? c->mem_len : Lq;
    const size_t kv_width = all->config.kv_d_model ? all->config.kv_d_model : d;
    float *xs = malloc((n * d + 1) * sizeof *xs);
    assert_non_null(xs);
    for (size_t r0 = 0; r0 < n;) {
        const size_t b = rows[r0] / Lq;
        size_t r1 = r0;
        for (; r1 < n && rows[r1] / Lq == b; ++r1)
            memcpy(xs + (r1 - r0) * d, all->x + rows[r1] * d, d * sizeof *xs);
        cla_ref_mha one = *all;
        one.batch = 1;
        one.q_len = r1 - r0;
        one.x = xs;
        one.memory = c->cross ? all->memory + b * Lk * kv_width : all->x + b * Lq * d;
        one.memory_len = Lk;
        if (all->attention.key_lengths) one.attention.key_lengths = all->attention.key_lengths + b;
        one.out = ref_out + r0 * d;
        assert_int_equal(cla_reference_mha(&one), 0);
        r0 = r1;
    }
    free(xs);
}

void mha_case_run(clattn_context *ctx, const mha_case *c) {
    char desc_text[512];
    mha_case_describe(c, desc_text, sizeof desc_text);
    mha_layer l;
    mha_layer_make(ctx, &l, &c->cfg, c->packed, c->bias, c->seed);
    const clattn_mha_config *cf = &l.cfg;
    const size_t B = c->batch, Lq = c->q_len, Lk = c->cross ? c->mem_len : Lq, H = cf->heads;
    unsigned seed = c->seed * 2654435761u + 11;

    float *x = mha_rand_array(B * Lq * cf->d_model, 1.0f, &seed);
    float *mem = c->cross ? mha_rand_array(B * Lk * cf->kv_d_model, 1.0f, &seed) : NULL;
    dev_seq dx = seq_make(ctx, c->x_dtype, B, Lq, cf->d_model, c->offset, x);
    dev_seq dm = {0};
    if (c->cross) dm = seq_make(ctx, c->x_dtype, B, Lk, cf->kv_d_model, c->offset, mem);
    dev_seq dout = c->in_place ? dx : seq_make(ctx, c->out_dtype, B, Lq, cf->d_model, c->offset, NULL);

    clattn_mha_desc desc;
    clattn_mha_desc_init(&desc);
    desc.residual = c->residual;
    desc.attention.causal = c->causal;
    desc.attention.window_left = c->window_left;
    desc.attention.window_right = c->window_right;
    desc.attention.impl = c->impl;

    cla_ref_mha ref;
    memset(&ref, 0, sizeof ref);
    ref.config = c->cfg;
    ref.weights = l.host;
    ref.batch = B;
    ref.q_len = Lq;
    ref.x = x;
    ref.memory = mem;
    ref.memory_len = c->cross ? Lk : 0;
    ref.residual = c->residual;
    ref.attention.scale = NAN;
    ref.attention.causal = c->causal;
    ref.attention.window_left = c->window_left;
    ref.attention.window_right = c->window_right;

    /* Masks of sizes msize: 1 in each dimension they broadcast over, contiguous. */
    const size_t full[4] = {B, H, Lq, Lk};
    size_t msize[4], mstride[4], mn = 1;
    for (int d = 3; d >= 0; --d) {
        msize[d] = (c->mask_bcast && d < 2) || (c->mask_bcast_dims >> d & 1u) ? 1 : full[d];
        mstride[d] = mn;
        mn *= msize[d];
    }
    float *mask = NULL;
    uint8_t *bmask = NULL;
    cl_mem mask_buf = NULL, kl_buf = NULL;
    int32_t *kl = NULL;
    if (c->mask == MHA_MASK_ADD) {
        mask = mha_rand_array(mn, 1.0f, &seed);
        for (size_t i = 0; i < mn; ++i)
            if (mha_rnd(&seed) < -1.2f) mask[i] = -INFINITY;
        mask_buf = mha_buffer(ctx, mn * sizeof(float), mask);
        desc.attention.mask =
            clattn_tensor_bhld(mask_buf, CLATTN_DTYPE_F32, msize[0], msize[1], msize[2], msize[3]);
        ref.attention.mask.data = mask;
        memcpy(ref.attention.mask.size, msize, sizeof msize);
        memcpy(ref.attention.mask.stride, mstride, sizeof mstride);
    } else if (c->mask == MHA_MASK_BOOL) {
        bmask = malloc(mn + 1);
        for (size_t i = 0; i < mn; ++i) bmask[i] = mha_rnd(&seed) > -1.0f;
        mask_buf = mha_buffer(ctx, mn, bmask);
        desc.attention.mask =
            clattn_tensor_bhld(mask_buf, CLATTN_DTYPE_BOOL, msize[0], msize[1], msize[2], msize[3]);
        ref.attention.bool_mask.data = bmask;
        memcpy(ref.attention.bool_mask.size, msize, sizeof msize);
        memcpy(ref.attention.bool_mask.stride, mstride, sizeof mstride);
    }
    if (c->key_lengths) {
        /* Every second item padded, and the second one fully (no keys: the attention gives zeros). */
        kl = calloc(B + 1, sizeof *kl);
        for (size_t b = 0; b < B; ++b) kl[b] = b == 1 ? 0 : (int32_t)(Lk > 2 * b ? Lk - 2 * b : 1);
        kl_buf = mha_buffer(ctx, (B + 1) * sizeof *kl, kl);
        desc.attention.key_lengths = kl_buf;
        ref.attention.key_lengths = kl;
    }
    desc.attention.softcap = c->softcap;
    ref.attention.softcap = c->softcap;
    float head_values[2][64];
    cl_mem head_bufs[2] = {NULL, NULL};
    const bool wanted[2] = {c->sinks, c->alibi};
    assert_true(H <= 64);
    for (int m = 0; m < 2; ++m) {
        if (!wanted[m]) continue;
        for (size_t h = 0; h < H; ++h) head_values[m][h] = m == 0 ? 1.5f - (float)h : 0.25f / (float)(h + 1);
        head_bufs[m] = mha_buffer(ctx, H * sizeof(float), head_values[m]);
        clattn_tensor *t = m == 0 ? &desc.attention.sinks : &desc.attention.alibi_slopes;
        *t = clattn_tensor_bhld(head_bufs[m], CLATTN_DTYPE_F32, 1, H, 1, 1);
        *(m == 0 ? &ref.attention.sinks : &ref.attention.alibi_slopes) = head_values[m];
    }
    /* The user mods: slopes as for c->alibi; documents of 3 query rows and 4 keys (self-attention: 3 keys). */
    uint8_t *doc_mask = NULL;
    cl_mem mod_bufs[2] = {NULL, NULL};
    char mask_expr[64];
    if (c->user_mods) {
        if (c->alibi || c->mask || (c->causal == CLATTN_CAUSAL_BOTTOM_RIGHT && Lq != Lk))
            fail_msg("user_mods replaces alibi and mask, aligned top-left\n  case: %s", desc_text);
        for (size_t h = 0; h < H; ++h) head_values[1][h] = 0.25f / (float)(h + 1);
        int32_t *doc = malloc((Lq + Lk + 1) * sizeof *doc);
        assert_non_null(doc);
        for (size_t i = 0; i < Lq; ++i) doc[i] = (int32_t)(i / 3);
        for (size_t j = 0; j < Lk; ++j) doc[Lq + j] = (int32_t)(j / (c->cross ? 4 : 3));
        doc_mask = malloc(B * H * Lq * Lk + 1);
        assert_non_null(doc_mask);
        for (size_t r = 0; r < B * H * Lq; ++r)
            for (size_t j = 0; j < Lk; ++j) doc_mask[r * Lk + j] = doc[r % Lq] == doc[Lq + j];
        mod_bufs[0] = mha_buffer(ctx, H * sizeof(float), head_values[1]);
        mod_bufs[1] = mha_buffer(ctx, (Lq + Lk + 1) * sizeof *doc, doc);
        free(doc);
        snprintf(mask_expr, sizeof mask_expr, "doc[q_idx] == doc[%zu + kv_idx]", Lq);
        desc.attention.score_mod = "score - slopes[h] * (float)abs(q_idx - kv_idx)";
        desc.attention.mask_mod = mask_expr;
        desc.attention.mod_buffers[0] = (clattn_mod_buffer){"slopes", mod_bufs[0], CLATTN_MOD_F32, H};
        desc.attention.mod_buffers[1] = (clattn_mod_buffer){"doc", mod_bufs[1], CLATTN_MOD_I32, Lq + Lk};
        ref.attention.alibi_slopes = head_values[1];
        ref.attention.bool_mask.data = doc_mask;
        const size_t dsize[4] = {B, H, Lq, Lk}, dstride[4] = {H * Lq * Lk, Lq * Lk, Lk, 1};
        memcpy(ref.attention.bool_mask.size, dsize, sizeof dsize);
        memcpy(ref.attention.bool_mask.stride, dstride, sizeof dstride);
    }
    dev_seq dlse = {0}, dw = {0};
    double *ref_lse = NULL, *ref_w = NULL;
    if (c->lse) {
        dlse = seq_make(ctx, CLATTN_DTYPE_F32, B * H, Lq, 1, 0, NULL);
        desc.attention.lse = clattn_tensor_bhld(dlse.t.buffer, CLATTN_DTYPE_F32, B, H, Lq, 1);
        ref.attention.lse = ref_lse = calloc(B * H * Lq + 1, sizeof(double));
    }
    if (c->weights) {
        dw = seq_make(ctx, CLATTN_DTYPE_F32, B * H, Lq, Lk, 0, NULL);
        desc.attention.weights = clattn_tensor_bhld(dw.t.buffer, CLATTN_DTYPE_F32, B, H, Lq, Lk);
        ref.attention.weights = ref_w = calloc(B * H * Lq * Lk + 1, sizeof(double));
    }

    size_t *rows = NULL, n_rows = B * Lq;
    if (c->sample_rows) {
        if (c->causal || c->window_left >= 0 || c->window_right >= 0 || c->mask || c->lse || c->weights ||
            c->user_mods)
            fail_msg("a sampled case needs rows whose attention does not depend on their position\n  case: %s",
                     desc_text);
        n_rows = test_sample_rows(B, Lq, c->sample_rows, c->seed, &rows);
    }
    double *ref_out = calloc(n_rows * cf->d_model + 1, sizeof(double));
    assert_non_null(ref_out);
    ref.out = ref_out;
    if (rows)
        sampled_reference(&ref, c, rows, n_rows, ref_out);
    else
        assert_int_equal(cla_reference_mha(&ref), 0);

    cl_event done = NULL;
    clattn_status st = clattn_mha(ctx, l.dev, &desc, &dx.t, c->cross ? &dm.t : NULL, &dout.t, NULL, 0, NULL, &done);
    if (st != CLATTN_SUCCESS)
        fail_msg("clattn_mha: %s: %s\n  case: %s", clattn_status_string(st), clattn_context_last_error(ctx),
                 desc_text);
    assert_non_null(done);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);

    const double rel = check_mha_rel_tolerance(cf, Lk);
    float *got = malloc((B * Lq * cf->d_model + 1) * sizeof *got);
    if (!seq_read(ctx, &dout, got)) fail_msg("out: bytes outside the view were written\n  case: %s", desc_text);
    /* The compared rows, in the reference's order. */
    for (size_t r = 0; rows && r < n_rows; ++r)
        memmove(got + r * cf->d_model, got + rows[r] * cf->d_model, cf->d_model * sizeof *got);
    expect_close("out", got, ref_out, n_rows * cf->d_model, rel, dout.t.dtype, desc_text);
    if (c->lse) {
        float *g = malloc((B * H * Lq + 1) * sizeof *g);
        if (!seq_read(ctx, &dlse, g)) fail_msg("lse: bytes outside the view were written\n  case: %s", desc_text);
        expect_close("lse", g, ref_lse, B * H * Lq, 4 * rel, CLATTN_DTYPE_F32, desc_text);
        free(g);
    }
    if (c->weights) {
        float *g = malloc((B * H * Lq * Lk + 1) * sizeof *g);
        if (!seq_read(ctx, &dw, g)) fail_msg("weights: bytes outside the view were written\n  case: %s", desc_text);
        expect_close("weights", g, ref_w, B * H * Lq * Lk, rel, CLATTN_DTYPE_F32, desc_text);
        free(g);
    }

    free(got);
    free(rows);
    free(ref_out);
    free(ref_lse);
    free(ref_w);
    free(x);
    free(mem);
    free(mask);
    free(bmask);
    free(kl);
    if (mask_buf) clReleaseMemObject(mask_buf);
    if (kl_buf) clReleaseMemObject(kl_buf);
    for (int m = 0; m < 2; ++m) {
        if (head_bufs[m]) clReleaseMemObject(head_bufs[m]);
        if (mod_bufs[m]) clReleaseMemObject(mod_bufs[m]);
    }
    free(doc_mask);
    seq_release(&dlse);
    seq_release(&dw);
    if (!c->in_place) seq_release(&dout);
    seq_release(&dx);
    seq_release(&dm);
    mha_layer_free(&l);
}
