// SPDX-License-Identifier: Apache-2.0
/* Scaled dot-product attention, host side: argument validation into a plan, the choice between the fused and the
 * unfused implementation, and the empty-size cases that never reach a kernel or CLBlast. */
#include "sdpa_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void clattn_sdpa_desc_init(clattn_sdpa_desc *desc) {
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->scale = NAN;
    desc->causal = CLATTN_CAUSAL_NONE;
    desc->window_left = CLATTN_WINDOW_UNBOUNDED;
    desc->window_right = CLATTN_WINDOW_UNBOUNDED;
    desc->impl = CLATTN_IMPL_AUTO;
    desc->block_mask_q = 128;
    desc->block_mask_k = 128;
}

/* Head dims in range, and query heads a multiple of the key/value heads. */
static clattn_status check_heads(clattn_context *ctx, size_t Hq, size_t Hkv, size_t Dk, size_t Dv) {
    if (Dk == 0 || Dv == 0 || Dk > CLATTN_MAX_HEAD_DIM || Dv > CLATTN_MAX_HEAD_DIM)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM, "head dims must be 1..%d; q/k have %zu and v has %zu",
                        CLATTN_MAX_HEAD_DIM, Dk, Dv);
    if ((Hkv == 0 && Hq != 0) || (Hkv != 0 && Hq % Hkv != 0))
        return cla_fail(
            ctx, CLATTN_ERROR_INVALID_HEADS,
            "q has %zu heads and k/v have %zu: the query heads must be a multiple of the key/value heads", Hq, Hkv);
    return CLATTN_SUCCESS;
}

/* The shapes of a dense call: q [B, Hq, Lq, Dk], k [B, Hkv, Lk, Dk], v [B, Hkv, Lk, Dv], out [B, Hq, Lq, Dv]. */
static clattn_status check_shapes(clattn_context *ctx, const clattn_tensor *q, const clattn_tensor *k,
                                  const clattn_tensor *v, const clattn_tensor *out) {
    const size_t B = q->size[0], Hq = q->size[1], Lq = q->size[2], Dk = q->size[3];
    const size_t Hkv = k->size[1], Lk = k->size[2], Dv = v->size[3];
    clattn_status st = CLATTN_SUCCESS;
    if (!st) st = cla_expect_size(ctx, k, "k", 0, B, "q's batch");
    if (!st) st = cla_expect_size(ctx, k, "k", 3, Dk, "q's head dim");
    if (!st) st = cla_expect_size(ctx, v, "v", 0, B, "q's batch");
    if (!st) st = cla_expect_size(ctx, v, "v", 1, Hkv, "k's heads");
    if (!st) st = cla_expect_size(ctx, v, "v", 2, Lk, "k's seq");
    if (!st) st = cla_expect_size(ctx, out, "out", 0, B, "q's batch");
    if (!st) st = cla_expect_size(ctx, out, "out", 1, Hq, "q's heads");
    if (!st) st = cla_expect_size(ctx, out, "out", 2, Lq, "q's seq");
    if (!st) st = cla_expect_size(ctx, out, "out", 3, Dv, "v's head dim");
    if (st) return st;
    return check_heads(ctx, Hq, Hkv, Dk, Dv);
}

int clattn_mask_broadcasts(const size_t mask_size[4], const size_t shape[4]) {
    if (!mask_size || !shape) return 0;
    for (int d = 0; d < 4; ++d)
        if (mask_size[d] != 1 && mask_size[d] != shape[d]) return 0;
    return 1;
}

clattn_status cla_check_mask(clattn_context *ctx, const char *name, clattn_tensor *m, size_t batch, size_t heads,
                             size_t q_len, size_t kv_len, int *kind, cla_range *r) {
    if (m->dtype == CLATTN_DTYPE_BOOL)
        *kind = CLA_MASK_BOOL;
    else if (cla_is_float_dtype(m->dtype))
        *kind = CLA_MASK_ADDITIVE;
    else
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK, "%s: dtype %d is neither additive (F32/F16/BF16) nor BOOL",
                        name, (int)m->dtype);
    const size_t want[4] = {batch, heads, q_len, kv_len};
    if (!clattn_mask_broadcasts(m->size, want))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK,
                        "%s: sizes [%zu, %zu, %zu, %zu] do not broadcast to [%zu, %zu, %zu, %zu] (batch, heads, "
                        "query length, key length): each size must be 1 or the full size",
                        name, m->size[0], m->size[1], m->size[2], m->size[3], want[0], want[1], want[2], want[3]);
    /* A size-1 dimension broadcasts: the kernels index every dimension through its stride, so a stride of 0 makes
     * each row, head and key read the one element there is. */
    for (int d = 0; d < 4; ++d)
        if (m->size[d] == 1) m->stride[d] = 0;
    return cla_tensor_check(ctx, m, name, false, &r->begin, &r->end);
}

