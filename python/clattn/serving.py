# SPDX-License-Identifier: Apache-2.0
"""FlashAttention's serving functions on clattn: flash_attn_varlen_func (packed variable-length batches),
flash_attn_with_kvcache (decode and chunked prefill over a paged or a dense KV cache, appending new keys first),
kv_append (vLLM's reshape_and_cache) and quantize_kv (8-bit keys and values with their scales, for either). They take FlashAttention's layouts ([tokens, heads, dim] packed,
[batch, seq, heads, dim], vLLM's [num_blocks, block_size, heads, dim] caches) and argument names, and run the serving
formats of clattn_sdpa (cu_seqlens, block tables, I8 / FP8 keys and values) on those arrays through strides, without
transposing anything.

FlashAttention aligns causal masks, windows and ALiBi at the bottom right of each sequence, causal or not: query i
of a sequence with Lq queries and Lk keys sits at position i + Lk - Lq. These calls ask clattn for exactly that
(CLATTN_CAUSAL_BOTTOM_RIGHT and CLATTN_WINDOW_ALIGN_BOTTOM_RIGHT), per sequence; a dense cache's cache_seqlens are
clattn_sdpa_desc.seqlens_k, each sequence's own Lk."""
from __future__ import annotations

import ctypes
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._arrays import DTYPE_NAME, KV8_HOST_TYPE, HostArray, float_values, host_array, to_caller
from .attention import _DEFAULT_DESC, _Call, _per_head, is_device, set_block_mask
from .errors import DTypeError, InvalidArgumentError, MaskError, ShapeError, UnsupportedError, check, make
from .tensor import DeviceTensor

lib = _lib.lib
_FLOAT = (_lib.DTYPE_F32, _lib.DTYPE_F16, _lib.DTYPE_BF16)
_KV8 = {"i8": _lib.DTYPE_I8, "int8": _lib.DTYPE_I8, "fp8": _lib.DTYPE_FP8_E4M3, "fp8_e4m3": _lib.DTYPE_FP8_E4M3,
        "float8_e4m3fn": _lib.DTYPE_FP8_E4M3}
_I32 = np.iinfo(np.int32)
_FP8_MAX = 448.0  # the largest finite E4M3 value


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


def _options(call: _Call, desc: Any, hq: int, softmax_scale: Any, causal: bool, window_size: Any, softcap: Any,
             alibi_slopes: Any) -> None:
    """Scale, softcap, causal mask, window and ALiBi into `desc`, all aligned at each sequence's bottom right as
    FlashAttention aligns them (see the module docstring)."""
    if softmax_scale is not None:
        desc.scale = float(softmax_scale)
    if softcap:
        desc.softcap = float(softcap)  # FlashAttention's 0 is "none"; C refuses negative and non-finite ones
    left, right = _window(window_size)
    if alibi_slopes is not None and not is_device(alibi_slopes) and \
            np.asarray(host_array(alibi_slopes, "alibi_slopes").array).ndim == 2:
        raise ShapeError("alibi_slopes: [batch, nheads] (a slope per sequence); clattn takes one slope per query "
                         "head, [nheads]", -3002)
    if causal:
        desc.causal = _lib.CAUSAL_BOTTOM_RIGHT
        right = -1  # FlashAttention: causal is the window's right side at 0, which the causal mask is
    desc.window_left, desc.window_right = left, right
    desc.window_align = _lib.WINDOW_ALIGN_BOTTOM_RIGHT
    if alibi_slopes is not None:
        desc.alibi_slopes = _per_head(call, alibi_slopes, "alibi_slopes", hq)


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
                           block_mask: Any = None, block_size: Any = 128, context: Any = None) -> Any:
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

    block_mask (a clattn extension, as in scaled_dot_product_attention): integer flags broadcasting to [batch, Hq,
    ceil(max_q / BQ), ceil(max_k / BK)] with block_size = BQ or (BQ, BK) (default 128), blocks counted within each
    sequence's own positions: 0 excludes a block (the kernels skip it), other values keep its keys.

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
    k_lens = np.diff(cu_k)
    call = _Call(ctx)
    try:
        qt, qh = _upload(call, q, "q", 3, "[total_q, heads, head_dim]")
        paged = block_table is not None
        layout = "[num_blocks, block_size, kv_heads, head_dim]" if paged else "[total_k, kv_heads, head_dim]"
        kt, _ = _upload(call, k, "k", 4 if paged else 3, layout, kv=True, kv_dtype=kv_dtype)
        vt, _ = _upload(call, v, "v", 4 if paged else 3, layout, kv=True, kv_dtype=kv_dtype)
        # The desc holds bare pointers into cu_q, cu_k, table and seqlens: the locals keep them alive until
        # clattn_sdpa has returned.
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
        _options(call, desc, hq, softmax_scale, causal, window_size, softcap, alibi_slopes)
        set_block_mask(call, desc, block_mask, block_size)
        for name, s in (("k_scale", k_scale), ("v_scale", v_scale)):
            st = _scale(call, s, name, paged)
            if st is not None:
                setattr(desc, name, _c(st, *_scale_view(st)))
        return _run(call, desc, _c(qt, *_heads_view(qt)), _c(kt, *_heads_view(kt)), _c(vt, *_heads_view(vt)), qh,
                    (1, total_q, hq, dv), (1, hq, total_q), return_lse, (total_q, hq, dv), (hq, total_q))
    finally:
        call.free()


