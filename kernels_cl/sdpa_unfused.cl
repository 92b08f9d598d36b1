// SPDX-License-Identifier: Apache-2.0
/* Unfused scaled dot-product attention, device side: the small kernels around the two CLBlast GEMMs of
 * src/attention/sdpa_unfused.c. For one chunk of (batch, head) pairs and a block of query rows the host runs
 *   pack_q / pack_k / pack_v  strided F32/F16/BF16 views -> contiguous fp32 (CLBlast has no half GEMM without
 *                             cl_khr_fp16 and wants unit stride along the head dim); pack_v also zeroes the keys
 *                             past key_lengths[b] so that padding (NaN) cannot leak through 0 * NaN in P V,
 *   GEMM                      S = (scale * log2 e) Q K^T, in log2 units like the fused kernel,
 *   masked_softmax            S -> unnormalised P in place, 1/rowsum per row, and the optional lse and weights,
 *   GEMM                      O = P V,
 *   write_out                 out = O / rowsum in the output's dtype and strides, zeros for fully masked rows.
 *
 * The contract is the fused kernel's (kernels_cl/sdpa_fused.cl): a key that is masked for a row contributes
 * nothing to that row, not 0 * v. A GEMM cannot skip keys per row, so masked_softmax stores masked keys as -0.0f
 * (an exp2 never yields -0) and write_out recomputes any element the GEMM left non-finite while skipping those
 * keys; that is the only case in which a non-finite value of a masked key could have reached the output.
 *
 * Specialisation defines come from cla_sdpa_common_defines() (dtypes, MASK_KIND, MASK_DTYPE, CAUSAL, HAS_WINDOW,
 * HAS_KEY_LENGTHS, HAS_LSE, and the score modifiers HAS_SOFTCAP, HAS_ALIBI, HAS_SINKS, applied in masked_softmax
 * with common.cl's helpers) plus W_DTYPE and HAS_WEIGHTS for the weights output and the tunable SOFTMAX_WG. The
 * head dims are arguments, not defines: nothing here is sized by them, so one program serves every width. */

#ifndef SOFTMAX_WG
#define SOFTMAX_WG 64 /* work-items per softmax row; a power of two */
#endif
#ifndef HAS_WEIGHTS
#define HAS_WEIGHTS 0
#endif

#if SOFTMAX_WG < 1 || (SOFTMAX_WG & (SOFTMAX_WG - 1)) != 0
#error "SOFTMAX_WG must be a power of two"
#endif

/* Terms one partial sum of a row takes before it joins the row's total: a single fp32 sum over all Lk keys would
 * drift and, past 2^24 terms, stop growing (CLA_MAX_KEYS_PER_SUM in src/internal.h). */
#define SUM_BLOCK 4096

/* A masked key's entry of P: -0.0f. Its bit pattern is tested, since -0.0f == 0.0f. */
#define MASKED_BITS 0x80000000u

/* Copies rows [row0, row0 + rows) of the heads [first, first + count) (flat index b * heads + h) of a strided view
 * into dst as contiguous fp32 [count][rows][dim]. One work-item per element: global (dim, rows, count).
 * zero_from_key_lengths: rows at or past key_lengths[b] are written as 0 (V under key padding). */
#define DEFINE_PACK(name, DT)                                                                                      \
    __kernel void name(__global const STORAGE(DT) * src, long4 stride, long offset, int heads, int first,          \
                       int row0, int rows, int dim, __global float *dst, __global const int *key_lengths,          \
                       long kl_offset, int zero_from_key_lengths, int Lk) {                                        \
        const int d = get_global_id(0), r = get_global_id(1), t = get_global_id(2);                                \
        const int flat = first + t, b = flat / heads, h = flat % heads, j = row0 + r;                              \
        float x = 0.0f;                                                                                            \
        if (!zero_from_key_lengths || j < cla_kv_limit(key_lengths, kl_offset, b, Lk))                             \
            x = LOAD(DT, src, offset + b * stride.x + h * stride.y + j * stride.z + d * stride.w);                 \
        dst[((long)t * rows + r) * dim + d] = x;                                                                   \
    }

