// SPDX-License-Identifier: Apache-2.0
/* The descriptions of the tunable operations (parameter spaces, constraints, built-in defaults per device type) and
 * the problem classes tuned entries are keyed by. The database itself is tuning_db.c. The built-in defaults here
 * are the heuristics the operations used before there was a tuner, so an untuned device behaves as it always did.
 */
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the fused attention kernels (kernels_cl/sdpa_fused.cl and sdpa_fused_cpu.cl) ---- */

static const char *const fused_sources[] = {"sdpa_fused", "sdpa_fused_cpu", "sdpa_flash", "sdpa_decode", NULL};
static const char *const fused_variants[] = {"tiled", "cpu", "flash", "decode"};

/* What an override or a database entry may give a count: anything a kernel could take (the check and the device's
 * limits decide the rest). */
#define ANY    (1 << 20)
#define TILED  (1u << CLA_FUSED_TILED)
#define FLASH  (1u << CLA_FUSED_FLASH)
#define CPU    (1u << CLA_FUSED_CPU)
#define DECODE (1u << CLA_FUSED_DECODE)

/* The family's parameters: the values the tuner tries, the values accepted, and the build options they become.
 * variant: flash (kernels_cl/sdpa_flash.cl, FlashAttention-2 tiling, the default on GPUs and accelerators), tiled
 * (kernels_cl/sdpa_fused.cl, one row per work-item, the default on devices without on-chip local memory) or cpu
 * (kernels_cl/sdpa_fused_cpu.cl, the default on CPU devices); rows: query rows per work-item (the tiled kernel
 * takes any count, the CPU kernel 1 or multiples of 8, the flash kernel 1 to 4: its TM); block_n: keys per tile
 * (multiples of the CPU kernel's register blocks; of 4 and of CLA_FLASH_TN for flash); wg: work-items per group
 * (tiled and flash) and local: K/V tiles in local memory (the tiled kernel's; the CPU kernel runs one work-item
 * per group, the flash kernel always stages tiles); splits: key splits for decode (0 lets the shape decide; the
 * host's, as SPLIT_KV follows from the count); gqa_pack: the CPU kernel's row shape (decode) gives a work-item the
 * query rows of every query head that shares a key/value head, so that each K/V tile is read from memory once for
 * the whole GQA group (1, the default) rather than once per query head (0); the block shape ignores it (0).
 * decode (kernels_cl/sdpa_decode.cl, the default on GPUs and accelerators for calls of at most
 * CLA_DECODE_MAX_ROWS packed rows) reads rows as the bound on its packed rows, block_n as keys per tile (a multiple
 * of wg and of 4, at most 4 keys per work-item) and wg as its work-group. */
/* One line a parameter. */
/* clang-format off */
static const cla_tune_param fused_params[CLA_FUSED_PARAM_COUNT] = {
    {"variant", 4, {CLA_FUSED_TILED, CLA_FUSED_CPU, CLA_FUSED_FLASH, CLA_FUSED_DECODE}, fused_variants, 4, .min = 0, .max = 3},
    {"rows", 9, {1, 2, 4, 8, 16, 24, 32, 48, 64}, NULL, 0, .min = 1, .max = ANY, .define = "ROWS"},
    {"block_n", 8, {8, 16, 24, 32, 48, 64, 96, 128}, NULL, 0, .min = 1, .max = ANY, .define = "BLOCK_N"},
    {"wg", 8, {1, 4, 8, 16, 32, 64, 128, 256}, NULL, 0, .min = 1, .max = ANY, .define = "WG_SIZE", .variants = TILED | FLASH | DECODE},
    {"local", 2, {0, 1}, NULL, 0, .min = 0, .max = ANY, .define = "USE_LOCAL", .variants = TILED},
    {"splits", 6, {0, 1, 2, 4, 8, 16}, NULL, 0, .min = 0, .max = ANY},
    {"gqa_pack", 2, {0, 1}, NULL, 0, .min = 0, .max = 1, .define = "GQA_PACK", .variants = CPU},
};
/* clang-format on */

static const cla_tune_kernel fused_kernels[] = {
    [CLA_FUSED_TILED] = {"sdpa_fused", "sdpa_fused"},
    [CLA_FUSED_CPU] = {"sdpa_fused_cpu", "sdpa_fused_cpu"},
    [CLA_FUSED_FLASH] = {"sdpa_flash", "sdpa_flash"},
    [CLA_FUSED_DECODE] = {"sdpa_decode", "sdpa_decode"},
};

/* Every variant's arguments, as SDPA_FUSED_ARGS in kernels_cl/common.cl declares them. */
static const char *const fused_args[] = {
    "q",          "q_stride",    "k",           "k_stride", "v",          "v_stride", "o",         "o_stride",
    "mask",       "mask_stride", "key_lengths", "lse",      "lse_stride", "offsets",  "dims",      "scale_log2",
    "window",     "split_len",   "partial",     "softcap2", "sinks",      "alibi",    "mods",      "mod_buf0",
    "mod_buf1",   "seqs",        "seq_at",      "k_scale",  "ks_stride",  "v_scale",  "vs_stride", "scale_offsets",
    "block_mask", "bm_stride",   "bm_dims",     NULL,
};

static bool gpu_like(const clattn_device_info *d) {
    return d->type == CLATTN_DEVICE_TYPE_GPU ||
           (d->type == CLATTN_DEVICE_TYPE_ACCELERATOR && d->local_mem_is_dedicated);
}

static size_t max_group(const clattn_device_info *d) {
    size_t max_wg = d->max_work_group_size ? d->max_work_group_size : 1;
    if (d->max_work_item_sizes[0] && d->max_work_item_sizes[0] < max_wg) max_wg = d->max_work_item_sizes[0];
    return max_wg;
}

/* Local memory a tile may use: a little is kept back for the compiler's own use. */
static size_t local_budget(const clattn_device_info *d) {
    return d->local_mem_bytes > 1024 ? (size_t)d->local_mem_bytes - 1024 : 0;
}

size_t cla_flash_block_rows(const cla_tune_config *c) {
    const size_t ct = (size_t)(c->v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN);
    return ct ? (size_t)c->v[CLA_FUSED_WG] / ct * (size_t)c->v[CLA_FUSED_ROWS] : 0;
}

size_t cla_flash_dsplit(const cla_tune_problem *p, const cla_tune_config *c) {
    const size_t ct = (size_t)(c->v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN);
    const size_t kd4 = (p->head_dim + 3) / 4;
    return ct % 4 == 0 && kd4 >= 4 ? 4 : ct % 2 == 0 && kd4 >= 2 ? 2 : 1;
}

