// SPDX-License-Identifier: Apache-2.0
/* The fused attention path, host side: the kernel variant and its parameters for the device in hand, the split
 * over keys for decode-shaped calls (flash-decoding), and the launch of kernels_cl/sdpa_fused.cl (the tiled
 * variant, for GPUs and accelerators) or kernels_cl/sdpa_fused_cpu.cl (the CPU variant). Both variants take the
 * same arguments and write the same key-split partial state, which sdpa_combine in sdpa_fused.cl merges. */
#include "sdpa_internal.h"
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FUSED_TILED = 0, FUSED_CPU = 1 };

typedef struct fused_params {
    int variant;   /* FUSED_TILED: sdpa_fused (wg, local apply); FUSED_CPU: sdpa_fused_cpu (one work-item groups) */
    int rows;      /* query rows per work-item (CPU variant: 1, or a multiple of 8) */
    int block_n;   /* keys per tile */
    int wg_size;   /* work-items per work-group (along the rows) */
    int use_local; /* stage K/V tiles in local memory */
    int splits;    /* key splits; 0 chooses by the shape */
} fused_params;

/* The context's override of the defaults (clattn_context_set_kernel_params, or CLATTN_FUSED_PARAMS at creation),
 * for kernel development, tuning and tests, as comma-separated key=value pairs, for example
 * "variant=tiled,rows=4,block_n=16,wg=8,local=0,splits=3". Keys:
 *   variant  tiled (kernels_cl/sdpa_fused.cl, the GPU and accelerator kernel) or cpu (kernels_cl/sdpa_fused_cpu.cl,
 *            the default on CPU devices)
 *   rows     query rows per work-item (cpu: 1 is the row shape, more are rounded up to a multiple of 8)
 *   block_n  keys per tile
 *   wg       work-items per work-group along the rows (tiled only; cpu runs one work-item per group)
 *   local    1 stages K/V tiles in local memory (tiled only)
 *   splits   key splits; 0 chooses by the shape (rows longer than CLA_MAX_KEYS_PER_SUM keys get more)
 * Unknown keys and bad values are an error, so that a typo cannot silently test the defaults. */
static clattn_status apply_override(clattn_context *ctx, const char *env, const char *origin, fused_params *fp) {
    const char *p = env;
    while (*p) {
        char key[16], text[16];
        int used = 0;
        if (sscanf(p, "%15[a-z_]=%15[a-z0-9]%n", key, text, &used) != 2)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s='%s': expected key=value pairs separated by commas", origin, env);
        char *end = NULL;
        long value = strtol(text, &end, 10);
        bool number = *end == '\0' && value >= 0 && value <= 1 << 20;
        if (strcmp(key, "variant") == 0 && strcmp(text, "tiled") == 0)
            fp->variant = FUSED_TILED;
        else if (strcmp(key, "variant") == 0 && strcmp(text, "cpu") == 0)
            fp->variant = FUSED_CPU;
        else if (strcmp(key, "rows") == 0 && number && value >= 1)
            fp->rows = (int)value;
        else if (strcmp(key, "block_n") == 0 && number && value >= 1)
            fp->block_n = (int)value;
        else if (strcmp(key, "wg") == 0 && number && value >= 1)
            fp->wg_size = (int)value;
        else if (strcmp(key, "local") == 0 && number)
            fp->use_local = value != 0;
        else if (strcmp(key, "splits") == 0 && number)
            fp->splits = (int)value;
        else
            return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s: unknown key or bad value '%s=%s' (keys: variant=tiled|cpu, rows, block_n, wg, "
                            "local, splits)",
                            origin, key, text);
        p += used;
        if (*p == ',')
            ++p;
        else if (*p)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s='%s': expected a comma after '%s=%s'", origin,
                            env, key, text);
    }
    return CLATTN_SUCCESS;
}

static size_t round_up(size_t x, size_t m) {
    return (x + m - 1) / m * m;
}

