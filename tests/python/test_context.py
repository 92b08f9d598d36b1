# SPDX-License-Identifier: Apache-2.0
"""Devices, contexts and device tensors: what they report, and their lifetimes."""
import numpy as np
import pytest

import clattn
from conftest import rand


def test_devices_and_context(ctx):
    devs = clattn.devices()
    assert devs and all(d.spec.count(":") == 1 and d.name and d.type in ("gpu", "cpu", "accelerator", "other")
                        for d in devs)
    with clattn.Context(devs[0].spec) as c:
        assert c.device.name == devs[0].name and c.device.spec == devs[0].spec
        assert "Context(" in repr(c) and not c.closed
    assert c.closed and "closed" in repr(c)
    assert clattn.__version__.count(".") == 2


def test_last_error_stats_and_sync(ctx, rng):
    with pytest.raises(clattn.ShapeError):
        ctx.scaled_dot_product_attention(rand(rng, 1, 1, 2, 4), rand(rng, 1, 1, 3, 5), rand(rng, 1, 1, 3, 5))
    assert "dim" in ctx.last_error
    q = rand(rng, 1, 1, 2, 4)
    ctx.scaled_dot_product_attention(q, q, q)
    stats = ctx.cache_stats()
    assert set(stats) == {"memory_hits", "disk_hits", "disk_writes", "disk_rejects", "builds", "binary_loads"}
    assert stats["memory_hits"] + stats["disk_hits"] + stats["builds"] + stats["binary_loads"] > 0
    ctx.synchronize()


def test_device_tensor_lifetime(ctx, rng):
    t = ctx.empty((2, 3, 4), dtype="bf16")
    assert t.shape == (1, 2, 3, 4) and t.dtype_name == "bf16" and t.is_contiguous()
    a = rand(rng, 2, 3, 4, 5)
    d = ctx.to_device(a, dtype="bf16")
    back = d.numpy()
    assert back.dtype == np.float32 and np.max(np.abs(back - a)) <= 2 * 2 ** -8  # bf16 keeps 8 bits
    b = ctx.to_device(a > 0)
    assert b.dtype_name == "bool" and np.array_equal(b.numpy(), a > 0)
    d.free()
    d.free()  # idempotent
    with pytest.raises(clattn.ClosedError):
        d.numpy()
    with pytest.raises(clattn.ClosedError):
        ctx.scaled_dot_product_attention(d, d, d)
    with pytest.raises(clattn.ShapeError):
        ctx.empty((1, 2, 3, 4, 5))