def _new_rows(call: _Call, x: Any, name: str, rank: int, layout: str) -> Tuple[DeviceTensor, Tuple[int, ...],
                                                                               Tuple[int, ...]]:
    """New keys or values ([B, seqlen_new, Hkv, D] or [T, Hkv, D]) on the device, as clattn_kv_append's
    [1, Hkv, T, D] view: its tokens one after another at one stride."""
    t, h = _upload(call, x, name, rank, layout)
    if t.dtype not in _FLOAT or (h is not None and h.dtype not in _FLOAT and h.array.dtype.kind != "f"):
        raise DTypeError(f"{name}: dtype {h.array.dtype if h is not None else t.dtype_name}; new keys and values are float32, float16 or bfloat16 (an "
                         "8-bit cache quantizes them itself)", -3007)
    a, n, h, d = t.shape
    st = t.strides
    if a > 1 and n > 0 and st[0] != n * st[1]:
        raise ShapeError(f"{name}: a device tensor whose rows are not one after another (strides {st}); make it "
                         "contiguous", -3002)
    return t, (1, h, a * n, d), (a * n * st[1], st[2], st[1], st[3])


def _append(call: _Call, k: Tuple[Any, ...], v: Tuple[Any, ...], k_cache: Tuple[Any, ...], v_cache: Tuple[Any, ...],
            slots: np.ndarray, scales: Sequence[Any]) -> None:
    """clattn_kv_append of (tensor, sizes, strides) views: new rows k and v into k_cache and v_cache at `slots`,
    with the caches' scale views (None for float caches)."""
    desc = _lib.KvAppendDesc()
    lib.clattn_kv_append_desc_init(ctypes.byref(desc))
    slots = np.ascontiguousarray(slots, dtype=np.int32)
    desc.slot_mapping = _int_ptr(slots)
    for name, sv in zip(("k_scale", "v_scale"), scales):
        if sv is not None:
            setattr(desc, name, _c(*sv))
    kn, vn, kc, vc = (_c(*x) for x in (k, v, k_cache, v_cache))
    h = call.ctx._live()
    st = lib.clattn_kv_append(h, ctypes.byref(desc), ctypes.byref(kn), ctypes.byref(vn), ctypes.byref(kc),
                              ctypes.byref(vc), None, 0, None, None)
    check(st, "clattn_kv_append", h)


class _Cache:
    """A cache (or its per-slot scales) on the device for one call: the caller's DeviceTensor as it is, or a host
    array uploaded and, once `written`, copied back into the caller's array (FlashAttention's and vLLM's caches
    are updated in place)."""
    __slots__ = ("tensor", "host", "name")

    def __init__(self, tensor: Optional[DeviceTensor], host: Optional[HostArray], name: str):
        self.tensor, self.host, self.name = tensor, host, name

    def writable(self) -> None:
        if self.host is not None and not self.host.array.flags.writeable:
            raise InvalidArgumentError(f"{self.name}: a read-only array; the new keys and values are written into "
                                       "it: pass a writable one", -3000)

    def copy_back(self) -> None:
        if self.host is None or self.tensor is None:
            return
        a = self.host.array
        np.copyto(a, self.tensor.numpy().reshape(a.shape), casting="unsafe")


