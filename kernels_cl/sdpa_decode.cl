// SPDX-License-Identifier: Apache-2.0
/* Fused attention for decode on GPUs and accelerators (variant "decode" of the sdpa_fused family,
 * src/tuning/tuning.c): a handful of query rows against many keys. A work-group owns one (batch item, key/value
 * head, key split) with all R = Lq x group packed rows of the GQA group (row r is query i = r / group of head hk *
 * group + r % group, as in sdpa_flash.cl), R <= ROWS, a compile-time bound. Every work-item has work in both phases
 * of a key tile:
 *
 *   scores: work-item lid takes the tile's keys lid + WG_SIZE * t (KPW of them) and computes their scores for all
 *           ROWS rows, reading each key row with float4 loads and Q (scaled to log2 units, in local memory) by
 *           broadcast; the scores (modifiers, masks and limits applied through common.cl) go to local memory;
 *   P V:    work-item lid owns the float4 value column(s) lid % CW (+ CW * c) for the rows lid / CW + VSL * m, so
 *           R x V_HEAD_DIM accumulators are spread over the group (RPW x TD4 float4s each: no array indexed at run
 *           time, no spills). Each reads the tile's scores of its rows from local memory, takes their maximum
 *           (the same for every work-item of a row, so no reduction and no extra barrier), rescales, and
 * accumulates p v over the tile's keys, one float4 value load per key for all its rows.
 *
 * A work-item that owns a row's columns holds the whole row's running max and sum, so the end needs no reduction
 * either: two barriers a tile in all. Keys past the tile's end are neither loaded nor weighted; a masked key adds
 * nothing (not 0 * v) outside tiles that every row sees whole. SPLIT_KV = 1 writes sdpa_combine's partial state
 * (sdpa_fused.cl) as the other variants do; the host picks enough splits to fill the device (sdpa_fused.c).
 * Specialisation defines as in sdpa_fused.cl; common.cl holds the shared ones and the helpers used here. */

#ifndef ROWS
#define ROWS 4 /* bound on the packed rows of a work-group */
#endif
#ifndef WG_SIZE
#define WG_SIZE 64
#endif
#ifndef BLOCK_N
#define BLOCK_N 64 /* keys per tile: a multiple of WG_SIZE */
#endif
#ifndef SPLIT_KV
#define SPLIT_KV 0
#endif

#define KPW (BLOCK_N / WG_SIZE)             /* keys per work-item of a tile, score phase */
#define KD4 ((HEAD_DIM + 3) / 4)            /* float4s of a key row */
#define VD4 ((V_HEAD_DIM + 3) / 4)          /* float4s of a value row */
#define CW  (VD4 < WG_SIZE ? VD4 : WG_SIZE) /* work-items across a value row */
#define VSL (WG_SIZE / CW)                  /* row slices: work-items sharing a value column */
#define TD4 ((VD4 + CW - 1) / CW)           /* float4 value columns per work-item */
#define RPW ((ROWS + VSL - 1) / VSL)        /* rows per work-item, P V phase */
#define PS  (BLOCK_N + 1)                   /* padded score row, against bank conflicts between rows */

#if BLOCK_N % WG_SIZE != 0
#error "sdpa_decode: BLOCK_N must be a multiple of WG_SIZE"
#endif

