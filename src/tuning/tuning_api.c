// SPDX-License-Identifier: Apache-2.0
/* The tuning part of the advanced API (include/clattn_advanced.h): the tunable kernel families, their spaces and
 * problem classes, and CLBlast's GEMM parameters, as `clattn tune` sees them. Thin: every function hands over to
 * the one description in tuning.c and tuning_clblast.c, converting the public problem (clattn_tuning_query) on the
 * way. */
#include "blas.h"
#include "tuning.h"

#include <string.h>

/* A space seen as an operation, for the functions of tuning.c that read only the name and the parameters. */
static cla_tune_op op_of_space(const clattn_tune_space *s) {
    cla_tune_op op;
    memset(&op, 0, sizeof op);
    op.name = s->name ? s->name : "";
    op.param_count = s->param_count;
    op.params = s->params;
    return op;
}

const clattn_tune_op *clattn_tune_op_find(const char *name) {
    return name ? cla_tune_op_find(name) : NULL;
}

const char *clattn_tune_op_name(const clattn_tune_op *op) {
    return op ? op->name : "";
}

void clattn_tune_op_space(const clattn_tune_op *op, clattn_tune_space *space) {
    memset(space, 0, sizeof *space);
    space->name = op->name;
    space->param_count = op->param_count < CLA_TUNE_MAX_PARAMS ? op->param_count : CLA_TUNE_MAX_PARAMS;
    memcpy(space->params, op->params, (size_t)space->param_count * sizeof *space->params);
}

void clattn_tune_op_default(const clattn_tune_op *op, const clattn_device_info *device,
                            const clattn_tuning_query *problem, clattn_tune_config *config) {
    const cla_tune_problem p = cla_tune_problem_of_query(problem);
    memset(config, 0, sizeof *config);
    op->builtin(device, &p, config);
}

const char *clattn_tune_op_check(const clattn_tune_op *op, const clattn_device_info *device,
                                 const clattn_tuning_query *problem, const clattn_tune_config *config) {
    const cla_tune_problem p = cla_tune_problem_of_query(problem);
    return op->check(device, &p, config);
}

clattn_status clattn_tune_op_source_hash(clattn_context *ctx, const clattn_tune_op *op, char hash[33]) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!op || !hash, ctx, CLATTN_ERROR_NULL_POINTER, "%s is NULL", !op ? "op" : "hash");
    if (!cla_tuning_source_hash(ctx, op, hash))
        return cla_fail(ctx, CLATTN_ERROR_KERNEL_NOT_FOUND, "the kernel sources of %s cannot be loaded", op->name);
    return CLATTN_SUCCESS;
}

size_t clattn_tune_space_size(const clattn_tune_space *space) {
    const cla_tune_op op = op_of_space(space);
    return cla_tune_space_size(&op);
}

void clattn_tune_space_point(const clattn_tune_space *space, size_t index, clattn_tune_config *config) {
    const cla_tune_op op = op_of_space(space);
    cla_tune_space_point(&op, index, config);
}

int clattn_tune_space_param_index(const clattn_tune_space *space, const char *name) {
    const cla_tune_op op = op_of_space(space);
    return name ? cla_tune_param_index(&op, name) : -1;
}

clattn_status clattn_tune_param_value(const clattn_tune_param *param, const char *text, int *value) {
    if (!param || !text || !value) return CLATTN_ERROR_NULL_POINTER;
    return cla_tune_param_value(param, text, value) ? CLATTN_SUCCESS : CLATTN_ERROR_INVALID_ARGUMENT;
}

void clattn_tune_config_format(const clattn_tune_space *space, const clattn_tune_config *config, char *text,
                               size_t size) {
    const cla_tune_op op = op_of_space(space);
    cla_tune_config_format(&op, config, text, size);
}

clattn_status clattn_tune_config_parse(const clattn_tune_space *space, const char *text, clattn_tune_config *config,
                                       char *why, size_t why_size) {
    const cla_tune_op op = op_of_space(space);
    return text && cla_tune_config_parse(&op, text, config, why, why_size) ? CLATTN_SUCCESS
                                                                           : CLATTN_ERROR_INVALID_ARGUMENT;
}

int clattn_tune_config_equal(const clattn_tune_space *space, const clattn_tune_config *a,
                             const clattn_tune_config *b) {
    const cla_tune_op op = op_of_space(space);
    return cla_tune_config_equal(&op, a, b);
}

