// SPDX-License-Identifier: Apache-2.0
/* CLBlast's GEMM parameters in the tuning database: the kernels the multi-head layer's GEMMs run (Xgemm for large
 * products, XgemmDirect for small ones, GemmRoutine for the size that separates them), their constraints, the
 * "clblast" section's format, and its application through CLBlastOverrideParameters when a context is created.
 * CLBlast rejects an incomplete set and compiles whatever it is given, so every set is checked here against the
 * kernels' divisibility rules and the device's limits before CLBlast sees it: a bad set would otherwise fail every
 * GEMM of the process on that device, not just one context's. */
#include "blas.h"
#include "tuning.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR2(x) #x
#define STR(x)  STR2(x)

/* Names in CLBlast's order (its databases list them alphabetically). */
static const char *const xgemm_params[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                                           "NDIMC", "NWG",  "SA",  "SB",  "STRM",  "STRN",  "VWM", "VWN"};
static const char *const direct_params[] = {"KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD",
                                            "PADA", "PADB",   "VWMD",   "VWND",   "WGD"};
static const char *const routine_params[] = {"XGEMM_MIN_INDIRECT_SIZE"};

const cla_clblast_kernel cla_clblast_kernels[CLA_CLBLAST_KERNEL_COUNT] = {
    {"Xgemm", 16, xgemm_params},
    {"XgemmDirect", 10, direct_params},
    {"GemmRoutine", 1, routine_params},
};

const char *cla_clblast_version(void) {
    return STR(CLBLAST_VERSION_MAJOR) "." STR(CLBLAST_VERSION_MINOR) "." STR(CLBLAST_VERSION_PATCH);
}

static bool is_vector_width(size_t v) {
    return v == 1 || v == 2 || v == 4 || v == 8 || v == 16;
}

static size_t max_group(const clattn_device_info *d) {
    return d->max_work_group_size ? d->max_work_group_size : 1;
}

/* a % b == 0 with b > 0. */
static bool divides(size_t b, size_t a) {
    return b > 0 && a % b == 0;
}

/* The thread layout both GEMM kernels share: an mc x nc work-group that loads A's tile as ma-wide and B's as
 * nb-wide rows over a k-deep tile. why[0] is the message of a tile that does not divide, why[1] of a work-group
 * the device refuses. */
static const char *check_threads(size_t ma, size_t nb, size_t mc, size_t nc, size_t k, const clattn_device_info *d,
                                 const char *const why[2]) {
    const size_t threads = mc * nc;
    if (!divides(ma, threads) || !divides(nb, threads) || !divides(threads / ma, k) || !divides(threads / nb, k))
        return why[0];
    if (threads > max_group(d) || (d->max_work_item_sizes[0] && mc > d->max_work_item_sizes[0]) ||
        (d->max_work_item_sizes[1] && nc > d->max_work_item_sizes[1]))
        return why[1];
    return NULL;
}

static const char *check_xgemm(const size_t *v, const clattn_device_info *d) {
    const size_t gemmk = v[0], kreg = v[1], kwg = v[2], kwi = v[3], mdima = v[4], mdimc = v[5], mwg = v[6];
    const size_t ndimb = v[7], ndimc = v[8], nwg = v[9], sa = v[10], sb = v[11], strm = v[12], strn = v[13];
    const size_t vwm = v[14], vwn = v[15];
    /* The 2D-register variant (GEMMK 1) has rules of its own; only the common kernel is tuned and accepted. */
    if (gemmk != 0 || kreg != 1) return "only GEMMK=0 with KREG=1 is supported";
    if (sa > 1 || sb > 1 || strm > 1 || strn > 1) return "SA, SB, STRM and STRN must be 0 or 1";
    if (!is_vector_width(vwm) || !is_vector_width(vwn)) return "VWM and VWN must be 1, 2, 4, 8 or 16";
    if (!mdima || !mdimc || !ndimb || !ndimc || !kwg || !kwi || !mwg || !nwg || mwg > 1024 || nwg > 1024 ||
        kwg > 1024)
        return "a tile size or thread count is 0 or above 1024";
    if (!divides(kwi, kwg)) return "KWG must be a multiple of KWI";
    if (!divides(mdimc * vwm, mwg) || !divides(ndimc * vwn, nwg))
        return "MWG must be a multiple of MDIMC*VWM and NWG of NDIMC*VWN";
    if (!divides(mdima * vwm, mwg) || !divides(ndimb * vwn, nwg))
        return "MWG must be a multiple of MDIMA*VWM and NWG of NDIMB*VWN";
    static const char *const why[2] = {"KWG must be a multiple of MDIMC*NDIMC/MDIMA and of MDIMC*NDIMC/NDIMB",
                                       "work-group MDIMC x NDIMC larger than the device allows"};
    const char *bad = check_threads(mdima, ndimb, mdimc, ndimc, kwg, d, why);
    if (bad) return bad;
    if ((sa * kwg * mwg + sb * kwg * nwg) * sizeof(float) > d->local_mem_bytes)
        return "the SA/SB tiles need more local memory than the device has";
    return NULL;
}

