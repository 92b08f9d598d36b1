// SPDX-License-Identifier: Apache-2.0
/* Fused scaled dot-product attention for CPUs (PoCL and other CPU OpenCL drivers): the same semantics, kernel
 * arguments and key-split partial state as sdpa_fused in sdpa_fused.cl (whose sdpa_combine merges the splits), laid
 * out for SIMD units instead of work-groups. One work-item per work-group (no work-item loops, no barriers) and
 * explicit float8 vectors, which LLVM maps onto AVX2 registers as written.
 *
 * Block shape, ROWS a multiple of 8: a work-item owns ROWS query rows of one head and keeps them transposed, eight
 * rows to a float8, so that every step of the online softmax is elementwise:
 *   S^T[key][rows] = sum over d of  Q^T[d][rows] * broadcast K[key][d]     (KB keys x RV row vectors in registers)
 *   row max, exp2, row sum                                                  (elementwise over the row vectors)
 *   O^T[dv][rows] += sum over keys of P^T[key][rows] * broadcast V[key][dv] (DB columns x RV row vectors)
 * Broadcasts come straight from memory, so any head dim works with no vector tail and no transposition of K or V;
 * only Q (on entry) and O (on exit) change layout.
 * Row shape, ROWS = 1 (decode, where a block would be mostly empty lanes): the vectors run along the head dim, a
 * dot product per key reduced eight keys at a time, and the kernel streams K and V at memory speed.
 *
 * Tiles of BLOCK_N keys that no row of the work-item may see are skipped; tiles that every row sees in full
 * ("inner" tiles, the bulk of a causal or windowed call) run with no per-key test. The others ("edge" tiles, and
 * every tile under an explicit mask) set masked logits to -inf and their weights to -0.0, which marks them: a
 * masked key must contribute nothing, not 0 * v, as a value there may be inf or NaN. The exp2 is a polynomial here
 * because the library's exp2 costs as much as the two products together at head dim 64.
 *
 * Specialisation defines (set by the host; common.cl has the shared ones' defaults): HEAD_DIM, V_HEAD_DIM (any
 * 1..576), Q/K/V/O_DTYPE, MASK_KIND (0 none, 1 additive, 2 boolean), MASK_DTYPE, CAUSAL (0 none, 1 top-left,
 * 2 bottom-right), HAS_WINDOW, HAS_KEY_LENGTHS, HAS_LSE, SPLIT_KV, UNIT_DSTRIDE (all head-dim strides are 1), and
 * the score modifiers HAS_SOFTCAP, HAS_ALIBI (common.cl's cla_score_mod8 on every score, inner tiles included) and
 * HAS_SINKS (cla_fold_sink at a row's end, or in sdpa_combine with key splits); the caller's score_mod and mask_mod
 * (HAS_SCORE_FN, HAS_MASK_FN: common.cl's cla_user_mods8 on every key of a row; in the row shape every tile is then
 * an edge tile, in the block shape an inner tile stays one and marks the keys they masked); the block mask
 * (HAS_BLOCK_MASK: a tile whose rows and keys lie in 0 blocks is skipped, one wholly in full blocks needs no flags,
 * others read each key's flag); the serving layouts VARLEN_Q, KV_LAYOUT and PAGE_SIZE (common.cl: every key row is
 * found through cla_seq_kv_row, so a tile may span pages) and 8-bit K/V (K_DTYPE, V_DTYPE 4 or 5: a key's scale
 * multiplies its scores, a value's its weights, so nothing dequantized is stored).
 * Tunables: ROWS (1 or a multiple of 8), BLOCK_N, for the block shape KB and DB (register block widths; the
 * defaults fill the 16 AVX2 registers), and for the row shape GQA_PACK (a work-item takes the rows of all the query
 * heads that share a key/value head) with PACK_ROWS, the rows a work-item takes (the host's, from the shape).
 * CLA_CPU_PREFETCH: the device's cache line in bytes where its compiler lowers __builtin_prefetch to the CPU's
 * prefetch instructions (the host sets it for PoCL's CPU devices), else 0; the row shape then prefetches rows. */

#ifndef ROWS
#define ROWS 24
#endif
#ifndef BLOCK_N
#define BLOCK_N 48
#endif
#ifndef SPLIT_KV
#define SPLIT_KV 0
#endif
#ifndef GQA_PACK
#define GQA_PACK 0
#endif
#ifndef PACK_ROWS
#define PACK_ROWS 1
#endif
#ifndef CLA_CPU_PREFETCH
#define CLA_CPU_PREFETCH 0
#endif
#ifndef CLA_PREFETCH_AS_READ
#define CLA_PREFETCH_AS_READ 0
#endif

#if ROWS != 1 && (ROWS % 8 != 0 || ROWS < 8)
#error "ROWS must be 1 or a positive multiple of 8"
#endif

#define CPU_INLINE CLA_INLINE
#define CPU_UNROLL _Pragma("unroll")

#if MASK_KIND
/* One mask element as the kernel reads it: the additive value, or for a boolean mask 0 (kept) / -inf (masked). */
CPU_INLINE float mask_value(__global const STORAGE(MASK_DTYPE) * mask, long at) {
#if MASK_KIND == 1
    return LOAD(MASK_DTYPE, mask, at);
#else
    return mask[at] != 0 ? 0.0f : CLA_NEG_INF;
#endif
}

/* Eight log2-domain logits with their mask values applied: masked keys (additive <= -FLT_MAX, boolean false)
 * become -inf whatever the logit, so a NaN logit of a masked key cannot reach the row. */
CPU_INLINE float8 apply_mask8(float8 x, float8 m) {
#if MASK_KIND == 1
    return select(fma(m, (float8)(CLA_LOG2E), x), (float8)(CLA_NEG_INF), m <= (float8)(-FLT_MAX));
#else
    return select(x, (float8)(CLA_NEG_INF), m == (float8)(CLA_NEG_INF));
#endif
}
#endif

/* The bits of -0.0f, the mark of a masked key's weight (exp2 never returns it). */
#define NEG_ZERO_BITS ((int)0x80000000)

/* max(a, b) in one instruction (maxps): a NaN in b is dropped here, and caught at the end of the kernel because it
 * made the row sum NaN. */
CPU_INLINE float8 vmax(float8 a, float8 b) {
    return select(a, b, b > a);
}

CPU_INLINE float smax(float a, float b) {
    return b > a ? b : a;
}

/* Writes row i's result: the normalised output and lse, or with SPLIT_KV its partial state [m, l, acc...] as
 * sdpa_combine reads it. acc[d * acc_stride] is the unnormalised output; m and l are in log2 units. A NaN score was
 * dropped by the max but made l NaN: m becomes NaN too, so that the row (or through sdpa_combine the merged row)
 * comes out NaN rather than empty. */
CPU_INLINE void write_row(__global STORAGE(O_DTYPE) * o, long4 o_stride, long o_offset, __global float *lse,
                          long4 lse_stride, long lse_offset, __global float *partial, int h, int bh, int i, int Lq,
                          float m, float l, const float *acc, int acc_stride, float sink2) {
    if (isnan(l)) m = l;
#if SPLIT_KV
    const int nsplit = get_global_size(2), split = get_global_id(2);
    __global float *state = partial + (((long)bh * Lq + i) * nsplit + split) * (V_HEAD_DIM + 2);
    state[0] = m;
    state[1] = l;
    for (int d = 0; d < V_HEAD_DIM; ++d) state[2 + d] = acc[d * acc_stride];
#else
    /* The sink joins the whole row's denominator once: here, or with key splits in sdpa_combine. */
    const float factor = HAS_SINKS ? cla_fold_sink(sink2, &m, &l) : 1.0f;
    const bool empty = m == CLA_NEG_INF; /* every key masked (and no sink): zeros, and lse -inf */
    const float inv = empty ? 0.0f : factor / l;
    __global STORAGE(O_DTYPE) *orow = o + o_offset + h * o_stride.y + i * o_stride.z;
    for (int d = 0; d < V_HEAD_DIM; ++d)
        STORE(O_DTYPE, orow, d * DSTRIDE(o_stride), empty ? 0.0f : acc[d * acc_stride] * inv);
#if HAS_LSE
    lse[lse_offset + h * lse_stride.y + i * lse_stride.z] = empty ? CLA_NEG_INF : (m + log2(l)) * CLA_LN2;
#endif
#endif
}