clattn_status cla_sdpa_fused_override(clattn_context *ctx, const cla_tune_problem *p, cla_tune_config *c,
                                      bool *given) {
    const char *origin = NULL;
    const char *env = cla_kernel_params(ctx, &cla_tune_op_sdpa_fused, &origin);
    *given = env != NULL;
    if (!*given) return CLATTN_SUCCESS;
    /* A field the override leaves out (0 here, -1 for local) takes the default of the variant it chose, then the
     * whole is shrunk to fit the device's limits. */
    fused_params fp = {-1, 0, 0, 0, -1, 0};
    clattn_status st = apply_override(ctx, env, origin, &fp);
    if (st != CLATTN_SUCCESS) return st;
    for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) c->v[i] = -1;
    c->v[CLA_FUSED_VARIANT] = fp.variant;
    c->v[CLA_FUSED_ROWS] = fp.rows ? fp.rows : -1;
    c->v[CLA_FUSED_BLOCK_N] = fp.block_n ? fp.block_n : -1;
    c->v[CLA_FUSED_WG] = fp.wg_size ? fp.wg_size : -1;
    c->v[CLA_FUSED_LOCAL] = fp.use_local;
    c->v[CLA_FUSED_SPLITS] = fp.splits;
    cla_sdpa_fused_complete(&ctx->info, p, c);
    /* The CPU variant's tiles live in private memory (the worker thread's stack under PoCL): keep them to 100s of
     * KiB. */
    if (c->v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU && (c->v[CLA_FUSED_ROWS] > 64 || c->v[CLA_FUSED_BLOCK_N] > 512))
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "%s: the cpu variant takes rows up to 64 and block_n up to 512, not %d and %d", origin,
                        c->v[CLA_FUSED_ROWS], c->v[CLA_FUSED_BLOCK_N]);
    return CLATTN_SUCCESS;
}

/* The parameters for this call: the context's override, else its tuning database, else the built-in
 * defaults for the device type (all in tuning.c's description of this kernel). */
static clattn_status choose_params(clattn_context *ctx, const cla_sdpa_plan *p, fused_params *fp) {
    cla_tune_problem prob = {
        p->head_dim,    p->v_head_dim,  p->q.dtype, p->mask_kind, p->causal != CLATTN_CAUSAL_NONE,
        p->whole_batch, p->whole_heads, p->q_len,   p->kv_len};
    cla_tune_choice ch;
    clattn_status st = cla_tuning_choose(ctx, &cla_tune_op_sdpa_fused, &prob, &ch);
    if (st != CLATTN_SUCCESS) return st;
    const int *v = ch.config.v;
    fp->variant = v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU ? FUSED_CPU : FUSED_TILED;
    fp->rows = v[CLA_FUSED_ROWS];
    fp->block_n = v[CLA_FUSED_BLOCK_N];
    fp->wg_size = v[CLA_FUSED_WG];
    fp->use_local = v[CLA_FUSED_LOCAL];
    fp->splits = v[CLA_FUSED_SPLITS];
    return CLATTN_SUCCESS;
}

/* How many key splits keep every compute unit busy: 1 unless the rows alone leave the device idle. */
static int choose_splits(const clattn_context *ctx, const cla_sdpa_plan *p, const fused_params *fp,
                         size_t row_groups) {
    const size_t min_split = 256;
    size_t target = (size_t)(ctx->info.compute_units ? ctx->info.compute_units : 1) *
                    (ctx->info.type == CLATTN_DEVICE_TYPE_GPU ? 4 : 2);
    if (fp->splits > 0) return fp->splits;
    if (row_groups >= target || p->kv_len < 2 * min_split) return 1;
    size_t want = (target + row_groups - 1) / row_groups;
    size_t most = p->kv_len / min_split;
    size_t n = want < most ? want : most;
    return n < 1 ? 1 : (int)n;
}

