# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the Python tests: one context for the session, seeded inputs in [-2, 2], the float64 NumPy
reference of attention and the tolerance rule of the C tests (8 * (1 + Lk) * FLT_EPSILON relative, plus a floor)."""
import os

import numpy as np
import pytest

import clattn

FLT_EPS = np.finfo(np.float32).eps
POISON = np.float32(1.2345e30)


@pytest.fixture(scope="session")
def ctx():
    with clattn.Context(os.environ.get("CLATTN_DEVICE")) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def rand(rng, *shape, dtype=np.float32):
    return rng.uniform(-2, 2, size=shape).astype(dtype)


def bf16_round(x):
    """float32 values rounded to bfloat16 (nearest even), as the device's storage rounds them."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32)


def reference(q, k, v, mask=None, is_causal=False, scale=None, alignment="top_left", key_lengths=None,
              window=None, return_all=False, softcap=None, sinks=None, alibi_slopes=None, window_align=None):
    """Attention in float64: out [B, Hq, Lq, Dv] (and the lse and weights with return_all). A row whose every key
    is masked gives zeros and an lse of -inf."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    g = hq // hkv
    k = np.repeat(k, g, axis=1)
    v = np.repeat(v, g, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * (1 / np.sqrt(d) if scale is None else scale)
    keep = np.ones((b, hq, lq, lk), bool)
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    diag = i + (lk - lq if alignment == "bottom_right" and is_causal else 0)
    # The window and ALiBi have their own alignment, the causal mask's unless window_align says otherwise.
    wdiag = diag if window_align is None else i + (lk - lq if window_align == "bottom_right" else 0)
    # The modifiers, in clattn's order: softcap, then ALiBi (query aligned like the window), then the masks.
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if alibi_slopes is not None:
        s = s - np.asarray(alibi_slopes, np.float64)[None, :, None, None] * np.abs(wdiag - j)[None, None]
    if is_causal:
        keep &= j <= diag
    if window is not None:
        left, right = window
        if left is not None and left >= 0:
            keep &= j >= wdiag - left
        if right is not None and right >= 0:
            keep &= j <= wdiag + right
    if key_lengths is not None:
        keep &= j[None, None] < np.asarray(key_lengths)[:, None, None, None]
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == bool:
            keep &= np.broadcast_to(m, keep.shape)
        else:
            s = s + np.broadcast_to(m.astype(np.float64), s.shape)
    s = np.where(keep, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    if sinks is not None:  # one more logit per head in every row's denominator, with no value
        sk = np.broadcast_to(np.asarray(sinks, np.float64)[None, :, None, None], mx.shape)
        mx = np.maximum(mx, sk)
    mx = np.where(np.isfinite(mx), mx, 0)
    p = np.exp(s - mx)
    tot = p.sum(-1, keepdims=True)
    if sinks is not None:
        tot_with_sink = tot + np.exp(sk - mx)
        w = p / tot_with_sink
        out = w @ v
        if not return_all:
            return out
        return out, np.log(tot_with_sink[..., 0]) + mx[..., 0], w
    w = np.where(tot > 0, p / np.where(tot > 0, tot, 1), 0)
    out = w @ v
    if not return_all:
        return out
    lse = np.where(tot[..., 0] > 0, np.log(np.where(tot[..., 0] > 0, tot[..., 0], 1)) + mx[..., 0], -np.inf)
    return out, lse, w


def assert_close(got, ref, lk, floor=1e-6, extra=1.0):
    """The C tests' rule: |got - ref| <= 8 * (1 + Lk) * FLT_EPSILON * (max|ref| + 1) * extra + floor."""
    got = np.asarray(got, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.all(np.isfinite(got) == np.isfinite(ref)), "non-finite values differ"
    fin = np.isfinite(ref)
    tol = 8 * (1 + lk) * FLT_EPS * (np.abs(ref[fin]).max(initial=0) + 1) * extra + floor
    err = np.abs(got[fin] - ref[fin]).max(initial=0)
    assert err <= tol, f"max diff {err:.3g} > tolerance {tol:.3g}"
    assert np.all(got[~fin] == ref[~fin])