#define QC ((HEAD_DIM + 7) / 8)   /* float8 chunks of a q or k row */
#define VC ((V_HEAD_DIM + 7) / 8) /* float8 chunks of a v or output row */

/* Chunk c of a k or v row as float8, zeros past the head dim (never a load there: it may hold another row's NaN);
 * a whole chunk of a unit-stride row is one vector load and conversion. 8-bit rows come out unscaled. */
#define VLOAD8_0(c, p) vload8((c), (p))
#define VLOAD8_1(c, p) vload_half8((c), (p))
#define VLOAD8_2(c, p) as_float8(convert_uint8(vload8((c), (p))) << 16)
#define VLOAD8_4(c, p) convert_float8(vload8((c), (p)))
#define VLOAD8_5(c, p) cla_fp8x8_to_f32(cla_vload8_u8((c), (p)))
#define K_VLOAD8(c, p) CLA_CAT(VLOAD8_, K_DTYPE)(c, p)
#define V_VLOAD8(c, p) CLA_CAT(VLOAD8_, V_DTYPE)(c, p)

/* Key j's row of K or V (heads aside), through the serving layout's index arrays; the kernels name their base
 * offsets k_base and v_base. */
#define K_ROW(j) cla_seq_kv_row(seqs, seq_at, b, k_base, (j), k_stride)
#define V_ROW(j) cla_seq_kv_row(seqs, seq_at, b, v_base, (j), v_stride)
/* How many keys from key j, at most left, have rows one row stride (k_stride.z) apart: to the end of j's page in
 * a paged cache, so that a run costs one block-table entry. */
#define KEY_RUN(j, left) (KV_LAYOUT == 2 ? min((left), PAGE_SIZE - (j) % PAGE_SIZE) : (left))
/* The scales of key j's row of an 8-bit K or V (1 otherwise). */
#define K_SCALE(j) cla_k_scale(k_scale, scale_offsets.x, ks_stride, seqs, seq_at, b, hk, (j))
#define V_SCALE(j) cla_v_scale(v_scale, scale_offsets.y, vs_stride, seqs, seq_at, b, hk, (j))

CPU_INLINE float8 k_chunk(__global const STORAGE(K_DTYPE) * row, long stride, const int c) {
    if (UNIT_DSTRIDE && (c + 1) * 8 <= HEAD_DIM) return K_VLOAD8(c, row);
    float t[8];
    CPU_UNROLL
    for (int y = 0; y < 8; ++y) t[y] = c * 8 + y < HEAD_DIM ? LOAD(K_DTYPE, row, (c * 8 + y) * stride) : 0.0f;
    return vload8(0, t);
}

CPU_INLINE float8 v_chunk(__global const STORAGE(V_DTYPE) * row, long stride, const int c) {
    if (UNIT_DSTRIDE && (c + 1) * 8 <= V_HEAD_DIM) return V_VLOAD8(c, row);
    float t[8];
    CPU_UNROLL
    for (int y = 0; y < 8; ++y) t[y] = c * 8 + y < V_HEAD_DIM ? LOAD(V_DTYPE, row, (c * 8 + y) * stride) : 0.0f;
    return vload8(0, t);
}

#if ROWS == 1

/* ---- Row shape: one query row, vectors along the head dims. ---- */

/* fp8 keys or values where the device keeps denormals: the row shape decodes their chunks to the E4M3 numbers
 * times 2^-120 (cla_fp8x8_lo, three vector operations), since decode of an fp8 cache is bound by this decode. The
 * factor is undone in two halves, so that neither the products nor the scales leave the normal range: q is scaled
 * by 2^60, so q.k comes out times 2^-60 and is multiplied by 2^60 with the key's scale; each weight is multiplied
 * by 2^60 with its value's scale, so the accumulators come out times 2^-60 and are multiplied by 2^60 at the end.
 * That holds while the scaled q and the value scales stay below 2^68 in magnitude. A tile whose rows hold a NaN
 * code (cla_fp8_nan_acc) is decoded with the NaN test (nan_codes). */
#define FP8_LO_K   (K_DTYPE == 5 && CLA_FP32_DENORMS)
#define FP8_LO_V   (V_DTYPE == 5 && CLA_FP32_DENORMS)
#define K_LO_SCALE (FP8_LO_K ? 0x1p60f : 1.0f)
#define V_LO_SCALE (FP8_LO_V ? 0x1p60f : 1.0f)

/* Chunk c of a k or v row as the row shape reads it: k_chunk / v_chunk, or for FP8_LO_K / FP8_LO_V the numbers
 * times 2^-120; nan_codes is a constant once inlined. */
#if FP8_LO_K || FP8_LO_V
CPU_INLINE float8 fp8_lo_chunk(__global const uchar *row, long stride, const int c, const int dim,
                               const bool nan_codes) {
    if (UNIT_DSTRIDE && (c + 1) * 8 <= dim) return cla_fp8x8_lo(cla_vload8_u8(c, row), nan_codes);
    float t[8];
    CPU_UNROLL
    for (int y = 0; y < 8; ++y)
        t[y] = c * 8 + y < dim ? cla_fp8_to_f32(row[(c * 8 + y) * stride]) * 0x1p-120f : 0.0f;
    return vload8(0, t);
}
#endif
#if FP8_LO_K
#define K_CHUNK_ROW(row, stride, c, nan_codes) fp8_lo_chunk((row), (stride), (c), HEAD_DIM, (nan_codes))
#else
#define K_CHUNK_ROW(row, stride, c, nan_codes) k_chunk((row), (stride), (c))
#endif
#if FP8_LO_V
#define V_CHUNK_ROW(row, stride, c, nan_codes) fp8_lo_chunk((row), (stride), (c), V_HEAD_DIM, (nan_codes))
#else
#define V_CHUNK_ROW(row, stride, c, nan_codes) v_chunk((row), (stride), (c))
#endif

/* Pairwise sums of lanes of x and y: lane i takes x where mask is clear, y where set, plus the partner lane that
 * the swizzle brings. Blends and one-input swizzles only: Oclgrind 21.10's uninitialised-value checker crashes on
 * the two-input shuffles that vector concatenation makes, and LLVM fuses these into the same shuffles anyway. */
#define BUTTERFLY(x, y, mask, swap) (select((x), (y), (mask)) + select((y), (x), (mask)).swap)

/* Lane x of the result is the sum of the lanes of a[x]: three rounds of butterflies, across halves, then pairs,
 * then neighbours. */