/* The layout of sdpa_flash.cl: a K tile of float4 rows padded by one float4; the V tile (padded likewise) and the
 * probability rows (padded by 4 floats) in memory that first holds the dsplit partial scores of each key, rows
 * padded by 4 floats; a float per (row, work-item) for the reductions (in the K tile where the scores' head
 * dimension is split and they fit); and Q past head dim 128. */
size_t cla_flash_local_bytes(const cla_tune_problem *p, const cla_tune_config *c) {
    const size_t bn = (size_t)c->v[CLA_FUSED_BLOCK_N], ct = bn / CLA_FLASH_TN ? bn / CLA_FLASH_TN : 1;
    const size_t bm = cla_flash_block_rows(c), sp = cla_flash_dsplit(p, c);
    const size_t kd4 = (p->head_dim + 3) / 4, vd4 = (p->v_head_dim + 3) / 4;
    const size_t v_and_p = bn * (vd4 + 1) * 16 + bm * (bn + 4) * 4, partials = sp > 1 ? bm * (sp * bn + 4) * 4 : 0;
    const size_t q = p->head_dim > 128 ? bm * (kd4 + 1) * 16 : 0;
    const size_t red = sp > 1 && bm * ct <= bn * (kd4 + 1) * 4 ? 0 : bm * ct * 4;
    return bn * (kd4 + 1) * 16 + (v_and_p > partials ? v_and_p : partials) + q + red;
}

/* Private floats of a flash work-item's Q share and output tiles (Q only up to head dim 128, where it is kept in
 * registers): beyond this many, GPU compilers spill. */
#define FLASH_MAX_PRIVATE 160

/* The private floats (flash_private) a GPU class's default flash shape may take, by vendor. The registers a shape
 * needs come from ptxas and LLVM's AMDGPU backend (tools/scripts/gpu_compile_report.py; docs/benchmarks.md,
 * "Defaults per GPU class"). With the default 8-key tiles, 24 floats (1 row at head dim 64) take 97 registers a
 * work-item on sm_90, 48 (2 rows at 64, or 1 at 128) 126 to 127, and 96 (2 rows at 128) 229, all without spills
 * on sm_90, gfx90a and gfx1030. What each class holds:
 * - NVIDIA, AMD, Apple and any other vendor: 96, the 2 rows of the default shape at head dims up to 128;
 * - Intel Xe: 128 registers of 32 bytes a hardware thread, so 128 floats a work-item at SIMD8 and 64 at SIMD16,
 *   and Qualcomm Adreno, whose register file per fiber is of the same order: 48, so 1 row at head dim 128;
 * - ARM Mali (Bifrost, Valhall: full occupancy up to 64 registers a thread): 24, 1 row at every head dim.
 * These only choose the default rows; the check holds every class to FLASH_MAX_PRIVATE, so a tuned or given shape
 * may take more. The figures for Intel, Adreno and Mali are from their vendors' documents, not from a compiler or a
 * device: a device's tuning replaces them. */
static size_t flash_private_budget(const clattn_device_info *d) {
    static const struct {
        const char *vendor;
        size_t floats;
    } classes[] = {{"intel", 48}, {"qualcomm", 48}, {"arm", 24}};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; ++i)
        if (cla_has_word_nocase(d->vendor, classes[i].vendor)) return classes[i].floats;
    return 96;
}

static size_t flash_private(const cla_tune_problem *p, const cla_tune_config *c) {
    const size_t ct = (size_t)(c->v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN), rows = (size_t)c->v[CLA_FUSED_ROWS];
    const size_t vd4 = (p->v_head_dim + 3) / 4, td4 = ct ? (vd4 + ct - 1) / ct : vd4;
    const size_t kd4 = (p->head_dim + 3) / 4, sp = cla_flash_dsplit(p, c);
    return rows * ((p->head_dim <= 128 ? (kd4 + sp - 1) / sp * 4 : 0) + td4 * 4);
}

const char *cla_flash_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c) {
    const int rows = c->v[CLA_FUSED_ROWS], block_n = c->v[CLA_FUSED_BLOCK_N], wg = c->v[CLA_FUSED_WG];
    if (block_n < 4 || block_n % 4 != 0 || block_n % CLA_FLASH_TN != 0)
        return "the flash variant takes block_n a multiple of 4";
    if (wg < block_n / CLA_FLASH_TN || wg % (block_n / CLA_FLASH_TN) != 0)
        return "the flash variant takes wg a multiple of block_n (the work-items that share a row)";
    if (rows < 1 || rows > 4) return "the flash variant takes rows 1 to 4";
    /* Its packed row index (query row times query heads per key/value head) is an int. */
    if ((uint64_t)p->q_len * (p->group ? p->group : 1) > (1u << 30))
        return "the flash variant packs at most 2^30 rows (query rows times query heads per key/value head)";
    if ((size_t)wg > max_group(d)) return "work-group larger than the device allows";
    if (cla_flash_local_bytes(p, c) > local_budget(d)) return "flash tiles larger than local memory";
    if (gpu_like(d) && flash_private(p, c) > FLASH_MAX_PRIVATE)
        return "flash Q and output tiles too large for registers";
    return NULL;
}

/* The flash kernel's prefill shape: 8 keys a tile, 8 work-items to a row (one key each, the scores' head dimension
 * split over 4), 2 rows a work-item, 256 work-items, so 64 rows a group. From the compilers' figures
 * (tools/scripts/gpu_compile_report.py; docs/benchmarks.md, "Defaults per GPU class") this keeps Q's share and the
 * output tile in registers without spills at head dims 64 and 128; LDS and registers allow 4 waves per SIMD on
 * gfx90a at head dim 64 and 2 at 128; each K or V float4 read from local memory serves 2 rows, and each tile read
 * from global memory 64 rows, as many as the one-row-per-work-item kernel's group (16 keys a tile made 32 rows and
 * twice the global reads per pair). Decode (a few packed rows: query rows times the GQA group's heads) takes the
 * smallest group whose row groups cover the rows, so that every work-item has keys, and key splits (sdpa_fused.c)
 * fill the device. Then the shape is fitted to the device: fewer keys a tile where local memory is short, fewer
 * work-items where the group is too large, fewer rows a work-item. */