DEFINE_PACK(pack_q, Q_DTYPE)
DEFINE_PACK(pack_k, K_DTYPE)
DEFINE_PACK(pack_v, V_DTYPE)

/* Reductions over the work-group. Every work-item calls them (the loops around them have uniform bounds), so every
 * work-item reaches every barrier; the last barrier lets `red` be reused at once. */
inline float group_max(__local float *red, float x) {
    const int lid = get_local_id(0);
    red[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = SOFTMAX_WG / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = cla_max_nan(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float group_sum(__local float *red, float x) {
    const int lid = get_local_id(0);
    red[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = SOFTMAX_WG / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Masked safe softmax of the score rows of one chunk, in place. s holds [count][rows][Lk] logits already scaled
 * into log2 units; afterwards it holds exp2(x - max) for kept keys and -0.0f for masked ones, and row_inv holds
 * 1/rowsum (0 for a fully masked row, NaN for a row with a NaN logit). One work-group of SOFTMAX_WG work-items per
 * row: global (SOFTMAX_WG * rows, count).
 * dims: (Hq, Lq, Lk, rows); first: (first flat (b, h) index of the chunk, first query row of the block);
 * offsets: s0 mask, s1 key_lengths, s2 lse, s3 weights; window: (left, right), -1 unbounded; softcap2, sinks, alibi
 * and mods: the score modifiers as the fused kernels take them (common.cl). */
__kernel __attribute__((reqd_work_group_size(SOFTMAX_WG, 1, 1))) void
masked_softmax(__global float *s, __global float *row_inv, int4 dims, int2 first,
               __global const STORAGE(MASK_DTYPE) * mask, long4 mask_stride, __global const int *key_lengths,
               __global float *lse, long4 lse_stride, __global STORAGE(W_DTYPE) * w, long4 w_stride, long8 offsets,
               long2 window, float softcap2, __global const float *sinks, __global const float *alibi, long4 mods) {
    __local float red[SOFTMAX_WG];
    const int Hq = dims.x, Lq = dims.y, Lk = dims.z, rows = dims.w;
    const int lid = get_local_id(0), r = get_group_id(0), t = get_global_id(1);
    const int bh = first.x + t, b = bh / Hq, h = bh % Hq, i = first.y + r;
    __global float *srow = s + ((long)t * rows + r) * Lk;

    /* [lo, hi): the keys causal masking, the window and the key length leave to row i (the rules of common.cl). */
    const int2 shift = cla_shifts(Lq, Lk);
    const int2 win = (int2)((int)window.x, (int)window.y); /* the host keeps windows below Lq + Lk */
    const int lo = cla_key_lo(i, shift, win),
              hi = cla_key_hi(i, shift, win, cla_kv_limit(key_lengths, offsets.s1, b, Lk));
#if MASK_KIND
    const long mask_row = offsets.s0 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z;
#endif
    const float slope2 = cla_alibi_slope2(alibi, mods, h);

    /* Pass 1: the masked logits (-inf for a masked key, as in the fused kernel) and their maximum. */
    float m = CLA_NEG_INF;
    for (int j = lid; j < Lk; j += SOFTMAX_WG) {
        float x = srow[j];
        if (j < lo || j >= hi) {
            x = CLA_NEG_INF;
        } else {
#if HAS_SCORE_MODS
            x = cla_score_mod(x, i + shift.y, j, softcap2, slope2);
#endif
#if MASK_KIND == 1
            const float mv = LOAD(MASK_DTYPE, mask, mask_row + j * mask_stride.w);
            x = mv <= -FLT_MAX ? CLA_NEG_INF : fma(mv, CLA_LOG2E, x);
#elif MASK_KIND == 2
            if (mask[mask_row + j * mask_stride.w] == 0) x = CLA_NEG_INF;
#endif
        }
        srow[j] = x;
        m = cla_max_nan(m, x);
    }
    m = group_max(red, m);
#if HAS_SINKS
    /* The sink joins the row's denominator with no value: the probabilities are taken relative to it as well. */
    const float sink2 = cla_sink2(sinks, mods, h);
    m = cla_max_nan(m, sink2);
#endif

    /* Pass 2: unnormalised probabilities and their sum. A logit of -inf contributes nothing, as in the fused
     * kernel, and is marked so that write_out can skip it. */
    float l = 0.0f, part = 0.0f;
    int in_part = 0;
    for (int j = lid; j < Lk; j += SOFTMAX_WG) {
        const float x = srow[j];
        float p = as_float(MASKED_BITS);
        if (x != CLA_NEG_INF) {
            p = exp2(x - m);
            part += p;
        }
        srow[j] = p;
        if (++in_part == SUM_BLOCK) {
            l += part;
            part = 0.0f;
            in_part = 0;
        }
    }
    l = group_sum(red, l + part);
#if HAS_SINKS
    if (m != CLA_NEG_INF) l += exp2(sink2 - m);
#endif

    const bool empty = m == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
    const float inv = empty ? 0.0f : 1.0f / l;
    if (lid == 0) {
        row_inv[(long)t * rows + r] = inv;
#if HAS_LSE
        lse[offsets.s2 + b * lse_stride.x + h * lse_stride.y + i * lse_stride.z] =
            empty ? CLA_NEG_INF : (m + log2(l)) * CLA_LN2;
#endif
    }

#if HAS_WEIGHTS
    /* Pass 3: the normalised weights; a masked key's weight is 0 even in a NaN row. */
    const long w_row = offsets.s3 + b * w_stride.x + h * w_stride.y + i * w_stride.z;
    for (int j = lid; j < Lk; j += SOFTMAX_WG) {
        const float p = srow[j];
        STORE(W_DTYPE, w, w_row + j * w_stride.w, as_uint(p) == MASKED_BITS ? 0.0f : p * inv);
    }
#endif
}

/* out = O * row_inv for the rows of one chunk, in the output's dtype and strides; zeros for a fully masked row.
 * An element the GEMM left non-finite is recomputed from P and V without the masked keys, so that a NaN or inf in
 * the value of a key masked for this row (but not for others) stays out, exactly as in the fused kernel.
 * v is fp32 (packed or the caller's F32 view), addressed as v_offset + b * v_stride.x + hk * v_stride.y + j *
 * v_stride.z + d * v_stride.w. One work-item per element: global (v_dim, rows, count).
 * dims: (Hq, Lk, rows, Hq / Hkv); v_dim: the value head dim; first as for masked_softmax. */
__kernel void write_out(__global const float *o_tmp, __global const float *p, __global const float *row_inv,
                        __global const float *v, long4 v_stride, long v_offset, int4 dims, int v_dim, int2 first,
                        __global STORAGE(O_DTYPE) * out, long4 o_stride, long o_offset) {
    const int Hq = dims.x, Lk = dims.y, rows = dims.z, group = dims.w;
    const int d = get_global_id(0), r = get_global_id(1), t = get_global_id(2);
    const int bh = first.x + t, b = bh / Hq, h = bh % Hq, hk = h / group, i = first.y + r;
    const long row = (long)t * rows + r;
    const float inv = row_inv[row];
    float acc = 0.0f;
    if (inv != 0.0f) {
        acc = o_tmp[row * v_dim + d];
        /* A NaN row (inv NaN) is NaN whatever the keys, so only finite rows need the second look. */
        if (!isfinite(acc) && !isnan(inv)) {
            __global const float *prow = p + row * Lk;
            __global const float *vcol = v + v_offset + b * v_stride.x + hk * v_stride.y + d * v_stride.w;
            acc = 0.0f;
            float part = 0.0f;
            for (int j = 0; j < Lk; ++j) {
                const float pj = prow[j];
                if (as_uint(pj) != MASKED_BITS) part = fma(pj, vcol[j * v_stride.z], part);
                if (j % SUM_BLOCK == SUM_BLOCK - 1) {
                    acc += part;
                    part = 0.0f;
                }
            }
            acc += part;
        }
        acc *= inv;
    }
    STORE(O_DTYPE, out, o_offset + b * o_stride.x + h * o_stride.y + i * o_stride.z + d * o_stride.w, acc);
}
