// SPDX-License-Identifier: Apache-2.0
/* The unfused attention path, host side: S = scale Q K^T and O = P V as CLBlast strided-batched GEMMs around the
 * small kernels of kernels_cl/sdpa_unfused.cl (packing to contiguous fp32, the masked softmax, the final write). It
 * materialises the Lq x Lk scores, so it serves the calls that want the attention weights, and it is the second
 * opinion on the fused kernel: every option (masks, key lengths, windows, GQA, dtypes, strides, lse) must give the
 * fused path's results.
 *
 * Memory: the scores of all (batch, head) pairs at once can exceed what one allocation may take, so the pairs are
 * processed in chunks, and a single pair's query rows in blocks, such that each group of temporaries stays under
 * min(max_alloc / 2, 512 MiB): the per-row ones (scores, packed Q, O, 1/rowsum) together, and the per-head packed
 * K and V together. The temporaries are allocated once at the largest chunk and reused by every chunk, which the
 * chain's ordering makes safe; enqueueing ahead of the device therefore never multiplies the memory in use.
 * CLATTN_UNFUSED_CHUNK_BYTES (a byte count) lowers that bound, so that tests can exercise the chunking on small
 * shapes. */
#include "blas.h"
#include "sdpa_internal.h"

#include <clblast_c.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SOURCE_NAME     "sdpa_unfused"
#define MAX_CHUNK_BYTES ((size_t)512 << 20)

/* The kernels of one plan's program. */
typedef struct unfused_kernels {
    cl_kernel pack_q, pack_k, pack_v, softmax, write_out;
    size_t softmax_wg;
} unfused_kernels;

/* How the work is cut: `heads` (batch, head) pairs per chunk, `rows` query rows per block (rows < Lq only when a
 * chunk is a single pair), and the most key/value heads one chunk touches. */
typedef struct chunking {
    size_t heads, rows, kv_span;
} chunking;

/* Temporaries and host-side argument arrays, released together on every path. */
typedef struct unfused_work {
    cl_mem s, row_inv, o, qp, kp, vp;
    size_t *a_off, *b_off, *c_off; /* per item of a GEMM stage */
    cl_event *events;              /* of the CLBlast calls of one stage */
} unfused_work;

static void work_release(clattn_context *ctx, unfused_work *w) {
    cl_mem *bufs[] = {&w->s, &w->row_inv, &w->o, &w->qp, &w->kp, &w->vp};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(bufs); ++i) cla_temp_release(ctx, bufs[i]);
    free(w->a_off);
    free(w->b_off);
    free(w->c_off);
    free(w->events);
    w->a_off = w->b_off = w->c_off = NULL;
    w->events = NULL;
}

/* CLBlast reads a matrix in place only as fp32 with unit stride along the head dim; it rejects a leading dimension
 * below the row length (a broadcast sequence stride of 0, for one), and it passes offsets and strides to its
 * kernels as int, so the view must end below INT_MAX elements. */
static bool gemm_ready(const clattn_tensor *t, size_t dim) {
    if (t->dtype != CLATTN_DTYPE_F32 || t->stride[3] != 1 || t->stride[2] < dim) return false;
    size_t last = t->offset; /* validated: cannot overflow */
    for (int i = 0; i < 4; ++i) last += (t->size[i] - 1) * t->stride[i];
    return last < (size_t)INT_MAX;
}

/* The bound on each group of temporaries. */
static size_t chunk_bytes(const clattn_context *ctx) {
    uint64_t cap = ctx->info.max_alloc_bytes ? ctx->info.max_alloc_bytes / 2 : (64u << 20);
    if (cap > MAX_CHUNK_BYTES) cap = MAX_CHUNK_BYTES;
    /* CLATTN_UNFUSED_CHUNK_BYTES (read at creation) can only tighten the bound: tests force several chunks. */
    if (ctx->unfused_chunk_bytes && ctx->unfused_chunk_bytes < cap) cap = ctx->unfused_chunk_bytes;
    return (size_t)cap;
}

