// SPDX-License-Identifier: Apache-2.0
/* `clattn bench`: times attention on the device with OpenCL profiling events and reports milliseconds, GFLOP/s,
 * effective bandwidth and the device memory each call allocates, for the fused and the unfused implementation side
 * by side. With no options it runs the project's representative shape (B=1, H=8, L=1024, D=64, fp32, non-causal
 * and causal), so that "how fast is clattn here" is one command. --check also compares every measured output with
 * the double-precision reference, because a fast wrong answer is worth nothing. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench_flex.h"
#include "bench_sdpa.h"
#include "bench_serving.h"
#include "bench_timing.h"
#include "cli.h"
#include "bench_check.h"
#include "check_tolerance.h"
#include "reference.h"
#include "run_common.h"
#include "support_sdpa_inputs.h"

#define CMD "bench sdpa"

/* Pair counts of shapes up to this many (query, key) pairs are also counted one by one with the reference's own
 * rule, as a guard that the closed form used for large shapes agrees with it. */
#define BRUTE_FORCE_PAIRS (1u << 22)
enum { MASK_NONE = 0, MASK_ADDITIVE = 1, MASK_BOOL = 2 };
enum { FORMAT_TABLE = 0, FORMAT_JSON = 1, FORMAT_CSV = 2 };

static const char *const impl_names[IMPL_COUNT] = {"fused", "unfused"};
static const clattn_impl impl_values[IMPL_COUNT] = {CLATTN_IMPL_FUSED, CLATTN_IMPL_UNFUSED};
static const char *const causal_names[] = {"none", "top-left", "bottom-right"};
static const char *const mask_names[] = {"none", "additive", "bool"};
/* Where the keys and values lie: "dense", "packed" (--varlen) or "paged" (--paged). */
static const char *kv_layout_name(const bench_config *c) {
    return c->page ? "paged" : c->varlen_count ? "packed" : "dense";
}
static const char *mods_name(int m) {
    return m == MODS_NONE         ? "none"
           : m == MODS_SOFTCAP    ? "softcap"
           : m == MODS_SINKS      ? "sinks"
           : m == MODS_ALIBI      ? "alibi"
           : m == MODS_SOFTCAP_FN ? "softcap-fn"
           : m == MODS_ALIBI_FN   ? "alibi-fn"
                                  : "all";
}

/* One measured implementation on one shape and mask. */
typedef struct bench_result {
    bench_shape shape;
    clattn_causal causal;
    int impl;
    int mods;
    double vs_plain; /* the same implementation's plain median / this median; 0: no plain row to compare with */
    double median_ms, min_ms, max_ms;
    double flops, io_bytes, gflops, gbps;
    uint64_t temp_bytes;
    bool host_timer;   /* profiling information was unavailable: host wall-clock times instead */
    bench_check check; /* with --check */
} bench_result;

/* The device side of one shape, plus host copies of the inputs (as the device stores them) for --check. */
/* The inputs of one shape: the support library's random problem (as the tuner draws it), and the key lengths. */
typedef struct shape_data {
    support_sdpa_inputs in;
    cl_mem key_lengths;
    int32_t *hkl;
    double io_bytes;
    /* The score modifiers' per-head values [H] (sinks, ALiBi slopes) and their buffers, when --mods asks. */
    float *sinks, *slopes;
    cl_mem dsinks, dslopes;
    /* With --varlen, --paged or --kv-dtype: the inputs in those formats, instead of `in`. */
    bench_serving_data serving;
} shape_data;

static void free_shape_data(shape_data *s) {
    support_sdpa_inputs_free(&s->in);
    bench_serving_free(&s->serving);
    if (s->key_lengths) clReleaseMemObject(s->key_lengths);
    if (s->dsinks) clReleaseMemObject(s->dsinks);
    if (s->dslopes) clReleaseMemObject(s->dslopes);
    free(s->sinks);
    free(s->slopes);
    free(s->hkl);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Option parsing */

static int parse_count(const char *opt, const char *text, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno || v < lo || v > hi)
        return cli_error(CMD, CLI_USAGE, "--%s %s: expected a whole number from %lld to %lld", opt, text, lo, hi);
    *out = v;
    return CLI_OK;
}

/* Each size is at most 2^24, so that a typo cannot ask for a sequence of 2^40; whole shapes are bounded once all
 * their sizes are known (parse_options). */
static int parse_size_opt(const cli_command *cmd, const char *name, size_t *out, bool *given) {
    const char *s = cli_value(cmd, name);
    *given = s != NULL;
    if (!s) return CLI_OK;
    long long v = 0;
    int rc = parse_count(name, s, 1, 1 << 24, &v);
    if (rc == CLI_OK) *out = (size_t)v;
    return rc;
}

static int parse_causal_list(const char *text, bench_config *c) {
    c->causal_count = 0;
    const char *p = text;
    for (;;) {
        size_t len = strcspn(p, ",");
        clattn_causal value = CLATTN_CAUSAL_NONE;
        bool known = false;
        for (int i = 0; i < 3; ++i)
            if (strlen(causal_names[i]) == len && strncmp(p, causal_names[i], len) == 0) {
                value = (clattn_causal)i;
                known = true;
            }
        if (!known || c->causal_count == MAX_CAUSAL)
            return cli_error(CMD, CLI_USAGE,
                             "--causal %s: expected top-left, bottom-right or none, or a comma-separated list of "
                             "them (at most three)",
                             text);
        for (size_t i = 0; i < c->causal_count; ++i)
            if (c->causal[i] == value)
                return cli_error(CMD, CLI_USAGE, "--causal %s: '%s' is listed twice", text, causal_names[value]);
        c->causal[c->causal_count++] = value;
        if (p[len] == '\0') return CLI_OK;
        p += len + 1;
    }
}

static size_t *shape_field(bench_shape *s, const char *name) {
    if (strcmp(name, "batch") == 0) return &s->batch;
    if (strcmp(name, "heads") == 0) return &s->heads;
    if (strcmp(name, "kv-heads") == 0) return &s->kv_heads;
    if (strcmp(name, "seq") == 0) return &s->seq;
    if (strcmp(name, "kv-seq") == 0) return &s->kv_seq;
    if (strcmp(name, "head-dim") == 0) return &s->head_dim;
    return NULL;
}

