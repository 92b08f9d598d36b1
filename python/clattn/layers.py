# SPDX-License-Identifier: Apache-2.0
"""The attention layers of the C API: MultiHeadAttention (weights uploaded once), its KVCache for decoding step by
step, and seq2seq attention (additive and Luong). Activations are [batch, seq, width] arrays (or [seq, width]) or
DeviceTensors [batch, 1, seq, width]; weights multiply from the right (x @ W), the transpose of nn.Linear's."""
from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

import numpy as np

from . import _lib
from ._arrays import HostArray, host_array, to_caller
from .attention import _ALIGN, _IMPL, _Call, _key_lengths, _window, mask_struct, window_align_code
from .errors import ClosedError, InvalidArgumentError, ShapeError, UnsupportedError, check, make
from .tensor import DeviceTensor

lib = _lib.lib


def _f32(a: Any, name: str, shape: Optional[Tuple[int, ...]] = None) -> Optional[np.ndarray]:
    """A weight as a compact float32 array (None stays None), its shape checked."""
    if a is None:
        return None
    arr = np.ascontiguousarray(host_array(a, name).array, dtype=np.float32)
    if shape is not None and arr.shape != shape:
        raise ShapeError(f"{name}: shape {arr.shape}, expected {shape}", -3002)
    return arr


def _ptr(a: Optional[np.ndarray]) -> Any:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if a is not None else None


def _seq(call: _Call, x: Any, name: str) -> Tuple[DeviceTensor, Any]:
    """A sequence tensor [B, 1, L, width] from a DeviceTensor or a host [B, L, W] / [L, W] array."""
    if isinstance(x, DeviceTensor):
        return call.tensor(x, name, None)
    h = host_array(x, name)
    if h.array.ndim not in (2, 3):
        raise ShapeError(f"{name}: shape {tuple(h.array.shape)}; expected [batch, seq, width] or [seq, width]",
                         -3002)
    a = h.array if h.array.ndim == 3 else h.array[None]
    stored = h.dtype if h.dtype in (_lib.DTYPE_F32, _lib.DTYPE_F16, _lib.DTYPE_BF16) else _lib.DTYPE_F32
    t = call.ctx._upload(HostArray(a[:, None], h.dtype, h.torch_dtype), stored)
    call.temps.append(t)
    return t, h


def _result(call: _Call, o: DeviceTensor, xh: Any) -> Any:
    """The output as the caller's kind: a DeviceTensor when the input was one, else host ([B, L, W] or [L, W])."""
    if xh is None:
        call.temps = [t for t in call.temps if t is not o]
        return o
    host = o.numpy()[:, 0]
    if xh.array.ndim == 2:
        host = host[0]
    return to_caller(np.ascontiguousarray(host), xh)


class _Owned:
    """A C object that belongs to a context: freed with it, or by close()."""
    _free_fn: Any = None

    def __init__(self, ctx: Any):
        self._ctx = ctx
        self._handle = ctypes.c_void_p(None)

    def _live(self) -> int:
        self._ctx._live()
        if not self._handle.value:
            raise ClosedError(f"the {type(self).__name__} was closed (or its context was)")
        return self._handle.value

    def free(self) -> None:
        if self._handle.value:
            type(self)._free_fn(self._handle)
            self._handle = ctypes.c_void_p(None)

    close = free

    def __del__(self) -> None:
        try:
            if not self._ctx.closed:
                self.free()
        except Exception:
            pass