clattn_status cla_check_key_lengths(clattn_context *ctx, const char *name, cl_mem buffer, size_t offset,
                                    size_t batch, cla_range *r) {
    r->begin = r->end = 0;
    if (batch == 0) return CLATTN_SUCCESS;
    size_t mem_size = 0;
    clattn_status st = cla_buffer_check(ctx, name, buffer, &mem_size);
    if (st != CLATTN_SUCCESS) return st;
    if (batch > SIZE_MAX / 4 || offset > SIZE_MAX / 4 - batch)
        return cla_fail(ctx, CLATTN_ERROR_SIZE_OVERFLOW, "%s: offset %zu overflows", name, offset);
    r->begin = offset * 4;
    r->end = r->begin + batch * 4;
    if (r->end > mem_size)
        return cla_fail(ctx, CLATTN_ERROR_BUFFER_TOO_SMALL,
                        "%s: %zu int32 values from offset %zu need %zu bytes but the buffer has %zu", name, batch,
                        offset, r->end, mem_size);
    return CLATTN_SUCCESS;
}

/* A per-head input of the score modifiers (sinks, ALiBi slopes): F32 [1, Hq, 1, 1] in a buffer that holds it. */
static clattn_status check_head_values(clattn_context *ctx, const char *name, const clattn_tensor *t, size_t heads,
                                       cla_range *r) {
    if (t->dtype != CLATTN_DTYPE_F32)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE,
                        "desc->%s: dtype %s must be F32 (one float per query head)", name,
                        clattn_dtype_name(t->dtype));
    if (t->size[0] != 1 || t->size[1] != heads || t->size[2] != 1 || t->size[3] != 1)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                        "desc->%s: sizes [%zu, %zu, %zu, %zu] must be [1, %zu, 1, 1], one value per query head "
                        "(clattn_tensor_bhld(buffer, CLATTN_DTYPE_F32, 1, %zu, 1, 1))",
                        name, t->size[0], t->size[1], t->size[2], t->size[3], heads, heads);
    r->name = name;
    r->buffer = t->buffer;
    return cla_tensor_check(ctx, t, name, false, &r->begin, &r->end);
}

/* The score modifiers of a call: a softcap that is 0 (none) or positive and finite, and the per-head inputs. */
static clattn_status check_mods(clattn_context *ctx, cla_sdpa_plan *p, cla_range *ranges, size_t *n) {
    if (!(p->softcap >= 0.0f) || isinf(p->softcap))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc->softcap is %g; give a positive finite cap (Gemma 2 uses 50 for attention logits) "
                        "or 0 for none",
                        (double)p->softcap);
    clattn_status st;
    if (p->sinks.buffer && (st = check_head_values(ctx, "sinks", &p->sinks, p->q_heads, &ranges[(*n)++])))
        return st;
    if (p->alibi_slopes.buffer &&
        (st = check_head_values(ctx, "alibi_slopes", &p->alibi_slopes, p->q_heads, &ranges[(*n)++])))
        return st;
    return CLATTN_SUCCESS;
}