static size_t shape_value(const bench_shape *s, const char *name) {
    bench_shape copy = *s;
    return *shape_field(&copy, name);
}

/* --sweep NAME=V1,V2,...: one shape per value, the other sizes from their options. Sweeping seq (or heads) moves
 * kv-seq (or kv-heads) along with it unless that was given explicitly, which is what a sequence-length sweep of
 * self-attention means. */
static int build_shapes(const cli_command *cmd, const bench_shape *base, const bool *given_kv, bench_config *c) {
    const char *sweep = cli_value(cmd, "sweep");
    if (!sweep) {
        c->shapes[0] = *base;
        c->shape_count = 1;
        return CLI_OK;
    }
    const char *eq = strchr(sweep, '=');
    char *name = c->sweep_buf;
    size_t nlen = eq ? (size_t)(eq - sweep) : 0;
    if (!eq || nlen == 0 || nlen >= sizeof c->sweep_buf)
        return cli_error(CMD, CLI_USAGE,
                         "--sweep %s: expected NAME=V1,V2,... with NAME one of seq, kv-seq, heads, "
                         "kv-heads, head-dim, batch",
                         sweep);
    memcpy(name, sweep, nlen);
    name[nlen] = '\0';
    bench_shape probe = *base;
    if (!shape_field(&probe, name))
        return cli_error(CMD, CLI_USAGE,
                         "--sweep %s: cannot sweep '%s' (use seq, kv-seq, heads, kv-heads, head-dim "
                         "or batch)",
                         sweep, name);
    if (cli_value(cmd, name))
        return cli_error(CMD, CLI_USAGE, "--%s and --sweep %s=... both set the same size; give one of them", name,
                         name);
    c->sweep_name = name;
    c->shape_count = 0;
    const char *p = eq + 1;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 1 || v > (1 << 24) || (*end != ',' && *end != '\0'))
            return cli_error(CMD, CLI_USAGE, "--sweep %s: each value must be a whole number from 1 to %d", sweep,
                             1 << 24);
        if (c->shape_count == MAX_SWEEP)
            return cli_error(CMD, CLI_USAGE, "--sweep %s: at most %d values", sweep, MAX_SWEEP);
        bench_shape s = *base;
        *shape_field(&s, name) = (size_t)v;
        if (strcmp(name, "seq") == 0 && !given_kv[0]) s.kv_seq = (size_t)v;
        if (strcmp(name, "heads") == 0 && !given_kv[1]) s.kv_heads = (size_t)v;
        c->shapes[c->shape_count++] = s;
        if (*end == '\0') return CLI_OK;
        p = end + 1;
    }
}

/* --mods: a comma list of none, softcap, sinks, alibi, all (the three together), softcap-fn and alibi-fn, each
 * once. */
static int parse_mods_list(const char *text, bench_config *c) {
    char buf[128];
    if (strlen(text) >= sizeof buf) return cli_error(CMD, CLI_USAGE, "--mods %s: too long", text);
    strcpy(buf, text);
    c->mods_count = 0;
    c->mods_given = true;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        static const int values[] = {MODS_NONE, MODS_SOFTCAP,    MODS_SINKS,   MODS_ALIBI,
                                     MODS_ALL,  MODS_SOFTCAP_FN, MODS_ALIBI_FN};
        int m = -1;
        for (size_t i = 0; i < sizeof values / sizeof values[0]; ++i)
            if (strcmp(tok, mods_name(values[i])) == 0) m = values[i];
        bool repeated = false;
        for (size_t i = 0; i < c->mods_count; ++i) repeated = repeated || c->mods[i] == m;
        if (m < 0 || repeated || c->mods_count == MAX_MODS)
            return cli_error(CMD, CLI_USAGE,
                             "--mods %s: expected a list of none, softcap, sinks, alibi, all, softcap-fn and "
                             "alibi-fn, each once",
                             text);
        c->mods[c->mods_count++] = m;
    }
    if (c->mods_count == 0) return cli_error(CMD, CLI_USAGE, "--mods: empty list");
    return CLI_OK;
}

/* --key-length N (every batch item) or N1,N2,... (one per item, as a padded batch of sequences of those lengths
 * has them). */
static int parse_key_lengths(const char *text, bench_config *c) {
    const char *p = text;
    for (;;) {
        char *end = NULL;
        errno = 0;
        const long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0') ||
            c->key_length_count == BENCH_MAX_SEQS)
            return cli_error(
                CMD, CLI_USAGE,
                "--key-length %s: expected one length, or one per batch item (at most %d), each from 0 "
                "to %d",
                text, BENCH_MAX_SEQS, INT32_MAX);
        c->key_lengths[c->key_length_count++] = (int32_t)v;
        if (*end == '\0') return CLI_OK;
        p = end + 1;
    }
}

