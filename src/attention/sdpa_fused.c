// SPDX-License-Identifier: Apache-2.0
/* The fused attention path, host side: the kernel variant and its parameters for the device in hand, the split
 * over keys for decode-shaped calls (flash-decoding), and the launch of kernels_cl/sdpa_flash.cl (the flash
 * variant, for GPUs and accelerators: a work-group per block of rows of one batch item and key/value head, GQA
 * query heads packed as rows), kernels_cl/sdpa_decode.cl (the decode variant, for GPU decode: a work-group per
 * batch item, key/value head and key split, with all the packed rows), kernels_cl/sdpa_fused.cl (the tiled variant,
 * one row per work-item) or kernels_cl/sdpa_fused_cpu.cl (the CPU variant; its decode shape packs GQA query heads
 * the same way). All take the same arguments and write the same key-split partial state, which sdpa_combine in
 * sdpa_fused.cl merges. */
#include "sdpa_internal.h"
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t round_up(size_t x, size_t m) {
    return (x + m - 1) / m * m;
}

/* The context's override (clattn_context_set_kernel_params, or CLATTN_FUSED_PARAMS at creation), for kernel
 * development, tuning and tests, in the keys of the family's description (tuning.c), for example
 * "variant=tiled,rows=4,block_n=16,wg=8,local=0,splits=3". Keys left out take the defaults of the variant it chose,
 * then the whole is shrunk to fit the device's limits. */
clattn_status cla_sdpa_fused_override(clattn_context *ctx, const cla_tune_problem *p, cla_tune_config *c,
                                      bool *given) {
    const char *origin = NULL;
    clattn_status st = cla_tune_override_parse(ctx, &cla_tune_op_sdpa_fused, c, given, &origin);
    if (st != CLATTN_SUCCESS || !*given) return st;
    /* local is a switch: any nonzero value turns it on. */
    if (c->v[CLA_FUSED_LOCAL] > 0) c->v[CLA_FUSED_LOCAL] = 1;
    cla_sdpa_fused_complete(&ctx->info, p, c);
    /* The CPU variant's tiles live in private memory (the worker thread's stack under PoCL): keep them to 100s of
     * KiB. */
    CLA_FAIL_ON(c->v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU &&
                    (c->v[CLA_FUSED_ROWS] > 64 || c->v[CLA_FUSED_BLOCK_N] > 512),
                ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "%s: the cpu variant takes rows up to 64 and block_n up to 512, not %d and %d", origin,
                c->v[CLA_FUSED_ROWS], c->v[CLA_FUSED_BLOCK_N]);
    /* The flash kernel's shape has rules of its own (work-items per row, register tiles, local memory). */
    const char *why = c->v[CLA_FUSED_VARIANT] == CLA_FUSED_FLASH    ? cla_flash_check(&ctx->info, p, c)
                      : c->v[CLA_FUSED_VARIANT] == CLA_FUSED_DECODE ? cla_decode_check(&ctx->info, p, c)
                                                                    : NULL;
    CLA_FAIL_ON(why != NULL, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                "%s: %s (rows %d, block_n %d, wg %d on '%s'); leave them out to get the device's defaults", origin,
                why, c->v[CLA_FUSED_ROWS], c->v[CLA_FUSED_BLOCK_N], c->v[CLA_FUSED_WG], ctx->info.name);
    return CLATTN_SUCCESS;
}

/* The parameters for this call: the context's override, else its tuning database, else the built-in
 * defaults for the device type (all in tuning.c's description of this kernel). */
static clattn_status choose_params(clattn_context *ctx, const cla_sdpa_plan *p, cla_tune_config *c) {
    /* The modifiers and the serving formats are compiled in, so they are part of the tuning class. */
    const int mods = (p->softcap > 0.0f ? CLA_MODS_SOFTCAP : 0) | (p->sinks.buffer ? CLA_MODS_SINKS : 0) |
                     (p->alibi_slopes.buffer ? CLA_MODS_ALIBI : 0) | (p->score_mod ? CLA_MODS_SCORE_FN : 0) |
                     (p->mask_mod ? CLA_MODS_MASK_FN : 0);
    cla_tune_problem prob = {p->head_dim,
                             p->v_head_dim,
                             p->q.dtype,
                             p->mask_kind,
                             p->causal != CLATTN_CAUSAL_NONE,
                             p->whole_batch,
                             p->whole_heads,
                             p->q_len,
                             p->kv_len,
                             p->q_heads / p->kv_heads,
                             mods,
                             p->kv_layout,
                             p->k.dtype == CLATTN_DTYPE_I8 || p->k.dtype == CLATTN_DTYPE_FP8_E4M3 ? (int)p->k.dtype
                                                                                                  : 0,
                             p->block_mask.buffer != NULL};
    cla_tune_choice ch;
    clattn_status st = cla_tuning_choose(ctx, &cla_tune_op_sdpa_fused, &prob, &ch);
    if (st != CLATTN_SUCCESS) return st;
    *c = ch.config;
    return st;
}

