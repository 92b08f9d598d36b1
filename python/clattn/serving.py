# SPDX-License-Identifier: Apache-2.0
"""FlashAttention's serving functions on clattn: flash_attn_varlen_func (packed variable-length batches),
flash_attn_with_kvcache (decode and chunked prefill over a paged or a dense KV cache) and quantize_kv (8-bit keys
and values with their scales, for either). They take FlashAttention's layouts ([tokens, heads, dim] packed,
[batch, seq, heads, dim], vLLM's [num_blocks, block_size, heads, dim] caches) and argument names, and run the serving
formats of clattn_sdpa (cu_seqlens, block tables, I8 / FP8 keys and values) on those arrays through strides, without
transposing anything.

FlashAttention aligns causal masks, windows and ALiBi at the bottom right of each sequence: query i of a sequence
with Lq queries and Lk keys sits at position i + Lk - Lq. clattn's causal BOTTOM_RIGHT does the same per sequence;
where FlashAttention applies that alignment without a causal mask (a window open to the right, or ALiBi, over
sequences whose Lq != Lk), clattn's own window and ALiBi would align at the top left, so those calls state the
alignment as a mask_mod / score_mod over a per-sequence offset buffer instead."""
from __future__ import annotations

import ctypes
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._arrays import DTYPE_NAME, KV8_HOST_TYPE, HostArray, float_values, host_array, to_caller
from .attention import _DEFAULT_DESC, _Call, _per_head, is_device, set_mods
from .errors import DTypeError, InvalidArgumentError, MaskError, ShapeError, UnsupportedError, check, make
from .tensor import DeviceTensor

lib = _lib.lib
_FLOAT = (_lib.DTYPE_F32, _lib.DTYPE_F16, _lib.DTYPE_BF16)
_KV8 = {"i8": _lib.DTYPE_I8, "int8": _lib.DTYPE_I8, "fp8": _lib.DTYPE_FP8_E4M3, "fp8_e4m3": _lib.DTYPE_FP8_E4M3,
        "float8_e4m3fn": _lib.DTYPE_FP8_E4M3}
_I32 = np.iinfo(np.int32)
_PAGE_SIZES = (256, 128, 64, 32, 16, 8)  # the block sizes clattn's paged kernels take, largest first
_FP8_MAX = 448.0  # the largest finite E4M3 value

# FlashAttention's alignment stated as mods (see the module docstring): fa_pos = [left, right, Lk - Lq of each
# sequence]; one fixed text each, so every such call shares one compiled program.
_WINDOW_MOD = ("(fa_pos[0] < 0 || kv_idx >= q_idx + fa_pos[2 + b] - fa_pos[0]) && "
               "(fa_pos[1] < 0 || kv_idx <= q_idx + fa_pos[2 + b] + fa_pos[1])")
_ALIBI_MOD = "score - fa_alibi[h] * (float)abs(q_idx + fa_pos[2 + b] - kv_idx)"


def _context(context: Any) -> Any:
    if context is None:
        from . import default_context  # the package imports this module first
        return default_context()
    return context


def _kv8_code(kv_dtype: Any, what: str) -> int:
    code = _KV8.get(str(kv_dtype).replace("torch.", "").lower())
    if code is None:
        raise DTypeError(f"{what}={kv_dtype!r}: expected 'i8' (int8 bytes) or 'fp8' (E4M3 codes in uint8)", -3007)
    return code