static int parse_options(const cli_command *cmd, bench_config *c) {
    memset(c, 0, sizeof *c);
    c->window_left = CLATTN_WINDOW_UNBOUNDED;
    c->window_right = CLATTN_WINDOW_UNBOUNDED;
    c->dtype = CLATTN_DTYPE_F32;
    c->repeat = 10;
    c->warmup = 2;
    c->impl[IMPL_FUSED] = c->impl[IMPL_UNFUSED] = true;
    c->causal[0] = CLATTN_CAUSAL_NONE;
    c->causal_count = 1;

    int rc;
    bench_shape base = {1, 8, 0, 1024, 0, 64};
    bool given[6];
    static const char *size_opts[6] = {"batch", "heads", "kv-heads", "seq", "kv-seq", "head-dim"};
    for (int i = 0; i < 6; ++i)
        if ((rc = parse_size_opt(cmd, size_opts[i], shape_field(&base, size_opts[i]), &given[i]))) return rc;
    if (!given[2]) base.kv_heads = base.heads;
    if (!given[4]) base.kv_seq = base.seq;
    const bool given_kv[2] = {given[4], given[2]};
    if ((rc = build_shapes(cmd, &base, given_kv, c))) return rc;

    const char *s;
    if ((s = cli_value(cmd, "dtype")) && (rc = cli_parse_dtype(CMD, s, &c->dtype))) return rc;
    if ((s = cli_value(cmd, "impl"))) {
        if (strcmp(s, "fused") == 0)
            c->impl[IMPL_UNFUSED] = false;
        else if (strcmp(s, "unfused") == 0)
            c->impl[IMPL_FUSED] = false;
        else if (strcmp(s, "all") != 0)
            return cli_error(CMD, CLI_USAGE, "--impl %s: expected fused, unfused or all", s);
    }
    if ((s = cli_value(cmd, "causal")) && (rc = parse_causal_list(s, c))) return rc;
    if ((s = cli_value(cmd, "window")) && (rc = cli_parse_window(CMD, s, &c->window_left, &c->window_right)))
        return rc;
    /* A side wider than any sequence excludes nothing; capping it keeps the FLOP count's sums from overflowing. */
    const int64_t widest = (int64_t)1 << 40;
    if (c->window_left > widest) c->window_left = widest;
    if (c->window_right > widest) c->window_right = widest;
    long long v = 0;
    if ((s = cli_value(cmd, "key-length")) && (rc = parse_key_lengths(s, c))) return rc;
    if ((s = cli_value(cmd, "mask"))) {
        if (strcmp(s, "additive") == 0)
            c->mask = MASK_ADDITIVE;
        else if (strcmp(s, "bool") == 0)
            c->mask = MASK_BOOL;
        else
            return cli_error(CMD, CLI_USAGE, "--mask %s: expected additive or bool (a random mask is generated)",
                             s);
    }
    c->mods[0] = MODS_NONE;
    c->mods_count = 1;
    if ((s = cli_value(cmd, "mods")) && (rc = parse_mods_list(s, c))) return rc;
    if ((s = cli_value(cmd, "repeat"))) {
        if ((rc = parse_count("repeat", s, 1, 100000, &v))) return rc;
        c->repeat = (long)v;
    }
    if ((s = cli_value(cmd, "warmup"))) {
        /* At least one untimed call: the first call compiles the kernels, and compilation is never measured. */
        if ((rc = parse_count("warmup", s, 1, 100000, &v))) return rc;
        c->warmup = (long)v;
    }
    c->check = cli_flag(cmd, "check");
    if (cli_flag(cmd, "json") && cli_flag(cmd, "csv"))
        return cli_error(CMD, CLI_USAGE, "give --json or --csv, not both");
    c->format = cli_flag(cmd, "json") ? FORMAT_JSON : cli_flag(cmd, "csv") ? FORMAT_CSV : FORMAT_TABLE;

    /* The representative run: with no shape, sweep or mask option, compare non-causal with causal attention, the
     * two cases that matter most for a model's prefill. */
    static const char *shaping[] = {"batch",  "heads",  "kv-heads",   "seq",  "kv-seq", "head-dim", "sweep",
                                    "causal", "window", "key-length", "mask", "varlen", "paged"};
    bool any = false;
    for (size_t i = 0; i < sizeof shaping / sizeof shaping[0]; ++i) any = any || cli_value(cmd, shaping[i]);
    if (!any) {
        c->causal[1] = CLATTN_CAUSAL_TOP_LEFT;
        c->causal_count = 2;
    }
    if ((rc = bench_serving_parse(cmd, c))) return rc;
    /* The score_mod rows align ALiBi with one shift for the whole batch; packed and paged sequences have their own.
     */
    for (size_t i = 0; i < c->mods_count && c->serving; ++i)
        if (c->mods[i] & MODS_SCORE_FNS)
            return cli_error(
                CMD, CLI_USAGE,
                "--mods %s: the score_mod rows time dense inputs only; leave out --varlen, --paged and "
                "--kv-dtype, or time the built-in softcap and alibi",
                mods_name(c->mods[i]));

    for (size_t i = 0; i < c->shape_count; ++i) {
        const bench_shape *sh = &c->shapes[i];
        if (sh->heads % sh->kv_heads != 0)
            return cli_error(CMD, CLI_USAGE, "%zu query heads are not a multiple of %zu key/value heads", sh->heads,
                             sh->kv_heads);
        if (c->key_length_count > 1 && c->key_length_count != sh->batch)
            return cli_error(CMD, CLI_USAGE,
                             "--key-length: %zu lengths for a batch of %zu; give one, or one per item",
                             c->key_length_count, sh->batch);
        for (size_t b = 0; b < c->key_length_count; ++b)
            if ((size_t)c->key_lengths[b] > sh->kv_seq)
                return cli_error(CMD, CLI_USAGE, "--key-length %d is longer than the key sequence (%zu)",
                                 (int)c->key_lengths[b], sh->kv_seq);
        /* Element counts are multiplied in size_t below; 2^44 elements (64 TiB of fp32) is beyond any device, so
         * a shape past it is a mistake, and below it no product overflows. */
        const double q_elems = (double)sh->batch * (double)sh->heads * (double)sh->seq * (double)sh->head_dim;
        const double k_elems = (double)sh->batch * (double)sh->kv_heads * (double)sh->kv_seq * (double)sh->head_dim;
        const double mask_elems = (double)sh->seq * (double)sh->kv_seq;
        const double limit = 17592186044416.0; /* 2^44 */
        if (q_elems > limit || k_elems > limit || mask_elems > limit)
            return cli_error(CMD, CLI_USAGE, "shape B=%zu H=%zu Lq=%zu Lk=%zu D=%zu is far too large to benchmark",
                             sh->batch, sh->heads, sh->seq, sh->kv_seq, sh->head_dim);
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Work counts */

uint64_t bench_slice_pairs(const bench_config *c, int64_t lq, int64_t lk, int64_t klen, clattn_causal causal) {
    /* Per query row the allowed keys form one interval (causal and window bound it, the key length cuts it), so
     * the count is exact in O(Lq). */
    uint64_t total = 0;
    for (int64_t i = 0; i < lq; ++i) {
        int64_t pos = causal == CLATTN_CAUSAL_BOTTOM_RIGHT ? i + (lk - lq) : i;
        int64_t lo = 0, hi = klen - 1;
        if (causal != CLATTN_CAUSAL_NONE && pos < hi) hi = pos;
        if (c->window_right != CLATTN_WINDOW_UNBOUNDED && pos + c->window_right < hi) hi = pos + c->window_right;
        if (c->window_left != CLATTN_WINDOW_UNBOUNDED && pos - c->window_left > lo) lo = pos - c->window_left;
        if (hi >= lo) total += (uint64_t)(hi - lo + 1);
    }
    if ((uint64_t)lq * (uint64_t)lk <= BRUTE_FORCE_PAIRS) {
        uint64_t brute = 0;
        for (int64_t i = 0; i < lq; ++i)
            for (int64_t j = 0; j < klen; ++j)
                brute += cla_sdpa_key_allowed(i, j, lq, lk, causal, CLATTN_WINDOW_ALIGN_DEFAULT, c->window_left,
                                              c->window_right);
        if (brute != total) {
            /* Never report a rate computed from a wrong count; the reference's rule is the contract. */
            fprintf(stderr,
                    "clattn %s: internal: closed-form pair count %llu differs from the reference's %llu; "
                    "using the reference's\n",
                    CMD, (unsigned long long)total, (unsigned long long)brute);
            total = brute;
        }
    }
    return total;
}

/* The pairs that take part in one head over the whole batch, each item with its key length. */
static uint64_t allowed_pairs(const bench_config *c, const bench_shape *s, clattn_causal causal) {
    const int64_t lq = (int64_t)s->seq, lk = (int64_t)s->kv_seq;
    if (c->key_length_count <= 1) {
        const int64_t klen = c->key_length_count ? (int64_t)c->key_lengths[0] : lk;
        return (uint64_t)s->batch * bench_slice_pairs(c, lq, lk, klen, causal);
    }
    uint64_t total = 0;
    for (size_t b = 0; b < s->batch; ++b) total += bench_slice_pairs(c, lq, lk, (int64_t)c->key_lengths[b], causal);
    return total;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Inputs */

/* The dense [B, H, L, D] inputs and the mask, as the tuner draws them (support_sdpa_inputs). */
static int prepare_dense(clattn_context *ctx, const bench_config *c, const bench_shape *s, shape_data *d) {
    support_sdpa_inputs *in = &d->in;
    *in = (support_sdpa_inputs){.batch = s->batch,
                                .heads = s->heads,
                                .kv_heads = s->kv_heads,
                                .q_len = s->seq,
                                .kv_len = s->kv_seq,
                                .head_dim = s->head_dim,
                                .dtype = c->dtype,
                                .mask_kind = (clattn_mask_kind)c->mask};
    char why[256];
    if (support_sdpa_inputs_make(ctx, in, why, sizeof why) != 0) return cli_error(CMD, CLI_FAILED, "%s", why);
    const size_t esize = clattn_dtype_size(c->dtype);
    d->io_bytes = (double)(2 * in->nq + 2 * in->nk) * (double)esize;
    if (in->mask) d->io_bytes += (double)in->nmask * (double)esize;
    if (in->bool_mask) d->io_bytes += (double)in->nmask;
    /* Only the reference needs the host copies; a long sweep should not hold them twice. */
    if (!c->check) support_sdpa_inputs_drop_host(in);
    return CLI_OK;
}

/* Inputs of one shape: q, k, v, the output (dense, or in the serving formats), the mask and key lengths the options
 * ask for, and the modifiers' values. The mask is one [Lq, Lk] matrix broadcast over batch and heads (the common
 * padding or prefix mask), so that large sweeps do not need B*H copies of it. */
static int prepare_shape(clattn_context *ctx, const bench_config *c, const bench_shape *s, shape_data *d) {
    int rc = c->serving ? bench_serving_prepare(ctx, c, s, &d->serving) : prepare_dense(ctx, c, s, d);
    if (rc != CLI_OK) return rc;
    if (c->serving) d->io_bytes = d->serving.io_bytes;
    if (c->key_length_count) {
        d->hkl = malloc(s->batch * sizeof *d->hkl);
        if (!d->hkl) return cli_error(CMD, CLI_FAILED, "out of host memory for the key lengths");
        for (size_t b = 0; b < s->batch; ++b) d->hkl[b] = c->key_lengths[c->key_length_count > 1 ? b : 0];
        cl_int err = CL_SUCCESS;
        if (!(d->key_lengths = support_buffer(ctx, d->hkl, s->batch * sizeof *d->hkl, &err)))
            return cli_error(CMD, CLI_FAILED, "allocating the key lengths failed: OpenCL error %d", err);
        d->io_bytes += (double)(s->batch * sizeof *d->hkl);
    }
    bool any_mods = false;
    for (size_t i = 0; i < c->mods_count; ++i) any_mods = any_mods || c->mods[i] != MODS_NONE;
    if (any_mods) {
        d->sinks = malloc((s->heads + 1) * sizeof *d->sinks);
        d->slopes = malloc((s->heads + 1) * sizeof *d->slopes);
        if (!d->sinks || !d->slopes) return cli_error(CMD, CLI_FAILED, "out of host memory for the modifiers");
        support_mod_values(s->heads, d->sinks, d->slopes);
        cl_int err = CL_SUCCESS;
        if (!(d->dsinks = support_buffer(ctx, d->sinks, s->heads * sizeof(float), &err)) ||
            !(d->dslopes = support_buffer(ctx, d->slopes, s->heads * sizeof(float), &err)))
            return cli_error(CMD, CLI_FAILED, "allocating the modifiers' buffers failed: OpenCL error %d", err);
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Timing */

/* One attention call as the timing loop makes it. */
clattn_status bench_call_sdpa(void *user, cl_command_queue queue, cl_event *done) {
    bench_sdpa_call *a = user;
    return clattn_sdpa(a->ctx, &a->desc, &a->q, &a->k, &a->v, &a->o, queue, 0, NULL, done);
}

/* Runs `warmup` untimed and `repeat` timed calls and fills the times of `r`. */
static int measure(clattn_context *ctx, const bench_config *c, const bench_shape *s, const shape_data *d,
                   clattn_causal causal, int impl, int mods, double *times, bench_result *r) {
    bench_sdpa_call a = {.ctx = ctx};
    clattn_sdpa_desc_init(&a.desc);
    a.desc.causal = causal;
    a.desc.window_left = c->window_left;
    a.desc.window_right = c->window_right;
    a.desc.impl = impl_values[impl];
    a.desc.key_lengths = d->key_lengths;
    if (mods & MODS_SOFTCAP) a.desc.softcap = BENCH_SOFTCAP;
    if (mods & MODS_SINKS) a.desc.sinks = clattn_tensor_bhld(d->dsinks, CLATTN_DTYPE_F32, 1, s->heads, 1, 1);
    if (mods & MODS_ALIBI)
        a.desc.alibi_slopes = clattn_tensor_bhld(d->dslopes, CLATTN_DTYPE_F32, 1, s->heads, 1, 1);
    /* The same modifiers as the caller would write them; ALiBi's query position is aligned as the built-in one's
     * (bottom-right causal shifts it by Lk - Lq). */
    char expr[128] = "";
    if (mods & MODS_SOFTCAP_FN)
        snprintf(expr, sizeof expr, "%#.9gf * tanh(score / %#.9gf)", BENCH_SOFTCAP, BENCH_SOFTCAP);
    if (mods & MODS_ALIBI_FN) {
        const long long shift = causal == CLATTN_CAUSAL_BOTTOM_RIGHT ? (long long)s->kv_seq - (long long)s->seq : 0;
        snprintf(expr, sizeof expr, "score - slope[h] * (float)abs(q_idx + %lld - kv_idx)", shift);
        a.desc.mod_buffers[0] = (clattn_mod_buffer){"slope", d->dslopes, CLATTN_MOD_F32, s->heads};
    }
    if (expr[0]) a.desc.score_mod = expr;
    if (c->serving)
        bench_serving_tensors(&d->serving, &a.desc, &a.q, &a.k, &a.v, &a.o);
    else
        support_sdpa_inputs_tensors(&d->in, &a.desc, &a.q, &a.k, &a.v, &a.o);
    char what[64];
    snprintf(what, sizeof what, "attention (%s)", impl_names[impl]);
    bench_timing t;
    int rc = bench_time_calls(CMD, what, ctx, c->warmup, c->repeat, bench_call_sdpa, &a, times, &t);
    if (rc != CLI_OK) return rc;
    r->median_ms = t.median_ms;
    r->min_ms = t.min_ms;
    r->max_ms = t.max_ms;
    r->temp_bytes = t.temp_bytes;
    r->host_timer = t.host_timer;
    return CLI_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Output */

static void table_header(const bench_config *c, const clattn_device_info *info) {
    printf("device: %s (%s, %s)\n", info->name, info->platform_name, info->driver_version);
    printf("sdpa %s", clattn_dtype_name(c->dtype));
    if (c->mask) printf(", random %s mask [Lq, Lk]", mask_names[c->mask]);
    if (c->window_left != CLATTN_WINDOW_UNBOUNDED || c->window_right != CLATTN_WINDOW_UNBOUNDED)
        printf(", window %lld,%lld", (long long)c->window_left, (long long)c->window_right);
    for (size_t b = 0; b < c->key_length_count; ++b)
        printf("%s%d",
               b                         ? ","
               : c->key_length_count > 1 ? ", key lengths "
                                         : ", key length ",
               (int)c->key_lengths[b]);
    printf(", %ld timed runs after %ld warm-up; GFLOP/s counts only unmasked pairs\n", c->repeat, c->warmup);
    if (c->serving) bench_serving_header(c);
    printf("\n");
    if (c->mods_given)
        printf(
            "score modifiers: softcap %g, sinks 0.5, ALiBi slopes 2^(-8(h+1)/H); vs plain: the plain row's median "
            "/ this row's (1.00x = as fast)\n",
            (double)BENCH_SOFTCAP);
    printf("%3s %3s %3s %5s %5s %3s  %-12s %-7s %s%s%9s %8s %8s %8s %7s %8s %8s%s\n", "B", "Hq", "Hkv", "Lq", "Lk",
           "D", "causal", "impl", c->serving ? "K/V         " : "", c->mods_given ? "mods       vs plain " : "",
           "median ms", "min ms", "max ms", "GFLOP/s", "GB/s", "temp MiB", "speed-up",
           c->check ? "  max error" : "");
}

static void table_row(const bench_config *c, const bench_result *r, const bench_result *unfused) {
    const bench_shape *s = &r->shape;
    char speedup[32] = "";
    if (r->impl == IMPL_FUSED && unfused && r->median_ms > 0.0)
        snprintf(speedup, sizeof speedup, "%.2fx", unfused->median_ms / r->median_ms);
    char mods[32] = "";
    if (c->mods_given) {
        char ratio[16] = "";
        if (r->vs_plain > 0.0) snprintf(ratio, sizeof ratio, "%.2fx", r->vs_plain);
        snprintf(mods, sizeof mods, "%-10s %8s ", mods_name(r->mods), ratio);
    }
    char layout[64] = "";
    if (c->serving) {
        char what[48];
        snprintf(layout, sizeof layout, "%-11s ", bench_serving_layout(c, what, sizeof what));
    }
    printf("%3zu %3zu %3zu %5zu %5zu %3zu  %-12s %-7s %s%s%9.3f %8.3f %8.3f %8.2f %7.2f %8.2f %8s", s->batch,
           s->heads, s->kv_heads, s->seq, s->kv_seq, s->head_dim, causal_names[r->causal], impl_names[r->impl],
           layout, mods, r->median_ms, r->min_ms, r->max_ms, r->gflops, r->gbps,
           (double)r->temp_bytes / (1024.0 * 1024.0), speedup);
    if (c->check) bench_check_table_cell(&r->check);
    printf("\n");
}

static cJSON *json_result(const bench_config *c, const clattn_device_info *info, const bench_result *r) {
    const bench_shape *s = &r->shape;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", "sdpa");
    cJSON_AddStringToObject(o, "impl", impl_names[r->impl]);
    cJSON_AddStringToObject(o, "device", info->name);
    cJSON_AddNumberToObject(o, "batch", (double)s->batch);
    cJSON_AddNumberToObject(o, "heads", (double)s->heads);
    cJSON_AddNumberToObject(o, "kv_heads", (double)s->kv_heads);
    cJSON_AddNumberToObject(o, "seq", (double)s->seq);
    cJSON_AddNumberToObject(o, "kv_seq", (double)s->kv_seq);
    cJSON_AddNumberToObject(o, "head_dim", (double)s->head_dim);
    cJSON_AddStringToObject(o, "dtype", clattn_dtype_name(c->dtype));
    cJSON_AddStringToObject(o, "causal", causal_names[r->causal]);
    cJSON_AddNumberToObject(o, "window_left", (double)c->window_left);
    cJSON_AddNumberToObject(o, "window_right", (double)c->window_right);
    if (c->key_length_count == 1) {
        cJSON_AddNumberToObject(o, "key_length", (double)c->key_lengths[0]);
    } else if (c->key_length_count > 1) {
        cJSON *kl = cJSON_AddArrayToObject(o, "key_length");
        for (size_t b = 0; b < c->key_length_count; ++b)
            cJSON_AddItemToArray(kl, cJSON_CreateNumber((double)c->key_lengths[b]));
    } else {
        cJSON_AddNullToObject(o, "key_length");
    }
    /* The serving formats: the K/V storage and layout, the cache's block size, the packed sequences' lengths. */
    cJSON_AddStringToObject(o, "kv_dtype", clattn_dtype_name(c->serving ? c->kv_dtype : c->dtype));
    cJSON_AddStringToObject(o, "kv_layout", kv_layout_name(c));
    if (c->page)
        cJSON_AddNumberToObject(o, "page", (double)c->page);
    else
        cJSON_AddNullToObject(o, "page");
    if (c->varlen_count) {
        cJSON *vl = cJSON_AddArrayToObject(o, "varlen");
        for (size_t b = 0; b < c->varlen_count; ++b)
            cJSON_AddItemToArray(vl, cJSON_CreateNumber((double)c->varlen[b]));
    } else {
        cJSON_AddNullToObject(o, "varlen");
    }
    cJSON_AddStringToObject(o, "mask", mask_names[c->mask]);
    cJSON_AddStringToObject(o, "mods", mods_name(r->mods));
    if (r->vs_plain > 0.0)
        cJSON_AddNumberToObject(o, "vs_plain", r->vs_plain);
    else
        cJSON_AddNullToObject(o, "vs_plain");
    cJSON_AddNumberToObject(o, "repeat", (double)c->repeat);
    cJSON_AddNumberToObject(o, "warmup", (double)c->warmup);
    cJSON_AddStringToObject(o, "timer", r->host_timer ? "host" : "events");
    cJSON_AddNumberToObject(o, "median_ms", r->median_ms);
    cJSON_AddNumberToObject(o, "min_ms", r->min_ms);
    cJSON_AddNumberToObject(o, "max_ms", r->max_ms);
    cJSON_AddNumberToObject(o, "flops", r->flops);
    cJSON_AddNumberToObject(o, "gflops", r->gflops);
    cJSON_AddNumberToObject(o, "io_bytes", r->io_bytes);
    cJSON_AddNumberToObject(o, "gbps", r->gbps);
    cJSON_AddNumberToObject(o, "temp_bytes", (double)r->temp_bytes);
    if (c->check) bench_check_json(o, &r->check);
    return o;
}

static const char *const csv_columns =
    "op,impl,device,batch,heads,kv_heads,seq,kv_seq,head_dim,dtype,causal,window_left,window_right,key_length,mask,"
    "repeat,warmup,timer,median_ms,min_ms,max_ms,flops,gflops,io_bytes,gbps,temp_bytes,max_error,tolerance,mods,"
    "vs_plain,kv_dtype,kv_layout,page,varlen";

/* A list of lengths as one CSV field ("3,37,512", quoted). */
static void csv_lengths(const int32_t *i32, const size_t *sz, size_t n) {
    char text[BENCH_MAX_SEQS * 12] = "";
    for (size_t b = 0, at = 0; b < n && at < sizeof text; ++b)
        at += (size_t)snprintf(text + at, sizeof text - at, "%s%lld", b ? "," : "",
                               i32 ? (long long)i32[b] : (long long)sz[b]);
    bench_csv_string(text);
}

static void csv_row(const bench_config *c, const clattn_device_info *info, const bench_result *r) {
    const bench_shape *s = &r->shape;
    printf("sdpa,%s,", impl_names[r->impl]);
    bench_csv_string(info->name);
    printf(",%zu,%zu,%zu,%zu,%zu,%zu,%s,%s,%lld,%lld,", s->batch, s->heads, s->kv_heads, s->seq, s->kv_seq,
           s->head_dim, clattn_dtype_name(c->dtype), causal_names[r->causal], (long long)c->window_left,
           (long long)c->window_right);
    csv_lengths(c->key_lengths, NULL, c->key_length_count);
    printf(",%s,%ld,%ld,%s,%.6f,%.6f,%.6f,%.0f,%.4f,%.0f,%.4f,%llu,", mask_names[c->mask], c->repeat, c->warmup,
           r->host_timer ? "host" : "events", r->median_ms, r->min_ms, r->max_ms, r->flops, r->gflops, r->io_bytes,
           r->gbps, (unsigned long long)r->temp_bytes);
    bench_check_csv(&r->check);
    printf(",%s,", mods_name(r->mods));
    if (r->vs_plain > 0.0) printf("%.4f", r->vs_plain);
    printf(",%s,%s,", clattn_dtype_name(c->serving ? c->kv_dtype : c->dtype), kv_layout_name(c));
    if (c->page) printf("%zu", c->page);
    printf(",");
    csv_lengths(NULL, c->varlen, c->varlen_count);
    printf("\n");
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The command */

static int bench_sdpa(int argc, char **argv) {
    cli_option options[] = {
        {"batch", "B", "batch size (default 1)", NULL},
        {"heads", "H", "query heads (default 8)", NULL},
        {"kv-heads", "H", "key/value heads (default: --heads); fewer is grouped-query attention", NULL},
        {"seq", "L", "query length (default 1024)", NULL},
        {"kv-seq", "L", "key length (default: --seq)", NULL},
        {"head-dim", "D", "head dimension (default 64)", NULL},
        {"sweep", "NAME=V,...", "one run per value of seq, kv-seq, heads, kv-heads, head-dim or batch", NULL},
        {"causal", "ALIGN", "top-left, bottom-right or none, or a comma list of them (default none)", NULL},
        CLI_OPTION_WINDOW,
        {"key-length", "N[,...]", "keys past N are masked (padding): one N for every batch item, or one per item",
         NULL},
        {"mask", "KIND", "a random additive or bool mask [Lq, Lk], broadcast over batch and heads", NULL},
        {"mods", "LIST",
         "score modifiers, a row group each: none, softcap, sinks, alibi, all, and softcap-fn, alibi-fn (the same "
         "written as a score_mod; fused only) (default none)",
         NULL},
        {"dtype", "TYPE", "storage type on the device: f32 (default), f16 or bf16", NULL},
        {"impl", "IMPL", "fused, unfused or all (default)", NULL},
        {"varlen", "L1,L2,...",
         "packed sequences of these lengths, queries and keys alike (prefill; sets the batch)", NULL},
        {"paged", "BLOCK", "keys and values in a paged cache of BLOCK-key pages (8..256), shuffled", NULL},
        {"kv-dtype", "TYPE", "K/V storage: f32, f16, bf16, i8 or fp8 (quantized); default --dtype", NULL},
        {"flex", "MASK",
         "causal or documents[:N] written as mask_mod: timed without and with its block mask, against the "
         "built-in mask",
         NULL},
        {"block-size", "N", "the block mask's blocks of --flex, N x N (default 128)", NULL},
        BENCH_COMMON_OPTIONS,
    };
    cli_command cmd = {
        CMD,
        "Time scaled dot-product attention on the device (OpenCL profiling events, after warm-up) and "
        "report ms, GFLOP/s,\neffective GB/s and temporary device memory, fused against unfused. With "
        "no shape, sweep or mask option it\nruns B=1 H=8 L=1024 D=64 fp32, non-causal and causal.",
        "[options]", options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;

    bench_config c;
    if ((rc = parse_options(&cmd, &c))) return rc;
    const char *flex = cli_value(&cmd, "flex");
    size_t flex_docs = 0, flex_block = 128;
    if (flex && (rc = bench_flex_parse(CMD, flex, &flex_docs))) return rc;
    if (flex && (c.format != FORMAT_TABLE || c.check || c.serving))
        return cli_error(CMD, CLI_USAGE,
                         "--flex prints a table of its own: it takes no --json, --csv, --check or "
                         "serving options");
    if (cli_value(&cmd, "block-size")) {
        size_t bs = 0;
        if (!flex || run_parse_sizes(cli_value(&cmd, "block-size"), &bs, 1, 1u << 28) != 0 || bs == 0)
            return cli_error(CMD, CLI_USAGE, "--block-size %s: expected a positive size, with --flex",
                             cli_value(&cmd, "block-size"));
        flex_block = bs;
    }
    bench_run run;
    if ((rc = bench_run_open(&run, CMD, cli_value(&cmd, "device"), c.repeat, c.format == FORMAT_JSON))) return rc;
    if (flex) return bench_run_close(&run, CMD, bench_flex(CMD, &run, &c, flex_docs, flex_block), 0);
    clattn_context *ctx = run.ctx;
    const clattn_device_info info = run.info;
    double *times = run.times;
    cJSON *json = run.json;
    if (c.format == FORMAT_TABLE) table_header(&c, &info);
    if (c.format == FORMAT_CSV) printf("%s\n", csv_columns);
    fflush(stdout);

    const bool progress = c.shape_count > 1 && isatty(STDERR_FILENO);
    const size_t impls = (size_t)c.impl[IMPL_FUSED] + (size_t)c.impl[IMPL_UNFUSED];
    const size_t total_steps = c.shape_count * c.causal_count * impls * c.mods_count;
    size_t step = 0;
    size_t failed_checks = 0;
    bool skipped_note = false, wide_note = false;
    for (size_t si = 0; si < c.shape_count && rc == CLI_OK; ++si) {
        const bench_shape *s = &c.shapes[si];
        shape_data d;
        memset(&d, 0, sizeof d);
        rc = prepare_shape(ctx, &c, s, &d);
        for (size_t ci = 0; ci < c.causal_count && rc == CLI_OK; ++ci) {
            const clattn_causal causal = c.causal[ci];
            /* The pairs of one head over the whole batch, each sequence with its own lengths. */
            const uint64_t pairs =
                c.serving ? bench_serving_pairs(&c, &d.serving, causal) : allowed_pairs(&c, s, causal);
            const double heads = (double)s->heads;
            const double flops = 4.0 * heads * (double)pairs * (double)s->head_dim;
            /* The reference does one multiply-add per (pair, element) for the logits and one for the output. */
            const bool can_check =
                c.check && 2.0 * heads * (double)pairs * (double)s->head_dim <= BENCH_REFERENCE_LIMIT;
            if (c.check && !can_check) bench_check_skip_note(CMD, &skipped_note);
            /* The plain rows' medians, for the modified rows' ratios (the plain group comes first when listed). */
            double plain_ms[IMPL_COUNT] = {0.0, 0.0};
            for (size_t mi = 0; mi < c.mods_count && rc == CLI_OK; ++mi) {
                const int mods = c.mods[mi];
                double *ref = NULL;
                if (can_check && !c.serving &&
                    !(ref = support_sdpa_inputs_reference_mods(&d.in, causal, c.window_left, c.window_right, d.hkl,
                                                               MODS_HAS_SOFTCAP(mods) ? BENCH_SOFTCAP : 0.0f,
                                                               mods & MODS_SINKS ? d.sinks : NULL,
                                                               MODS_HAS_ALIBI(mods) ? d.slopes : NULL)))
                    rc = cli_error(CMD, CLI_FAILED, "the reference could not be computed (out of host memory?)");
                bench_result results[IMPL_COUNT];
                bool have[IMPL_COUNT] = {false, false};
                for (int impl = 0; impl < IMPL_COUNT && rc == CLI_OK; ++impl) {
                    if (!c.impl[impl]) continue;
                    ++step;
                    /* A score_mod runs fused only: its rows have no unfused timing. */
                    if (impl == IMPL_UNFUSED && (mods & MODS_SCORE_FNS)) continue;
                    /* Comparing both, a head past the fused kernels' bound is timed unfused alone; --impl fused
                     * asks for it, and gets the library's error. */
                    if (impl == IMPL_FUSED && c.impl[IMPL_UNFUSED] && s->head_dim > CLATTN_MAX_FUSED_HEAD_DIM) {
                        if (!wide_note)
                            fprintf(stderr,
                                    "clattn %s: note: head dims above %d run on the unfused implementation only\n",
                                    CMD, CLATTN_MAX_FUSED_HEAD_DIM);
                        wide_note = true;
                        continue;
                    }
                    if (progress) {
                        fprintf(stderr, "\r[%zu/%zu] %s=%zu %s %s ...\033[K", step, total_steps, c.sweep_name,
                                shape_value(s, c.sweep_name), causal_names[causal], impl_names[impl]);
                        fflush(stderr);
                    }
                    bench_result *r = &results[impl];
                    memset(r, 0, sizeof *r);
                    r->shape = *s;
                    r->causal = causal;
                    r->impl = impl;
                    r->mods = mods;
                    r->flops = flops;
                    r->io_bytes = d.io_bytes;
                    rc = measure(ctx, &c, s, &d, causal, impl, mods, times, r);
                    if (rc != CLI_OK) break;
                    if (mods == MODS_NONE) plain_ms[impl] = r->median_ms;
                    if (mods != MODS_NONE && plain_ms[impl] > 0.0 && r->median_ms > 0.0)
                        r->vs_plain = plain_ms[impl] / r->median_ms;
                    r->gflops = r->median_ms > 0.0 ? flops / (r->median_ms * 1e6) : 0.0;
                    r->gbps = r->median_ms > 0.0 ? d.io_bytes / (r->median_ms * 1e6) : 0.0;
                    if (ref) {
                        rc = bench_output_error(CMD, ctx, d.in.dout, d.in.nq, c.dtype, ref, &r->check.max_error,
                                                NULL);
                        r->check.tolerance = check_sdpa_tolerance(s->kv_seq, c.dtype);
                    } else if (can_check) {
                        /* The serving formats: each sequence alone, on the K/V values the device holds. */
                        rc = bench_serving_check(
                            ctx, &c, &d.serving, causal, MODS_HAS_SOFTCAP(mods) ? BENCH_SOFTCAP : 0.0f,
                            mods & MODS_SINKS ? d.sinks : NULL, MODS_HAS_ALIBI(mods) ? d.slopes : NULL, d.hkl,
                            &r->check.max_error);
                        const size_t longest = bench_serving_max_k(&d.serving);
                        r->check.tolerance = check_sdpa_tolerance(longest ? longest : 1, c.dtype);
                    }
                    if (rc != CLI_OK) break;
                    if (can_check) {
                        r->check.checked = true;
                        if (bench_check_failed(&r->check)) {
                            ++failed_checks;
                            fprintf(stderr,
                                    "clattn %s: %s, B=%zu Hq=%zu Lq=%zu Lk=%zu D=%zu causal %s: the output "
                                    "differs from the reference by %.3g (tolerance %.3g)\n",
                                    CMD, impl_names[impl], s->batch, s->heads, s->seq, s->kv_seq, s->head_dim,
                                    causal_names[causal], r->check.max_error, r->check.tolerance);
                        }
                    }
                    have[impl] = true;
                }
                free(ref);
                if (progress) fprintf(stderr, "\r\033[K");
                /* Rows are printed per (shape, causal) group, once both implementations are in, so that the fused
                 * row can show its speed-up over the unfused one. */
                for (int impl = 0; impl < IMPL_COUNT; ++impl) {
                    if (!have[impl]) continue;
                    const bench_result *r = &results[impl];
                    if (c.format == FORMAT_TABLE)
                        table_row(&c, r, have[IMPL_UNFUSED] ? &results[IMPL_UNFUSED] : NULL);
                    else if (c.format == FORMAT_CSV)
                        csv_row(&c, &info, r);
                    else
                        cJSON_AddItemToArray(json, json_result(&c, &info, r));
                }
                fflush(stdout);
            }
        }
        free_shape_data(&d);
    }
    if (rc == CLI_OK && c.format == FORMAT_TABLE && c.impl[IMPL_FUSED] && c.impl[IMPL_UNFUSED])
        printf("\nspeed-up: unfused median time / fused median time; temp MiB: device memory the call allocated "
               "itself\n");
    return bench_run_close(&run, CMD, rc, failed_checks);
}

static void print_bench_usage(FILE *out) {
    fprintf(out, "Usage: clattn bench [<operation>] [options]\n\nOperations:\n"
                 "  sdpa       scaled dot-product attention (see 'clattn bench sdpa --help'); the default\n"
                 "  mha        multi-head attention with its projections, or a KV-cache decoding step\n"
                 "  additive   seq2seq attention: additive (Bahdanau) and Luong scores\n\n"
                 "'clattn bench' alone times the representative shape, fused against unfused.\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        print_bench_usage(stdout);
        return CLI_OK;
    }
    /* No operation (nothing, or options straight away) means sdpa, the one operation there is so far. */
    if (argc < 1 || strncmp(argv[0], "--", 2) == 0) return bench_sdpa(argc, argv);
    if (strcmp(argv[0], "sdpa") == 0) return bench_sdpa(argc - 1, argv + 1);
    if (strcmp(argv[0], "mha") == 0 || strcmp(argv[0], "additive") == 0)
        return cmd_bench_layer(argv[0], argc - 1, argv + 1);
    return cli_error("bench", CLI_USAGE, "unknown operation '%s' (known: sdpa, mha, additive)", argv[0]);
}
