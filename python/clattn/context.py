# SPDX-License-Identifier: Apache-2.0
"""Devices and contexts: clattn.devices() lists what OpenCL offers, clattn.Context owns one device (or joins a
pyopencl queue) and makes device tensors. A context may be used by one thread at a time, as in C."""
from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _lib, _opencl
from ._arrays import (DTYPE_NAME, ITEMSIZE, KV8_HOST_TYPE, HostArray, as_4d, float_values, host_array, parse_dtype,
                      strided_span)
from .attention import scaled_dot_product_attention as _sdpa
from .errors import ClosedError, DTypeError, check, make
from .tensor import DeviceTensor

lib = _lib.lib


@dataclass(frozen=True)
class Device:
    """One OpenCL device as clattn sees it (clattn_device_info)."""
    spec: str  # "P:D", a selection string that picks exactly this device
    name: str
    vendor: str
    platform_name: str
    type: str  # "gpu", "cpu", "accelerator" or "other"
    driver_version: str
    device_version: str
    compute_units: int
    global_mem_bytes: int
    max_alloc_bytes: int
    local_mem_bytes: int
    has_fp16: bool
    has_fp64: bool
    has_subgroups: bool
    compiler_available: bool
    is_default: bool


def _device(info: "_lib.DeviceInfo_") -> Device:
    def s(b: bytes) -> str:
        return b.decode("utf-8", "replace")
    return Device(spec=f"{info.platform_index}:{info.device_index}", name=s(info.name), vendor=s(info.vendor),
                  platform_name=s(info.platform_name), type=s(lib.clattn_device_type_name(info.type)),
                  driver_version=s(info.driver_version), device_version=s(info.device_version),
                  compute_units=info.compute_units, global_mem_bytes=info.global_mem_bytes,
                  max_alloc_bytes=info.max_alloc_bytes, local_mem_bytes=info.local_mem_bytes,
                  has_fp16=bool(info.has_fp16), has_fp64=bool(info.has_fp64),
                  has_subgroups=bool(info.has_subgroups), compiler_available=bool(info.compiler_available),
                  is_default=bool(info.is_default))


NO_PLATFORM_HELP = ("no OpenCL platform is installed. Install an OpenCL driver: on Debian or Ubuntu "
                    "`apt-get install ocl-icd-libopencl1 pocl-opencl-icd` gives one on the CPU (PoCL); for a GPU, "
                    "its vendor's OpenCL driver (NVIDIA's driver, ROCm, intel-opencl-icd). `clinfo` lists what the "
                    "ICD loader finds")


def devices() -> List[Device]:
    """Every OpenCL device of every platform, in platform and device order; `is_default` marks the one that
    Context() picks."""
    count = ctypes.c_size_t(0)
    msg = ctypes.create_string_buffer(512)
    st = lib.clattn_devices_list(None, 0, ctypes.byref(count), msg, len(msg))
    if st != 0:
        raise make(st, "clattn_devices_list failed", msg.value.decode())
    infos = (_lib.DeviceInfo_ * max(1, count.value))()
    st = lib.clattn_devices_list(infos, count.value, ctypes.byref(count), msg, len(msg))
    if st != 0:
        raise make(st, "clattn_devices_list failed", msg.value.decode())
    return [_device(infos[i]) for i in range(count.value)]