CPU_INLINE float8 sum_lanes8(const float8 *a) {
    const int8 hi = (int8)(0, 0, 0, 0, -1, -1, -1, -1);
    const int8 odd = (int8)(0, -1, 0, -1, 0, -1, 0, -1);
    const int8 mid = (int8)(0, 0, -1, -1, 0, 0, -1, -1);
    /* h04: four partial sums of a[0] in lanes 0-3, four of a[4] in lanes 4-7; the others likewise. */
    const float8 h04 = BUTTERFLY(a[0], a[4], hi, s45670123), h15 = BUTTERFLY(a[1], a[5], hi, s45670123);
    const float8 h26 = BUTTERFLY(a[2], a[6], hi, s45670123), h37 = BUTTERFLY(a[3], a[7], hi, s45670123);
    /* q0: two partial sums each of a[0] a[1] a[4] a[5], as [0 1 0 1 4 5 4 5]; q1 likewise of 2 3 6 7. */
    const float8 q0 = BUTTERFLY(h04, h15, odd, s10325476), q1 = BUTTERFLY(h26, h37, odd, s10325476);
    return BUTTERFLY(q0, q1, mid, s23016745);
}

/* Rows per score group and keys per row in it: a group's eight dot products (RB rows x KX keys) reduce together in
 * sum_lanes8, so that each chunk of K loaded serves RB rows. */
#define RB (PACK_ROWS >= 8 ? 8 : PACK_ROWS >= 4 ? 4 : PACK_ROWS >= 2 ? 2 : 1)
#define KX (8 / RB)
/* Rows and value chunks per P V register block: RBV x CB accumulators, CB value chunks and a weight. */
#define RBV (PACK_ROWS >= 4 ? 4 : PACK_ROWS >= 2 ? 2 : 1)
#define CB  (12 / RBV)
/* The score (then weight) row of each packed row, whole groups of eight keys. */
#define ST (((BLOCK_N + 7) / 8) * 8)

/* The row shape prefetches (CLA_CPU_PREFETCH) the rows it reads next into the cache behind L1: each tile's V rows
 * while it computes the tile's scores, and the next tile's K rows while it computes P V, each block of value
 * columns a share of every K row. The P V loops read V in blocks of value columns, each block over all the tile's
 * keys, so without it every block but the first stalls on memory where the GQA group's rows share a key head
 * (decode there ran at about half the bytes per second of multi-head decode); and the next tile's first K rows
 * would otherwise wait for the hardware prefetcher to find the stream again. Into L1 it slowed multi-head decode;
 * the rows' lines are CLA_CPU_PREFETCH bytes apart. */
#if CLA_PREFETCH_AS_READ
/* For Oclgrind, which cannot run the prefetch instruction (tests/CMakeLists.txt, oclgrind_cpu_prefetch_*): every
 * line a prefetch would touch is read instead, so that its address is checked. */
#define PREFETCH_LINE(p) ((void)*(volatile __global const char *)(p))
#else
#define PREFETCH_LINE(p) __builtin_prefetch((p), 0, 2)
#endif
#if CLA_CPU_PREFETCH && UNIT_DSTRIDE
#define PREFETCH_ROW(p, bytes)                                                                                     \
    do {                                                                                                           \
        __global const char *at_ = (__global const char *)(p);                                                     \
        CPU_UNROLL                                                                                                 \
        for (int l_ = 0; l_ < (bytes); l_ += CLA_CPU_PREFETCH) PREFETCH_LINE(at_ + l_);                            \
    } while (0)
#else
#define PREFETCH_ROW(p, bytes) ((void)0)
#endif
#define CLA_CPU_LINE (CLA_CPU_PREFETCH > 0 ? CLA_CPU_PREFETCH : 64)
#define K_ROW_BYTES  (HEAD_DIM * (int)sizeof(STORAGE(K_DTYPE)))
#define V_ROW_BYTES  (V_HEAD_DIM * (int)sizeof(STORAGE(V_DTYPE)))

/* accs[r * VC + c0 ...] = accs * alpha[r] + P V over the tile's n keys, for packed rows r0 .. r0 + RBV - 1 (past
 * count: copies of the last row, not written back) and W value chunks from c0; c0, W and careful are constants
 * once inlined (pv_rows unrolls its calls), so that the chunk loads need no run-time test of the head dim and the
 * key loop no test of careful: at run time either costs more than the products themselves. vro: each key's value
 * row (V_ROW, found once per tile); an 8-bit V's scales (vscl, per key) multiply the weights. Careful: skip the
 * weights marked -0.0 (masked keys, whose value may be inf or NaN). Each block prefetches its share of the next
 * tile's kpf_n K rows (k + kro_next). */
CPU_INLINE void pv_block(float8 *accs, const float *pw, const float *alphas, __global const STORAGE(V_DTYPE) * v,
                         const long *vro, long v_col, const float *vscl, int n, int r0, int count, const int c0,
                         const bool careful, const bool nan_codes, const int W, __global const STORAGE(K_DTYPE) * k,
                         const long *kro_next, int kpf_n) {
    float8 acc[RBV][CB];
    const float *wrow[RBV];
    int rows[RBV];
    CPU_UNROLL
    for (int rr = 0; rr < RBV; ++rr) {
        rows[rr] = min(r0 + rr, count - 1);
        wrow[rr] = pw + rows[rr] * ST;
        CPU_UNROLL
        for (int x = 0; x < W; ++x) acc[rr][x] = accs[rows[rr] * VC + c0 + x] * alphas[rows[rr]];
    }
    for (int jj = 0; jj < n; ++jj) {
        __global const STORAGE(V_DTYPE) *vrow = v + vro[jj];
        if (r0 == 0 && jj < kpf_n) {
            /* This block's share of the K row: the bytes of its value columns, within the row (the last block's
             * reach the row's end), so that the next tile's K arrives over the whole of P V rather than in a
             * burst. */
            const int from = c0 * 8 * (int)sizeof(STORAGE(K_DTYPE)) / CLA_CPU_LINE * CLA_CPU_LINE;
            const int to =
                c0 + W >= VC ? K_ROW_BYTES : min(K_ROW_BYTES, (c0 + W) * 8 * (int)sizeof(STORAGE(K_DTYPE)));
            PREFETCH_ROW((__global const char *)(k + kro_next[jj]) + from, to - from);
        }
        float8 vc[CB];
        CPU_UNROLL
        for (int x = 0; x < W; ++x) vc[x] = V_CHUNK_ROW(vrow, v_col, c0 + x, nan_codes);
        CPU_UNROLL
        for (int rr = 0; rr < RBV; ++rr) {
            const float w = wrow[rr][jj];
            const float8 p = (float8)(V_SCALED ? w * vscl[jj] : w);
            if (careful) {
                const int8 skip = (int8)(as_int(w) == NEG_ZERO_BITS ? -1 : 0);
                CPU_UNROLL
                for (int x = 0; x < W; ++x) acc[rr][x] = select(fma(p, vc[x], acc[rr][x]), acc[rr][x], skip);
            } else {
                CPU_UNROLL
                for (int x = 0; x < W; ++x) acc[rr][x] = fma(p, vc[x], acc[rr][x]);
            }
        }
    }
    CPU_UNROLL
    for (int rr = 0; rr < RBV; ++rr) {
        if (r0 + rr >= count) break;
        CPU_UNROLL
        for (int x = 0; x < W; ++x) accs[rows[rr] * VC + c0 + x] = acc[rr][x];
    }
}

/* The scores of a tile's n keys for the work-item's count packed rows, into sc (row r at sc + r * ST): RB rows by
 * KX keys per group, every key of the tile's groups of eight (a key past n repeats the tile's last key, never a
 * key past the tile, which may lie past the key length; the repeats are masked). kro: each key's K row; an 8-bit
 * K's scales (kscl, per key) multiply the scores. nan_codes is a constant once inlined. The first row group
 * prefetches the tile's V rows (v + vro). */
