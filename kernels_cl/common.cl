// SPDX-License-Identifier: Apache-2.0
/* Shared prelude of every clattn program: storage types and the loads and stores that convert them to and from
 * fp32. All arithmetic happens in fp32 whatever the storage type. Each tensor's storage type is a define
 * (Q_DTYPE, K_DTYPE, V_DTYPE, O_DTYPE, MASK_DTYPE, W_DTYPE) with the codes of clattn_dtype:
 * 0 = fp32, 1 = fp16 (vload_half/vstore_half are core OpenCL, no cl_khr_fp16 needed), 2 = bf16 (bit shifts),
 * 3 = bool (one byte, masks only), 4 = int8 and 5 = fp8 E4M3 (keys and values only, read as the stored number; the
 * attention kernels multiply in the scales). */

/* Helpers are inlined for real: register blocks stay in registers only when their loops unroll completely, which
 * takes inlining, and PoCL defines plain `inline` away. */
#ifdef __clang__
#define CLA_INLINE static __attribute__((always_inline)) inline
#else
#define CLA_INLINE static inline
#endif

#define CLA_CAT_(a, b) a##b
#define CLA_CAT(a, b)  CLA_CAT_(a, b)

/* Round to nearest even, keeping NaN a quiet NaN. */
inline ushort cla_f32_to_bf16(float x) {
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

#define CLA_STORAGE_0 float
#define CLA_STORAGE_1 half
#define CLA_STORAGE_2 ushort
#define CLA_STORAGE_3 uchar
#define CLA_STORAGE_4 char
#define CLA_STORAGE_5 uchar

/* OCP fp8 E4M3 to float, no table and no denormal floats: a normal code's exponent and mantissa bits land in a
 * binary32's with the bias moved from 7 to 127; a subnormal one is m 2^-9; 0x7f (and 0xff) is NaN. */
CLA_INLINE float cla_fp8_to_f32(uchar x) {
    const uint u = x, mag = u & 127u;
    float f = (mag >> 3) ? as_float((mag << 20) + (120u << 23)) : (float)(u & 7u) * 0x1p-9f;
    f = mag == 127u ? NAN : f;
    return (u & 128u) ? -f : f;
}

/* The same on eight lanes. Where the device keeps fp32 denormals (CLA_FP32_DENORMS, which the host sets for a
 * device that reports CL_FP_DENORM) it is cla_fp8x8_lo's decode and a multiply by 2^120, with no per-lane select.
 * Elsewhere the selects pick the normal, subnormal and NaN codes' values. */
#ifndef CLA_FP32_DENORMS
#define CLA_FP32_DENORMS 0
#endif
#if CLA_FP32_DENORMS
/* The E4M3 numbers of x times 2^-120, where fp32 denormals are kept: the code sign-extended to 32 bits and shifted
 * left by 20 has its sign in bit 31 and its magnitude bits in 20..26, which read as a binary32 are the number times
 * 2^-120 for normal and subnormal codes alike (exponent field e, or for e = 0 the denormal m 2^-129). With
 * nan_codes, the NaN codes' all-ones compare mask ORed into the bits makes them NaN; without, the caller knows
 * there are none (cla_fp8_nan_acc), and the decode is three vector operations: the CPU kernel's decode runs this
 * for every element, so its cost is the decode's speed. nan_codes is a constant once inlined. */
CLA_INLINE float8 cla_fp8x8_lo(uchar8 x, const bool nan_codes) {
    const int8 s = convert_int8(as_char8(x));
    const float8 f = as_float8((as_uint8(s) << 20) & (uint8)(0x87F00000u));
    return nan_codes ? as_float8(as_int8(f) | ((s & 127) == 127)) : f;
}
#endif
CLA_INLINE float8 cla_fp8x8_to_f32(uchar8 x) {
#if CLA_FP32_DENORMS
    return cla_fp8x8_lo(x, true) * 0x1p120f;
#else
    const uint8 u = convert_uint8(x), mag = u & 127u;
    const float8 normal = as_float8((mag << 20) + (uint8)(120u << 23));
    const float8 sub = convert_float8(u & 7u) * 0x1p-9f;
    float8 f = select(normal, sub, as_int8((mag >> 3) == 0u));
    f = select(f, (float8)(NAN), as_int8(mag == 127u));
    return select(f, -f, as_int8((u & 128u) != 0u));
#endif
}

/* Bytes 8c .. 8c + 7 from p as one unaligned 64-bit load. PoCL's vload8 of uchar is four two-byte loads and
 * shuffles, which LLVM merges only where the offsets are constants (a completely unrolled loop); the fp8 decode's
 * loop is not, and the eight loads per chunk cost more than its conversion. */
typedef struct __attribute__((packed)) {
    ulong bits;
} cla_u8x8_unaligned;
CLA_INLINE uchar8 cla_vload8_u8(long c, __global const uchar *p) {
    return as_uchar8(((__global const cla_u8x8_unaligned *)(p + c * 8))->bits);
}

/* NaN codes among fp8 rows, checked a tile at a time: acc gathers the maximum of every code with its sign bit set,
 * which is 0xff exactly where a code is a NaN (0x7f, 0xff); cla_fp8_nan_found reads it once per tile. A
 * unit-stride row of at least 16 codes is read 16 bytes at a time, its last block overlapping the one before, in a
 * loop unrolled where n is a constant (a head dim): the check then costs two instructions per 16 codes. */
typedef struct __attribute__((packed)) {
    ulong2 bits;
} cla_u8x16_unaligned;
CLA_INLINE uchar16 cla_fp8_nan_acc(uchar16 acc, __global const uchar *p, int n, long s) {
    if (s == 1 && n >= 16) {
        _Pragma("unroll") for (int d = 0; d < n; d += 16) {
            const int at = min(d, n - 16);
            acc = max(acc, as_uchar16(((__global const cla_u8x16_unaligned *)(p + at))->bits) | (uchar)128);
        }
    } else {
        for (int d = 0; d < n; ++d) acc.s0 = max(acc.s0, (uchar)(p[d * s] | 128));
    }
    return acc;
}
CLA_INLINE bool cla_fp8_nan_found(uchar16 acc) {
    return any(as_char16(acc == (uchar16)(255)));
}

#define CLA_LOAD_0(p, i) ((p)[i])
#define CLA_LOAD_1(p, i) vload_half((i), (p))
#define CLA_LOAD_2(p, i) as_float(((uint)(p)[i]) << 16)
#define CLA_LOAD_3(p, i) ((float)((p)[i] != 0))
#define CLA_LOAD_4(p, i) ((float)(p)[i])
#define CLA_LOAD_5(p, i) cla_fp8_to_f32((p)[i])

#define CLA_STORE_0(p, i, x) ((p)[i] = (x))
#define CLA_STORE_1(p, i, x) vstore_half_rte((x), (i), (p))
#define CLA_STORE_2(p, i, x) ((p)[i] = cla_f32_to_bf16(x))

/* STORAGE(dt) names the element type; LOAD(dt, p, i) reads element i as float; STORE(dt, p, i, x) writes it. */
#define STORAGE(dt)        CLA_CAT(CLA_STORAGE_, dt)
#define LOAD(dt, p, i)     CLA_CAT(CLA_LOAD_, dt)(p, i)
#define STORE(dt, p, i, x) CLA_CAT(CLA_STORE_, dt)(p, i, x)

#ifndef Q_DTYPE
#define Q_DTYPE 0
#endif
#ifndef K_DTYPE
#define K_DTYPE Q_DTYPE
#endif
#ifndef V_DTYPE
#define V_DTYPE Q_DTYPE
#endif
#ifndef O_DTYPE
#define O_DTYPE Q_DTYPE
#endif
#ifndef W_DTYPE
#define W_DTYPE O_DTYPE
#endif

/* Specialisations every attention program shares, with the defaults of a plain fp32 call (the host always sets
 * them; the defaults let each file build on its own). MASK_KIND: 0 none, 1 additive, 2 boolean. CAUSAL: 0 none,
 * 1 top-left, 2 bottom-right. */
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef V_HEAD_DIM
#define V_HEAD_DIM HEAD_DIM
#endif
#ifndef MASK_KIND
#define MASK_KIND 0
#endif
#ifndef MASK_DTYPE
#define MASK_DTYPE 0
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
/* Where the window and ALiBi place query i: 1 top-left (at i), 2 bottom-right (at i + Lk - Lq); by default where
 * the causal mask does (the host sets it only where a call asks otherwise). */
#ifndef WINDOW_ALIGN
#define WINDOW_ALIGN (CAUSAL == 2 ? 2 : 1)
#endif
#ifndef HAS_WINDOW
#define HAS_WINDOW 0
#endif
#ifndef HAS_KEY_LENGTHS
#define HAS_KEY_LENGTHS 0
#endif
#ifndef HAS_LSE
#define HAS_LSE 0
#endif

#ifndef UNIT_DSTRIDE
#define UNIT_DSTRIDE 0
#endif

/* Score modifiers (the attention kernels' HAS_SOFTCAP, HAS_ALIBI, HAS_SINKS): each is a compile-time switch, so a
 * call without them runs the plain kernel, instruction for instruction. */
#ifndef HAS_SOFTCAP
#define HAS_SOFTCAP 0
#endif
#ifndef HAS_ALIBI
#define HAS_ALIBI 0
#endif
#ifndef HAS_SINKS
#define HAS_SINKS 0
#endif
#define HAS_SCORE_MODS (HAS_SOFTCAP || HAS_ALIBI)
/* The caller's score_mod and mask_mod (clattn_sdpa_desc): the host prepends a prefix to the program that sets these
 * to 1 and defines cla_user_score / cla_user_mask (src/attention/sdpa_mods.c). Either one makes every tile take
 * the per-key path, as a mask tensor does, since any key may come out masked. */
#ifndef HAS_SCORE_FN
#define HAS_SCORE_FN 0
#endif
#ifndef HAS_MASK_FN
#define HAS_MASK_FN 0
#endif
#define HAS_USER_MODS (HAS_SCORE_FN || HAS_MASK_FN)
/* The block mask (clattn_sdpa_desc.block_mask, src/attention/sdpa_block_mask.c): int32 flags per (query block, key
 * block). Each kernel tile first asks cla_block_tile for its state: SKIP (every covered flag 0: the tile is not
 * visited), FULL (every flag 2: mask_mod is not evaluated) or PARTIAL (each key's flag is read: 0 masks it, 2
 * spares it mask_mod). Without a block mask every tile is PARTIAL and nothing is read. */
#ifndef HAS_BLOCK_MASK
#define HAS_BLOCK_MASK 0
#endif
#define CLA_TILE_SKIP    0
#define CLA_TILE_PARTIAL 1
#define CLA_TILE_FULL    2
/* Whether every tile needs per-key work whatever its block state (a mask tensor, score_mod, or mask_mod with no
 * block mask to spare it), and whether a tile of block state t does. */
#define CLA_PER_KEY_ALWAYS  (MASK_KIND != 0 || HAS_SCORE_FN || (HAS_MASK_FN && !HAS_BLOCK_MASK))
#define CLA_TILE_PER_KEY(t) (CLA_PER_KEY_ALWAYS || ((HAS_MASK_FN || HAS_BLOCK_MASK) && (t) != CLA_TILE_FULL))

/* The head-dim stride of a tensor's long4 strides: a compile-time 1 when the host knows every one is 1. */
#if UNIT_DSTRIDE
#define DSTRIDE(s) 1
#else
#define DSTRIDE(s) ((s).w)
#endif

/* Sentinels for masked logits: real infinities, so programs must never be built with -cl-finite-math-only. */
#define CLA_NEG_INF (-INFINITY)

/* 1/ln(2): softmax runs on exp2 with the scale folded into the logits. */
#define CLA_LOG2E 1.4426950408889634f
#define CLA_LN2   0.6931471805599453f

/* A max that lets a NaN through (fmax would drop it), so that NaN inputs reach the output. */
CLA_INLINE float cla_max_nan(float a, float b) {
    return (isnan(b) || b > a) ? b : a;
}

/* Keys of batch item b that take part at all: its key length, clamped to [0, Lk], or Lk without key lengths. */
CLA_INLINE int cla_kv_limit(__global const int *key_lengths, long offset, int b, int Lk) {
#if HAS_KEY_LENGTHS
    return clamp(key_lengths[offset + b], 0, Lk);
#else
    return Lk;
#endif
}

/* ---- Serving layouts (src/attention/sdpa_seqs.c): packed variable-length batches, paged KV caches, 8-bit K/V.
 * VARLEN_Q: q, out and lse hold packed sequences, batch item b being rows cu_q[b] .. cu_q[b + 1] - 1 of a batch-1
 * tensor. KV_LAYOUT: 0 dense, k [B, Hkv, Lk, D]; 1 packed like the queries (cu_k); 2 paged, k [pages, Hkv,
 * PAGE_SIZE, D], key j of batch item b being row j % PAGE_SIZE of page table[b][j / PAGE_SIZE], with seqlens_k[b]
 * keys; 3 a dense cache k [B, Hkv, Lk_cap, D] whose batch item b has its first seqlens_k[b] keys. `seqs` holds the
 * index arrays the host copied to the device, and seq_at their element offsets: x cu_q, y cu_k or seqlens_k, z the
 * block table, w its entries per batch item. With packed queries the B + 1 entries of cu_q are followed by as many
 * of cu_k or seqlens_k and then by the CPU kernel's work list (cla_seq_work_at). An 8-bit K or V (K_SCALED,
 * V_SCALED) has a scale tensor indexed like it without the head dim (strides 0 where it broadcasts), of type
 * KS_DTYPE / VS_DTYPE.
 */
#ifndef VARLEN_Q
#define VARLEN_Q 0
#endif
#ifndef KV_LAYOUT
#define KV_LAYOUT 0
#endif
#ifndef PAGE_SIZE
#define PAGE_SIZE 16
#endif
#ifndef KS_DTYPE
#define KS_DTYPE 0
#endif
#ifndef VS_DTYPE
#define VS_DTYPE 0
#endif
#define K_SCALED (K_DTYPE >= 4)
#define V_SCALED (V_DTYPE >= 4)

/* Where the CPU kernel's work list of packed queries starts in `seqs`: a counter of the entries taken per key split
 * (starting at 0), then the B + 1 first entries of the batch items in the list's order (the last being the count),
 * then the B batch items in that order. cu_q and the key array before it each have B + 1 entries. */
CLA_INLINE int cla_seq_work_at(int4 seq_at) {
    return seq_at.y + (seq_at.y - seq_at.x);
}

/* Batch item b's query rows: Lq, or its packed length. */
CLA_INLINE int cla_seq_q_len(__global const int *seqs, int4 seq_at, int b, int Lq) {
#if VARLEN_Q
    return seqs[seq_at.x + b + 1] - seqs[seq_at.x + b];
#else
    return Lq;
#endif
}

/* The element offset of batch item b's first query row in a tensor indexed by query rows (q, out, lse, masks are
 * not: they are per sequence) with strides s. */
CLA_INLINE long cla_seq_q_base(__global const int *seqs, int4 seq_at, int b, long4 s) {
#if VARLEN_Q
    return seqs[seq_at.x + b] * s.z;
#else
    return b * s.x;
#endif
}

/* Batch item b's keys: Lk, or its packed, paged or dense-cache length. */
CLA_INLINE int cla_seq_k_len(__global const int *seqs, int4 seq_at, int b, int Lk) {
#if KV_LAYOUT == 1
    return seqs[seq_at.y + b + 1] - seqs[seq_at.y + b];
#elif KV_LAYOUT >= 2
    return seqs[seq_at.y + b];
#else
    return Lk;
#endif
}

/* The element offset of batch item b's key 0 in a tensor indexed like k (strides s), heads aside; 0 when paged,
 * where every key finds its page. */
CLA_INLINE long cla_seq_kv_base(__global const int *seqs, int4 seq_at, int b, long4 s) {
#if KV_LAYOUT == 1
    return seqs[seq_at.y + b] * s.z;
#elif KV_LAYOUT == 2
    return 0;
#else
    return b * s.x;
#endif
}

/* The element offset of key j of batch item b (base from cla_seq_kv_base), heads aside. Paged, a key's row is
 * found through the block table: PAGE_SIZE is a power of two, so the division is a shift. */
CLA_INLINE long cla_seq_kv_row(__global const int *seqs, int4 seq_at, int b, long base, int j, long4 s) {
#if KV_LAYOUT == 2
    const int page = seqs[seq_at.z + b * seq_at.w + j / PAGE_SIZE];
    return page * s.x + (j % PAGE_SIZE) * s.z;
#else
    return base + (long)j * s.z;
#endif
}

/* The scale of key j's row of K or V for key/value head hk (1 for storage that is not 8-bit): cla_k_scale and
 * cla_v_scale, one definition for the two scale types. */
#define CLA_DEFINE_KV_SCALE(name, DT, SCALED)                                                                      \
    CLA_INLINE float name(__global const STORAGE(DT) * scale, long offset, long4 s, __global const int *seqs,      \
                          int4 seq_at, int b, int hk, int j) {                                                     \
        if (!(SCALED)) return 1.0f;                                                                                \
        const long base = cla_seq_kv_base(seqs, seq_at, b, s);                                                     \
        return LOAD(DT, scale, offset + hk * s.y + cla_seq_kv_row(seqs, seq_at, b, base, j, s));                   \
    }
CLA_DEFINE_KV_SCALE(cla_k_scale, KS_DTYPE, K_SCALED)
CLA_DEFINE_KV_SCALE(cla_v_scale, VS_DTYPE, V_SCALED)

/* Where a batch item's query i sits among its Lk keys: at i + shift.x for the causal mask, at i + shift.y for the
 * window and ALiBi; each shift is Lk - Lq for bottom-right alignment, else 0. */
CLA_INLINE int2 cla_shifts(int Lq, int Lk) {
    return (int2)(CAUSAL == 2 ? Lk - Lq : 0, WINDOW_ALIGN == 2 ? Lk - Lq : 0);
}

/* The keys query row i may see, [lo, hi), from causal masking, the window and the key length (kv_limit), with the
 * shifts of cla_shifts. Rows past the end of a short key sequence get lo >= hi: fully masked. The host caps
 * sequence lengths at 2^28 and turns windows wider than Lq + Lk into unbounded ones (-1), so these int sums cannot
 * overflow. */
CLA_INLINE int cla_key_lo(int i, int2 shift, int2 window) {
#if HAS_WINDOW
    if (window.x >= 0) return max(0, i + shift.y - window.x);
#endif
    return 0;
}

CLA_INLINE int cla_key_hi(int i, int2 shift, int2 window, int kv_limit) {
    int hi = kv_limit;
#if CAUSAL
    hi = min(hi, i + shift.x + 1);
#endif
#if HAS_WINDOW
    if (window.y >= 0) hi = min(hi, i + shift.y + window.y + 1);
#endif
    return max(hi, 0);
}

/* 2^x for x <= 0, -inf or NaN, to about 1 ulp, elementwise on eight lanes; results below 2^-126 become 0 and
 * 2^-inf is exactly 0. The integer part comes from the low bits of x + 1.5 * 2^23 + 127 (round to nearest), which
 * are also the biased exponent, so no float-to-int conversion (undefined for NaN) is needed; a NaN stays NaN
 * through the polynomial. CPU libraries' vector exp2 is a call per lane; this is a dozen vector instructions. */
CLA_INLINE float8 cla_exp2_nonpos8(float8 x) {
    const float8 lowest = (float8)(-127.0f);
    x = select(x, lowest, lowest > x); /* keeps NaN: the comparison is false */
    const float magic = 12582912.0f + 127.0f;
    const float8 big = x + magic;
    const float8 f = x - (big - magic); /* in [-0.5, 0.5] */
    float8 p = (float8)(1.535360498e-4f);
    p = fma(p, f, (float8)(1.339887036e-3f));
    p = fma(p, f, (float8)(9.618436918e-3f));
    p = fma(p, f, (float8)(5.550332367e-2f));
    p = fma(p, f, (float8)(2.402264774e-1f));
    p = fma(p, f, (float8)(6.931471825e-1f));
    p = fma(p, f, (float8)(1.0f));
    return p * as_float8(as_int8(big) << 23);
}

/* 2^x - 1 for x <= 0, -inf or NaN, on eight lanes: cla_exp2_nonpos8's reduction and polynomial with its constant
 * term left out, so that near x = 0 (where 2^x - 1 would cancel) it keeps full relative precision: there the
 * scale is exactly 1 and the result is the polynomial's tail itself. */
CLA_INLINE float8 cla_exp2m1_nonpos8(float8 x) {
    const float8 lowest = (float8)(-127.0f);
    x = select(x, lowest, lowest > x);
    const float magic = 12582912.0f + 127.0f;
    const float8 big = x + magic;
    const float8 f = x - (big - magic);
    float8 p = (float8)(1.535360498e-4f);
    p = fma(p, f, (float8)(1.339887036e-3f));
    p = fma(p, f, (float8)(9.618436918e-3f));
    p = fma(p, f, (float8)(5.550332367e-2f));
    p = fma(p, f, (float8)(2.402264774e-1f));
    p = fma(p, f, (float8)(6.931471825e-1f));
    const float8 scale = as_float8(as_int8(big) << 23);
    return fma(p * f, scale, scale - 1.0f); /* (1 + p f) 2^n - 1 */
}

/* The softcap cap * tanh(x / cap) on eight lanes, no library call: cap tanh|y| = -cap m / (2 + m) with
 * m = 2^(-2 |y| log2 e) - 1 in (-1, 0] from cla_exp2m1_nonpos8, accurate to a few ulp of the result for small and
 * large logits alike; +-inf gives +-cap and a NaN stays NaN. */
CLA_INLINE float8 cla_softcap8(float8 x, float cap) {
    const float8 m = cla_exp2m1_nonpos8(fabs(x) * (float8)(-2.0f * CLA_LOG2E / cap));
    return copysign(m * (float8)(-cap) / (m + 2.0f), x);
}

/* The per-score modifiers, applied to a logit x in log2 units (x = scale * q.k * log2 e) before any mask, in this
 * order: the softcap, s = c tanh(s / c), which in log2 units is the same formula with cap = c log2 e; then ALiBi,
 * -slope |i' - j| added to the logit, with slope2 = slope * log2 e and pos = i' the query's position aligned like
 * the window (i + shift.y of cla_shifts). Every attention kernel calls this one helper
 * (the scalar form, or the eight-lane one the CPU kernel uses), so every path computes the same scores. */
CLA_INLINE float cla_score_mod(float x, int pos, int j, float cap, float slope2) {
#if HAS_SOFTCAP
    x = cap * tanh(x / cap);
#endif
#if HAS_ALIBI
    x = fma(-slope2, (float)abs(pos - j), x);
#endif
    return x;
}

CLA_INLINE float8 cla_score_mod8(float8 x, int8 pos, int8 j, float cap, float slope2) {
#if HAS_SOFTCAP
    x = cla_softcap8(x, cap);
#endif
#if HAS_ALIBI
    /* |pos - j| < 2^30 (the host caps lengths at 2^28), so it converts as a signed int. */
    x = fma((float8)(-slope2), convert_float8(as_int8(abs(pos - j))), x);
#endif
    return x;
}

/* The caller's modifiers and the block mask on the logit x (log2 units) of query i and key j of batch item b, head
 * h, after the built-in ones and before the masks: a key whose block flag is 0 gets -inf, score_mod sees the logit
 * in natural units, and a key mask_mod rejects gets -inf (mask_mod is not asked where the flag is 2, a full
 * block). flag: the key's block flag, 1 without a block mask. For keys inside the row's range only (see below). */
CLA_INLINE float cla_user_mods_in(float x, int b, int h, int i, int j, int flag, __global const int *mod_buf0,
                                  __global const int *mod_buf1) {
#if HAS_BLOCK_MASK
    if (flag == 0) return CLA_NEG_INF;
#endif
#if HAS_SCORE_FN
    x = cla_user_score(x * CLA_LN2, b, h, i, j, mod_buf0, mod_buf1) * CLA_LOG2E;
#endif
#if HAS_MASK_FN
    if ((!HAS_BLOCK_MASK || flag != 2) && !cla_user_mask(b, h, i, j, mod_buf0, mod_buf1)) x = CLA_NEG_INF;
#endif
    return x;
}

/* The same for any key: called only on keys inside [lo, hi), the row's keys after causal, window and key-length
 * masking, so that the indices an expression sees are always in range (i < Lq, j < Lk). */
CLA_INLINE float cla_user_mods(float x, int b, int h, int i, int j, int lo, int hi, int flag,
                               __global const int *mod_buf0, __global const int *mod_buf1) {
#if HAS_USER_MODS || HAS_BLOCK_MASK
    if (j < lo || j >= hi) return x;
    x = cla_user_mods_in(x, b, h, i, j, flag, mod_buf0, mod_buf1);
#endif
    return x;
}

/* The same on eight lanes (rows or keys). The block flags alone, or lanes all in 0 blocks, or all in full blocks
 * with no score_mod, take a vector select. The caller's code is scalar, so it runs once per lane; where every lane
 * is inside its range (inner tiles, and most keys of the others) the eight calls are straight-line code with no
 * test, which the compiler can turn into vector instructions (LLVM's SLP vectorizer does for arithmetic
 * expressions such as ALiBi's); otherwise one lane at a time, each behind its range test. */
#define CLA_USER_LANE(s) r.s = cla_user_mods_in(x.s, b, h, i.s, j.s, flag.s, mod_buf0, mod_buf1)
/* in_range: whether every lane's key lies in [lo, hi), when the caller knows it more cheaply than the vector test
 * (an eight-lane all() is a chain of extracts and branches on x86). */
CLA_INLINE float8 cla_user_mods8_known(float8 x, int b, int h, int8 i, int8 j, int8 lo, int8 hi, int8 flag,
                                       bool in_range, __global const int *mod_buf0, __global const int *mod_buf1) {
#if HAS_BLOCK_MASK
    const int8 dropped = (flag == (int8)(0)) & (j >= lo) & (j < hi);
    if (!HAS_USER_MODS || all(flag == (int8)(0))) return select(x, (float8)(CLA_NEG_INF), dropped);
    if (!HAS_SCORE_FN && all(flag == (int8)(2))) return x;
#endif
    if (in_range) {
        float8 r;
        CLA_USER_LANE(s0);
        CLA_USER_LANE(s1);
        CLA_USER_LANE(s2);
        CLA_USER_LANE(s3);
        CLA_USER_LANE(s4);
        CLA_USER_LANE(s5);
        CLA_USER_LANE(s6);
        CLA_USER_LANE(s7);
        return r;
    }
    float t[8];
    int ti[8], tj[8], tlo[8], thi[8], tf[8];
    vstore8(x, 0, t);
    vstore8(i, 0, ti);
    vstore8(j, 0, tj);
    vstore8(lo, 0, tlo);
    vstore8(hi, 0, thi);
    vstore8(flag, 0, tf);
    for (int y = 0; y < 8; ++y)
        t[y] = cla_user_mods(t[y], b, h, ti[y], tj[y], tlo[y], thi[y], tf[y], mod_buf0, mod_buf1);
    return vload8(0, t);
}

CLA_INLINE float8 cla_user_mods8(float8 x, int b, int h, int8 i, int8 j, int8 lo, int8 hi, int8 flag,
                                 __global const int *mod_buf0, __global const int *mod_buf1) {
    return cla_user_mods8_known(x, b, h, i, j, lo, hi, flag, all((j >= lo) & (j < hi)), mod_buf0, mod_buf1);
}

/* The block-mask state (CLA_TILE_*) of a kernel tile (bm_offset: the block mask's element offset, offsets.s7; no
 * long8 argument here or below, whose passing by value makes x86 compilers without AVX-512 warn about its ABI):
 * query rows [i0, i1] of heads [h0, h1] and keys [j0, j1] of batch item b, all in range. bm_dims.xy: the block
 * sizes. A broadcast dimension (stride 0) is read once; the kernels' tiles are small next to the usual 128 x 128
 * blocks, so this is a few loads per tile. */
CLA_INLINE int cla_block_tile(__global const int *bm, long bm_offset, long4 s, int4 bm_dims, int b, int h0, int h1,
                              int i0, int i1, int j0, int j1) {
#if HAS_BLOCK_MASK
    const long base = bm_offset + b * s.x;
    const int hl = s.y == 0 ? h0 : h1;
    const int q0 = i0 / bm_dims.x, q1 = s.z == 0 ? q0 : i1 / bm_dims.x;
    const int k0 = j0 / bm_dims.y, k1 = s.w == 0 ? k0 : j1 / bm_dims.y;
    bool any = false, all_full = true;
    for (int h = h0; h <= hl; ++h)
        for (int qb = q0; qb <= q1; ++qb)
            for (int kb = k0; kb <= k1; ++kb) {
                const int f = bm[base + h * s.y + qb * s.z + kb * s.w];
                any |= f != 0;
                all_full &= f == 2;
                if (any && !all_full) return CLA_TILE_PARTIAL;
            }
    return !any ? CLA_TILE_SKIP : all_full ? CLA_TILE_FULL : CLA_TILE_PARTIAL;
#else
    return CLA_TILE_PARTIAL;
#endif
}

/* The element offset of query row i's flags (batch item b, head h), for cla_block_flag. */
CLA_INLINE long cla_block_row(long bm_offset, long4 s, int4 bm_dims, int b, int h, int i) {
#if HAS_BLOCK_MASK
    return bm_offset + b * s.x + h * s.y + (long)(i / bm_dims.x) * s.z;
#else
    return 0;
#endif
}

/* The flags of key j for eight consecutive rows (their rows from cla_block_row): one load where the eight lie in
 * one query block, as they do but at a block's edge. */
CLA_INLINE int8 cla_block_flags8_rows(__global const int *bm, const long *rows, long4 s, int4 bm_dims, int t,
                                      int j) {
#if HAS_BLOCK_MASK
    if (t == CLA_TILE_FULL) return (int8)(2);
    const long kat = (long)(j / bm_dims.y) * s.w;
    if (rows[0] == rows[7]) return (int8)(bm[rows[0] + kat]);
    return (int8)(bm[rows[0] + kat], bm[rows[1] + kat], bm[rows[2] + kat], bm[rows[3] + kat], bm[rows[4] + kat],
                  bm[rows[5] + kat], bm[rows[6] + kat], bm[rows[7] + kat]);
#else
    return (int8)(1);
#endif
}

/* The flags of eight keys j, j + 1, ... of one row, each clamped to `last` (< Lk): one load where they lie in one
 * key block. */
CLA_INLINE int8 cla_block_flags8_keys(__global const int *bm, long row, long4 s, int4 bm_dims, int t, int j,
                                      int last) {
#if HAS_BLOCK_MASK
    if (t == CLA_TILE_FULL) return (int8)(2);
    const int k0 = j / bm_dims.y, k7 = min(j + 7, last) / bm_dims.y;
    if (k0 == k7) return (int8)(bm[row + k0 * s.w]);
    int f[8];
    for (int y = 0; y < 8; ++y) f[y] = bm[row + (long)(min(j + y, last) / bm_dims.y) * s.w];
    return vload8(0, f);
#else
    return (int8)(1);
#endif
}

/* The flag of key j (< Lk) in the row at `row` on a tile of state t: 2 on a FULL tile, read on a PARTIAL one, and
 * 1 without a block mask. */
CLA_INLINE int cla_block_flag(__global const int *bm, long row, long4 s, int4 bm_dims, int t, int j) {
#if HAS_BLOCK_MASK
    return t == CLA_TILE_FULL ? 2 : bm[row + (long)(j / bm_dims.y) * s.w];
#else
    return 1;
#endif
}

/* The modifiers' per-head values: the softcap in log2 units, the head's ALiBi slope in log2 units and its sink
 * logit in log2 units (0 where absent). mods: the element offsets and head strides of the sinks and the slopes. */
CLA_INLINE float cla_alibi_slope2(__global const float *alibi, long4 mods, int h) {
#if HAS_ALIBI
    return alibi[mods.z + h * mods.w] * CLA_LOG2E;
#else
    return 0.0f;
#endif
}

CLA_INLINE float cla_sink2(__global const float *sinks, long4 mods, int h) {
#if HAS_SINKS
    return sinks[mods.x + h * mods.y] * CLA_LOG2E;
#else
    return 0.0f;
#endif
}

/* Folds a row's attention sink (log2 units) into its final softmax state, the running max m and sum l (log2
 * units): the sink joins the denominator and adds no value. Returns the factor by which the unnormalised output
 * must be multiplied. A row with neither keys nor a finite sink stays empty (m = -inf); NaN propagates. */
CLA_INLINE float cla_fold_sink(float sink2, float *m, float *l) {
    const float m_new = cla_max_nan(*m, sink2);
    if (m_new == CLA_NEG_INF) return 1.0f;
    const float alpha = exp2(*m - m_new); /* 0 for a row whose keys were all masked */
    *l = *l * alpha + exp2(sink2 - m_new);
    *m = m_new;
    return alpha;
}

/* The arguments of the fused attention kernels (sdpa_fused in sdpa_fused.cl, both shapes of sdpa_fused_cpu in
 * sdpa_fused_cpu.cl), declared once; the host sets them by the names of the family's argument list in
 * src/tuning/tuning.c, which follows this order. offsets: q, k, v, o, mask, key lengths, lse; dims: Hq, Lq, Lk, the
 * query heads per key head; window: left and right sides (-1 unbounded); split_len and partial: the key split's
 * length and its partial state (SPLIT_KV); softcap2, sinks, alibi and mods: the score modifiers (softcap in log2
 * units, the per-head sinks and ALiBi slopes, and mods = their element offsets and head strides); mod_buf0 and
 * mod_buf1: the caller's buffers for score_mod and mask_mod, typed by the prefix's views of them; seqs and seq_at:
 * the serving layouts' index arrays (above); k_scale, v_scale, their strides and scale_offsets (k, v): the scales
 * of 8-bit keys and values; block_mask, bm_stride and bm_dims (its block sizes in rows and keys), with its element
 * offset in offsets.s7: the block mask (HAS_BLOCK_MASK, above). */
#define SDPA_FUSED_ARGS                                                                                            \
    __global const STORAGE(Q_DTYPE) * q, long4 q_stride, __global const STORAGE(K_DTYPE) * k, long4 k_stride,      \
        __global const STORAGE(V_DTYPE) * v, long4 v_stride, __global STORAGE(O_DTYPE) * o, long4 o_stride,        \
        __global const STORAGE(MASK_DTYPE) * mask, long4 mask_stride, __global const int *key_lengths,             \
        __global float *lse, long4 lse_stride, long8 offsets, int4 dims, float scale_log2, int2 window,            \
        int split_len, __global float *partial, float softcap2, __global const float *sinks,                       \
        __global const float *alibi, long4 mods, __global const int *mod_buf0, __global const int *mod_buf1,       \
        __global const int *seqs, int4 seq_at, __global const STORAGE(KS_DTYPE) * k_scale, long4 ks_stride,        \
        __global const STORAGE(VS_DTYPE) * v_scale, long4 vs_stride, long2 scale_offsets,                          \
        __global const int *block_mask, long4 bm_stride, int4 bm_dims

/* The logit of one (query row, key) pair, in log2 units (the scale is already folded into q), or -inf where the key
 * is masked: outside the row's keys [lo, hi) (causal, window, key length) or hidden by the mask tensor, whose
 * element for the pair is mask[mask_at]. The one place where a score is processed, for the kernels that share it
 * (sdpa_flash.cl), so that a score modifier is added here once. */
CLA_INLINE float cla_score(float s, int j, int lo, int hi, __global const STORAGE(MASK_DTYPE) * mask,
                           long mask_at) {
    if (j < lo || j >= hi) return CLA_NEG_INF;
#if MASK_KIND == 1
    const float mv = LOAD(MASK_DTYPE, mask, mask_at);
    return mv <= -FLT_MAX ? CLA_NEG_INF : fma(mv, CLA_LOG2E, s);
#elif MASK_KIND == 2
    return mask[mask_at] == 0 ? CLA_NEG_INF : s;
#else
    return s;
#endif
}

/* Four consecutive head-dim elements p[at], p[at + ds], ... as float4, zeros past the `left` that remain (>= 1):
 * one vector load where the stride is 1 and all four exist, for coalesced tile loads. LOAD4(dt, ...) picks the
 * storage type. */
CLA_INLINE float4 cla_load4_0(__global const float *p, long at, long ds, int left) {
    if (ds == 1 && left >= 4) return vload4(0, p + at);
    return (float4)(p[at], left > 1 ? p[at + ds] : 0.0f, left > 2 ? p[at + 2 * ds] : 0.0f,
                    left > 3 ? p[at + 3 * ds] : 0.0f);
}
/* Only where a tensor is fp16: some offline front ends (clang for nvptx) declare no half loads otherwise. */
#if Q_DTYPE == 1 || K_DTYPE == 1 || V_DTYPE == 1
CLA_INLINE float4 cla_load4_1(__global const half *p, long at, long ds, int left) {
    if (ds == 1 && left >= 4) return vload_half4(0, p + at);
    return (float4)(vload_half(0, p + at), left > 1 ? vload_half(0, p + at + ds) : 0.0f,
                    left > 2 ? vload_half(0, p + at + 2 * ds) : 0.0f,
                    left > 3 ? vload_half(0, p + at + 3 * ds) : 0.0f);
}
#endif
CLA_INLINE float4 cla_load4_2(__global const ushort *p, long at, long ds, int left) {
    uint4 u;
    if (ds == 1 && left >= 4) {
        u = convert_uint4(vload4(0, p + at));
    } else {
        u = (uint4)(p[at], left > 1 ? p[at + ds] : 0u, left > 2 ? p[at + 2 * ds] : 0u,
                    left > 3 ? p[at + 3 * ds] : 0u);
    }
    return as_float4(u << 16);
}
#if K_DTYPE == 4 || V_DTYPE == 4
CLA_INLINE float4 cla_load4_4(__global const char *p, long at, long ds, int left) {
    if (ds == 1 && left >= 4) return convert_float4(vload4(0, p + at));
    return (float4)((float)p[at], left > 1 ? (float)p[at + ds] : 0.0f, left > 2 ? (float)p[at + 2 * ds] : 0.0f,
                    left > 3 ? (float)p[at + 3 * ds] : 0.0f);
}
#endif
#if K_DTYPE == 5 || V_DTYPE == 5
CLA_INLINE float4 cla_load4_5(__global const uchar *p, long at, long ds, int left) {
    uchar4 u;
    if (ds == 1 && left >= 4)
        u = vload4(0, p + at);
    else
        u = (uchar4)(p[at], left > 1 ? p[at + ds] : (uchar)0, left > 2 ? p[at + 2 * ds] : (uchar)0,
                     left > 3 ? p[at + 3 * ds] : (uchar)0);
    return (float4)(cla_fp8_to_f32(u.x), cla_fp8_to_f32(u.y), cla_fp8_to_f32(u.z), cla_fp8_to_f32(u.w));
}
#endif
#define LOAD4(dt, p, at, ds, left) CLA_CAT(cla_load4_, dt)(p, at, ds, left)

/* Four head-dim elements from d4 * 4 of key j's row of K or V (through the serving layout), scaled where the
 * storage is 8-bit: cla_k4 and cla_v4, one definition for the two storage types (the flash and decode kernels). */
#define CLA_DEFINE_ROW4(name, DT, DIM, SDT, SCALED, SCALE_FN)                                                      \
    CLA_INLINE float4 name(__global const STORAGE(DT) * p, long base, long4 s, int j, int d4,                      \
                           __global const STORAGE(SDT) * scale, long scale_offset, long4 ss,                       \
                           __global const int *seqs, int4 seq_at, int b, int hk) {                                 \
        const long at = cla_seq_kv_row(seqs, seq_at, b, base, j, s) + d4 * 4 * DSTRIDE(s);                         \
        const float4 x = LOAD4(DT, p, at, DSTRIDE(s), DIM - d4 * 4);                                               \
        return SCALED ? x * SCALE_FN(scale, scale_offset, ss, seqs, seq_at, b, hk, j) : x;                         \
    }
CLA_DEFINE_ROW4(cla_k4, K_DTYPE, HEAD_DIM, KS_DTYPE, K_SCALED, cla_k_scale)
CLA_DEFINE_ROW4(cla_v4, V_DTYPE, V_HEAD_DIM, VS_DTYPE, V_SCALED, cla_v_scale)

CLA_INLINE float cla_dot4(float4 a, float4 b, float acc) {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
}

/* The end of a row in the kernels that spread its value columns over work-items (sdpa_flash.cl, sdpa_decode.cl),
 * one float4 column d4 at a time. First where query i of head h keeps its partial state for key split `split`:
 * [m, l] then V_HEAD_DIM unnormalised outputs (sdpa_combine's layout). */
CLA_INLINE __global float *cla_split_state(__global float *partial, int b, int Hq, int h, int Lq, int i,
                                           int split) {
    return partial + ((((long)b * Hq + h) * Lq + i) * (long)get_global_size(2) + split) * (V_HEAD_DIM + 2);
}

/* x as elements d4 * 4 ... of a split state's outputs, those past V_HEAD_DIM left out. */
CLA_INLINE void cla_state_store4(__global float *state, int d4, float4 x) {
    const float a[4] = {x.x, x.y, x.z, x.w};
    for (int e = 0; e < 4; ++e)
        if (d4 * 4 + e < V_HEAD_DIM) state[2 + d4 * 4 + e] = a[e];
}

/* x as elements d4 * 4 ... of output row orow (head-dim stride ds), those past V_HEAD_DIM left out. */
CLA_INLINE void cla_out_store4(__global STORAGE(O_DTYPE) * orow, long ds, int d4, float4 x) {
    const float a[4] = {x.x, x.y, x.z, x.w};
    for (int e = 0; e < 4; ++e)
        if (d4 * 4 + e < V_HEAD_DIM) STORE(O_DTYPE, orow, (d4 * 4 + e) * ds, a[e]);
}

/* A finished row's normaliser, from its running max m and sum l (log2 units): the head's sink joins the
 * denominator once (HAS_SINKS; with key splits sdpa_combine does this), and a row with every key masked and no sink
 * (m stays -inf) gets 0. */
CLA_INLINE float cla_row_scale(__global const float *sinks, long4 mods, int h, float *m, float *l) {
    const float factor = HAS_SINKS ? cla_fold_sink(cla_sink2(sinks, mods, h), m, l) : 1.0f;
    return *m == CLA_NEG_INF ? 0.0f : factor / *l;
}
