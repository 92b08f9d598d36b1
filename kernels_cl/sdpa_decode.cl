// SPDX-License-Identifier: Apache-2.0
/* Fused attention for decode on GPUs and accelerators (variant "decode" of the sdpa_fused family,
 * src/tuning/tuning.c): a handful of query rows against many keys. A work-group owns one (batch item, key/value
 * head, key split) with all R = Lq x group packed rows of the GQA group (row r is query i = r / group of head hk *
 * group + r % group, as in sdpa_flash.cl), R <= ROWS, a compile-time bound. Each key tile of BLOCK_N keys passes
 * three phases, every work-item busy in each, and every (row, key) probability and every value element is
 * computed or read once:
 *
 *   scores: work-item lid takes the tile's keys lid + WG_SIZE * t (KPW of them) and computes their scores for all
 *           ROWS rows, reading each key row with float4 loads and Q (scaled to log2 units, in local memory) by
 *           broadcast; the scores (modifiers, masks and limits applied through common.cl) go to local memory;
 *   p:      TPR work-items per row take its maximum over the tile (partial maxima exchanged through local memory),
 *           then its probabilities p = exp2(s - m), written over the scores; each keeps a partial row sum and the
 *           row's running max (the same in all of them), and one publishes the row's rescale factor;
 *   P V:    work-item lid owns the float4 value column(s) col = lid % CW (+ CW * c) of the rows rg + RG * m of
 *           its row group rg = lid / CW % RG, for the key slice lid / (CW * RG): the tile's keys in groups of
 *           four, group g going to slice g % VSL. It rescales its accumulators (RPW x TD4 float4s: no array
 *           indexed at run time, no spills) and adds p v for its keys, one float4 value load per key for its rows
 *           and one float4 read of four probabilities per row. Work-items left over by the value columns take
 *           row groups before key slices: each slice's accumulators for every row would have to be summed at the
 *           end through local memory, which with many packed rows took more of it than the tiles (16 rows: 16 KiB,
 *           three groups on a 64 KiB AMD compute unit), and held every row's accumulators in registers.
 *
 * The rescale factor is the row's, so the slices' accumulators add without correction: at the end they are
 * summed by slice 0 (through local memory, over the tiles' space), as are the partial row sums. Keys past the
 * tile's end are neither loaded nor weighted; a masked key adds nothing (not 0 * v) outside tiles that every row
 * sees whole. SPLIT_KV = 1 writes sdpa_combine's partial state (sdpa_fused.cl) as the other variants do; the host
 * picks enough splits to fill the device (sdpa_fused.c) and sizes local memory for this layout
 * (decode_local_bytes in src/tuning/tuning.c). Specialisation defines as in sdpa_fused.cl; common.cl holds the
 * shared ones and the helpers used here. */

#ifndef ROWS
#define ROWS 4 /* bound on the packed rows of a work-group */
#endif
#ifndef WG_SIZE
#define WG_SIZE 64
#endif
#ifndef BLOCK_N
#define BLOCK_N 64 /* keys per tile: a multiple of WG_SIZE and of 4 */
#endif
#ifndef SPLIT_KV
#define SPLIT_KV 0
#endif

#define KPW    (BLOCK_N / WG_SIZE)             /* keys per work-item of a tile, score phase */
#define KD4    ((HEAD_DIM + 3) / 4)            /* float4s of a key row */
#define VD4    ((V_HEAD_DIM + 3) / 4)          /* float4s of a value row */
#define CW     (VD4 < WG_SIZE ? VD4 : WG_SIZE) /* work-items across a value row */
#define RG_FIT (WG_SIZE / CW)
/* Row groups of the P V phase: a power of two dividing both the rows and the work-items a value column has. */
#define RG                                                                                                         \
    (ROWS % 8 == 0 && RG_FIT % 8 == 0   ? 8                                                                        \
     : ROWS % 4 == 0 && RG_FIT % 4 == 0 ? 4                                                                        \
     : ROWS % 2 == 0 && RG_FIT % 2 == 0 ? 2                                                                        \
                                        : 1)