CPU_INLINE void qk_rows(float *sc, const float8 *qv, __global const STORAGE(K_DTYPE) * k, const long *kro,
                        long k_col, const float *kscl, int n, int count, const bool nan_codes,
                        __global const STORAGE(V_DTYPE) * v, const long *vro) {
    const int n8 = (n + 7) / 8 * 8;
    for (int r0 = 0; r0 < count; r0 += RB) {
        int qrows[RB];
        CPU_UNROLL
        for (int rr = 0; rr < RB; ++rr) qrows[rr] = min(r0 + rr, count - 1) * QC;
        for (int kg = 0; kg < n8; kg += KX) {
            float8 a[8];
            __global const STORAGE(K_DTYPE) * krow[KX];
            CPU_UNROLL
            for (int x = 0; x < KX; ++x) krow[x] = k + kro[min(kg + x, n - 1)];
            if (r0 == 0) {
                CPU_UNROLL
                for (int x = 0; x < KX; ++x)
                    if (kg + x < n) PREFETCH_ROW(v + vro[kg + x], V_ROW_BYTES);
            }
            CPU_UNROLL
            for (int x = 0; x < 8; ++x) a[x] = (float8)(0.0f);
            CPU_UNROLL
            for (int c = 0; c < QC; ++c) {
                float8 kc[KX];
                CPU_UNROLL
                for (int x = 0; x < KX; ++x) kc[x] = K_CHUNK_ROW(krow[x], k_col, c, nan_codes);
                CPU_UNROLL
                for (int rr = 0; rr < RB; ++rr) {
                    const float8 qc = qv[qrows[rr] + c];
                    CPU_UNROLL
                    for (int x = 0; x < KX; ++x) a[rr * KX + x] = fma(qc, kc[x], a[rr * KX + x]);
                }
            }
            /* Lane rr * KX + x: row r0 + rr, key kg + x. */
            float t[8];
            vstore8(sum_lanes8(a), 0, t);
            CPU_UNROLL
            for (int rr = 0; rr < RB; ++rr) {
                if (r0 + rr >= count) break;
                CPU_UNROLL
                for (int x = 0; x < KX; ++x)
                    sc[(r0 + rr) * ST + kg + x] =
                        K_SCALED ? (t[rr * KX + x] * K_LO_SCALE) * kscl[min(kg + x, n - 1)] : t[rr * KX + x];
            }
        }
    }
}

/* accs = accs * alpha + P V for RBV rows from r0: every value chunk, CB at a time, then the remaining ones. */
CPU_INLINE void pv_rows(float8 *accs, const float *pw, const float *alphas, __global const STORAGE(V_DTYPE) * v,
                        const long *vro, long v_col, const float *vscl, int n, int r0, int count,
                        const bool careful, const bool nan_codes, __global const STORAGE(K_DTYPE) * k,
                        const long *kro_next, int kpf_n) {
    CPU_UNROLL
    for (int c0 = 0; c0 + CB <= VC; c0 += CB)
        pv_block(accs, pw, alphas, v, vro, v_col, vscl, n, r0, count, c0, careful, nan_codes, CB, k, kro_next,
                 kpf_n);
#if VC % CB
    pv_block(accs, pw, alphas, v, vro, v_col, vscl, n, r0, count, VC - VC % CB, careful, nan_codes, VC % CB, k,
             kro_next, kpf_n);
#endif
}