static bool flash_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c) {
    int *v = c->v;
    const size_t rows_total = (p->q_len ? p->q_len : 1) * (p->group ? p->group : 1);
    const size_t private_most = v[CLA_FUSED_ROWS] < 1 ? flash_private_budget(d) : FLASH_MAX_PRIVATE;
    if (v[CLA_FUSED_ROWS] < 1) v[CLA_FUSED_ROWS] = 2;
    if (v[CLA_FUSED_BLOCK_N] < 1) v[CLA_FUSED_BLOCK_N] = 8;
    v[CLA_FUSED_BLOCK_N] = (v[CLA_FUSED_BLOCK_N] + 3) / 4 * 4; /* whole float4s of probabilities */
    v[CLA_FUSED_LOCAL] = 1;
    if (v[CLA_FUSED_WG] < 1) {
        /* The smallest power-of-two group whose rows cover the packed rows, from 256 work-items down. */
        v[CLA_FUSED_WG] = 256;
        while (v[CLA_FUSED_WG] / 2 >= v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN &&
               cla_flash_block_rows(c) / 2 >= rows_total)
            v[CLA_FUSED_WG] /= 2;
    }
    const size_t max_wg = max_group(d), budget = local_budget(d);
    for (;;) {
        const int ct = v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN;
        const bool local_fits = cla_flash_local_bytes(p, c) <= budget;
        if ((size_t)v[CLA_FUSED_WG] <= max_wg && local_fits) break;
        if (!local_fits && v[CLA_FUSED_BLOCK_N] >= 8 && v[CLA_FUSED_BLOCK_N] % 8 == 0)
            v[CLA_FUSED_BLOCK_N] /= 2;
        else if (v[CLA_FUSED_WG] / 2 >= ct && v[CLA_FUSED_WG] % 2 == 0)
            v[CLA_FUSED_WG] /= 2;
        else if (v[CLA_FUSED_ROWS] > 1)
            v[CLA_FUSED_ROWS] /= 2;
        else
            return false;
    }
    while (v[CLA_FUSED_ROWS] > 1 && flash_private(p, c) > private_most) v[CLA_FUSED_ROWS] /= 2;
    return cla_flash_check(d, p, c) == NULL;
}

/* The shape of sdpa_decode.cl (its macros of the same names): value columns CW across a value row, RG row groups
 * (RPW rows each) and VSL key slices of the P V phase, TD4 float4 columns per work-item, TPR work-items per row in
 * the p phase. */
typedef struct {
    size_t rows, wg, kpw, kd4, vd4, cw, rg, rpw, vsl, td4, tpr, prw;
} decode_shape;

static decode_shape decode_shape_of(const cla_tune_problem *p, const cla_tune_config *c) {
    decode_shape s;
    s.rows = c->v[CLA_FUSED_ROWS] > 0 ? (size_t)c->v[CLA_FUSED_ROWS] : 1;
    s.wg = c->v[CLA_FUSED_WG] > 0 ? (size_t)c->v[CLA_FUSED_WG] : 1;
    s.kpw = c->v[CLA_FUSED_BLOCK_N] > 0 ? (size_t)c->v[CLA_FUSED_BLOCK_N] / s.wg : 0;
    s.kd4 = (p->head_dim + 3) / 4;
    s.vd4 = (p->v_head_dim + 3) / 4;
    s.cw = s.vd4 < s.wg ? (s.vd4 ? s.vd4 : 1) : s.wg;
    const size_t fit = s.wg / s.cw;
    s.rg = s.rows % 8 == 0 && fit % 8 == 0   ? 8
           : s.rows % 4 == 0 && fit % 4 == 0 ? 4
           : s.rows % 2 == 0 && fit % 2 == 0 ? 2
                                             : 1;
    s.rpw = s.rows / s.rg;
    s.vsl = s.wg / (s.cw * s.rg);
    s.td4 = (s.vd4 + s.cw - 1) / s.cw;
    const size_t p_fit = s.wg / s.rows;
    s.tpr = p_fit < 1 ? 1 : p_fit > 16 ? 16 : p_fit;
    const size_t prg = s.wg / s.tpr;
    s.prw = (s.rows + prg - 1) / prg;
    return s;
}

/* Local memory of sdpa_decode.cl: Q as float4s and the scores of a tile in rows padded to a multiple of 4 floats,
 * which the end's exchange of the key slices' accumulators (one slice too) reuses, then per row the
 * partial maxima, the rescale factor, the final max and sum, and the ALiBi slope. */
size_t cla_decode_local_bytes(const cla_tune_problem *p, const cla_tune_config *c) {
    const decode_shape s = decode_shape_of(p, c);
    const size_t bn = (size_t)(c->v[CLA_FUSED_BLOCK_N] > 0 ? c->v[CLA_FUSED_BLOCK_N] : 0);
    const size_t tile4 = s.rows * s.kd4 + s.rows * (bn + 4) / 4, red4 = s.vsl * s.rows * s.td4 * s.cw;
    return (tile4 > red4 ? tile4 : red4) * 16 + s.rows * (s.tpr + 4) * 4;
}

/* Private floats of a decode work-item: its output columns of its P V rows, its keys' scores for every row, four
 * keys' values and its p-phase rows' max and sum: beyond this many, GPU compilers spill. */
#define DECODE_MAX_PRIVATE 128

static size_t decode_private(const cla_tune_problem *p, const cla_tune_config *c) {
    const decode_shape s = decode_shape_of(p, c);
    return s.rpw * s.td4 * 4 + s.kpw * s.rows + 4 * s.td4 * 4 + 2 * s.prw;
}

static size_t packed_rows(const cla_tune_problem *p) {
    return (p->q_len ? p->q_len : 1) * (p->group ? p->group : 1);
}

/* The caller's score_mod and mask_mod have not been checked on the decode kernel's shapes yet, and it does not read
 * block masks: such calls take the flash kernel. */
static bool decode_reads_all(const cla_tune_problem *p) {
    return !(p->mods & (CLA_MODS_SCORE_FN | CLA_MODS_MASK_FN)) && !p->block_mask;
}

const char *cla_decode_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c) {
    if (!decode_reads_all(p)) return "the decode variant takes no score_mod, mask_mod or block mask (flash does)";
    const int rows = c->v[CLA_FUSED_ROWS], block_n = c->v[CLA_FUSED_BLOCK_N], wg = c->v[CLA_FUSED_WG];
    if (packed_rows(p) > CLA_DECODE_MAX_ROWS)
        return "the decode variant takes at most 16 packed rows (query rows times query heads per key/value head)";
    if ((size_t)rows < packed_rows(p) || rows > CLA_DECODE_MAX_ROWS)
        return "the decode variant takes rows from the packed rows (query rows times query heads per key/value "
               "head) to 16";
    /* It always stages Q and the scores in local memory and packs the GQA group: one candidate, not four. */
    if (c->v[CLA_FUSED_LOCAL] != 1 || c->v[CLA_FUSED_GQA_PACK] != 0)
        return "the decode variant takes local 1 and gqa_pack 0";
    if (wg < 1 || block_n < wg || block_n % wg != 0 || block_n / wg > 4 || block_n % 4 != 0)
        return "the decode variant takes block_n 1 to 4 times wg, a multiple of 4";
    if ((size_t)wg > max_group(d)) return "work-group larger than the device allows";
    if (cla_decode_local_bytes(p, c) > local_budget(d)) return "decode tiles larger than local memory";
    if (gpu_like(d) && decode_private(p, c) > DECODE_MAX_PRIVATE)
        return "decode output tile too large for registers";
    return NULL;
}

