// SPDX-License-Identifier: Apache-2.0
/* Fused additive (Bahdanau) attention, also Luong's concat score: for each query row i of batch item b,
 *   e_ij = v . tanh(qp_i + kp_j),  alpha_i = softmax_j(e_ij + mask),  context_i = sum_j alpha_ij h_j,
 * where qp = q W_q + b and kp = k W_k are the projections the host computed (fp32 GEMMs). The score, the softmax
 * and the weighted sum run in one pass over tiles of keys with an online softmax, so the [Lq, Lk, ATTN_DIM] tensor
 * of the usual implementations never exists; only a tile of scores does, in local memory.
 *
 * One work-group owns ROWS query rows of one batch item. Per tile of BLOCK_N keys:
 *   1. each work-item scores its keys (jj = lid, lid + WG_SIZE, ...) for every row: a vectorised dot product of v
 *      with tanh(qp + kp) over ATTN_DIM, written to the local score tile (and, with weights, as raw scores to
 *      global memory for the final normalisation);
 *   2. every work-item reads the whole tile to find the row maxima (all of them reach the same values, in the same
 *      order, so no reduction tree is needed), rescales and turns its own keys' scores into probabilities;
 *   3. every work-item sums the probabilities and accumulates its own slice of the value dimension
 *      (d = lid, lid + WG_SIZE, ...).
 * With weights, a last pass over the keys (the same key-to-work-item mapping as step 1, so each work-item reads
 * back only what it wrote itself) turns the raw scores into alpha.
 *
 * Scores are kept in log2 units (v is scaled by log2(e) once) so that the softmax runs on exp2. A key that is
 * masked contributes nothing (not 0 * h, so a NaN in a masked value stays out); a row with every key masked gives
 * zeros; a NaN score reaches the row's context and weights.
 *
 * Specialisations (set by the host): ATTN_DIM, V_DIM, V_DTYPE (values), O_DTYPE (context), W_DTYPE (weights),
 * MASK_KIND (0 none, 1 additive, 2 boolean), MASK_DTYPE, HAS_KEY_LENGTHS, HAS_WEIGHTS, UNIT_DSTRIDE (the values'
 * and context's last strides are 1). Tunables: WG_SIZE, BLOCK_N (keys per tile), ROWS (query rows per work-group),
 * VEC (1, 4 or 8: the vector width of the score loop). */

#ifndef ATTN_DIM
#define ATTN_DIM 64
#endif
#ifndef V_DIM
#define V_DIM 64
#endif
#ifndef HAS_WEIGHTS
#define HAS_WEIGHTS 0
#endif
#ifndef WG_SIZE
#define WG_SIZE 64
#endif
#ifndef BLOCK_N
#define BLOCK_N 64
#endif
#ifndef ROWS
#define ROWS 1
#endif
#ifndef VEC
#define VEC 4
#endif

/* Keys each work-item scores per tile, and value columns each one accumulates. */
#define KEYS_PER_ITEM ((BLOCK_N + WG_SIZE - 1) / WG_SIZE)
#define COLS_PER_ITEM ((V_DIM + WG_SIZE - 1) / WG_SIZE)

#if VEC == 8
#define VLOAD(p) vload8(0, (p))
#define VTYPE    float8
#define VSUM(x)  ((x).s0 + (x).s1 + (x).s2 + (x).s3 + (x).s4 + (x).s5 + (x).s6 + (x).s7)
#elif VEC == 4
#define VLOAD(p) vload4(0, (p))
#define VTYPE    float4
#define VSUM(x)  ((x).s0 + (x).s1 + (x).s2 + (x).s3)
#elif VEC != 1
#error "VEC must be 1, 4 or 8"
#endif

/* v . tanh(q + k) over ATTN_DIM, with q and v (already scaled to log2 units) in local memory and k in global. */
CLA_INLINE float additive_score(__local const float *q, __global const float *k, __local const float *v) {
    float s = 0.0f;
    int a = 0;
#if VEC > 1
    VTYPE acc = (VTYPE)(0.0f);
    for (; a + VEC <= ATTN_DIM; a += VEC) acc = fma(tanh(VLOAD(q + a) + VLOAD(k + a)), VLOAD(v + a), acc);
    s = VSUM(acc);
#endif
    for (; a < ATTN_DIM; ++a) s = fma(tanh(q[a] + k[a]), v[a], s);
    return s;
}

/* qp_rows and kp_rows describe fp32 row blocks (offset, row stride, batch stride, unused); offsets holds the
 * element offsets of v_attn, values, context, mask, key lengths, scores and weights; dims = (Lq, Lk). `scores` is
 * where the raw scores wait for the final pass: the weights themselves when they are fp32, else an fp32 scratch
 * tensor. */
