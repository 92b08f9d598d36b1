# SPDX-License-Identifier: Apache-2.0
"""Host arrays in, host arrays out: NumPy arrays, CPU torch tensors (through DLPack, without a copy) and anything
with the array interface become NumPy views with a clattn dtype; results go back as the caller's kind of array."""
from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

import numpy as np

from . import _lib
from .errors import DTypeError, InvalidArgumentError, ShapeError

_DTYPE_NAMES = {"f32": _lib.DTYPE_F32, "float32": _lib.DTYPE_F32, "f16": _lib.DTYPE_F16, "float16": _lib.DTYPE_F16,
                "half": _lib.DTYPE_F16, "bf16": _lib.DTYPE_BF16, "bfloat16": _lib.DTYPE_BF16,
                "bool": _lib.DTYPE_BOOL, "i8": _lib.DTYPE_I8, "int8": _lib.DTYPE_I8, "fp8": _lib.DTYPE_FP8_E4M3,
                "fp8_e4m3": _lib.DTYPE_FP8_E4M3, "float8_e4m3fn": _lib.DTYPE_FP8_E4M3}
DTYPE_NAME = {_lib.DTYPE_F32: "f32", _lib.DTYPE_F16: "f16", _lib.DTYPE_BF16: "bf16", _lib.DTYPE_BOOL: "bool",
              _lib.DTYPE_I8: "i8", _lib.DTYPE_FP8_E4M3: "fp8"}
ITEMSIZE = {_lib.DTYPE_F32: 4, _lib.DTYPE_F16: 2, _lib.DTYPE_BF16: 2, _lib.DTYPE_BOOL: 1, _lib.DTYPE_I8: 1,
            _lib.DTYPE_FP8_E4M3: 1}
# 8-bit keys and values are bytes as stored: int8 for I8, uint8 holding the E4M3 codes for FP8 (NumPy has no fp8).
KV8_HOST_TYPE = {_lib.DTYPE_I8: np.dtype(np.int8), _lib.DTYPE_FP8_E4M3: np.dtype(np.uint8)}


def parse_dtype(dtype: Any, what: str = "dtype") -> int:
    """A clattn dtype code from "f32"/"f16"/"bf16"/"bool"/"i8"/"fp8", a NumPy dtype or a torch dtype."""
    if isinstance(dtype, int) and dtype in DTYPE_NAME:
        return dtype
    text = str(dtype).replace("torch.", "").lower()
    if text in _DTYPE_NAMES:
        return _DTYPE_NAMES[text]
    try:
        return {np.dtype(np.float32): _lib.DTYPE_F32, np.dtype(np.float16): _lib.DTYPE_F16,
                np.dtype(np.bool_): _lib.DTYPE_BOOL, np.dtype(np.int8): _lib.DTYPE_I8}[np.dtype(dtype)]
    except (TypeError, KeyError):
        raise DTypeError(f"{what}={dtype!r}: expected 'f32', 'f16', 'bf16' ('bool' for masks, 'i8' or 'fp8' for "
                         "quantized keys and values)", -3007) from None


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class HostArray:
    """A NumPy view of a caller's array: `array` holds the elements as stored (bf16 as uint16 bits), `dtype` is
    clattn's code for them (None for types clattn does not store, such as float64 or int32)."""

    __slots__ = ("array", "dtype", "torch_dtype")

    def __init__(self, array: np.ndarray, dtype: Optional[int], torch_dtype: Any = None):
        self.array = array
        self.dtype = dtype
        self.torch_dtype = torch_dtype


