// SPDX-License-Identifier: Apache-2.0
/* The compiled-in variants `clattn kernels export` records beside each class (see kernels_variants.h). A variant
 * changes only the descriptor of the recorded call and the tensors' views, so the programs listed are the ones the
 * library builds for such calls, by the same code path. */
#define _POSIX_C_SOURCE 200809L
#include "kernels_variants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mod_names[] = {"softcap", "sinks", "alibi"}; /* bits 1, 2, 4 */
static const char *const layout_names[LAYOUT_COUNT] = {"dense", "packed", "paged", "packed-paged"};

/* Splits `text` (modified) at commas into at most `max` items; -1 on an empty item or too many. */
static int split(char *text, char **items, int max) {
    int n = 0;
    for (char *s = text; s;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = '\0';
        if (!*s || n == max) return -1;
        items[n++] = s;
        s = comma ? comma + 1 : NULL;
    }
    return n;
}

/* One set of modifiers: none, all, or names joined by '+'; -1 if malformed. */
static int parse_mod_set(char *text) {
    if (strcmp(text, "none") == 0) return 0;
    if (strcmp(text, "all") == 0) return 7;
    int bits = 0;
    for (char *s = text; s;) {
        char *plus = strchr(s, '+');
        if (plus) *plus = '\0';
        int b = 0;
        while (b < 3 && strcmp(s, mod_names[b]) != 0) ++b;
        if (b == 3 || (bits & 1 << b)) return -1;
        bits |= 1 << b;
        s = plus ? plus + 1 : NULL;
    }
    return bits;
}

int kernels_variants_parse(const char *cmd, const cli_command *c, kernels_variants *v) {
    memset(v, 0, sizeof *v);
    char buf[512];
    char *items[VARIANT_MAX_ITEMS];
    const char *opts[4] = {"mods", "kv-layouts", "page-sizes", "kv-dtypes"};
    const char *dflt[4] = {"none", "dense", "16", "same"};
    for (int o = 0; o < 4; ++o) {
        const char *text = cli_value(c, opts[o]);
        snprintf(buf, sizeof buf, "%s", text ? text : dflt[o]);
        const int n = split(buf, items, VARIANT_MAX_ITEMS);
        if (n <= 0)
            return cli_error(cmd, CLI_USAGE, "--%s: expected a comma-separated list of at most %d", opts[o],
                             VARIANT_MAX_ITEMS);
        for (int i = 0; i < n; ++i) {
            char *it = items[i];
            if (o == 0) {
                const int m = parse_mod_set(it);
                if (m < 0)
                    return cli_error(cmd, CLI_USAGE,
                                     "--mods: '%s' is not none, all, or softcap, sinks and alibi joined by '+'",
                                     items[i]);
                v->mods[v->n_mods++] = m;
            } else if (o == 1) {
                int l = 0;
                while (l < LAYOUT_COUNT && strcmp(it, layout_names[l]) != 0) ++l;
                if (l == LAYOUT_COUNT)
                    return cli_error(cmd, CLI_USAGE,
                                     "--kv-layouts: '%s' is not dense, packed, paged or packed-paged", it);
                v->layouts[v->n_layouts++] = l;
            } else if (o == 2) {
                char *end = NULL;
                const unsigned long p = strtoul(it, &end, 10);
                if (*end || p < 8 || p > 256 || (p & (p - 1)))
                    return cli_error(cmd, CLI_USAGE, "--page-sizes: '%s' is not a power of two from 8 to 256", it);
                v->pages[v->n_pages++] = p;
            } else {
                int dt = strcmp(it, "same") == 0  ? -1
                         : strcmp(it, "i8") == 0  ? CLATTN_DTYPE_I8
                         : strcmp(it, "fp8") == 0 ? CLATTN_DTYPE_FP8_E4M3
                                                  : -2;
                if (dt == -2) return cli_error(cmd, CLI_USAGE, "--kv-dtypes: '%s' is not same, i8 or fp8", it);
                v->kv_dtypes[v->n_kv_dtypes++] = dt;
            }
        }
    }
    v->score_mod = cli_value(c, "score-mod");
    v->mask_mod = cli_value(c, "mask-mod");
    const char *spec = cli_value(c, "mod-buffers");
    if (!spec) return CLI_OK;
    if (!v->score_mod && !v->mask_mod)
        return cli_error(cmd, CLI_USAGE, "--mod-buffers goes with --score-mod or --mask-mod");
    snprintf(v->mod_spec, sizeof v->mod_spec, "%s", spec);
    int n = split(v->mod_spec, items, CLATTN_MAX_MOD_BUFFERS);
    for (int i = 0; i < n; ++i) {
        char *eq = strchr(items[i], '=');
        if (eq) *eq = '\0';
        const bool f32 = eq && strcmp(eq + 1, "f32") == 0, i32 = eq && strcmp(eq + 1, "i32") == 0;
        if (!f32 && !i32) {
            n = -1;
            break;
        }
        v->mod_buffers[i] = (clattn_mod_buffer){items[i], NULL, f32 ? CLATTN_MOD_F32 : CLATTN_MOD_I32, 1};
    }
    if (n <= 0)
        return cli_error(cmd, CLI_USAGE,
                         "--mod-buffers %s: expected NAME=f32 or NAME=i32, at most %d, comma-separated", spec,
                         CLATTN_MAX_MOD_BUFFERS);
    return CLI_OK;
}