static const char *check_direct(const size_t *v, const clattn_device_info *d) {
    const size_t kwid = v[0], mdimad = v[1], mdimcd = v[2], ndimbd = v[3], ndimcd = v[4], pada = v[5], padb = v[6];
    const size_t vwmd = v[7], vwnd = v[8], wgd = v[9];
    if (pada > 1 || padb > 1) return "PADA and PADB must be 0 or 1";
    if (!is_vector_width(vwmd) || !is_vector_width(vwnd)) return "VWMD and VWND must be 1, 2, 4, 8 or 16";
    if (!kwid || !mdimad || !mdimcd || !ndimbd || !ndimcd || !wgd || wgd > 256)
        return "a tile size or thread count is 0, or WGD above 256";
    if (!divides(kwid, wgd)) return "WGD must be a multiple of KWID";
    if (!divides(mdimcd * vwmd, wgd) || !divides(ndimcd * vwnd, wgd) || !divides(mdimad * vwmd, wgd) ||
        !divides(ndimbd * vwnd, wgd))
        return "WGD must be a multiple of MDIMCD*VWMD, NDIMCD*VWND, MDIMAD*VWMD and NDIMBD*VWND";
    static const char *const why[2] = {"WGD must be a multiple of MDIMCD*NDIMCD/MDIMAD and of MDIMCD*NDIMCD/NDIMBD",
                                       "work-group MDIMCD x NDIMCD larger than the device allows"};
    const char *bad = check_threads(mdimad, ndimbd, mdimcd, ndimcd, wgd, d, why);
    if (bad) return bad;
    if ((wgd * (wgd + pada) + wgd * (wgd + padb)) * sizeof(float) > d->local_mem_bytes)
        return "the direct kernel's tiles need more local memory than the device has";
    return NULL;
}

const char *cla_clblast_check(int kernel, const size_t *values, const clattn_device_info *d) {
    switch (kernel) {
    case CLA_CLBLAST_XGEMM:
        return check_xgemm(values, d);
    case CLA_CLBLAST_XGEMM_DIRECT:
        return check_direct(values, d);
    case CLA_CLBLAST_GEMM_ROUTINE:
        /* m*n*k below this cubed runs the direct kernel; CLBlast cubes it in size_t. */
        return values[0] <= (1u << 20) ? NULL : "XGEMM_MIN_INDIRECT_SIZE above 2^20";
    }
    return "unknown CLBlast kernel";
}

void cla_clblast_format(int kernel, const size_t *values, char *out, size_t size) {
    size_t used = 0;
    if (size) out[0] = '\0';
    const cla_clblast_kernel *k = &cla_clblast_kernels[kernel];
    for (int i = 0; i < k->count && used < size; ++i) {
        int n = snprintf(out + used, size - used, "%s%s=%zu", i ? "," : "", k->params[i], values[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* ---- the section ---- */

static const char *parse_kernel(const cJSON *o, int kernel, size_t *values) {
    const cla_clblast_kernel *k = &cla_clblast_kernels[kernel];
    if (!cJSON_IsObject(o)) return "a kernel entry is not an object";
    const cJSON *prec = cJSON_GetObjectItemCaseSensitive(o, "precision");
    if (prec && (!cJSON_IsNumber(prec) || prec->valuedouble != 32))
        return "only precision 32 (fp32, the layer's GEMMs) is supported";
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "params");
    if (!cJSON_IsObject(params)) return "a kernel entry has no 'params' object";
    if (cJSON_GetArraySize(params) != k->count) return "'params' must name each parameter of the kernel once";
    for (int i = 0; i < k->count; ++i) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, k->params[i]);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > (double)(1u << 20) || v->valuedouble != floor(v->valuedouble))
            return "a parameter is missing or not a whole number from 0 to 2^20";
        values[i] = (size_t)v->valuedouble;
    }
    return NULL;
}

