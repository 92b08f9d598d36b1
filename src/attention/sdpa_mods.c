// SPDX-License-Identifier: Apache-2.0
/* The caller's score_mod and mask_mod (clattn_sdpa_desc): checking the expressions and their buffers before any
 * device work, and the program prefix that compiles them into the fused kernels. The prefix defines HAS_SCORE_FN /
 * HAS_MASK_FN and the functions cla_user_score / cla_user_mask that common.cl's cla_user_mods calls; it goes ahead
 * of the program text, so the expression reaches the compiler verbatim (no build-option quoting) and the program
 * cache key, which hashes the whole text, tells one expression from another. */
#include "sdpa_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Characters and nesting that could carry the text out of its `return (...);`: a statement end, a block, a
 * directive, a string or character literal, a line splice or break, or a closing bracket with no opener. */
static clattn_status check_expression(clattn_context *ctx, const char *what, const char *e) {
    char open[64];
    size_t depth = 0;
    for (const char *c = e; *c; ++c) {
        if (strchr(";{}#\"'\\\n\r", *c) || (unsigned char)*c < 0x20)
            return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "desc->%s: character %d ('%c') at offset %zu is not allowed in an expression "
                            "(no ';', braces, '#', quotes, backslashes or line breaks): \"%s\"",
                            what, (int)(unsigned char)*c, (unsigned char)*c >= 0x20 ? *c : '?', (size_t)(c - e), e);
        if (*c == '(' || *c == '[') {
            if (depth == sizeof open)
                return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "desc->%s: brackets nest deeper than %zu", what,
                                sizeof open);
            open[depth++] = *c;
        } else if (*c == ')' || *c == ']') {
            const char want = *c == ')' ? '(' : '[';
            if (depth == 0 || open[depth - 1] != want)
                return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                                "desc->%s: unbalanced '%c' at offset %zu in \"%s\"", what, *c, (size_t)(c - e), e);
            --depth;
        }
    }
    if (depth)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "desc->%s: %zu bracket(s) left open in \"%s\"", what,
                        depth, e);
    return CLATTN_SUCCESS;
}

static bool is_identifier(const char *s) {
    if (!s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
    size_t n = 0;
    for (; *s; ++s, ++n)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return n <= 64;
}

/* Names the expressions already use, and the prefix's own (cla*), cannot name a buffer. */
static bool is_reserved(const char *s) {
    static const char *const taken[] = {"b", "h", "q_idx", "kv_idx", "score"};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(taken); ++i)
        if (strcmp(s, taken[i]) == 0) return true;
    return strncmp(s, "cla", 3) == 0 || strncmp(s, "mod_buf", 7) == 0;
}

clattn_status cla_sdpa_check_user_mods(clattn_context *ctx, const clattn_sdpa_desc *desc, cla_sdpa_plan *p,
                                       cla_range *ranges, size_t *n) {
    p->score_mod = desc->score_mod && *desc->score_mod ? desc->score_mod : NULL;
    p->mask_mod = desc->mask_mod && *desc->mask_mod ? desc->mask_mod : NULL;
    clattn_status st;
    if (p->score_mod && (st = check_expression(ctx, "score_mod", p->score_mod))) return st;
    if (p->mask_mod && (st = check_expression(ctx, "mask_mod", p->mask_mod))) return st;
    p->mod_buffer_count = 0;
    for (size_t i = 0; i < CLATTN_MAX_MOD_BUFFERS && desc->mod_buffers[i].buffer; ++i) {
        const clattn_mod_buffer *m = &desc->mod_buffers[i];
        CLA_FAIL_ON(!p->score_mod && !p->mask_mod, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu] is given but there is neither a score_mod nor a mask_mod to read it",
                    i);
        CLA_FAIL_ON(!is_identifier(m->name), ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu].name \"%s\" is not a C identifier of at most 64 characters", i,
                    m->name ? m->name : "(null)");
        CLA_FAIL_ON(is_reserved(m->name), ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu].name \"%s\" is taken (b, h, q_idx, kv_idx, score, cla*, mod_buf*)", i,
                    m->name);
        for (size_t j = 0; j < i; ++j)
            CLA_FAIL_ON(strcmp(m->name, desc->mod_buffers[j].name) == 0, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc->mod_buffers[%zu].name \"%s\" repeats mod_buffers[%zu]'s", i, m->name, j);
        CLA_FAIL_ON(m->dtype != CLATTN_MOD_F32 && m->dtype != CLATTN_MOD_I32, ctx, CLATTN_ERROR_INVALID_DTYPE,
                    "desc->mod_buffers[%zu] (%s): dtype %d is neither CLATTN_MOD_F32 nor CLATTN_MOD_I32", i,
                    m->name, (int)m->dtype);
        CLA_FAIL_ON(m->count == 0, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu] (%s): count is 0; give the number of elements it holds", i, m->name);
        size_t bytes = 0;
        if ((st = cla_buffer_check(ctx, m->name, m->buffer, &bytes))) return st;
        CLA_FAIL_ON(m->count > bytes / 4, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu] (%s): %zu elements need %zu bytes but the buffer has %zu", i, m->name,
                    m->count, m->count * 4, bytes);
        cla_range *r = &ranges[(*n)++];
        r->name = m->name;
        r->buffer = m->buffer;
        r->begin = 0;
        r->end = m->count * 4;
        p->mod_buffers[i] = *m;
        p->mod_buffer_count = i + 1;
    }
    for (size_t i = p->mod_buffer_count; i < CLATTN_MAX_MOD_BUFFERS; ++i)
        CLA_FAIL_ON(desc->mod_buffers[i].buffer, ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                    "desc->mod_buffers[%zu] follows a NULL buffer; the list ends at the first NULL", i);
    return CLATTN_SUCCESS;
}

