// SPDX-License-Identifier: Apache-2.0
/* Fused attention for GPUs and accelerators in the FlashAttention-2 shape (variant "flash" of the sdpa_fused
 * family, src/tuning/tuning.c). A work-group owns BLOCK_M rows of one (batch, key/value head): with GQA the query
 * heads that share the key head are packed as rows (row r is query i = r / group of head hk * group + r % group),
 * so every K/V tile is read once for all of them. The group walks the key tiles of BLOCK_N keys, staging K and V
 * in local memory with coalesced vector loads (rows padded by a float4 against bank conflicts).
 *
 * Work-item (tr, tc) of the RT x CT group owns TM rows (tr * TM ...) and, of each tile, TN keys. The product
 * S = Q K^T splits the head dimension over SP work-items of the row (DSPLIT; tc = kc * SP + sp): work-item (sp, kc)
 * keeps its rows' Q for the float4s sp + SP * u only, and forms partial scores for TM rows x TN * SP keys
 * (kc + CK * t), so each K float4 read from local memory serves TM rows while Q takes TM * HEAD_DIM / SP registers.
 * The SP partial sums of a score meet in local memory and each work-item adds up, in a fixed order, the TN keys it
 * owns: kc + CK * (sp * TN + t). The partial scores (SP per key) share their memory with the V tile and the
 * probability rows, which are written only once the sums are read (a barrier the row maximum needs anyway): so the
 * V tile is loaded after the scores rather than beside K, and the group takes about a quarter less local memory
 * (at head dim 64, 12.8 KiB instead of 17 KiB: 4 groups of 256 in AMD's 64 KiB where 3 fitted). All register tiles
 * are indexed only by compile-time constants in unrolled loops. A row's tile maximum is reduced across its CT
 * work-items through local memory; the probabilities go to local memory, and each work-item accumulates P V for its
 * TM rows and the value columns tc + CT * c (float4 columns), again a register tile, with the online-softmax
 * rescale. Row sums stay partial per work-item (the rescale is the same for the whole row) and are reduced once at
 * the end. Rows of probabilities and of the reductions are read four floats at a time (vload4).
 *
 * Q, read once per group with coalesced loads, lives in registers, float4 by float4 (TM x HEAD_DIM / 4 of them,
 * indexed by unrolled constants), or for head dims past 128 in local memory (Q_IN_LOCAL). The host sizes the
 * grid and local memory for this layout with TN = CLA_FLASH_TN and SP = cla_flash_dsplit (src/tuning/tuning.h).
 * Tiles that causal masking, the window, the key length, the key split or the block mask (HAS_BLOCK_MASK) exclude
 * for every row of the block are skipped; tiles inside every row's keys without a mask tensor skip the per-score
 * checks (the score modifiers HAS_SOFTCAP and HAS_ALIBI still apply there, through cla_score_mod; HAS_SINKS folds a
 * row's sink into its end, or into sdpa_combine's). SPLIT_KV = 1 writes the partial state for sdpa_combine
 * (sdpa_fused.cl), as the other variants do. Specialisation defines as in sdpa_fused.cl; common.cl holds the shared
 * ones. */

#ifndef ROWS
#define ROWS 1 /* TM: rows per work-item */
#endif
#ifndef BLOCK_N
#define BLOCK_N 16
#endif
#ifndef WG_SIZE
#define WG_SIZE 256
#endif
#ifndef TN
#define TN 1 /* keys per work-item of each tile (CLA_FLASH_TN) */
#endif
#ifndef SPLIT_KV
#define SPLIT_KV 0
#endif
#ifndef Q_IN_LOCAL
#define Q_IN_LOCAL (HEAD_DIM > 128)
#endif

