// SPDX-License-Identifier: Apache-2.0
/* Reference checks of the bench commands (see bench_check.h). */
#include "bench_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "run_common.h"

int bench_output_error(const char *cmd, clattn_context *ctx, cl_mem buffer, size_t n, clattn_dtype dt,
                       const double *ref, double *worst, double *ref_max) {
    float *out = malloc((n ? n : 1) * sizeof *out);
    if (!out) return cli_error(cmd, CLI_FAILED, "out of host memory for reading the output back");
    cl_int err = support_read_storage(ctx, buffer, out, n, dt);
    if (err != CL_SUCCESS) {
        free(out);
        return cli_error(cmd, CLI_FAILED, "reading the output back failed: OpenCL error %d", err);
    }
    *worst = support_max_error(out, ref, n, false, ref_max);
    free(out);
    return CLI_OK;
}

void bench_check_skip_note(const char *cmd, bool *noted) {
    if (*noted) return;
    fprintf(stderr,
            "clattn %s: note: --check skipped for shapes above %.0e multiply-adds (the reference is slow)\n", cmd,
            BENCH_REFERENCE_LIMIT);
    *noted = true;
}

bool bench_check_failed(const bench_check *c) {
    return c->checked && !(c->max_error <= c->tolerance);
}

void bench_check_table_cell(const bench_check *c) {
    if (c->checked)
        printf("  %9.3g", c->max_error);
    else
        printf("  %9s", "skipped");
}

void bench_check_json(cJSON *o, const bench_check *c) {
    if (c->checked && isfinite(c->max_error)) {
        cJSON_AddNumberToObject(o, "max_error", c->max_error);
        cJSON_AddNumberToObject(o, "tolerance", c->tolerance);
    } else if (c->checked) {
        /* JSON has no infinity; the note keeps a broken output from reading like a skipped check. */
        cJSON_AddNullToObject(o, "max_error");
        cJSON_AddNumberToObject(o, "tolerance", c->tolerance);
        cJSON_AddStringToObject(o, "check_note", "failed: NaN or infinite difference from the reference");
    } else {
        cJSON_AddNullToObject(o, "max_error");
        cJSON_AddStringToObject(o, "check_note", "skipped: shape too large for the reference");
    }
}

void bench_check_csv(const bench_check *c) {
    if (c->checked)
        printf("%.6g,%.6g", c->max_error, c->tolerance);
    else
        printf(",");
}
