// SPDX-License-Identifier: Apache-2.0
/* Fused scaled dot-product attention (flash-attention style), the variant for GPUs and accelerators: online softmax
 * over key tiles, never materialising the Lq x Lk matrix. (CPUs get sdpa_fused_cpu.cl, with the same arguments and
 * partial-state layout.) Its tunables give two shapes:
 *   ROWS = 1, USE_LOCAL = 1 (the default): a work-group of WG_SIZE work-items, one query row each, shares K/V tiles
 *              staged in local memory.
 *   ROWS > 1, USE_LOCAL = 0: each work-item owns a block of ROWS query rows and reads K/V from global memory, with
 *              no barriers (for devices whose local memory is emulated).
 * Tiles of keys that causal masking, the window, the key length or the block mask (HAS_BLOCK_MASK, common.cl's
 * cla_block_tile) exclude for a whole block of rows are skipped.
 * With SPLIT_KV = 1 the keys are divided among the third grid dimension and each split writes its partial softmax
 * state (max, sum, unnormalised output) for sdpa_combine to merge (flash-decoding).
 *
 * Specialisation defines (set by the host): HEAD_DIM, V_HEAD_DIM, Q/K/V/O_DTYPE, MASK_KIND (0 none, 1 additive,
 * 2 boolean), MASK_DTYPE, CAUSAL (0 none, 1 top-left, 2 bottom-right), HAS_WINDOW, HAS_KEY_LENGTHS, HAS_LSE,
 * SPLIT_KV, UNIT_DSTRIDE (all head-dim strides are 1), and the score modifiers HAS_SOFTCAP, HAS_ALIBI (applied to
 * each score by cla_score_mod) and HAS_SINKS (folded into a row's end by cla_fold_sink, in sdpa_combine with key
 * splits); common.cl holds the shared ones' defaults, the masking rules (cla_key_lo, cla_key_hi) and the modifiers.
 */

#ifndef ROWS
#define ROWS 1
#endif
#ifndef BLOCK_N
#define BLOCK_N 32
#endif
#ifndef WG_SIZE
#define WG_SIZE 64
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 1
#endif
#ifndef SPLIT_KV
#define SPLIT_KV 0
#endif

/* A fixed work-group shape where the group shares tiles (and FPGA compilers can size the hardware for it). */
#if USE_LOCAL
#define FUSED_GROUP_SHAPE __attribute__((reqd_work_group_size(WG_SIZE, 1, 1)))
#else
#define FUSED_GROUP_SHAPE
#endif

