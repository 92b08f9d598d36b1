# SPDX-License-Identifier: Apache-2.0
"""Scaled dot-product attention from Python with PyTorch's names: Context.scaled_dot_product_attention and the
module-level function. Host inputs are uploaded for the call (as views where their strides allow it); device
tensors are used as they are, and then the result stays on the device too."""
from __future__ import annotations

import ctypes
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _lib
from ._arrays import as_4d, host_array, parse_dtype, to_caller
from .errors import InvalidArgumentError, ShapeError, UnsupportedError, check, make
from .tensor import DeviceTensor

lib = _lib.lib
_ALIGN = {"top_left": _lib.CAUSAL_TOP_LEFT, "top-left": _lib.CAUSAL_TOP_LEFT,
          "bottom_right": _lib.CAUSAL_BOTTOM_RIGHT, "bottom-right": _lib.CAUSAL_BOTTOM_RIGHT}
_WINDOW_ALIGN = {None: _lib.WINDOW_ALIGN_DEFAULT, "top_left": _lib.WINDOW_ALIGN_TOP_LEFT,
                 "top-left": _lib.WINDOW_ALIGN_TOP_LEFT, "bottom_right": _lib.WINDOW_ALIGN_BOTTOM_RIGHT,
                 "bottom-right": _lib.WINDOW_ALIGN_BOTTOM_RIGHT}
_IMPL = {"auto": _lib.IMPL_AUTO, "fused": _lib.IMPL_FUSED, "unfused": _lib.IMPL_UNFUSED}
_DEFAULT_DESC = _lib.SdpaDesc()  # clattn_sdpa_desc_init's defaults, copied by every call
lib.clattn_sdpa_desc_init(ctypes.byref(_DEFAULT_DESC))


def _per_head(call: "_Call", x: Any, name: str, heads: int) -> Any:
    """A float32 [Hq] host array (sinks, ALiBi slopes) as the F32 [1, Hq, 1, 1] device tensor the C API takes; a
    DeviceTensor of Hq values is used as it is."""
    if isinstance(x, DeviceTensor):
        t, _ = call.tensor(x, name, None)
    else:
        a = np.ascontiguousarray(np.asarray(host_array(x, name).array, dtype=np.float32)).reshape(-1)
        if a.shape[0] != heads:
            raise ShapeError(f"{name}: {a.shape[0]} values, but the query has {heads} heads: give one per query "
                             "head", -3002)
        t, _ = call.tensor(a.reshape(1, heads, 1, 1), name, _lib.DTYPE_F32)
    return t._struct()


class _Call:
    """The device tensors of one call: the caller's, and temporaries uploaded from host arrays (freed after)."""
    __slots__ = ("ctx", "temps")

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.temps: List[DeviceTensor] = []

    def tensor(self, x: Any, name: str, dtype: Optional[int]) -> Tuple[DeviceTensor, Any]:
        if isinstance(x, DeviceTensor):
            if x._ctx is not self.ctx:
                raise InvalidArgumentError(f"{name}: a DeviceTensor of another Context; tensors belong to the "
                                           "context that made them", -3000)
            x._live()
            return x, None
        pyopencl = _pyopencl_tensor(self.ctx, x, name)
        if pyopencl is not None:
            self.temps.append(pyopencl)  # a view of the caller's buffer: freeing it releases nothing
            return pyopencl, None
        h = host_array(x, name)
        want = dtype
        if want is None:
            want = h.dtype if h.dtype in (_lib.DTYPE_F32, _lib.DTYPE_F16, _lib.DTYPE_BF16) else _lib.DTYPE_F32
        t = self.ctx._upload(h, want, 1 if name == "attn_mask" else 2)  # a mask may be [Lk]
        self.temps.append(t)
        return t, h

    def free(self) -> None:
        for t in self.temps:
            t.free()
        self.temps.clear()


def mask_struct(call: "_Call", attn_mask: Any) -> Any:
    """The mask as the C tensor struct: a device mask as it is; a host one uploaded as BOOL, or as its own F16/BF16,
    else F32 (the additive types the kernels read). Shared by attention, the multi-head layer and seq2seq."""
    mask_dtype = None
    if not is_device(attn_mask):
        mh = host_array(attn_mask, "attn_mask")
        mask_dtype = mh.dtype if mh.dtype in (_lib.DTYPE_BOOL, _lib.DTYPE_F16, _lib.DTYPE_BF16) else _lib.DTYPE_F32
    m, _ = call.tensor(attn_mask, "attn_mask", mask_dtype)
    return m._struct()