bool cla_sdpa_has_user_mods(const cla_sdpa_plan *p) {
    return p->score_mod || p->mask_mod;
}

/* One function of the prefix: the buffers' typed views, then the expression alone on line 1 of a file named after
 * the field, so that the compiler's messages point at the caller's text. */
static int append_function(char *out, size_t size, const cla_sdpa_plan *p, const char *ret, const char *name,
                           const char *params, const char *file, const char *expr) {
    int len =
        snprintf(out, size,
                 "#ifdef __clang__\n__attribute__((always_inline))\n#endif\nstatic inline %s %s(%s, int b, "
                 "int h, int q_idx, int kv_idx, __global const int *cla_mb0, __global const int *cla_mb1) {\n",
                 ret, name, params);
    for (size_t i = 0; i < p->mod_buffer_count; ++i) {
        const char *type = p->mod_buffers[i].dtype == CLATTN_MOD_F32 ? "float" : "int";
        len += snprintf(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                        "    __global const %s *%s = (__global const %s *)cla_mb%zu;\n    (void)%s;\n", type,
                        p->mod_buffers[i].name, type, i, p->mod_buffers[i].name);
    }
    len += snprintf(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                    "    (void)b;\n    (void)h;\n    (void)q_idx;\n    (void)kv_idx;\n    (void)cla_mb0;\n"
                    "    (void)cla_mb1;\n    return (%s)(\n#line 1 \"%s\"\n%s\n);\n}\n",
                    ret, file, expr);
    return len;
}

static int write_prefix(char *out, size_t size, const cla_sdpa_plan *p) {
    int len = 0;
    if (p->score_mod) {
        len += snprintf(out, size, "#define HAS_SCORE_FN 1\n");
        len += append_function(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                               p, "float", "cla_user_score", "float score", "score_mod", p->score_mod);
    }
    if (p->mask_mod) {
        len += snprintf(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                        "#define HAS_MASK_FN 1\n");
        /* The mask function takes no score; a dummy first parameter keeps one shape for both. */
        len += append_function(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                               p, "int", "cla_user_mask_fn", "float cla_unused", "mask_mod", p->mask_mod);
        len += snprintf(size > (size_t)len ? out + len : NULL, size > (size_t)len ? size - (size_t)len : 0,
                        "#define cla_user_mask(b, h, i, j, m0, m1) cla_user_mask_fn(0.0f, b, h, i, j, m0, m1)\n");
    }
    return len;
}

clattn_status cla_sdpa_mod_prefix(clattn_context *ctx, const cla_sdpa_plan *p, char **prefix) {
    *prefix = NULL;
    if (!cla_sdpa_has_user_mods(p)) return CLATTN_SUCCESS;
    const int n = write_prefix(NULL, 0, p);
    char *s = n > 0 ? malloc((size_t)n + 1) : NULL;
    CLA_FAIL_ON(!s, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory writing the score_mod/mask_mod code");
    write_prefix(s, (size_t)n + 1, p);
    *prefix = s;
    return CLATTN_SUCCESS;
}

void cla_sdpa_frame_mods(clattn_context *ctx, const cla_sdpa_plan *p) {
    cla_append_error(ctx, "\nthe log's files \"score_mod\" and \"mask_mod\" are the expressions of desc->score_mod "
                          "and desc->mask_mod, each on line 1:");
    const char *const exprs[2] = {p->score_mod, p->mask_mod};
    static const char *const names[2] = {"score_mod", "mask_mod"};
    for (int i = 0; i < 2; ++i) {
        if (!exprs[i]) continue;
        cla_append_error(ctx, "\n  ");
        cla_append_error(ctx, names[i]);
        cla_append_error(ctx, ": ");
        cla_append_error(ctx, exprs[i]);
    }
    for (size_t i = 0; i < p->mod_buffer_count; ++i) {
        cla_append_error(ctx, i ? ", " : "\n  buffers: ");
        cla_append_error(ctx, p->mod_buffers[i].name);
        cla_append_error(ctx, p->mod_buffers[i].dtype == CLATTN_MOD_F32 ? " (float)" : " (int)");
    }
}