/* The decode kernel's shape: exactly the call's packed rows, 64 work-items and a key each per tile (64 keys), so
 * that up to head dim 256 each work-item accumulates one float4 value column of its rows (figures in README, GPU
 * kernels); then fewer keys a tile where local memory is short and fewer work-items where the group is
 * too large. False when the call has more rows than the kernel takes, needs what it does not read (a score_mod,
 * mask_mod or block mask) or does not fit the device. */
static bool decode_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c) {
    int *v = c->v;
    if (packed_rows(p) > CLA_DECODE_MAX_ROWS || !decode_reads_all(p)) return false;
    if (v[CLA_FUSED_ROWS] < 1) v[CLA_FUSED_ROWS] = (int)packed_rows(p);
    if (v[CLA_FUSED_WG] < 1) v[CLA_FUSED_WG] = 64;
    if (v[CLA_FUSED_BLOCK_N] < 1) v[CLA_FUSED_BLOCK_N] = v[CLA_FUSED_WG];
    v[CLA_FUSED_LOCAL] = 1;
    v[CLA_FUSED_GQA_PACK] = 0;
    const size_t max_wg = max_group(d), budget = local_budget(d);
    while ((size_t)v[CLA_FUSED_WG] > max_wg && v[CLA_FUSED_WG] % 2 == 0) {
        v[CLA_FUSED_WG] /= 2;
        if (v[CLA_FUSED_BLOCK_N] % 2 == 0) v[CLA_FUSED_BLOCK_N] /= 2;
    }
    while (cla_decode_local_bytes(p, c) > budget && v[CLA_FUSED_WG] % 2 == 0 && v[CLA_FUSED_BLOCK_N] % 2 == 0) {
        v[CLA_FUSED_WG] /= 2;
        v[CLA_FUSED_BLOCK_N] /= 2;
    }
    return cla_decode_check(d, p, c) == NULL;
}

void cla_sdpa_fused_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c) {
    int *v = c->v;
    const bool gpu = gpu_like(d);
    const cla_tune_config given = *c;
    /* FPGAs (no run-time compiler: offline toolchains size hardware from the kernel) keep the tiled kernel. */
    if (v[CLA_FUSED_VARIANT] < 0) {
        v[CLA_FUSED_VARIANT] = d->type == CLATTN_DEVICE_TYPE_CPU ? CLA_FUSED_CPU
                               : gpu && d->compiler_available    ? CLA_FUSED_FLASH
                                                                 : CLA_FUSED_TILED;
        /* Decode-shaped calls on GPUs: the decode kernel, where it fits. */
        cla_tune_config dc = *c;
        if (v[CLA_FUSED_VARIANT] == CLA_FUSED_FLASH && decode_complete(d, p, &dc))
            v[CLA_FUSED_VARIANT] = CLA_FUSED_DECODE;
    }
    if (v[CLA_FUSED_SPLITS] < 0) v[CLA_FUSED_SPLITS] = 0;
    if (v[CLA_FUSED_VARIANT] != CLA_FUSED_CPU) v[CLA_FUSED_GQA_PACK] = 0;
    if (v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU) {
        /* Rows fill float8 row vectors, and 24 rows (3 vectors) leave registers for 3 keys or columns per register
         * block; 48 keys per tile (a multiple of every block width) keep a tile's K, V and weights with the row
         * block's Q and O near L1 at head dim 64. Fewer than 8 rows (decode) would leave most lanes empty, so they
         * take the row shape (rows = 1), vectors along the head dim. */
        if (v[CLA_FUSED_ROWS] < 1)
            v[CLA_FUSED_ROWS] = p->q_len < 8 ? 1 : p->q_len <= 8 ? 8 : p->q_len <= 16 ? 16 : 24;
        if (v[CLA_FUSED_BLOCK_N] < 1) v[CLA_FUSED_BLOCK_N] = 48;
        if (v[CLA_FUSED_ROWS] > 1) v[CLA_FUSED_ROWS] = (v[CLA_FUSED_ROWS] + 7) / 8 * 8;
        /* Decode reads K and V at memory speed: packing the GQA group reads them once for all its heads. Only the
         * row shape packs, so the block shape carries 0 (one program, not two). */
        if (v[CLA_FUSED_GQA_PACK] < 0) v[CLA_FUSED_GQA_PACK] = 1;
        if (v[CLA_FUSED_ROWS] != 1) v[CLA_FUSED_GQA_PACK] = 0;
        v[CLA_FUSED_WG] = 1;
        v[CLA_FUSED_LOCAL] = 0;
        return;
    }
    if (v[CLA_FUSED_VARIANT] == CLA_FUSED_DECODE) {
        /* A call with more rows than the decode kernel takes, one with a score_mod, mask_mod or block mask, or a
         * device too small for the defaults, gets the flash kernel with its defaults (and the same key splits),
         * also where decode was asked for (CLATTN_FUSED_PARAMS=variant=decode runs whole test suites); decode
         * parameters given explicitly for a call it takes stay, for the check to judge. */
        const bool explicit_shape =
            given.v[CLA_FUSED_ROWS] > 0 || given.v[CLA_FUSED_WG] > 0 || given.v[CLA_FUSED_BLOCK_N] > 0;
        if (decode_complete(d, p, c) || (given.v[CLA_FUSED_VARIANT] == CLA_FUSED_DECODE && explicit_shape &&
                                         packed_rows(p) <= CLA_DECODE_MAX_ROWS && decode_reads_all(p)))
            return;
        for (int i = 0; i < CLA_FUSED_PARAM_COUNT; ++i) v[i] = -1;
        v[CLA_FUSED_VARIANT] = CLA_FUSED_FLASH;
        v[CLA_FUSED_SPLITS] = given.v[CLA_FUSED_SPLITS] < 0 ? 0 : given.v[CLA_FUSED_SPLITS];
        v[CLA_FUSED_GQA_PACK] = 0;
    }
    if (v[CLA_FUSED_VARIANT] == CLA_FUSED_FLASH) {
        /* A device too small for the flash tiles (a few KiB of local memory) gets the tiled kernel, unless the
         * flash kernel was asked for (then the check says why it cannot run). */
        if (flash_complete(d, p, c) || given.v[CLA_FUSED_VARIANT] == CLA_FUSED_FLASH) return;
        *c = given;
        v[CLA_FUSED_VARIANT] = CLA_FUSED_TILED;
        v[CLA_FUSED_GQA_PACK] = 0;
    }
    if (v[CLA_FUSED_ROWS] < 1) v[CLA_FUSED_ROWS] = gpu ? 1 : 4;
    if (v[CLA_FUSED_BLOCK_N] < 1) v[CLA_FUSED_BLOCK_N] = gpu ? 32 : 16;
    if (v[CLA_FUSED_WG] < 1) v[CLA_FUSED_WG] = gpu ? 64 : 8;
    if (v[CLA_FUSED_LOCAL] < 0) v[CLA_FUSED_LOCAL] = gpu;
    const size_t max_wg = max_group(d);
    while ((size_t)v[CLA_FUSED_WG] > max_wg && v[CLA_FUSED_WG] > 1) v[CLA_FUSED_WG] /= 2;
    if (v[CLA_FUSED_LOCAL]) {
        const size_t budget = local_budget(d), per_key = (p->head_dim + p->v_head_dim) * sizeof(float);
        while (v[CLA_FUSED_BLOCK_N] > 1 && (size_t)v[CLA_FUSED_BLOCK_N] * per_key > budget)
            v[CLA_FUSED_BLOCK_N] /= 2;
        if ((size_t)v[CLA_FUSED_BLOCK_N] * per_key > budget) v[CLA_FUSED_LOCAL] = 0; /* tiny local memory */
    }
}