/* Rows per work-item of the CPU kernel's packed row shape: all the unit's rows up to 16 (the state of a row is
 * its q and output vectors, kept to about 64 KiB of the worker's stack in all), shared evenly between as few
 * work-items as that allows, so that each reads the unit's K and V once. */
static size_t cpu_pack_rows(const cla_sdpa_plan *p, size_t unit_rows) {
    const size_t per_row = ((p->head_dim + 7) / 8 + (p->v_head_dim + 7) / 8) * 8 * sizeof(float);
    size_t most = 64 * 1024 / per_row;
    most = most < 1 ? 1 : most > 16 ? 16 : most;
    const size_t items = unit_rows ? (unit_rows + most - 1) / most : 1;
    return unit_rows ? (unit_rows + items - 1) / items : 1;
}

/* How many key splits keep every compute unit busy: 1 unless the rows alone leave the device idle. The decode
 * kernel's splits may be as short as a tile (its groups are cheap to start and sdpa_combine's merge is small). */
static int choose_splits(const clattn_context *ctx, const cla_sdpa_plan *p, const cla_tune_config *c,
                         size_t row_groups) {
    const size_t min_split = c->v[CLA_FUSED_VARIANT] == CLA_FUSED_DECODE ? (size_t)c->v[CLA_FUSED_BLOCK_N] : 256;
    size_t target = (size_t)(ctx->info.compute_units ? ctx->info.compute_units : 1) *
                    (ctx->info.type == CLATTN_DEVICE_TYPE_GPU ? 4 : 2);
    if (c->v[CLA_FUSED_SPLITS] > 0) return c->v[CLA_FUSED_SPLITS];
    if (row_groups >= target || p->kv_len < 2 * min_split) return 1;
    size_t want = (target + row_groups - 1) / row_groups;
    size_t most = p->kv_len / min_split;
    size_t n = want < most ? want : most;
    return n < 1 ? 1 : (int)n;
}

/* " -DCLA_FP32_DENORMS=1" where the CPU kernel decodes fp8 keys or values on a device that keeps fp32 denormals
 * (CL_FP_DENORM: not flushed unless a program asks for it), whose eight-lane decode then needs no per-lane
 * selects (common.cl); "" elsewhere, so that no other program's options change. */
static const char *fp8_denorm_define(const clattn_context *ctx, const cla_sdpa_plan *p, bool cpu) {
    cl_device_fp_config fp = 0;
    if (!cpu || (p->k.dtype != CLATTN_DTYPE_FP8_E4M3 && p->v.dtype != CLATTN_DTYPE_FP8_E4M3)) return "";
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL) != CL_SUCCESS) return "";
    return (fp & CL_FP_DENORM) ? " -DCLA_FP32_DENORMS=1" : "";
}

/* " -DCLA_CPU_PREFETCH=<cache line bytes>" where the CPU kernel runs on PoCL's CPU devices, whose compiler lowers
 * __builtin_prefetch to the processor's prefetch instructions (the kernel's row shape prefetches the rows it reads
 * next; docs/benchmarks.md has the measurement); "" elsewhere: another compiler may reject the builtin, or accept
 * it and fail when the kernel is created (Oclgrind does). */
static void cpu_prefetch_define(const clattn_context *ctx, bool cpu, char *out, size_t size) {
    out[0] = '\0';
    if (!cpu || ctx->info.type != CLATTN_DEVICE_TYPE_CPU ||
        !strstr(ctx->info.platform_name, "Portable Computing Language"))
        return;
    cl_uint line = 0;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHELINE_SIZE, sizeof line, &line, NULL) != CL_SUCCESS ||
        line < 16 || line > 1024 || (line & (line - 1)))
        line = 64;
    snprintf(out, size, " -DCLA_CPU_PREFETCH=%u", (unsigned)line);
}

