// SPDX-License-Identifier: Apache-2.0
/* Attention over several devices of one context: a validated call is cut into contiguous ranges of batch items
 * (or, with one batch item, of key/value head groups, so that the query heads of a GQA group stay together), and
 * each range runs as its own validated call, with the same kernels and parameters, on one device's queue.
 *
 * Ordering: a marker on the caller's queue after the call's events (and, on an in-order queue, after everything
 * enqueued there before) starts every part; a barrier on the caller's queue over the parts' final events joins
 * them, and the call's later commands and event follow it.
 *
 * Memory: the OpenCL spec leaves undefined a buffer written by one device while another device uses it, and real
 * drivers migrate whole buffers between devices, so no two parts ever write the same cl_mem. Each part writes
 * either a sub-buffer of the caller's output that holds exactly its region (when the regions do not interleave,
 * start at the devices' base address alignment, and the output buffer is no other tensor's of the call), or a
 * temporary of its own that a copy kernel then writes into the caller's view on the caller's queue. Inputs are only
 * read, which several devices may do at once. */
#include "sdpa_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One device's range: batch items [b0, b0 + nb), query heads [h0, h0 + nh), key/value heads [g0, g0 + ng). */
typedef struct part {
    size_t b0, nb, h0, nh, g0, ng;
} part;

enum { OUT_MAIN = 0, OUT_LSE = 1, OUT_WEIGHTS = 2, OUT_COUNT = 3 };

/* How one output of the call reaches the caller's buffer. */
typedef struct output_route {
    const char *name;
    const clattn_tensor *whole; /* the caller's view; buffer NULL when the output is not requested */
    bool sub_buffers;           /* parts write sub-buffers of the caller's buffer; else their own temporaries */
} output_route;

static size_t split_units(const cla_sdpa_plan *p) {
    return p->batch >= 2 ? p->batch : p->kv_heads;
}

bool cla_sdpa_split_wanted(const clattn_context *ctx, const cla_sdpa_plan *p) {
    /* While programs are recorded (clattn kernels export), a call lists what one device would build. */
    if (ctx->device_count < 2 || ctx->recording) return false;
    /* The caller's score_mod and mask_mod see whole-call batch and head indices: one device runs them. */
    if (cla_sdpa_has_user_mods(p)) return false;
    /* Packed and paged calls and 8-bit caches run on one device (their index arrays and scales are not sliced). */
    if (cla_sdpa_has_seqs(p) || p->k_scale.buffer || p->v_scale.buffer) return false;
    if (p->batch == 0 || p->q_heads == 0 || p->q_len == 0) return false;
    return split_units(p) >= 2;
}

/* The part's slice of a tensor indexed [batch, heads, ...]; a broadcast (size 1) dimension stays as it is. */
static clattn_tensor slice(const clattn_tensor *t, size_t b0, size_t nb, size_t h0, size_t nh) {
    clattn_tensor s = *t;
    if (t->size[0] != 1) {
        s.offset += b0 * t->stride[0];
        s.size[0] = nb;
    }
    if (t->size[1] != 1) {
        s.offset += h0 * t->stride[1];
        s.size[1] = nh;
    }
    return s;
}

static clattn_tensor q_slice(const clattn_tensor *t, const part *pt) {
    return slice(t, pt->b0, pt->nb, pt->h0, pt->nh);
}

/* Whether every part can write its region of an output through a sub-buffer: the buffer is used by no other
 * tensor of the call (a sub-buffer and its parent must not be used at the same time), is not itself a sub-buffer,
 * and the parts' regions follow each other without interleaving, each starting at an aligned byte. */
