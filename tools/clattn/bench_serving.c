// SPDX-License-Identifier: Apache-2.0
/* `clattn bench sdpa` on the serving formats (see bench_serving.h): the options, the seeded inputs in packed,
 * paged (pages shuffled over the cache, as a serving engine's allocator leaves them) or dense layouts, their byte
 * and pair counts, and --check one sequence at a time. */
#define _POSIX_C_SOURCE 200809L
#include "bench_serving.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_buffers.h"
#include "support_random.h"

#define CMD "bench sdpa"

/* ------------------------------------------------------------------------------------------------------------ */
/* Options */

static int parse_varlen(const char *text, bench_config *c) {
    const char *p = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        const long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > (1 << 24) || (*end != ',' && *end != '\0') ||
            c->varlen_count == BENCH_MAX_SEQS)
            return cli_error(CMD, CLI_USAGE,
                             "--varlen %s: expected a comma-separated list of at most %d sequence lengths, each 0 "
                             "to %d",
                             text, BENCH_MAX_SEQS, 1 << 24);
        c->varlen[c->varlen_count++] = (size_t)v;
        if (*end == '\0') return CLI_OK;
        p = end + 1;
    }
}

static int parse_page(const char *text, bench_config *c) {
    char *end = NULL;
    errno = 0;
    const long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno || v < 8 || v > 256 || (v & (v - 1)) != 0)
        return cli_error(CMD, CLI_USAGE, "--paged %s: the block size must be a power of two from 8 to 256", text);
    c->page = (size_t)v;
    return CLI_OK;
}

