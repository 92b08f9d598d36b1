// SPDX-License-Identifier: Apache-2.0
/* clattn_kv_append, host side: writes new keys and values into their slots of a paged or dense KV cache (vLLM's
 * reshape_and_cache), converting and quantizing them on the device (kernels_cl/kv_append.cl). Every tensor, scale
 * and slot is checked before the first command, so that a refused call leaves the caches as they were. */
#include "kv_append.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where an 8-bit row's scale comes from (the kernel's SCALE_MODE). */
enum { SCALE_NONE = 0, SCALE_GIVEN = 1, SCALE_COMPUTED = 2 };

typedef cla_kv_append_side append_side;

void clattn_kv_append_desc_init(clattn_kv_append_desc *desc) {
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
}

static clattn_status check_dtypes(clattn_context *ctx, const clattn_tensor *const *t, const char *const *names) {
    for (int i = 0; i < 4; ++i) {
        const bool cache = i >= 2;
        const clattn_dtype d = t[i]->dtype;
        CLA_FAIL_ON(!cla_is_float_dtype(d) && !(cache && cla_is_kv8_dtype(d)), ctx, CLATTN_ERROR_INVALID_DTYPE,
                    "%s: dtype %s (%d) is not F32, F16 or BF16%s", names[i], clattn_dtype_name(d), (int)d,
                    cache ? ", nor I8 or FP8_E4M3 with its scales" : "");
    }
    return CLATTN_SUCCESS;
}

/* New rows [1, Hkv, T, D] against their caches [N, Hkv, S, D], the two caches against each other. */
static clattn_status check_shapes(clattn_context *ctx, const clattn_tensor *kn, const clattn_tensor *vn,
                                  const clattn_tensor *kc, const clattn_tensor *vc) {
    clattn_status st;
    if ((st = cla_expect_size(ctx, kn, "k_new", 0, 1, "a [1, Hkv, T, Dk] view's size[0]"))) return st;
    if ((st = cla_expect_size(ctx, vn, "v_new", 0, 1, "a [1, Hkv, T, Dv] view's size[0]"))) return st;
    if ((st = cla_expect_size(ctx, vn, "v_new", 2, kn->size[2], "k_new's tokens"))) return st;
    if ((st = cla_expect_size(ctx, kn, "k_new", 1, kc->size[1], "k_cache's heads"))) return st;
    if ((st = cla_expect_size(ctx, vn, "v_new", 1, kc->size[1], "k_cache's heads"))) return st;
    if ((st = cla_expect_size(ctx, vc, "v_cache", 1, kc->size[1], "k_cache's heads"))) return st;
    if ((st = cla_expect_size(ctx, vc, "v_cache", 0, kc->size[0], "k_cache's size[0]"))) return st;
    if ((st = cla_expect_size(ctx, vc, "v_cache", 2, kc->size[2], "k_cache's size[2]"))) return st;
    if ((st = cla_expect_size(ctx, kn, "k_new", 3, kc->size[3], "k_cache's head dim"))) return st;
    if ((st = cla_expect_size(ctx, vn, "v_new", 3, vc->size[3], "v_cache's head dim"))) return st;
    const size_t dk = kc->size[3], dv = vc->size[3];
    CLA_FAIL_ON(dk == 0 || dv == 0 || dk > CLATTN_MAX_HEAD_DIM || dv > CLATTN_MAX_HEAD_DIM, ctx,
                CLATTN_ERROR_INVALID_HEAD_DIM, "head dims must be 1..%d; the keys have %zu and the values %zu",
                CLATTN_MAX_HEAD_DIM, dk, dv);
    /* The kernel indexes tokens, heads and rows of a page in 32 bits. */
    CLA_FAIL_ON(
        kn->size[2] > INT32_MAX || kc->size[1] > INT32_MAX || kc->size[2] > INT32_MAX, ctx,
        CLATTN_ERROR_UNSUPPORTED,
        "%zu tokens, %zu heads or %zu rows a page (k_cache.size[2]) are more than the %d the kernel indexes",
        kn->size[2], kc->size[1], kc->size[2], INT32_MAX);
    return CLATTN_SUCCESS;
}

