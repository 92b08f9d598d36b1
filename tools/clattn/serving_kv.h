// SPDX-License-Identifier: Apache-2.0
/* Keys or values on the device in a chosen storage type, for the serving paths of `clattn run sdpa` and `clattn
 * bench sdpa`: f32, f16 or bf16, or quantized on upload with clattn_quantize_rows to int8 (one scale per token and
 * head, max |x| / 127) or fp8 E4M3 (one scale per head, max |x| over that head / 448). The host floats are
 * overwritten with the values the device holds (rounded, or dequantized), so that --check compares the device with
 * the reference on exactly its own inputs. */
#ifndef CLATTN_SERVING_KV_H
#define CLATTN_SERVING_KV_H

#include <stddef.h>

#include "clattn.h"

/* A K or V store on the device: its view (the layout asked for, in the storage dtype) and, for 8-bit storage, its
 * scale view (F32; buffer NULL otherwise). bytes: the device bytes of the values and of the scales. */
typedef struct serving_kv {
    clattn_tensor tensor, scale;
    size_t value_bytes, scale_bytes;
} serving_kv;

/* --kv-dtype: f32, f16, bf16, i8 or fp8. Prints the error under `cmd` and returns CLI_USAGE, or CLI_OK. */
int serving_parse_kv_dtype(const char *cmd, const char *text, clattn_dtype *dtype);

/* Stores `host`, a contiguous array laid out as `layout` says (clattn_tensor_bhld or _blhd of a NULL buffer: its
 * sizes and strides, head dim stride 1), on the device as `storage`, and rewrites `host` with the stored values.
 * `what` names the tensor in messages ("keys"). Returns CLI_OK, or prints why under `cmd` and returns
 * CLI_FAILED. */
int serving_kv_upload(const char *cmd, const char *what, clattn_context *ctx, float *host,
                      const clattn_tensor *layout, clattn_dtype storage, serving_kv *kv);

/* Releases the buffers; accepts a zeroed or already released store. */
void serving_kv_free(serving_kv *kv);

/* A short name of how a storage type is scaled: "a scale per token and head" (i8), "a scale per head" (fp8), or
 * "" for float storage. */
const char *serving_kv_scale_note(clattn_dtype storage);

#endif
