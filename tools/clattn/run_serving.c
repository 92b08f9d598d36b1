// SPDX-License-Identifier: Apache-2.0
/* `clattn run sdpa` on the serving formats: packed variable-length batches (--cu-seqlens-q/-k with [total, H, D]
 * arrays), a paged KV cache (--k-cache/--v-cache [num_blocks, block_size, Hkv, D] with --block-table and
 * --seqlens-k), dense --k/--v caches with --seqlens-k, and keys and values stored in a type of their own
 * (--kv-dtype; 8-bit ones quantized on upload). These run on device buffers through clattn_sdpa itself: the host
 * convenience layer takes dense [B, H, L, D] arrays of one storage type only. --check computes each sequence alone
 * with the double-precision reference, on the values the device holds. */
#define _POSIX_C_SOURCE 200809L
#include "run_serving.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_tolerance.h"
#include "cli.h"
#include "npy.h"
#include "run_common.h"
#include "serving_check.h"
#include "serving_kv.h"

#define CMD "run sdpa"

/* Everything one run owns, freed in one place. */
typedef struct serving_run {
    npy_array q_npy, k_npy, v_npy;
    float *q, *k, *v, *out, *lse;
    int32_t *cu_q, *cu_k, *table, *seqlens, *key_lengths;
    run_mask mask;
    run_score_mods mods;
    run_block_mask block_mask;
    run_mod_buffers mod_buffers;
    serving_seqs seqs;
    /* The host arrays' layouts, which the device tensors share. */
    clattn_tensor qv, kv, vv, ov, lv;
    size_t total_q; /* rows of q: B * Lq dense, the packed array's first size otherwise */
    clattn_dtype dtype, kv_dtype;
    serving_kv kd, vd;
    cl_mem bufs[16];
    size_t nbufs;
} serving_run;

static void free_run(serving_run *r) {
    npy_free(&r->q_npy);
    npy_free(&r->k_npy);
    npy_free(&r->v_npy);
    void *owned[] = {r->q,    r->k,     r->v,       r->out,         r->lse,           r->cu_q,
                     r->cu_k, r->table, r->seqlens, r->key_lengths, r->mask.additive, r->mask.bool_mask};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i) free(owned[i]);
    run_score_mods_free(&r->mods);
    npy_free(&r->block_mask.array);
    run_mod_buffers_free(&r->mod_buffers);
    serving_kv_free(&r->kd);
    serving_kv_free(&r->vd);
    cli_release_buffers(r->bufs, r->nbufs);
}

