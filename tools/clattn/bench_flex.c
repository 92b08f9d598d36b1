// SPDX-License-Identifier: Apache-2.0
/* `clattn bench sdpa --flex causal|documents[:N]`: what a block mask saves a mask_mod. Per shape it times the
 * mask written as mask_mod without and with its block mask (blocks of --block-size, 128 by default: 0 where the
 * mask excludes the whole block, 2 where it keeps it whole, 1 on its edges) and the built-in form of the same mask
 * (causal, or the documents as a bool mask tensor), in rounds that alternate the rows, and reports each row's
 * median over the rounds next to the built-in one's. */
#include "bench_flex.h"

#include "support_buffers.h"
#include "support_random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_BUILTIN = 0, ROW_MOD = 1, ROW_MOD_BLOCKS = 2, ROW_COUNT = 3, ROUNDS = 3 };

/* The document of each position: `docs` runs of equal length (the last takes the rest). */
static int32_t doc_of(size_t i, size_t len, size_t docs) {
    return (int32_t)(i * docs / len);
}

/* The block flags [nq, nk] of the mask (causal when docs is 0), from the rule each block's corners decide. */
static void fill_flags(int32_t *f, size_t lq, size_t lk, size_t bs, size_t docs) {
    const size_t nq = (lq + bs - 1) / bs, nk = (lk + bs - 1) / bs;
    for (size_t a = 0; a < nq; ++a)
        for (size_t b = 0; b < nk; ++b) {
            const size_t q0 = a * bs, q1 = (a + 1) * bs < lq ? (a + 1) * bs - 1 : lq - 1;
            const size_t k0 = b * bs, k1 = (b + 1) * bs < lk ? (b + 1) * bs - 1 : lk - 1;
            int32_t flag;
            if (!docs) {
                flag = k0 > q1 ? 0 : k1 <= q0 ? 2 : 1;
            } else {
                const int32_t dq0 = doc_of(q0, lq, docs), dq1 = doc_of(q1, lq, docs);
                const int32_t dk0 = doc_of(k0, lk, docs), dk1 = doc_of(k1, lk, docs);
                flag = dq1 < dk0 || dk1 < dq0 ? 0 : dq0 == dq1 && dk0 == dk1 && dq0 == dk0 ? 2 : 1;
            }
            f[a * nk + b] = flag;
        }
}

int bench_flex_parse(const char *cmd, const char *spec, size_t *docs) {
    if (strcmp(spec, "causal") == 0) {
        *docs = 0;
        return CLI_OK;
    }
    char *end = NULL;
    if (strncmp(spec, "documents", 9) == 0) {
        *docs = 4;
        if (spec[9] == '\0') return CLI_OK;
        if (spec[9] == ':') {
            const unsigned long n = strtoul(spec + 10, &end, 10);
            if (end != spec + 10 && *end == '\0' && n >= 1 && n <= 1u << 20) {
                *docs = n;
                return CLI_OK;
            }
        }
    }
    return cli_error(cmd, CLI_USAGE, "--flex %s: expected causal or documents[:N] (N documents, default 4)", spec);
}