static clattn_status check_outputs(clattn_context *ctx, cla_sdpa_plan *p, cla_range *ranges, size_t *n) {
    clattn_status st;
    if (p->lse.buffer) {
        const clattn_tensor *t = &p->lse;
        if (t->dtype != CLATTN_DTYPE_F32)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "lse: dtype must be F32");
        /* Laid out like q's rows: [B, Hq, Lq, 1], or [1, Hq, total_q, 1] for packed queries. */
        const size_t *qs = p->q.size;
        if (t->size[0] != qs[0] || t->size[1] != qs[1] || t->size[2] != qs[2] || t->size[3] != 1)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                            "lse: sizes [%zu, %zu, %zu, %zu] must be [%zu, %zu, %zu, 1]", t->size[0], t->size[1],
                            t->size[2], t->size[3], qs[0], qs[1], qs[2]);
        cla_range *r = &ranges[(*n)++];
        r->name = "lse";
        r->buffer = t->buffer;
        if ((st = cla_tensor_check(ctx, t, "lse", true, &r->begin, &r->end))) return st;
    }
    if (p->weights.buffer) {
        const clattn_tensor *t = &p->weights;
        if (!cla_is_float_dtype(t->dtype))
            return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "weights: dtype must be F32, F16 or BF16");
        if (t->size[0] != p->batch || t->size[1] != p->q_heads || t->size[2] != p->q_len || t->size[3] != p->kv_len)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_SHAPE,
                            "weights: sizes [%zu, %zu, %zu, %zu] must be [%zu, %zu, %zu, %zu]", t->size[0],
                            t->size[1], t->size[2], t->size[3], p->batch, p->q_heads, p->q_len, p->kv_len);
        cla_range *r = &ranges[(*n)++];
        r->name = "weights";
        r->buffer = t->buffer;
        if ((st = cla_tensor_check(ctx, t, "weights", true, &r->begin, &r->end))) return st;
    }
    return CLATTN_SUCCESS;
}

/* Whether the fused kernels take the plan's head dims: they keep a query row and an output row per work-item. */
static bool fused_fits(const cla_sdpa_plan *p) {
    return p->head_dim <= CLATTN_MAX_FUSED_HEAD_DIM && p->v_head_dim <= CLATTN_MAX_FUSED_HEAD_DIM;
}

/* Packed and paged calls and 8-bit keys or values: the fused kernels read them where they are. */
static bool fused_only_layout(const cla_sdpa_plan *p) {
    return cla_sdpa_has_seqs(p) || p->k_scale.buffer || p->v_scale.buffer;
}

/* The weights and head dims past the fused kernels' bound exist only in the unfused path; everything else is
 * faster and smaller fused. CLATTN_IMPL (read when the context was created) is a preference for AUTO calls, and
 * yields to both. */
static clattn_impl choose_impl(const clattn_context *ctx, const cla_sdpa_plan *p, clattn_impl asked) {
    if (asked != CLATTN_IMPL_AUTO) return asked;
    /* The caller's score_mod and mask_mod, the serving layouts and 8-bit keys and values exist only in the fused
     * kernels, at any head dim they take. */
    if (cla_sdpa_has_user_mods(p) || p->block_mask.buffer || fused_only_layout(p)) return CLATTN_IMPL_FUSED;
    if (p->weights.buffer || !fused_fits(p)) return CLATTN_IMPL_UNFUSED;
    /* Past 256 only the CPU kernel (row blocks in memory sized for them) beats the GEMMs; a GPU work-item would
     * keep whole rows in private memory, which spills. */
    const size_t gpu_fused_dim = 256;
    if ((p->head_dim > gpu_fused_dim || p->v_head_dim > gpu_fused_dim) && ctx->info.type != CLATTN_DEVICE_TYPE_CPU)
        return CLATTN_IMPL_UNFUSED;
    return ctx->preferred_impl == CLATTN_IMPL_UNFUSED ? CLATTN_IMPL_UNFUSED : CLATTN_IMPL_FUSED;
}