/* A work-item takes PACK_ROWS rows of one unit: with GQA_PACK the unit is (batch item, key/value head) and its rows
 * are the query rows of every query head sharing that key head (packed row r: query r / group of head
 * hk * group + r % group, as in sdpa_flash.cl); without, the unit is (batch item, query head) and PACK_ROWS is 1.
 * The rows walk the key tiles together and share each load of K and V in registers (RB rows per K chunk, RBV rows
 * per V chunk): decode is memory-bound, and GQA would otherwise read each key head once per query head. Each row
 * keeps its own range, mask row, slope, sink and softmax state; a tile outside a row's range leaves it unchanged.
 */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void sdpa_fused_cpu(SDPA_FUSED_ARGS) {
    const int Hq = dims.x, group = dims.w;
    const int pg = GQA_PACK ? group : 1; /* query heads per unit */
    const int units_per_batch = Hq / pg;
    const int unit = get_global_id(1);
    const int b = unit / units_per_batch, hu = unit % units_per_batch, hk = hu * pg / group;
    /* This batch item's lengths (the packed and paged layouts' own; dims has the largest). */
    const int Lq = cla_seq_q_len(seqs, seq_at, b, dims.y), Lk = cla_seq_k_len(seqs, seq_at, b, dims.z);
    const int first = (int)get_global_id(0) * PACK_ROWS, count = min(PACK_ROWS, Lq * pg - first);
    if (count <= 0) return; /* past a short packed sequence's rows */

    k += offsets.s1 + hk * k_stride.y;
    v += offsets.s2 + hk * v_stride.y;
    const long k_base = cla_seq_kv_base(seqs, seq_at, b, k_stride),
               v_base = cla_seq_kv_base(seqs, seq_at, b, v_stride);
    const long q_base = offsets.s0 + cla_seq_q_base(seqs, seq_at, b, q_stride);
    /* The scales of this key/value head (8-bit K or V), as K_SCALE finds them. */
    const long ks_first = scale_offsets.x + hk * ks_stride.y, vs_first = scale_offsets.y + hk * vs_stride.y;
    const long ks_base = cla_seq_kv_base(seqs, seq_at, b, ks_stride),
               vs_base = cla_seq_kv_base(seqs, seq_at, b, vs_stride);

    const int kv_limit = cla_kv_limit(key_lengths, offsets.s5, b, Lk);
    const int2 shift = cla_shifts(Lq, Lk);
#if SPLIT_KV
    const int split = get_global_id(2);
#endif

    /* Per row: q scaled into log2 units (zeros past the head dim), the output accumulators, the running max and
     * eight partial sums, the keys it may see [lo, hi); the keys some row sees in this split, [union_lo, union_hi).
     */
    float8 qv[PACK_ROWS * QC];
    float8 accs[PACK_ROWS * VC];
    float ms[PACK_ROWS], alphas[PACK_ROWS];
    float8 l8s[PACK_ROWS];
    int los[PACK_ROWS], his[PACK_ROWS];
    long mask_rows[PACK_ROWS];
    long bm_rows[PACK_ROWS];
    float slopes2[PACK_ROWS];
    float sc[PACK_ROWS * ST];
    int union_lo = Lk, union_hi = 0;
    for (int r = 0; r < count; ++r) {
        const int i = (first + r) / pg, h = hu * pg + (first + r) % pg;
        __global const STORAGE(Q_DTYPE) *qrow = q + q_base + h * q_stride.y + i * q_stride.z;
        float t[QC * 8];
        for (int d = 0; d < QC * 8; ++d)
            t[d] = d < HEAD_DIM ? LOAD(Q_DTYPE, qrow, d * DSTRIDE(q_stride)) * (scale_log2 * K_LO_SCALE) : 0.0f;
        CPU_UNROLL
        for (int c = 0; c < QC; ++c) qv[r * QC + c] = vload8(c, t);
        CPU_UNROLL
        for (int c = 0; c < VC; ++c) accs[r * VC + c] = (float8)(0.0f);
        ms[r] = CLA_NEG_INF;
        l8s[r] = (float8)(0.0f);
        los[r] = cla_key_lo(i, shift, window);
        his[r] = cla_key_hi(i, shift, window, kv_limit);
        int rlo = los[r], rhi = his[r];
#if SPLIT_KV
        rlo = max(rlo, split * split_len);
        rhi = min(rhi, (split + 1) * split_len);
#endif
        mask_rows[r] = offsets.s4 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z;
        bm_rows[r] = cla_block_row(offsets.s7, bm_stride, bm_dims, b, h, i);
        slopes2[r] = cla_alibi_slope2(alibi, mods, h);
        if (rlo < rhi) {
            union_lo = min(union_lo, rlo);
            union_hi = max(union_hi, rhi);
        }
    }
    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);

    /* Tiles on the grid of BLOCK_N keys from 0 (split_len is a multiple of BLOCK_N, so no tile crosses a split). */
    const int tile_start = union_lo > 0 ? (union_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < union_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, union_hi - j0), n8 = (n + 7) / 8 * 8;
        /* The block mask's state over every row's query and head (their union: a superset, so SKIP is exact). */
        const int bt = cla_block_tile(block_mask, offsets.s7, bm_stride, bm_dims, b, hu * pg, hu * pg + pg - 1,
                                      first / pg, (first + count - 1) / pg, j0, j0 + n - 1);
        if (bt == CLA_TILE_SKIP) continue;
        /* Each key's K and V rows and scales, found once per tile for the row groups and value blocks that all
         * read them: a run of keys at a time, within which rows follow each other, so that a paged cache costs one
         * block-table entry per page rather than per key (decode of 8-bit caches reads little else per key). */
        long kro[BLOCK_N], vro[BLOCK_N];
        float kscl[BLOCK_N], vscl[BLOCK_N];
        uchar16 nan_k = (uchar16)(0), nan_v = (uchar16)(0); /* the tile's fp8 K (V) rows for FP8_LO_K (V) */
        for (int jj = 0; jj < n;) {
            const int j = j0 + jj, run = KEY_RUN(j, n - jj);
            const long k0 = K_ROW(j), v0 = V_ROW(j);
            const long ks0 = ks_first + cla_seq_kv_row(seqs, seq_at, b, ks_base, j, ks_stride);
            const long vs0 = vs_first + cla_seq_kv_row(seqs, seq_at, b, vs_base, j, vs_stride);
            for (int t = 0; t < run; ++t, ++jj) {
                kro[jj] = k0 + t * k_stride.z;
                vro[jj] = v0 + t * v_stride.z;
#if K_SCALED
                kscl[jj] = LOAD(KS_DTYPE, k_scale, ks0 + t * ks_stride.z);
#endif
#if V_SCALED
                vscl[jj] = LOAD(VS_DTYPE, v_scale, vs0 + t * vs_stride.z) * V_LO_SCALE;
#endif
#if FP8_LO_K
                nan_k = cla_fp8_nan_acc(nan_k, k + kro[jj], HEAD_DIM, DSTRIDE(k_stride));
#endif
#if FP8_LO_V
                nan_v = cla_fp8_nan_acc(nan_v, v + vro[jj], V_HEAD_DIM, DSTRIDE(v_stride));
#endif
            }
        }

        /* Scores of RB rows by KX keys per group; nan_codes made a constant for each copy of the loop. */
        if (FP8_LO_K && cla_fp8_nan_found(nan_k))
            qk_rows(sc, qv, k, kro, DSTRIDE(k_stride), kscl, n, count, true, v, vro);
        else
            qk_rows(sc, qv, k, kro, DSTRIDE(k_stride), kscl, n, count, false, v, vro);

        /* Per row: the score modifiers, the masks on an edge tile, then the online softmax (one running max, eight
         * partial sums), leaving the weights in sc with masked keys marked -0.0. */
        bool careful = false;
        for (int r = 0; r < count; ++r) {
            const int lo = los[r], hi = his[r];
            const bool inner = !CLA_TILE_PER_KEY(bt) && j0 >= lo && j0 + n <= hi;
            careful |= !inner;
            float *srow = sc + r * ST;
            float8 tile_max = (float8)(CLA_NEG_INF);
            for (int g = 0; g < n8 / 8; ++g) {
                float8 x8 = vload8(g, srow);
                const int8 j = (int8)(j0 + g * 8) + lane;
#if HAS_SCORE_MODS
                x8 = cla_score_mod8(x8, (int8)((first + r) / pg + shift.y), j, softcap2, slopes2[r]);
#endif
#if HAS_USER_MODS || HAS_BLOCK_MASK
                /* The row's query and head; the repeats past n lie outside [lo, hi) once clamped to the tile (their
                 * flags are read at the tile's last key, which exists). */
                const int8 fl =
                    cla_block_flags8_keys(block_mask, bm_rows[r], bm_stride, bm_dims, bt, j0 + g * 8, j0 + n - 1);
                x8 = cla_user_mods8(x8, b, hu * pg + (first + r) % pg, (int8)((first + r) / pg), j, (int8)(lo),
                                    (int8)(min(hi, j0 + n)), fl, mod_buf0, mod_buf1);
#endif
                if (!inner) {
#if MASK_KIND != 0
                    float mv[8];
                    CPU_UNROLL
                    for (int y = 0; y < 8; ++y) {
                        const long at = mask_rows[r] + min(j0 + g * 8 + y, j0 + n - 1) * mask_stride.w;
                        mv[y] = mask_value(mask, at);
                    }
                    x8 = apply_mask8(x8, vload8(0, mv));
#endif
                    x8 = select(x8, (float8)(CLA_NEG_INF), (j < (int8)(lo)) | (j >= (int8)(hi)));
                }
                x8 = select(x8, (float8)(CLA_NEG_INF), j >= (int8)(j0 + n)); /* the repeats */
                vstore8(x8, g, srow);
                tile_max = vmax(tile_max, x8);
            }
            const float4 t4 = select(tile_max.lo, tile_max.hi, tile_max.hi > tile_max.lo);
            const float2 t2 = select(t4.lo, t4.hi, t4.hi > t4.lo);
            const float m = ms[r], m_new = smax(m, smax(t2.x, t2.y));
            /* A row that has seen only masked keys keeps m = -inf; exponents relative to 0 then give it zero
             * weights instead of the NaN of -inf - -inf. */
            const float m_ref = m_new == CLA_NEG_INF ? 0.0f : m_new;
            const float alpha = cla_exp2_nonpos8((float8)(m - m_ref)).s0;
            float8 sum = (float8)(0.0f);
            for (int g = 0; g < n8 / 8; ++g) {
                const float8 x8 = vload8(g, srow);
                const float8 p8 = cla_exp2_nonpos8(x8 - m_ref);
                sum += p8;
                vstore8(select(p8, (float8)(-0.0f), x8 == (float8)(CLA_NEG_INF)), g, srow);
            }
            l8s[r] = fma(l8s[r], (float8)(alpha), sum);
            ms[r] = m_new;
            alphas[r] = alpha;
        }

        /* accs = accs * alpha + P V, RBV rows at a time; careful and nan_codes made constants for each copy of the
         * loop. */
        const bool v_nan_codes = FP8_LO_V && cla_fp8_nan_found(nan_v);
        /* The next tile's K rows, for P V to prefetch. */
        long kro_next[BLOCK_N];
        int kpf_n = 0;
#if CLA_CPU_PREFETCH && UNIT_DSTRIDE
        kpf_n = min(BLOCK_N, union_hi - (j0 + n));
        for (int jj = 0; jj < kpf_n;) {
            const int j = j0 + n + jj, run = KEY_RUN(j, kpf_n - jj);
            const long k0 = K_ROW(j);
            for (int t = 0; t < run; ++t, ++jj) kro_next[jj] = k0 + t * k_stride.z;
        }