static clattn_status choose_chunking(clattn_context *ctx, const cla_sdpa_plan *p, bool q_packed, bool k_packed,
                                     bool v_packed, chunking *c) {
    const size_t cap = chunk_bytes(ctx), f = sizeof(float);
    const size_t group = p->q_heads / p->kv_heads, pairs = p->batch * p->q_heads;
    const size_t Lk = p->kv_len, Dk = p->head_dim, Dv = p->v_head_dim;
    /* Sizes are validated (every view fits its buffer), so these products cannot overflow size_t. */
    const size_t per_row = f * (Lk + 1 + Dv + (q_packed ? Dk : 0));
    const size_t per_kv = f * Lk * ((k_packed ? Dk : 0) + (v_packed ? Dv : 0));
    if (per_row > cap || per_kv > cap) {
        return cla_fail(
            ctx, CLATTN_ERROR_DEVICE_LIMIT,
            "the unfused implementation needs %zu bytes of temporaries per query row and %zu bytes of packed "
            "keys and values per key/value head, more than the %zu bytes a temporary may take on '%s' "
            "(Lk %zu, head dims %zu/%zu); the fused implementation (CLATTN_IMPL_FUSED, without weights) "
            "needs no such temporaries",
            per_row, per_kv, cap, ctx->info.name, Lk, Dk, Dv);
    }
    size_t rows = cap / per_row;
    if (rows > p->q_len) rows = p->q_len;
    size_t heads = 1;
    if (rows == p->q_len) {
        heads = cap / (p->q_len * per_row);
        if (heads > pairs) heads = pairs;
        if (heads < 1) heads = 1;
    }
    /* Chunks never straddle a key/value head partially: either whole groups of query heads (so a chunk of n pairs
     * touches exactly n / group kv heads) or a divisor of a group (so it touches one). */
    if (heads >= group) {
        heads -= heads % group;
        if (per_kv && heads / group > cap / per_kv) heads = cap / per_kv * group;
    } else {
        while (group % heads) --heads;
    }
    c->heads = heads;
    c->rows = rows;
    c->kv_span = (heads + group - 1) / group;
    return CLATTN_SUCCESS;
}

/* The work-group size of the softmax: wide on GPUs, narrow on CPUs (where PoCL runs the work-items of a group in a
 * loop), and within the device's limits; a power of two. */
static size_t softmax_wg_for(const clattn_context *ctx) {
    const clattn_device_info *d = &ctx->info;
    bool gpu_like = d->type == CLATTN_DEVICE_TYPE_GPU ||
                    (d->type == CLATTN_DEVICE_TYPE_ACCELERATOR && d->local_mem_is_dedicated);
    size_t wg = gpu_like ? 128 : 16;
    size_t max_wg = d->max_work_group_size ? d->max_work_group_size : 1;
    if (d->max_work_item_sizes[0] && d->max_work_item_sizes[0] < max_wg) max_wg = d->max_work_item_sizes[0];
    while (wg > max_wg && wg > 1) wg /= 2;
    return wg;
}

static clattn_status get_kernels(clattn_context *ctx, const cla_sdpa_plan *p, unfused_kernels *k) {
    char common[512], options[768];
    /* Without the head dims (write_out takes the value width as an argument), one program serves every width: a
     * model's widths are many (RNN encoders especially), and each program is a compile. */
    cla_sdpa_common_defines(p, false, common, sizeof common);
    const bool weights = p->weights.buffer != NULL;
    size_t wg = softmax_wg_for(ctx);
    for (;;) {
        snprintf(options, sizeof options, "%s -DW_DTYPE=%d -DHAS_WEIGHTS=%d -DSOFTMAX_WG=%zu", common,
                 weights ? (int)p->weights.dtype : 0, (int)weights, wg);
        clattn_status st = cla_kernel_get(ctx, SOURCE_NAME, options, "masked_softmax", &k->softmax);
        if (st != CLATTN_SUCCESS) return st;
        /* A compiler may allow fewer work-items for this kernel than for the device; then build a narrower one. */
        size_t kernel_max = 0;
        cl_int err = clGetKernelWorkGroupInfo(k->softmax, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                                              &kernel_max, NULL);
        if (err != CL_SUCCESS || kernel_max >= wg || wg == 1) break;
        wg /= 2;
    }
    k->softmax_wg = wg;
    clattn_status st = CLATTN_SUCCESS;
    if (!st) st = cla_kernel_get(ctx, SOURCE_NAME, options, "pack_q", &k->pack_q);
    if (!st) st = cla_kernel_get(ctx, SOURCE_NAME, options, "pack_k", &k->pack_k);
    if (!st) st = cla_kernel_get(ctx, SOURCE_NAME, options, "pack_v", &k->pack_v);
    if (!st) st = cla_kernel_get(ctx, SOURCE_NAME, options, "write_out", &k->write_out);
    return st;
}

