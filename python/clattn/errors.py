# SPDX-License-Identifier: Apache-2.0
"""clattn's exceptions: one class per family of C status codes, each carrying the status, its name
(clattn_status_string) and the context's last-error text (clattn_context_last_error), which says what failed and
what to do. Errors the package finds before calling C carry the status C would give for the same mistake."""
from __future__ import annotations

from typing import Optional

from ._lib import lib, status_string


class Error(Exception):
    """Base of every clattn error. `status` is the C status code (None for a closed object), `status_name` its
    clattn_status_string, `detail` the last-error message."""

    def __init__(self, message: str, status: Optional[int] = None, detail: str = ""):
        self.status = status
        self.status_name = status_string(status) if status is not None else ""
        self.detail = detail
        text = message
        if status is not None:
            text += f" [{self.status_name}]"
        if detail and detail not in message:
            text += f": {detail}"
        super().__init__(text)


class InvalidArgumentError(Error, ValueError):
    """An argument that is wrong: a NULL, a bad value, a bad device spec (CLATTN_ERROR_INVALID_ARGUMENT,
    NULL_POINTER, INVALID_DEVICE_SPEC)."""


class ShapeError(InvalidArgumentError):
    """Sizes, strides, heads or head dims that do not fit together, or a buffer too small for them."""


class DTypeError(InvalidArgumentError, TypeError):
    """An element type that is unknown or not accepted there (CLATTN_ERROR_INVALID_DTYPE)."""


class MaskError(InvalidArgumentError):
    """A mask of a shape, type or window that cannot be used (CLATTN_ERROR_INVALID_MASK)."""


class DeviceError(Error, RuntimeError):
    """No OpenCL platform, or no device that matches the selection."""


class BuildError(Error, RuntimeError):
    """A kernel failed to compile or load (the build log is in `detail`)."""


class FileError(Error, OSError):
    """Reading or writing a file failed, or a file is malformed."""


class UnsupportedError(Error, NotImplementedError):
    """Valid, but not supported on this device, by this build, or by clattn yet."""


class ResourceError(Error, MemoryError):
    """Out of host memory, a full KV cache, or a problem past the device's limits."""


class OpenCLError(Error, RuntimeError):
    """An OpenCL call failed (OpenCL's own negative codes), or CLBlast did."""


class InternalError(Error, RuntimeError):
    """A bug in clattn: please report it with the message."""


class ClosedError(Error, RuntimeError):
    """The context (or an object of it) was closed."""


_FAMILIES = {
    -3000: InvalidArgumentError, -3001: InvalidArgumentError, -3013: InvalidArgumentError,
    -3025: InvalidArgumentError, -3026: InvalidArgumentError, -3027: InvalidArgumentError,
    -3028: InvalidArgumentError,
    -3002: ShapeError, -3003: ShapeError, -3004: ShapeError, -3005: ShapeError, -3006: ShapeError,
    -3009: ShapeError,
    -3007: DTypeError,
    -3008: MaskError,
    -3011: DeviceError, -3012: DeviceError,
    -3014: BuildError, -3015: BuildError, -3016: BuildError, -3017: BuildError,
    -3018: FileError, -3019: FileError,
    -3021: UnsupportedError,
    -3010: ResourceError, -3022: ResourceError, -3024: ResourceError,
    -3020: OpenCLError,
    -3023: InternalError,
}


def error_class(status: int) -> type:
    if status in _FAMILIES:
        return _FAMILIES[status]
    if -3000 < status < 0:
        return OpenCLError
    return InternalError


def make(status: int, message: str, detail: str = "") -> Error:
    return error_class(status)(message, status, detail)


def check(status: int, call: str, context_handle: Optional[int] = None) -> None:
    """Raises the exception of `status` for a failed C call, with the context's last error."""
    if status == 0:
        return
    detail = ""
    if context_handle:
        detail = (lib.clattn_context_last_error(context_handle) or b"").decode("utf-8", "replace")
    raise make(status, f"{call} failed", detail)