#ifdef __clang__
#define DECODE_UNROLL _Pragma("unroll")
#else
#define DECODE_UNROLL
#endif

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1))) void sdpa_decode(SDPA_FUSED_ARGS) {
    const int Hq = dims.x, group = dims.w;
    const int Hkv = Hq / group;
    const int bk = get_global_id(1);
    const int b = bk / Hkv, hk = bk % Hkv;
    const int Lq = cla_seq_q_len(seqs, seq_at, b, dims.y), Lk = cla_seq_k_len(seqs, seq_at, b, dims.z);
    const int rows_total = Lq * group; /* <= ROWS: the host's choice */
    const int lid = get_local_id(0);
    if (rows_total <= 0) return; /* a packed sequence without queries: the whole group leaves together */

    const long q_base = offsets.s0 + cla_seq_q_base(seqs, seq_at, b, q_stride);
    k += offsets.s1 + hk * k_stride.y;
    v += offsets.s2 + hk * v_stride.y;
    const long k_base = cla_seq_kv_base(seqs, seq_at, b, k_stride),
               v_base = cla_seq_kv_base(seqs, seq_at, b, v_stride);
    const int kv_limit = cla_kv_limit(key_lengths, offsets.s5, b, Lk);
    const int2 shift = cla_shifts(Lq, Lk);

    /* The keys any row sees decide the tiles visited, the keys all rows see the tiles without per-score checks. */
    const int i_last = (rows_total - 1) / group;
    int range_lo = cla_key_lo(0, shift, window);
    int range_hi = cla_key_hi(i_last, shift, window, kv_limit);
    const int inner_lo = cla_key_lo(i_last, shift, window);
    const int inner_hi = cla_key_hi(0, shift, window, kv_limit);
#if SPLIT_KV
    const int split = get_global_id(2);
    range_lo = max(range_lo, split * split_len);
    range_hi = min(range_hi, (split + 1) * split_len);
#endif

    __local float4 q_tile[ROWS * KD4];
    __local float s_tile[ROWS * PS];
#if HAS_ALIBI
    __local float slope_tile[ROWS]; /* each row's head's ALiBi slope, log2 units */
    for (int r = lid; r < ROWS; r += WG_SIZE)
        slope_tile[r] = cla_alibi_slope2(alibi, mods, hk * group + min(r, rows_total - 1) % group);
#endif
    /* Q, scaled into log2 units, read once by the group; rows past the end are copies of the last row. */
    for (int x = lid; x < ROWS * KD4; x += WG_SIZE) {
        const int r = min(x / KD4, rows_total - 1), d4 = x % KD4;
        const int i = r / group, h = hk * group + r % group;
        const long at = q_base + h * q_stride.y + i * q_stride.z + d4 * 4 * DSTRIDE(q_stride);
        q_tile[x] = LOAD4(Q_DTYPE, q, at, DSTRIDE(q_stride), HEAD_DIM - d4 * 4) * scale_log2;
    }

    /* This work-item's share of the P V phase: value column(s) col + CW * c of rows rs + VSL * m. */
    const int col = lid % CW, rs = lid / CW;
    float m_run[RPW], l_run[RPW];
    float4 acc[RPW][TD4];
    DECODE_UNROLL
    for (int m = 0; m < RPW; ++m) {
        m_run[m] = CLA_NEG_INF;
        l_run[m] = 0.0f;
        DECODE_UNROLL
        for (int c = 0; c < TD4; ++c) acc[m][c] = (float4)(0.0f);
    }

    const int tile_start = range_lo > 0 ? (range_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < range_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, range_hi - j0);
        const bool full =
            !CLA_TILE_PER_KEY(CLA_TILE_PARTIAL) && n == BLOCK_N && j0 >= inner_lo && j0 + BLOCK_N <= inner_hi;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's scores are read (and q_tile is written) */

        /* Scores of this work-item's keys for every row. */
        DECODE_UNROLL
        for (int t = 0; t < KPW; ++t) {
            const int jj = lid + WG_SIZE * t, j = j0 + jj;
            float s[ROWS];
            DECODE_UNROLL
            for (int r = 0; r < ROWS; ++r) s[r] = 0.0f;
            if (jj < n) {
                for (int d4 = 0; d4 < KD4; ++d4) {
                    const float4 kv = cla_k4(k, k_base, k_stride, j, d4, k_scale, scale_offsets.x, ks_stride, seqs,
                                             seq_at, b, hk);
                    DECODE_UNROLL
                    for (int r = 0; r < ROWS; ++r) s[r] = cla_dot4(q_tile[r * KD4 + d4], kv, s[r]);
                }
            }
            DECODE_UNROLL
            for (int r = 0; r < ROWS; ++r) {
                const int rr = min(r, rows_total - 1);
                const int i = rr / group, h = hk * group + rr % group;
                const int lo = cla_key_lo(i, shift, window), hi = cla_key_hi(i, shift, window, kv_limit);
                float x = s[r];
#if HAS_SOFTCAP || HAS_ALIBI
                /* The score modifiers come before any mask, on every tile (full ones included). */
#if HAS_ALIBI
                const float row_slope2 = slope_tile[r];
#else
                const float row_slope2 = 0.0f;
#endif
                x = cla_score_mod(x, i + shift.y, j, softcap2, row_slope2);
#endif
#if HAS_USER_MODS
                /* Keys past the tile's n lie outside [lo, hi), so the caller's code never sees them. (The host runs
                 * calls with user mods on the flash kernel for now: this path is not tested yet.) */
                if (jj < n) x = cla_user_mods(x, b, h, i, j, lo, hi, 1, mod_buf0, mod_buf1);
#endif
                if (!full) {
                    const long mask_at =
                        offsets.s4 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z + j * mask_stride.w;
                    x = jj < n ? cla_score(x, j, lo, hi, mask, mask_at) : CLA_NEG_INF;
                }
                s_tile[r * PS + jj] = x;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* O += P V for this work-item's rows and columns: first each row's new maximum (every key of the tile is
         * in local memory, so no reduction), then the keys in order, one value load per key for all rows. */
        if (rs < VSL) {
            float m_new[RPW];
            DECODE_UNROLL
            for (int m = 0; m < RPW; ++m) {
                const int r = min(rs + VSL * m, ROWS - 1);
                float tmax = CLA_NEG_INF;
                for (int jj = 0; jj < n; ++jj) tmax = cla_max_nan(tmax, s_tile[r * PS + jj]);
                m_new[m] = cla_max_nan(m_run[m], tmax);
                /* A row with every key masked so far keeps m = -inf and takes nothing. */
                const float alpha = m_new[m] == CLA_NEG_INF ? 1.0f : exp2(m_run[m] - m_new[m]);
                l_run[m] *= alpha;
                m_run[m] = m_new[m];
                DECODE_UNROLL
                for (int c = 0; c < TD4; ++c) acc[m][c] *= alpha;
            }
            for (int jj = 0; jj < n; ++jj) {
                float4 vv[TD4];
                DECODE_UNROLL
                for (int c = 0; c < TD4; ++c) {
                    const int d4 = col + CW * c;
#if VD4 % CW == 0
                    vv[c] = cla_v4(v, v_base, v_stride, j0 + jj, d4, v_scale, scale_offsets.y, vs_stride, seqs,
                                   seq_at, b, hk);
#else
                    vv[c] = d4 < VD4 ? cla_v4(v, v_base, v_stride, j0 + jj, d4, v_scale, scale_offsets.y, vs_stride,
                                              seqs, seq_at, b, hk)
                                     : (float4)(0.0f);
#endif
                }
                DECODE_UNROLL
                for (int m = 0; m < RPW; ++m) {
                    const float x = s_tile[min(rs + VSL * m, ROWS - 1) * PS + jj];
                    const float p = x == CLA_NEG_INF ? 0.0f : exp2(x - m_new[m]);
                    l_run[m] += p;
                    if (full || p != 0.0f) {
                        DECODE_UNROLL
                        for (int c = 0; c < TD4; ++c) acc[m][c] = fma((float4)(p), vv[c], acc[m][c]);
                    }
                }
            }
        }
    }

    if (rs >= VSL) return;
    DECODE_UNROLL
    for (int m = 0; m < RPW; ++m) {
        const int r = rs + VSL * m;
        if (r >= rows_total) break;
        const int i = r / group, h = hk * group + r % group;
        float l = l_run[m];
#if SPLIT_KV
        __global float *state = cla_split_state(partial, b, Hq, h, dims.y, i, split);
        if (col == 0) {
            state[0] = m_run[m];
            state[1] = l;
        }
        DECODE_UNROLL
        for (int c = 0; c < TD4; ++c) cla_state_store4(state, col + CW * c, acc[m][c]);
#else
        const float inv = cla_row_scale(sinks, mods, h, &m_run[m], &l);
        const bool empty = m_run[m] == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
        __global STORAGE(O_DTYPE) *orow =
            o + offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride) + h * o_stride.y + i * o_stride.z;
        DECODE_UNROLL
        for (int c = 0; c < TD4; ++c)
            cla_out_store4(orow, DSTRIDE(o_stride), col + CW * c, empty ? (float4)(0.0f) : acc[m][c] * inv);
#if HAS_LSE
        if (col == 0)
            lse[offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride) + h * lse_stride.y + i * lse_stride.z] =
                empty ? CLA_NEG_INF : (m_run[m] + log2(l)) * CLA_LN2;
#endif
#endif
    }
}