__kernel FUSED_GROUP_SHAPE void sdpa_fused(SDPA_FUSED_ARGS) {
    const int Hq = dims.x, group = dims.w;
    const int bh = get_global_id(1);
    const int b = bh / Hq, h = bh % Hq, hk = h / group;
    const int lid = get_local_id(0);
    const int first_row = (int)get_global_id(0) * ROWS;
    /* This batch item's lengths (the packed and paged layouts' own; dims has the largest). */
    const int Lq = cla_seq_q_len(seqs, seq_at, b, dims.y), Lk = cla_seq_k_len(seqs, seq_at, b, dims.z);

    q += offsets.s0 + cla_seq_q_base(seqs, seq_at, b, q_stride) + h * q_stride.y;
    k += offsets.s1 + hk * k_stride.y;
    v += offsets.s2 + hk * v_stride.y;
    const long k_base = cla_seq_kv_base(seqs, seq_at, b, k_stride),
               v_base = cla_seq_kv_base(seqs, seq_at, b, v_stride);

    const int kv_limit = cla_kv_limit(key_lengths, offsets.s5, b, Lk);
    const int2 shift = cla_shifts(Lq, Lk);

    /* The block whose key range decides which tiles are visited: the whole work-group when it shares tiles. */
#if USE_LOCAL
    const int block_first = (int)get_group_id(0) * WG_SIZE * ROWS;
    const int block_last = min(block_first + WG_SIZE * ROWS, Lq) - 1;
#else
    const int block_first = first_row;
    const int block_last = min(first_row + ROWS, Lq) - 1;
#endif
    /* Past a short packed sequence's rows: the whole work-group leaves together. */
    if (block_first >= Lq) return;
    int range_lo = cla_key_lo(block_first, shift, window);
    int range_hi = cla_key_hi(block_last, shift, window, kv_limit);
#if SPLIT_KV
    const int split = get_global_id(2);
    range_lo = max(range_lo, split * split_len);
    range_hi = min(range_hi, (split + 1) * split_len);
#endif

    /* Private state of this work-item's rows; the scale (in log2 units) is folded into q once. */
    float qr[ROWS][HEAD_DIM];
    float acc[ROWS][V_HEAD_DIM];
    float m[ROWS], l[ROWS];
    int lo[ROWS], hi[ROWS], pos[ROWS];
    long mask_row[ROWS], bm_row[ROWS];
    const float slope2 = cla_alibi_slope2(alibi, mods, h);
    for (int r = 0; r < ROWS; ++r) {
        const int i = min(first_row + r, Lq - 1); /* rows past the end compute a copy of the last row, unwritten */
        for (int d = 0; d < HEAD_DIM; ++d)
            qr[r][d] = LOAD(Q_DTYPE, q, i * q_stride.z + d * DSTRIDE(q_stride)) * scale_log2;
        for (int d = 0; d < V_HEAD_DIM; ++d) acc[r][d] = 0.0f;
        m[r] = CLA_NEG_INF;
        l[r] = 0.0f;
        lo[r] = cla_key_lo(i, shift, window);
        hi[r] = cla_key_hi(i, shift, window, kv_limit);
        pos[r] = i + shift.y;
        mask_row[r] = offsets.s4 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z;
        bm_row[r] = cla_block_row(offsets.s7, bm_stride, bm_dims, b, h, i);
    }

#if USE_LOCAL
    __local float k_tile[BLOCK_N * HEAD_DIM];
    __local float v_tile[BLOCK_N * V_HEAD_DIM];
#endif

    /* Element d of key j0 + jj's row of K or V as a float: through the serving layout (cla_seq_kv_row), scaled
     * where it is 8-bit. */
#define K_AT_GLOBAL(jj, d)                                                                                         \
    (LOAD(K_DTYPE, k, cla_seq_kv_row(seqs, seq_at, b, k_base, j0 + (jj), k_stride) + (d)*DSTRIDE(k_stride)) *      \
     cla_k_scale(k_scale, scale_offsets.x, ks_stride, seqs, seq_at, b, hk, j0 + (jj)))
#define V_AT_GLOBAL(jj, d)                                                                                         \
    (LOAD(V_DTYPE, v, cla_seq_kv_row(seqs, seq_at, b, v_base, j0 + (jj), v_stride) + (d)*DSTRIDE(v_stride)) *      \
     cla_v_scale(v_scale, scale_offsets.y, vs_stride, seqs, seq_at, b, hk, j0 + (jj)))
    const int tile_start = range_lo > 0 ? (range_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < range_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, range_hi - j0);
        /* The block mask's state for the whole block of rows (the same in every work-item of the group, so that
         * they skip a tile together, barriers included). */
        const int bt = cla_block_tile(block_mask, offsets.s7, bm_stride, bm_dims, b, h, h, block_first, block_last,
                                      j0, j0 + n - 1);
        if (bt == CLA_TILE_SKIP) continue;
#if USE_LOCAL
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = lid; x < BLOCK_N * HEAD_DIM; x += WG_SIZE) {
            const int jj = x / HEAD_DIM, d = x % HEAD_DIM;
            k_tile[x] = jj < n ? K_AT_GLOBAL(jj, d) : 0.0f;
        }
        for (int x = lid; x < BLOCK_N * V_HEAD_DIM; x += WG_SIZE) {
            const int jj = x / V_HEAD_DIM, d = x % V_HEAD_DIM;
            v_tile[x] = jj < n ? V_AT_GLOBAL(jj, d) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#define K_AT(jj, d) k_tile[(jj)*HEAD_DIM + (d)]
#define V_AT(jj, d) v_tile[(jj)*V_HEAD_DIM + (d)]
#else
#define K_AT(jj, d) K_AT_GLOBAL(jj, d)
#define V_AT(jj, d) V_AT_GLOBAL(jj, d)
#endif
        /* Scores of the tile for every row of this work-item. */
        float s[ROWS][BLOCK_N];
        for (int r = 0; r < ROWS; ++r)
            for (int jj = 0; jj < BLOCK_N; ++jj) s[r][jj] = 0.0f;
        for (int jj = 0; jj < BLOCK_N; ++jj) {
            if (jj >= n) break;
            for (int d = 0; d < HEAD_DIM; ++d) {
                const float kd = K_AT(jj, d);
                for (int r = 0; r < ROWS; ++r) s[r][jj] = fma(qr[r][d], kd, s[r][jj]);
            }
        }
        for (int r = 0; r < ROWS; ++r) {
            float tile_max = CLA_NEG_INF;
            /* Static trip counts with an early exit (here and below), as FPGA compilers want. */
            for (int jj = 0; jj < BLOCK_N; ++jj) {
                if (jj >= n) break;
                const int j = j0 + jj;
                float x = s[r][jj];
                if (j < lo[r] || j >= hi[r]) {
                    x = CLA_NEG_INF;
                } else {
#if HAS_SCORE_MODS
                    x = cla_score_mod(x, pos[r], j, softcap2, slope2);
#endif
#if HAS_USER_MODS || HAS_BLOCK_MASK
                    x = cla_user_mods(x, b, h, pos[r] - shift.y, j, lo[r], hi[r],
                                      cla_block_flag(block_mask, bm_row[r], bm_stride, bm_dims, bt, j), mod_buf0,
                                      mod_buf1);
#endif
#if MASK_KIND == 1
                    const float mv = LOAD(MASK_DTYPE, mask, mask_row[r] + j * mask_stride.w);
                    x = mv <= -FLT_MAX ? CLA_NEG_INF : fma(mv, CLA_LOG2E, x);
#elif MASK_KIND == 2
                    if (mask[mask_row[r] + j * mask_stride.w] == 0) x = CLA_NEG_INF;
#endif
                }
                s[r][jj] = x;
                tile_max = cla_max_nan(tile_max, x);
            }
            if (tile_max == CLA_NEG_INF) continue; /* every key of the tile is masked for this row */
            const float m_new = cla_max_nan(m[r], tile_max);
            const float alpha = exp2(m[r] - m_new);
            float sum = 0.0f;
            for (int d = 0; d < V_HEAD_DIM; ++d) acc[r][d] *= alpha;
            for (int jj = 0; jj < BLOCK_N; ++jj) {
                if (jj >= n) break;
                /* A masked key contributes nothing, not 0 * v: a NaN in a masked value must not leak in. */
                if (s[r][jj] == CLA_NEG_INF) continue;
                const float p = exp2(s[r][jj] - m_new);
                sum += p;
                for (int d = 0; d < V_HEAD_DIM; ++d) acc[r][d] = fma(p, V_AT(jj, d), acc[r][d]);
            }
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
        }
#undef K_AT
#undef V_AT
    }

    for (int r = 0; r < ROWS; ++r) {
        const int i = first_row + r;
        if (i >= Lq) break;
#if SPLIT_KV
        /* Partial state per (row, split): [m, l] then V_HEAD_DIM unnormalised outputs. */
        const int nsplit = get_global_size(2);
        __global float *state = partial + (((long)bh * dims.y + i) * nsplit + split) * (V_HEAD_DIM + 2);
        state[0] = m[r];
        state[1] = l[r];
        for (int d = 0; d < V_HEAD_DIM; ++d) state[2 + d] = acc[r][d];
#else
        /* The sink joins the whole row's denominator once: here, or with key splits in sdpa_combine. */
        const float factor = HAS_SINKS ? cla_fold_sink(cla_sink2(sinks, mods, h), &m[r], &l[r]) : 1.0f;
        const bool empty = m[r] == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
        const float inv = empty ? 0.0f : factor / l[r];
        __global STORAGE(O_DTYPE) *orow =
            o + offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride) + h * o_stride.y + i * o_stride.z;
        for (int d = 0; d < V_HEAD_DIM; ++d)
            STORE(O_DTYPE, orow, d * DSTRIDE(o_stride), empty ? 0.0f : acc[r][d] * inv);
