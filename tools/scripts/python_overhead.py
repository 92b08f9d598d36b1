#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Python package's cost per attention call on device-resident tensors, for a small decode shape: the median
time of ctx.scaled_dot_product_attention(dq, dk, dv, out=dout) against the same clattn_sdpa call made directly with
structures built once (the C call alone), each followed by a wait for the queue. Their difference is what the
package adds; `clattn bench` gives the device time of the same shape.

    python tools/scripts/python_overhead.py [--batch 1 --heads 8 --kv-len 512 --head-dim 64 --repeat 2000]
"""
import argparse
import ctypes
import statistics
import time

import numpy as np

import clattn
from clattn import _lib, _opencl


def measure(python_call, c_call, queue, repeat):
    """Median host time (us) of each call, alternating the two so that both see the same machine load; the wait for
    the queue after each call is not timed, so the numbers are what each side spends before the kernels run."""
    for _ in range(max(10, repeat // 10)):  # warm-up (compilation happens in the first call)
        python_call()
        c_call()
    _opencl.finish(queue)
    py, c = [], []
    for _ in range(repeat):
        for fn, times in ((python_call, py), (c_call, c)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            _opencl.finish(queue)
    return statistics.median(py) * 1e6, statistics.median(c) * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-len", type=int, default=512)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2000)
    p.add_argument("--device", default=None)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    with clattn.Context(a.device) as ctx:
        q = rng.uniform(-2, 2, (a.batch, a.heads, 1, a.head_dim)).astype(np.float32)
        k = rng.uniform(-2, 2, (a.batch, a.heads, a.kv_len, a.head_dim)).astype(np.float32)
        dq, dk, dv = ctx.to_device(q), ctx.to_device(k), ctx.to_device(k)
        out = ctx.empty((a.batch, a.heads, 1, a.head_dim))
        queue = ctx._queue

        def python_call():
            ctx.scaled_dot_product_attention(dq, dk, dv, out=out)

        desc = _lib.SdpaDesc()
        _lib.lib.clattn_sdpa_desc_init(ctypes.byref(desc))
        args = (ctx._handle, ctypes.byref(desc), ctypes.byref(dq._c), ctypes.byref(dk._c), ctypes.byref(dv._c),
                ctypes.byref(out._c), None, 0, None, None)
        sdpa = _lib.lib.clattn_sdpa

        def c_call():
            sdpa(*args)

        rounds = [measure(python_call, c_call, queue, a.repeat) for _ in range(3)]
        py = statistics.median(r[0] for r in rounds)
        c = statistics.median(r[1] for r in rounds)
        print(f"decode B={a.batch} H={a.heads} Lq=1 Lk={a.kv_len} D={a.head_dim} fp32 on {ctx.device.name}")
        print(f"  Python call          {py:8.1f} us host time to enqueue (median of 3 x {a.repeat})")
        print(f"  C call               {c:8.1f} us (clattn_sdpa with its structures built once)")
        print(f"  Python overhead      {py - c:8.1f} us per call")


if __name__ == "__main__":
    main()