bool run_serving_requested(const cli_command *cmd) {
    static const char *const names[] = {"cu-seqlens-q", "cu-seqlens-k", "k-cache", "v-cache",
                                        "block-table",  "seqlens-k",    "kv-dtype"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
        if (cli_value(cmd, names[i])) return true;
    return false;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Reading the inputs */

/* Options that cannot apply to a packed, paged or --kv-dtype run, each with what to do instead. */
static int refuse_options(const cli_command *cmd) {
    /* --seqlens-k alone gives dense --k/--v their per-sequence lengths; with a block table it is a paged cache's.
     */
    const bool paged = cli_value(cmd, "k-cache") || cli_value(cmd, "v-cache") || cli_value(cmd, "block-table");
    const bool packed = cli_value(cmd, "cu-seqlens-q") || cli_value(cmd, "cu-seqlens-k");
    if (cli_value(cmd, "weights"))
        return cli_error(CMD, CLI_USAGE,
                         "--weights: packed, paged and --kv-dtype runs go through the fused kernels, which do not "
                         "produce the attention weights; leave --weights out");
    /* The reference is C on doubles and cannot run OpenCL C. */
    if ((cli_value(cmd, "score-mod") || cli_value(cmd, "mask-mod")) && cli_flag(cmd, "check"))
        return cli_error(CMD, CLI_USAGE,
                         "--check cannot evaluate --score-mod/--mask-mod (OpenCL C); compare -o outputs with a run "
                         "of the built-in option they reproduce (--softcap, --alibi-slopes, --window, --causal, "
                         "--mask) instead");
    const char *impl = cli_value(cmd, "impl");
    if (impl && strcmp(impl, "unfused") == 0)
        return cli_error(CMD, CLI_USAGE,
                         "--impl unfused: packed, paged and --kv-dtype runs need the fused kernels; give --impl "
                         "fused or auto");
    if (cli_value(cmd, "random") && (cli_value(cmd, "q") || cli_value(cmd, "k") || cli_value(cmd, "v")))
        return cli_error(CMD, CLI_USAGE, "give either --random or --q/--k/--v, not both");
    if (cli_value(cmd, "random") && (paged || packed))
        return cli_error(CMD, CLI_USAGE,
                         "--random draws dense [B, H, L, D] inputs (it takes --kv-dtype); packed and paged runs "
                         "read .npy files");
    if (paged && !(cli_value(cmd, "k-cache") && cli_value(cmd, "v-cache") && cli_value(cmd, "block-table") &&
                   cli_value(cmd, "seqlens-k")))
        return cli_error(CMD, CLI_USAGE,
                         "a paged cache needs --k-cache, --v-cache, --block-table and --seqlens-k together");
    if (paged && (cli_value(cmd, "k") || cli_value(cmd, "v")))
        return cli_error(CMD, CLI_USAGE, "give --k/--v or a paged cache (--k-cache/--v-cache), not both");
    if ((paged || cli_value(cmd, "seqlens-k")) && cli_value(cmd, "cu-seqlens-k"))
        return cli_error(CMD, CLI_USAGE,
                         "--cu-seqlens-k packs --k/--v; a cache (paged, or dense --k/--v) gives its lengths with "
                         "--seqlens-k");
    if ((paged || cli_value(cmd, "cu-seqlens-k") || cli_value(cmd, "seqlens-k")) && cli_value(cmd, "key-lengths"))
        return cli_error(CMD, CLI_USAGE,
                         "--key-lengths: packed keys and caches have their own lengths (--cu-seqlens-k, "
                         "--seqlens-k); give it with dense 4-D --k/--v only");
    if (!cli_value(cmd, "random") && !cli_value(cmd, "q"))
        return cli_error(CMD, CLI_USAGE, "--q is required (or --random B,Hq,Hkv,Lq,Lk,D)");
    if (!cli_value(cmd, "random") && !paged && !(cli_value(cmd, "k") && cli_value(cmd, "v")))
        return cli_error(CMD, CLI_USAGE, "--k and --v are required (or a paged cache: --k-cache, --v-cache, ...)");
    return CLI_OK;
}

/* A float32 or float16 array of `ndim` dimensions (`layout` describes them in messages), as floats. */
static int read_floats(const char *opt, const char *path, int ndim, const char *layout, npy_array *a,
                       float **data) {
    char err[512];
    if (npy_read(path, a, err, sizeof err) != 0) return cli_error(CMD, CLI_USAGE, "--%s %s: %s", opt, path, err);
    if (a->ndim != ndim)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected a %d-D %s array, found %d-D", opt, path, ndim, layout,
                         a->ndim);
    if (a->dtype != NPY_F32 && a->dtype != NPY_F16)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected float32 or float16, found %s", opt, path,
                         npy_dtype_name(a->dtype));
    if (!(*data = npy_to_f32(a, err, sizeof err))) return cli_error(CMD, CLI_FAILED, "--%s %s: %s", opt, path, err);
    return CLI_OK;
}

/* An int32 (or int64, each value within int32) index array of `ndim` dimensions into a new int32 array; its shape
 * into shape[0..ndim-1]. */
static int read_index(const char *opt, const char *path, int ndim, const char *layout, int32_t **out,
                      size_t shape[2]) {
    char err[512];
    npy_array a;
    if (npy_read(path, &a, err, sizeof err) != 0) return cli_error(CMD, CLI_USAGE, "--%s %s: %s", opt, path, err);
    int rc = CLI_OK;
    if (a.ndim != ndim)
        rc = cli_error(CMD, CLI_USAGE, "--%s %s: expected a %d-D %s array, found %d-D", opt, path, ndim, layout,
                       a.ndim);
    else if (a.dtype != NPY_I32 && a.dtype != NPY_I64)
        rc = cli_error(CMD, CLI_USAGE, "--%s %s: expected int32 (or int64), found %s", opt, path,
                       npy_dtype_name(a.dtype));
    else if (!(*out = malloc((a.count + 1) * sizeof **out)))
        rc = cli_error(CMD, CLI_FAILED, "out of host memory");
    for (size_t i = 0; rc == CLI_OK && i < a.count; ++i) {
        const int64_t x = a.dtype == NPY_I32 ? ((const int32_t *)a.data)[i] : ((const int64_t *)a.data)[i];
        if (x < INT32_MIN || x > INT32_MAX)
            rc = cli_error(CMD, CLI_USAGE, "--%s %s: value %lld at %zu does not fit in int32", opt, path,
                           (long long)x, i);
        else
            (*out)[i] = (int32_t)x;
    }
    for (int d = 0; rc == CLI_OK && d < ndim; ++d) shape[d] = a.shape[d];
    npy_free(&a);
    return rc;
}