static bool sub_buffers_fit(clattn_context *ctx, const cla_sdpa_plan *p, const output_route *routes, int which,
                            const part *parts, size_t n) {
    const clattn_tensor *t = routes[which].whole;
    const cl_mem others[] = {p->q.buffer,
                             p->k.buffer,
                             p->v.buffer,
                             p->mask.buffer,
                             p->key_lengths,
                             p->sinks.buffer,
                             p->alibi_slopes.buffer,
                             p->block_mask.buffer};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(others); ++i)
        if (others[i] == t->buffer) return false;
    for (int o = 0; o < OUT_COUNT; ++o)
        if (o != which && routes[o].whole->buffer == t->buffer) return false;
    cl_mem parent = NULL;
    if (clGetMemObjectInfo(t->buffer, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL) != CL_SUCCESS ||
        parent != NULL)
        return false;
    size_t prev_end = 0;
    for (size_t i = 0; i < n; ++i) {
        clattn_tensor v = q_slice(t, &parts[i]);
        size_t begin = 0, end = 0;
        if (cla_tensor_extent(ctx, &v, routes[which].name, &begin, &end) != CLATTN_SUCCESS || begin == end ||
            begin % ctx->sub_buffer_align != 0 || (i > 0 && begin < prev_end))
            return false;
        prev_end = end;
    }
    return true;
}

/* The resources of one split call, released together whatever happened. */
typedef struct split_work {
    cl_event fork;
    cl_event *done;       /* per part: its final event */
    cl_mem *mems;         /* per part and output: its sub-buffer or temporary */
    clattn_tensor *views; /* per part and output: what the part writes */
    size_t parts;
} split_work;

static void split_release(clattn_context *ctx, split_work *w) {
    if (w->fork) clReleaseEvent(w->fork);
    for (size_t i = 0; w->done && i < w->parts; ++i)
        if (w->done[i]) clReleaseEvent(w->done[i]);
    for (size_t i = 0; w->mems && i < w->parts * OUT_COUNT; ++i) cla_temp_release(ctx, &w->mems[i]);
    free(w->done);
    free(w->mems);
    free(w->views);
}

/* Where part `i` writes output `o`: a sub-buffer or a temporary, and the view of it that the part's call gets. */
static clattn_status place_output(clattn_context *ctx, const output_route *r, const part *pt, cl_mem *mem,
                                  clattn_tensor *view) {
    clattn_tensor v = q_slice(r->whole, pt);
    size_t begin = 0, end = 0;
    clattn_status st = cla_tensor_extent(ctx, &v, r->name, &begin, &end);
    if (st != CLATTN_SUCCESS) return st;
    if (begin == end) { /* an empty output (no keys for the weights): nothing is written, nothing to place */
        *view = v;
        return CLATTN_SUCCESS;
    }
    if (r->sub_buffers) {
        st = cla_temp_sub_buffer(ctx, r->whole->buffer, begin, end - begin, r->name, mem);
        if (st != CLATTN_SUCCESS) return st;
        v.buffer = *mem;
        v.offset = 0; /* begin is the view's first byte: offset * element size */
        *view = v;
        return CLATTN_SUCCESS;
    }
    const size_t esize = clattn_dtype_size(v.dtype);
    st = cla_temp_buffer(ctx, cla_tensor_elements(&v) * esize, r->name, mem);
    if (st != CLATTN_SUCCESS) {
        cla_append_error(ctx, " (one device's part of an attention call split over the context's devices)");
        return st;
    }
    *view = clattn_tensor_bhld(*mem, v.dtype, v.size[0], v.size[1], v.size[2], v.size[3]);
    return CLATTN_SUCCESS;
}

/* Copies a part's temporary (contiguous [nb, nh, L, d]) into its region of the caller's view, bit for bit. */
static clattn_status copy_back(clattn_context *ctx, cla_chain *chain, const output_route *r, const part *pt,
                               const clattn_tensor *temp) {
    const clattn_tensor dst = q_slice(r->whole, pt);
    return cla_chain_copy_view(ctx, chain, temp, &dst, "copy_view (a device's part of a split attention call)");
}