def _cache(call: _Call, x: Any, name: str, kv_dtype: Any) -> _Cache:
    layout = "[batch, seq, kv_heads, head_dim] (dense) or [num_blocks, block_size, kv_heads, head_dim] (paged)"
    t, h = _upload(call, x, name, 4, layout, kv=True, kv_dtype=kv_dtype)
    return _Cache(t, h, name)


def _scale_cache(call: _Call, s: Any, name: str) -> Tuple[Optional[Any], _Cache]:
    """A cache's scales as the C view [N, Hkv, S, 1] and their _Cache (for per-slot ones, which appending
    writes)."""
    t = _scale(call, s, name, True)
    if t is None:
        return None, _Cache(None, None, name)
    host = None if is_device(s) else host_array(s, name)
    if host is not None and host.dtype not in (_lib.DTYPE_F32, _lib.DTYPE_F16):
        host = None  # converted to float32 for the upload: not the caller's memory, so not written back
    return (t, *_scale_view(t)), _Cache(t, host, name)


def _slots(lens: np.ndarray, new: int, table: Optional[np.ndarray], rows: int) -> np.ndarray:
    """The slot of each new token (sequence by sequence) after each sequence's `lens` keys: row b * rows + position
    of a dense cache of `rows` rows per sequence, or page * block_size + offset through the block table of a paged
    cache of `rows`-row pages. A position past the cache is the caller's error, named in its terms."""
    batch = lens.shape[0]
    pos = lens.astype(np.int64)[:, None] + np.arange(new)[None, :]
    room = rows if table is None else table.shape[1] * rows
    if new and np.any(pos[:, -1] >= room):
        b = int(np.argmax(pos[:, -1] >= room))
        raise make(-3025, f"cache_seqlens[{b}] is {lens[b]}: with {new} new keys sequence {b} needs "
                   f"{lens[b] + new} rows, but the cache holds {room} per sequence"
                   f"{' (block_table columns x block_size)' if table is not None else ''}")
    if table is None:
        return (np.arange(batch)[:, None] * rows + pos).reshape(-1)
    pages = table[np.arange(batch)[:, None], pos // rows].astype(np.int64)
    return (pages * rows + pos % rows).reshape(-1)


def flash_attn_with_kvcache(q: Any, k_cache: Any, v_cache: Any, cache_seqlens: Any = None, block_table: Any = None,
                            softmax_scale: Optional[float] = None, causal: bool = False,
                            window_size: Sequence[int] = (-1, -1), softcap: float = 0.0, alibi_slopes: Any = None,
                            return_softmax_lse: bool = False, *, k: Any = None, v: Any = None,
                            rotary_cos: Any = None, rotary_sin: Any = None, cache_batch_idx: Any = None,
                            cache_leftpad: Any = None, rotary_interleaved: bool = True, num_splits: int = 0,
                            k_scale: Any = None, v_scale: Any = None, kv_dtype: Any = None,
                            block_mask: Any = None, block_size: Any = 128, context: Any = None) -> Any:
    """Attention of new queries over a KV cache (decode, or a chunk of prefill), as FlashAttention's
    flash_attn_with_kvcache (whose other arguments, k and v among them, are keywords here).

    q [B, Lq, Hq, D]. Paged (block_table int32 [B, max_blocks] given): k_cache and v_cache [num_blocks, block_size,
    Hkv, D] / [.., Dv] (vLLM's layout; block_size a power of two from 8 to 256), key j of sequence b in row
    j % block_size of page block_table[b, j // block_size]; pages may come in any order and be shared. Dense (no
    block_table): k_cache [B, Lk_max, Hkv, D] (any strides), sequence b's keys its first cache_seqlens[b] rows.
    cache_seqlens: int32 [B] or an int (None: the whole cache). Each sequence's causal mask, window and ALiBi align
    at its own bottom right, query i at position Lk_b - Lq + i, as in FlashAttention.

    k, v: new keys and values [B, seqlen_new, Hkv, D] / [.., Dv] (float32, float16 or bfloat16), written into the
    caches at positions cache_seqlens[b] .. cache_seqlens[b] + seqlen_new - 1 of each sequence before the
    attention, which then sees cache_seqlens[b] + seqlen_new keys (FlashAttention's semantics; cache_seqlens is
    required with them). The caches are updated in place: device tensors on the device, host arrays (which must be
    writable) copied back. 8-bit caches quantize the new rows on the device (clattn_kv_append): with per-token
    scales (the cache's shape without head_dim) each new row's scale is computed and stored there too, while a
    per-head scale is used as given. rotary_cos / rotary_sin, cache_batch_idx and cache_leftpad are not supported
    (UnsupportedError): apply rotary embeddings to q and k first. num_splits and rotary_interleaved are accepted
    for FlashAttention's callers (clattn chooses its own key splits).

    causal, window_size, softcap, alibi_slopes, softmax_scale, kv_dtype, k_scale, v_scale and context as for
    flash_attn_varlen_func (per-token scales have the cache's shape without head_dim: [num_blocks, block_size, Hkv]
    or [B, Lk_max, Hkv]; a dense cache also takes [B, 1, Hkv], one per sequence and head).

    block_mask (a clattn extension): integer flags broadcasting to [B, Hq, ceil(Lq / BQ), ceil(max_k / BK)] with
    block_size = BQ or (BQ, BK) (default 128), max_k the longest sequence's keys (new ones included); blocks count
    each sequence's own query rows and key positions (query rows from 0 within the call, keys from the cache's
    first). 0 excludes a block's keys (the kernels skip it), other values keep them.

    Returns out [B, Lq, Hq, Dv] as the query's kind of array and, with return_softmax_lse (FlashAttention's name
    here), lse [B, Hq, Lq] (float32). A device query gives DeviceTensors: out (B, Lq, Hq, Dv), lse (1, B, Hq, Lq).
    """
    for name, given in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin), ("cache_batch_idx", cache_batch_idx),
                        ("cache_leftpad", cache_leftpad)):
        if given is not None:
            raise UnsupportedError(f"{name}: clattn's flash_attn_with_kvcache does not take it; apply rotary "
                                   "embeddings to q and k (and index the caches) before the call", -3021)
    if (k is None) != (v is None):
        raise InvalidArgumentError("k and v: give both new keys and new values, or neither", -3000)
    if k is not None and cache_seqlens is None:
        raise InvalidArgumentError("cache_seqlens: required with k and v, which are written after each sequence's "
                                   "cache_seqlens[b] keys", -3000)
    ctx = _context(context)
    ctx._live()
    call = _Call(ctx)
    try:
        qt, qh = _upload(call, q, "q", 4, "[batch, seq, heads, head_dim]")
        batch, lq, hq = qt.shape[0], qt.shape[1], qt.shape[2]
        paged = block_table is not None
        # The desc holds bare pointers into table and lens: the locals keep them alive until clattn_sdpa returns.
        desc = _lib.SdpaDesc.from_buffer_copy(_DEFAULT_DESC)
        desc.seq_count = batch
        caches = [_cache(call, k_cache, "k_cache", kv_dtype), _cache(call, v_cache, "v_cache", kv_dtype)]
        kt, vt = caches[0].tensor, caches[1].tensor
        table = None
        if paged:
            table = _index(block_table, "block_table", 2, -3026)
            if table.shape[0] != batch:
                raise ShapeError(f"block_table: {table.shape[0]} rows for a batch of {batch} queries", -3002)
            desc.block_table, desc.block_table_stride = _int_ptr(table), table.shape[1]
            longest = table.shape[1] * kt.shape[1]
        else:
            longest = kt.shape[1]
        scale_views, scale_caches = zip(*(_scale_cache(call, s, n) for n, s in (("k_scale", k_scale),
                                                                                ("v_scale", v_scale))))
        lens = _cache_lengths(cache_seqlens, batch, longest)
        kv = [(kt, *_heads_view(kt)), (vt, *_heads_view(vt))]
        if k is not None:
            written = list(caches) + [c for c, sv in zip(scale_caches, scale_views)
                                      if sv is not None and sv[1][2] != 1]
            for c in written:
                c.writable()
            layout = "[batch, seqlen_new, kv_heads, head_dim]"
            kn = _new_rows(call, k, "k", 4, layout)
            vn = _new_rows(call, v, "v", 4, layout)
            if kn[0].shape[0] != batch or vn[0].shape[:2] != kn[0].shape[:2]:
                raise ShapeError(f"k and v: shapes {kn[0].shape} and {vn[0].shape}; both need [{batch}, "
                                 "seqlen_new, kv_heads, head_dim]", -3002)
            new = kn[0].shape[1]
            slots = _slots(lens, new, table, kt.shape[1])
            _append(call, kn, vn, kv[0], kv[1], slots, scale_views)
            lens = (lens + new).astype(np.int32)
            for c in written:
                c.copy_back()
        desc.seqlens_k = _int_ptr(lens)
        _options(call, desc, hq, softmax_scale, causal, window_size, softcap, alibi_slopes)
        set_block_mask(call, desc, block_mask, block_size)
        for name, sv in zip(("k_scale", "v_scale"), scale_views):
            if sv is not None:
                setattr(desc, name, _c(*sv))
        (kt, k_sizes, k_strides), (vt, v_sizes, v_strides) = kv
        dv = vt.shape[3]
        return _run(call, desc, _c(qt, *_heads_view(qt)), _c(kt, k_sizes, k_strides), _c(vt, v_sizes, v_strides), qh,
                    (batch, lq, hq, dv), (batch, hq, lq), return_softmax_lse, (batch, lq, hq, dv), (batch, hq, lq))
    finally:
        call.free()