static void fused_builtin(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *out) {
    for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) out->v[i] = -1;
    cla_sdpa_fused_complete(d, p, out);
}

static const char *fused_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c) {
    const int variant = c->v[CLA_FUSED_VARIANT], rows = c->v[CLA_FUSED_ROWS], block_n = c->v[CLA_FUSED_BLOCK_N];
    const int wg = c->v[CLA_FUSED_WG], local = c->v[CLA_FUSED_LOCAL], splits = c->v[CLA_FUSED_SPLITS];
    if (variant != CLA_FUSED_TILED && variant != CLA_FUSED_CPU && variant != CLA_FUSED_FLASH &&
        variant != CLA_FUSED_DECODE)
        return "unknown variant";
    if (rows < 1 || rows > 64) return "rows must be 1 to 64";
    if (block_n < 1 || block_n > 512) return "block_n must be 1 to 512";
    if (wg < 1 || local < 0 || local > 1 || splits < 0 || splits > 64) return "wg, local or splits out of range";
    const int pack = c->v[CLA_FUSED_GQA_PACK];
    /* Only the cpu variant's row shape packs, so its block shape refuses 1 (one candidate, not two); the other
     * variants ignore the value (a database entry for them keeps the default's). */
    if (pack < 0 || pack > 1) return "gqa_pack must be 0 or 1";
    if (pack && variant == CLA_FUSED_CPU && rows != 1)
        return "gqa_pack is for the cpu variant's row shape (rows 1)";
    /* Splits divide the keys of calls too short in rows to fill the device; prefill leaves them to the shape. */
    if (splits != 0 && p->q_len >= 8) return "key splits are for decode (fewer than 8 queries)";
    const size_t dims = p->head_dim + p->v_head_dim;
    if (variant == CLA_FUSED_CPU) {
        if (d->type != CLATTN_DEVICE_TYPE_CPU) return "the cpu variant is for CPU devices";
        if (rows != 1 && rows % 8 != 0) return "the cpu variant takes rows 1 or a multiple of 8";
        if (wg != 1 || local != 0) return "the cpu variant runs one work-item per group without local memory";
        /* Its tiles live in private memory (the worker thread's stack under PoCL). */
        if ((dims + (size_t)block_n) * (size_t)rows * sizeof(float) > 256 * 1024)
            return "the cpu variant's tiles would not fit a worker thread's stack";
        return NULL;
    }
    if ((size_t)wg > max_group(d)) return "work-group larger than the device allows";
    if (variant == CLA_FUSED_FLASH) return cla_flash_check(d, p, c);
    if (variant == CLA_FUSED_DECODE) return cla_decode_check(d, p, c);
    if (local && (size_t)block_n * dims * sizeof(float) > local_budget(d))
        return "K/V tile larger than local memory";
    const size_t private_limit = gpu_like(d) ? 32 * 1024 : 256 * 1024;
    if ((dims + (size_t)block_n) * (size_t)rows * sizeof(float) > private_limit)
        return "per-work-item arrays too large for private memory";
    return NULL;
}

const cla_tune_op cla_tune_op_sdpa_fused = {
    "sdpa_fused",  fused_sources, CLA_FUSED_PARAM_COUNT,   fused_params,
    fused_builtin, fused_check,   cla_sdpa_fused_override, NULL,
    fused_kernels, fused_args,
};

/* ---- the additive (Bahdanau / Luong concat) attention kernel (kernels_cl/seq2seq.cl) ---- */

static const char *const seq2seq_sources[] = {"seq2seq", NULL}; /* loaded with the common.cl prelude */

/* The family's parameters: the values the tuner tries, the values accepted, and the build options they become.
 * wg: work-items sharing a tile (one key and a slice of the value columns each); block_n: keys per tile; rows:
 * query rows sharing each key's reads; vec: the vector width of the score loop. */
static const cla_tune_param seq2seq_params[CLA_S2S_PARAM_COUNT] = {
    {"wg", 9, {1, 2, 4, 8, 16, 32, 64, 128, 256}, NULL, 0, .min = 1, .max = 4096, .define = "WG_SIZE"},
    {"block_n", 6, {8, 16, 32, 64, 128, 256}, NULL, 0, .min = 1, .max = 4096, .define = "BLOCK_N"},
    {"rows", 5, {1, 2, 4, 8, 16}, NULL, 0, .min = 1, .max = 4096, .define = "ROWS"},
    {"vec", 3, {1, 4, 8}, NULL, 0, .min = 1, .max = 8, .listed_only = 1, .define = "VEC"},
};

static const cla_tune_kernel seq2seq_kernels[] = {{"seq2seq", "seq2seq_additive"}};

/* The kernel's arguments, as seq2seq_additive in kernels_cl/seq2seq.cl declares them. */
static const char *const seq2seq_args[] = {
    "qp",      "qp_rows",  "kp",      "kp_rows",     "v_attn",      "values", "v_stride",
    "context", "o_stride", "mask",    "mask_stride", "key_lengths", "scores", "s_stride",
    "weights", "w_stride", "offsets", "dims",        NULL,
};

/* Each work-item keeps rows x (its share of the value columns) accumulators in private memory. */
#define S2S_MAX_ACCUMULATORS 4096

static size_t s2s_cols(const cla_tune_problem *p, int wg) {
    return (p->v_head_dim + (size_t)wg - 1) / (size_t)(wg > 0 ? wg : 1);
}

size_t cla_seq2seq_local_bytes(const cla_tune_problem *p, const cla_tune_config *c) {
    /* The rows' projected queries, v, and the score and probability tiles. */
    const size_t rows = (size_t)c->v[CLA_S2S_ROWS], block_n = (size_t)c->v[CLA_S2S_BLOCK_N];
    return (rows * p->head_dim + p->head_dim + 2 * rows * block_n) * sizeof(float);
}

