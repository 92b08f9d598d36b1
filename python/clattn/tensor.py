# SPDX-License-Identifier: Apache-2.0
"""DeviceTensor: a tensor that lives in a device buffer of a context, so that repeated calls copy nothing. It
describes its buffer exactly as clattn_tensor does (offset, dtype, four sizes and four strides, in elements)."""
from __future__ import annotations

import ctypes
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _lib, _opencl
from ._arrays import DTYPE_NAME, ITEMSIZE
from .errors import ClosedError, check


class DeviceTensor:
    """A 4-D view [batch, heads, seq, dim] of a device buffer. Made by Context.to_device, Context.empty, or returned
    by calls on device tensors; `.numpy()` copies it back. Freed with `.free()` or when collected (before its
    context is closed, or with it)."""

    __slots__ = ("_ctx", "_mem", "_owner", "dtype", "shape", "strides", "offset", "_c", "__weakref__")

    def __init__(self, ctx: Any, mem: int, dtype: int, shape: Sequence[int], strides: Optional[Sequence[int]] = None,
                 offset: int = 0, owner: bool = True):
        self._ctx = ctx
        self._mem = mem
        self._owner = owner
        self.dtype = dtype
        self.shape: Tuple[int, int, int, int] = tuple(int(n) for n in shape)  # type: ignore[assignment]
        if strides is None:
            b, h, s, d = self.shape
            strides = (h * s * d, s * d, d, 1)
        self.strides: Tuple[int, int, int, int] = tuple(int(n) for n in strides)  # type: ignore[assignment]
        self.offset = int(offset)
        self._c = _lib.Tensor_(mem, self.offset, dtype, (ctypes.c_size_t * 4)(*self.shape),
                               (ctypes.c_size_t * 4)(*self.strides))
        if owner:
            ctx._track(self)

    @property
    def dtype_name(self) -> str:
        """"f32", "f16", "bf16", "bool", "i8" or "fp8"."""
        return DTYPE_NAME[self.dtype]

    @property
    def cl_mem(self) -> int:
        """The OpenCL buffer (cl_mem) as an integer handle."""
        self._live()
        return self._mem

    def _live(self) -> None:
        if not self._mem:
            raise ClosedError("the DeviceTensor was freed (or its context closed)")

    def _struct(self) -> "_lib.Tensor_":
        if not self._mem:
            self._live()
        return self._c

    def is_contiguous(self) -> bool:
        b, h, s, d = self.shape
        return self.strides == (h * s * d, s * d, d, 1)

    def numpy(self) -> np.ndarray:
        """A host copy: float32 for f32 and bf16 tensors, float16 for f16, bool for bool, the stored bytes for i8
        (int8) and fp8 (uint8 E4M3 codes) (blocks until done)."""
        self._live()
        ctx = self._ctx
        ctx._live()
        span = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides)) if all(self.shape) else 0
        item = ITEMSIZE[self.dtype]
        raw = np.empty(span * item, np.uint8)
        _opencl.read(ctx._queue, self._mem, self.offset * item, span * item, raw.ctypes.data)
        host_type = {_lib.DTYPE_F32: np.float32, _lib.DTYPE_F16: np.float16, _lib.DTYPE_BF16: np.uint16,
                     _lib.DTYPE_BOOL: np.bool_, _lib.DTYPE_I8: np.int8, _lib.DTYPE_FP8_E4M3: np.uint8}[self.dtype]
        flat: np.ndarray = raw.view(host_type)
        view = np.lib.stride_tricks.as_strided(flat, self.shape, tuple(s * item for s in self.strides)) if span \
            else np.empty(self.shape, host_type)
        out = np.ascontiguousarray(view)
        if self.dtype == _lib.DTYPE_BF16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out

    def free(self) -> None:
        """Releases the buffer now (idempotent)."""
        if self._mem and self._owner:
            _opencl.release(self._mem)
        self._mem = 0
        self._c.buffer = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={self.shape}, dtype={self.dtype_name}, strides={self.strides})"