static clattn_status alloc_temp(clattn_context *ctx, size_t floats, const char *what, cl_mem *out) {
    clattn_status st = cla_temp_buffer(ctx, floats * sizeof(float), what, out);
    if (st != CLATTN_SUCCESS)
        cla_append_error(ctx, " (unfused attention: lower CLATTN_UNFUSED_CHUNK_BYTES or use CLATTN_IMPL_FUSED)");
    return st;
}

/* One GEMM stage of a chunk: for items t < count, C_t (m x n) = alpha A_t op(B_t) + beta C_t, row-major, with the
 * items' element offsets in the work arrays. */
typedef struct gemm_stage {
    const char *what;
    float alpha, beta;
    CLBlastTranspose b_trans;
    size_t m, n, k;
    cl_mem a, b, c;
    size_t lda, ldb, ldc;
    size_t count;
} gemm_stage;

/* Stacks the rows of consecutive items that share their B matrix into one taller item: the query heads of a GQA
 * group against their common K (or the rows of P against their common V) become one GEMM, when their A and C rows
 * follow each other in memory (packed operands do). Folds only when every item takes part in the same way. */
static void fold_shared_b(gemm_stage *g, unfused_work *w) {
    size_t run = 1;
    while (run < g->count && w->b_off[run] == w->b_off[0] && w->a_off[run] == w->a_off[run - 1] + g->m * g->lda &&
           w->c_off[run] == w->c_off[run - 1] + g->m * g->ldc)
        ++run;
    if (run == 1 || g->count % run) return;
    for (size_t s = 0; s < g->count; s += run)
        for (size_t t = s + 1; t < s + run; ++t)
            if (w->b_off[t] != w->b_off[s] || w->a_off[t] != w->a_off[t - 1] + g->m * g->lda ||
                w->c_off[t] != w->c_off[t - 1] + g->m * g->ldc)
                return;
    for (size_t t = 0; t < g->count / run; ++t) {
        w->a_off[t] = w->a_off[t * run];
        w->b_off[t] = w->b_off[t * run];
        w->c_off[t] = w->c_off[t * run];
    }
    g->count /= run;
    g->m *= run;
}

/* Whether item t + 1 may join the run that starts at item `first`: its offset steps forward by the run's step. */
static bool same_step(const size_t *off, size_t first, size_t t) {
    if (off[t + 1] < off[t]) return false;
    return t == first || off[t + 1] - off[t] == off[first + 1] - off[first];
}

/* Enqueues a stage in the chain as few CLBlastSgemmStridedBatched calls as the offsets allow: one per run of items
 * whose offsets step evenly. CLBlastSgemmBatched would take any offsets at once, but it uploads its offset arrays
 * with a blocking write that finishes the whole queue: a hidden clFinish, and a deadlock when the caller's wait
 * list holds a user event. CLBlast takes no wait list, so a barrier first makes its commands follow the chain; a
 * barrier on all of their events then becomes the chain's last command. */