/* GPUs: a group of 64 work-items shares each tile, one key and a slice of the value columns per work-item. CPUs:
 * one work-item per group, which PoCL runs as a plain loop whose vector score loop (vec 8) and contiguous value
 * loop vectorise; several rows share each key's reads (one row for a decoder step). */
void cla_seq2seq_complete(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *c) {
    int *v = c->v;
    const bool cpu = d->type == CLATTN_DEVICE_TYPE_CPU;
    if (v[CLA_S2S_WG] < 1) v[CLA_S2S_WG] = cpu ? 1 : 64;
    if (v[CLA_S2S_BLOCK_N] < 1) v[CLA_S2S_BLOCK_N] = cpu ? 32 : 64;
    /* A short last block of rows computes copies of its last row rather than asking for another program. */
    if (v[CLA_S2S_ROWS] < 1) v[CLA_S2S_ROWS] = p->q_len == 1 ? 1 : 4;
    if (v[CLA_S2S_VEC] < 1) v[CLA_S2S_VEC] = cpu ? 8 : 4;
    const size_t max_wg = max_group(d);
    while ((size_t)v[CLA_S2S_WG] > max_wg && v[CLA_S2S_WG] > 1) v[CLA_S2S_WG] /= 2;
    while (v[CLA_S2S_ROWS] > 1 && (size_t)v[CLA_S2S_ROWS] * s2s_cols(p, v[CLA_S2S_WG]) > S2S_MAX_ACCUMULATORS)
        v[CLA_S2S_ROWS] /= 2;
    const size_t budget = local_budget(d);
    while (cla_seq2seq_local_bytes(p, c) > budget) {
        if (v[CLA_S2S_ROWS] > 1)
            v[CLA_S2S_ROWS] /= 2;
        else if (v[CLA_S2S_BLOCK_N] > 1)
            v[CLA_S2S_BLOCK_N] /= 2;
        else
            break; /* the attention width alone does not fit: the check reports it */
    }
}

static void seq2seq_builtin(const clattn_device_info *d, const cla_tune_problem *p, cla_tune_config *out) {
    for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) out->v[i] = -1;
    cla_seq2seq_complete(d, p, out);
}

static const char *seq2seq_check(const clattn_device_info *d, const cla_tune_problem *p, const cla_tune_config *c) {
    const int wg = c->v[CLA_S2S_WG], block_n = c->v[CLA_S2S_BLOCK_N], rows = c->v[CLA_S2S_ROWS];
    const int vec = c->v[CLA_S2S_VEC];
    if (wg < 1 || block_n < 1 || block_n > 4096 || rows < 1 || rows > 4096)
        return "wg, block_n or rows out of range";
    if (vec != 1 && vec != 4 && vec != 8) return "vec must be 1, 4 or 8";
    if ((size_t)wg > max_group(d)) return "work-group larger than the device allows";
    if ((size_t)rows * s2s_cols(p, wg) > S2S_MAX_ACCUMULATORS)
        return "per-work-item accumulators too large for private memory";
    if (cla_seq2seq_local_bytes(p, c) > local_budget(d))
        return "query rows and score tiles larger than local memory";
    /* Extra rows of a group past the last query only compute copies of it. */
    if (p->q_len == 1 && rows > 1) return "a single query row takes one row per group";
    return NULL;
}

const cla_tune_op cla_tune_op_seq2seq = {
    "seq2seq_additive", seq2seq_sources,      CLA_S2S_PARAM_COUNT, seq2seq_params,  seq2seq_builtin,
    seq2seq_check,      cla_seq2seq_override, "additive",          seq2seq_kernels, seq2seq_args,
};

/* Further operations (the unfused helper kernels) are entries of this list. The database keeps a source hash per
 * entry of it (cla_tuning_state.hashes), so it holds at most 8. */
static const cla_tune_op *const all_ops[] = {&cla_tune_op_sdpa_fused, &cla_tune_op_seq2seq, NULL};

const cla_tune_op *const *cla_tune_ops(void) {
    return all_ops;
}

const cla_tune_op *cla_tune_op_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; all_ops[i]; ++i)
        if (strcmp(all_ops[i]->name, name) == 0) return all_ops[i];
    return NULL;
}

int cla_tune_param_index(const cla_tune_op *op, const char *name) {
    for (int i = 0; i < op->param_count; ++i)
        if (strcmp(op->params[i].name, name) == 0) return i;
    return -1;
}

/* ---- configurations ---- */

void cla_tune_config_format(const cla_tune_op *op, const cla_tune_config *c, char *out, size_t size) {
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < op->param_count && used < size; ++i) {
        const cla_tune_param *pr = &op->params[i];
        const int x = c->v[i];
        int n = pr->labels && x >= 0 && x < pr->label_count
                    ? snprintf(out + used, size - used, "%s%s=%s", i ? "," : "", pr->name, pr->labels[x])
                    : snprintf(out + used, size - used, "%s%s=%d", i ? "," : "", pr->name, x);
        if (n < 0) break;
        used += (size_t)n;
    }
}

bool cla_tune_config_parse(const cla_tune_op *op, const char *text, cla_tune_config *c, char *why,
                           size_t why_size) {
    const char *p = text;
    while (*p) {
        size_t klen = strcspn(p, "=,");
        if (p[klen] != '=' || klen == 0 || klen > 31) {
            cla_write_message(why, why_size, "'%s': expected name=value pairs separated by commas", text);
            return false;
        }
        char key[32];
        memcpy(key, p, klen);
        key[klen] = '\0';
        const char *val = p + klen + 1;
        size_t vlen = strcspn(val, ",");
        char value[32];
        if (vlen == 0 || vlen > 31) {
            cla_write_message(why, why_size, "'%s': bad value for '%s'", text, key);
            return false;
        }
        memcpy(value, val, vlen);
        value[vlen] = '\0';
        int idx = cla_tune_param_index(op, key);
        if (idx < 0) {
            cla_write_message(why, why_size, "unknown parameter '%s' of %s", key, op->name);
            return false;
        }
        const cla_tune_param *pr = &op->params[idx];
        if (!cla_tune_param_value(pr, value, &c->v[idx])) {
            char accepts[96];
            cla_tune_param_describe(pr, accepts, sizeof accepts);
            cla_write_message(why, why_size, "bad value '%s' for parameter '%s' of %s (%s)", value, key, op->name,
                              accepts);
            return false;
        }
        p = val + vlen;
        if (!cla_list_next(&p)) {
            cla_write_message(why, why_size, "'%s': trailing comma", text);
            return false;
        }
    }
    return true;
}