def is_device(x: Any) -> bool:
    """Whether `x` already lives on a device (a DeviceTensor or a pyopencl array): used as it is, never uploaded."""
    return isinstance(x, DeviceTensor) or type(x).__module__ == "pyopencl.array"


def _pyopencl_tensor(ctx: Any, x: Any, name: str) -> Optional[DeviceTensor]:
    """A pyopencl array as a (non-owning) DeviceTensor over its buffer, or None for anything else."""
    if type(x).__module__ != "pyopencl.array":
        return None
    code = parse_dtype(x.dtype, name)
    item = x.dtype.itemsize
    shape = (1,) * (4 - x.ndim) + tuple(x.shape)
    strides = (0,) * (4 - x.ndim) + tuple(s // item for s in x.strides)
    if x.offset % item or any(s % item for s in x.strides):
        raise ShapeError(f"{name}: a pyopencl array whose offset or strides are not whole elements", -3003)
    return DeviceTensor(ctx, x.base_data.int_ptr, code, shape, strides, x.offset // item, owner=False)


def _key_lengths(call: _Call, key_lengths: Any) -> int:
    """An int32 [B] device buffer of the key lengths, for the call's lifetime."""
    kl = np.asarray(host_array(key_lengths, "key_lengths").array)
    if kl.dtype.kind not in "iu" or kl.ndim != 1:
        raise make(-3002 if kl.ndim != 1 else -3007,
                   f"key_lengths: expected a 1-D integer array [batch], got {kl.dtype} {kl.shape}")
    if kl.size and (kl.min() < 0 or kl.max() > np.iinfo(np.int32).max):
        raise make(-3000, "key_lengths: lengths must lie in 0..2^31-1")
    kl32 = np.ascontiguousarray(kl, dtype=np.int32)
    t = call.ctx.to_device(kl32.view(np.float32)[None], "f32")  # the int32 bits, moved as they are
    call.temps.append(t)
    return t._mem


def _block_mask(call: _Call, block_mask: Any) -> Any:
    """The block mask as the C tensor struct: an integer host array of up to four dimensions (aligned to [B, Hq,
    query blocks, key blocks] from the right, size-1 dimensions broadcast), uploaded as int32 for the call."""
    bm = np.asarray(host_array(block_mask, "block_mask").array)
    if bm.dtype.kind not in "iub" or not 1 <= bm.ndim <= 4:
        raise make(-3008, f"block_mask: expected an integer array of 1 to 4 dimensions, got {bm.dtype} {bm.shape}")
    bm32 = np.ascontiguousarray(bm, dtype=np.int32).reshape((1,) * (4 - bm.ndim) + bm.shape)
    t = call.ctx.to_device(bm32.view(np.float32), "f32")  # the int32 bits, moved as they are
    call.temps.append(t)
    c = _lib.Tensor_.from_buffer_copy(t._struct())
    c.dtype = _lib.DTYPE_I32
    return c


def set_block_mask(call: _Call, desc: Any, block_mask: Any, block_size: Any) -> None:
    """Puts the block mask (None: none) and its block sizes (BQ or (BQ, BK)) into `desc`; the library checks the
    shape against the call (per sequence for packed and paged calls)."""
    if block_mask is None:
        return
    desc.block_mask = _block_mask(call, block_mask)
    bq, bk = (block_size, block_size) if np.ndim(block_size) == 0 else tuple(block_size)
    if int(bq) < 0 or int(bk) < 0:
        raise InvalidArgumentError(f"block_size={block_size!r}: expected positive sizes", -3000)
    desc.block_mask_q, desc.block_mask_k = int(bq), int(bk)


def set_mods(call: "_Call", desc: Any, score_mod: Optional[str], mask_mod: Optional[str],
             mod_buffers: Optional[Mapping[str, Any]]) -> List[bytes]:
    """Puts the caller's score_mod / mask_mod expressions and their buffers into `desc`. Returns the encoded strings,
    which the caller keeps alive until clattn_sdpa returns (the desc holds bare pointers to them). The library checks
    the expressions and the buffer names; this checks what only Python can see (types, dtypes, layouts)."""
    keep: List[bytes] = []
    for what, expr in (("score_mod", score_mod), ("mask_mod", mask_mod)):
        if expr is None:
            continue
        if not isinstance(expr, str):
            raise InvalidArgumentError(f"{what}: expected an OpenCL C expression as a str, got "
                                       f"{type(expr).__name__}", -3000)
        keep.append(expr.encode())
        setattr(desc, what, keep[-1])
    if mod_buffers is None:
        return keep
    if not isinstance(mod_buffers, Mapping):
        raise InvalidArgumentError(f"mod_buffers: expected a dict {{name: array}}, got {type(mod_buffers).__name__}",
                                   -3000)
    if len(mod_buffers) > _lib.MAX_MOD_BUFFERS:
        raise InvalidArgumentError(f"mod_buffers: {len(mod_buffers)} buffers ({', '.join(map(str, mod_buffers))}); "
                                   f"the expressions read at most {_lib.MAX_MOD_BUFFERS}", -3000)
    for i, (name, x) in enumerate(mod_buffers.items()):
        if not isinstance(name, str):
            raise InvalidArgumentError(f"mod_buffers: the name {name!r} is not a str; the expressions read each "
                                       "buffer by its name, a C identifier", -3000)
        mem, code, count = _mod_buffer(call, name, x)
        keep.append(name.encode())
        desc.mod_buffers[i].name = keep[-1]
        desc.mod_buffers[i].buffer = mem
        desc.mod_buffers[i].dtype = code
        desc.mod_buffers[i].count = count
    return keep


def _mod_buffer(call: "_Call", name: str, x: Any) -> Tuple[int, int, int]:
    """(cl_mem, clattn_mod_dtype, count) of one mod buffer: a float32 or int32 host array uploaded for the call, or
    an f32 DeviceTensor read from its first element (the C API takes no offset or strides for these)."""
    what = f"mod_buffers[{name!r}]"
    if is_device(x):
        t, _ = call.tensor(x, what, None)
        if t.dtype != _lib.DTYPE_F32:
            raise make(-3007, f"{what}: a DeviceTensor of dtype {t.dtype_name}; device mod buffers are f32 (int32 "
                       "data goes in as a host np.int32 array)")
        # Compact from element 0 in C order; strides of size-1 dimensions never matter (uploads set them to 0).
        expected = np.cumprod((1,) + t.shape[:0:-1])[::-1]
        if t.offset != 0 or any(n > 1 and s != e for n, s, e in zip(t.shape, t.strides, expected)):
            raise make(-3003, f"{what}: a DeviceTensor view (offset {t.offset}, strides {t.strides}); the "
                       "expressions index a buffer from its first element: pass a contiguous tensor of its own")
        return t._mem, _lib.MOD_F32, int(np.prod(t.shape))
    a = np.asarray(host_array(x, what).array)
    if a.dtype not in (np.float32, np.int32):
        # The expression's arithmetic depends on the type it reads (int or float division, comparisons), so the
        # type is the caller's to choose, never converted here.
        raise make(-3007, f"{what}: dtype {a.dtype}; the expressions read float32 (`float`) or int32 (`int`) "
                   f"buffers: pass {name}.astype(np.float32) or {name}.astype(np.int32)")
    flat = np.ascontiguousarray(a).reshape(-1)
    # Both types move as their 4-byte patterns: an f32 upload copies the int32 bits unchanged.
    t = call.ctx.to_device(flat.view(np.float32)[None], "f32")
    call.temps.append(t)
    return t._mem, _lib.MOD_F32 if a.dtype == np.float32 else _lib.MOD_I32, flat.size


def window_align_code(window_align: Optional[str]) -> int:
    """clattn_window_align of a window_align keyword: None follows the causal mask."""
    if window_align not in _WINDOW_ALIGN:
        raise InvalidArgumentError(f"window_align={window_align!r}: expected None (as the causal mask), 'top_left' "
                                   "or 'bottom_right'", -3000)
    return _WINDOW_ALIGN[window_align]


def _window(window: Optional[Sequence[Optional[int]]]) -> Tuple[int, int]:
    if window is None:
        return _lib.WINDOW_UNBOUNDED, _lib.WINDOW_UNBOUNDED
    try:
        left, right = window
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"window={window!r}: expected (left, right), None or -1 for an unbounded "
                                   "side", -3008) from None
    return (-1 if left is None else int(left)), (-1 if right is None else int(right))


def scaled_dot_product_attention(ctx: Any, query: Any, key: Any, value: Any, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False, *, causal_alignment: str = "top_left",
                                 key_lengths: Any = None, window: Optional[Sequence[Optional[int]]] = None,
                                 window_align: Optional[str] = None, softcap: Optional[float] = None, sinks: Any = None, alibi_slopes: Any = None,
                                 return_lse: bool = False, return_weights: bool = False, impl: str = "auto",
                                 dtype: Any = None, out: Any = None, score_mod: Optional[str] = None,
                                 mask_mod: Optional[str] = None, mod_buffers: Optional[Mapping[str, Any]] = None,
                                 block_mask: Any = None, block_size: Any = 128) -> Any:
    """softmax(query @ key^T * scale + mask) @ value, as torch.nn.functional.scaled_dot_product_attention.

    query [B, Hq, Lq, D], key [B, Hkv, Lk, D], value [B, Hkv, Lk, Dv] (fewer dimensions get leading ones); Hq a
    multiple of Hkv needs enable_gqa=True, as in PyTorch. Inputs are NumPy arrays, CPU torch tensors, DLPack or
    array-interface objects, pyopencl arrays (with a Context made on their queue), or DeviceTensors of this context.

    attn_mask: bool (True keeps a key) or float (added to the scaled scores), of any shape that broadcasts to
        [B, Hq, Lq, Lk] under NumPy's rules ([Lk], [Lq, Lk], [B, 1, 1, Lk], ...).
    is_causal: query i sees keys j <= i (causal_alignment="top_left", PyTorch's) or j <= i + Lk - Lq
    ("bottom_right", FlashAttention's). scale: None means 1/sqrt(D). key_lengths: int [B], keys past a row's
    length are masked. window: (left, right) sliding window around the aligned diagonal (None or -1: unbounded).
    window_align: where the window and ALiBi place query i among the keys: "top_left" (at i), "bottom_right" (at
    i + Lk - Lq, FlashAttention's, causal or not), or None (the default) as the causal mask does.
    impl: "auto", "fused" or "unfused". dtype: storage type of host inputs on the device ("f32", "f16", "bf16";
    default: the inputs' own, float64 as f32); arithmetic is always fp32. return_lse / return_weights: also return
    the row log-sum-exp [B, Hq, Lq] and the weights [B, Hq, Lq, Lk]. out: a float32 array or DeviceTensor
    [B, Hq, Lq, Dv] to write into (untouched when the call fails).

    Returns the output in the query's kind of array (torch in, torch out; NumPy otherwise; float32 unless the query
    is float16, bfloat16 or float64), or a DeviceTensor when query, key and value are DeviceTensors; with
    return_lse or return_weights, a tuple (out, lse?, weights?). softcap: logit softcap c, s = c tanh(s / c) on the
    scaled logit (Gemma 2). sinks: float [Hq], one logit per query head joining every row's softmax denominator
    (gpt-oss); lse includes it. alibi_slopes: float [Hq], -slope |i - j| added to the scaled logit (i aligned like
    the window). dropout_p must be 0.

    score_mod, mask_mod: FlexAttention's score and mask functions as OpenCL C expressions, compiled into the fused
    kernels: both see `b`, `h`, `q_idx`, `kv_idx` (ints) and the mod_buffers by name; score_mod also sees `score`
    (the scaled logit after softcap and ALiBi) and gives the new one, mask_mod gives nonzero where the key takes
    part ("kv_idx <= q_idx" is top-left causal). They act before the other masks, on the keys those leave in.
    mod_buffers: up to two {name: array}, float32 or int32 host arrays or f32 DeviceTensors, read as NAME[i]
    (indices must stay in range: the kernels do not check). They need the fused implementation: impl="unfused",
    return_weights and head dims past 576 raise UnsupportedError; an expression that does not compile raises
    BuildError with the compiler's log.

    block_mask: FlexAttention's block mask as an integer array broadcasting to [B, Hq, ceil(Lq / BQ),
    ceil(Lk / BK)] with block_size = BQ or (BQ, BK) (default 128): 0 excludes every key of a (query block, key
    block), and the kernels skip the tiles such blocks cover; 2 marks a full block, where mask_mod is not evaluated;
    other values leave the keys to mask_mod and the other masks. Fused only, as the mods.
    """
    h = ctx._live()
    if dropout_p:
        raise UnsupportedError(f"dropout_p={dropout_p}: clattn computes attention without dropout (inference); "
                               "pass 0", -3021)
    causal = _lib.CAUSAL_NONE
    if is_causal:
        if causal_alignment not in _ALIGN:
            raise InvalidArgumentError(f"causal_alignment={causal_alignment!r}: expected 'top_left' or "
                                       "'bottom_right'", -3000)
        causal = _ALIGN[causal_alignment]
    if impl not in _IMPL:
        raise InvalidArgumentError(f"impl={impl!r}: expected 'auto', 'fused' or 'unfused'", -3000)
    storage = parse_dtype(dtype, "dtype") if dtype is not None else None
    if storage == _lib.DTYPE_BOOL:
        raise make(-3007, "dtype='bool' is for masks; attention inputs are stored as f32, f16 or bf16")
    if storage in (_lib.DTYPE_I8, _lib.DTYPE_FP8_E4M3):
        raise make(-3007, f"dtype={dtype!r}: 8-bit keys and values need their scales: quantize them with "
                   "clattn.quantize_kv and call clattn.flash_attn_with_kvcache or flash_attn_varlen_func with "
                   "k_scale and v_scale")
    left, right = _window(window) if window is not None else (_lib.WINDOW_UNBOUNDED, _lib.WINDOW_UNBOUNDED)
    align = window_align_code(window_align)

    call = _Call(ctx)
    try:
        q, qh = call.tensor(query, "query", storage)
        k, _ = call.tensor(key, "key", storage)
        v, _ = call.tensor(value, "value", storage)
        b, hq, lq, _d = q.shape
        hkv = k.shape[1]
        if hq != hkv and not enable_gqa:
            raise ShapeError(f"query has {hq} heads and key {hkv}: pass enable_gqa=True for grouped-query "
                             "attention (as in PyTorch), or give key and value as many heads as query", -3005)
        desc = _lib.SdpaDesc.from_buffer_copy(_DEFAULT_DESC)
        if scale is not None:
            desc.scale = float(scale)
        desc.causal = causal
        desc.window_left, desc.window_right = left, right
        desc.window_align = align
        desc.impl = _IMPL[impl]
        if attn_mask is not None:
            desc.mask = mask_struct(call, attn_mask)
        if key_lengths is not None:
            desc.key_lengths = _key_lengths(call, key_lengths)
        if softcap is not None:
            desc.softcap = float(softcap)  # C validates it (> 0 and finite)
        if sinks is not None:
            desc.sinks = _per_head(call, sinks, "sinks", hq)
        if alibi_slopes is not None:
            desc.alibi_slopes = _per_head(call, alibi_slopes, "alibi_slopes", hq)
        mod_strings = set_mods(call, desc, score_mod, mask_mod, mod_buffers)  # desc points into these: kept to the end
        set_block_mask(call, desc, block_mask, block_size)
        out_shape = (b, hq, lq, v.shape[3])
        host_out = None
        cl_out = None
        if isinstance(out, DeviceTensor) or type(out).__module__ == "pyopencl.array":
            o, _ = call.tensor(out, "out", None)
            cl_out = out if not isinstance(out, DeviceTensor) else None
        elif out is None and type(query).__module__ == "pyopencl.array":
            import pyopencl.array  # a pyopencl query gets a pyopencl result on its queue
            cl_out = pyopencl.array.empty(query.queue, out_shape, np.float32)
            o, _ = call.tensor(cl_out, "out", None)
        else:
            if out is not None:
                host_out = out
                if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != out_shape or \
                        not out.flags.c_contiguous or not out.flags.writeable:
                    raise make(-3002, f"out: expected a writable C-contiguous float32 NumPy array of shape "
                               f"{out_shape}, got {type(out).__name__} "
                               f"{getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}")
            o = ctx.empty(out_shape, "f32")
            call.temps.append(o)
        lse = weights = None
        if return_lse:
            lse = ctx.empty((b, hq, lq, 1), "f32")
            call.temps.append(lse)
            desc.lse = lse._c
        if return_weights:
            weights = ctx.empty((b, hq, lq, k.shape[2]), "f32")
            call.temps.append(weights)
            desc.weights = weights._c
        st = lib.clattn_sdpa(h, ctypes.byref(desc), ctypes.byref(q._c), ctypes.byref(k._c), ctypes.byref(v._c),
                             ctypes.byref(o._c), None, 0, None, None)
        check(st, "clattn_sdpa", h)
        if qh is None and host_out is None:
            # Everything stays on the device: hand over the temporaries we return instead of freeing them.
            results: List[Any] = [cl_out if cl_out is not None else out if isinstance(out, DeviceTensor) else o]
            for extra in (lse, weights):
                if extra is not None:
                    results.append(extra)
            call.temps = [t for t in call.temps if all(t is not r for r in results)]
        else:
            if cl_out is not None or isinstance(out, DeviceTensor):
                results = [cl_out if cl_out is not None else out]  # the caller's device output, as given
            elif host_out is not None:
                host_out[...] = o.numpy()
                results = [host_out]
            else:
                results = [to_caller(o.numpy(), qh)]
            if lse is not None:
                results.append(_like(lse.numpy().reshape(b, hq, lq), qh))
            if weights is not None:
                results.append(_like(weights.numpy(), qh))
        return results[0] if len(results) == 1 else tuple(results)
    finally:
        if call.temps:
            call.free()


def _like(a: np.ndarray, qh: Any) -> Any:
    if qh is not None and qh.torch_dtype is not None:
        import torch
        return torch.from_numpy(a)
    return a