/* --cu-seqlens-X: [B + 1] offsets, B already known (the queries' count) or set from it (*count == SIZE_MAX). */
static int read_cu(const char *opt, const char *path, size_t *count, int32_t **out) {
    size_t shape[2];
    int rc = read_index(opt, path, 1, "[B + 1] offsets", out, shape);
    if (rc) return rc;
    if (shape[0] < 2)
        return cli_error(CMD, CLI_USAGE, "--%s %s: %zu entries; give B + 1 offsets from 0 for B >= 1 sequences",
                         opt, path, shape[0]);
    if (*count == SIZE_MAX) *count = shape[0] - 1;
    if (shape[0] != *count + 1)
        return cli_error(
            CMD, CLI_USAGE,
            "--%s %s: %zu entries, but there are %zu sequences (the queries give them); it needs B + 1 "
            "= %zu offsets",
            opt, path, shape[0], *count, *count + 1);
    return CLI_OK;
}

/* The seeded dense inputs of --random (as `clattn run sdpa --random` draws them without serving options). */
static int random_inputs(const char *spec, serving_run *r) {
    size_t s[6];
    if (run_parse_sizes(spec, s, 6, 1ull << 31) != 0)
        return cli_error(CMD, CLI_USAGE, "--random %s: expected B,Hq,Hkv,Lq,Lk,D (six sizes)", spec);
    const size_t nq = s[0] * s[1] * s[3] * s[5], nk = s[0] * s[2] * s[4] * s[5];
    r->q = malloc((nq + 1) * sizeof(float));
    r->k = malloc((nk + 1) * sizeof(float));
    r->v = malloc((nk + 1) * sizeof(float));
    if (!r->q || !r->k || !r->v) return cli_error(CMD, CLI_FAILED, "out of memory for --random %s", spec);
    unsigned seed = 12345;
    for (size_t i = 0; i < nq; ++i) r->q[i] = support_random(&seed);
    for (size_t i = 0; i < nk; ++i) r->k[i] = support_random(&seed);
    for (size_t i = 0; i < nk; ++i) r->v[i] = support_random(&seed);
    r->seqs.count = s[0];
    r->seqs.q_len = s[3];
    r->seqs.kv_len = s[4];
    r->total_q = s[0] * s[3];
    r->qv = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, s[0], s[1], s[3], s[5]);
    r->kv = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, s[0], s[2], s[4], s[5]);
    r->vv = r->kv;
    return CLI_OK;
}

/* The queries: packed [total_q, Hq, D] with --cu-seqlens-q, else dense [B, Hq, Lq, D]. Sets the sequence count. */
static int read_queries(const cli_command *cmd, serving_run *r) {
    const char *path = cli_value(cmd, "q"), *cu = cli_value(cmd, "cu-seqlens-q");
    int rc;
    if (cu) {
        if ((rc = read_floats("q", path, 3, "[total_q, Hq, D] (packed, with --cu-seqlens-q)", &r->q_npy, &r->q)))
            return rc;
        r->seqs.count = SIZE_MAX;
        if ((rc = read_cu("cu-seqlens-q", cu, &r->seqs.count, &r->cu_q))) return rc;
        const size_t *s = r->q_npy.shape;
        r->seqs.cu_q = r->cu_q;
        r->total_q = s[0];
        r->qv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, 1, s[1], s[0], s[2]);
        return CLI_OK;
    }
    if ((rc = read_floats("q", path, 4, "[B, Hq, Lq, D] (or [total_q, Hq, D] with --cu-seqlens-q)", &r->q_npy,
                          &r->q)))
        return rc;
    const size_t *s = r->q_npy.shape;
    r->seqs.count = s[0];
    r->seqs.q_len = s[2];
    r->total_q = s[0] * s[2];
    r->qv = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, s[0], s[1], s[2], s[3]);
    return CLI_OK;
}