__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1))) void
seq2seq_additive(__global const float *qp, long4 qp_rows, __global const float *kp, long4 kp_rows,
                 __global const float *v_attn, __global const STORAGE(V_DTYPE) * values, long4 v_stride,
                 __global STORAGE(O_DTYPE) * context, long4 o_stride, __global const STORAGE(MASK_DTYPE) * mask,
                 long4 mask_stride, __global const int *key_lengths, __global float *scores, long4 s_stride,
                 __global STORAGE(W_DTYPE) * weights, long4 w_stride, long8 offsets, int2 dims) {
    const int Lq = dims.x, Lk = dims.y;
    const int lid = get_local_id(0);
    const int row0 = (int)get_group_id(0) * ROWS;
    const int b = get_global_id(1);

    __local float q_loc[ROWS * ATTN_DIM];
    __local float v_loc[ATTN_DIM];
    __local float s_tile[ROWS * BLOCK_N];
    __local float p_tile[ROWS * BLOCK_N];

    /* Rows past the end of the sequence compute a copy of the last row and are never written. */
    for (int x = lid; x < ROWS * ATTN_DIM; x += WG_SIZE) {
        const int r = x / ATTN_DIM, a = x % ATTN_DIM;
        const int i = min(row0 + r, Lq - 1);
        q_loc[x] = qp[qp_rows.x + b * qp_rows.z + i * qp_rows.y + a];
    }
    for (int a = lid; a < ATTN_DIM; a += WG_SIZE) v_loc[a] = v_attn[offsets.s0 + a] * CLA_LOG2E;

    values += offsets.s1 + b * v_stride.x;
    kp += kp_rows.x + b * kp_rows.z;
    const int kv_limit = cla_kv_limit(key_lengths, offsets.s4, b, Lk);

    float m[ROWS], l[ROWS], acc[ROWS][COLS_PER_ITEM];
    bool live[ROWS];
    for (int r = 0; r < ROWS; ++r) {
        m[r] = CLA_NEG_INF;
        l[r] = 0.0f;
        for (int t = 0; t < COLS_PER_ITEM; ++t) acc[r][t] = 0.0f;
    }

    for (int j0 = 0; j0 < kv_limit; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, kv_limit - j0);
        /* The previous tile's readers are done with s_tile and p_tile (and, the first time, q_loc is complete). */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int t = 0; t < KEYS_PER_ITEM; ++t) {
            const int jj = lid + t * WG_SIZE;
            if (jj >= n) break;
            const int j = j0 + jj;
            __global const float *krow = kp + j * kp_rows.y;
            for (int r = 0; r < ROWS; ++r) {
                const int i = min(row0 + r, Lq - 1);
                float x = additive_score(q_loc + r * ATTN_DIM, krow, v_loc);
#if MASK_KIND
                const long mi = offsets.s3 + b * mask_stride.x + i * mask_stride.z + j * mask_stride.w;
#if MASK_KIND == 1
                const float mv = LOAD(MASK_DTYPE, mask, mi);
                x = mv <= -FLT_MAX ? CLA_NEG_INF : fma(mv, CLA_LOG2E, x);
#else
                if (mask[mi] == 0) x = CLA_NEG_INF;
#endif
#endif
                s_tile[r * BLOCK_N + jj] = x;
#if HAS_WEIGHTS
                if (row0 + r < Lq) scores[offsets.s5 + b * s_stride.x + i * s_stride.z + j * s_stride.w] = x;
#endif
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int r = 0; r < ROWS; ++r) {
            float tile_max = CLA_NEG_INF;
            for (int jj = 0; jj < n; ++jj) tile_max = cla_max_nan(tile_max, s_tile[r * BLOCK_N + jj]);
            live[r] = tile_max != CLA_NEG_INF; /* a tile with every key masked leaves the row as it is */
            if (!live[r]) continue;
            const float m_new = cla_max_nan(m[r], tile_max);
            const float alpha = exp2(m[r] - m_new);
            m[r] = m_new;
            l[r] *= alpha;
            for (int t = 0; t < COLS_PER_ITEM; ++t) acc[r][t] *= alpha;
            for (int t = 0; t < KEYS_PER_ITEM; ++t) {
                const int jj = lid + t * WG_SIZE;
                if (jj >= n) break;
                const float x = s_tile[r * BLOCK_N + jj];
                p_tile[r * BLOCK_N + jj] = x == CLA_NEG_INF ? 0.0f : exp2(x - m_new);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < n; ++jj) {
            const long vrow = (long)(j0 + jj) * v_stride.z;
            for (int r = 0; r < ROWS; ++r) {
                /* A masked key is skipped, never multiplied by 0: its value may hold a NaN. */
                if (!live[r] || s_tile[r * BLOCK_N + jj] == CLA_NEG_INF) continue;
                const float p = p_tile[r * BLOCK_N + jj];
                l[r] += p;
                for (int t = 0; t < COLS_PER_ITEM; ++t) {
                    const int d = lid + t * WG_SIZE;
                    if (COLS_PER_ITEM * WG_SIZE == V_DIM || d < V_DIM)
                        acc[r][t] = fma(p, LOAD(V_DTYPE, values, vrow + d * DSTRIDE(v_stride)), acc[r][t]);
                }
            }
        }
    }

    for (int r = 0; r < ROWS; ++r) {
        const int i = row0 + r;
        if (i >= Lq) break;
        const bool empty = m[r] == CLA_NEG_INF; /* every key masked: zeros */
        const float inv = empty ? 0.0f : 1.0f / l[r];
        __global STORAGE(O_DTYPE) *orow = context + offsets.s2 + b * o_stride.x + i * o_stride.z;
        for (int t = 0; t < COLS_PER_ITEM; ++t) {
            const int d = lid + t * WG_SIZE;
            if (d < V_DIM) STORE(O_DTYPE, orow, d * DSTRIDE(o_stride), empty ? 0.0f : acc[r][t] * inv);
        }
#if HAS_WEIGHTS
        for (int j0 = 0; j0 < Lk; j0 += BLOCK_N)
            for (int t = 0; t < KEYS_PER_ITEM; ++t) {
                const int j = j0 + lid + t * WG_SIZE;
                if (lid + t * WG_SIZE >= BLOCK_N || j >= Lk) break;
                float w = 0.0f;
                if (!empty && j < kv_limit) {
                    const float x = scores[offsets.s5 + b * s_stride.x + i * s_stride.z + j * s_stride.w];
                    w = x == CLA_NEG_INF ? 0.0f : exp2(x - m[r]) * inv;
                }
                STORE(W_DTYPE, weights, offsets.s6 + b * w_stride.x + i * w_stride.z + j * w_stride.w, w);
            }
#endif
    }
}