clattn_status cla_sdpa_validate(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                                cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list,
                                cla_sdpa_plan *p) {
    const void *const given[] = {desc, q, k, v, out};
    static const char *const given_names[] = {"desc", "q", "k", "v", "out"};
    if (cla_check_given(ctx, given, given_names, 5)) return CLATTN_ERROR_NULL_POINTER;
    clattn_status qst = cla_check_queue(ctx, NULL, num_wait, wait_list);
    if (qst != CLATTN_SUCCESS) return qst;
    const clattn_tensor *inputs[] = {q, k, v, out};
    static const char *names[] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; ++i) {
        /* Keys and values may also be 8-bit, read with their scales (cla_sdpa_check_scales). */
        const bool kv = i == 1 || i == 2;
        if (!cla_is_float_dtype(inputs[i]->dtype) && !(kv && cla_is_kv8_dtype(inputs[i]->dtype)))
            return cla_fail(ctx, CLATTN_ERROR_INVALID_DTYPE, "%s: dtype %d is not F32, F16 or BF16%s", names[i],
                            (int)inputs[i]->dtype, kv ? " (or I8 or FP8_E4M3 with desc->k_scale/v_scale)" : "");
        if (!inputs[i]->buffer) return cla_fail(ctx, CLATTN_ERROR_NULL_POINTER, "%s: the buffer is NULL", names[i]);
    }
    memset(p, 0, sizeof *p);
    const bool seqs = cla_sdpa_desc_has_seqs(desc);
    clattn_status st =
        seqs ? cla_sdpa_check_seq_shapes(ctx, desc, q, k, v, out, p) : check_shapes(ctx, q, k, v, out);
    if (st) return st;
    if (seqs && (st = check_heads(ctx, q->size[1], k->size[1], q->size[3], v->size[3]))) return st;
    /* The kernels index positions in 32 bits; 2^28 leaves room for the shifts and windows they add. */
    const size_t max_len = (size_t)1 << 28;
    if (q->size[2] > max_len || k->size[2] > max_len || q->size[0] * q->size[1] > INT32_MAX)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "sequence lengths above %zu or more than %d (batch x heads) rows are not supported",
                        max_len, INT32_MAX);
    if (desc->causal < CLATTN_CAUSAL_NONE || desc->causal > CLATTN_CAUSAL_BOTTOM_RIGHT)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK, "desc->causal: unknown value %d", (int)desc->causal);
    CLA_FAIL_ON(desc->window_align < CLATTN_WINDOW_ALIGN_DEFAULT ||
                    desc->window_align > CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT,
                ctx, CLATTN_ERROR_INVALID_MASK,
                "desc->window_align: unknown value %d; use CLATTN_WINDOW_ALIGN_DEFAULT, _TOP_LEFT or _BOTTOM_RIGHT",
                (int)desc->window_align);
    if (desc->impl < CLATTN_IMPL_AUTO || desc->impl > CLATTN_IMPL_UNFUSED)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "desc->impl: unknown value %d", (int)desc->impl);
    if (desc->window_left < -1 || desc->window_right < -1)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_MASK,
                        "window (%lld, %lld): each side must be >= 0 or CLATTN_WINDOW_UNBOUNDED (-1)",
                        (long long)desc->window_left, (long long)desc->window_right);
    if (isinf(desc->scale))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc->scale is infinite; give a finite scale or NAN for "
                        "the default 1/sqrt(head_dim)");

    p->batch = p->whole_batch = seqs ? desc->seq_count : q->size[0];
    p->q_heads = p->whole_heads = q->size[1];
    p->head_dim = q->size[3];
    p->kv_heads = k->size[1];
    if (!seqs) {
        p->q_len = q->size[2];
        p->kv_len = k->size[2];
    }
    p->v_head_dim = v->size[3];
    p->scale = isnan(desc->scale) ? (float)(1.0 / sqrt((double)p->head_dim)) : desc->scale;
    p->causal = desc->causal;
    p->window_align = cla_window_align(desc->window_align, desc->causal);
    /* A window side at least Lq + Lk wide excludes nothing: it is unbounded, which also keeps the kernels' position
     * arithmetic within 32 bits. */
    const int64_t span = (int64_t)(p->q_len + p->kv_len);
    p->window_left = desc->window_left >= span ? CLATTN_WINDOW_UNBOUNDED : desc->window_left;
    p->window_right = desc->window_right >= span ? CLATTN_WINDOW_UNBOUNDED : desc->window_right;
    p->q = *q;
    p->k = *k;
    p->v = *v;
    p->out = *out;
    p->mask = desc->mask;
    p->key_lengths = desc->key_lengths;
    p->key_lengths_offset = desc->key_lengths_offset;
    p->lse = desc->lse;
    p->weights = desc->weights;
    p->softcap = desc->softcap;
    p->sinks = desc->sinks;
    p->alibi_slopes = desc->alibi_slopes;

    cla_range ranges[13 + CLATTN_MAX_MOD_BUFFERS] = {{0}};
    size_t n = 0;
    for (int i = 0; i < 4; ++i) {
        cla_range *r = &ranges[n++];
        r->name = names[i];
        r->buffer = inputs[i]->buffer;
        if ((st = cla_tensor_check(ctx, inputs[i], names[i], i == 3, &r->begin, &r->end))) return st;
    }
    if (p->mask.buffer) {
        cla_range *r = &ranges[n++];
        r->name = "mask";
        r->buffer = p->mask.buffer;
        if ((st = cla_check_mask(ctx, "mask", &p->mask, p->batch, p->q_heads, p->q_len, p->kv_len, &p->mask_kind,
                                 r)))
            return st;
    }
    CLA_FAIL_ON(p->key_lengths && p->kv_layout != CLA_KV_DENSE, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "desc->key_lengths: packed keys and caches (paged, or dense with seqlens_k) have their own "
                "lengths (cu_seqlens_k, seqlens_k); leave key_lengths NULL");
    CLA_FAIL_ON(p->weights.buffer && seqs, ctx, CLATTN_ERROR_UNSUPPORTED,
                "desc->weights: packed and paged calls do not produce attention weights (they run in the fused "
                "kernels); leave weights empty");
    if ((st = cla_sdpa_check_scales(ctx, desc, p, ranges, &n))) return st;
    if (p->key_lengths) {
        cla_range *r = &ranges[n++];
        r->name = "key_lengths";
        r->buffer = p->key_lengths;
        if ((st = cla_check_key_lengths(ctx, "key_lengths", p->key_lengths, p->key_lengths_offset, p->batch, r)))
            return st;
    }
    if ((st = check_mods(ctx, p, ranges, &n))) return st;
    if ((st = cla_sdpa_check_user_mods(ctx, desc, p, ranges, &n))) return st;
    if ((st = cla_sdpa_check_block_mask(ctx, desc, p, ranges, &n))) return st;
    const size_t first_output = n;
    if ((st = check_outputs(ctx, p, ranges, &n))) return st;
    /* No output (out, lse, weights) may share memory with any other tensor of the call. */
    ranges[3].output = true;
    for (size_t i = first_output; i < n; ++i) ranges[i].output = true;
    if ((st = cla_check_overlaps(ctx, ranges, n, ""))) return st;
    if ((st = cla_check_queue(ctx, queue, 0, NULL))) return st;
    p->impl = choose_impl(ctx, p, desc->impl);
    /* The features that exist in the fused kernels alone, named for the messages. */
    const char *fused_only = cla_sdpa_has_user_mods(p) ? "desc->score_mod and desc->mask_mod"
                             : p->block_mask.buffer    ? "desc->block_mask"
                             : fused_only_layout(p)    ? "packed or paged keys and 8-bit keys or values"
                                                       : NULL;
    if (fused_only) {
        CLA_FAIL_ON(p->impl == CLATTN_IMPL_UNFUSED, ctx, CLATTN_ERROR_UNSUPPORTED,
                    "%s run in the fused kernels only; use CLATTN_IMPL_AUTO or CLATTN_IMPL_FUSED", fused_only);
        CLA_FAIL_ON(p->weights.buffer, ctx, CLATTN_ERROR_UNSUPPORTED,
                    "%s run in the fused kernels only, which do not produce attention weights; leave desc->weights "
                    "empty",
                    fused_only);
        CLA_FAIL_ON(!fused_fits(p), ctx, CLATTN_ERROR_UNSUPPORTED,
                    "%s run in the fused kernels only, which take head dims up to %d, not %zu (q/k) and %zu (v)",
                    fused_only, CLATTN_MAX_FUSED_HEAD_DIM, p->head_dim, p->v_head_dim);
    }
    if (p->impl == CLATTN_IMPL_FUSED && p->weights.buffer)
        return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the fused implementation does not produce attention weights; use "
                        "CLATTN_IMPL_AUTO or CLATTN_IMPL_UNFUSED when weights are requested");
    if (p->impl == CLATTN_IMPL_FUSED && !fused_fits(p))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_HEAD_DIM,
                        "the fused implementation takes head dims up to %d, not %zu (q/k) and %zu (v); "
                        "use CLATTN_IMPL_AUTO or CLATTN_IMPL_UNFUSED, which take head dims up to %d",
                        CLATTN_MAX_FUSED_HEAD_DIM, p->head_dim, p->v_head_dim, CLATTN_MAX_HEAD_DIM);
    return CLATTN_SUCCESS;
}