def host_array(x: Any, name: str) -> HostArray:
    """Views `x` as NumPy without copying where its kind allows it."""
    torch_dtype = None
    if is_torch(x):
        import torch
        if x.device.type != "cpu":
            raise InvalidArgumentError(f"{name}: a torch tensor on {x.device}; clattn reads host memory or its own "
                                       "device tensors: pass x.cpu(), or use Context.to_device", -3000)
        x = x.detach()
        torch_dtype = x.dtype
        if x.dtype == torch.bfloat16:
            # NumPy has no bfloat16: the same bits as uint16, stored on the device as BF16.
            return HostArray(np.from_dlpack(x.view(torch.int16)).view(np.uint16), _lib.DTYPE_BF16, torch_dtype)
        a = np.from_dlpack(x)
    elif isinstance(x, np.ndarray):
        a = x
    elif hasattr(x, "__array_interface__") or hasattr(x, "__array__"):
        a = np.asarray(x)
    elif hasattr(x, "__dlpack__"):
        a = np.from_dlpack(x)
    elif isinstance(x, (list, tuple, float, int)):
        a = np.asarray(x)
    else:
        raise InvalidArgumentError(f"{name}: {type(x).__name__} is not an array: pass a NumPy array, a CPU torch "
                                   "tensor, a DLPack or array-interface object, or a clattn DeviceTensor", -3000)
    # int8 is what clattn stores I8 keys and values as; uint8 stays unnamed, since its bytes could be fp8 codes or
    # plain integers (the caller says which: dtype="fp8").
    code = {np.dtype(np.float32): _lib.DTYPE_F32, np.dtype(np.float16): _lib.DTYPE_F16,
            np.dtype(np.bool_): _lib.DTYPE_BOOL, np.dtype(np.int8): _lib.DTYPE_I8}.get(a.dtype)
    return HostArray(a, code, torch_dtype)


def as_4d(a: np.ndarray, name: str, min_rank: int = 2) -> np.ndarray:
    """[B, H, L, D] from up to four dimensions (missing leading ones are 1, as PyTorch's batch dims broadcast).
    Masks may have a single dimension ([Lk]); other tensors need at least [seq, dim]."""
    if a.ndim > 4:
        raise ShapeError(f"{name}: {a.ndim} dimensions {tuple(a.shape)}; clattn takes at most 4 "
                         "([batch, heads, seq, dim]): merge the leading dimensions into the batch", -3002)
    if a.ndim < min_rank:
        raise ShapeError(f"{name}: {a.ndim} dimensions {tuple(a.shape)}; expected [batch, heads, seq, dim] "
                         "(at least [seq, dim])", -3002)
    return a.reshape((1,) * (4 - a.ndim) + a.shape) if a.ndim < 4 else a


def float_values(h: HostArray, name: str) -> np.ndarray:
    """The elements as float32 (a copy unless they are float32 already)."""
    a = h.array
    if h.dtype == _lib.DTYPE_F32:
        return a
    if h.dtype == _lib.DTYPE_BF16:
        return (np.ascontiguousarray(a).astype(np.uint32) << 16).view(np.float32)
    if a.dtype.kind != "f":
        raise DTypeError(f"{name}: dtype {a.dtype}; clattn takes floating-point values (float32, float16, "
                         "bfloat16, or float64 converted to float32) and bool masks", -3007)
    return a.astype(np.float32)


def strided_span(a: np.ndarray) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """(elements spanned from the first element, strides in elements) when the view can be uploaded as it lies
    and described by clattn strides: non-negative, whole-element strides spanning at most twice its elements
    (else a compact copy moves fewer bytes). None otherwise."""
    item = a.itemsize
    if a.size == 0:
        return 0, (0,) * a.ndim
    strides = []
    span = 1
    for n, s in zip(a.shape, a.strides):
        if s < 0 or s % item:
            return None
        strides.append(s // item if n > 1 else 0)
        span += (n - 1) * (s // item)
    if span > 2 * a.size + 64:
        return None
    return span, tuple(strides)


def to_caller(result: np.ndarray, like: HostArray) -> Any:
    """`result` (float32) as the caller's kind of array and dtype: torch when `like` came from torch."""
    if like.torch_dtype is not None:
        import torch
        t = torch.from_numpy(result)
        return t if t.dtype == like.torch_dtype or not like.torch_dtype.is_floating_point else t.to(like.torch_dtype)
    if like.array.dtype in (np.float16, np.float64):
        return result.astype(like.array.dtype)
    return result


def address(a: np.ndarray) -> int:
    return a.ctypes.data


def c_float_ptr(a: Optional[np.ndarray]) -> Any:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if a is not None else None