/* Whether a tensor's rows of one head lie next to each other, as in [B, H, L, D]. */
static bool rows_adjacent(const clattn_tensor *t) {
    return t->stride[3] == 1 && t->stride[2] == t->size[3];
}

/* Whether the CPU kernel's block shape reads keys and values from compact copies: where the rows of a head lie
 * apart (a packed [1, total, H, D] tensor puts them H * D elements apart), each tile of keys spans H times the
 * pages and cache lines, and the kernel, which streams a head's keys once per block of ROWS query rows, loses a
 * quarter of its speed at H = 8 (the varlen prefill of clattn issue 15). A copy costs one pass over K and V, repaid
 * where the longest sequence has at least CPU_COMPACT_MIN_BLOCKS row blocks to read each key. Paged caches are
 * left as they are (their tiles are gathered a page at a time). */
#define CPU_COMPACT_MIN_BLOCKS 4
/* The copies are a speed-up, never a condition: they are made only where each fits in an eighth of the device's
 * largest allocation and 1 GiB, so that a call the kernel can serve in place never fails for want of memory. */
static bool cpu_compact_fits(const clattn_context *ctx, const clattn_tensor *t) {
    const uint64_t cap =
        ctx->info.max_alloc_bytes / 8 < ((uint64_t)1 << 30) ? ctx->info.max_alloc_bytes / 8 : ((uint64_t)1 << 30);
    return cla_tensor_elements(t) <= cap / clattn_dtype_size(t->dtype);
}

static bool cpu_compact_kv(const clattn_context *ctx, const cla_sdpa_plan *p, const cla_tune_config *c) {
    const int rows = c->v[CLA_FUSED_ROWS];
    return c->v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU && rows > 1 && p->kv_layout != CLA_KV_PAGED &&
           p->q_len >= (size_t)CPU_COMPACT_MIN_BLOCKS * (size_t)rows &&
           (!rows_adjacent(&p->k) || !rows_adjacent(&p->v)) && cpu_compact_fits(ctx, &p->k) &&
           cpu_compact_fits(ctx, &p->v);
}

/* Enqueues a copy of `src` into a new [B, H, L, D] temporary (*buffer, for the caller to release) and describes
 * it in *dst. */
static clattn_status compact_copy(clattn_context *ctx, cla_chain *chain, const clattn_tensor *src,
                                  clattn_tensor *dst, cl_mem *buffer, const char *what) {
    *dst = clattn_tensor_bhld(NULL, src->dtype, src->size[0], src->size[1], src->size[2], src->size[3]);
    clattn_status st = cla_temp_buffer(ctx, cla_tensor_elements(src) * clattn_dtype_size(src->dtype), what, buffer);
    if (st != CLATTN_SUCCESS) return st;
    dst->buffer = *buffer;
    return cla_chain_copy_view(ctx, chain, src, dst, what);
}