#define TM      ROWS
#define CT      (BLOCK_N / TN)         /* work-items sharing a row */
#define RT      (WG_SIZE / CT)         /* row groups */
#define BLOCK_M (RT * TM)              /* rows per work-group */
#define KD4     ((HEAD_DIM + 3) / 4)   /* float4s of a key row */
#define VD4     ((V_HEAD_DIM + 3) / 4) /* float4s of a value row */
#define TD4     ((VD4 + CT - 1) / CT)  /* float4 output columns per work-item */
#ifndef DSPLIT                         /* work-items sharing a score's head dimension (cla_flash_dsplit) */
#define DSPLIT (CT % 4 == 0 && KD4 >= 4 ? 4 : CT % 2 == 0 && KD4 >= 2 ? 2 : 1)
#endif
#define SP  DSPLIT
#define CK  (CT / SP)             /* key columns of the product */
#define TNS (TN * SP)             /* keys of a work-item's partial scores */
#define KU  ((KD4 + SP - 1) / SP) /* float4s of a work-item's share of the head dimension */
#define KS4 (KD4 + 1)             /* padded strides, in float4s */
#define VS4 (VD4 + 1)
/* Padded rows, in floats (multiples of 4 for vector loads): of the SP partial scores of each key (leaving out the
 * owner's own partial saves local memory but costs GPU compilers some 40 registers), and of the probabilities. */
#define XS (SP * BLOCK_N + 4)
#define PS (BLOCK_N + 4)
/* Float4s of the memory the partial scores share with the V tile and the probability rows (with SP = 1 there are
 * no partial scores, and V is loaded beside K). */
#define VP4 (BLOCK_N * VS4 + BLOCK_M * PS / 4)
#if SP > 1 && BLOCK_M * XS / 4 > VP4
#define SHARED4 (BLOCK_M * XS / 4)
#else
#define SHARED4 VP4
#endif
/* The row reductions in the K tile's memory, which the scores no longer read once partial scores were exchanged
 * (a barrier apart), where it is large enough: less local memory, for more groups per compute unit. */
#ifndef RED_IN_K
#define RED_IN_K (SP > 1 && BLOCK_M * CT <= BLOCK_N * KS4 * 4)
#endif

#if BLOCK_N % TN != 0 || WG_SIZE % (BLOCK_N / TN) != 0 || BLOCK_N % 4 != 0 || CT % SP != 0
#error "sdpa_flash: BLOCK_N must be a multiple of TN and of 4, WG_SIZE of BLOCK_N / TN, and that of DSPLIT"
#endif

#ifdef __clang__
#define FLASH_UNROLL _Pragma("unroll")
#else
#define FLASH_UNROLL
#endif

/* The whole group stages the tile's value rows (zeros past n). */
#define FLASH_LOAD_V()                                                                                             \
    for (int x = lid; x < BLOCK_N * VD4; x += WG_SIZE) {                                                           \
        const int jj = x / VD4, d4 = x % VD4;                                                                      \
        v_tile[jj * VS4 + d4] = jj < n ? cla_v4(v, v_base, v_stride, j0 + jj, d4, v_scale, scale_offsets.y,        \
                                                vs_stride, seqs, seq_at, b, hk)                                    \
                                       : (float4)(0.0f);                                                           \
    }