void kernels_variants_json(const kernels_variants *v, cJSON *classes) {
    cJSON *m = cJSON_AddArrayToObject(classes, "mods");
    for (int i = 0; i < v->n_mods; ++i) {
        char text[32] = "";
        for (int b = 0; b < 3; ++b)
            if (v->mods[i] & 1 << b)
                snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s", *text ? "+" : "", mod_names[b]);
        cJSON_AddItemToArray(m, cJSON_CreateString(*text ? text : "none"));
    }
    cJSON *l = cJSON_AddArrayToObject(classes, "kv_layouts");
    for (int i = 0; i < v->n_layouts; ++i) cJSON_AddItemToArray(l, cJSON_CreateString(layout_names[v->layouts[i]]));
    cJSON *p = cJSON_AddArrayToObject(classes, "page_sizes");
    for (int i = 0; i < v->n_pages; ++i) cJSON_AddItemToArray(p, cJSON_CreateNumber((double)v->pages[i]));
    cJSON *d = cJSON_AddArrayToObject(classes, "kv_dtypes");
    for (int i = 0; i < v->n_kv_dtypes; ++i)
        cJSON_AddItemToArray(d, cJSON_CreateString(v->kv_dtypes[i] < 0                  ? "same"
                                                   : v->kv_dtypes[i] == CLATTN_DTYPE_I8 ? "i8"
                                                                                        : "fp8"));
    if (v->score_mod) cJSON_AddStringToObject(classes, "score_mod", v->score_mod);
    if (v->mask_mod) cJSON_AddStringToObject(classes, "mask_mod", v->mask_mod);
}

