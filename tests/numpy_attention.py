# SPDX-License-Identifier: Apache-2.0
"""Attention in float64 with clattn's masking rules, the NumPy reference that the command-line tests share."""
import numpy as np


def masked_softmax(s, allowed, sinks=None):
    """Softmax over the last axis of the allowed scores (a row with none gives zeros); also its max and sum. sinks
    [H]: one more logit per head in each row's denominator, with no weight of its own."""
    s = np.where(allowed, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    if sinks is not None:
        m = np.maximum(m, sinks.astype(np.float64)[None, :, None, None])
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.where(allowed, np.exp(s - m), 0.0)
    denom = p.sum(axis=-1, keepdims=True)
    if sinks is not None:
        denom = denom + np.exp(sinks.astype(np.float64)[None, :, None, None] - m)
    return np.divide(p, denom, out=np.zeros_like(p), where=denom > 0), m, denom


def attention(q, k, v, scale=None, causal=None, mask=None, key_lengths=None, window=None, softcap=None, sinks=None,
              alibi=None, window_align=None):
    """softmax(q k^T * scale + mask) v in float64, with the library's masking rules and score modifiers: softcap
    C (s = C tanh(s / C)), then ALiBi slopes [H] (-slope |i' - j|), then the masks; sinks [H] in the denominator."""
    b, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    k = np.repeat(k.astype(np.float64), hq // hkv, axis=1)
    v = np.repeat(v.astype(np.float64), hq // hkv, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) * scale
    allowed = np.ones((b, hq, lq, lk), dtype=bool)
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    shift = lk - lq if causal == "bottom-right" else 0
    # The window and ALiBi: aligned as the causal mask unless window_align says otherwise.
    wshift = shift if window_align is None else (lk - lq if window_align == "bottom-right" else 0)
    if softcap is not None:
        s = softcap * np.tanh(s / softcap)
    if alibi is not None:
        s = s - alibi.astype(np.float64)[None, :, None, None] * np.abs(i + wshift - j)
    if causal:
        allowed &= j <= i + shift
    if window is not None:
        left, right = window
        if left >= 0:
            allowed &= j >= i + wshift - left
        if right >= 0:
            allowed &= j <= i + wshift + right
    if key_lengths is not None:
        allowed &= np.arange(lk)[None, None, None, :] < key_lengths[:, None, None, None]
    if mask is not None:
        if mask.dtype == bool:
            allowed &= np.broadcast_to(mask, allowed.shape)
        else:
            s = s + np.broadcast_to(mask.astype(np.float64), s.shape)
    w, m, denom = masked_softmax(s, allowed, sinks)
    lse = np.where(denom[..., 0] > 0, np.log(np.where(denom[..., 0] > 0, denom[..., 0], 1.0)) + m[..., 0], -np.inf)
    return w @ v, w, lse