clattn_status clattn_tune_class_parse(const char *text, const clattn_tune_op **op, clattn_tune_class *cls,
                                      char *why, size_t why_size) {
    if (!text || !op || !cls) return CLATTN_ERROR_NULL_POINTER;
    if (!cla_tune_shape_parse(text, op, cls, why, why_size)) return CLATTN_ERROR_INVALID_ARGUMENT;
    /* Classes no call ever looks up: wider heads run unfused (CLBlast's GEMMs, `clattn tune --clblast`), and wider
     * values of the additive kernel as slices, each looked up by the slice's width. */
    if (*op == &cla_tune_op_sdpa_fused &&
        (cls->head_dim > CLATTN_MAX_FUSED_HEAD_DIM || cls->v_dim > CLATTN_MAX_FUSED_HEAD_DIM)) {
        cla_write_message(why, why_size,
                          "%s: the fused kernels take head dims up to %d; wider heads run on the unfused path, "
                          "whose GEMMs --clblast tunes",
                          text, CLATTN_MAX_FUSED_HEAD_DIM);
        return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    if (*op == &cla_tune_op_seq2seq && cls->v_dim > CLA_S2S_MAX_SLICE_DIM) {
        cla_write_message(why, why_size,
                          "%s: values wider than %d run as equal slices of at most %d columns; tune the slice's "
                          "width",
                          text, CLA_S2S_MAX_SLICE_DIM, CLA_S2S_MAX_SLICE_DIM);
        return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    return CLATTN_SUCCESS;
}

void clattn_tune_class_format(const clattn_tune_op *op, const clattn_tune_class *cls, char *text, size_t size) {
    cla_tune_op_class_format(op, cls, text, size);
}

void clattn_tune_class_problem(const clattn_tune_op *op, const clattn_tune_class *cls,
                               clattn_tuning_query *problem) {
    const cla_tune_problem p = cla_tune_op_class_problem(op, cls);
    clattn_tuning_query_init(problem);
    problem->operation = op->name;
    problem->head_dim = p.head_dim;
    problem->v_head_dim = p.v_head_dim;
    problem->dtype = p.dtype;
    problem->mask = (clattn_mask_kind)p.mask_kind;
    problem->causal = p.causal ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
    problem->q_len = p.q_len;
    problem->kv_len = p.kv_len;
    problem->batch = p.batch;
    problem->heads = p.heads;
}

/* ---- CLBlast ---- */

const clattn_clblast_kernel *clattn_clblast_kernel_at(int index) {
    return index >= 0 && index < CLA_CLBLAST_KERNEL_COUNT ? &cla_clblast_kernels[index] : NULL;
}

const char *clattn_clblast_version(void) {
    return cla_clblast_version();
}

const char *clattn_clblast_check(int kernel, const size_t *values, const clattn_device_info *device) {
    if (kernel < 0 || kernel >= CLA_CLBLAST_KERNEL_COUNT) return "no such CLBlast kernel";
    return cla_clblast_check(kernel, values, device);
}

void clattn_clblast_format(int kernel, const size_t *values, char *text, size_t size) {
    if (kernel < 0 || kernel >= CLA_CLBLAST_KERNEL_COUNT) {
        cla_strlcpy(text, "", size);
        return;
    }
    cla_clblast_format(kernel, values, text, size);
}

clattn_status clattn_clblast_override(clattn_context *ctx, int kernel, const size_t *values) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!values, ctx, CLATTN_ERROR_NULL_POINTER,
                "values is NULL; give one value per parameter of the kernel");
    if (kernel < 0 || kernel >= CLA_CLBLAST_KERNEL_COUNT)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "kernel is %d; CLBlast kernels are 0..%d", kernel,
                        CLA_CLBLAST_KERNEL_COUNT - 1);
    const cla_clblast_kernel *kd = &cla_clblast_kernels[kernel];
    const char *names[CLA_CLBLAST_MAX_PARAMS];
    for (int i = 0; i < kd->count; ++i) names[i] = kd->params[i];
    /* Every device of the context, as cla_clblast_apply does, so that split calls stay identical to one device. */
    for (size_t d = 0; d < ctx->device_count; ++d) {
        CLBlastStatusCode st = cla_blas_override(ctx->devices[d], kd->name, (size_t)kd->count, names, values);
        if (st != CLBlastSuccess)
            return cla_fail(ctx, CLATTN_ERROR_CLBLAST, "CLBlastOverrideParameters(%s) failed with status %d %s",
                            kd->name, (int)st, cla_blas_status_name(st));
    }
    return CLATTN_SUCCESS;
}