def _cache_lengths(cache_seqlens: Any, batch: int, longest: int) -> np.ndarray:
    """cache_seqlens as int32 [batch]: an int for every sequence, None for the whole cache (clattn_sdpa checks
    them against the cache)."""
    if cache_seqlens is None:
        return np.full(batch, longest, np.int32)
    if isinstance(cache_seqlens, (int, np.integer)):
        cache_seqlens = np.full(batch, int(cache_seqlens))
    lens = _index(cache_seqlens, "cache_seqlens", 1, -3025)
    if lens.shape[0] != batch:
        raise ShapeError(f"cache_seqlens: {lens.shape[0]} lengths for a batch of {batch} queries", -3002)
    return lens


def kv_append(k: Any, v: Any, k_cache: Any, v_cache: Any, slot_mapping: Any, *, k_scale: Any = None,
              v_scale: Any = None, kv_dtype: Any = None, context: Any = None) -> None:
    """Writes new keys and values into their slots of a KV cache, as vLLM's reshape_and_cache
    (clattn_kv_append).

    k [T, Hkv, D], v [T, Hkv, Dv] (float32, float16 or bfloat16). k_cache, v_cache [N, S, Hkv, D] / [.., Dv]: a
    paged cache [num_blocks, block_size, Hkv, D] (slot = page * block_size + offset, vLLM's slot mapping) or a
    dense one [B, L, Hkv, D] (slot = b * L + position). slot_mapping: int32 [T] host array, -1 skips a token; a
    slot past the cache or given twice raises InvalidArgumentError (status -3028). 8-bit caches (int8, or uint8
    E4M3 codes with kv_dtype="fp8") quantize the rows on the device with their k_scale / v_scale: per-slot scales
    ([N, S, Hkv]) are computed and stored for the rows written, one per head ([Hkv]) or one float is used as
    given. The caches (and per-slot scales) are updated in place: DeviceTensors on the device, host arrays (which
    must be writable) copied back. Returns None."""
    ctx = _context(context)
    ctx._live()
    call = _Call(ctx)
    try:
        caches = [_cache(call, k_cache, "k_cache", kv_dtype), _cache(call, v_cache, "v_cache", kv_dtype)]
        scale_views, scale_caches = zip(*(_scale_cache(call, s, n) for n, s in (("k_scale", k_scale),
                                                                                ("v_scale", v_scale))))
        written = list(caches) + [c for c, sv in zip(scale_caches, scale_views) if sv is not None and sv[1][2] != 1]
        for c in written:
            c.writable()
        kn = _new_rows(call, k, "k", 3, "[tokens, kv_heads, head_dim]")
        vn = _new_rows(call, v, "v", 3, "[tokens, kv_heads, head_dim]")
        slots = _index(slot_mapping, "slot_mapping", 1, -3028)
        if slots.shape[0] != kn[1][2]:
            raise ShapeError(f"slot_mapping: {slots.shape[0]} slots for {kn[1][2]} new tokens", -3002)
        kc, vc = (c.tensor for c in caches)
        _append(call, kn, vn, (kc, *_heads_view(kc)), (vc, *_heads_view(vc)), slots, scale_views)
        for c in written:
            c.copy_back()
    finally:
        call.free()


reshape_and_cache = kv_append  # vLLM's name


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