bool cla_clblast_section_parse(const char *text, cla_clblast_section *s, char *why, size_t why_size) {
    memset(s, 0, sizeof *s);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const char *err = NULL;
    if (!cJSON_IsObject(root)) err = "not a JSON object";
    const cJSON *it;
    if (!err) {
        cJSON_ArrayForEach(it, root) {
            const char *key = it->string ? it->string : "";
            int kernel = -1;
            for (int i = 0; i < CLA_CLBLAST_KERNEL_COUNT; ++i)
                if (strcmp(key, cla_clblast_kernels[i].name) == 0) kernel = i;
            if (kernel >= 0) {
                err = parse_kernel(it, kernel, s->values[kernel]);
                s->given[kernel] = !err;
            } else if (strcmp(key, "version") == 0 || strcmp(key, "shapes") == 0) {
                char *dst = key[0] == 'v' ? s->version : s->shapes;
                size_t cap = key[0] == 'v' ? sizeof s->version : sizeof s->shapes;
                if (!cJSON_IsString(it) || strlen(it->valuestring) >= cap)
                    err = "'version' or 'shapes' is not a short string";
                else
                    memcpy(dst, it->valuestring, strlen(it->valuestring) + 1);
            } else if (strcmp(key, "ms") == 0 || strcmp(key, "default_ms") == 0) {
                if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0)
                    err = "'ms' or 'default_ms' is not a time in milliseconds";
                else
                    *(key[0] == 'm' ? &s->ms : &s->default_ms) = it->valuedouble;
            } else {
                err = "unknown field (kernels are Xgemm, XgemmDirect and GemmRoutine)";
            }
            if (err) break;
        }
    }
    if (!err && !s->version[0]) err = "no 'version' of CLBlast";
    cJSON_Delete(root);
    if (err) {
        cla_write_message(why, why_size, "%s", err);
        memset(s, 0, sizeof *s);
        return false;
    }
    return true;
}

char *cla_clblast_section_to_json(const cla_clblast_section *s) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "version", s->version);
    if (s->shapes[0]) cJSON_AddStringToObject(root, "shapes", s->shapes);
    if (s->ms > 0) cJSON_AddNumberToObject(root, "ms", s->ms);
    if (s->default_ms > 0) cJSON_AddNumberToObject(root, "default_ms", s->default_ms);
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
        if (!s->given[k]) continue;
        cJSON *o = cJSON_AddObjectToObject(root, cla_clblast_kernels[k].name);
        cJSON *p = o ? (cJSON_AddNumberToObject(o, "precision", 32), cJSON_AddObjectToObject(o, "params")) : NULL;
        for (int i = 0; p && i < cla_clblast_kernels[k].count; ++i)
            cJSON_AddNumberToObject(p, cla_clblast_kernels[k].params[i], (double)s->values[k][i]);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- applying it ---- */

void cla_clblast_apply(clattn_context *ctx) {
    cla_tuning_state *t = ctx->tuning;
    if (!t || !t->found || !t->db.clblast) return;
    cla_clblast_section s;
    char why[256] = "";
    if (!cla_clblast_section_parse(t->db.clblast, &s, why, sizeof why)) {
        cla_log(ctx, CLATTN_LOG_WARNING,
                "tuning database %s: its \"clblast\" section is malformed (%s); CLBlast keeps its own parameters. "
                "Rerun `clattn tune --clblast`.",
                t->file, why);
        return;
    }
    if (strcmp(s.version, cla_clblast_version()) != 0) {
        cla_log(
            ctx, CLATTN_LOG_WARNING,
            "tuning database %s: its \"clblast\" section was tuned with CLBlast %s, this library uses %s; it is "
            "ignored. Rerun `clattn tune --clblast`.",
            t->file, s.version, cla_clblast_version());
        return;
    }
    /* All or nothing: the kernels were measured together, and a partial set was never timed. */
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
        const char *bad = s.given[k] ? cla_clblast_check(k, s.values[k], &ctx->info) : NULL;
        if (bad) {
            cla_log(ctx, CLATTN_LOG_WARNING,
                    "tuning database %s: the CLBlast %s parameters cannot be used on this device (%s); none of the "
                    "section is applied",
                    t->file, cla_clblast_kernels[k].name, bad);
            return;
        }
    }
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k) {
        if (!s.given[k]) continue;
        const cla_clblast_kernel *kd = &cla_clblast_kernels[k];
        const char *names[CLA_CLBLAST_MAX_PARAMS];
        for (int i = 0; i < kd->count; ++i) names[i] = kd->params[i];
        /* Every device of the context: a split attention call runs the GEMMs of its parts on each of them, and
         * one set of parameters keeps their results identical to one device's. */
        CLBlastStatusCode st = CLBlastSuccess;
        for (size_t d = 0; d < ctx->device_count && st == CLBlastSuccess; ++d)
            st = cla_blas_override(ctx->devices[d], kd->name, (size_t)kd->count, names, s.values[k]);
        char text[CLA_TUNE_PARAMS_TEXT];
        cla_clblast_format(k, s.values[k], text, sizeof text);
        if (st != CLBlastSuccess) {
            cla_log(ctx, CLATTN_LOG_WARNING,
                    "tuning database %s: CLBlastOverrideParameters(%s) failed with status %d %s; CLBlast keeps its "
                    "own %s parameters",
                    t->file, kd->name, (int)st, cla_blas_status_name(st), kd->name);
            continue;
        }
        cla_strlcpy(t->clblast_applied[k], text, sizeof t->clblast_applied[k]);
        cla_log(ctx, CLATTN_LOG_INFO, "applied tuned CLBlast %s parameters (fp32) on '%s': %s", kd->name,
                ctx->info.name, text);
    }
    t->clblast_ms = s.ms;
    t->clblast_default_ms = s.default_ms;
}