#endif
        for (int r0 = 0; r0 < count; r0 += RBV) {
            if (careful && v_nan_codes)
                pv_rows(accs, sc, alphas, v, vro, DSTRIDE(v_stride), vscl, n, r0, count, true, true, k, kro_next,
                        kpf_n);
            else if (careful)
                pv_rows(accs, sc, alphas, v, vro, DSTRIDE(v_stride), vscl, n, r0, count, true, false, k, kro_next,
                        kpf_n);
            else if (v_nan_codes)
                pv_rows(accs, sc, alphas, v, vro, DSTRIDE(v_stride), vscl, n, r0, count, false, true, k, kro_next,
                        kpf_n);
            else
                pv_rows(accs, sc, alphas, v, vro, DSTRIDE(v_stride), vscl, n, r0, count, false, false, k, kro_next,
                        kpf_n);
        }
    }

    for (int r = 0; r < count; ++r) {
        const int i = (first + r) / pg, h = hu * pg + (first + r) % pg;
        float out[VC * 8];
        CPU_UNROLL
        for (int c = 0; c < VC; ++c) vstore8(accs[r * VC + c] * V_LO_SCALE, c, out);
        const float4 l4 = l8s[r].lo + l8s[r].hi;
        const float l = (l4.x + l4.z) + (l4.y + l4.w);
        write_row(o, o_stride, offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride), lse, lse_stride,
                  offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride), partial, h, b * Hq + h, i, dims.y,
                  ms[r], l, out, 1, cla_sink2(sinks, mods, h));
    }
}

#else

/* ---- Block shape: ROWS query rows, transposed, eight to a vector. ---- */

#define RV                   (ROWS / 8)
/* Whether the block shape's pass over a tile's scores (modifiers, flags, masks) also takes the tile's max. */
#define CPU_PASS_MAX         (HAS_USER_MODS || HAS_BLOCK_MASK)
/* A score_mod alone (no mask_mod, no block mask) runs on an inner tile's scores while they are in registers, as the
 * built-in modifiers do; such a tile then needs no pass of its own. */
#define CPU_SCORE_FN_IN_REGS (HAS_SCORE_FN && !HAS_MASK_FN && !HAS_BLOCK_MASK)
/* Keys (KB) and value columns (DB) per register block: RV x KB and RV x DB accumulators, plus RV vectors of q or p
 * and a broadcast, in 16 registers. */
#ifndef KB
#define KB (RV == 1 ? 8 : RV == 2 ? 4 : RV == 3 ? 3 : RV == 4 ? 2 : 1)
#endif
#ifndef DB
#define DB KB
#endif
/* Keys per score block, at most a tile; the score tile has room for the last block's repeats. */
#define QK_KEYS    (KB < BLOCK_N ? KB : BLOCK_N)
#define ST_KEYS    ((BLOCK_N + QK_KEYS - 1) / QK_KEYS * QK_KEYS)

/* K and V tiles in fp32 are read in place; other storage types, 8-bit ones with their scales, and paged caches
 * (whose tiles may span pages) are first converted, a tile at a time, into a private fp32 tile (rows of TILE_W
 * floats, K then V in the same space), so the inner loops load plain floats. */
#define TILE_W     (QC > VC ? QC * 8 : VC * 8)
#define K_IN_PLACE (K_DTYPE == 0 && KV_LAYOUT != 2)
#define V_IN_PLACE (V_DTYPE == 0 && KV_LAYOUT != 2)
#if K_IN_PLACE
#define K_TILE_PTR __global const float *
#else
#define K_TILE_PTR const float *
#endif
#if V_IN_PLACE
#define V_TILE_PTR __global const float *
#else
#define V_TILE_PTR const float *
#endif

/* O^T[c0 .. c0 + W) = O^T * alpha + P^T V over the tile's n keys (vt points at its first value row), with the
 * W x RV accumulators in registers; W is a constant once inlined. Careful: skip the weights marked -0.0. */
CPU_INLINE void pv_columns(float *ot, const float *st, V_TILE_PTR vt, long row_stride, long col_stride, int n,
                           int c0, const float8 *alpha, bool careful, const int W) {
    float8 acc[DB][RV];
    CPU_UNROLL
    for (int x = 0; x < W; ++x) {
        CPU_UNROLL
        for (int rv = 0; rv < RV; ++rv) acc[x][rv] = vload8((c0 + x) * RV + rv, ot) * alpha[rv];
    }
    if (!careful) {
        for (int jj = 0; jj < n; ++jj) {
            V_TILE_PTR vrow = vt + jj * row_stride + c0 * col_stride;
            float8 p[RV];
            CPU_UNROLL
            for (int rv = 0; rv < RV; ++rv) p[rv] = vload8(jj * RV + rv, st);
            CPU_UNROLL
            for (int x = 0; x < W; ++x) {
                const float8 vc = (float8)(vrow[x * col_stride]);
                CPU_UNROLL
                for (int rv = 0; rv < RV; ++rv) acc[x][rv] = fma(p[rv], vc, acc[x][rv]);
            }
        }
    } else {
        for (int jj = 0; jj < n; ++jj) {
            V_TILE_PTR vrow = vt + jj * row_stride + c0 * col_stride;
            CPU_UNROLL
            for (int rv = 0; rv < RV; ++rv) {
                const float8 p = vload8(jj * RV + rv, st);
                const int8 skip = as_int8(p) == (int8)(NEG_ZERO_BITS);
                CPU_UNROLL
                for (int x = 0; x < W; ++x) {
                    const float8 vc = (float8)(vrow[x * col_stride]);
                    acc[x][rv] = select(fma(p, vc, acc[x][rv]), acc[x][rv], skip);
                }
            }
        }
    }
    CPU_UNROLL
    for (int x = 0; x < W; ++x) {
        CPU_UNROLL
        for (int rv = 0; rv < RV; ++rv) vstore8(acc[x][rv], (c0 + x) * RV + rv, ot);
    }
}

/* Packed queries: the work-group's (batch item, head, row block) is the next entry of the host's work list
 * (sdpa_seqs.c), taken from a counter, whichever group the driver runs. The list orders the work by falling cost:
 * batch items by key count, each item's heads in turn, each head's row blocks from the last (the costliest under a
 * causal mask). A CPU driver hands its threads runs of consecutive group indices, the first ones large (PoCL: up to
 * 256 times its thread count), so with the list indexed by group id one thread's first run took most of the longest
 * sequence's work and the others idled at the end. Through the counter every thread takes the next entry as it
 * finishes one: the costliest work first and the cheapest at the end, and consecutive entries read the same head's
 * keys and values from cache. One counter per key split (grid dimension 2). */