clattn_status cla_sdpa_fused(clattn_context *ctx, const cla_sdpa_plan *p, cla_chain *chain) {
    const cla_tune_op *op = &cla_tune_op_sdpa_fused;
    cla_tune_config c;
    clattn_status st = choose_params(ctx, p, &c);
    if (st != CLATTN_SUCCESS) return st;
    int *const v = c.v;

    const size_t bh = p->batch * p->q_heads;
    /* The key splits follow the whole call's rows, so that a part of a split call runs what one device would. */
    const size_t whole_bh = p->whole_batch * p->whole_heads;
    const bool cpu = v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU, flash = v[CLA_FUSED_VARIANT] == CLA_FUSED_FLASH;
    /* The decode kernel: one group per (batch item, key/value head, split) with every packed row. */
    const bool decode = v[CLA_FUSED_VARIANT] == CLA_FUSED_DECODE;
    /* The flash kernel's grid runs over packed rows (query rows times the query heads of a key/value head) of each
     * (batch item, key/value head); the others' over query rows of each (batch item, query head). */
    const size_t group = p->q_heads / p->kv_heads;
    /* The CPU kernel's row shape with gqa_pack packs the same rows, PACK_ROWS to a work-item. */
    const bool pack = cpu && v[CLA_FUSED_ROWS] == 1 && v[CLA_FUSED_GQA_PACK] == 1;
    const size_t units = flash || pack || decode ? p->batch * p->kv_heads : bh;
    const size_t unit_rows = flash || pack || decode ? p->q_len * group : p->q_len;
    const size_t pack_rows = pack ? cpu_pack_rows(p, unit_rows) : 1;
    const char *name = cla_tune_kernel_of(op, &c)->kernel, *source = cla_tune_kernel_of(op, &c)->source;
    char common[640], defines[128], options[928], combine_options[768], prefetch[32];
    cpu_prefetch_define(ctx, cpu, prefetch, sizeof prefetch);
    cla_sdpa_common_defines(p, true, common, sizeof common);
    cl_kernel kernel = NULL, combine = NULL;
    /* The caller's score_mod and mask_mod, compiled in ahead of the kernel's source. */
    char *prefix = NULL;
    if ((st = cla_sdpa_mod_prefix(ctx, p, &prefix))) return st;
    int nsplit = 1, split_len = 1;
    bool split = false;
    for (;;) {
        const size_t rows_per_group = flash    ? cla_flash_block_rows(&c)
                                      : pack   ? pack_rows
                                      : decode ? unit_rows
                                               : (size_t)v[CLA_FUSED_ROWS] * (size_t)v[CLA_FUSED_WG];
        const size_t row_groups = (unit_rows + rows_per_group - 1) / rows_per_group *
                                  (flash || pack || decode ? whole_bh / group : whole_bh);
        nsplit = choose_splits(ctx, p, &c, row_groups);
        split_len = (int)round_up((p->kv_len + (size_t)nsplit - 1) / (size_t)nsplit, (size_t)v[CLA_FUSED_BLOCK_N]);
        if (split_len < 1) split_len = v[CLA_FUSED_BLOCK_N];
        /* Each split sums its keys in single fp32 accumulators (the row sum, each output column): more splits where
         * one would take more than CLA_MAX_KEYS_PER_SUM keys, whatever the occupancy or an override asked for. */
        const size_t most = CLA_MAX_KEYS_PER_SUM / (size_t)v[CLA_FUSED_BLOCK_N] * (size_t)v[CLA_FUSED_BLOCK_N];
        if ((size_t)split_len > most) split_len = (int)most;
        nsplit = p->kv_len ? (int)((p->kv_len + (size_t)split_len - 1) / (size_t)split_len) : 1;
        split = nsplit > 1;
        cla_tune_defines(op, &c, defines, sizeof defines);
        snprintf(options, sizeof options, "%s%s -DSPLIT_KV=%d -DPACK_ROWS=%zu%s%s", common, defines, split,
                 pack_rows, fp8_denorm_define(ctx, p, cpu), prefetch);
        if ((st = cla_kernel_get_prefixed(ctx, source, prefix, options, name, &kernel))) {
            if (st == CLATTN_ERROR_BUILD_FAILED && prefix) cla_sdpa_frame_mods(ctx, p);
            free(prefix);
            return st;
        }
        /* A compiler may allow a kernel fewer work-items than the device (registers, local memory); then the
         * work-group shrinks until it fits, as the tiled kernel works at any power-of-two size. */
        size_t kernel_max = 0;
        const int least_wg = flash ? 2 * v[CLA_FUSED_BLOCK_N] / CLA_FLASH_TN : 2;
        /* The decode kernel keeps its keys per work-item: its tile shrinks with the group. */
        if (cpu || !v[CLA_FUSED_LOCAL] || v[CLA_FUSED_WG] < least_wg ||
            clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max, &kernel_max,
                                     NULL) != CL_SUCCESS ||
            kernel_max >= (size_t)v[CLA_FUSED_WG])
            break;
        cla_log(ctx, CLATTN_LOG_DEBUG, "fused attention: '%s' allows %zu work-items for %s, not %d; using %d",
                ctx->info.name, kernel_max, name, v[CLA_FUSED_WG], v[CLA_FUSED_WG] / 2);
        v[CLA_FUSED_WG] /= 2;
        if (decode) v[CLA_FUSED_BLOCK_N] /= 2;
    }
    free(prefix);
    /* The CPU and flash variants' splits are merged by the tiled file's sdpa_combine, which depends on the common
     * defines alone: one program per call shape, whatever the tile parameters. */
    snprintf(combine_options, sizeof combine_options, "%s -DSPLIT_KV=1", common);
    const char *combine_build = cpu || flash || decode ? combine_options : options;
    if (split && (st = cla_kernel_get(ctx, "sdpa_fused", combine_build, "sdpa_combine", &combine))) return st;

    cl_mem partial = NULL, seqs = NULL;
    cl_int4 seq_at;
    /* The CPU block shape takes packed queries from a work list (block_work in sdpa_fused_cpu.cl). */
    const bool work_list = cpu && v[CLA_FUSED_ROWS] > 1 && p->varlen_q;
    cla_work_list work = {work_list ? (size_t)v[CLA_FUSED_ROWS] : 0, (size_t)nsplit, 0};
    if (split) {
        size_t floats = bh * p->q_len * (size_t)nsplit * (p->v_head_dim + 2);
        st = cla_temp_buffer(ctx, floats * sizeof(float), "the key-split workspace", &partial);
        if (st != CLATTN_SUCCESS) return st;
    }
    /* The keys and values the kernel reads: the caller's, or their compact copies. */
    clattn_tensor keys = p->k, values = p->v;
    cl_mem k_copy = NULL, v_copy = NULL;
    if ((st = cla_sdpa_seq_buffer(ctx, p, &work, &seqs, &seq_at)) ||
        (cpu_compact_kv(ctx, p, &c) &&
         ((st = compact_copy(ctx, chain, &p->k, &keys, &k_copy, "a compact copy of the keys")) ||
          (st = compact_copy(ctx, chain, &p->v, &values, &v_copy, "a compact copy of the values"))))) {
        cla_temp_release(ctx, &partial);
        cla_temp_release(ctx, &seqs);
        cla_temp_release(ctx, &k_copy);
        cla_temp_release(ctx, &v_copy);
        return st;
    }

    cl_long4 qs = cla_strides4(&p->q), ks = cla_strides4(&keys), vs = cla_strides4(&values),
             os = cla_strides4(&p->out);
    cl_long4 ms = cla_strides4(&p->mask), ls = cla_strides4(&p->lse);
    cl_long8 offsets = {{(cl_long)p->q.offset, (cl_long)keys.offset, (cl_long)values.offset, (cl_long)p->out.offset,
                         (cl_long)p->mask.offset, (cl_long)p->key_lengths_offset, (cl_long)p->lse.offset,
                         (cl_long)p->block_mask.offset}};
    cl_int4 dims = {{(cl_int)p->q_heads, (cl_int)p->q_len, (cl_int)p->kv_len, (cl_int)(p->q_heads / p->kv_heads)}};
    cl_float scale_log2 = p->scale * 1.4426950408889634f;
    /* Validation made every window side -1 or narrower than Lq + Lk (at most 2^29), so it fits an int. */
    cl_int2 window = {{(cl_int)p->window_left, (cl_int)p->window_right}};
    cl_int split_arg = split_len;
    cl_float softcap2 = cla_sdpa_softcap2(p);
    cl_long4 mods = cla_sdpa_mods(p);
    cl_long4 kss = cla_strides4(&p->k_scale), vss = cla_strides4(&p->v_scale);
    cl_long2 scale_offsets = {{(cl_long)p->k_scale.offset, (cl_long)p->v_scale.offset}};
    cl_long4 bms = cla_strides4(&p->block_mask);
    cl_int4 bm_dims = cla_sdpa_block_dims(p);
    /* Each tensor with its strides, then the scalars, in the order of SDPA_FUSED_ARGS: a table, two to a line. */
    // clang-format off
    const cla_named_arg args[] = {
        CLA_NAMED("q", p->q.buffer),        CLA_NAMED("q_stride", qs),
        CLA_NAMED("k", keys.buffer),        CLA_NAMED("k_stride", ks),
        CLA_NAMED("v", values.buffer),      CLA_NAMED("v_stride", vs),
        CLA_NAMED("o", p->out.buffer),      CLA_NAMED("o_stride", os),
        CLA_NAMED("mask", p->mask.buffer),  CLA_NAMED("mask_stride", ms),
        CLA_NAMED("key_lengths", p->key_lengths),
        CLA_NAMED("lse", p->lse.buffer),    CLA_NAMED("lse_stride", ls),
        CLA_NAMED("offsets", offsets),      CLA_NAMED("dims", dims),
        CLA_NAMED("scale_log2", scale_log2), CLA_NAMED("window", window),
        CLA_NAMED("split_len", split_arg),  CLA_NAMED("partial", partial),
        CLA_NAMED("softcap2", softcap2),    CLA_NAMED("sinks", p->sinks.buffer),
        CLA_NAMED("alibi", p->alibi_slopes.buffer), CLA_NAMED("mods", mods),
        CLA_NAMED("mod_buf0", p->mod_buffers[0].buffer), CLA_NAMED("mod_buf1", p->mod_buffers[1].buffer),
        CLA_NAMED("seqs", seqs),            CLA_NAMED("seq_at", seq_at),
        CLA_NAMED("k_scale", p->k_scale.buffer), CLA_NAMED("ks_stride", kss),
        CLA_NAMED("v_scale", p->v_scale.buffer), CLA_NAMED("vs_stride", vss),
        CLA_NAMED("scale_offsets", scale_offsets),
        CLA_NAMED("block_mask", p->block_mask.buffer), CLA_NAMED("bm_stride", bms),
        CLA_NAMED("bm_dims", bm_dims),
    };
    // clang-format on
    st = cla_set_named_args(ctx, kernel, name, op->args, args, CLA_ARRAY_SIZE(args));
    if (st == CLATTN_SUCCESS) {
        const size_t rows = (size_t)v[CLA_FUSED_ROWS], wg = (size_t)v[CLA_FUSED_WG];
        size_t items_x = flash    ? (unit_rows + cla_flash_block_rows(&c) - 1) / cla_flash_block_rows(&c) * wg
                         : decode ? wg
                         : pack   ? (unit_rows + pack_rows - 1) / pack_rows
                                  : (p->q_len + rows - 1) / rows;
        size_t global[3] = {v[CLA_FUSED_LOCAL] ? round_up(items_x, wg) : items_x, units, (size_t)nsplit};
        size_t local[3] = {wg, 1, 1};
        /* A launch covers whole batch-head slices (batch-key-head slices for flash), as many as the context's
         * max_launch_pairs allows (at least one), so that no single kernel runs long enough for a display driver's
         * watchdog; a work list's launches cover whole groups of it. */
        const size_t pairs = work_list ? (size_t)v[CLA_FUSED_ROWS] * p->kv_len : unit_rows * p->kv_len;
        const int dim = work_list ? 0 : 1;
        const size_t count = work_list ? work.groups : units;
        if (work_list) global[1] = 1;
        size_t per_launch = count;
        if (ctx->max_launch_pairs && pairs) {
            uint64_t slices = ctx->max_launch_pairs / pairs;
            per_launch = slices < 1 ? 1 : slices < count ? (size_t)slices : count;
        }
        for (size_t first = 0; first < count && st == CLATTN_SUCCESS; first += per_launch) {
            size_t offset[3] = {0, 0, 0};
            offset[dim] = first;
            global[dim] = count - first < per_launch ? count - first : per_launch;
            /* The CPU variant requires one work-item per group (reqd_work_group_size), so that PoCL wraps no
             * loop over work-items around it and keeps its vectors as written. */
            st = cla_chain_kernel_at(ctx, chain, kernel, 3, offset, global,
                                     v[CLA_FUSED_LOCAL] || cpu ? local : NULL, name);
        }
    }
    if (st == CLATTN_SUCCESS && split) {
        cl_int ns = nsplit;
        const cla_named_arg cargs[] = {
            CLA_NAMED("partial", partial), CLA_NAMED("nsplit", ns),         CLA_NAMED("o", p->out.buffer),
            CLA_NAMED("o_stride", os),     CLA_NAMED("lse", p->lse.buffer), CLA_NAMED("lse_stride", ls),
            CLA_NAMED("offsets", offsets), CLA_NAMED("dims", dims),         CLA_NAMED("sinks", p->sinks.buffer),
            CLA_NAMED("mods", mods),       CLA_NAMED("seqs", seqs),         CLA_NAMED("seq_at", seq_at),
        };
        st = cla_set_named_args(ctx, combine, "sdpa_combine", cla_args_sdpa_combine.names, cargs,
                                CLA_ARRAY_SIZE(cargs));
        size_t global[2] = {p->q_len, bh};
        if (st == CLATTN_SUCCESS) st = cla_chain_kernel(ctx, chain, combine, 2, global, NULL, "sdpa_combine");
    }
    /* Released now, freed by OpenCL once the kernels that use it have finished. */
    cla_temp_release(ctx, &partial);
    cla_temp_release(ctx, &seqs);
    cla_temp_release(ctx, &k_copy);
    cla_temp_release(ctx, &v_copy);
    return st;
}