bool kernels_variant_apply(const kernels_variant *var, const kernels_variants *all, kernels_variant_state *s,
                           size_t lq, size_t lk, size_t d, clattn_dtype dt, cl_mem qb, cl_mem kb, cl_mem vb,
                           cl_mem ob, clattn_sdpa_desc *desc, clattn_tensor *q, clattn_tensor *k, clattn_tensor *v,
                           clattn_tensor *o) {
    const clattn_dtype kvt = var->kv_dtype < 0 ? dt : (clattn_dtype)var->kv_dtype;
    const bool paged = var->layout == LAYOUT_PAGED || var->layout == LAYOUT_PACKED_PAGED;
    const size_t pages = paged ? (lk + var->page - 1) / var->page : 0;
    if (paged && pages > sizeof s->block_table / sizeof s->block_table[0]) return false;
    /* One sequence of one head: a packed [1, 1, total, D] view is the dense one, only the descriptor differs. */
    *q = clattn_tensor_bhld(qb, dt, 1, 1, lq, d);
    *o = clattn_tensor_bhld(ob, dt, 1, 1, lq, d);
    *k = paged ? clattn_tensor_bhld(kb, kvt, pages, 1, var->page, d) : clattn_tensor_bhld(kb, kvt, 1, 1, lk, d);
    *v = paged ? clattn_tensor_bhld(vb, kvt, pages, 1, var->page, d) : clattn_tensor_bhld(vb, kvt, 1, 1, lk, d);
    if (var->layout != LAYOUT_DENSE) desc->seq_count = 1;
    s->cu_q[0] = s->cu_k[0] = 0;
    s->cu_q[1] = (int32_t)lq;
    s->cu_k[1] = (int32_t)lk;
    if (var->layout == LAYOUT_PACKED || var->layout == LAYOUT_PACKED_PAGED) desc->cu_seqlens_q = s->cu_q;
    if (var->layout == LAYOUT_PACKED) desc->cu_seqlens_k = s->cu_k;
    if (paged) {
        for (size_t i = 0; i < pages; ++i) s->block_table[i] = (int32_t)i;
        s->seqlens_k[0] = (int32_t)lk;
        desc->block_table = s->block_table;
        desc->block_table_stride = pages;
        desc->seqlens_k = s->seqlens_k;
    }
    if (var->kv_dtype >= 0) {
        desc->k_scale = clattn_tensor_bhld(s->scales, CLATTN_DTYPE_F32, 1, 1, 1, 1);
        desc->v_scale = desc->k_scale;
        desc->v_scale.offset = 1;
    }
    if (var->mods & CLATTN_TUNE_MODS_SOFTCAP) desc->softcap = 50.0f;
    if (var->mods & CLATTN_TUNE_MODS_SINKS)
        desc->sinks = clattn_tensor_bhld(s->head_values, CLATTN_DTYPE_F32, 1, 1, 1, 1);
    if (var->mods & CLATTN_TUNE_MODS_ALIBI) {
        desc->alibi_slopes = clattn_tensor_bhld(s->head_values, CLATTN_DTYPE_F32, 1, 1, 1, 1);
        desc->alibi_slopes.offset = 1;
    }
    if (!var->user_mods) return true;
    desc->score_mod = all->score_mod;
    desc->mask_mod = all->mask_mod;
    /* The buffers' contents do not reach the program: one element of any small buffer validates the call. */
    for (int i = 0; i < CLATTN_MAX_MOD_BUFFERS && all->mod_buffers[i].name; ++i) {
        desc->mod_buffers[i] = all->mod_buffers[i];
        desc->mod_buffers[i].buffer = s->head_values;
    }
    return true;
}

void kernels_variant_describe(const kernels_variant *var, char *out, size_t size) {
    out[0] = '\0';
    size_t n = 0;
    for (int b = 0; b < 3; ++b)
        if (var->mods & 1 << b) n += (size_t)snprintf(out + n, size - n, "%s%s", n ? "+" : "", mod_names[b]);
    if (var->layout != LAYOUT_DENSE && n < size)
        n += (size_t)snprintf(out + n, size - n, "%s%s", n ? ", " : "", layout_names[var->layout]);
    if ((var->layout == LAYOUT_PAGED || var->layout == LAYOUT_PACKED_PAGED) && n < size)
        n += (size_t)snprintf(out + n, size - n, " %zu", var->page);
    if (var->kv_dtype >= 0 && n < size)
        n += (size_t)snprintf(out + n, size - n, "%s%s K/V", n ? ", " : "",
                              var->kv_dtype == CLATTN_DTYPE_I8 ? "i8" : "fp8");
    if (var->user_mods && n < size) snprintf(out + n, size - n, "%sscore_mod/mask_mod", n ? ", " : "");
}