static clattn_status enqueue_gemm(clattn_context *ctx, cla_chain *chain, unfused_work *w, gemm_stage *g) {
    fold_shared_b(g, w);
    cl_int err = cla_chain_barrier(chain);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "enqueueing the barrier before the %s GEMM on '%s' failed: %d %s", g->what,
                        ctx->info.name, err, cla_cl_error_text(err));
    clattn_status st = CLATTN_SUCCESS;
    size_t events = 0;
    bool all_events = true;
    for (size_t first = 0; first < g->count;) {
        size_t end = first + 1;
        while (end < g->count && same_step(w->a_off, first, end - 1) && same_step(w->b_off, first, end - 1) &&
               same_step(w->c_off, first, end - 1))
            ++end;
        const size_t batch = end - first;
        const size_t sa = batch > 1 ? w->a_off[first + 1] - w->a_off[first] : 0;
        const size_t sb = batch > 1 ? w->b_off[first + 1] - w->b_off[first] : 0;
        /* CLBlast rejects a C stride of 0 even for a single matrix (InvalidDimension), so give it a real one. */
        const size_t sc = batch > 1 ? w->c_off[first + 1] - w->c_off[first] : g->m * g->ldc;
        cl_event e = NULL;
        const cla_gemm call = {.m = g->m,
                               .n = g->n,
                               .k = g->k,
                               .batch = batch,
                               .b_transposed = g->b_trans == CLBlastTransposeYes,
                               .alpha = g->alpha,
                               .beta = g->beta,
                               .a = g->a,
                               .b = g->b,
                               .c = g->c,
                               .a_offset = w->a_off[first],
                               .a_ld = g->lda,
                               .a_stride = sa,
                               .b_offset = w->b_off[first],
                               .b_ld = g->ldb,
                               .b_stride = sb,
                               .c_offset = w->c_off[first],
                               .c_ld = g->ldc,
                               .c_stride = sc};
        st = cla_gemm_enqueue(ctx, &call, &chain->queue, &e, g->what);
        if (st != CLATTN_SUCCESS) {
            /* The fused implementation adapts its work-groups to the device: the way past a device limit. */
            if (st == CLATTN_ERROR_DEVICE_LIMIT)
                cla_append_error(ctx, "; use CLATTN_IMPL_FUSED, which adapts to them");
            break;
        }
        if (e)
            w->events[events++] = e;
        else
            all_events = false;
        first = end;
    }
    /* One event that completes after every call; if a call gave none back, a barrier over the whole queue does. */
    cl_event done = NULL;
    if (st == CLATTN_SUCCESS && events == 1 && all_events) {
        done = w->events[0];
        events = 0;
    } else if (st == CLATTN_SUCCESS) {
        err = clEnqueueBarrierWithWaitList(chain->queue, all_events ? (cl_uint)events : 0,
                                           all_events ? w->events : NULL, &done);
        if (err != CL_SUCCESS)
            st = cla_fail(ctx, err, "enqueueing the barrier after the %s GEMM on '%s' failed: %d %s", g->what,
                          ctx->info.name, err, cla_cl_error_text(err));
    }
    for (size_t i = 0; i < events; ++i) clReleaseEvent(w->events[i]);
    if (st == CLATTN_SUCCESS) cla_chain_push(chain, done);
    return st;
}

/* Packs rows [row0, row0 + rows) of the flat heads [first, first + count) of `t` into contiguous fp32 `dst`.
 * Initialised positionally at the three packs: what, kernel, tensor, heads ... dim, dst, zero_padding. */
typedef struct pack_args {
    const char *what;
    cl_kernel kernel;
    const clattn_tensor *t;
    size_t heads, first, count, row0, rows, dim;
    cl_mem dst;
    bool zero_padding;
} pack_args;

static clattn_status enqueue_pack(clattn_context *ctx, const cla_sdpa_plan *p, cla_chain *chain,
                                  const pack_args *a) {
    cl_mem src = a->t->buffer, dst = a->dst, kl = p->key_lengths;
    cl_long4 stride = cla_strides4(a->t);
    cl_long offset = (cl_long)a->t->offset, kl_offset = (cl_long)p->key_lengths_offset;
    cl_int heads = (cl_int)a->heads, first = (cl_int)a->first, row0 = (cl_int)a->row0, rows = (cl_int)a->rows;
    cl_int dim = (cl_int)a->dim, zero = a->zero_padding, Lk = (cl_int)p->kv_len;
    const cla_named_arg args[] = {
        CLA_NAMED("src", src),
        CLA_NAMED("stride", stride),
        CLA_NAMED("offset", offset),
        CLA_NAMED("heads", heads),
        CLA_NAMED("first", first),
        CLA_NAMED("row0", row0),
        CLA_NAMED("rows", rows),
        CLA_NAMED("dim", dim),
        CLA_NAMED("dst", dst),
        CLA_NAMED("key_lengths", kl),
        CLA_NAMED("kl_offset", kl_offset),
        CLA_NAMED("zero_from_key_lengths", zero),
        CLA_NAMED("Lk", Lk),
    };
    clattn_status st = cla_set_named_args(ctx, a->kernel, a->what, cla_args_pack.names, args, CLA_ARRAY_SIZE(args));
    if (st != CLATTN_SUCCESS) return st;
    size_t global[3] = {a->dim, a->rows, a->count};
    return cla_chain_kernel(ctx, chain, a->kernel, 3, global, NULL, a->what);
}

