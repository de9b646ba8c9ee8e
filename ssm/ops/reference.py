"""Float64 NumPy reference loops of the ops, one token at a time: what the tests compare every fast path to.

They restate the recurrences directly from the papers' formulas (papers.md) and share no code with the
JAX ops, so an error in the ops cannot hide in its reference.
"""

from __future__ import annotations

import numpy as np


def linear_recurrence_ref(a, b, h0=None, reverse=False, reset=None):
    """h_t = a_t ⊙ h_{t−1} + b_t (complex128), with the state zeroed before step t where reset[:, t].

    a: (B, T, ...) time-varying or (...) broadcast against b's feature axes; b (B, T, ...); h0 (B, ...);
    reverse: walk t = T−1 … 0 (h_prev = h_{t+1}). Returns h (B, T, ...).
    """
    b = np.asarray(b, np.complex128)
    B, T = b.shape[:2]
    h = np.zeros((B,) + b.shape[2:], np.complex128) if h0 is None else np.asarray(h0, np.complex128).copy()
    out = np.zeros_like(b)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        at = a[:, t] if np.ndim(a) == b.ndim else a
        if reset is not None:
            h = np.where(reset[:, t].reshape((B,) + (1,) * (b.ndim - 2)), 0, h)
        h = at * h + b[:, t]
        out[:, t] = h
    return out


def delta_product_ref(q, k, v, beta, h0, scale, gate=None, reset=None):
    """Per token: reset, decay exp(g_t), then n Householder steps h ← h + β k (v − hᵀk)ᵀ; o_t = h_tᵀ(scale·q_t).

    q (B, T, H, K); k (B, T, n, H, K); v (B, T, n, H, V); beta (B, T, n, H); gate (B, T, H); reset (B, T);
    h0 (B, H, K, V). Returns (o (B, T, H, V), final state (B, H, K, V)), float64.
    """
    h = np.array(h0, np.float64)
    B, T, n = k.shape[:3]
    o = np.zeros((B, T) + h.shape[1:2] + h.shape[-1:])
    for t in range(T):
        if reset is not None:
            h = h * (~reset[:, t])[:, None, None, None]
        if gate is not None:
            h = h * np.exp(gate[:, t])[..., None, None]
        for j in range(n):
            kj, vj, bj = k[:, t, j], v[:, t, j], beta[:, t, j]
            err = vj - np.einsum("bhk,bhkv->bhv", kj, h)
            h = h + np.einsum("bhk,bhv->bhkv", bj[..., None] * kj, err)
        o[:, t] = np.einsum("bhkv,bhk->bhv", h, scale * q[:, t])
    return o, h


def delta_rule_ref(q, k, v, beta, h0, scale, gate=None, reset=None):
    """DeltaNet: `delta_product_ref` with one step per token; k (B, T, H, K), v (B, T, H, V), beta (B, T, H)."""
    return delta_product_ref(q, k[:, :, None], v[:, :, None], beta[:, :, None], h0, scale, gate, reset)
