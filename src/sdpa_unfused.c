/* TEMPORARY placeholder while the unfused path is being written; replaced before any commit. */
#include "sdpa_internal.h"
clattn_status cla_sdpa_unfused(clattn_context *ctx, const cla_sdpa_plan *plan, cla_chain *chain) {
    (void)plan;
    (void)chain;
    return cla_fail(ctx, CLATTN_ERROR_UNSUPPORTED, "unfused path not written yet");
}
