# SPDX-License-Identifier: Apache-2.0
"""Bad input: each mistake raises its exception class with the status C gives it and a message that says what to
do, and leaves every output untouched."""
import os
import subprocess
import sys

import numpy as np
import pytest

import clattn
from conftest import POISON, rand


@pytest.fixture
def qkv(rng):
    return rand(rng, 2, 2, 5, 8), rand(rng, 2, 2, 7, 8), rand(rng, 2, 2, 7, 8)


def expect(exc_type, status, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, clattn.Error)
    assert info.value.status == status, str(info.value)
    assert info.value.status_name
    return info.value


def test_shapes(ctx, rng, qkv):
    q, k, v = qkv
    sdpa = ctx.scaled_dot_product_attention
    expect(clattn.ShapeError, -3002, sdpa, q[None], k, v)  # five dimensions
    expect(clattn.ShapeError, -3002, sdpa, q[0, 0, 0], k, v)  # one dimension
    e = expect(clattn.ShapeError, -3002, sdpa, q, k[..., :4], v)  # head dims differ: C says which
    assert "k" in e.detail and "dim" in e.detail
    expect(clattn.ShapeError, -3002, sdpa, q, k, v[:, :, :6])  # key and value lengths differ
    expect(clattn.ShapeError, -3005, sdpa, q, k[:, :1], v[:, :1])  # GQA without enable_gqa, as PyTorch
    q3 = rand(rng, 2, 3, 5, 8)
    expect(clattn.ShapeError, -3005, sdpa, q3, k, v, enable_gqa=True)  # 3 query heads over 2: C refuses


def test_dtypes(ctx, qkv):
    q, k, v = qkv
    sdpa = ctx.scaled_dot_product_attention
    expect(clattn.DTypeError, -3007, sdpa, q.astype(np.int32), k, v)
    expect(clattn.DTypeError, -3007, sdpa, q.astype(np.complex64), k, v)
    expect(clattn.DTypeError, -3007, sdpa, q, k, v, dtype="f64")
    expect(clattn.DTypeError, -3007, sdpa, q, k, v, dtype="bool")
    expect(clattn.DTypeError, -3007, sdpa, q, k, v, attn_mask=np.zeros((5, 7), np.int64))
    expect(clattn.DTypeError, -3007, sdpa, q, k, v, key_lengths=np.array([1.0, 2.0]))
    expect(clattn.DTypeError, -3007, ctx.to_device, q, dtype="bool")
    expect(clattn.InvalidArgumentError, -3000, sdpa, "not an array", k, v)


def test_options(ctx, qkv):
    q, k, v = qkv
    sdpa = ctx.scaled_dot_product_attention
    # The modifiers' arguments: C validates them before the device is touched.
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, softcap=-1.0)
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, softcap=float("nan"))
    expect(clattn.ShapeError, -3002, sdpa, q, k, v, sinks=np.zeros(3, np.float32))
    expect(clattn.ShapeError, -3002, sdpa, q, k, v, alibi_slopes=np.ones(5))
    expect(clattn.UnsupportedError, -3021, sdpa, q, k, v, dropout_p=0.1)
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, impl="fast")
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, is_causal=True, causal_alignment="middle")
    expect(clattn.InvalidArgumentError, -3008, sdpa, q, k, v, window=3)
    expect(clattn.ShapeError, -3002, sdpa, q, k, v, key_lengths=np.ones((2, 1), np.int32))
    expect(clattn.InvalidArgumentError, -3000, sdpa, q, k, v, key_lengths=np.array([-1, 2]))
    expect(clattn.MaskError, -3008, sdpa, q, k, v, attn_mask=np.ones((2, 2, 5, 6), bool))  # Lk 6, not 7


def test_outputs_untouched_on_error(ctx, qkv):
    q, k, v = qkv
    sdpa = ctx.scaled_dot_product_attention
    host = np.full((2, 2, 5, 8), POISON, np.float32)
    expect(clattn.MaskError, -3008, sdpa, q, k, v, attn_mask=np.ones((2, 2, 5, 6), bool), out=host)
    assert np.all(host == POISON)
    expect(clattn.ShapeError, -3002, sdpa, q, k, v, out=np.zeros((2, 2, 5, 7), np.float32))
    dev = ctx.to_device(host)
    expect(clattn.ShapeError, -3002, sdpa, q, k[..., :4], v, out=dev)
    assert np.all(dev.numpy() == POISON)
    small = ctx.to_device(np.full((2, 2, 5, 4), POISON, np.float32))
    expect(clattn.ShapeError, -3002, sdpa, ctx.to_device(q), ctx.to_device(k), ctx.to_device(v), out=small)
    assert np.all(small.numpy() == POISON)


def test_closed_and_foreign(qkv):
    q, k, v = qkv
    c = clattn.Context()
    t = c.to_device(q)
    c.close()
    c.close()  # idempotent
    with pytest.raises(clattn.ClosedError):
        c.scaled_dot_product_attention(q, k, v)
    with pytest.raises(clattn.ClosedError):
        c.to_device(q)
    with pytest.raises(clattn.ClosedError):
        t.numpy()
    with clattn.Context() as a, clattn.Context() as b:
        expect(clattn.InvalidArgumentError, -3000, b.scaled_dot_product_attention, a.to_device(q), k, v)


def test_device_selection():
    expect(clattn.DeviceError, -3012, clattn.Context, "no-such-device-xyz")
    expect(clattn.InvalidArgumentError, -3013, clattn.Context, 5)
    assert any(d.is_default for d in clattn.devices())


def test_import_without_platform(tmp_path):
    env = dict(os.environ, OCL_ICD_VENDORS=str(tmp_path), OCL_ICD_FILENAMES="")
    run = subprocess.run([sys.executable, "-c", "import clattn"], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "ImportError" in run.stderr and "no OpenCL platform" in run.stderr
    assert "pocl-opencl-icd" in run.stderr
