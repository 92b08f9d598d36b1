# SPDX-License-Identifier: Apache-2.0
"""pyopencl interop (skipped where pyopencl is not installed): a Context joins a pyopencl queue, and pyopencl arrays
go in and come out on it without copies."""
import numpy as np
import pytest

cl = pytest.importorskip("pyopencl")
import pyopencl.array as cla  # noqa: E402

import clattn  # noqa: E402
from conftest import assert_close, rand, reference  # noqa: E402


def test_pyopencl_arrays(rng):
    platform = cl.get_platforms()[0]
    cl_ctx = cl.Context([platform.get_devices()[0]])
    queue = cl.CommandQueue(cl_ctx)
    q, k, v = rand(rng, 2, 2, 5, 8), rand(rng, 2, 1, 9, 8), rand(rng, 2, 1, 9, 4)
    with clattn.Context(queue=queue) as ctx:
        assert ctx.device.name == queue.device.name.strip()
        dq, dk, dv = (cla.to_device(queue, a) for a in (q, k, v))
        out = ctx.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True, is_causal=True)
        assert isinstance(out, cla.Array) and out.shape == (2, 2, 5, 4)
        assert_close(out.get(), reference(q, k, v, is_causal=True), 9)
        target = cla.to_device(queue, np.full((2, 2, 5, 4), 7.0, np.float32))
        assert ctx.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True, out=target) is target
        assert_close(target.get(), reference(q, k, v), 9)
        keep = rng.random((2, 1, 5, 9)) > 0.3
        keep[..., 0] = True
        masked = ctx.scaled_dot_product_attention(dq, dk, dv, enable_gqa=True, attn_mask=cla.to_device(queue, keep))
        assert_close(masked.get(), reference(q, k, v, mask=keep), 9)
        # A strided pyopencl view ([B, L, H, D] storage seen as [B, H, L, D]) is read through its strides.
        blhd = cla.to_device(queue, np.ascontiguousarray(q.transpose(0, 2, 1, 3)))
        view = blhd.transpose((0, 2, 1, 3))
        assert_close(ctx.scaled_dot_product_attention(view, dk, dv, enable_gqa=True).get(), reference(q, k, v), 9)