bool cla_tune_config_equal(const cla_tune_op *op, const cla_tune_config *a, const cla_tune_config *b) {
    for (int i = 0; i < op->param_count; ++i)
        if (a->v[i] != b->v[i]) return false;
    return true;
}

size_t cla_tune_space_size(const cla_tune_op *op) {
    size_t n = 1;
    for (int i = 0; i < op->param_count; ++i) n *= (size_t)op->params[i].count;
    return n;
}

void cla_tune_space_point(const cla_tune_op *op, size_t index, cla_tune_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = op->param_count - 1; i >= 0; --i) {
        const size_t n = (size_t)op->params[i].count;
        c->v[i] = op->params[i].values[index % n];
        index /= n;
    }
}

/* ---- problem classes ---- */

long cla_tune_seq_bucket(size_t len) {
    long b = 1;
    while ((size_t)b < len && b < (1L << 30)) b <<= 1;
    return b;
}

cla_tune_class cla_tune_class_of(const cla_tune_problem *p) {
    cla_tune_class c;
    c.head_dim = (int)(p->head_dim > 65536 ? 65536 : p->head_dim);
    c.dtype = (int)p->dtype;
    c.mask_kind = p->mask_kind;
    c.causal = p->causal ? 1 : 0;
    c.phase = p->q_len < 8 ? CLA_PHASE_DECODE : CLA_PHASE_PREFILL;
    /* A value head dim other than the query/key one (MLA's 576/512, 192/128) is a class of its own. */
    c.v_dim = p->v_head_dim != p->head_dim ? (int)(p->v_head_dim > 65536 ? 65536 : p->v_head_dim) : -1;
    c.seq = cla_tune_seq_bucket(p->kv_len);
    c.mods = p->mods > 0 ? p->mods : -1; /* none: the class of entries that serve any modifiers */
    c.kv_layout = p->kv_layout > 0 ? p->kv_layout : -1;
    c.kv_dtype = p->kv_dtype > 0 ? p->kv_dtype : -1;
    return c;
}

cla_tune_class cla_tune_op_class_of(const cla_tune_op *op, const cla_tune_problem *p) {
    cla_tune_class c = cla_tune_class_of(p);
    if (op && op->shape_prefix) {
        c.v_dim = (int)(p->v_head_dim > 65536 ? 65536 : p->v_head_dim);
        c.causal = 0;
        c.mods = c.kv_layout = c.kv_dtype = -1;
    }
    return c;
}

static const char *const dtype_tokens[] = {"f32", "f16", "bf16"};
static const char *const mask_tokens[] = {"nomask", "additive", "bool"};
static const char *const mods_tokens[CLATTN_TUNE_MODS_COUNT] = {"softcap", "sinks", "alibi", "score_mod",
                                                                "mask_mod"}; /* bits 1, 2, 4, 8, 16 */
static const char *const kv_layout_tokens[] = {"dense", "packed", "paged"};  /* CLATTN_TUNE_KV_* */

/* `prefix`: an operation's shape_prefix, which starts the text and names the widths "a" and "v"; NULL for an
 * attention class. */