/* Keys and values: packed [total_k, Hkv, D] with --cu-seqlens-k, a paged cache [num_blocks, block_size, Hkv, D], or
 * dense [B, Hkv, Lk, D]. */
static int read_keys(const cli_command *cmd, serving_run *r) {
    const size_t B = r->seqs.count;
    int rc;
    if (cli_value(cmd, "k-cache")) {
        const char *kp = cli_value(cmd, "k-cache"), *vp = cli_value(cmd, "v-cache");
        const char *layout = "[num_blocks, block_size, Hkv, D] (a vLLM cache)";
        if ((rc = read_floats("k-cache", kp, 4, layout, &r->k_npy, &r->k))) return rc;
        if ((rc = read_floats("v-cache", vp, 4, layout, &r->v_npy, &r->v))) return rc;
        const size_t *k = r->k_npy.shape, *v = r->v_npy.shape;
        if (v[0] != k[0] || v[1] != k[1] || v[2] != k[2])
            return cli_error(CMD, CLI_USAGE,
                             "--v-cache [%zu, %zu, %zu, %zu] does not fit --k-cache [%zu, %zu, %zu, %zu]: they "
                             "need the same blocks, block size and heads",
                             v[0], v[1], v[2], v[3], k[0], k[1], k[2], k[3]);
        size_t ts[2], ls[2];
        if ((rc = read_index("block-table", cli_value(cmd, "block-table"), 2, "[B, max_blocks]", &r->table, ts)))
            return rc;
        if ((rc = read_index("seqlens-k", cli_value(cmd, "seqlens-k"), 1, "[B]", &r->seqlens, ls))) return rc;
        if (ts[0] != B || ls[0] != B || ts[1] == 0)
            return cli_error(CMD, CLI_USAGE,
                             "--block-table [%zu, %zu] and --seqlens-k [%zu] do not fit %zu sequences (the "
                             "queries give them): give [B, max_blocks] (max_blocks >= 1) and [B]",
                             ts[0], ts[1], ls[0], B);
        r->seqs.block_table = r->table;
        r->seqs.table_stride = ts[1];
        r->seqs.seqlens_k = r->seqlens;
        r->seqs.page = k[1];
        r->kv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, k[0], k[2], k[1], k[3]);
        r->vv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, v[0], v[2], v[1], v[3]);
        return CLI_OK;
    }
    const char *kp = cli_value(cmd, "k"), *vp = cli_value(cmd, "v"), *cu = cli_value(cmd, "cu-seqlens-k");
    const int nd = cu ? 3 : 4;
    const char *layout = cu ? "[total_k, Hkv, D] (packed, with --cu-seqlens-k)"
                            : "[B, Hkv, Lk, D] (or [total_k, Hkv, D] with --cu-seqlens-k)";
    if ((rc = read_floats("k", kp, nd, layout, &r->k_npy, &r->k))) return rc;
    if ((rc = read_floats("v", vp, nd, layout, &r->v_npy, &r->v))) return rc;
    const size_t *k = r->k_npy.shape, *v = r->v_npy.shape;
    for (int d = 0; d < nd - 1; ++d)
        if (v[d] != k[d])
            return cli_error(CMD, CLI_USAGE, "--v %s: size %zu of dimension %d differs from --k's %zu", vp, v[d], d,
                             k[d]);
    if (cu) {
        size_t count = B;
        if ((rc = read_cu("cu-seqlens-k", cu, &count, &r->cu_k))) return rc;
        r->seqs.cu_k = r->cu_k;
        r->kv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, 1, k[1], k[0], k[2]);
        r->vv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, 1, v[1], v[0], v[2]);
        return CLI_OK;
    }
    if (k[0] != B)
        return cli_error(CMD, CLI_USAGE, "--k %s: batch %zu, but the queries have %zu sequences", kp, k[0], B);
    r->seqs.kv_len = k[2];
    if (cli_value(cmd, "seqlens-k")) { /* a dense cache: each sequence's first seqlens_k[b] keys */
        size_t ls[2];
        if ((rc = read_index("seqlens-k", cli_value(cmd, "seqlens-k"), 1, "[B]", &r->seqlens, ls))) return rc;
        if (ls[0] != B)
            return cli_error(CMD, CLI_USAGE, "--seqlens-k [%zu] does not fit %zu sequences (the queries give them)",
                             ls[0], B);
        r->seqs.seqlens_k = r->seqlens;
    }
    r->kv = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, k[0], k[1], k[2], k[3]);
    r->vv = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, v[0], v[1], v[2], v[3]);
    return CLI_OK;
}