#define RPW     (ROWS / RG)           /* rows per work-item, P V phase */
#define VSL     (WG_SIZE / (CW * RG)) /* key slices of the P V phase */
#define TD4     ((VD4 + CW - 1) / CW) /* float4 value columns per work-item */
#define PS      (BLOCK_N + 4)         /* padded score row, a multiple of 4 floats for float4 reads */
#define TPR_FIT (WG_SIZE / ROWS)
/* Work-items per row in the p phase: up to 16, fewer partial maxima to exchange than keys to scan. */
#define TPR   (TPR_FIT < 1 ? 1 : TPR_FIT > 16 ? 16 : TPR_FIT)
#define PRG   (WG_SIZE / TPR)              /* rows taken at once in the p phase */
#define PRW   ((ROWS + PRG - 1) / PRG)     /* rows per work-item, p phase */
#define TILE4 (ROWS * KD4 + ROWS * PS / 4) /* Q and the scores, in float4s */
#define RED4  (VSL * ROWS * TD4 * CW)      /* the end's exchange: every slice's accumulators */
#define LDS4  (TILE4 > RED4 ? TILE4 : RED4)

#if BLOCK_N % WG_SIZE != 0 || BLOCK_N % 4 != 0
#error "sdpa_decode: BLOCK_N must be a multiple of WG_SIZE and of 4"
#endif

#ifdef __clang__
#define DECODE_UNROLL _Pragma("unroll")
#else
#define DECODE_UNROLL
#endif

/* acc += the four keys' probabilities p4 times their values vv; `guard`: a zero weight skips its value (a masked
 * key may hold a NaN that 0 * v would let in). */