/* Part `i`'s call: the plan's tensors sliced to its range, its outputs where place_output put them, validated like
 * any call, and run on device i's queue after the fork. */
static clattn_status run_part(clattn_context *ctx, const cla_sdpa_plan *p, const part *pt, size_t i,
                              const clattn_tensor *views, cl_event fork, cl_event *done) {
    /* The plan's options as the part's call takes them (every default of clattn_sdpa_desc_init is overwritten). */
    clattn_sdpa_desc d = {.scale = p->scale,
                          .causal = p->causal,
                          .window_left = p->window_left,
                          .window_right = p->window_right,
                          .window_align = p->window_align,
                          .impl = p->impl};
    if (p->mask.buffer) d.mask = q_slice(&p->mask, pt);
    /* The block mask is indexed [batch, query head, ...] like the mask. */
    if (p->block_mask.buffer) d.block_mask = q_slice(&p->block_mask, pt);
    d.block_mask_q = p->block_q;
    d.block_mask_k = p->block_k;
    /* The score modifiers: the part's heads of the per-head values, whose batch dimension is 1. */
    d.softcap = p->softcap;
    if (p->sinks.buffer) d.sinks = q_slice(&p->sinks, pt);
    if (p->alibi_slopes.buffer) d.alibi_slopes = q_slice(&p->alibi_slopes, pt);
    d.key_lengths = p->key_lengths;
    d.key_lengths_offset = p->key_lengths_offset + pt->b0;
    if (p->lse.buffer) d.lse = views[OUT_LSE];
    if (p->weights.buffer) d.weights = views[OUT_WEIGHTS];
    const clattn_tensor q = q_slice(&p->q, pt);
    const clattn_tensor k = slice(&p->k, pt->b0, pt->nb, pt->g0, pt->ng);
    const clattn_tensor v = slice(&p->v, pt->b0, pt->nb, pt->g0, pt->ng);
    cl_command_queue queue = ctx->queues[i];
    cla_sdpa_plan sp;
    clattn_status st = cla_sdpa_validate(ctx, &d, &q, &k, &v, &views[OUT_MAIN], queue, 0, NULL, &sp);
    if (st != CLATTN_SUCCESS) {
        /* The whole call passed these checks, so a part cannot fail them. */
        cla_append_error(ctx,
                         " (in one device's part of a split attention call: a bug in clattn, please report it)");
        return st;
    }
    sp.whole_batch = p->whole_batch;
    sp.whole_heads = p->whole_heads;
    cla_chain sub;
    cla_chain_begin(&sub, ctx, queue, 1, &fork);
    st = cla_sdpa_run(ctx, &sp, &sub);
    if (st != CLATTN_SUCCESS) {
        cla_chain_abort(&sub);
        char where[256];
        snprintf(where, sizeof where, " (the part of a split attention call on device %u:%u '%s')",
                 ctx->infos[i].platform_index, ctx->infos[i].device_index, ctx->infos[i].name);
        cla_append_error(ctx, where);
        return st;
    }
    cl_int err = cla_chain_end(&sub, done);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "enqueueing the end marker of the part on '%s' (%u:%u) failed: %d %s",
                        ctx->infos[i].name, ctx->infos[i].platform_index, ctx->infos[i].device_index, err,
                        cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}