/* The options into the descriptor (all but its tensors and index arrays). */
static int read_options(const cli_command *cmd, serving_run *r, clattn_sdpa_desc *d) {
    const char *s;
    int rc;
    r->dtype = CLATTN_DTYPE_F32;
    if ((s = cli_value(cmd, "dtype")) && (rc = cli_parse_dtype(CMD, s, &r->dtype))) return rc;
    r->kv_dtype = r->dtype;
    if ((s = cli_value(cmd, "kv-dtype")) && (rc = serving_parse_kv_dtype(CMD, s, &r->kv_dtype))) return rc;
    if ((s = cli_value(cmd, "causal")) && (rc = cli_parse_causal(CMD, s, &d->causal))) return rc;
    if ((s = cli_value(cmd, "impl")) && (rc = cli_parse_impl(CMD, s, &d->impl))) return rc;
    if ((s = cli_value(cmd, "window-align")) && (rc = cli_parse_window_align(CMD, s, &d->window_align))) return rc;
    if ((s = cli_value(cmd, "window")) && (rc = cli_parse_window(CMD, s, &d->window_left, &d->window_right)))
        return rc;
    if ((s = cli_value(cmd, "scale")) && (rc = cli_parse_scale(CMD, s, &d->scale))) return rc;
    const size_t want[4] = {r->seqs.count, r->qv.size[1], serving_max_q(&r->seqs), serving_max_k(&r->seqs)};
    if ((s = cli_value(cmd, "mask")) && (rc = run_load_mask(CMD, s, want, false, &r->mask))) return rc;
    if ((s = cli_value(cmd, "key-lengths"))) {
        if ((rc = run_load_key_lengths(CMD, s, r->seqs.count, r->seqs.kv_len, true, &r->key_lengths))) return rc;
        r->seqs.key_lengths = r->key_lengths;
    }
    if ((rc = run_load_score_mods(cmd, r->qv.size[1], &r->mods))) return rc;
    d->softcap = r->mods.softcap;
    /* The caller's mods see each sequence's index and the positions inside it; their buffers go up in upload(). */
    d->score_mod = cli_value(cmd, "score-mod");
    d->mask_mod = cli_value(cmd, "mask-mod");
    if ((s = cli_value(cmd, "mod-buffer")) && (rc = run_load_mod_buffers(CMD, s, &r->mod_buffers))) return rc;
    /* Blocks of each sequence's own positions; the library checks the shape against the sequences. */
    if ((rc = run_load_block_mask(cmd, &r->block_mask))) return rc;
    d->block_mask_q = r->block_mask.bq;
    d->block_mask_k = r->block_mask.bk;
    return CLI_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The call */

static cl_mem keep(serving_run *r, cl_mem m) {
    if (m) r->bufs[r->nbufs++] = m;
    return m;
}

/* A device copy of `bytes` of host data, kept by the run. */
static int input(clattn_context *ctx, serving_run *r, const void *host, size_t bytes, const char *what,
                 cl_mem *out) {
    cl_int err = CL_SUCCESS;
    if (!(*out = keep(r, support_buffer(ctx, host, bytes, &err))))
        return cli_error(CMD, CLI_FAILED, "allocating the %s failed: OpenCL error %d", what, err);
    return CLI_OK;
}

/* Device buffers of everything the call reads and writes, and the descriptor's tensors. */
static int upload(clattn_context *ctx, serving_run *r, clattn_sdpa_desc *d, clattn_tensor *q, clattn_tensor *out,
                  bool want_lse) {
    const size_t nq = r->qv.size[0] * r->qv.size[1] * r->qv.size[2] * r->qv.size[3];
    const size_t hq = r->qv.size[1], dv = r->vv.size[3], no = r->total_q * hq * dv;
    cl_int err = CL_SUCCESS;
    support_round_array(r->q, nq, r->dtype);
    *q = r->qv;
    q->dtype = r->dtype;
    if (!(q->buffer = keep(r, support_buffer_storage(ctx, r->q, nq, r->dtype, &err))))
        return cli_error(CMD, CLI_FAILED, "allocating the queries failed: OpenCL error %d", err);
    int rc = serving_kv_upload(CMD, "keys", ctx, r->k, &r->kv, r->kv_dtype, &r->kd);
    if (rc == CLI_OK) rc = serving_kv_upload(CMD, "values", ctx, r->v, &r->vv, r->kv_dtype, &r->vd);
    if (rc != CLI_OK) return rc;
    d->k_scale = r->kd.scale;
    d->v_scale = r->vd.scale;
    /* Zeros: rows of a packed array past the last sequence are not written by the call. */
    *out = r->seqs.cu_q ? clattn_tensor_blhd(NULL, r->dtype, 1, hq, r->total_q, dv)
                        : clattn_tensor_bhld(NULL, r->dtype, r->seqs.count, hq, r->seqs.q_len, dv);
    r->ov = *out;
    r->ov.dtype = CLATTN_DTYPE_F32;
    if (!(out->buffer = keep(r, support_filled_buffer(ctx, no * clattn_dtype_size(r->dtype), 0, &err))))
        return cli_error(CMD, CLI_FAILED, "allocating the output failed: OpenCL error %d", err);
    /* lse follows q's rows: [total_q, Hq] for packed queries (the output without its head dim). */
    r->lv = r->seqs.cu_q ? clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, 1, hq, r->total_q, 1)
                         : clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, r->seqs.count, hq, r->seqs.q_len, 1);
    if (want_lse) {
        d->lse = r->lv;
        if (!(d->lse.buffer = keep(r, support_filled_buffer(ctx, r->total_q * hq * sizeof(float), 0, &err))))
            return cli_error(CMD, CLI_FAILED, "allocating the lse failed: OpenCL error %d", err);
    }
    if (r->mask.additive || r->mask.bool_mask) {
        size_t stride[4];
        const size_t n = run_mask_strides(r->mask.shape, stride);
        const bool additive = r->mask.additive != NULL;
        const void *host = additive ? (const void *)r->mask.additive : (const void *)r->mask.bool_mask;
        if ((rc = input(ctx, r, host, n * (additive ? sizeof(float) : 1), "mask", &d->mask.buffer))) return rc;
        d->mask.dtype = additive ? CLATTN_DTYPE_F32 : CLATTN_DTYPE_BOOL;
        memcpy(d->mask.size, r->mask.shape, sizeof d->mask.size);
        memcpy(d->mask.stride, stride, sizeof stride);
    }
    if (r->key_lengths &&
        (rc = input(ctx, r, r->key_lengths, r->seqs.count * sizeof(int32_t), "key lengths", &d->key_lengths)))
        return rc;
    const run_block_mask *bm = &r->block_mask;
    if (bm->array.data) {
        d->block_mask =
            clattn_tensor_bhld(NULL, CLATTN_DTYPE_I32, bm->shape[0], bm->shape[1], bm->shape[2], bm->shape[3]);
        if ((rc = input(ctx, r, bm->array.data, bm->array.count * sizeof(int32_t), "block mask",
                        &d->block_mask.buffer)))
            return rc;
    }
    for (size_t i = 0; i < r->mod_buffers.count; ++i) {
        const npy_array *a = &r->mod_buffers.array[i];
        clattn_mod_buffer *m = &d->mod_buffers[i];
        if ((rc = input(ctx, r, a->data, a->count * sizeof(int32_t), "mod buffer", &m->buffer))) return rc;
        m->name = r->mod_buffers.name[i];
        m->dtype = run_mod_dtype(a);
        m->count = a->count;
    }
    if (r->mods.sinks) {
        d->sinks = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, 1, hq, 1, 1);
        if ((rc = input(ctx, r, r->mods.sinks, hq * sizeof(float), "sinks", &d->sinks.buffer))) return rc;
    }
    if (r->mods.alibi_slopes) {
        d->alibi_slopes = clattn_tensor_bhld(NULL, CLATTN_DTYPE_F32, 1, hq, 1, 1);
        if ((rc = input(ctx, r, r->mods.alibi_slopes, hq * sizeof(float), "ALiBi slopes", &d->alibi_slopes.buffer)))
            return rc;
    }
    return CLI_OK;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The call and the read-back of its outputs into r->out and r->lse. */
