// SPDX-License-Identifier: Apache-2.0
/* The variants of an attention class that `clattn kernels export` can also record, each a program of its own
 * because it is compiled in: the score modifiers (softcap, sinks, ALiBi and their combinations), the serving
 * layouts (packed queries and keys, a paged cache of given page sizes, packed queries over a paged cache) and 8-bit
 * K/V (int8, fp8 e4m3), and the caller's score_mod/mask_mod expressions. Parsed from --mods, --kv-layouts,
 * --page-sizes, --kv-dtypes, --score-mod and --mask-mod; applied to one recorded call's descriptor and tensors. */
#ifndef CLATTN_KERNELS_VARIANTS_H
#define CLATTN_KERNELS_VARIANTS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "clattn_advanced.h"
#include "cli.h"

enum { VARIANT_MAX_ITEMS = 16 };
enum { LAYOUT_DENSE, LAYOUT_PACKED, LAYOUT_PAGED, LAYOUT_PACKED_PAGED, LAYOUT_COUNT };

typedef struct kernels_variants {
    int mods[VARIANT_MAX_ITEMS]; /* sets of CLATTN_TUNE_MODS_* bits; default {0} */
    int n_mods;
    int layouts[VARIANT_MAX_ITEMS]; /* LAYOUT_*; default dense */
    int n_layouts;
    size_t pages[VARIANT_MAX_ITEMS]; /* page sizes of the paged layouts; default 16 */
    int n_pages;
    int kv_dtypes[VARIANT_MAX_ITEMS]; /* -1: the class's dtype; else CLATTN_DTYPE_I8 or CLATTN_DTYPE_FP8_E4M3 */
    int n_kv_dtypes;
    const char *score_mod, *mask_mod; /* NULL: none */
    /* --mod-buffers: the names and types of the buffers the expressions read (their code declares them, so a
     * binary serves calls with the same names and types, whatever the contents); the text, split in place. */
    char mod_spec[256];
    clattn_mod_buffer mod_buffers[CLATTN_MAX_MOD_BUFFERS];
} kernels_variants;

/* The options above, as the export command lists them. */
/* clang-format off */
#define CLI_OPTIONS_EXPORT_VARIANTS \
    {"mods", "LIST", \
     "score modifier sets among none,softcap,sinks,alibi,all, a set joined by '+' (softcap+sinks); default none", \
     NULL}, \
    {"kv-layouts", "LIST", "among dense,packed,paged,packed-paged (queries packed over pages); default dense", NULL}, \
    {"page-sizes", "LIST", "page sizes of the paged layouts, powers of two from 8 to 256 (default 16)", NULL}, \
    {"kv-dtypes", "LIST", "K/V storage among same (the --dtypes entry),i8,fp8 (per-head f32 scales)", NULL}, \
    {"score-mod", "EXPR", "also the programs with this score_mod (clattn_sdpa_desc.score_mod)", NULL}, \
    {"mask-mod", "EXPR", "also the programs with this mask_mod", NULL}, \
    {"mod-buffers", "NAME=f32|i32[,...]", "the names and types of the buffers the mods read (at most 2)", NULL}
/* clang-format on */

int kernels_variants_parse(const char *cmd, const cli_command *c, kernels_variants *v);
/* Adds the variants to the manifest's "classes" object. */
void kernels_variants_json(const kernels_variants *v, cJSON *classes);

/* One point of the variants, and what its call needs: device buffers of at least 4 * 16 bytes for the modifiers'
 * per-head values and the 8-bit scales (one head), and host index arrays that outlive the call. */
typedef struct kernels_variant {
    int mods, layout, kv_dtype;
    size_t page;
    bool user_mods; /* with the caller's score_mod/mask_mod (each class is recorded without them too) */
} kernels_variant;

typedef struct kernels_variant_state {
    cl_mem head_values, scales;
    int32_t cu_q[2], cu_k[2], seqlens_k[1];
    int32_t block_table[4096 / 8];
} kernels_variant_state;

/* Describes one call of a class (one head, lq queries over lk keys of head dim d, storage dt) with the variant:
 * the descriptor's fields and the q, k, v and out tensors over the buffers given (each large enough for the dense
 * call). Returns false when the variant cannot apply (a paged layout whose pages do not divide lk). */
bool kernels_variant_apply(const kernels_variant *var, const kernels_variants *all, kernels_variant_state *s,
                           size_t lq, size_t lk, size_t d, clattn_dtype dt, cl_mem qb, cl_mem kb, cl_mem vb,
                           cl_mem ob, clattn_sdpa_desc *desc, clattn_tensor *q, clattn_tensor *k, clattn_tensor *v,
                           clattn_tensor *o);
/* "softcap+sinks, paged 16, i8" for messages ("" for the plain dense variant). */
void kernels_variant_describe(const kernels_variant *var, char *out, size_t size);

#endif