__kernel __attribute__((reqd_work_group_size(WG_SIZE, 1, 1))) void sdpa_flash(SDPA_FUSED_ARGS) {
    const int Hq = dims.x, group = dims.w;
    const int Hkv = Hq / group;
    const int bk = get_global_id(1);
    const int b = bk / Hkv, hk = bk % Hkv;
    /* This batch item's lengths (the packed and paged layouts' own; dims has the largest). */
    const int Lq = cla_seq_q_len(seqs, seq_at, b, dims.y), Lk = cla_seq_k_len(seqs, seq_at, b, dims.z);
    const int rows_total = Lq * group;
    const int lid = get_local_id(0), tc = lid % CT, tr = lid / CT, sp = tc % SP, kc = tc / SP;
    const int block0 = (int)get_group_id(0) * BLOCK_M;
    if (block0 >= rows_total) return; /* past a short packed sequence's rows: the whole group leaves together */

    const long q_base = offsets.s0 + cla_seq_q_base(seqs, seq_at, b, q_stride);
    k += offsets.s1 + hk * k_stride.y;
    v += offsets.s2 + hk * v_stride.y;
    const long k_base = cla_seq_kv_base(seqs, seq_at, b, k_stride),
               v_base = cla_seq_kv_base(seqs, seq_at, b, v_stride);
    const int kv_limit = cla_kv_limit(key_lengths, offsets.s5, b, Lk);
    const int2 shift = cla_shifts(Lq, Lk);

    /* The block's queries run from i_first to i_last: the keys any of them sees decide the tiles visited, the keys
     * all of them see decide which tiles need no per-score checks. */
    const int i_first = block0 / group, i_last = (min(block0 + BLOCK_M, rows_total) - 1) / group;
    int range_lo = cla_key_lo(i_first, shift, window);
    int range_hi = cla_key_hi(i_last, shift, window, kv_limit);
    const int inner_lo = cla_key_lo(i_last, shift, window);
    const int inner_hi = cla_key_hi(i_first, shift, window, kv_limit);
#if SPLIT_KV
    const int split = get_global_id(2);
    range_lo = max(range_lo, split * split_len);
    range_hi = min(range_hi, (split + 1) * split_len);
#endif

    __local float4 k_tile[BLOCK_N * KS4];
    __local float4 shared_tile[SHARED4];
    __local float4 *const v_tile = shared_tile;
    __local float *const p_tile = (__local float *)(shared_tile + BLOCK_N * VS4);
#if SP > 1
    __local float *const x_tile = (__local float *)shared_tile; /* partial scores */
#endif
#if RED_IN_K
    __local float *const red = (__local float *)k_tile;
#else
    __local float red[BLOCK_M * CT];
#endif
#if Q_IN_LOCAL
    __local float4 q_tile[BLOCK_M * KS4];
#endif

    /* This work-item's rows: query, head, keys, mask row; rows past the end compute a copy of the last row. */
    int row_i[TM], row_h[TM], lo[TM], hi[TM];
    long mask_row[TM], bm_row[TM];
#if HAS_ALIBI
    float slope2[TM]; /* the row's head's ALiBi slope in log2 units (heads differ between rows with GQA packing) */
#endif
    float m_run[TM], l_part[TM];
    float4 acc[TM][TD4];
#if !Q_IN_LOCAL
    float4 qr[TM][KU]; /* this work-item's share of the head dimension: float4s sp + SP * u */
#endif
    FLASH_UNROLL
    for (int m = 0; m < TM; ++m) {
        const int r = min(block0 + tr * TM + m, rows_total - 1);
        const int i = r / group, h = hk * group + r % group;
        row_i[m] = i;
        row_h[m] = h;
        lo[m] = cla_key_lo(i, shift, window);
        hi[m] = cla_key_hi(i, shift, window, kv_limit);
        mask_row[m] = offsets.s4 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z;
        bm_row[m] = cla_block_row(offsets.s7, bm_stride, bm_dims, b, h, i);
#if HAS_ALIBI
        slope2[m] = cla_alibi_slope2(alibi, mods, h);
#endif
        m_run[m] = CLA_NEG_INF;
        l_part[m] = 0.0f;
        FLASH_UNROLL
        for (int c = 0; c < TD4; ++c) acc[m][c] = (float4)(0.0f);
    }
    /* Q, scaled into log2 units, read once by the whole group with coalesced loads: into local memory, or through
     * the K tile's memory BLOCK_N rows at a time into each work-item's registers. */
#if Q_IN_LOCAL
    for (int x = lid; x < BLOCK_M * KD4; x += WG_SIZE) {
        const int rr = x / KD4, d4 = x % KD4;
        const int r = min(block0 + rr, rows_total - 1);
        const int i = r / group, h = hk * group + r % group;
        const long at = q_base + h * q_stride.y + i * q_stride.z + d4 * 4 * DSTRIDE(q_stride);
        q_tile[rr * KS4 + d4] = LOAD4(Q_DTYPE, q, at, DSTRIDE(q_stride), HEAD_DIM - d4 * 4) * scale_log2;
    }
#else
    for (int q0 = 0; q0 < BLOCK_M; q0 += BLOCK_N) {
        for (int x = lid; x < BLOCK_N * KD4; x += WG_SIZE) {
            const int rr = x / KD4, d4 = x % KD4;
            const int r = min(block0 + q0 + rr, rows_total - 1);
            const int i = r / group, h = hk * group + r % group;
            const long at = q_base + h * q_stride.y + i * q_stride.z + d4 * 4 * DSTRIDE(q_stride);
            k_tile[rr * KS4 + d4] = LOAD4(Q_DTYPE, q, at, DSTRIDE(q_stride), HEAD_DIM - d4 * 4) * scale_log2;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            const int rr = tr * TM + m - q0;
            if (rr >= 0 && rr < BLOCK_N) {
                FLASH_UNROLL
                for (int u = 0; u < KU; ++u)
                    qr[m][u] = KD4 % SP == 0 || sp + SP * u < KD4 ? k_tile[rr * KS4 + sp + SP * u] : (float4)(0.0f);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif

    const int tile_start = range_lo > 0 ? (range_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < range_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, range_hi - j0);
        /* The block mask's state over the block's queries and its key/value head's query heads (a superset of its
         * rows, so SKIP is exact), the same in every work-item: a skipped tile is skipped by the whole group. */
        const int bt = cla_block_tile(block_mask, offsets.s7, bm_stride, bm_dims, b, hk * group,
                                      hk * group + group - 1, i_first, i_last, j0, j0 + n - 1);
        if (bt == CLA_TILE_SKIP) continue;
        /* Every key of the tile visible to every row, and no per-key mask or mod: no per-score checks. */
        const bool full = !CLA_TILE_PER_KEY(bt) && n == BLOCK_N && j0 >= inner_lo && j0 + BLOCK_N <= inner_hi;

        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is no longer read (and q_tile is written) */
        /* Past n: zeros, and no load (the row may lie past the key length, or its page past the table). */
        for (int x = lid; x < BLOCK_N * KD4; x += WG_SIZE) {
            const int jj = x / KD4, d4 = x % KD4;
            k_tile[jj * KS4 + d4] = jj < n ? cla_k4(k, k_base, k_stride, j0 + jj, d4, k_scale, scale_offsets.x,
                                                    ks_stride, seqs, seq_at, b, hk)
                                           : (float4)(0.0f);
        }
#if SP == 1
        FLASH_LOAD_V();
#endif
        barrier(CLK_LOCAL_MEM_FENCE);

        /* S = Q K^T: this work-item's partial scores over its share of the head dimension, for TM rows and the
         * TNS keys kc + CK * t. dot() keeps each K float4 one local load. */
        float sx[TM][TNS];
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            FLASH_UNROLL
            for (int t = 0; t < TNS; ++t) sx[m][t] = 0.0f;
        }
        FLASH_UNROLL
        for (int u = 0; u < KU; ++u) {
            const int d4 = sp + SP * u;
            if (KD4 % SP == 0 || d4 < KD4) {
                float4 kv[TNS];
                FLASH_UNROLL
                for (int t = 0; t < TNS; ++t) kv[t] = k_tile[(kc + CK * t) * KS4 + d4];
                FLASH_UNROLL
                for (int m = 0; m < TM; ++m) {
#if Q_IN_LOCAL
                    const float4 qv = q_tile[(tr * TM + m) * KS4 + d4];
#else
                    const float4 qv = qr[m][u];
#endif
                    FLASH_UNROLL
                    for (int t = 0; t < TNS; ++t) sx[m][t] += dot(qv, kv[t]);
                }
            }
        }
        /* The scores this work-item owns (keys kc + CK * (sp * TN + t)): with the head dimension split, the sum of
         * the SP partial scores, exchanged through the probability rows and added in the same order everywhere. */
        float s[TM][TN];
#if SP > 1
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            FLASH_UNROLL
            for (int t = 0; t < TNS; ++t) x_tile[(tr * TM + m) * XS + sp * BLOCK_N + kc + CK * t] = sx[m][t];
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* partial scores written, and the K tile no longer read */
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            FLASH_UNROLL
            for (int t = 0; t < TN; ++t) {
                const int jj = kc + CK * (sp * TN + t);
                float sum = 0.0f;
                FLASH_UNROLL
                for (int q = 0; q < SP; ++q) sum += x_tile[(tr * TM + m) * XS + q * BLOCK_N + jj];
                s[m][t] = sum;
            }
        }
#else
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            FLASH_UNROLL
            for (int t = 0; t < TN; ++t) s[m][t] = sx[m][t];
        }
#endif

        /* Masking, then each row's maximum over its CT work-items. */
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            float tmax = CLA_NEG_INF;
            FLASH_UNROLL
            for (int t = 0; t < TN; ++t) {
                const int jj = kc + CK * (sp * TN + t), j = j0 + jj;
#if HAS_SOFTCAP || HAS_ALIBI
                /* The score modifiers come before any mask, on every tile (full ones included). */
#if HAS_ALIBI
                const float row_slope2 = slope2[m];
#else
                const float row_slope2 = 0.0f;
#endif
                s[m][t] = cla_score_mod(s[m][t], row_i[m] + shift.y, j, softcap2, row_slope2);
#endif
#if HAS_USER_MODS || HAS_BLOCK_MASK
                /* Keys past the tile's n lie outside [lo, hi), so the caller's code never sees them; a full tile
                 * has nothing to do here. */
                if (jj < n && !full)
                    s[m][t] = cla_user_mods(s[m][t], b, row_h[m], row_i[m], j, lo[m], hi[m],
                                            cla_block_flag(block_mask, bm_row[m], bm_stride, bm_dims, bt, j),
                                            mod_buf0, mod_buf1);
#endif
                if (!full)
                    s[m][t] = jj < n ? cla_score(s[m][t], j, lo[m], hi[m], mask, mask_row[m] + j * mask_stride.w)
                                     : CLA_NEG_INF;
                tmax = cla_max_nan(tmax, s[m][t]);
            }
            red[(tr * TM + m) * CT + tc] = tmax;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the partial scores are read: their memory takes V and the probabilities */
#if SP > 1
        FLASH_LOAD_V();
#endif
        FLASH_UNROLL
        for (int m = 0; m < TM; ++m) {
            float tmax = CLA_NEG_INF;
            FLASH_UNROLL
            for (int c = 0; c < CT; c += 4) {
#if CT % 4 == 0
                const float4 r4 = vload4(0, red + (tr * TM + m) * CT + c);
                tmax = cla_max_nan(cla_max_nan(tmax, r4.x), cla_max_nan(r4.y, cla_max_nan(r4.z, r4.w)));
#else
                FLASH_UNROLL
                for (int e = c; e < min(c + 4, CT); ++e) tmax = cla_max_nan(tmax, red[(tr * TM + m) * CT + e]);
#endif
            }
            const float m_new = cla_max_nan(m_run[m], tmax);
            /* A row with every key masked so far keeps m = -inf and takes nothing. */
            const float alpha = m_new == CLA_NEG_INF ? 1.0f : exp2(m_run[m] - m_new);
            float sum = 0.0f;
            FLASH_UNROLL
            for (int t = 0; t < TN; ++t) {
                const float p = s[m][t] == CLA_NEG_INF ? 0.0f : exp2(s[m][t] - m_new);
                sum += p;
                p_tile[(tr * TM + m) * PS + kc + CK * (sp * TN + t)] = p;
            }
            l_part[m] = l_part[m] * alpha + sum;
            m_run[m] = m_new;
            FLASH_UNROLL
            for (int c = 0; c < TD4; ++c) acc[m][c] *= alpha;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* O += P V over the tile's keys, four at a time. A masked key contributes nothing, not 0 * v: on tiles
         * with masked keys a zero weight skips its value row, so that a NaN there cannot leak in. */
        for (int j4 = 0; j4 < BLOCK_N / 4; ++j4) {
            float4 p4[TM];
            FLASH_UNROLL
            for (int m = 0; m < TM; ++m) p4[m] = vload4(0, p_tile + (tr * TM + m) * PS + j4 * 4);
            FLASH_UNROLL
            for (int e = 0; e < 4; ++e) {
                const int jj = j4 * 4 + e;
                float4 vv[TD4];
                FLASH_UNROLL
                for (int c = 0; c < TD4; ++c) {
#if VD4 % CT == 0
                    vv[c] = v_tile[jj * VS4 + tc + CT * c];
#else
                    /* Work-items past the value's last float4 (more work-items to a row than float4s: decode). */
                    vv[c] = tc + CT * c < VD4 ? v_tile[jj * VS4 + tc + CT * c] : (float4)(0.0f);
#endif
                }
                FLASH_UNROLL
                for (int m = 0; m < TM; ++m) {
                    const float p = e == 0 ? p4[m].x : e == 1 ? p4[m].y : e == 2 ? p4[m].z : p4[m].w;
                    if (full || p != 0.0f) {
                        FLASH_UNROLL
                        for (int c = 0; c < TD4; ++c) acc[m][c] = fma((float4)(p), vv[c], acc[m][c]);
                    }
                }
            }
        }
    }

    /* Each row's sum over its CT work-items. */
    barrier(CLK_LOCAL_MEM_FENCE);
    FLASH_UNROLL
    for (int m = 0; m < TM; ++m) red[(tr * TM + m) * CT + tc] = l_part[m];
    barrier(CLK_LOCAL_MEM_FENCE);

    FLASH_UNROLL
    for (int m = 0; m < TM; ++m) {
        const int r = block0 + tr * TM + m;
        if (r >= rows_total) break;
        float l = 0.0f;
        FLASH_UNROLL
        for (int c = 0; c < CT; c += 4) {
#if CT % 4 == 0
            const float4 r4 = vload4(0, red + (tr * TM + m) * CT + c);
            l += r4.x;
            l += r4.y;
            l += r4.z;
            l += r4.w;
#else
            FLASH_UNROLL
            for (int e = c; e < min(c + 4, CT); ++e) l += red[(tr * TM + m) * CT + e];
#endif
        }
        const int i = row_i[m], h = row_h[m];
#if SPLIT_KV
        __global float *state = cla_split_state(partial, b, Hq, h, dims.y, i, split);
        if (tc == 0) {
            state[0] = m_run[m];
            state[1] = l;
        }
        FLASH_UNROLL
        for (int c = 0; c < TD4; ++c) cla_state_store4(state, tc + CT * c, acc[m][c]);
#else
        const float inv = cla_row_scale(sinks, mods, h, &m_run[m], &l);
        const bool empty = m_run[m] == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
        __global STORAGE(O_DTYPE) *orow =
            o + offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride) + h * o_stride.y + i * o_stride.z;
        FLASH_UNROLL
        for (int c = 0; c < TD4; ++c)
            cla_out_store4(orow, DSTRIDE(o_stride), tc + CT * c, empty ? (float4)(0.0f) : acc[m][c] * inv);
#if HAS_LSE
        if (tc == 0)
            lse[offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride) + h * lse_stride.y + i * lse_stride.z] =
                empty ? CLA_NEG_INF : (m_run[m] + log2(l)) * CLA_LN2;
#endif
#endif
    }
}
