// SPDX-License-Identifier: Apache-2.0
/* The argument lists of the kernels that are not tunable families (those are described in tuning/tuning.c): each
 * list once, in the order of the kernel's signature in kernels_cl, for the host code that sets the arguments by
 * name (cla_set_named_args) and for the test that reads the signatures and compares (tests/test_tuning.c). */
#include "sdpa_internal.h"

static const char *const combine_names[] = {"partial",    "nsplit",  "o",    "o_stride", "lse",
                                            "lse_stride", "offsets", "dims", "sinks",    "mods",
                                            "seqs",       "seq_at",  NULL};
const cla_kernel_args cla_args_sdpa_combine = {"sdpa_fused", "sdpa_combine", combine_names};

/* pack_q, pack_k and pack_v are one macro's kernels (DEFINE_PACK), declared under the macro's parameter `name`. */
static const char *const pack_names[] = {"src",   "stride",      "offset",    "heads",
                                         "first", "row0",        "rows",      "dim",
                                         "dst",   "key_lengths", "kl_offset", "zero_from_key_lengths",
                                         "Lk",    NULL};
const cla_kernel_args cla_args_pack = {"sdpa_unfused", "name", pack_names};

static const char *const softmax_names[] = {
    "s", "row_inv",  "dims",    "first",  "mask",     "mask_stride", "key_lengths", "lse",  "lse_stride",
    "w", "w_stride", "offsets", "window", "softcap2", "sinks",       "alibi",       "mods", NULL};
const cla_kernel_args cla_args_masked_softmax = {"sdpa_unfused", "masked_softmax", softmax_names};

static const char *const write_out_names[] = {"o_tmp",    "p",        "row_inv", "v",     "v_stride",
                                              "v_offset", "dims",     "v_dim",   "first", "out",
                                              "o_stride", "o_offset", NULL};
const cla_kernel_args cla_args_write_out = {"sdpa_unfused", "write_out", write_out_names};

static const char *const copy_view_names[] = {"src",        "src_offset",  "src_strides", "dst",
                                              "dst_offset", "dst_strides", "heads",       NULL};
const cla_kernel_args cla_args_copy_view = {"copy", "copy_view", copy_view_names};

static const char *const linear_pack_names[] = {"x", "x_offset", "x_strides", "dst", NULL};
const cla_kernel_args cla_args_linear_pack = {"linear", "linear_pack", linear_pack_names};

static const char *const linear_bias_names[] = {"y",    "y_offset",    "y_ld",      "y_batch_stride",
                                                "bias", "bias_offset", "overwrite", NULL};
const cla_kernel_args cla_args_linear_bias = {"linear", "linear_bias", linear_bias_names};

static const char *const linear_store_names[] = {
    "acc",        "acc_offset",  "acc_ld", "acc_batch_stride", "bias",        "bias_offset", "residual",
    "res_offset", "res_strides", "out",    "out_offset",       "out_strides", NULL};
const cla_kernel_args cla_args_linear_store = {"linear", "linear_store", linear_store_names};

static const char *const kv_append_names[] = {"src",           "src_offset", "src_strides", "dst",   "dst_offset",
                                              "dst_strides",   "block",      "slots",       "scale", "scale_offset",
                                              "scale_strides", "dim",        NULL};
const cla_kernel_args cla_args_kv_append = {"kv_append", "kv_append", kv_append_names};

const cla_kernel_args *const *cla_kernel_args_all(void) {
    static const cla_kernel_args *const all[] = {&cla_args_sdpa_combine,   &cla_args_pack,
                                                 &cla_args_masked_softmax, &cla_args_write_out,
                                                 &cla_args_copy_view,      &cla_args_linear_pack,
                                                 &cla_args_linear_bias,    &cla_args_linear_store,
                                                 &cla_args_kv_append,      NULL};
    return all;
}