class MultiHeadAttention(_Owned):
    """Multi-head attention with its weights on the device (clattn_mha):
    out = [x +] concat_h(attention(x W_q + b_q, m W_k + b_k, m W_v + b_v)) W_o + b_o, m being x or a memory.

    Weights multiply from the right: w_qkv [d_model, H*d_k + 2*Hkv*d_k...] (columns Q | K | V), or w_q, w_k, w_v;
    w_o [H*d_v, d_model]. Biases are optional. from_torch() takes an nn.MultiheadAttention."""
    _free_fn = lib.clattn_mha_weights_free

    def __init__(self, ctx: Any, d_model: int, heads: int, *, kv_heads: int = 0, head_dim: int = 0,
                 v_head_dim: int = 0, kv_d_model: int = 0, w_qkv: Any = None, b_qkv: Any = None, w_q: Any = None,
                 w_k: Any = None, w_v: Any = None, b_q: Any = None, b_k: Any = None, b_v: Any = None,
                 w_o: Any = None, b_o: Any = None):
        super().__init__(ctx)
        if heads <= 0 or d_model <= 0:
            raise ShapeError(f"d_model={d_model}, heads={heads}: both must be positive", -3002)
        head_dim = head_dim or d_model // heads
        cfg = _lib.MhaConfig(d_model, kv_d_model, heads, kv_heads, head_dim, v_head_dim)
        self._arrays = {n: _f32(a, n) for n, a in dict(w_qkv=w_qkv, b_qkv=b_qkv, w_q=w_q, w_k=w_k, w_v=w_v,
                                                         b_q=b_q, b_k=b_k, b_v=b_v, w_o=w_o, b_o=b_o).items()}
        host = _lib.MhaWeightsHost()
        lib.clattn_mha_weights_host_init(ctypes.byref(host))
        for n, a in self._arrays.items():
            setattr(host, n, _ptr(a))
        h = ctx._live()
        check(lib.clattn_mha_weights_create(h, ctypes.byref(cfg), ctypes.byref(host), ctypes.byref(self._handle)),
              "clattn_mha_weights_create", h)
        self._arrays = {}  # uploaded: the host copies are no longer needed
        resolved = _lib.MhaConfig()
        check(lib.clattn_mha_weights_config(self._handle, ctypes.byref(resolved)), "clattn_mha_weights_config", h)
        self.config = {f[0]: getattr(resolved, f[0]) for f in resolved._fields_}
        ctx._track(self)

    @classmethod
    def from_torch(cls, module: Any, context: Any = None) -> "MultiHeadAttention":
        """The layer of a torch.nn.MultiheadAttention (its in/out projections transposed to x @ W) on `context`
        (default: clattn.default_context()). Inputs of the result are batch-first [B, L, E] whatever the module's
        batch_first; dropout does not apply (inference)."""
        if context is None:
            from . import default_context
            context = default_context()
        ctx = context
        if getattr(module, "bias_k", None) is not None or getattr(module, "add_zero_attn", False):
            raise UnsupportedError("nn.MultiheadAttention with add_bias_kv or add_zero_attn is not supported by "
                                   "clattn's multi-head attention", -3021)
        e, heads = module.embed_dim, module.num_heads

        def t(p: Any) -> np.ndarray:
            return p.detach().cpu().float().numpy()

        def opt(p: Any) -> Optional[np.ndarray]:
            return None if p is None else t(p)
        b_in = opt(module.in_proj_bias)
        w_o, b_o = t(module.out_proj.weight).T, opt(module.out_proj.bias)
        if module.kdim != e or module.vdim != e:
            raise UnsupportedError(f"nn.MultiheadAttention with kdim={module.kdim} / vdim={module.vdim} different "
                                   f"from embed_dim={e}: clattn's layer takes one memory width for keys and values",
                                   -3021)
        if module.in_proj_weight is not None:
            return cls(ctx, e, heads, w_qkv=t(module.in_proj_weight).T, b_qkv=b_in, w_o=w_o, b_o=b_o)
        bq, bk, bv = (None, None, None) if b_in is None else np.split(b_in, 3)
        return cls(ctx, e, heads, w_q=t(module.q_proj_weight).T, w_k=t(module.k_proj_weight).T,
                   w_v=t(module.v_proj_weight).T, b_q=bq, b_k=bk, b_v=bv, w_o=w_o, b_o=b_o)

    def __call__(self, x: Any, memory: Any = None, *, attn_mask: Any = None, is_causal: bool = False,
                 causal_alignment: str = "top_left", key_lengths: Any = None, window: Any = None,
                 window_align: Optional[str] = None, scale: Optional[float] = None, residual: bool = False, cache: Optional["KVCache"] = None,
                 cache_mode: str = "append", impl: str = "auto") -> Any:
        """The layer on x [B, Lq, d_model] (self-attention) or with memory [B, Lk, kv_d_model] (cross). With a
        cache, cache_mode="append" adds this call's keys and values to it (use causal_alignment="bottom_right"
        with is_causal), "read" attends over it as it is. window_align as for scaled_dot_product_attention. Returns [B, Lq, d_model] as x's kind of array."""
        self._live()
        h = self._ctx._live()
        call = _Call(self._ctx)
        try:
            xt, xh = _seq(call, x, "x")
            mt = _seq(call, memory, "memory")[0] if memory is not None else None
            desc = _lib.MhaDesc()
            lib.clattn_mha_desc_init(ctypes.byref(desc))
            a = desc.attention
            if scale is not None:
                a.scale = float(scale)
            if is_causal:
                if causal_alignment not in _ALIGN:
                    raise InvalidArgumentError(f"causal_alignment={causal_alignment!r}: expected 'top_left' or "
                                               "'bottom_right'", -3000)
                a.causal = _ALIGN[causal_alignment]
            a.window_left, a.window_right = _window(window)
            a.window_align = window_align_code(window_align)
            if impl not in _IMPL:
                raise InvalidArgumentError(f"impl={impl!r}: expected 'auto', 'fused' or 'unfused'", -3000)
            a.impl = _IMPL[impl]
            if attn_mask is not None:
                a.mask = mask_struct(call, attn_mask)
            if key_lengths is not None:
                a.key_lengths, a.key_lengths_offset = _key_lengths(call, key_lengths), 0
            desc.residual = int(bool(residual))
            if cache is not None:
                if not isinstance(cache, KVCache):
                    raise InvalidArgumentError("cache: expected a clattn.KVCache", -3000)
                desc.cache = cache._live()
                if cache_mode not in ("append", "read"):
                    raise InvalidArgumentError(f"cache_mode={cache_mode!r}: expected 'append' or 'read'", -3000)
                desc.cache_mode = 0 if cache_mode == "append" else 1
            o = self._ctx.empty((xt.shape[0], 1, xt.shape[2], self.config["d_model"]), "f32")
            call.temps.append(o)
            check(lib.clattn_mha(h, self._handle, ctypes.byref(desc), ctypes.byref(xt._c),
                                 ctypes.byref(mt._c) if mt is not None else None, ctypes.byref(o._c), None, 0, None,
                                 None), "clattn_mha", h)
            return _result(call, o, xh)
        finally:
            call.free()