clattn_status cla_sdpa_enqueue(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                               const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                               cla_chain *chain) {
    cla_sdpa_plan plan;
    clattn_status st = cla_sdpa_validate(ctx, desc, q, k, v, out, chain->queue, 0, NULL, &plan);
    if (st != CLATTN_SUCCESS) return st;
    if (plan.batch == 0 || plan.q_heads == 0 || plan.q_len == 0) return CLATTN_SUCCESS;
    if (cla_sdpa_split_wanted(ctx, &plan)) return cla_sdpa_split(ctx, &plan, chain);
    return cla_sdpa_run(ctx, &plan, chain);
}

clattn_status cla_sdpa_run(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain) {
    return plan->impl == CLATTN_IMPL_UNFUSED ? cla_sdpa_unfused(ctx, plan, chain)
                                             : cla_sdpa_fused(ctx, plan, chain);
}

clattn_status clattn_sdpa(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                          const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                          cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list, cl_event *event) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    return cla_sdpa_call(ctx, desc, q, k, v, out, queue, num_wait, wait_list, event);
}

clattn_status cla_sdpa_call(clattn_context *ctx, const clattn_sdpa_desc *desc, const clattn_tensor *q,
                            const clattn_tensor *k, const clattn_tensor *v, const clattn_tensor *out,
                            cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list, cl_event *event) {
    cla_sdpa_plan plan;
    cla_temp_begin(ctx);
    /* Validated here as well, so that the caller's wait list is checked before anything is enqueued. */
    clattn_status st = cla_sdpa_validate(ctx, desc, q, k, v, out, queue, num_wait, wait_list, &plan);
    if (st != CLATTN_SUCCESS) return st;

    cla_chain chain;
    cla_chain_begin(&chain, ctx, queue ? queue : ctx->queue, num_wait, wait_list);
    st = cla_sdpa_enqueue(ctx, desc, q, k, v, out, &chain);
    if (st != CLATTN_SUCCESS) {
        cla_chain_abort(&chain);
        return st;
    }
    cl_int err = cla_chain_end(&chain, event);
    if (err != CL_SUCCESS)
        return cla_fail(ctx, err, "enqueueing the completion marker failed: %d %s", err, cla_cl_error_text(err));
    return CLATTN_SUCCESS;
}

