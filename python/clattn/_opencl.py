# SPDX-License-Identifier: Apache-2.0
"""The few OpenCL calls the package makes itself: device buffers for tensors, their uploads and downloads on the
context's queue. clattn's API takes cl_mem buffers; it does not allocate the caller's, so neither do we through it."""
from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, c_int32, c_size_t, c_uint, c_uint64, c_void_p

CL_MEM_READ_WRITE = 1 << 0
CL_MEM_COPY_HOST_PTR = 1 << 5
CL_MEM_SIZE = 0x1102
CL_TRUE = 1


def _load() -> ctypes.CDLL:
    for name in ("libOpenCL.so.1", ctypes.util.find_library("OpenCL") or "libOpenCL.so"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise ImportError("clattn: the OpenCL ICD loader (libOpenCL.so.1) is not installed; install it and a platform "
                      "(Debian: apt-get install ocl-icd-libopencl1 pocl-opencl-icd for the CPU, or your GPU "
                      "vendor's OpenCL driver)")


cl = _load()
cl.clCreateBuffer.restype = c_void_p
cl.clCreateBuffer.argtypes = [c_void_p, c_uint64, c_size_t, c_void_p, POINTER(c_int32)]
cl.clReleaseMemObject.restype = c_int32
cl.clReleaseMemObject.argtypes = [c_void_p]
cl.clRetainMemObject.restype = c_int32
cl.clRetainMemObject.argtypes = [c_void_p]
for _name in ("clEnqueueWriteBuffer", "clEnqueueReadBuffer"):
    getattr(cl, _name).restype = c_int32
    getattr(cl, _name).argtypes = [c_void_p, c_void_p, c_uint, c_size_t, c_size_t, c_void_p, c_uint, c_void_p,
                                   c_void_p]
cl.clFinish.restype = c_int32
cl.clFinish.argtypes = [c_void_p]
cl.clGetMemObjectInfo.restype = c_int32
cl.clGetMemObjectInfo.argtypes = [c_void_p, c_uint, c_size_t, c_void_p, POINTER(c_size_t)]


def _fail(call: str, code: int) -> Exception:
    from .errors import make  # errors imports _lib, which must load first
    return make(code, f"{call} failed")


def create_buffer(cl_context: int, nbytes: int, host: int | None = None) -> int:
    """A read-write buffer of at least one byte (OpenCL refuses empty ones), filled from `host` when given."""
    err = c_int32(0)
    flags = CL_MEM_READ_WRITE | (CL_MEM_COPY_HOST_PTR if host and nbytes else 0)
    mem = cl.clCreateBuffer(cl_context, flags, max(1, nbytes), host if host and nbytes else None, ctypes.byref(err))
    if err.value != 0 or not mem:
        raise _fail(f"clCreateBuffer({nbytes} bytes)", err.value)
    return mem


def release(mem: int) -> None:
    if mem:
        cl.clReleaseMemObject(mem)


def retain(mem: int) -> None:
    cl.clRetainMemObject(mem)


def buffer_size(mem: int) -> int:
    size = c_size_t(0)
    code = cl.clGetMemObjectInfo(mem, CL_MEM_SIZE, ctypes.sizeof(size), ctypes.byref(size), None)
    if code != 0:
        raise _fail("clGetMemObjectInfo(CL_MEM_SIZE)", code)
    return size.value


def write(queue: int, mem: int, offset: int, nbytes: int, host: int) -> None:
    if nbytes:
        code = cl.clEnqueueWriteBuffer(queue, mem, CL_TRUE, offset, nbytes, host, 0, None, None)
        if code != 0:
            raise _fail("clEnqueueWriteBuffer", code)


def read(queue: int, mem: int, offset: int, nbytes: int, host: int) -> None:
    """Blocking: returns when the bytes are in `host`, after everything enqueued before on the in-order queue."""
    if nbytes:
        code = cl.clEnqueueReadBuffer(queue, mem, CL_TRUE, offset, nbytes, host, 0, None, None)
        if code != 0:
            raise _fail("clEnqueueReadBuffer", code)


def finish(queue: int) -> None:
    code = cl.clFinish(queue)
    if code != 0:
        raise _fail("clFinish", code)