class KVCache(_Owned):
    """The keys and values of one MultiHeadAttention layer for up to `capacity` positions of `batch` sequences
    (clattn_kv_cache), filled by the layer's calls with cache=this."""
    _free_fn = lib.clattn_kv_cache_free

    def __init__(self, ctx: Any, layer: MultiHeadAttention, batch: int, capacity: int):
        super().__init__(ctx)
        h = ctx._live()
        cfg = _lib.MhaConfig(**layer.config)
        check(lib.clattn_kv_cache_create(h, ctypes.byref(cfg), batch, capacity, ctypes.byref(self._handle)),
              "clattn_kv_cache_create", h)
        ctx._track(self)

    def __len__(self) -> int:
        return int(lib.clattn_kv_cache_length(self._live()))

    @property
    def capacity(self) -> int:
        return int(lib.clattn_kv_cache_capacity(self._live()))

    def reset(self) -> None:
        """Forgets every cached token (keeps the memory)."""
        lib.clattn_kv_cache_reset(self._live())

    def truncate(self, length: int) -> None:
        """Keeps the first `length` tokens (at most the current length)."""
        h = self._live()
        if length < 0:
            raise InvalidArgumentError(f"truncate({length}): the length must be non-negative", -3000)
        check(lib.clattn_kv_cache_truncate(h, length), "clattn_kv_cache_truncate", self._ctx._handle.value)

    def tensors(self) -> Tuple[DeviceTensor, DeviceTensor]:
        """Views of the cached keys [B, Hkv, length, d_k] and values [B, Hkv, length, d_v] (valid while the cache
        lives), e.g. for scaled_dot_product_attention or .numpy()."""
        h = self._live()
        k, v = _lib.Tensor_(), _lib.Tensor_()
        check(lib.clattn_kv_cache_tensors(h, ctypes.byref(k), ctypes.byref(v)), "clattn_kv_cache_tensors",
              self._ctx._handle.value)
        return tuple(DeviceTensor(self._ctx, t.buffer, t.dtype, list(t.size), list(t.stride), t.offset,  # type: ignore
                                  owner=False) for t in (k, v))


_SCORES = {"additive": 0, "bahdanau": 0, "dot": 1, "general": 2, "concat": 3}