int cla_sdpa_common_defines(const cla_sdpa_plan *p, bool head_dims, char *out, size_t size) {
    bool unit = p->q.stride[3] == 1 && p->k.stride[3] == 1 && p->v.stride[3] == 1 && p->out.stride[3] == 1;
    char dims[64] = "";
    if (head_dims) snprintf(dims, sizeof dims, "-DHEAD_DIM=%zu -DV_HEAD_DIM=%zu ", p->head_dim, p->v_head_dim);
    char seqs[128];
    cla_sdpa_seq_defines(p, seqs, sizeof seqs);
    /* The window's alignment is spelled out only where it is not the causal mask's (the kernels' default), so
     * that every other call builds the programs it always did. */
    char align[32] = "";
    if (p->window_align != cla_window_align(CLATTN_WINDOW_ALIGN_DEFAULT, p->causal))
        snprintf(align, sizeof align, " -DWINDOW_ALIGN=%d", (int)p->window_align);
    return snprintf(
        out, size,
        "%s-DQ_DTYPE=%d -DK_DTYPE=%d -DV_DTYPE=%d -DO_DTYPE=%d -DMASK_KIND=%d -DMASK_DTYPE=%d -DCAUSAL=%d "
        "-DHAS_WINDOW=%d -DHAS_KEY_LENGTHS=%d -DHAS_LSE=%d -DUNIT_DSTRIDE=%d%s%s%s%s%s%s",
        dims, (int)p->q.dtype, (int)p->k.dtype, (int)p->v.dtype, (int)p->out.dtype, p->mask_kind,
        p->mask_kind ? (int)p->mask.dtype : 0, (int)p->causal, p->window_left >= 0 || p->window_right >= 0,
        p->key_lengths != NULL, p->lse.buffer != NULL, unit, p->softcap > 0.0f ? " -DHAS_SOFTCAP=1" : "",
        p->sinks.buffer ? " -DHAS_SINKS=1" : "", p->alibi_slopes.buffer ? " -DHAS_ALIBI=1" : "",
        p->block_mask.buffer ? " -DHAS_BLOCK_MASK=1" : "", align, seqs);
}

clattn_window_align cla_window_align(clattn_window_align asked, clattn_causal causal) {
    if (asked != CLATTN_WINDOW_ALIGN_DEFAULT) return asked;
    return causal == CLATTN_CAUSAL_BOTTOM_RIGHT ? CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT : CLATTN_WINDOW_ALIGN_TOP_LEFT;
}

float cla_sdpa_softcap2(const cla_sdpa_plan *p) {
    return p->softcap > 0.0f ? p->softcap * 1.4426950408889634f : 0.0f;
}

cl_long4 cla_sdpa_mods(const cla_sdpa_plan *p) {
    cl_long4 m = {{(cl_long)p->sinks.offset, (cl_long)p->sinks.stride[1], (cl_long)p->alibi_slopes.offset,
                   (cl_long)p->alibi_slopes.stride[1]}};
    return m;
}