clattn_status cla_sdpa_split(clattn_context *ctx, const cla_sdpa_plan *p, cla_chain *chain) {
    const size_t units = split_units(p);
    const size_t n = units < ctx->device_count ? units : ctx->device_count;
    const size_t group = p->q_heads / p->kv_heads;
    split_work w;
    memset(&w, 0, sizeof w);
    part *parts = calloc(n, sizeof *parts);
    w.done = calloc(n, sizeof *w.done);
    w.mems = calloc(n * OUT_COUNT, sizeof *w.mems);
    w.views = calloc(n * OUT_COUNT, sizeof *w.views);
    if (!parts || !w.done || !w.mems || !w.views) {
        free(parts);
        split_release(ctx, &w);
        return cla_fail(ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                        "out of host memory splitting the call over %zu devices", n);
    }
    w.parts = n;
    for (size_t i = 0; i < n; ++i) {
        const size_t u0 = i * units / n, u1 = (i + 1) * units / n;
        part *pt = &parts[i];
        if (p->batch >= 2)
            *pt = (part){u0, u1 - u0, 0, p->q_heads, 0, p->kv_heads};
        else
            *pt = (part){0, 1, u0 * group, (u1 - u0) * group, u0, u1 - u0};
    }
    const clattn_tensor none = {0};
    output_route routes[OUT_COUNT] = {{"out", &p->out, false},
                                      {"lse", p->lse.buffer ? &p->lse : &none, false},
                                      {"weights", p->weights.buffer ? &p->weights : &none, false}};
    for (int o = 0; o < OUT_COUNT; ++o)
        if (routes[o].whole->buffer) routes[o].sub_buffers = sub_buffers_fit(ctx, p, routes, o, parts, n);
    cla_log(ctx, CLATTN_LOG_DEBUG, "attention split over %zu devices by %s; out%s%s through %s", n,
            p->batch >= 2 ? "batch items" : "key/value head groups", p->lse.buffer ? ", lse" : "",
            p->weights.buffer ? ", weights" : "",
            routes[OUT_MAIN].sub_buffers ? "sub-buffers" : "temporaries and a copy");

    /* Everything that can fail without side effects first: the outputs' places. */
    clattn_status st = CLATTN_SUCCESS;
    for (size_t i = 0; i < n && !st; ++i)
        for (int o = 0; o < OUT_COUNT && !st; ++o)
            if (routes[o].whole->buffer)
                st = place_output(ctx, &routes[o], &parts[i], &w.mems[i * OUT_COUNT + o],
                                  &w.views[i * OUT_COUNT + o]);

    /* The fork: every part starts after the call's events and, on an in-order queue, after what the caller
     * enqueued there before (a marker with no wait list waits for all of it). */
    if (!st) {
        cl_int err = cla_fault_due(ctx) ? CL_OUT_OF_RESOURCES
                                        : clEnqueueMarkerWithWaitList(chain->queue, cla_chain_wait_count(chain),
                                                                      cla_chain_wait_list(chain), &w.fork);
        if (err != CL_SUCCESS)
            st = cla_fail(ctx, err,
                          "enqueueing the marker that starts the devices' parts on '%s' "
                          "failed: %d %s",
                          ctx->info.name, err, cla_cl_error_text(err));
    }
    for (size_t i = 0; i < n && !st; ++i)
        st = run_part(ctx, p, &parts[i], i, &w.views[i * OUT_COUNT], w.fork, &w.done[i]);

    /* The join on the caller's queue, then the copies of outputs that went through temporaries. */
    if (!st) {
        cl_event join = NULL;
        cl_int err = cla_fault_due(ctx) ? CL_OUT_OF_RESOURCES
                                        : clEnqueueBarrierWithWaitList(chain->queue, (cl_uint)n, w.done, &join);
        if (err != CL_SUCCESS)
            st = cla_fail(ctx, err,
                          "enqueueing the barrier that joins the devices' parts on '%s' "
                          "failed: %d %s",
                          ctx->info.name, err, cla_cl_error_text(err));
        else
            cla_chain_push(chain, join);
    }
    for (size_t i = 0; i < n && !st; ++i)
        for (int o = 0; o < OUT_COUNT && !st; ++o)
            if (routes[o].whole->buffer && !routes[o].sub_buffers && w.mems[i * OUT_COUNT + o])
                st = copy_back(ctx, chain, &routes[o], &parts[i], &w.views[i * OUT_COUNT + o]);

    /* Released now, freed by OpenCL once the commands that use them have finished. */
    free(parts);
    split_release(ctx, &w);
    return st;
}