clattn_status cla_sdpa_fused(clattn_context *ctx, const cla_sdpa_plan *p, cla_chain *chain) {
    fused_params fp;
    clattn_status st = choose_params(ctx, p, &fp);
    if (st != CLATTN_SUCCESS) return st;

    const size_t bh = p->batch * p->q_heads;
    /* The key splits follow the whole call's rows, so that a part of a split call runs what one device would. */
    const size_t whole_bh = p->whole_batch * p->whole_heads;
    const bool cpu = fp.variant == FUSED_CPU;
    const char *name = cpu ? "sdpa_fused_cpu" : "sdpa_fused";
    char common[512], options[768], combine_options[640];
    cla_sdpa_common_defines(p, true, common, sizeof common);
    cl_kernel kernel = NULL, combine = NULL;
    int nsplit = 1, split_len = 1;
    bool split = false;
    for (;;) {
        const size_t rows_per_group = (size_t)fp.rows * (size_t)fp.wg_size;
        const size_t row_groups = (p->q_len + rows_per_group - 1) / rows_per_group * whole_bh;
        nsplit = choose_splits(ctx, p, &fp, row_groups);
        split_len = (int)round_up((p->kv_len + (size_t)nsplit - 1) / (size_t)nsplit, (size_t)fp.block_n);
        if (split_len < 1) split_len = fp.block_n;
        /* Each split sums its keys in single fp32 accumulators (the row sum, each output column): more splits where
         * one would take more than CLA_MAX_KEYS_PER_SUM keys, whatever the occupancy or an override asked for. */
        const size_t most = CLA_MAX_KEYS_PER_SUM / (size_t)fp.block_n * (size_t)fp.block_n;
        if ((size_t)split_len > most) split_len = (int)most;
        nsplit = p->kv_len ? (int)((p->kv_len + (size_t)split_len - 1) / (size_t)split_len) : 1;
        split = nsplit > 1;
        if (cpu)
            snprintf(options, sizeof options, "%s -DROWS=%d -DBLOCK_N=%d -DSPLIT_KV=%d", common, fp.rows,
                     fp.block_n, split);
        else
            snprintf(options, sizeof options, "%s -DROWS=%d -DBLOCK_N=%d -DWG_SIZE=%d -DUSE_LOCAL=%d -DSPLIT_KV=%d",
                     common, fp.rows, fp.block_n, fp.wg_size, fp.use_local, split);
        if ((st = cla_kernel_get(ctx, name, options, name, &kernel))) return st;
        /* A compiler may allow a kernel fewer work-items than the device (registers, local memory); then the
         * work-group shrinks until it fits, as the tiled kernel works at any power-of-two size. */
        size_t kernel_max = 0;
        if (cpu || !fp.use_local || fp.wg_size <= 1 ||
            clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max, &kernel_max,
                                     NULL) != CL_SUCCESS ||
            kernel_max >= (size_t)fp.wg_size)
            break;
        cla_log(ctx, CLATTN_LOG_DEBUG, "fused attention: '%s' allows %zu work-items for %s, not %d; using %d",
                ctx->info.name, kernel_max, name, fp.wg_size, fp.wg_size / 2);
        fp.wg_size /= 2;
    }
    /* The CPU variant's splits are merged by the tiled file's sdpa_combine, which depends on the common defines
     * alone: one program per call shape, whatever the tile parameters. */
    snprintf(combine_options, sizeof combine_options, "%s -DSPLIT_KV=1", common);
    const char *combine_build = cpu ? combine_options : options;
    if (split && (st = cla_kernel_get(ctx, "sdpa_fused", combine_build, "sdpa_combine", &combine))) return st;

    cl_mem partial = NULL;
    if (split) {
        size_t floats = bh * p->q_len * (size_t)nsplit * (p->v_head_dim + 2);
        st = cla_temp_buffer(ctx, floats * sizeof(float), "the key-split workspace", &partial);
        if (st != CLATTN_SUCCESS) return st;
    }

    cl_long4 qs = cla_strides4(&p->q), ks = cla_strides4(&p->k), vs = cla_strides4(&p->v),
             os = cla_strides4(&p->out);
    cl_long4 ms = cla_strides4(&p->mask), ls = cla_strides4(&p->lse);
    cl_long8 offsets = {{(cl_long)p->q.offset, (cl_long)p->k.offset, (cl_long)p->v.offset, (cl_long)p->out.offset,
                         (cl_long)p->mask.offset, (cl_long)p->key_lengths_offset, (cl_long)p->lse.offset, 0}};
    cl_int4 dims = {{(cl_int)p->q_heads, (cl_int)p->q_len, (cl_int)p->kv_len, (cl_int)(p->q_heads / p->kv_heads)}};
    cl_float scale_log2 = p->scale * 1.4426950408889634f;
    /* Validation made every window side -1 or narrower than Lq + Lk (at most 2^29), so it fits an int. */
    cl_int2 window = {{(cl_int)p->window_left, (cl_int)p->window_right}};
    cl_int split_arg = split_len;
    cl_mem q = p->q.buffer, k = p->k.buffer, v = p->v.buffer, o = p->out.buffer, mask = p->mask.buffer;
    cl_mem kl = p->key_lengths, lse = p->lse.buffer;
    st = cla_set_args(ctx, kernel, name, 19, CLA_ARG(q), CLA_ARG(qs), CLA_ARG(k), CLA_ARG(ks), CLA_ARG(v),
                      CLA_ARG(vs), CLA_ARG(o), CLA_ARG(os), CLA_ARG(mask), CLA_ARG(ms), CLA_ARG(kl), CLA_ARG(lse),
                      CLA_ARG(ls), CLA_ARG(offsets), CLA_ARG(dims), CLA_ARG(scale_log2), CLA_ARG(window),
                      CLA_ARG(split_arg), CLA_ARG(partial));
    if (st == CLATTN_SUCCESS) {
        size_t items_x = (p->q_len + (size_t)fp.rows - 1) / (size_t)fp.rows;
        size_t global[3] = {fp.use_local ? round_up(items_x, (size_t)fp.wg_size) : items_x, bh, (size_t)nsplit};
        size_t local[3] = {(size_t)fp.wg_size, 1, 1};
        /* A launch covers whole batch-head slices, as many as the context's max_launch_pairs allows (at least
         * one), so that no single kernel runs long enough for a display driver's watchdog. */
        const size_t pairs = p->q_len * p->kv_len;
        size_t per_launch = bh;
        if (ctx->max_launch_pairs && pairs) {
            uint64_t slices = ctx->max_launch_pairs / pairs;
            per_launch = slices < 1 ? 1 : slices < bh ? (size_t)slices : bh;
        }
        for (size_t first = 0; first < bh && st == CLATTN_SUCCESS; first += per_launch) {
            size_t offset[3] = {0, first, 0};
            global[1] = bh - first < per_launch ? bh - first : per_launch;
            /* The CPU variant requires one work-item per group (reqd_work_group_size), so that PoCL wraps no
             * loop over work-items around it and keeps its vectors as written. */
            st = cla_chain_kernel_at(ctx, chain, kernel, 3, offset, global, fp.use_local || cpu ? local : NULL,
                                     name);
        }
    }
    if (st == CLATTN_SUCCESS && split) {
        cl_int ns = nsplit;
        st = cla_set_args(ctx, combine, "sdpa_combine", 8, CLA_ARG(partial), CLA_ARG(ns), CLA_ARG(o), CLA_ARG(os),
                          CLA_ARG(lse), CLA_ARG(ls), CLA_ARG(offsets), CLA_ARG(dims));
        size_t global[2] = {p->q_len, bh};
        if (st == CLATTN_SUCCESS) st = cla_chain_kernel(ctx, chain, combine, 2, global, NULL, "sdpa_combine");
    }
    /* Released now, freed by OpenCL once the kernels that use it have finished. */
    cla_temp_release(ctx, &partial);
    return st;
}