int bench_serving_parse(const cli_command *cmd, bench_config *c) {
    const char *s;
    int rc;
    c->kv_dtype = c->dtype;
    if ((s = cli_value(cmd, "varlen")) && (rc = parse_varlen(s, c))) return rc;
    if ((s = cli_value(cmd, "paged")) && (rc = parse_page(s, c))) return rc;
    if ((s = cli_value(cmd, "kv-dtype")) && (rc = serving_parse_kv_dtype(CMD, s, &c->kv_dtype))) return rc;
    c->serving = c->varlen_count || c->page || s;
    if (!c->serving) return CLI_OK;
    const char *impl = cli_value(cmd, "impl");
    if (impl && strcmp(impl, "fused") != 0)
        return cli_error(CMD, CLI_USAGE,
                         "--impl %s: --varlen, --paged and --kv-dtype run in the fused kernels only; give --impl "
                         "fused or leave it out",
                         impl);
    c->impl[IMPL_UNFUSED] = false;
    if (c->mask) return cli_error(CMD, CLI_USAGE, "--mask is not taken with --varlen, --paged or --kv-dtype");
    if (c->key_length_count && (c->varlen_count || c->page))
        return cli_error(CMD, CLI_USAGE,
                         "--key-length: packed and paged keys have their own lengths (--varlen, --kv-seq); give it "
                         "with dense keys only");
    if (!c->varlen_count) return CLI_OK;
    static const char *const sized[] = {"batch", "seq", "kv-seq"};
    for (size_t i = 0; i < 3; ++i)
        if (cli_value(cmd, sized[i]) || (c->sweep_name && strcmp(c->sweep_name, sized[i]) == 0))
            return cli_error(CMD, CLI_USAGE,
                             "--varlen gives the batch and every sequence's length; leave out --%s (and --sweep of "
                             "it)",
                             sized[i]);
    size_t longest = 0;
    for (size_t b = 0; b < c->varlen_count; ++b)
        if (c->varlen[b] > longest) longest = c->varlen[b];
    for (size_t i = 0; i < c->shape_count; ++i) {
        c->shapes[i].batch = c->varlen_count;
        c->shapes[i].seq = c->shapes[i].kv_seq = longest;
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Inputs */

static size_t k_len(const bench_config *c, const bench_shape *s, size_t b) {
    return c->varlen_count ? c->varlen[b] : s->kv_seq;
}

/* A random order of n pages (Fisher-Yates on a 32-bit LCG, seeded). */
static void shuffle(int32_t *order, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i) order[i] = (int32_t)i;
    for (size_t i = n; i > 1; --i) {
        seed = seed * 1664525u + 1013904223u;
        const size_t j = (size_t)(seed >> 8) % i;
        const int32_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

/* The block table of a paged cache: each sequence's pages taken in turn from a shuffled order of all of them.
 * Sets the cache's page count. */
static int make_table(const bench_config *c, const bench_shape *s, bench_serving_data *d, size_t *pages) {
    const size_t B = s->batch;
    size_t widest = 1;
    *pages = 0;
    for (size_t b = 0; b < B; ++b) {
        const size_t used = (k_len(c, s, b) + c->page - 1) / c->page;
        if (used > widest) widest = used;
        *pages += used;
    }
    if (*pages == 0) *pages = 1; /* every sequence empty: one page, so that the cache is not empty */
    d->table = calloc(B * widest + 1, sizeof *d->table);
    d->seqlens = malloc((B + 1) * sizeof *d->seqlens);
    int32_t *order = malloc((*pages + 1) * sizeof *order);
    if (!d->table || !d->seqlens || !order) {
        free(order);
        return cli_error(CMD, CLI_FAILED, "out of host memory for the block table");
    }
    shuffle(order, *pages, 45678u);
    size_t next = 0;
    for (size_t b = 0; b < B; ++b) {
        d->seqlens[b] = (int32_t)k_len(c, s, b);
        for (size_t e = 0; e * c->page < k_len(c, s, b); ++e) d->table[b * widest + e] = order[next++];
    }
    free(order);
    d->seqs.block_table = d->table;
    d->seqs.seqlens_k = d->seqlens;
    d->seqs.table_stride = widest;
    d->seqs.page = c->page;
    return CLI_OK;
}

int bench_serving_prepare(clattn_context *ctx, const bench_config *c, const bench_shape *s, bench_serving_data *d) {
    memset(d, 0, sizeof *d);
    const size_t B = s->batch, H = s->heads, Hkv = s->kv_heads, D = s->head_dim;
    d->seqs.count = B;
    if (c->varlen_count) {
        if (!(d->cu = malloc((B + 1) * sizeof *d->cu))) return cli_error(CMD, CLI_FAILED, "out of host memory");
        d->cu[0] = 0;
        for (size_t b = 0; b < B; ++b) d->cu[b + 1] = d->cu[b] + (int32_t)c->varlen[b];
        d->seqs.cu_q = d->cu;
        if (!c->page) d->seqs.cu_k = d->cu;
        d->total_q = (size_t)d->cu[B];
        d->q_view = clattn_tensor_blhd(NULL, c->dtype, 1, H, d->total_q, D);
    } else {
        d->seqs.q_len = s->seq;
        d->seqs.kv_len = s->kv_seq;
        d->total_q = B * s->seq;
        d->q_view = clattn_tensor_bhld(NULL, c->dtype, B, H, s->seq, D);
    }
    d->out_view = d->q_view;
    clattn_tensor kv;
    size_t pages = 0;
    int rc = CLI_OK;
    if (c->page) {
        if ((rc = make_table(c, s, d, &pages))) return rc;
        kv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, pages, Hkv, c->page, D);
    } else if (c->varlen_count) {
        kv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, 1, Hkv, d->total_q, D);
    } else {
        /* Token-major [B, Lk, Hkv, D], as a contiguous KV cache holds them (flash_attn_with_kvcache's k_cache), so
         * that --paged compares with the same rows unpaged. */
        kv = clattn_tensor_blhd(NULL, CLATTN_DTYPE_F32, B, Hkv, s->kv_seq, D);
    }
    const size_t nq = d->total_q * H * D, nk = kv.size[0] * Hkv * kv.size[2] * D;
    /* The seeds of the dense benchmark's q, k and v (support_sdpa_inputs). */
    unsigned sq = 12345, sk = 23456, sv = 34567;
    d->q = support_random_array(nq, 1.0f, c->dtype, &sq);
    d->k = support_random_array(nk, 1.0f, CLATTN_DTYPE_F32, &sk);
    d->v = support_random_array(nk, 1.0f, CLATTN_DTYPE_F32, &sv);
    if (!d->q || !d->k || !d->v) return cli_error(CMD, CLI_FAILED, "out of host memory for the inputs");
    cl_int err = CL_SUCCESS;
    if (!(d->q_view.buffer = support_buffer_storage(ctx, d->q, nq, c->dtype, &err)) ||
        !(d->out_view.buffer = support_buffer(ctx, NULL, nq * clattn_dtype_size(c->dtype), &err)))
        return cli_error(CMD, CLI_FAILED,
                         "allocating the queries and output (%zu elements each) failed: OpenCL "
                         "error %d",
                         nq, err);
    if ((rc = serving_kv_upload(CMD, "keys", ctx, d->k, &kv, c->kv_dtype, &d->keys)) ||
        (rc = serving_kv_upload(CMD, "values", ctx, d->v, &kv, c->kv_dtype, &d->values)))
        return rc;
    /* Bytes one call moves: q and out, then only the keys and values (and their scales) that the sequences
     * hold, whatever the cache's size, and the index arrays the call copies to the device. */
    size_t keys = 0;
    for (size_t b = 0; b < B; ++b) keys += k_len(c, s, b);
    const double per_key = (double)(Hkv * D) * (double)clattn_dtype_size(c->kv_dtype);
    d->io_bytes = 2.0 * (double)nq * (double)clattn_dtype_size(c->dtype) + 2.0 * (double)keys * per_key;
    if (c->kv_dtype == CLATTN_DTYPE_I8) d->io_bytes += 2.0 * (double)(keys * Hkv) * sizeof(float);
    if (c->kv_dtype == CLATTN_DTYPE_FP8_E4M3) d->io_bytes += 2.0 * (double)Hkv * sizeof(float);
    if (c->varlen_count) d->io_bytes += 2.0 * (double)(B + 1) * sizeof(int32_t);
    if (c->page) d->io_bytes += (double)(B * d->seqs.table_stride + B) * sizeof(int32_t);
    /* Only the reference needs the host copies. */
    if (!c->check) {
        free(d->q);
        free(d->k);
        free(d->v);
        d->q = d->k = d->v = NULL;
    }
    return CLI_OK;
}

uint64_t bench_serving_pairs(const bench_config *c, const bench_serving_data *d, clattn_causal causal) {
    uint64_t total = 0;
    for (size_t b = 0; b < d->seqs.count; ++b) {
        const int64_t lq = (int64_t)serving_q_len(&d->seqs, b), lk = (int64_t)serving_k_len(&d->seqs, b);
        total += bench_slice_pairs(c, lq, lk, lk, causal);
    }
    return total;
}

void bench_serving_tensors(const bench_serving_data *d, clattn_sdpa_desc *desc, clattn_tensor *q, clattn_tensor *k,
                           clattn_tensor *v, clattn_tensor *out) {
    *q = d->q_view;
    *out = d->out_view;
    *k = d->keys.tensor;
    *v = d->values.tensor;
    desc->k_scale = d->keys.scale;
    desc->v_scale = d->values.scale;
    if (d->seqs.cu_q || d->seqs.block_table) {
        desc->seq_count = d->seqs.count;
        desc->cu_seqlens_q = d->seqs.cu_q;
        desc->cu_seqlens_k = d->seqs.cu_k;
        desc->block_table = d->seqs.block_table;
        desc->block_table_stride = d->seqs.table_stride;
        desc->seqlens_k = d->seqs.seqlens_k;
    }
}

size_t bench_serving_max_k(const bench_serving_data *d) {
    return serving_max_k(&d->seqs);
}

int bench_serving_check(clattn_context *ctx, const bench_config *c, const bench_serving_data *d,
                        clattn_causal causal, float softcap, const float *sinks, const float *slopes,
                        const int32_t *key_lengths, double *worst) {
    const size_t n = d->total_q * d->out_view.size[1] * d->out_view.size[3];
    float *out = malloc((n + 1) * sizeof *out);
    if (!out) return cli_error(CMD, CLI_FAILED, "out of host memory for the check");
    const cl_int err = support_read_storage(ctx, d->out_view.buffer, out, n, c->dtype);
    if (err != CL_SUCCESS) {
        free(out);
        return cli_error(CMD, CLI_FAILED, "reading the output failed: OpenCL error %d", err);
    }
    serving_seqs seqs = d->seqs;
    seqs.key_lengths = key_lengths;
    /* The host copies are contiguous as the device tensors' views say. */
    serving_host h = {d->q, d->k, d->v, out, NULL, d->q_view, d->keys.tensor, d->values.tensor, d->out_view, {0}};
    serving_ref_options o = {0};
    o.scale = 1.0 / sqrt((double)d->q_view.size[3]);
    o.causal = causal;
    o.window_left = c->window_left;
    o.window_right = c->window_right;
    o.softcap = softcap;
    o.sinks = sinks;
    o.alibi_slopes = slopes;
    double worst_lse = 0.0;
    const int rc = serving_check(&seqs, &h, &o, worst, &worst_lse);
    free(out);
    if (rc != 0) return cli_error(CMD, CLI_FAILED, "out of host memory for the reference");
    return CLI_OK;
}

void bench_serving_free(bench_serving_data *d) {
    if (d->q_view.buffer) clReleaseMemObject(d->q_view.buffer);
    if (d->out_view.buffer) clReleaseMemObject(d->out_view.buffer);
    serving_kv_free(&d->keys);
    serving_kv_free(&d->values);
    void *owned[] = {d->cu, d->table, d->seqlens, d->q, d->k, d->v};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i) free(owned[i]);
    memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Reporting */

const char *bench_serving_layout(const bench_config *c, char *buf, size_t size) {
    char where[32];
    if (c->page)
        snprintf(where, sizeof where, "paged%zu", c->page);
    else
        snprintf(where, sizeof where, "%s", c->varlen_count ? "packed" : "dense");
    snprintf(buf, size, "%s %s", where, clattn_dtype_name(c->kv_dtype));
    return buf;
}

void bench_serving_header(const bench_config *c) {
    if (c->varlen_count) {
        size_t total = 0;
        printf("packed sequences (queries and keys alike) of lengths ");
        for (size_t b = 0; b < c->varlen_count; ++b) {
            printf("%s%zu", b ? "," : "", c->varlen[b]);
            total += c->varlen[b];
        }
        printf(" (%zu rows); Lq and Lk show the longest\n", total);
    }
    if (c->page)
        printf("keys and values in a paged cache [blocks, %zu, Hkv, D], pages shuffled over the cache\n", c->page);
    else if (!c->varlen_count)
        printf("keys and values dense [B, Lk, Hkv, D], as a contiguous KV cache holds them\n");
    printf("keys and values stored as %s%s%s; GB/s counts the keys each sequence holds, their scales and the index "
           "arrays\n",
           clattn_dtype_name(c->kv_dtype), *serving_kv_scale_note(c->kv_dtype) ? ", " : "",
           serving_kv_scale_note(c->kv_dtype));
}