def _index(x: Any, name: str, ndim: int, status: int) -> np.ndarray:
    """A host index array (cu_seqlens, lengths, a block table) as contiguous int32, which clattn_sdpa reads."""
    if is_device(x):
        raise InvalidArgumentError(f"{name}: a device tensor; index arrays are host memory (the scheduler's own), "
                                   "which clattn checks before it enqueues anything: pass a NumPy array", -3000)
    a = np.asarray(host_array(x, name).array)
    if a.dtype.kind not in "iu":
        raise DTypeError(f"{name}: dtype {a.dtype}; expected integers (int32)", -3007)
    if a.ndim != ndim:
        raise ShapeError(f"{name}: {a.ndim} dimensions {tuple(a.shape)}; expected {ndim}", -3002)
    if a.size and (a.min() < _I32.min or a.max() > _I32.max):
        raise make(status, f"{name}: values from {a.min()} to {a.max()} do not fit int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def _int_ptr(a: Optional[np.ndarray]) -> Any:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)) if a is not None else None


def _c(t: DeviceTensor, sizes: Sequence[int], strides: Sequence[int]) -> "_lib.Tensor_":
    """The C API's view of `t`'s buffer with the given sizes and strides (elements)."""
    t._live()
    return _lib.Tensor_(t._mem, t.offset, t.dtype, (ctypes.c_size_t * 4)(*sizes), (ctypes.c_size_t * 4)(*strides))


def _heads_view(t: DeviceTensor) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Sizes and strides of a [A, L, H, D] tensor (FlashAttention's order) as the C API's [A, H, L, D]."""
    s, st = t.shape, t.strides
    return (s[0], s[2], s[1], s[3]), (st[0], st[2], st[1], st[3])


def _upload(call: _Call, x: Any, name: str, rank: int, layout: str, kv: bool = False, kv_dtype: Any = None,
            prepare: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Tuple[DeviceTensor, Any]:
    """`x` with `rank` dimensions in `layout` on the device, as a 4-D tensor with leading ones: a DeviceTensor (or
    pyopencl array) as it is, a host array uploaded for the call (as a strided view where it can be; `prepare`
    rewrites the host array first). Keys and values (`kv`) may be 8-bit: int8 arrays are I8, uint8 ones with
    kv_dtype="fp8" FP8. Returns (tensor, the host array or None)."""
    code = _kv8_code(kv_dtype, "kv_dtype") if kv and kv_dtype is not None else None
    if is_device(x):
        t, _ = call.tensor(x, name, None)
        if any(n != 1 for n in t.shape[:4 - rank]):
            raise ShapeError(f"{name}: a device tensor of shape {t.shape}; expected {layout} (with leading ones, as "
                             "Context.to_device makes a smaller array)", -3002)
        if code is not None and t.dtype != code:
            raise DTypeError(f"{name}: a device tensor of dtype {t.dtype_name}, but kv_dtype={kv_dtype!r}", -3007)
        return t, None
    h = host_array(x, name)
    if h.array.ndim != rank:
        raise ShapeError(f"{name}: {h.array.ndim} dimensions {tuple(h.array.shape)}; expected {layout}", -3002)
    a = h.array
    if kv and code is None:
        if a.dtype == np.uint8:
            raise DTypeError(f"{name}: a uint8 array; pass kv_dtype='fp8' if it holds E4M3 codes (int8 arrays are "
                             "read as 'i8')", -3007)
        if a.dtype == np.int8:
            code = _lib.DTYPE_I8
    if code is not None:
        if a.dtype != KV8_HOST_TYPE[code]:
            raise DTypeError(f"{name}: kv_dtype={DTYPE_NAME[code]!r} reads {KV8_HOST_TYPE[code]} bytes, but the array "
                             f"is {a.dtype}; quantize floats with clattn.quantize_kv", -3007)
        want = code
    else:
        want = h.dtype if h.dtype in _FLOAT else _lib.DTYPE_F32  # float64 and the like are stored as f32
    if prepare is not None:
        a = prepare(a)
    t = call.ctx._upload(HostArray(a, h.dtype if code is None else code, h.torch_dtype), want, rank)
    call.temps.append(t)
    return t, h


def _scale(call: _Call, s: Any, name: str, cache: bool,
           prepare: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Optional[DeviceTensor]:
    """An 8-bit K or V scale on the device as a 4-D tensor (1, A, L, H): the keys' own layout without the head dim
    ([A, L, H] or [total, H]), right-aligned, so [H] is one per head and a float one for all. F16 arrays stay F16,
    other floats become F32 (the two the kernels read)."""
    if s is None:
        return None
    if is_device(s):
        t, _ = call.tensor(s, name, None)
        if t.shape[0] != 1:
            raise ShapeError(f"{name}: a device tensor of shape {t.shape}; scales have at most three dimensions "
                             "(the keys' without the head dim)", -3002)
        return t
    h = host_array(s, name)
    a = h.array
    if a.ndim > 3 or (cache and a.ndim == 2):
        raise ShapeError(f"{name}: {a.ndim} dimensions {tuple(a.shape)}; give a float (one scale), [Hkv] (one per "
                         "head) or the cache's shape without head_dim (one per token and head"
                         f"{'; one per sequence and head is [batch, 1, Hkv] for a dense cache' if cache else ''})",
                         -3002)
    code = _lib.DTYPE_F16 if h.dtype == _lib.DTYPE_F16 else _lib.DTYPE_F32
    a = a if h.dtype == code else float_values(h, name)
    a = a.reshape((1,) * (3 - a.ndim) + a.shape)
    if prepare is not None:
        a = prepare(a)
    t = call.ctx._upload(HostArray(a, code), code, 0)
    call.temps.append(t)
    return t


def _scale_view(t: DeviceTensor) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """A scale tensor (1, A, L, H) as the C API's [A, H, L, 1]."""
    s, st = t.shape, t.strides
    return (s[1], s[3], s[2], 1), (st[1], st[3], st[2], 0)


def _window(window_size: Any) -> Tuple[int, int]:
    try:
        left, right = (int(w) for w in window_size)
    except (TypeError, ValueError):
        raise MaskError(f"window_size={window_size!r}: expected (left, right), -1 for an unbounded side",
                        -3008) from None
    if left < -1 or right < -1:
        raise MaskError(f"window_size={window_size!r}: each side is >= 0, or -1 for unbounded", -3008)
    return left, right


def _options(call: _Call, desc: Any, hq: int, q_lens: np.ndarray, k_lens: np.ndarray, softmax_scale: Any,
             causal: bool, window_size: Any, softcap: Any, alibi_slopes: Any) -> List[bytes]:
    """Scale, softcap, causal mask, window and ALiBi into `desc`, aligned as FlashAttention aligns them (see the
    module docstring). Returns the strings the desc points to, to keep until the call returns."""
    if softmax_scale is not None:
        desc.scale = float(softmax_scale)
    if softcap:
        desc.softcap = float(softcap)  # FlashAttention's 0 is "none"; C refuses negative and non-finite ones
    left, right = _window(window_size)
    if causal:
        right = 0  # FlashAttention: causal is the window's right side at 0
    if alibi_slopes is not None and not is_device(alibi_slopes) and \
            np.asarray(host_array(alibi_slopes, "alibi_slopes").array).ndim == 2:
        raise ShapeError("alibi_slopes: [batch, nheads] (a slope per sequence); clattn takes one slope per query "
                         "head, [nheads]", -3002)
    if right == 0:
        # A causal mask (with a left window or none): clattn's BOTTOM_RIGHT aligns it, the window and ALiBi per
        # sequence, as FlashAttention does.
        desc.causal = _lib.CAUSAL_BOTTOM_RIGHT
        desc.window_left = left
    elif (left < 0 and right < 0 and alibi_slopes is None) or not np.any(k_lens != q_lens):
        # Nothing aligned, or every sequence square, where top-left and bottom-right are one alignment.
        desc.window_left, desc.window_right = left, right
    else:
        pos = np.concatenate([[left, right], k_lens.astype(np.int64) - q_lens]).astype(np.int32)
        buffers = {"fa_pos": pos}
        mask_mod = _WINDOW_MOD if left >= 0 or right >= 0 else None
        score_mod = None
        if alibi_slopes is not None:
            slopes = alibi_slopes if is_device(alibi_slopes) else \
                np.ascontiguousarray(float_values(host_array(alibi_slopes, "alibi_slopes"), "alibi_slopes"),
                                     dtype=np.float32).reshape(-1)
            count = int(np.prod(slopes.shape))
            if count != hq:
                raise ShapeError(f"alibi_slopes: {count} values, but the query has {hq} heads: give one per query "
                                 "head", -3002)
            buffers["fa_alibi"] = slopes
            score_mod = _ALIBI_MOD
        return set_mods(call, desc, score_mod, mask_mod, buffers)
    if alibi_slopes is not None:
        desc.alibi_slopes = _per_head(call, alibi_slopes, "alibi_slopes", hq)
    return []


def _run(call: _Call, desc: Any, q: Any, k: Any, v: Any, qh: Any, out_shape: Tuple[int, int, int, int],
         lse_rows: Tuple[int, int, int], return_lse: bool, host_out: Tuple[int, ...],
         host_lse: Tuple[int, ...]) -> Any:
    """Runs clattn_sdpa into an output [A, L, Hq, Dv] (FlashAttention's order) and, with return_lse, an lse
    [X, Hq, L] (a row per query). Returns them as the caller's kind: device tensors for a device query (qh None),
    else host arrays of the shapes host_out and host_lse."""
    ctx = call.ctx
    o = ctx.empty(out_shape, "f32")
    call.temps.append(o)
    out_c = _c(o, *_heads_view(o))
    lse = None
    if return_lse:
        x, hq, rows = lse_rows
        lse = ctx.empty((1, x, hq, rows), "f32")
        call.temps.append(lse)
        desc.lse = _c(lse, (x, hq, rows, 1), (hq * rows, rows, 1, 1))
    h = ctx._live()
    st = lib.clattn_sdpa(h, ctypes.byref(desc), ctypes.byref(q), ctypes.byref(k), ctypes.byref(v),
                         ctypes.byref(out_c), None, 0, None, None)
    check(st, "clattn_sdpa", h)
    if qh is None:
        # A device query: the results stay on the device, handed over instead of freed with the temporaries.
        call.temps = [t for t in call.temps if t is not o and t is not lse]
        return (o, lse) if return_lse else o
    result = to_caller(o.numpy().reshape(host_out), qh)
    if lse is None:
        return result
    lse_host = lse.numpy().reshape(host_lse)
    if qh.torch_dtype is not None:
        import torch
        lse_host = torch.from_numpy(lse_host)
    return result, lse_host


def flash_attn_varlen_func(q: Any, k: Any, v: Any, cu_seqlens_q: Any, cu_seqlens_k: Any,
                           max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None,
                           dropout_p: float = 0.0, softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: Sequence[int] = (-1, -1), softcap: float = 0.0, alibi_slopes: Any = None,
                           deterministic: bool = False, return_lse: bool = False, block_table: Any = None, *,
                           k_scale: Any = None, v_scale: Any = None, kv_dtype: Any = None,
                           context: Any = None) -> Any:
    """Attention over a packed batch of sequences of different lengths, as FlashAttention's flash_attn_varlen_func.

    q [total_q, Hq, D], k [total_k, Hkv, D], v [total_k, Hkv, Dv] (Hq a multiple of Hkv); sequence b is rows
    cu_seqlens_q[b]:cu_seqlens_q[b + 1] of q and cu_seqlens_k[b]:cu_seqlens_k[b + 1] of k and v (int32 host arrays
    of batch + 1 offsets from 0; lengths 0 and 1 work anywhere). With block_table (int32 [batch, max_blocks]), k and
    v are paged caches [num_blocks, block_size, Hkv, D] (block_size a power of two from 8 to 256) and cu_seqlens_k
    the cumulative cache lengths, as in FlashAttention's paged varlen call.

    causal: query i of a sequence sees keys j <= i + Lk - Lq (bottom-right, FlashAttention's). window_size (left,
    right): keys within [i + Lk - Lq - left, i + Lk - Lq + right], -1 unbounded (causal sets right to 0). softcap:
    > 0 caps the scaled logits, softcap * tanh(s / softcap). alibi_slopes [Hq]: -slope * |i + Lk - Lq - j| added.
    softmax_scale: None is 1 / sqrt(D). max_seqlen_q, max_seqlen_k and deterministic are accepted for
    FlashAttention's callers (clattn sizes the work from the offsets and is deterministic); dropout_p must be 0.

    8-bit keys and values (k and v as int8 arrays, or uint8 arrays of E4M3 codes with kv_dtype="fp8", as
    clattn.quantize_kv makes them) need k_scale and v_scale: a float, one per head [Hkv], or one per token and head
    (k's shape without head_dim). Inputs are NumPy arrays, CPU torch tensors, array-interface or DLPack objects, or
    DeviceTensors of the context; context=None uses clattn.default_context().

    Returns out [total_q, Hq, Dv] as the query's kind of array (float32 unless q is float16, bfloat16 or float64)
    and, with return_lse, the log-sum-exp of each row [Hq, total_q] (float32; -inf for a row that sees no key). A
    device query gives DeviceTensors: out (1, total_q, Hq, Dv) and lse (1, 1, Hq, total_q).
    """
    ctx = _context(context)
    ctx._live()
    if dropout_p:
        raise UnsupportedError(f"dropout_p={dropout_p}: clattn computes attention without dropout (inference); "
                               "pass 0", -3021)
    cu_q = _index(cu_seqlens_q, "cu_seqlens_q", 1, -3025)
    cu_k = _index(cu_seqlens_k, "cu_seqlens_k", 1, -3025)
    if cu_q.size == 0 or cu_k.shape != cu_q.shape:
        raise ShapeError(f"cu_seqlens_q and cu_seqlens_k: {cu_q.size} and {cu_k.size} offsets; both need batch + 1 "
                         "(at least 1)", -3002)
    batch = cu_q.size - 1
    q_lens = np.diff(cu_q)
    k_lens = np.diff(cu_k)
    call = _Call(ctx)
    try:
        qt, qh = _upload(call, q, "q", 3, "[total_q, heads, head_dim]")
        paged = block_table is not None
        layout = "[num_blocks, block_size, kv_heads, head_dim]" if paged else "[total_k, kv_heads, head_dim]"
        kt, _ = _upload(call, k, "k", 4 if paged else 3, layout, kv=True, kv_dtype=kv_dtype)
        vt, _ = _upload(call, v, "v", 4 if paged else 3, layout, kv=True, kv_dtype=kv_dtype)
        # The desc holds bare pointers into cu_q, cu_k, table, seqlens and the strings in `keep`: the locals keep them
        # alive until clattn_sdpa has returned.
        desc = _lib.SdpaDesc.from_buffer_copy(_DEFAULT_DESC)
        desc.seq_count = batch
        desc.cu_seqlens_q = _int_ptr(cu_q)
        seqlens = table = None
        if paged:
            table = _index(block_table, "block_table", 2, -3026)
            if table.shape[0] != batch:
                raise ShapeError(f"block_table: {table.shape[0]} rows for {batch} sequences", -3002)
            seqlens = k_lens.astype(np.int32)  # FlashAttention's paged varlen: cu_seqlens_k sums the cache lengths
            desc.block_table, desc.block_table_stride = _int_ptr(table), table.shape[1]
            desc.seqlens_k = _int_ptr(seqlens)
        else:
            desc.cu_seqlens_k = _int_ptr(cu_k)
        hq, total_q, dv = qt.shape[2], qt.shape[1], vt.shape[3]
        keep = _options(call, desc, hq, q_lens, k_lens, softmax_scale, causal, window_size, softcap, alibi_slopes)
        for name, s in (("k_scale", k_scale), ("v_scale", v_scale)):
            st = _scale(call, s, name, paged)
            if st is not None:
                setattr(desc, name, _c(st, *_scale_view(st)))
        return _run(call, desc, _c(qt, *_heads_view(qt)), _c(kt, *_heads_view(kt)), _c(vt, *_heads_view(vt)), qh,
                    (1, total_q, hq, dv), (1, hq, total_q), return_lse, (total_q, hq, dv), (hq, total_q))
    finally:
        call.free()


def _pages_of(views: List[Tuple[Sequence[int], Sequence[int]]], batch: int,
              rows: int) -> Optional[Tuple[int, int]]:
    """How C-order [batch, H, rows, X] views of dense caches read as pages: (page size, pages from one sequence's
    first page to the next's), the largest page size that divides `rows` and every view's sequence stride, with the
    same step for every view (one block table serves them all). None where no page size does."""
    for page in _PAGE_SIZES:
        if rows % page:
            continue
        step = None
        for _sizes, strides in views:
            if batch == 1:
                continue
            span = page * strides[2]
            if span == 0 or strides[0] % span or (step is not None and strides[0] // span != step):
                break
            step = strides[0] // span
        else:
            return page, step or 0
    return None


def flash_attn_with_kvcache(q: Any, k_cache: Any, v_cache: Any, cache_seqlens: Any = None, block_table: Any = None,
                            softmax_scale: Optional[float] = None, causal: bool = False,
                            window_size: Sequence[int] = (-1, -1), softcap: float = 0.0, alibi_slopes: Any = None,
                            return_softmax_lse: bool = False, *, k_scale: Any = None, v_scale: Any = None,
                            kv_dtype: Any = None, context: Any = None) -> Any:
    """Attention of new queries over a KV cache (decode, or a chunk of prefill), as FlashAttention's
    flash_attn_with_kvcache (without appending new keys: write them into the cache first).

    q [B, Lq, Hq, D]. Paged (block_table int32 [B, max_blocks] given): k_cache and v_cache [num_blocks, block_size,
    Hkv, D] / [.., Dv] (vLLM's layout; block_size a power of two from 8 to 256), key j of sequence b in row
    j % block_size of page block_table[b, j // block_size]; pages may come in any order and be shared. Dense (no
    block_table): k_cache [B, Lk_max, Hkv, D], sequence b's keys are its first cache_seqlens[b] rows (the call reads
    them as pages of the cache: a device cache needs Lk_max a multiple of 8; a host one is padded). cache_seqlens:
    int32 [B] or an int (None: the whole cache). Each sequence's causal mask, window and ALiBi align at its own
    bottom right, query i at position cache_seqlens[b] - Lq + i, as in FlashAttention.

    causal, window_size, softcap, alibi_slopes, softmax_scale, kv_dtype, k_scale, v_scale and context as for
    flash_attn_varlen_func (per-token scales have the cache's shape without head_dim: [num_blocks, block_size, Hkv]
    or [B, Lk_max, Hkv]; a dense cache also takes [B, 1, Hkv], one per sequence and head).

    Returns out [B, Lq, Hq, Dv] as the query's kind of array and, with return_softmax_lse (FlashAttention's name
    here), lse [B, Hq, Lq] (float32). A device query gives DeviceTensors: out (B, Lq, Hq, Dv), lse (1, B, Hq, Lq).
    """
    ctx = _context(context)
    ctx._live()
    call = _Call(ctx)
    try:
        qt, qh = _upload(call, q, "q", 4, "[batch, seq, heads, head_dim]")
        batch, lq, hq = qt.shape[0], qt.shape[1], qt.shape[2]
        paged = block_table is not None
        # The desc holds bare pointers into table, lens and the strings in `keep`: the locals keep them alive until
        # clattn_sdpa has returned.
        desc = _lib.SdpaDesc.from_buffer_copy(_DEFAULT_DESC)
        desc.seq_count = batch
        if paged:
            layout = "[num_blocks, block_size, kv_heads, head_dim]"
            kt, _ = _upload(call, k_cache, "k_cache", 4, layout, kv=True, kv_dtype=kv_dtype)
            vt, _ = _upload(call, v_cache, "v_cache", 4, layout, kv=True, kv_dtype=kv_dtype)
            table = _index(block_table, "block_table", 2, -3026)
            if table.shape[0] != batch:
                raise ShapeError(f"block_table: {table.shape[0]} rows for a batch of {batch} queries", -3002)
            longest = table.shape[1] * kt.shape[1]
            kv = [(kt, *_heads_view(kt)), (vt, *_heads_view(vt))]
            scales = [_scale(call, s, n, True) for n, s in (("k_scale", k_scale), ("v_scale", v_scale))]
            scale_views = [(s, *_scale_view(s)) if s is not None else None for s in scales]
        else:
            table, kv, scale_views, longest = _dense_pages(call, k_cache, v_cache, k_scale, v_scale, kv_dtype, batch)
        lens = _cache_lengths(cache_seqlens, batch, longest, paged)
        desc.block_table, desc.block_table_stride = _int_ptr(table), table.shape[1]
        desc.seqlens_k = _int_ptr(lens)
        keep = _options(call, desc, hq, np.full(batch, lq), lens, softmax_scale, causal, window_size, softcap,
                        alibi_slopes)
        for name, sv in zip(("k_scale", "v_scale"), scale_views):
            if sv is not None:
                setattr(desc, name, _c(*sv))
        (kt, k_sizes, k_strides), (vt, v_sizes, v_strides) = kv
        dv = vt.shape[3]
        return _run(call, desc, _c(qt, *_heads_view(qt)), _c(kt, k_sizes, k_strides), _c(vt, v_sizes, v_strides), qh,
                    (batch, lq, hq, dv), (batch, hq, lq), return_softmax_lse, (batch, lq, hq, dv), (batch, hq, lq))
    finally:
        call.free()


def _cache_lengths(cache_seqlens: Any, batch: int, longest: int, paged: bool) -> np.ndarray:
    """cache_seqlens as int32 [batch]: an int for every sequence, None for the whole cache. A dense cache's are
    checked here: its block table is ours, so the library's message about it would name what the caller never
    gave."""
    if cache_seqlens is None:
        return np.full(batch, longest, np.int32)
    if isinstance(cache_seqlens, (int, np.integer)):
        cache_seqlens = np.full(batch, int(cache_seqlens))
    lens = _index(cache_seqlens, "cache_seqlens", 1, -3025)
    if lens.shape[0] != batch:
        raise ShapeError(f"cache_seqlens: {lens.shape[0]} lengths for a batch of {batch} queries", -3002)
    if not paged and lens.size and (lens.min() < 0 or lens.max() > longest):
        b = int(np.argmax((lens < 0) | (lens > longest)))
        raise make(-3025, f"cache_seqlens[{b}] is {lens[b]}; the dense cache holds 0 to {longest} rows per sequence")
    return lens


def _dense_pages(call: _Call, k_cache: Any, v_cache: Any, k_scale: Any, v_scale: Any, kv_dtype: Any,
                 batch: int) -> Tuple[np.ndarray, List[Any], List[Any], int]:
    """A dense cache [B, Lk_max, Hkv, D] as the pages of a paged one, so that each sequence gets its own length and
    its own bottom-right alignment (dense keys with key_lengths would align every sequence at Lk_max). Host caches
    are uploaded compact, their rows padded to a multiple of 8 where needed (the padding is never read); per-token
    scales go the same way. Returns (block table, [(tensor, sizes, strides)] of k and v, the same of the scales
    (None where not given), Lk_max)."""
    layout = "[batch, seq, kv_heads, head_dim]"
    first = k_cache if is_device(k_cache) else host_array(k_cache, "k_cache").array
    rows = first.shape[1] if getattr(first, "ndim", 4) == 4 else 0  # a wrong rank is reported by _upload
    padded = rows if rows % 8 == 0 and rows else max(8, -(-rows // 8) * 8)

    def pad(a: np.ndarray) -> np.ndarray:
        if a.shape[1] == padded:
            return np.ascontiguousarray(a)
        out = np.zeros((a.shape[0], padded) + a.shape[2:], a.dtype)
        out[:, :a.shape[1]] = a
        return out

    kt, _ = _upload(call, k_cache, "k_cache", 4, layout, kv=True, kv_dtype=kv_dtype, prepare=pad)
    vt, _ = _upload(call, v_cache, "v_cache", 4, layout, kv=True, kv_dtype=kv_dtype, prepare=pad)
    if kt.shape[0] != batch:
        raise ShapeError(f"k_cache: {kt.shape[0]} sequences for a batch of {batch} queries", -3002)
    hkv = kt.shape[2]

    def per_token(a: np.ndarray) -> np.ndarray:
        # One scale per head (or one for all) stays as it is; anything finer is spread to every token, padded.
        if a.shape[0] == 1 and a.shape[1] == 1:
            return a
        try:
            full = np.broadcast_to(a, (batch, rows, hkv))
        except ValueError:
            raise ShapeError(f"a scale of shape {a.shape} does not broadcast to the cache's [{batch}, {rows}, {hkv}]",
                             -3002) from None
        return pad(full)

    scales = [_scale(call, s, n, True, per_token) for n, s in (("k_scale", k_scale), ("v_scale", v_scale))]
    paging = [(kt, *_heads_view(kt)), (vt, *_heads_view(vt))]
    scale_views: List[Any] = []  # per scale: None, its view (one per head: the same for every page) or its index
    for s in scales:
        if s is None:
            scale_views.append(None)
            continue
        sizes, strides = _scale_view(s)
        if sizes[0] == 1 and sizes[2] == 1:
            scale_views.append((s, sizes, strides))
        else:
            scale_views.append(len(paging))
            paging.append((s, sizes, strides))
    cache_rows = kt.shape[1]
    found = _pages_of([(sz, st) for _, sz, st in paging], batch, cache_rows)
    if found is None or any(sz[2] != cache_rows or (batch > 1 and sz[0] != batch) for _, sz, _st in paging):
        raise ShapeError(f"k_cache: a dense device cache of {cache_rows} rows per sequence runs as pages of 8 to 256 "
                         "rows: allocate a multiple of 8 rows per sequence, each sequence's rows after the previous "
                         "one's in k_cache, v_cache and per-token scales alike (the rows past cache_seqlens are never "
                         "read), or pass a block_table", -3002)
    page, step = found
    per_seq = cache_rows // page
    pages = max(batch - 1, 0) * step + per_seq
    for i, (t, sizes, strides) in enumerate(paging):
        paging[i] = (t, (pages, sizes[1], page, sizes[3]), (page * strides[2], strides[1], strides[2], strides[3]))
    scale_views = [paging[sv] if isinstance(sv, int) else sv for sv in scale_views]
    table = (np.arange(batch)[:, None] * step + np.arange(per_seq)[None, :]).astype(np.int32)
    return table, paging[:2], scale_views, rows


def quantize_kv(x: Any, dtype: str = "i8", scale: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Keys or values [..., heads, head_dim] in 8 bits as clattn's kernels read them (value = stored * scale), with
    clattn_quantize_rows: returns (stored, scales) for the k_scale / v_scale of flash_attn_with_kvcache and
    flash_attn_varlen_func (and kv_dtype="fp8" for fp8).

    dtype "i8": int8, by default one scale per row (token and head), max |x| / 127 (0 for a row of zeros), scales
    shaped x.shape[:-1]. dtype "fp8": OCP E4M3 codes as uint8, by default one scale per head, max |x| / 448 over
    that head's rows (1 for a head of zeros), scales [heads]. scale (a float, or one per head [heads], > 0) fixes the
    scales instead (for int8: the stored value is x / scale rounded to nearest even, saturating at +-127) and comes
    back as float32 of its own shape.
    """
    code = _kv8_code(dtype, "dtype")
    a = np.ascontiguousarray(float_values(host_array(x, "x"), "x"), dtype=np.float32)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ShapeError(f"x: shape {a.shape}; expected [..., head_dim] rows to quantize", -3002)
    cols = a.shape[-1]
    stored = np.empty(a.shape, KV8_HOST_TYPE[code])
    if scale is None and code == _lib.DTYPE_I8:
        scales = np.empty(a.shape[:-1], np.float32)
        check(lib.clattn_quantize_rows(code, a.ctypes.data, a.size // cols, cols, stored.ctypes.data,
                                       scales.ctypes.data), "clattn_quantize_rows")
        return stored, scales
    if a.ndim < 2 and (scale is None or np.ndim(scale) == 1):
        raise ShapeError(f"x: shape {a.shape}; one scale per head needs [..., heads, head_dim]", -3002)
    if scale is None:
        top = np.abs(a).max(axis=tuple(range(a.ndim - 2)) + (a.ndim - 1,), initial=0.0)
        scales = np.where(top > 0, top / np.float32(_FP8_MAX), 1).astype(np.float32)
    else:
        scales = np.array(scale, dtype=np.float32)
        if scales.ndim > 1 or (scales.ndim == 1 and scales.shape[0] != a.shape[-2]):
            raise ShapeError(f"scale: shape {scales.shape}; give a float or one per head [{a.shape[-2]}]", -3002)
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise make(-3027, f"scale: {scale!r}; scales are finite and > 0")
    heads = [(Ellipsis,)] if scales.ndim == 0 else [(Ellipsis, i, slice(None)) for i in range(a.shape[-2])]
    for i, at in enumerate(heads):
        rows = np.ascontiguousarray(a[at])
        out = np.empty(rows.shape, stored.dtype)
        s = np.array([scales if scales.ndim == 0 else scales[i]], np.float32).reshape(1)
        if code == _lib.DTYPE_FP8_E4M3:
            check(lib.clattn_quantize_rows(code, rows.ctypes.data, rows.size // cols, cols, out.ctypes.data,
                                           s.ctypes.data), "clattn_quantize_rows")
        else:
            # clattn_quantize_rows picks each int8 row's own scale; with the caller's, the library's own conversion
            # rounds and saturates x / scale.
            y = np.ascontiguousarray(rows / s[0], dtype=np.float32)
            check(lib.clattn_dtype_pack(code, y.ctypes.data, out.ctypes.data, y.size), "clattn_dtype_pack")
        stored[at] = out
    return stored, scales