static int call(clattn_context *ctx, serving_run *r, const clattn_sdpa_desc *d, const clattn_tensor *q,
                const clattn_tensor *out, double *elapsed) {
    const size_t no = r->total_q * r->qv.size[1] * r->vv.size[3], nl = r->total_q * r->qv.size[1];
    r->out = malloc((no + 1) * sizeof *r->out);
    r->lse = d->lse.buffer ? malloc((nl + 1) * sizeof *r->lse) : NULL;
    if (!r->out || (d->lse.buffer && !r->lse)) return cli_error(CMD, CLI_FAILED, "out of host memory");
    const double t0 = seconds_now();
    const clattn_status st = clattn_sdpa(ctx, d, q, &r->kd.tensor, &r->vd.tensor, out, NULL, 0, NULL, NULL);
    if (st != CLATTN_SUCCESS) {
        const int rc = cli_report_status(CMD, ctx, st, "attention");
        return cli_is_input_error(st) ? CLI_USAGE : rc;
    }
    /* The context's queue is in order: the blocking reads follow the call. */
    cl_int err = support_read_storage(ctx, out->buffer, r->out, no, r->dtype);
    if (err == CL_SUCCESS && r->lse) err = support_read_storage(ctx, d->lse.buffer, r->lse, nl, CLATTN_DTYPE_F32);
    if (err != CL_SUCCESS) return cli_error(CMD, CLI_FAILED, "reading the outputs failed: OpenCL error %d", err);
    *elapsed = seconds_now() - t0;
    return CLI_OK;
}

