// SPDX-License-Identifier: Apache-2.0
/* clattn_kv_append in two steps, for the layers that append inside a call of their own (clattn_mha's paged mode):
 * the check of every argument and slot, then the enqueue into the caller's chain. */
#ifndef CLATTN_KV_APPEND_H
#define CLATTN_KV_APPEND_H

#include "sdpa_internal.h"

/* One side of an append, keys or values, checked: the new rows, the cache, its scale and how the scale is used. */
typedef struct cla_kv_append_side {
    const char *name; /* "k" or "v", for the kernel's error messages */
    clattn_tensor src, dst, scale;
    int scale_mode;
} cla_kv_append_side;

typedef struct cla_kv_append_plan {
    cla_kv_append_side sides[2];
    const int32_t *slots; /* host, one per new token */
    size_t tokens;
} cla_kv_append_plan;

/* Checks the tensors, scales and slots of an append (slots_name names the slot array in messages); nothing is
 * enqueued. The queue and events are the caller's to check. */
clattn_status cla_kv_append_check(clattn_context *ctx, const clattn_kv_append_desc *desc,
                                  const clattn_tensor *k_new, const clattn_tensor *v_new,
                                  const clattn_tensor *k_cache, const clattn_tensor *v_cache,
                                  const char *slots_name, cla_kv_append_plan *plan);

/* Builds both kernels first (a build failure writes nothing), then enqueues the keys' and the values' writes. */
clattn_status cla_kv_append_enqueue(clattn_context *ctx, cla_chain *chain, const cla_kv_append_plan *plan);

#endif