/* One shape's three rows; rc as the bench commands return it. */
static int flex_shape(const char *cmd, bench_run *run, const bench_config *c, const bench_shape *s, size_t docs,
                      size_t bs) {
    clattn_context *ctx = run->ctx;
    const size_t lq = s->seq, lk = s->kv_seq, nq = (lq + bs - 1) / bs, nk = (lk + bs - 1) / bs;
    const size_t qn = s->batch * s->heads * lq * s->head_dim, kn = s->batch * s->kv_heads * lk * s->head_dim;
    unsigned seed = 12345;
    float *q = support_random_array(qn, 1.0f, c->dtype, &seed),
          *k = support_random_array(kn, 1.0f, c->dtype, &seed);
    int32_t *flags = malloc(nq * nk * sizeof *flags), *doc = malloc((lq > lk ? lq : lk) * sizeof *doc);
    uint8_t *keep = docs ? malloc(lq * lk) : NULL;
    int rc = CLI_OK;
    if (!q || !k || !flags || !doc || (docs && !keep)) rc = cli_error(cmd, CLI_FAILED, "out of host memory");
    cl_int err = CL_SUCCESS;
    cl_mem bufs[7] = {NULL};
    if (rc == CLI_OK) {
        fill_flags(flags, lq, lk, bs, docs);
        for (size_t i = 0; i < (lq > lk ? lq : lk); ++i) doc[i] = doc_of(i, i < lq ? lq : lk, docs ? docs : 1);
        for (size_t i = 0; docs && i < lq; ++i)
            for (size_t j = 0; j < lk; ++j) keep[i * lk + j] = doc_of(i, lq, docs) == doc_of(j, lk, docs);
        bufs[0] = support_buffer_storage(ctx, q, qn, c->dtype, &err);
        bufs[1] = support_buffer_storage(ctx, k, kn, c->dtype, &err);
        bufs[2] = support_buffer_storage(ctx, NULL, s->batch * s->heads * lq * s->head_dim, c->dtype, &err);
        bufs[3] = support_buffer(ctx, flags, nq * nk * sizeof *flags, &err);
        bufs[4] = support_buffer(ctx, doc, (lq > lk ? lq : lk) * sizeof *doc, &err);
        if (docs) bufs[5] = support_buffer(ctx, keep, lq * lk, &err);
        if (err != CL_SUCCESS) rc = cli_error(cmd, CLI_FAILED, "allocating the inputs failed (OpenCL %d)", err);
    }
    bench_sdpa_call calls[ROW_COUNT];
    static const char *const names[2][ROW_COUNT] = {
        {"built-in causal", "mask_mod", "mask_mod + block mask"},
        {"bool mask tensor", "mask_mod", "mask_mod + block mask"},
    };
    for (int r = 0; r < ROW_COUNT && rc == CLI_OK; ++r) {
        bench_sdpa_call *a = &calls[r];
        a->ctx = ctx;
        clattn_sdpa_desc_init(&a->desc);
        a->q = clattn_tensor_bhld(bufs[0], c->dtype, s->batch, s->heads, lq, s->head_dim);
        a->k = clattn_tensor_bhld(bufs[1], c->dtype, s->batch, s->kv_heads, lk, s->head_dim);
        a->v = a->k;
        a->o = clattn_tensor_bhld(bufs[2], c->dtype, s->batch, s->heads, lq, s->head_dim);
        if (r == ROW_BUILTIN && !docs) a->desc.causal = CLATTN_CAUSAL_TOP_LEFT;
        if (r == ROW_BUILTIN && docs) a->desc.mask = clattn_tensor_bhld(bufs[5], CLATTN_DTYPE_BOOL, 1, 1, lq, lk);
        if (r != ROW_BUILTIN) {
            a->desc.mask_mod = docs ? "doc[q_idx] == doc[kv_idx]" : "kv_idx <= q_idx";
            if (docs)
                a->desc.mod_buffers[0] = (clattn_mod_buffer){"doc", bufs[4], CLATTN_MOD_I32, lq > lk ? lq : lk};
        }
        if (r == ROW_MOD_BLOCKS) {
            a->desc.block_mask = clattn_tensor_bhld(bufs[3], CLATTN_DTYPE_I32, 1, 1, nq, nk);
            a->desc.block_mask_q = a->desc.block_mask_k = bs;
        }
    }
    double medians[ROW_COUNT][ROUNDS];
    for (int round = 0; round < ROUNDS && rc == CLI_OK; ++round)
        for (int r = 0; r < ROW_COUNT && rc == CLI_OK; ++r) {
            bench_timing t;
            rc = bench_time_calls(cmd, names[docs != 0][r], ctx, round ? 1 : c->warmup, c->repeat, bench_call_sdpa,
                                  &calls[r], run->times, &t);
            medians[r][round] = t.median_ms;
        }
    if (rc == CLI_OK) {
        double row_ms[ROW_COUNT];
        for (int r = 0; r < ROW_COUNT; ++r) {
            double *m = medians[r];
            /* The median of the rounds' medians. */
            for (int i = 0; i < ROUNDS; ++i)
                for (int j = i + 1; j < ROUNDS; ++j)
                    if (m[j] < m[i]) {
                        const double x = m[i];
                        m[i] = m[j];
                        m[j] = x;
                    }
            row_ms[r] = m[ROUNDS / 2];
            printf("%3zu %3zu %3zu %5zu %5zu %3zu  %-24s %10.3f %9.2fx\n", s->batch, s->heads, s->kv_heads, lq, lk,
                   s->head_dim, names[docs != 0][r], row_ms[r],
                   row_ms[ROW_BUILTIN] > 0.0 ? row_ms[r] / row_ms[0] : 0.0);
        }
        fflush(stdout);
    }
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; ++i)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    free(q);
    free(k);
    free(flags);
    free(doc);
    free(keep);
    return rc;
}

int bench_flex(const char *cmd, bench_run *run, const bench_config *c, size_t docs, size_t block) {
    printf("device: %s (%s, %s)\n", run->info.name, run->info.platform_name, run->info.driver_version);
    printf("sdpa %s, %s written as mask_mod, blocks of %zu; median of %d alternating rounds of %ld timed runs; "
           "vs: this row's time / the first row's\n\n",
           clattn_dtype_name(c->dtype), docs ? "documents" : "causal (top-left)", block, ROUNDS, c->repeat);
    printf("%3s %3s %3s %5s %5s %3s  %-24s %10s %10s\n", "B", "Hq", "Hkv", "Lq", "Lk", "D", "rows", "median ms",
           "vs");
    int rc = CLI_OK;
    for (size_t i = 0; i < c->shape_count && rc == CLI_OK; ++i)
        rc = flex_shape(cmd, run, c, &c->shapes[i], docs, block);
    return rc;
}