#if HAS_LSE
        lse[offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride) + h * lse_stride.y + i * lse_stride.z] =
            empty ? CLA_NEG_INF : (m[r] + log2(l[r])) * CLA_LN2;
#endif
#endif
    }
}

/* Merges the partial states of the key splits of each row (flash-decoding's second step). One work-item per row. */
__kernel void sdpa_combine(__global const float *partial, int nsplit, __global STORAGE(O_DTYPE) * o, long4 o_stride,
                           __global float *lse, long4 lse_stride, long8 offsets, int4 dims,
                           __global const float *sinks, long4 mods, __global const int *seqs, int4 seq_at) {
    const int Hq = dims.x, Lq = dims.y; /* the partial state is laid out by the largest Lq */
    const int i = get_global_id(0), bh = get_global_id(1);
    const int b = bh / Hq, h = bh % Hq;
    if (i >= cla_seq_q_len(seqs, seq_at, b, Lq)) return;
    __global const float *state = partial + ((long)bh * Lq + i) * nsplit * (V_HEAD_DIM + 2);
    float m = CLA_NEG_INF;
    for (int s = 0; s < nsplit; ++s) {
        const float ms = state[s * (V_HEAD_DIM + 2)];
        if (ms != CLA_NEG_INF) m = cla_max_nan(m, ms);
    }
    const bool empty = m == CLA_NEG_INF;
    float l = 0.0f;
    for (int s = 0; s < nsplit; ++s) {
        const float ms = state[s * (V_HEAD_DIM + 2)];
        if (ms != CLA_NEG_INF) l += state[s * (V_HEAD_DIM + 2) + 1] * exp2(ms - m);
    }
    /* The sink joins the merged denominator once (the splits leave it out). */
    const float m_keys = m;
    const float factor = HAS_SINKS ? cla_fold_sink(cla_sink2(sinks, mods, h), &m, &l) : 1.0f;
    const bool full = m != CLA_NEG_INF;
    const float inv = full ? factor / l : 0.0f;
    __global STORAGE(O_DTYPE) *orow =
        o + offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride) + h * o_stride.y + i * o_stride.z;
    for (int d = 0; d < V_HEAD_DIM; ++d) {
        float a = 0.0f;
        for (int s = 0; s < nsplit; ++s) {
            const float ms = state[s * (V_HEAD_DIM + 2)];
            if (ms != CLA_NEG_INF) a += state[s * (V_HEAD_DIM + 2) + 2 + d] * exp2(ms - m_keys);
        }
        STORE(O_DTYPE, orow, d * DSTRIDE(o_stride), empty ? 0.0f : a * inv);
    }
#if HAS_LSE
    lse[offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride) + h * lse_stride.y + i * lse_stride.z] =
        full ? (m + log2(l)) * CLA_LN2 : CLA_NEG_INF;
#endif
}