/* A side's scale: checked as clattn_sdpa checks it, then used per slot (computed and written) when it has exactly
 * the cache's [N, Hkv, S, 1], else read. */
static clattn_status check_scale(clattn_context *ctx, const char *name, const char *of, append_side *s,
                                 cla_range *r) {
    clattn_status st = cla_check_kv_scale(ctx, name, of, s->dst.dtype, &s->scale, &s->dst, r);
    if (st || !s->scale.buffer) return st;
    const size_t *z = s->scale.size, *c = s->dst.size;
    s->scale_mode = z[0] == c[0] && z[1] == c[1] && z[2] == c[2] ? SCALE_COMPUTED : SCALE_GIVEN;
    if (s->scale_mode == SCALE_COMPUTED) {
        r->output = true;
        return cla_tensor_check(ctx, &s->scale, name, true, &r->begin, &r->end);
    }
    return CLATTN_SUCCESS;
}

static int compare_keys(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Every slot within the caches' N * S or -1, and none twice. */
static clattn_status check_slots(clattn_context *ctx, const char *name, const int32_t *slots, size_t tokens,
                                 size_t pages, size_t page_rows) {
    CLA_FAIL_ON(tokens && !slots, ctx, CLATTN_ERROR_NULL_POINTER,
                "%s is NULL but k_new has %zu tokens; give each token's slot, or -1 to skip it", name, tokens);
    const size_t count = pages * page_rows; /* the cache's view was checked: this does not overflow */
    size_t used = 0;
    for (size_t t = 0; t < tokens; ++t) {
        CLA_FAIL_ON(
            slots[t] < -1 || (slots[t] >= 0 && (size_t)slots[t] >= count), ctx, CLATTN_ERROR_INVALID_SLOT,
            "%s[%zu] is %d but the caches have %zu slots (k_cache.size[0] * size[2] = %zu * %zu); give page * "
            "block_size + offset, or -1 to skip the token",
            name, t, (int)slots[t], count, pages, page_rows);
        used += slots[t] >= 0;
    }
    if (used < 2) return CLATTN_SUCCESS;
    /* Duplicates, by sorting (slot, token) pairs as one 64-bit key each. */
    uint64_t *keys = malloc(used * sizeof *keys);
    CLA_FAIL_ON(!keys, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory checking %zu slots", used);
    size_t n = 0;
    for (size_t t = 0; t < tokens; ++t)
        if (slots[t] >= 0) keys[n++] = (uint64_t)slots[t] << 32 | (uint64_t)t;
    qsort(keys, n, sizeof *keys, compare_keys);
    clattn_status st = CLATTN_SUCCESS;
    for (size_t i = 1; i < n && !st; ++i)
        if (keys[i] >> 32 == keys[i - 1] >> 32)
            st = cla_fail(ctx, CLATTN_ERROR_INVALID_SLOT,
                          "%s[%u] and %s[%u] are both %u; each slot takes one token (a page written by a call "
                          "must belong to one sequence)",
                          name, (unsigned)(keys[i - 1] & 0xffffffffu), name, (unsigned)(keys[i] & 0xffffffffu),
                          (unsigned)(keys[i] >> 32));
    free(keys);
    return st;
}

clattn_status cla_kv_append_check(clattn_context *ctx, const clattn_kv_append_desc *desc,
                                  const clattn_tensor *k_new, const clattn_tensor *v_new,
                                  const clattn_tensor *k_cache, const clattn_tensor *v_cache,
                                  const char *slots_name, cla_kv_append_plan *plan) {
    const void *const given[] = {desc, k_new, v_new, k_cache, v_cache};
    static const char *const given_names[] = {"desc", "k_new", "v_new", "k_cache", "v_cache"};
    clattn_status st = cla_check_given(ctx, given, given_names, 5);
    if (st) return st;
    const clattn_tensor *const tensors[] = {k_new, v_new, k_cache, v_cache};
    static const char *const names[] = {"k_new", "v_new", "k_cache", "v_cache"};
    if ((st = check_dtypes(ctx, tensors, names))) return st;
    for (int i = 0; i < 4; ++i)
        CLA_FAIL_ON(!tensors[i]->buffer, ctx, CLATTN_ERROR_NULL_POINTER, "%s: the buffer is NULL", names[i]);
    if ((st = check_shapes(ctx, k_new, v_new, k_cache, v_cache))) return st;

    cla_range ranges[6] = {{0}};
    for (int i = 0; i < 4; ++i) {
        cla_range *r = &ranges[i];
        r->name = names[i];
        r->buffer = tensors[i]->buffer;
        r->output = i >= 2;
        if ((st = cla_tensor_check(ctx, tensors[i], names[i], r->output, &r->begin, &r->end))) return st;
    }
    append_side *sides = plan->sides;
    sides[0] = (append_side){.name = "k", .src = *k_new, .dst = *k_cache, .scale = desc->k_scale};
    sides[1] = (append_side){.name = "v", .src = *v_new, .dst = *v_cache, .scale = desc->v_scale};
    size_t n = 4;
    if ((st = check_scale(ctx, "k_scale", "k_cache", &sides[0], &ranges[n]))) return st;
    if (sides[0].scale.buffer) ++n;
    if ((st = check_scale(ctx, "v_scale", "v_cache", &sides[1], &ranges[n]))) return st;
    if (sides[1].scale.buffer) ++n;
    if ((st = cla_check_overlaps(
             ctx, ranges, n,
             " (a cache of all keys then all values in one buffer is fine; pages that interleave "
             "keys and values are not)")))
        return st;
    plan->slots = desc->slot_mapping;
    plan->tokens = k_new->size[2];
    return check_slots(ctx, slots_name, desc->slot_mapping, plan->tokens, k_cache->size[0], k_cache->size[2]);
}

/* The side's kernel, with a work-group of the smallest power of two that covers the head dim, at most 64 and what
 * the device and the compiled kernel allow. */
static clattn_status side_kernel(clattn_context *ctx, const append_side *s, cl_kernel *kernel, size_t *wg) {
    size_t most = ctx->info.max_work_group_size;
    if (ctx->info.max_work_item_sizes[0] < most) most = ctx->info.max_work_item_sizes[0];
    if (most > 64) most = 64;
    *wg = 1;
    while (*wg < s->dst.size[3] && *wg * 2 <= most) *wg *= 2;
    for (;;) {
        char options[160];
        snprintf(options, sizeof options,
                 "-DSRC_DTYPE=%d -DDST_DTYPE=%d -DSCALE_MODE=%d -DSCALE_DTYPE=%d -DWG_SIZE=%zu", (int)s->src.dtype,
                 (int)s->dst.dtype, s->scale_mode, s->scale.buffer ? (int)s->scale.dtype : 0, *wg);
        clattn_status st = cla_kernel_get(ctx, "kv_append", options, "kv_append", kernel);
        if (st) return st;
        size_t kernel_max = 0;
        if (*wg == 1 || !*kernel ||
            clGetKernelWorkGroupInfo(*kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                                     &kernel_max, NULL) != CL_SUCCESS ||
            kernel_max >= *wg)
            return CLATTN_SUCCESS;
        *wg /= 2;
    }
}

/* Enqueues one side: a work-group per (token, head). */
static clattn_status enqueue_side(clattn_context *ctx, cla_chain *chain, const append_side *s, cl_kernel kernel,
                                  size_t wg, cl_mem slots) {
    cl_long src_offset = (cl_long)s->src.offset, dst_offset = (cl_long)s->dst.offset;
    cl_long scale_offset = (cl_long)s->scale.offset;
    cl_long4 src_strides = cla_strides4(&s->src), dst_strides = cla_strides4(&s->dst);
    cl_long4 scale_strides = cla_strides4(&s->scale);
    cl_int block = (cl_int)s->dst.size[2], dim = (cl_int)s->dst.size[3];
    cl_mem src = s->src.buffer, dst = s->dst.buffer, scale = s->scale.buffer;
    const cla_named_arg args[] = {
        CLA_NAMED("src", src),
        CLA_NAMED("src_offset", src_offset),
        CLA_NAMED("src_strides", src_strides),
        CLA_NAMED("dst", dst),
        CLA_NAMED("dst_offset", dst_offset),
        CLA_NAMED("dst_strides", dst_strides),
        CLA_NAMED("block", block),
        CLA_NAMED("slots", slots),
        CLA_NAMED("scale", scale),
        CLA_NAMED("scale_offset", scale_offset),
        CLA_NAMED("scale_strides", scale_strides),
        CLA_NAMED("dim", dim),
    };
    char what[48];
    snprintf(what, sizeof what, "kv_append (%s)", s->name);
    clattn_status st = cla_set_named_args(ctx, kernel, what, cla_args_kv_append.names, args, CLA_ARRAY_SIZE(args));
    if (st) return st;
    const size_t global[3] = {wg, s->src.size[2], s->src.size[1]}, local[3] = {wg, 1, 1};
    return cla_chain_kernel(ctx, chain, kernel, 3, global, local, what);
}

clattn_status cla_kv_append_enqueue(clattn_context *ctx, cla_chain *chain, const cla_kv_append_plan *plan) {
    const append_side *sides = plan->sides;
    if (!plan->tokens || !sides[0].dst.size[1]) return CLATTN_SUCCESS;
    /* Both programs first, so that a build failure writes nothing. */
    cl_kernel kernels[2] = {NULL, NULL};
    size_t wg[2] = {1, 1};
    clattn_status st = CLATTN_SUCCESS;
    for (int i = 0; i < 2 && !st; ++i) st = side_kernel(ctx, &sides[i], &kernels[i], &wg[i]);
    cl_mem slots = NULL;
    if (!st)
        st = cla_temp_buffer_from(ctx, plan->tokens * sizeof(int32_t), plan->slots, CL_MEM_READ_ONLY,
                                  "the slot mapping", &slots);
    for (int i = 0; i < 2 && !st; ++i) st = enqueue_side(ctx, chain, &sides[i], kernels[i], wg[i], slots);
    /* Released now, freed by OpenCL once the kernels that read it have finished. */
    cla_temp_release(ctx, &slots);
    return st;
}

clattn_status clattn_kv_append(clattn_context *ctx, const clattn_kv_append_desc *desc, const clattn_tensor *k_new,
                               const clattn_tensor *v_new, const clattn_tensor *k_cache,
                               const clattn_tensor *v_cache, cl_command_queue queue, cl_uint num_wait,
                               const cl_event *wait_list, cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    cla_temp_begin(ctx);
    cla_kv_append_plan plan;
    clattn_status st = cla_check_queue(ctx, NULL, num_wait, wait_list);
    if (!st) st = cla_kv_append_check(ctx, desc, k_new, v_new, k_cache, v_cache, "desc->slot_mapping", &plan);
    if (!st) st = cla_check_queue(ctx, queue, 0, NULL);
    if (st) return st;
    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait, wait_list);
    if ((st = cla_kv_append_enqueue(ctx, &chain, &plan))) {
        cla_chain_abort(&chain);
        return st;
    }
    cl_int err = cla_chain_end(&chain, event);
    CLA_FAIL_ON(err != CL_SUCCESS, ctx, err, "enqueueing the completion marker failed: %d %s", err,
                cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}