class Context:
    """A clattn context on one device.

    Context(device=None) picks the device as the C API does: None or "" uses CLATTN_DEVICE, else the first GPU,
    else an accelerator, else the CPU; "gpu", "cpu", "accelerator", "P:D" or part of a device or platform name
    pick one. Context(queue=pyopencl_queue) joins a pyopencl queue (its context, device and queue are used as they
    are). Use it as a context manager, or call close(); device tensors made by it are freed with it.
    """

    def __init__(self, device: Optional[str] = None, *, queue: Any = None, profiling: bool = False):
        self._handle = ctypes.c_void_p(None)
        self._tensors: "weakref.WeakSet[DeviceTensor]" = weakref.WeakSet()
        self._keep: List[Any] = []  # Python objects whose lifetime the C context relies on
        opts = _lib.ContextOptions()
        lib.clattn_context_options_init(ctypes.byref(opts))
        err = ctypes.create_string_buffer(1024)
        opts.error_message = ctypes.cast(err, ctypes.POINTER(ctypes.c_char))
        opts.error_message_size = len(err)
        opts.enable_profiling = int(profiling)
        if queue is not None:
            st = lib.clattn_context_create_from_cl(queue.context.int_ptr, queue.device.int_ptr, queue.int_ptr,
                                                   ctypes.byref(opts), ctypes.byref(self._handle))
            self._keep.append(queue)
            call = "clattn_context_create_from_cl"
        else:
            if device is not None and not isinstance(device, str):
                raise make(-3013, f"device={device!r}: expected a string such as 'gpu', 'cpu', '0:1' or part of a "
                           "device name (clattn.devices() lists them)")
            spec = (device or "").encode()
            opts.device = spec
            st = lib.clattn_context_create_with_options(ctypes.byref(opts), ctypes.byref(self._handle))
            call = f"clattn_context_create(device={device!r})"
        if st != 0:
            raise make(st, f"{call} failed", err.value.decode("utf-8", "replace"))
        self._queue = lib.clattn_context_cl_queue(self._handle)
        self._cl_context = lib.clattn_context_cl_context(self._handle)
        info = _lib.DeviceInfo_()
        check(lib.clattn_context_device_info(self._handle, ctypes.byref(info)), "clattn_context_device_info",
              self._handle.value)
        self.device: Device = _device(info)

    # ---- lifetime ----
    def _live(self) -> int:
        h = self._handle.value
        if not h:
            raise ClosedError("the clattn Context is closed: create a new one (clattn.Context()) or call this "
                              "inside its `with` block")
        return h

    @property
    def closed(self) -> bool:
        return not self._handle.value

    def close(self) -> None:
        """Frees the device tensors, layers and caches made on this context, then the context (idempotent)."""
        if not self._handle.value:
            return
        for obj in list(self._tensors):
            obj.free()
        lib.clattn_context_free(self._handle)
        self._handle = ctypes.c_void_p(None)
        self._keep.clear()

    def _track(self, obj: Any) -> None:
        self._tensors.add(obj)

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.device.name
        return f"clattn.Context({state})"

    @property
    def last_error(self) -> str:
        """The detailed message of the last failed call on this context ("" if none)."""
        return lib.clattn_context_last_error(self._live()).decode("utf-8", "replace")

    def cache_stats(self) -> Dict[str, int]:
        """The program caches' counters (clattn_context_cache_stats)."""
        s = _lib.CacheStats()
        check(lib.clattn_context_cache_stats(self._live(), ctypes.byref(s)), "clattn_context_cache_stats",
              self._handle.value)
        return {f[0]: getattr(s, f[0]) for f in s._fields_}

    def synchronize(self) -> None:
        """Waits until everything enqueued on the context's queue is done."""
        self._live()
        _opencl.finish(self._queue)

    scaled_dot_product_attention = _sdpa

    # ---- device tensors ----
    def empty(self, shape: Sequence[int], dtype: Any = "f32") -> DeviceTensor:
        """An uninitialised contiguous device tensor [B, H, L, D] (fewer dimensions get leading ones)."""
        self._live()
        code = parse_dtype(dtype)
        shape4 = (1,) * (4 - len(shape)) + tuple(int(n) for n in shape)
        if len(shape4) != 4 or any(n < 0 for n in shape4):
            raise make(-3002, f"shape {tuple(shape)}: expected up to 4 non-negative sizes")
        nbytes = int(np.prod(shape4)) * ITEMSIZE[code]
        mem = _opencl.create_buffer(self._cl_context, nbytes)
        return DeviceTensor(self, mem, code, shape4)

    def to_device(self, array: Any, dtype: Any = None) -> DeviceTensor:
        """Copies an array to the device, stored as `dtype` ("f32", "f16", "bf16", "bool"; default: the array's own
        where clattn stores it, else f32). Conversion rounds to nearest even as the device's storage does. A view
        with non-negative strides is uploaded as it lies and keeps its strides; others are made compact first.
        8-bit keys and values ("i8" from an int8 array, the default for one; "fp8" from a uint8 array of E4M3
        codes) are copied byte for byte: clattn.quantize_kv makes them and their scales."""
        self._live()
        return self._upload(host_array(array, "array"), dtype)

    def _upload(self, h: Any, dtype: Any, min_rank: int = 2) -> DeviceTensor:
        a = as_4d(h.array, "array", min_rank)
        want = parse_dtype(dtype) if dtype is not None else (h.dtype if h.dtype is not None else _lib.DTYPE_F32)
        if want == _lib.DTYPE_BOOL:
            if h.dtype != _lib.DTYPE_BOOL:
                raise DTypeError(f"to_device: dtype='bool' needs a bool array, not {h.array.dtype}", -3007)
            data = a
        elif want in KV8_HOST_TYPE:
            # 8-bit values mean nothing without their scales, so floats are never rounded to them here: the bytes
            # come from clattn.quantize_kv (or a serving engine's cache) and are moved as they are.
            if a.dtype != KV8_HOST_TYPE[want]:
                raise DTypeError(f"to_device: dtype={DTYPE_NAME[want]!r} takes the stored bytes, an "
                                 f"{KV8_HOST_TYPE[want]} array, not {a.dtype}; clattn.quantize_kv makes them (with "
                                 "their scales) from floats", -3007)
            data = a
        elif want == h.dtype:
            data = a
        else:
            f = float_values(HostArray(a, h.dtype), "array")
            if want == _lib.DTYPE_F32:
                data = f
            else:
                f = np.ascontiguousarray(f, dtype=np.float32)
                data = np.empty(f.shape, np.uint16)
                check(lib.clattn_dtype_pack(want, f.ctypes.data, data.ctypes.data, f.size), "clattn_dtype_pack")
        span = strided_span(data)
        if span is None:
            data = np.ascontiguousarray(data)
            span = strided_span(data)
        elements, strides = span  # type: ignore[misc]
        mem = _opencl.create_buffer(self._cl_context, elements * data.itemsize, data.ctypes.data)
        return DeviceTensor(self, mem, want, data.shape, strides)

