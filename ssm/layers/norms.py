"""Normalizations used inside the delta-rule layers: L2 / sum normalization of q/k and the per-head output
RMSNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.layers.params import no_decay_param


def l2_normalize(x, eps=1e-6):
    """x / ‖x‖ over the last axis (flash-linear-attention's l2norm: x·rsqrt(Σx² + eps))."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def sum_normalize(x):
    """x / Σx over the last axis (flash-linear-attention's sum_norm, no ε); a vector summing to exactly 0
    (e.g. all-zero ReLU features) is returned unchanged instead of 0/0."""
    total = jnp.sum(x, axis=-1, keepdims=True)
    return x / jnp.where(total == 0, 1, total)


class HeadRMSNorm(nnx.Module):
    """RMSNorm over the last axis (d_v) shared by all heads; with a gate: norm(o)·w·SiLU(gate)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        self.scale = no_decay_param(jnp.ones((dim,)))
        self.eps = eps

    def __call__(self, x, gate=None):
        y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.scale[...]
        return y if gate is None else y * jax.nn.silu(gate)