static void format_class(const cla_tune_class *c, const char *prefix, char *out, size_t size) {
    char parts[13][24];
    size_t n = 0;
    if (prefix) snprintf(parts[n++], sizeof parts[0], "%s", prefix);
    if (c->phase >= 0)
        snprintf(parts[n++], sizeof parts[0], "%s", c->phase == CLA_PHASE_DECODE ? "decode" : "prefill");
    if (c->head_dim >= 0) snprintf(parts[n++], sizeof parts[0], "%s%d", prefix ? "a" : "d", c->head_dim);
    if (c->v_dim >= 0) snprintf(parts[n++], sizeof parts[0], "v%d", c->v_dim);
    if (c->seq >= 0) snprintf(parts[n++], sizeof parts[0], "L%ld", c->seq);
    if (c->dtype >= 0 && c->dtype < 3) snprintf(parts[n++], sizeof parts[0], "%s", dtype_tokens[c->dtype]);
    /* Not causal and no mask are left out: they are what the parser fills in for a concrete class. */
    if (c->causal > 0) snprintf(parts[n++], sizeof parts[0], "causal");
    if (c->mask_kind > 0 && c->mask_kind < 3)
        snprintf(parts[n++], sizeof parts[0], "%s", mask_tokens[c->mask_kind]);
    for (int b = 0; b < CLATTN_TUNE_MODS_COUNT; ++b)
        if (c->mods > 0 && (c->mods & (1 << b))) snprintf(parts[n++], sizeof parts[0], "%s", mods_tokens[b]);
    if (c->kv_layout > 0 && c->kv_layout < 3)
        snprintf(parts[n++], sizeof parts[0], "%s", kv_layout_tokens[c->kv_layout]);
    if (c->kv_dtype == CLATTN_DTYPE_I8 || c->kv_dtype == CLATTN_DTYPE_FP8_E4M3)
        snprintf(parts[n++], sizeof parts[0], "%s", c->kv_dtype == CLATTN_DTYPE_I8 ? "i8" : "fp8");
    size_t used = 0;
    if (size) out[0] = '\0';
    if (n == 0) snprintf(out, size, "*");
    for (size_t i = 0; i < n && used < size; ++i) {
        int w = snprintf(out + used, size - used, "%s%s", i ? ":" : "", parts[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

void cla_tune_class_format(const cla_tune_class *c, char *out, size_t size) {
    format_class(c, NULL, out, size);
}

void cla_tune_op_class_format(const cla_tune_op *op, const cla_tune_class *c, char *out, size_t size) {
    format_class(c, op ? op->shape_prefix : NULL, out, size);
}

static bool parse_number(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    if (!*s) return false;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The tokens of a class after the operation's prefix (`text` is the whole class, for messages). With `prefixed`
 * (an operation with a shape_prefix): "aN" and "vN" are the widths, and there is neither "dN" nor a causal flag. */
static bool parse_tokens(const char *text, const char *p, bool prefixed, bool concrete, cla_tune_class *c,
                         char *why, size_t why_size) {
    c->head_dim = c->dtype = c->mask_kind = c->causal = c->phase = c->v_dim = -1;
    c->seq = c->mods = c->kv_layout = c->kv_dtype = -1;
    if (strcmp(p, "*") == 0) p = "";
    while (*p) {
        size_t len = strcspn(p, ":");
        char tok[32];
        if (len == 0 || len >= sizeof tok) {
            cla_write_message(why, why_size, "class '%s': empty or overlong part", text);
            return false;
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        long n = 0;
        bool ok = true;
        if (strcmp(tok, "prefill") == 0)
            c->phase = CLA_PHASE_PREFILL;
        else if (strcmp(tok, "decode") == 0)
            c->phase = CLA_PHASE_DECODE;
        else if (!prefixed && strcmp(tok, "causal") == 0)
            c->causal = 1;
        else if (!prefixed && strcmp(tok, "noncausal") == 0)
            c->causal = 0;
        else if (tok[0] == (prefixed ? 'a' : 'd') && parse_number(tok + 1, 1, 65536, &n))
            c->head_dim = (int)n;
        else if (tok[0] == 'v' && parse_number(tok + 1, 1, 65536, &n))
            c->v_dim = (int)n;
        else if (tok[0] == 'L' && parse_number(tok + 1, 1, 1L << 30, &n))
            c->seq = cla_tune_seq_bucket((size_t)n);
        else if (!prefixed && strcmp(tok, "packed") == 0)
            c->kv_layout = CLATTN_TUNE_KV_PACKED;
        else if (!prefixed && strcmp(tok, "paged") == 0)
            c->kv_layout = CLATTN_TUNE_KV_PAGED;
        else if (!prefixed && strcmp(tok, "i8") == 0)
            c->kv_dtype = CLATTN_DTYPE_I8;
        else if (!prefixed && strcmp(tok, "fp8") == 0)
            c->kv_dtype = CLATTN_DTYPE_FP8_E4M3;
        else {
            ok = false;
            for (int i = 0; i < 3; ++i) {
                if (strcmp(tok, dtype_tokens[i]) == 0) c->dtype = i, ok = true;
                if (strcmp(tok, mask_tokens[i]) == 0) c->mask_kind = i, ok = true;
            }
            for (int i = 0; i < CLATTN_TUNE_MODS_COUNT; ++i)
                if (!prefixed && strcmp(tok, mods_tokens[i]) == 0)
                    c->mods = (c->mods < 0 ? 0 : c->mods) | 1 << i, ok = true;
        }
        if (!ok) {
            cla_write_message(why, why_size,
                              prefixed ? "class '%s': unknown part '%s' (expected prefill|decode, aN, vN, LN, "
                                         "f32|f16|bf16, nomask|additive|bool)"
                                       : "class '%s': unknown part '%s' (expected prefill|decode, dN, vN, LN, "
                                         "f32|f16|bf16, causal|noncausal, nomask|additive|bool, softcap, sinks, "
                                         "alibi, score_mod, mask_mod, packed|paged, i8|fp8)",
                              text, tok);
            return false;
        }
        p += len;
        if (*p == ':') ++p;
    }
    if (concrete) {
        if (prefixed && c->phase < 0) c->phase = CLA_PHASE_PREFILL;
        if (c->phase < 0 || c->head_dim < 0 || c->seq < 0) {
            cla_write_message(why, why_size,
                              prefixed ? "class '%s' needs an attention width aN and a length LN"
                                       : "class '%s' needs prefill or decode, a head dim dN and a length LN",
                              text);
            return false;
        }
        if (prefixed && c->v_dim < 0) c->v_dim = c->head_dim;
        if (!prefixed && c->v_dim == c->head_dim) c->v_dim = -1; /* the same width: the class of equal widths */
        if (c->dtype < 0) c->dtype = CLATTN_DTYPE_F32;
        if (c->mask_kind < 0) c->mask_kind = 0;
        if (c->causal < 0) c->causal = 0;
    }
    return true;
}

bool cla_tune_class_parse(const char *text, bool concrete, cla_tune_class *c, char *why, size_t why_size) {
    return parse_tokens(text, text, false, concrete, c, why, why_size);
}

bool cla_tune_shape_parse(const char *text, const cla_tune_op **op, cla_tune_class *c, char *why, size_t why_size) {
    const size_t first = strcspn(text, ":");
    for (size_t i = 0; all_ops[i]; ++i) {
        const char *prefix = all_ops[i]->shape_prefix;
        if (!prefix || strlen(prefix) != first || strncmp(text, prefix, first) != 0) continue;
        const char *rest = text[first] == ':' ? text + first + 1 : text + first;
        if (parse_tokens(text, rest, true, true, c, why, why_size)) {
            *op = all_ops[i];
            return true;
        }
        /* "additive" is also the mask token of attention classes, which take their parts in any order:
         * "additive:prefill:d64:L512" stays what it always was. */
        char attention_why[256];
        if (parse_tokens(text, text, false, true, c, attention_why, sizeof attention_why)) {
            *op = &cla_tune_op_sdpa_fused;
            return true;
        }
        return false; /* with the reason of the prefixed form */
    }
    *op = &cla_tune_op_sdpa_fused;
    return parse_tokens(text, text, false, true, c, why, why_size);
}

cla_tune_problem cla_tune_class_problem(const cla_tune_class *c) {
    cla_tune_problem p;
    memset(&p, 0, sizeof p);
    p.head_dim = p.v_head_dim = (size_t)(c->head_dim > 0 ? c->head_dim : 64);
    if (c->v_dim > 0) p.v_head_dim = (size_t)c->v_dim;
    p.dtype = c->dtype >= 0 ? (clattn_dtype)c->dtype : CLATTN_DTYPE_F32;
    p.mask_kind = c->mask_kind > 0 ? c->mask_kind : 0;
    p.causal = c->causal > 0;
    p.mods = c->mods > 0 ? (int)c->mods : 0;
    p.kv_layout = c->kv_layout > 0 ? (int)c->kv_layout : 0;
    p.kv_dtype = c->kv_dtype > 0 ? (int)c->kv_dtype : 0;
    p.batch = 1;
    p.heads = 8;
    p.kv_len = (size_t)(c->seq > 0 ? c->seq : 1024);
    p.q_len = c->phase == CLA_PHASE_DECODE ? 1 : p.kv_len;
    return p;
}

cla_tune_problem cla_tune_op_class_problem(const cla_tune_op *op, const cla_tune_class *c) {
    if (!op || !op->shape_prefix) return cla_tune_class_problem(c);
    /* Seq2seq attention: prefill is one sequence, whose query rows fill the device; a decoder step is one query
     * row per sequence, so a batch of 8 (as beam search or batched decoding runs it) gives the device work. */
    cla_tune_problem p;
    memset(&p, 0, sizeof p);
    p.head_dim = (size_t)(c->head_dim > 0 ? c->head_dim : 128);
    p.v_head_dim = c->v_dim > 0 ? (size_t)c->v_dim : p.head_dim;
    p.dtype = c->dtype >= 0 ? (clattn_dtype)c->dtype : CLATTN_DTYPE_F32;
    p.mask_kind = c->mask_kind > 0 ? c->mask_kind : 0;
    p.heads = 1;
    p.kv_len = (size_t)(c->seq > 0 ? c->seq : 512);
    const bool decode = c->phase == CLA_PHASE_DECODE;
    p.batch = decode ? 8 : 1;
    p.q_len = decode ? 1 : p.kv_len;
    return p;
}
