// SPDX-License-Identifier: Apache-2.0
/* Kernel-parameter overrides on a context: clattn_context_set_kernel_params (the advanced API, for the tuner and
 * kernel development) and CLATTN_FUSED_PARAMS / CLATTN_SEQ2SEQ_PARAMS, which set the same when a context is
 * created. The context keeps the text; each tunable operation's override function (tuning.h, cla_tune_op.override)
 * parses it on the call, so that nothing on a call path reads the environment. */
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The variable that sets each operation's override at creation. */
static const char *env_value_of(const cla_env *e, const cla_tune_op *op) {
    if (op == &cla_tune_op_sdpa_fused) return e->fused_params;
    if (op == &cla_tune_op_seq2seq) return e->seq2seq_params;
    return NULL;
}

static const char *env_name_of(const cla_tune_op *op) {
    if (op == &cla_tune_op_sdpa_fused) return "CLATTN_FUSED_PARAMS";
    if (op == &cla_tune_op_seq2seq) return "CLATTN_SEQ2SEQ_PARAMS";
    return op->name;
}

const char *cla_kernel_params(const clattn_context *ctx, const cla_tune_op *op, const char **origin) {
    const int slot = cla_tune_op_slot(op);
    if (slot < 0 || !ctx->kernel_params[slot]) return NULL;
    if (origin) *origin = ctx->kernel_params_origin[slot];
    return ctx->kernel_params[slot];
}

/* "variant=tiled|cpu, rows, block_n, ...": the keys a family takes, with the values of the enumerated ones. */
static void describe_keys(const cla_tune_op *op, char *out, size_t size) {
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < op->param_count && used < size; ++i) {
        const cla_tune_param *pr = &op->params[i];
        char values[96] = "";
        if (pr->labels || pr->listed_only) cla_tune_param_describe(pr, values, sizeof values);
        const int n =
            snprintf(out + used, size - used, "%s%s%s%s", i ? ", " : "", pr->name, *values ? "=" : "", values);
        if (n < 0) break;
        used += (size_t)n;
    }
}

clattn_status cla_tune_override_parse(clattn_context *ctx, const cla_tune_op *op, cla_tune_config *c, bool *given,
                                      const char **origin) {
    const char *text = cla_kernel_params(ctx, op, origin);
    *given = text != NULL;
    if (!*given) return CLATTN_SUCCESS;
    for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) c->v[i] = -1;
    /* An override may end in a comma, as it always could; database entries and candidates, which the library
     * writes, may not. */
    char *body = cla_strdup(text), why[256], keys[192];
    CLA_FAIL_ON(!body, ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory for kernel parameters",
                *origin);
    const size_t len = strlen(body);
    if (len > 0 && body[len - 1] == ',') body[len - 1] = '\0';
    const bool parsed = cla_tune_config_parse(op, body, c, why, sizeof why);
    free(body);
    if (parsed) return CLATTN_SUCCESS;
    describe_keys(op, keys, sizeof keys);
    /* Unknown keys and bad values are an error, so that a typo cannot silently test the defaults. */
    return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s: %s (keys: %s)", *origin, why, keys);
}

/* A problem every operation can take, for checking an override before any call: the override's own errors
 * (syntax, names, values out of range) do not depend on the problem. */
static cla_tune_problem probe_problem(void) {
    cla_tune_problem p;
    memset(&p, 0, sizeof p);
    p.head_dim = p.v_head_dim = 64;
    p.dtype = CLATTN_DTYPE_F32;
    p.batch = p.heads = 1;
    p.q_len = p.kv_len = 64;
    return p;
}

/* Sets an operation's override (NULL clears it) and checks it; a bad one leaves the previous setting. */
static clattn_status set_params(clattn_context *ctx, const cla_tune_op *op, const char *text, const char *origin) {
    const int slot = cla_tune_op_slot(op);
    CLA_FAIL_ON(slot < 0 || !op->override, ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s takes no parameter override",
                op->name);
    char *copy = NULL;
    CLA_FAIL_ON(text && *text && !(copy = cla_strdup(text)), ctx, CLATTN_ERROR_OUT_OF_HOST_MEMORY,
                "%s: out of host memory for kernel parameters", origin);
    char *old = ctx->kernel_params[slot];
    const char *old_origin = ctx->kernel_params_origin[slot];
    ctx->kernel_params[slot] = copy;
    ctx->kernel_params_origin[slot] = origin;
    if (copy) {
        const cla_tune_problem p = probe_problem();
        cla_tune_config c;
        bool given = false;
        clattn_status st = op->override(ctx, &p, &c, &given);
        if (st != CLATTN_SUCCESS) {
            ctx->kernel_params[slot] = old;
            ctx->kernel_params_origin[slot] = old_origin;
            free(copy);
            return st;
        }
    }
    free(old);
    return CLATTN_SUCCESS;
}

clattn_status cla_kernel_params_from_env(clattn_context *ctx, const cla_env *env) {
    const cla_tune_op *const *ops = cla_tune_ops();
    for (size_t i = 0; ops[i]; ++i) {
        const char *text = env_value_of(env, ops[i]);
        if (!text) continue;
        clattn_status st = set_params(ctx, ops[i], text, env_name_of(ops[i]));
        if (st != CLATTN_SUCCESS) return st;
    }
    return CLATTN_SUCCESS;
}

void cla_kernel_params_free(clattn_context *ctx) {
    for (size_t i = 0; i < CLA_MAX_TUNE_OPS; ++i) {
        free(ctx->kernel_params[i]);
        ctx->kernel_params[i] = NULL;
    }
}

clattn_status clattn_context_set_kernel_params(clattn_context *ctx, const char *operation, const char *params) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    const cla_tune_op *op = operation ? cla_tune_op_find(operation) : NULL;
    CLA_FAIL_ON(!op, ctx, CLATTN_ERROR_INVALID_ARGUMENT, "unknown operation '%s' (sdpa_fused, seq2seq_additive)",
                operation ? operation : "(null)");
    /* Messages of the override, here and on later calls, name the operation, as they name the variable for an
     * override from the environment; the idiom adds the call. */
    return set_params(ctx, op, params, op->name);
}
