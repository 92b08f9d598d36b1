// SPDX-License-Identifier: Apache-2.0
/* Pieces shared by the `clattn run` commands (sdpa, mha, additive/luong) and the inputs of `clattn bench`: size
 * lists, the --mask and --key-lengths loaders and .npy outputs. Seeded random values, device buffers in a storage
 * dtype and comparisons with the reference come from the support library (tests/support), which the tests share.
 * Each command keeps its own option checks and messages; what is here is the part that is the same logic
 * everywhere. */
#ifndef CLATTN_RUN_COMMON_H
#define CLATTN_RUN_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "npy.h"
#include "support_buffers.h"
#include "support_compare.h"
#include "support_random.h"

/* Parses exactly `n` comma-separated sizes, each at most `max`, into out. Returns 0, or -1 on anything else. */
int run_parse_sizes(const char *text, size_t *out, int n, unsigned long long max);

/* A --mask array: float additive (converted from float32/16/64) or bool (bool or uint8), whose shape must
 * broadcast to want = [B, H, Lq, Lk] under NumPy's rules: rank 1 to 4, aligned from the right ([Lk], [Lq, 1],
 * [H, Lq, Lk], [B, 1, 1, Lk]; with `batch_leads`, for sequence tensors whose H is 1, ranks 1 to 3 align against
 * [B, Lq, Lk]), each size 1 or the full size. m->shape receives the shape as four dimensions. A wrong shape or
 * dtype is a usage error naming the file, its shape and the shape wanted. */
typedef struct run_mask {
    float *additive;
    uint8_t *bool_mask;
    size_t shape[4];
} run_mask;
int run_load_mask(const char *cmd, const char *path, const size_t want[4], bool batch_leads, run_mask *m);
/* The contiguous strides of a mask of sizes `shape` (as loaded); returns its element count. */
size_t run_mask_strides(const size_t shape[4], size_t stride[4]);

/* A --key-lengths array: int32 or int64 [batch], each in 0..kv_len, into a new int32 array. `split_messages`
 * reports a wrong shape and a wrong dtype separately (run sdpa's wording) rather than in one message. */
int run_load_key_lengths(const char *cmd, const char *path, size_t batch, size_t kv_len, bool split_messages,
                         int32_t **out);

/* The score modifiers of --softcap C (a positive finite number), --sinks S.npy and --alibi-slopes A.npy (float32
 * [heads] each, into new arrays; NULL when not given). A bad value, shape or dtype is a usage error naming the
 * option and the file. */
typedef struct cli_command cli_command;
typedef struct run_score_mods {
    float softcap;
    float *sinks, *alibi_slopes;
} run_score_mods;
int run_load_score_mods(const cli_command *cmd, size_t heads, run_score_mods *m);
void run_score_mods_free(run_score_mods *m);

/* --mod-buffer NAME=FILE.npy[,NAME=FILE.npy]: float32 or int32 arrays of any shape, read flat by --score-mod and
 * --mask-mod as NAME[index]; at most CLATTN_MAX_MOD_BUFFERS. The library checks the names. A malformed list, an
 * unreadable file or another dtype is a usage error. */
typedef struct run_mod_buffers {
    size_t count;
    const char *name[CLATTN_MAX_MOD_BUFFERS]; /* into spec */
    npy_array array[CLATTN_MAX_MOD_BUFFERS];
    char *spec; /* the option's text, split in place */
} run_mod_buffers;
int run_load_mod_buffers(const char *cmd, const char *spec, run_mod_buffers *m);
void run_mod_buffers_free(run_mod_buffers *m);
static inline clattn_mod_dtype run_mod_dtype(const npy_array *a) {
    return a->dtype == NPY_F32 ? CLATTN_MOD_F32 : CLATTN_MOD_I32;
}

/* --block-mask BM.npy (int32, 1-D to 4-D, aligned from the right to [B, Hq, query blocks, key blocks]; B counts
 * the sequences of packed and paged runs) and --block-size BQ[,BK] (BK defaults to BQ). With no --block-mask,
 * m->array.data stays NULL (and --block-size alone is a usage error); m->bq and m->bk are 128 unless given. */
typedef struct run_block_mask {
    npy_array array;
    size_t shape[4];
    size_t bq, bk;
} run_block_mask;
int run_load_block_mask(const cli_command *c, run_block_mask *m);

/* Writes a float32 .npy file; prints "writing <what> to <path>: ..." under `cmd` on failure. */
int run_write_npy(const char *cmd, const char *path, const char *what, int ndim, const size_t *shape,
                  const float *data);

#endif