class Seq2SeqAttention(_Owned):
    """Seq2seq attention with its weights on the device: score "additive" (Bahdanau: needs w_q [query_dim,
    attn_dim], w_k [key_dim, attn_dim], v [attn_dim], bias optional), "dot", "general" (w [query_dim, key_dim]) or
    "concat" (w [query_dim + key_dim, attn_dim], v [attn_dim])."""
    _free_fn = lib.clattn_seq2seq_weights_free

    def __init__(self, ctx: Any, score: str, query_dim: int, key_dim: int, *, w_q: Any = None, w_k: Any = None,
                 w: Any = None, v: Any = None, bias: Any = None):
        super().__init__(ctx)
        if score not in _SCORES:
            raise InvalidArgumentError(f"score={score!r}: expected 'additive', 'dot', 'general' or 'concat'",
                                       -3000)
        arrays = {n: _f32(a, n) for n, a in dict(w_q=w_q, w_k=w_k, w=w, v=v, bias=bias).items()}
        attn_dim = 0
        if arrays["v"] is not None:
            attn_dim = arrays["v"].size
        cfg = _lib.Seq2seqConfig(_SCORES[score], query_dim, key_dim, attn_dim)
        host = _lib.Seq2seqWeightsHost(*(_ptr(arrays[n]) for n in ("w_q", "w_k", "w", "v", "bias")))
        h = ctx._live()
        check(lib.clattn_seq2seq_weights_create(h, ctypes.byref(cfg), ctypes.byref(host),
                                                ctypes.byref(self._handle)), "clattn_seq2seq_weights_create", h)
        self.score = score
        ctx._track(self)

    def __call__(self, query: Any, keys: Any, values: Any = None, *, attn_mask: Any = None,
                 key_lengths: Any = None, return_weights: bool = False) -> Any:
        """context [B, Lq, value_dim] for query [B, Lq, query_dim] over keys [B, Lk, key_dim] (values default to
        the keys); with return_weights, (context, weights [B, Lq, Lk])."""
        self._live()
        h = self._ctx._live()
        call = _Call(self._ctx)
        try:
            qt, qh = _seq(call, query, "query")
            kt = _seq(call, keys, "keys")[0]
            vt = _seq(call, values, "values")[0] if values is not None else None
            desc = _lib.Seq2seqDesc()
            lib.clattn_seq2seq_desc_init(ctypes.byref(desc))
            if attn_mask is not None:
                desc.mask = mask_struct(call, attn_mask)
            if key_lengths is not None:
                desc.key_lengths = _key_lengths(call, key_lengths)
            width = (vt or kt).shape[3]
            o = self._ctx.empty((qt.shape[0], 1, qt.shape[2], width), "f32")
            call.temps.append(o)
            w = None
            if return_weights:
                w = self._ctx.empty((qt.shape[0], 1, qt.shape[2], kt.shape[2]), "f32")
                call.temps.append(w)
                desc.weights = w._c
            check(lib.clattn_seq2seq_attention(h, self._handle, ctypes.byref(desc), ctypes.byref(qt._c),
                                               ctypes.byref(kt._c), ctypes.byref(vt._c) if vt is not None else None,
                                               ctypes.byref(o._c), None, 0, None, None),
                  "clattn_seq2seq_attention", h)
            ctx_out = _result(call, o, qh)
            if w is None:
                return ctx_out
            return ctx_out, _result(call, w, qh)
        finally:
            call.free()


def seq2seq_attention(query: Any, keys: Any, values: Any = None, *, score: str = "additive", context: Any = None,
                      w_q: Any = None, w_k: Any = None, w: Any = None, v: Any = None, bias: Any = None,
                      attn_mask: Any = None, key_lengths: Any = None, return_weights: bool = False) -> Any:
    """One seq2seq attention call (additive/Bahdanau or Luong dot/general/concat); the weights are uploaded for
    this call (keep a Seq2SeqAttention to upload them once). `context` defaults to clattn.default_context()."""
    if context is None:
        from . import default_context
        context = default_context()
    q = host_array(query, "query").array if not isinstance(query, DeviceTensor) else None
    k = host_array(keys, "keys").array if not isinstance(keys, DeviceTensor) else None
    qd = query.shape[3] if q is None else q.shape[-1]
    kd = keys.shape[3] if k is None else k.shape[-1]
    layer = Seq2SeqAttention(context, score, qd, kd, w_q=w_q, w_k=w_k, w=w, v=v, bias=bias)
    try:
        return layer(query, keys, values, attn_mask=attn_mask, key_lengths=key_lengths,
                     return_weights=return_weights)
    finally:
        layer.free()