/* --check: every sequence against the reference, on the values the device holds. */
static int check(const serving_run *r, const clattn_sdpa_desc *d) {
    serving_host h = {r->q, r->k, r->v, r->out, r->lse, r->qv, r->kv, r->vv, r->ov, r->lv};
    serving_ref_options o = {0};
    o.scale = isnan(d->scale) ? 1.0 / sqrt((double)r->qv.size[3]) : d->scale;
    o.causal = d->causal;
    o.window_left = d->window_left;
    o.window_right = d->window_right;
    o.window_align = d->window_align;
    o.softcap = r->mods.softcap;
    o.sinks = r->mods.sinks;
    o.alibi_slopes = r->mods.alibi_slopes;
    o.mask = r->mask.additive;
    o.bool_mask = r->mask.bool_mask;
    memcpy(o.mask_shape, r->mask.shape, sizeof o.mask_shape);
    o.block_mask = (const int32_t *)r->block_mask.array.data;
    memcpy(o.block_mask_shape, r->block_mask.shape, sizeof o.block_mask_shape);
    o.block_q = r->block_mask.bq;
    o.block_k = r->block_mask.bk;
    double worst = 0.0, worst_lse = 0.0;
    if (serving_check(&r->seqs, &h, &o, &worst, &worst_lse) != 0)
        return cli_error(CMD, CLI_FAILED, "out of host memory for the reference");
    printf("largest difference from the double-precision reference (each sequence alone): out %.3g, lse %.3g\n",
           worst, worst_lse);
    const size_t max_k = serving_max_k(&r->seqs);
    const double tol = check_sdpa_tolerance(max_k ? max_k : 1, r->dtype);
    if (!(worst <= tol))
        return cli_error(CMD, CLI_FAILED, "the output differs from the reference by %.3g (tolerance %.3g)", worst,
                         tol);
    return CLI_OK;
}

