// SPDX-License-Identifier: Apache-2.0
/* Tolerances against the double-precision reference (see check_tolerance.h). */
#include "check_tolerance.h"

#include <float.h>

double check_sdpa_rel_tolerance(size_t kv_len) {
    return 8.0 * (1.0 + (double)kv_len) * FLT_EPSILON;
}

double check_sdpa_tolerance(size_t kv_len, clattn_dtype dt) {
    return 2.0 * (check_sdpa_rel_tolerance(kv_len) + check_storage_abs_tolerance(dt));
}

double check_mha_rel_tolerance(const clattn_mha_config *c, size_t kv_len) {
    return (8.0 * (1.0 + (double)kv_len) + 4.0 * (double)(c->d_model + c->kv_d_model + c->heads * c->v_head_dim)) *
           FLT_EPSILON;
}

double check_seq2seq_rel_tolerance(size_t kv_len, size_t attn_dim, size_t query_dim, size_t key_dim) {
    const size_t red = kv_len + attn_dim + (query_dim > key_dim ? query_dim : key_dim);
    return 8.0 * (1.0 + (double)red) * FLT_EPSILON;
}

double check_storage_rel_tolerance(clattn_dtype dt) {
    return dt == CLATTN_DTYPE_F16 ? 1.0 / 1024.0 : dt == CLATTN_DTYPE_BF16 ? 1.0 / 128.0 : 0.0;
}

double check_storage_abs_tolerance(clattn_dtype dt) {
    return dt == CLATTN_DTYPE_F16 ? 2e-3 : dt == CLATTN_DTYPE_BF16 ? 1.6e-2 : 0.0;
}