static clattn_status check_int_range(clattn_context *ctx, const cla_sdpa_plan *p) {
    /* The kernels index heads and rows with int; offsets and element indices are 64-bit. */
    const size_t limit = (size_t)INT_MAX;
    if (p->q_len > limit || p->kv_len > limit || p->batch > limit / p->q_heads)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "batch %zu x heads %zu, Lq %zu or Lk %zu exceeds the unfused kernels' int range", p->batch,
                        p->q_heads, p->q_len, p->kv_len);
    return CLATTN_SUCCESS;
}

clattn_status cla_sdpa_unfused(clattn_context *ctx, const cla_sdpa_plan *p, cla_chain *chain) {
    clattn_status st = check_int_range(ctx, p);
    if (st != CLATTN_SUCCESS) return st;
    const size_t Hq = p->q_heads, Hkv = p->kv_heads, group = Hq / Hkv, pairs = p->batch * Hq;
    const size_t Lq = p->q_len, Lk = p->kv_len, Dk = p->head_dim, Dv = p->v_head_dim;
    /* With no keys every row is fully masked: no GEMM runs (CLBlast takes no empty sizes), and the softmax and
     * write_out kernels alone write the zeros, the lse of -inf and the (empty) weights. */
    const bool keys = Lk > 0;
    const bool q_packed = keys && !gemm_ready(&p->q, Dk), k_packed = keys && !gemm_ready(&p->k, Dk);
    /* With key lengths V is packed anyway: its padding rows become zeros, so a NaN there cannot reach P V. */
    const bool v_packed = keys && (!gemm_ready(&p->v, Dv) || p->key_lengths != NULL);

    unfused_kernels kern = {0};
    chunking ch = {0};
    if ((st = get_kernels(ctx, p, &kern))) return st;
    if ((st = choose_chunking(ctx, p, q_packed, k_packed, v_packed, &ch))) return st;

    /* Everything that can fail without side effects comes before the first command. */
    unfused_work w;
    memset(&w, 0, sizeof w);
    const size_t per_chunk_rows = ch.heads * ch.rows;
    if (!st) st = alloc_temp(ctx, per_chunk_rows * Lk, "score", &w.s);
    if (!st) st = alloc_temp(ctx, per_chunk_rows, "row-sum", &w.row_inv);
    if (!st) st = alloc_temp(ctx, per_chunk_rows * Dv, "output", &w.o);
    if (!st && q_packed) st = alloc_temp(ctx, per_chunk_rows * Dk, "packed query", &w.qp);
    if (!st && k_packed) st = alloc_temp(ctx, ch.kv_span * Lk * Dk, "packed key", &w.kp);
    if (!st && v_packed) st = alloc_temp(ctx, ch.kv_span * Lk * Dv, "packed value", &w.vp);
    if (!st) {
        w.a_off = malloc(ch.heads * sizeof *w.a_off);
        w.b_off = malloc(ch.heads * sizeof *w.b_off);
        w.c_off = malloc(ch.heads * sizeof *w.c_off);
        w.events = malloc(ch.heads * sizeof *w.events);
        if (!w.a_off || !w.b_off || !w.c_off || !w.events)
            st = cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                          "out of host memory for the unfused GEMM arguments of %zu heads", ch.heads);
    }
    if (st) {
        work_release(ctx, &w);
        return st;
    }

    /* Arguments that stay the same across chunks. */
    cl_long4 ms = cla_strides4(&p->mask), ls = cla_strides4(&p->lse), ws = cla_strides4(&p->weights);
    cl_long4 os = cla_strides4(&p->out);
    cl_long8 sm_offsets = {{(cl_long)p->mask.offset, (cl_long)p->key_lengths_offset, (cl_long)p->lse.offset,
                            (cl_long)p->weights.offset, 0, 0, 0, 0}};
    cl_long2 window = {{(cl_long)p->window_left, (cl_long)p->window_right}};
    cl_long o_offset = (cl_long)p->out.offset;
    cl_float softcap2 = cla_sdpa_softcap2(p);
    cl_long4 mods = cla_sdpa_mods(p);
    cl_mem sinks = p->sinks.buffer, alibi = p->alibi_slopes.buffer;
    cl_mem mask = p->mask.buffer, kl = p->key_lengths, lse = p->lse.buffer, wts = p->weights.buffer;
    cl_mem out = p->out.buffer;
    /* write_out reads V as fp32: packed [kv head - kv0][Lk][Dv], or the caller's F32 view. */
    cl_mem v_f32 = v_packed ? w.vp : p->v.buffer;
    cl_long4 vs = cla_strides4(&p->v);
    if (v_packed) vs = (cl_long4){{(cl_long)(Hkv * Lk * Dv), (cl_long)(Lk * Dv), (cl_long)Dv, 1}};
    /* The scale goes into the first GEMM in log2 units, as the fused kernel folds it into its exp2. */
    const float alpha = p->scale * 1.4426950408889634f;

    for (size_t bh0 = 0; bh0 < pairs && !st; bh0 += ch.heads) {
        const size_t n = pairs - bh0 < ch.heads ? pairs - bh0 : ch.heads;
        const size_t kv0 = bh0 / group, kv_count = (bh0 + n - 1) / group - kv0 + 1;
        if (k_packed) {
            const pack_args a = {"pack_k", kern.pack_k, &p->k, Hkv, kv0, kv_count, 0, Lk, Dk, w.kp, false};
            st = enqueue_pack(ctx, p, chain, &a);
        }
        if (!st && v_packed) {
            /* Padding keys read as zeros, so that garbage in them cannot reach the output through 0 * NaN. */
            const bool zero = p->key_lengths != NULL;
            const pack_args a = {"pack_v", kern.pack_v, &p->v, Hkv, kv0, kv_count, 0, Lk, Dv, w.vp, zero};
            st = enqueue_pack(ctx, p, chain, &a);
        }
        cl_long v_offset = v_packed ? -(cl_long)(kv0 * Lk * Dv) : (cl_long)p->v.offset;

        for (size_t i0 = 0; i0 < Lq && !st; i0 += ch.rows) {
            const size_t rows = Lq - i0 < ch.rows ? Lq - i0 : ch.rows;
            if (q_packed) {
                const pack_args a = {"pack_q", kern.pack_q, &p->q, Hq, bh0, n, i0, rows, Dk, w.qp, false};
                if ((st = enqueue_pack(ctx, p, chain, &a))) break;
            }

            /* S = alpha Q K^T for every pair of the chunk: [n][rows][Lk]. */
            for (size_t t = 0; t < n; ++t) {
                const size_t bh = bh0 + t, b = bh / Hq, h = bh % Hq, hk = h / group;
                w.a_off[t] = q_packed ? t * rows * Dk
                                      : p->q.offset + b * p->q.stride[0] + h * p->q.stride[1] + i0 * p->q.stride[2];
                w.b_off[t] = k_packed ? (bh / group - kv0) * Lk * Dk
                                      : p->k.offset + b * p->k.stride[0] + hk * p->k.stride[1];
                w.c_off[t] = t * rows * Lk;
            }
            gemm_stage g1 = {.what = "scores Q K^T",
                             .alpha = alpha,
                             .b_trans = CLBlastTransposeYes,
                             .m = rows,
                             .n = Lk,
                             .k = Dk,
                             .a = q_packed ? w.qp : p->q.buffer,
                             .lda = q_packed ? Dk : p->q.stride[2],
                             .b = k_packed ? w.kp : p->k.buffer,
                             .ldb = k_packed ? Dk : p->k.stride[2],
                             .c = w.s,
                             .ldc = Lk,
                             .count = n};
            if (keys && (st = enqueue_gemm(ctx, chain, &w, &g1))) break;

            cl_int4 sm_dims = {{(cl_int)Hq, (cl_int)Lq, (cl_int)Lk, (cl_int)rows}};
            cl_int2 first = {{(cl_int)bh0, (cl_int)i0}};
            const cla_named_arg sm_args[] = {
                CLA_NAMED("s", w.s),          CLA_NAMED("row_inv", w.row_inv), CLA_NAMED("dims", sm_dims),
                CLA_NAMED("first", first),    CLA_NAMED("mask", mask),         CLA_NAMED("mask_stride", ms),
                CLA_NAMED("key_lengths", kl), CLA_NAMED("lse", lse),           CLA_NAMED("lse_stride", ls),
                CLA_NAMED("w", wts),          CLA_NAMED("w_stride", ws),       CLA_NAMED("offsets", sm_offsets),
                CLA_NAMED("window", window),  CLA_NAMED("softcap2", softcap2), CLA_NAMED("sinks", sinks),
                CLA_NAMED("alibi", alibi),    CLA_NAMED("mods", mods),
            };
            st = cla_set_named_args(ctx, kern.softmax, "masked_softmax", cla_args_masked_softmax.names, sm_args,
                                    CLA_ARRAY_SIZE(sm_args));
            if (st) break;
            size_t sm_global[2] = {kern.softmax_wg * rows, n}, sm_local[2] = {kern.softmax_wg, 1};
            if ((st = cla_chain_kernel(ctx, chain, kern.softmax, 2, sm_global, sm_local, "masked_softmax"))) break;

            /* O = P V: [n][rows][Dv], one GEMM per range of at most CLA_MAX_KEYS_PER_SUM keys, each added into O
             * (beta 1 after the first), so that none of CLBlast's accumulators sums more keys than that. */
            const size_t ldb = v_packed ? Dv : p->v.stride[2];
            for (size_t k0 = 0; k0 < Lk && !st; k0 += CLA_MAX_KEYS_PER_SUM) {
                for (size_t t = 0; t < n; ++t) {
                    const size_t bh = bh0 + t, b = bh / Hq, hk = bh % Hq / group;
                    w.a_off[t] = t * rows * Lk + k0;
                    w.b_off[t] = (v_packed ? (bh / group - kv0) * Lk * Dv
                                           : p->v.offset + b * p->v.stride[0] + hk * p->v.stride[1]) +
                                 k0 * ldb;
                    w.c_off[t] = t * rows * Dv;
                }
                gemm_stage g2 = {.what = "output P V",
                                 .alpha = 1.0f,
                                 .beta = k0 ? 1.0f : 0.0f,
                                 .b_trans = CLBlastTransposeNo,
                                 .m = rows,
                                 .n = Dv,
                                 .k = Lk - k0 < CLA_MAX_KEYS_PER_SUM ? Lk - k0 : CLA_MAX_KEYS_PER_SUM,
                                 .a = w.s,
                                 .lda = Lk,
                                 .b = v_packed ? w.vp : p->v.buffer,
                                 .ldb = ldb,
                                 .c = w.o,
                                 .ldc = Dv,
                                 .count = n};
                st = enqueue_gemm(ctx, chain, &w, &g2);
            }
            if (st) break;

            cl_int4 wo_dims = {{(cl_int)Hq, (cl_int)Lk, (cl_int)rows, (cl_int)group}};
            cl_int v_dim = (cl_int)Dv;
            const cla_named_arg wo_args[] = {
                CLA_NAMED("o_tmp", w.o),    CLA_NAMED("p", w.s),       CLA_NAMED("row_inv", w.row_inv),
                CLA_NAMED("v", v_f32),      CLA_NAMED("v_stride", vs), CLA_NAMED("v_offset", v_offset),
                CLA_NAMED("dims", wo_dims), CLA_NAMED("v_dim", v_dim), CLA_NAMED("first", first),
                CLA_NAMED("out", out),      CLA_NAMED("o_stride", os), CLA_NAMED("o_offset", o_offset),
            };
            st = cla_set_named_args(ctx, kern.write_out, "write_out", cla_args_write_out.names, wo_args,
                                    CLA_ARRAY_SIZE(wo_args));
            if (st) break;
            size_t wo_global[3] = {Dv, rows, n};
            st = cla_chain_kernel(ctx, chain, kern.write_out, 3, wo_global, NULL, "write_out");
        }
    }
    /* Released now, freed by OpenCL once the commands that use them have finished. */
    work_release(ctx, &w);
    return st;
}