/* What ran, in one line. */
static void summary(clattn_context *ctx, const serving_run *r, double elapsed) {
    const serving_seqs *s = &r->seqs;
    char keys[128];
    if (s->block_table)
        snprintf(keys, sizeof keys, "a paged cache of %zu blocks of %zu", r->kv.size[0], s->page);
    else
        snprintf(keys, sizeof keys, "%s keys", s->cu_k ? "packed" : s->seqlens_k ? "dense cache" : "dense");
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    printf("sdpa B=%zu Hq=%zu Hkv=%zu %s queries (max Lq=%zu), %s (max Lk=%zu), D=%zu Dv=%zu, q %s, kv %s%s%s on "
           "%s: %.3f s including transfers (and compilation on a cold cache)\n",
           s->count, r->qv.size[1], r->kv.size[1], s->cu_q ? "packed" : "dense", serving_max_q(s), keys,
           serving_max_k(s), r->qv.size[3], r->vv.size[3], clattn_dtype_name(r->dtype),
           clattn_dtype_name(r->kv_dtype), *serving_kv_scale_note(r->kv_dtype) ? ", " : "",
           serving_kv_scale_note(r->kv_dtype), info.name, elapsed);
}

int run_serving(const cli_command *cmd) {
    serving_run r;
    memset(&r, 0, sizeof r);
    clattn_sdpa_desc d;
    clattn_sdpa_desc_init(&d);
    clattn_context *ctx = NULL;
    const char *random = cli_value(cmd, "random");
    int rc = refuse_options(cmd);
    if (rc == CLI_OK) rc = random ? random_inputs(random, &r) : read_queries(cmd, &r);
    if (rc == CLI_OK && !random) rc = read_keys(cmd, &r);
    if (rc == CLI_OK && r.kv.size[3] != r.qv.size[3])
        rc = cli_error(CMD, CLI_USAGE, "the keys' head dim %zu differs from the queries' %zu", r.kv.size[3],
                       r.qv.size[3]);
    if (rc == CLI_OK) rc = read_options(cmd, &r, &d);
    const bool do_check = cli_flag(cmd, "check");
    if (rc == CLI_OK && !cli_value(cmd, "out") && !do_check && !random)
        rc = cli_error(CMD, CLI_USAGE, "nothing to do: give -o O.npy, --check, or both");
    if (rc == CLI_OK) rc = cli_open_context(CMD, cli_value(cmd, "device"), false, &ctx);
    /* The sequences go to the call only for packed or paged layouts: dense ones with --kv-dtype are a plain call.
     */
    if (r.seqs.cu_q || r.seqs.cu_k || r.seqs.block_table || r.seqs.seqlens_k) {
        d.seq_count = r.seqs.count;
        d.cu_seqlens_q = r.seqs.cu_q;
        d.cu_seqlens_k = r.seqs.cu_k;
        d.block_table = r.seqs.block_table;
        d.block_table_stride = r.seqs.table_stride;
        d.seqlens_k = r.seqs.seqlens_k;
    }
    clattn_tensor q, out;
    double elapsed = 0.0;
    if (rc == CLI_OK) rc = upload(ctx, &r, &d, &q, &out, do_check || cli_value(cmd, "lse"));
    if (rc == CLI_OK) rc = call(ctx, &r, &d, &q, &out, &elapsed);
    /* Outputs follow the queries' layout: [total_q, Hq, Dv] and [total_q, Hq] packed, else [B, Hq, Lq, Dv] and
     * [B, Hq, Lq]. */
    const size_t hq = r.qv.size[1];
    const size_t packed_o[3] = {r.total_q, hq, r.vv.size[3]},
                 dense_o[4] = {r.seqs.count, hq, r.seqs.q_len, r.vv.size[3]};
    const char *path;
    if (rc == CLI_OK && (path = cli_value(cmd, "lse")))
        rc = r.seqs.cu_q ? run_write_npy(CMD, path, "lse", 2, packed_o, r.lse)
                         : run_write_npy(CMD, path, "lse", 3, dense_o, r.lse);
    if (rc == CLI_OK && (path = cli_value(cmd, "out")))
        rc = r.seqs.cu_q ? run_write_npy(CMD, path, "output", 3, packed_o, r.out)
                         : run_write_npy(CMD, path, "output", 4, dense_o, r.out);
    if (rc == CLI_OK) summary(ctx, &r, elapsed);
    if (rc == CLI_OK && do_check) rc = check(&r, &d);
    free_run(&r);
    clattn_context_free(ctx);
    return rc;
}