#define DECODE_PV4(acc, p4, vv, guard)                                                                             \
    do {                                                                                                           \
        const float pe[4] = {(p4).x, (p4).y, (p4).z, (p4).w};                                                      \
        DECODE_UNROLL                                                                                              \
        for (int e = 0; e < 4; ++e)                                                                                \
            if (!(guard) || pe[e] != 0.0f) {                                                                       \
                DECODE_UNROLL                                                                                      \
                for (int c = 0; c < TD4; ++c) (acc)[c] = fma((float4)(pe[e]), (vv)[e][c], (acc)[c]);               \
            }                                                                                                      \
    } while (0)

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

    /* Q and the scores (then probabilities) of a tile; after the last tile, the end's exchange reuses them. */
    __local float4 lds[LDS4];
    __local float4 *q_tile = lds;
    __local float *s_tile = (__local float *)(lds + ROWS * KD4);
    __local float4 *red = lds;
    __local float part[ROWS * TPR]; /* the p phase's partial maxima, at the end its partial sums */
    __local float alpha_tile[ROWS]; /* each row's rescale factor for the tile */
    __local float fin_inv[ROWS];    /* each row's normaliser, and whether it is empty */
    __local int fin_empty[ROWS];
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

    /* The p phase's share: rows pr + PRG * m, the keys pc + TPR * u of each; its rows' running max and partial
     * sum. Work-items past PRG * TPR have none. */
    const int pr = lid / TPR, pc = lid % TPR;
    const bool p_active = pr < PRG;
    float m_run[PRW], l_part[PRW];
    DECODE_UNROLL
    for (int m = 0; m < PRW; ++m) {
        m_run[m] = CLA_NEG_INF;
        l_part[m] = 0.0f;
    }
    /* The P V phase's share: value column(s) col + CW * c of rows rg + RG * m, for key slice ks (none past VSL). */
    const int col = lid % CW, rg = lid / CW % RG, ks = lid / (CW * RG);
    float4 acc[RPW][TD4];
    DECODE_UNROLL
    for (int r = 0; r < RPW; ++r) {
        DECODE_UNROLL
        for (int c = 0; c < TD4; ++c) acc[r][c] = (float4)(0.0f);
    }

    const int tile_start = range_lo > 0 ? (range_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < range_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, range_hi - j0);
        const bool full =
            !CLA_TILE_PER_KEY(CLA_TILE_PARTIAL) && n == BLOCK_N && j0 >= inner_lo && j0 + BLOCK_N <= inner_hi;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's probabilities are read (and q_tile is written) */

        /* Scores of this work-item's keys for every row; a key past n is not read (its score is -inf below). */
        float s[KPW][ROWS];
        DECODE_UNROLL
        for (int t = 0; t < KPW; ++t) {
            DECODE_UNROLL
            for (int r = 0; r < ROWS; ++r) s[t][r] = 0.0f;
        }
        DECODE_UNROLL
        for (int t = 0; t < KPW; ++t) {
            const int jj = lid + WG_SIZE * t;
            if (jj < n) {
                for (int d4 = 0; d4 < KD4; ++d4) {
                    const float4 kv = cla_k4(k, k_base, k_stride, j0 + jj, d4, k_scale, scale_offsets.x, ks_stride,
                                             seqs, seq_at, b, hk);
                    DECODE_UNROLL
                    for (int r = 0; r < ROWS; ++r) s[t][r] = cla_dot4(q_tile[r * KD4 + d4], kv, s[t][r]);
                }
            }
        }
        DECODE_UNROLL
        for (int t = 0; t < KPW; ++t) {
            const int jj = lid + WG_SIZE * t, j = j0 + jj;
            DECODE_UNROLL
            for (int r = 0; r < ROWS; ++r) {
                const int rr = min(r, rows_total - 1);
                const int i = rr / group, h = hk * group + rr % group;
                const int lo = cla_key_lo(i, shift, window), hi = cla_key_hi(i, shift, window, kv_limit);
                float x = s[t][r];
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

        /* Each row's maximum over the tile: partial maxima of TPR work-items, exchanged. */
        DECODE_UNROLL
        for (int m = 0; m < PRW; ++m) {
            const int r = pr + PRG * m;
            if (p_active && r < ROWS) {
                float tmax = CLA_NEG_INF;
                for (int jj = pc; jj < n; jj += TPR) tmax = cla_max_nan(tmax, s_tile[r * PS + jj]);
                part[r * TPR + pc] = tmax;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* The probabilities, once per (row, key), over the scores (those past n are -inf: p = 0). */
        DECODE_UNROLL
        for (int m = 0; m < PRW; ++m) {
            const int r = pr + PRG * m;
            if (p_active && r < ROWS) {
                float tmax = CLA_NEG_INF;
                DECODE_UNROLL
                for (int c = 0; c < TPR; ++c) tmax = cla_max_nan(tmax, part[r * TPR + c]);
                const float m_new = cla_max_nan(m_run[m], tmax);
                /* A row with every key masked so far keeps m = -inf and takes nothing. */
                const float alpha = m_new == CLA_NEG_INF ? 1.0f : exp2(m_run[m] - m_new);
                float sum = 0.0f;
                for (int jj = pc; jj < BLOCK_N; jj += TPR) {
                    const float x = s_tile[r * PS + jj];
                    const float p = x == CLA_NEG_INF ? 0.0f : exp2(x - m_new);
                    s_tile[r * PS + jj] = p;
                    sum += p;
                }
                l_part[m] = l_part[m] * alpha + sum;
                m_run[m] = m_new;
                if (pc == 0) alpha_tile[r] = alpha;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* O += P V for this work-item's columns and key slice, four keys at a time, for every row. */
        if (ks < VSL) {
            DECODE_UNROLL
            for (int m = 0; m < RPW; ++m) {
                const float alpha = alpha_tile[rg + RG * m];
                DECODE_UNROLL
                for (int c = 0; c < TD4; ++c) acc[m][c] *= alpha;
            }
            for (int g = ks; g * 4 < n; g += VSL) {
                const int jb = g * 4;
                const bool whole = jb + 4 <= n;
                float4 vv[4][TD4];
                DECODE_UNROLL
                for (int e = 0; e < 4; ++e) {
                    DECODE_UNROLL
                    for (int c = 0; c < TD4; ++c) {
                        const int d4 = col + CW * c;
                        /* Past n: zeros, and no load (the row may lie past the key length, or its page past the
                         * table); likewise past the value row's last float4. */
#if VD4 % CW == 0
                        const bool in_row = true;
#else
                        const bool in_row = d4 < VD4;
#endif
                        vv[e][c] = (whole || jb + e < n) && in_row
                                       ? cla_v4(v, v_base, v_stride, j0 + jb + e, d4, v_scale, scale_offsets.y,
                                                vs_stride, seqs, seq_at, b, hk)
                                       : (float4)(0.0f);
                    }
                }
                __local const float *p_row = s_tile + jb;
                if (full) {
                    DECODE_UNROLL
                    for (int m = 0; m < RPW; ++m)
                        DECODE_PV4(acc[m], vload4(0, p_row + (rg + RG * m) * PS), vv, false);
                } else {
                    DECODE_UNROLL
                    for (int m = 0; m < RPW; ++m)
                        DECODE_PV4(acc[m], vload4(0, p_row + (rg + RG * m) * PS), vv, true);
                }
            }
        }
    }

    /* The end: the rows' sums and maxima from the p phase, the accumulators summed over the key slices, then the
     * output rows from slice 0. */
    DECODE_UNROLL
    for (int m = 0; m < PRW; ++m) {
        const int r = pr + PRG * m;
        if (p_active && r < ROWS) part[r * TPR + pc] = l_part[m];
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the last tile is read: red may overwrite it */
    /* Each row's end, by its first p-phase work-item: the split state's max and sum, or the sink, the normaliser
     * (published for the output) and the lse. */
    DECODE_UNROLL
    for (int m = 0; m < PRW; ++m) {
        const int r = pr + PRG * m;
        if (p_active && r < rows_total && pc == 0) {
            const int i = r / group, h = hk * group + r % group;
            float m_row = m_run[m], l = 0.0f;
            DECODE_UNROLL
            for (int c = 0; c < TPR; ++c) l += part[r * TPR + c];
#if SPLIT_KV
            __global float *state = cla_split_state(partial, b, Hq, h, dims.y, i, split);
            state[0] = m_row;
            state[1] = l;
#else
            const float inv = cla_row_scale(sinks, mods, h, &m_row, &l);
            const bool empty = m_row == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
            fin_inv[r] = empty ? 0.0f : inv;
            fin_empty[r] = empty;
#if HAS_LSE
            lse[offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride) + h * lse_stride.y + i * lse_stride.z] =
                empty ? CLA_NEG_INF : (m_row + log2(l)) * CLA_LN2;
#endif
#endif
        }
    }
    /* Every slice writes its accumulators, slice 0 adds them up. (PoCL 3.1's optimiser lost slice 0's own
     * accumulators across this barrier in some shapes, and miscompiled halving rounds, a barrier each: so slice 0
     * reads its own back too, in one exchange. That holds with one slice as well: kept in registers across the
     * barrier, a work-item's accumulators came out zero under PoCL 3.1 and Oclgrind 21.10 where the value columns
     * left some work-items idle, as at head dim 12 in groups of 4.) The barrier also publishes the normalisers. */
    if (ks < VSL) {
        DECODE_UNROLL
        for (int m = 0; m < RPW; ++m) {
            DECODE_UNROLL
            for (int c = 0; c < TD4; ++c) red[((ks * ROWS + rg + RG * m) * TD4 + c) * CW + col] = acc[m][c];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ks == 0) {
        DECODE_UNROLL
        for (int m = 0; m < RPW; ++m) {
            DECODE_UNROLL
            for (int c = 0; c < TD4; ++c) acc[m][c] = red[((rg + RG * m) * TD4 + c) * CW + col];
        }
        for (int sl = 1; sl < VSL; ++sl) {
            DECODE_UNROLL
            for (int m = 0; m < RPW; ++m) {
                DECODE_UNROLL
                for (int c = 0; c < TD4; ++c) acc[m][c] += red[((sl * ROWS + rg + RG * m) * TD4 + c) * CW + col];
            }
        }
    }
    if (ks != 0) return;

    DECODE_UNROLL
    for (int m = 0; m < RPW; ++m) {
        const int r = rg + RG * m;
        /* Rows past the end skipped, not left by a break: the loop stays unrolled (acc in registers). */
        if (r < rows_total) {
            const int i = r / group, h = hk * group + r % group;
#if SPLIT_KV
            __global float *state = cla_split_state(partial, b, Hq, h, dims.y, i, split);
            DECODE_UNROLL
            for (int c = 0; c < TD4; ++c) cla_state_store4(state, col + CW * c, acc[m][c]);
#else
            __global STORAGE(O_DTYPE) *orow =
                o + offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride) + h * o_stride.y + i * o_stride.z;
            const float inv = fin_inv[r];
            const bool empty = fin_empty[r];
            DECODE_UNROLL
            for (int c = 0; c < TD4; ++c)
                cla_out_store4(orow, DSTRIDE(o_stride), col + CW * c, empty ? (float4)(0.0f) : acc[m][c] * inv);
#endif
        }
    }
}