#if VARLEN_Q
CLA_INLINE int3 block_work(__global const int *seqs, int4 seq_at) {
    __global const int *counters = seqs + cla_seq_work_at(seq_at);
    __global const int *starts = counters + get_global_size(2), *order = starts + (seq_at.y - seq_at.x);
    /* The buffer is the host's read-write copy; the kernels' argument is const for every other reader. */
    const int g = atomic_inc((volatile __global int *)(counters + get_global_id(2)));
    int lo = 0, hi = seq_at.y - seq_at.x - 1; /* starts[lo] <= g < starts[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (starts[mid] <= g)
            lo = mid;
        else
            hi = mid;
    }
    const int b = order[lo], w = g - starts[lo];
    const int blocks = (cla_seq_q_len(seqs, seq_at, b, 0) + ROWS - 1) / ROWS;
    return (int3)(b, w / blocks, blocks - 1 - w % blocks);
}
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void sdpa_fused_cpu(SDPA_FUSED_ARGS) {
    const int Hq = dims.x, group = dims.w;
#if VARLEN_Q
    const int3 work = block_work(seqs, seq_at);
    const int b = work.x, h = work.y, bh = b * Hq + h, first_row = work.z * ROWS;
#else
    const int bh = get_global_id(1);
    const int b = bh / Hq, h = bh % Hq, first_row = (int)get_global_id(0) * ROWS;
#endif
    const int hk = h / group;
    /* This batch item's lengths (the packed and paged layouts' own; dims has the largest). */
    const int Lq = cla_seq_q_len(seqs, seq_at, b, dims.y), Lk = cla_seq_k_len(seqs, seq_at, b, dims.z);
    const int last_row = min(first_row + ROWS, Lq) - 1;

    q += offsets.s0 + cla_seq_q_base(seqs, seq_at, b, q_stride) + h * q_stride.y;
    k += offsets.s1 + hk * k_stride.y;
    v += offsets.s2 + hk * v_stride.y;
    const long k_base = cla_seq_kv_base(seqs, seq_at, b, k_stride),
               v_base = cla_seq_kv_base(seqs, seq_at, b, v_stride);

    const int kv_limit = cla_kv_limit(key_lengths, offsets.s5, b, Lk);
    const int2 shift = cla_shifts(Lq, Lk);

    /* Keys some row of the block sees, [range_lo, range_hi), and keys every row sees, [inner_lo, inner_hi): both
     * bounds grow with the row. */
    int range_lo = cla_key_lo(first_row, shift, window);
    int range_hi = cla_key_hi(last_row, shift, window, kv_limit);
    const int inner_lo = cla_key_lo(last_row, shift, window);
    const int inner_hi = cla_key_hi(first_row, shift, window, kv_limit);
#if SPLIT_KV
    const int split = get_global_id(2);
    range_lo = max(range_lo, split * split_len);
    range_hi = min(range_hi, (split + 1) * split_len);
#endif

    /* Q^T scaled into log2 units, O^T, and the tile's scores then weights, all [.][ROWS] so that vload8 of
     * (index * RV + rv) reads rows rv*8 .. rv*8+7. Rows past the end compute a copy of the last row, unwritten. */
    float qt[HEAD_DIM * ROWS];
    float ot[V_HEAD_DIM * ROWS];
    float st[ST_KEYS * ROWS];
#if !K_IN_PLACE || !V_IN_PLACE
    float tile[BLOCK_N * TILE_W];
#endif
    int lo_rows[ROWS], hi_rows[ROWS], pos_rows[ROWS];
    long mask_row[ROWS];
    long bm_rows[ROWS];
    const float slope2 = cla_alibi_slope2(alibi, mods, h);
    for (int r = 0; r < ROWS; ++r) {
        const int i = min(first_row + r, Lq - 1);
        bm_rows[r] = cla_block_row(offsets.s7, bm_stride, bm_dims, b, h, i);
        for (int d = 0; d < HEAD_DIM; ++d)
            qt[d * ROWS + r] = LOAD(Q_DTYPE, q, i * q_stride.z + d * DSTRIDE(q_stride)) * scale_log2;
        lo_rows[r] = cla_key_lo(i, shift, window);
        hi_rows[r] = cla_key_hi(i, shift, window, kv_limit);
        pos_rows[r] = i + shift.y;
        mask_row[r] = offsets.s4 + b * mask_stride.x + h * mask_stride.y + i * mask_stride.z;
    }
    for (int x = 0; x < V_HEAD_DIM * ROWS; ++x) ot[x] = 0.0f;
    float8 m[RV], l[RV];
    CPU_UNROLL
    for (int rv = 0; rv < RV; ++rv) {
        m[rv] = (float8)(CLA_NEG_INF);
        l[rv] = (float8)(0.0f);
    }

    const int tile_start = range_lo > 0 ? (range_lo / BLOCK_N) * BLOCK_N : 0;
    for (int j0 = tile_start; j0 < range_hi; j0 += BLOCK_N) {
        const int n = min(BLOCK_N, range_hi - j0);
        /* A tile whose every (row, key) lies in blocks the block mask excludes costs nothing. */
        const int bt = cla_block_tile(block_mask, offsets.s7, bm_stride, bm_dims, b, h, h, first_row, last_row, j0,
                                      j0 + n - 1);
        if (bt == CLA_TILE_SKIP) continue;
        /* The caller's mods and the block flags may mask keys anywhere (mask_mod, a score_mod that gives -inf, a 0
         * block), but they need no range test on an inner tile: such a tile marks its weights only where a key was
         * masked. A tile wholly in full blocks needs no flags, and no mods unless the caller gave some. */
        const bool inner = MASK_KIND == 0 && j0 >= inner_lo && j0 + n <= inner_hi;
        /* Chosen by the preprocessor: a logical operator on these constants makes clang warn in every build. */
#if CPU_SCORE_FN_IN_REGS
        const bool keyed = !inner;
#elif HAS_USER_MODS
        const bool keyed = true;
#elif HAS_BLOCK_MASK
        const bool keyed = bt != CLA_TILE_FULL;
#else
        const bool keyed = false;
#endif
        bool marked = !inner; /* some weight of the tile is marked -0.0 */

        /* Scores, QK_KEYS keys at a time; a short last block repeats the tile's last key (never a key past n, which
         * may lie past the key length), and the repeats are never read. */
#if K_IN_PLACE
        K_TILE_PTR kt = k + K_ROW(j0);
        const long k_row = k_stride.z, k_col = DSTRIDE(k_stride);
#else
        for (int jj = 0; jj < n; ++jj) {
            __global const STORAGE(K_DTYPE) *krow = k + K_ROW(j0 + jj);
            const float scale = K_SCALE(j0 + jj);
            CPU_UNROLL
            for (int c = 0; c < QC; ++c) {
                const float8 x = k_chunk(krow, DSTRIDE(k_stride), c);
                vstore8(K_SCALED ? x * scale : x, jj * (TILE_W / 8) + c, tile);
            }
        }
        K_TILE_PTR kt = tile;
        const long k_row = TILE_W, k_col = 1;
#endif
#if CPU_SCORE_FN_IN_REGS
        int8 fn_neg[RV]; /* lanes the score_mod set to -inf on an inner tile */
        CPU_UNROLL
        for (int rv = 0; rv < RV; ++rv) fn_neg[rv] = (int8)(0);
#endif
        for (int jb = 0; jb < BLOCK_N; jb += QK_KEYS) {
            if (jb >= n) break;
            K_TILE_PTR krow[QK_KEYS];
            float8 acc[QK_KEYS][RV];
            CPU_UNROLL
            for (int x = 0; x < QK_KEYS; ++x) {
                krow[x] = kt + min(jb + x, n - 1) * k_row;
                CPU_UNROLL
                for (int rv = 0; rv < RV; ++rv) acc[x][rv] = (float8)(0.0f);
            }
            for (int d = 0; d < HEAD_DIM; ++d) {
                float8 qv[RV];
                CPU_UNROLL
                for (int rv = 0; rv < RV; ++rv) qv[rv] = vload8(d * RV + rv, qt);
                CPU_UNROLL
                for (int x = 0; x < QK_KEYS; ++x) {
                    const float8 kd = (float8)(krow[x][d * k_col]);
                    CPU_UNROLL
                    for (int rv = 0; rv < RV; ++rv) acc[x][rv] = fma(qv[rv], kd, acc[x][rv]);
                }
            }
            /* The built-in modifiers (and on inner tiles a score_mod alone) act while the scores are still in
             * registers, so that they cost no pass of their own over the tile (they come before every mask, which
             * the pass below applies). A repeated last key is given the index of the key it repeats. */
            CPU_UNROLL
            for (int x = 0; x < QK_KEYS; ++x) {
                CPU_UNROLL
                for (int rv = 0; rv < RV; ++rv) {
                    const int j = j0 + min(jb + x, n - 1);
#if HAS_SCORE_MODS
                    acc[x][rv] = cla_score_mod8(acc[x][rv], vload8(rv, pos_rows), (int8)(j), softcap2, slope2);
#endif
#if CPU_SCORE_FN_IN_REGS
                    if (inner) {
                        acc[x][rv] = cla_user_mods8_known(acc[x][rv], b, h, vload8(rv, pos_rows) - (int8)(shift.y),
                                                          (int8)(j), (int8)(0), (int8)(0), (int8)(1), true,
                                                          mod_buf0, mod_buf1);
                        fn_neg[rv] |= acc[x][rv] == (float8)(CLA_NEG_INF);
                    }
#endif
                    vstore8(acc[x][rv], (jb + x) * RV + rv, st);
                }
            }
        }

        /* Online softmax, elementwise over the rows. */
        float8 alpha[RV];
        for (int rv = 0; rv < RV; ++rv) {
            /* The caller's mods and block flags, then (on an edge tile) the masks; an inner tile without them skips
             * the pass, and the pass takes the tile's max where it runs. */
            float8 tile_max = (float8)(CLA_NEG_INF);
#if CPU_SCORE_FN_IN_REGS
            bool mark = !inner || any(fn_neg[rv]);
#else
            bool mark = !inner;
#endif
            const bool pass = !inner || keyed;
            if (pass) {
                const int8 lo8 = vload8(rv, lo_rows), hi8 = vload8(rv, hi_rows);
                const int8 pos8 = vload8(rv, pos_rows);
                /* The keys every one of the eight rows takes, [lo_all, hi_all): there the caller's code runs
                 * without per-lane range tests. */
                int lo_all = lo_rows[rv * 8], hi_all = hi_rows[rv * 8];
                for (int y = 1; y < 8; ++y) {
                    lo_all = max(lo_all, lo_rows[rv * 8 + y]);
                    hi_all = min(hi_all, hi_rows[rv * 8 + y]);
                }
                int8 neg = (int8)(0); /* lanes that the caller's mods set to -inf on an inner tile */
                for (int jj = 0; jj < n; ++jj) {
                    const int j = j0 + jj;
                    float8 x = vload8(jj * RV + rv, st);
#if HAS_USER_MODS || HAS_BLOCK_MASK
                    if (keyed) {
                        const int8 fl =
                            cla_block_flags8_rows(block_mask, bm_rows + rv * 8, bm_stride, bm_dims, bt, j);
                        x = cla_user_mods8_known(x, b, h, pos8 - (int8)(shift.y), (int8)(j), lo8, hi8, fl,
                                                 j >= lo_all && j < hi_all, mod_buf0, mod_buf1);
                        if (inner) neg |= x == (float8)(CLA_NEG_INF);
                    }
#endif
                    if (CPU_PASS_MAX) {
                        if (inner) {
                            vstore8(x, jj * RV + rv, st);
                            tile_max = vmax(tile_max, x);
                            continue;
                        }
                    }
#if MASK_KIND != 0
                    float mv[8];
                    CPU_UNROLL
                    for (int y = 0; y < 8; ++y) {
                        const long at = mask_row[rv * 8 + y] + j * mask_stride.w;
                        mv[y] = mask_value(mask, at);
                    }
                    const float8 m8 = vload8(0, mv);
                    x = apply_mask8(x, m8);
#endif
                    const int8 jv = (int8)(j);
                    x = select(x, (float8)(CLA_NEG_INF), (jv < lo8) | (jv >= hi8));
                    vstore8(x, jj * RV + rv, st);
#if CPU_PASS_MAX
                    tile_max = vmax(tile_max, x);
#endif
                }
                mark |= any(neg);
            }
            if (!CPU_PASS_MAX || !pass)
                for (int jj = 0; jj < n; ++jj) tile_max = vmax(tile_max, vload8(jj * RV + rv, st));
            const float8 m_new = vmax(m[rv], tile_max);
            /* A row that has seen only masked keys keeps m = -inf; exponents relative to 0 then give it zero
             * weights instead of the NaN of -inf - -inf. */
            const float8 m_ref = select(m_new, (float8)(0.0f), m_new == (float8)(CLA_NEG_INF));
            alpha[rv] = cla_exp2_nonpos8(m[rv] - m_ref);
            float8 sum = (float8)(0.0f);
            if (!mark) {
                for (int jj = 0; jj < n; ++jj) {
                    const float8 p = cla_exp2_nonpos8(vload8(jj * RV + rv, st) - m_ref);
                    sum += p;
                    vstore8(p, jj * RV + rv, st);
                }
            } else {
                for (int jj = 0; jj < n; ++jj) {
                    const float8 x = vload8(jj * RV + rv, st);
                    const float8 p = cla_exp2_nonpos8(x - m_ref);
                    sum += p;
                    vstore8(select(p, (float8)(-0.0f), x == (float8)(CLA_NEG_INF)), jj * RV + rv, st);
                }
            }
            l[rv] = fma(l[rv], alpha[rv], sum);
            m[rv] = m_new;
            marked |= mark;
        }

#if V_IN_PLACE
        V_TILE_PTR vt = v + V_ROW(j0);
        const long v_row = v_stride.z, v_col = DSTRIDE(v_stride);
#else
        for (int jj = 0; jj < n; ++jj) {
            __global const STORAGE(V_DTYPE) *vrow = v + V_ROW(j0 + jj);
            const float scale = V_SCALE(j0 + jj);
            CPU_UNROLL
            for (int c = 0; c < VC; ++c) {
                const float8 x = v_chunk(vrow, DSTRIDE(v_stride), c);
                vstore8(V_SCALED ? x * scale : x, jj * (TILE_W / 8) + c, tile);
            }
        }
        V_TILE_PTR vt = tile;
        const long v_row = TILE_W, v_col = 1;
#endif

        /* A tile with marked weights whose values hold an inf or NaN must skip those weights rather than multiply
         * them. */
        bool careful = false;
        if (marked)
            for (int jj = 0; jj < n; ++jj)
                for (int d = 0; d < V_HEAD_DIM; ++d) careful |= !isfinite(vt[jj * v_row + d * v_col]);

        /* O^T = O^T * alpha + P^T V, DB value columns at a time, then the remaining columns. */
        for (int c0 = 0; c0 + DB <= V_HEAD_DIM; c0 += DB)
            pv_columns(ot, st, vt, v_row, v_col, n, c0, alpha, careful, DB);
#if V_HEAD_DIM % DB
        pv_columns(ot, st, vt, v_row, v_col, n, V_HEAD_DIM - V_HEAD_DIM % DB, alpha, careful, V_HEAD_DIM % DB);
#endif
    }

    float m_rows[ROWS], l_rows[ROWS];
    CPU_UNROLL
    for (int rv = 0; rv < RV; ++rv) {
        vstore8(m[rv], rv, m_rows);
        vstore8(l[rv], rv, l_rows);
    }
    for (int r = 0; r < ROWS; ++r) {
        const int i = first_row + r;
        if (i >= Lq) break;
        write_row(o, o_stride, offsets.s3 + cla_seq_q_base(seqs, seq_at, b, o_stride), lse, lse_stride,
                  offsets.s6 + cla_seq_q_base(seqs, seq_at, b, lse_stride), partial, h, bh, i, dims.y, m_rows[r],
                  l_rows[r], ot + r, ROWS, cla_sink2(sinks, mods, h));
    }
}

#endif
