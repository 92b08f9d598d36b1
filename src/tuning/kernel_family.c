// SPDX-License-Identifier: Apache-2.0
/* What a kernel family's description (tuning.c) gives the code that runs it: the variant and kernel a configuration
 * selects, the build options its parameters become, and whether a text is a value a parameter accepts (the one rule
 * that the parser of overrides, database entries and tuner candidates applies). Kept apart from the descriptions so
 * that every family reads its parameters the same way. */
#include "tuning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a parameter with no range of its own (a tool's space) accepts: any count the kernels could take. */
#define ANY_MAX (1 << 20)

int cla_tune_variant(const cla_tune_op *op, const cla_tune_config *c) {
    if (op->param_count < 1 || !op->params[0].labels) return 0;
    const int v = c->v[0];
    return v >= 0 && v < op->params[0].label_count ? v : 0;
}

const cla_tune_kernel *cla_tune_kernel_of(const cla_tune_op *op, const cla_tune_config *c) {
    return &op->kernels[cla_tune_variant(op, c)];
}

void cla_tune_defines(const cla_tune_op *op, const cla_tune_config *c, char *out, size_t size) {
    const unsigned variant_bit = 1u << cla_tune_variant(op, c);
    size_t used = 0;
    if (size) out[0] = '\0';
    for (int i = 0; i < op->param_count && used < size; ++i) {
        const cla_tune_param *pr = &op->params[i];
        if (!pr->define || (pr->variants && !(pr->variants & variant_bit))) continue;
        const int n = snprintf(out + used, size - used, " -D%s=%d", pr->define, c->v[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

bool cla_tune_param_value(const cla_tune_param *pr, const char *text, int *value) {
    for (int i = 0; pr->labels && i < pr->label_count; ++i)
        if (strcmp(pr->labels[i], text) == 0) {
            *value = i;
            return true;
        }
    char *end = NULL;
    const long n = strtol(text, &end, 10);
    const long lo = pr->max ? pr->min : 0, hi = pr->max ? pr->max : ANY_MAX;
    if (end == text || *end != '\0' || n < lo || n > hi || (pr->labels && n >= pr->label_count)) return false;
    bool listed = !pr->listed_only;
    for (int i = 0; !listed && i < pr->count; ++i) listed = pr->values[i] == n;
    if (!listed) return false;
    *value = (int)n;
    return true;
}

void cla_tune_param_describe(const cla_tune_param *pr, char *out, size_t size) {
    size_t used = 0;
    if (size) out[0] = '\0';
    const int n = pr->labels ? pr->label_count : pr->listed_only ? pr->count : 0;
    for (int i = 0; i < n && used < size; ++i) {
        const int w = pr->labels ? snprintf(out + used, size - used, "%s%s", i ? "|" : "", pr->labels[i])
                                 : snprintf(out + used, size - used, "%s%d", i ? "|" : "", pr->values[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (n == 0) snprintf(out, size, "%d to %d", pr->max ? pr->min : 0, pr->max ? pr->max : ANY_MAX);
}
