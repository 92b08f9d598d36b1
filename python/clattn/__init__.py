# SPDX-License-Identifier: Apache-2.0
"""clattn: attention on any OpenCL device, from Python.

    import clattn
    with clattn.Context() as ctx:                       # default device (CLATTN_DEVICE, else GPU, else CPU)
        out = ctx.scaled_dot_product_attention(q, k, v, is_causal=True)

Names follow torch.nn.functional.scaled_dot_product_attention; serving engines get FlashAttention's
flash_attn_varlen_func and flash_attn_with_kvcache (packed batches, paged and 8-bit KV caches). Hugging Face models: clattn.transformers.register()
then attn_implementation="clattn". Bindings are ctypes over the public C API (clattn.h, clattn_advanced.h)."""
from __future__ import annotations

import ctypes as _ctypes

from . import _lib
from .context import NO_PLATFORM_HELP as _NO_PLATFORM_HELP

_count = _ctypes.c_size_t(0)
_msg = _ctypes.create_string_buffer(512)
if _lib.lib.clattn_devices_list(None, 0, _ctypes.byref(_count), _msg, len(_msg)) == _lib.ERROR_NO_PLATFORM:
    raise ImportError(f"clattn: {_NO_PLATFORM_HELP} ({_msg.value.decode('utf-8', 'replace')})")

from .attention import scaled_dot_product_attention as _sdpa  # noqa: E402
from .context import Context, Device, devices  # noqa: E402
from .errors import (BuildError, ClosedError, DeviceError, DTypeError, Error, FileError,  # noqa: E402
                     InternalError, InvalidArgumentError, MaskError, OpenCLError, ResourceError, ShapeError,
                     UnsupportedError)
from .layers import KVCache, MultiHeadAttention, Seq2SeqAttention, seq2seq_attention  # noqa: E402
from .serving import flash_attn_varlen_func, flash_attn_with_kvcache, kv_append, quantize_kv  # noqa: E402
from .tensor import DeviceTensor  # noqa: E402
from .tuning import tune, tuning_lookup  # noqa: E402

__version__ = _lib.lib.clattn_version_string().decode()
version = __version__

_default_context = None


def default_context() -> Context:
    """A process-wide Context on the default device, created on first use (for the module-level functions)."""
    global _default_context
    if _default_context is None or _default_context.closed:
        _default_context = Context()
    return _default_context


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, **options):  # type: ignore[no-untyped-def]
    """Context.scaled_dot_product_attention on default_context(); see there for the arguments."""
    return _sdpa(default_context(), query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                 **options)


__all__ = [
    "BuildError", "ClosedError", "Context", "Device", "DeviceError", "DeviceTensor", "DTypeError", "Error",
    "FileError", "InternalError", "InvalidArgumentError", "KVCache", "MaskError", "MultiHeadAttention",
    "OpenCLError", "ResourceError", "Seq2SeqAttention", "ShapeError", "UnsupportedError", "default_context",
    "devices", "flash_attn_varlen_func", "flash_attn_with_kvcache", "kv_append", "quantize_kv",
    "scaled_dot_product_attention",
    "seq2seq_attention", "tune", "tuning_lookup", "version",
]
