"""The short depthwise causal convolution of the delta-rule layers (flash-linear-attention's ShortConvolution)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_positive_int


def segment_ids(reset):
    """(B, T) int: number of resets up to and including t (0 if `reset` is None)."""
    return None if reset is None else jnp.cumsum(reset.astype(jnp.int32), axis=1)


class ShortConv(nnx.Module):
    """Depthwise causal convolution over time: y_t = Σ_s w_s ⊙ x_{t−W+1+s} (+ b with `bias`), window cached
    for decode.

    The window holds the last W − 1 inputs (B, W − 1, channels); at sequence start it is zero.
    """

    def __init__(self, channels: int, width: int = 4, *, bias: bool = False, rngs: nnx.Rngs):
        check_positive_int("conv_size", width)
        bound = 1.0 / math.sqrt(width)  # PyTorch Conv1d default init (fan_in = width for depthwise)
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (width, channels), minval=-bound, maxval=bound))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (channels,), minval=-bound, maxval=bound)
                              ) if bias else None
        self.width = width

    def init_window(self, batch_size, dtype=jnp.float32):
        return jnp.zeros((batch_size, self.width - 1, self.weight.shape[1]), dtype)

    def __call__(self, x, window=None, seg=None, length=None):
        """x (B, T, C); window (B, W−1, C) or None; seg (B, T) segment ids or None; length (B,) number of
        real tokens when the rest of each row is padding (None: all T) -> (y (B, T, C), new window).

        The new window holds the last W − 1 inputs before position `length` (real tokens only)."""
        B, T, _ = x.shape
        W = self.width
        if window is None:
            window = self.init_window(B, x.dtype)
        xp = jnp.concatenate([window.astype(x.dtype), x], axis=1)  # (B, W−1+T, C)
        w = self.weight[...].astype(x.dtype)
        if seg is not None:  # a tap reaching back past a reset reads zero; the window belongs to segment 0
            seg_p = jnp.concatenate([jnp.zeros((B, W - 1), seg.dtype), seg], axis=1)
        y = jnp.zeros_like(x)
        for s in range(W):
            tap = xp[:, s:s + T]
            if seg is not None:
                tap = tap * (seg_p[:, s:s + T] == seg)[..., None]
            y = y + tap * w[s]
        if self.bias is not None:
            y = y + self.bias[...].astype(x.dtype)
        if length is None:
            new_window = xp[:, T:]
            seg_window = None if seg is None else seg_p[:, T:]
        else:  # xp[length : length + W − 1]: the W − 1 inputs before the first padded position
            idx = length[:, None] + jnp.arange(W - 1)[None]
            new_window = jnp.take_along_axis(xp, idx[..., None], axis=1)
            seg_window = None if seg is None else jnp.take_along_axis(seg_p, idx, axis=1)
        if seg is not None:  # inputs before the last reset must not leak into the next call
            new_window = new_window * (seg_window == seg_window[:, -1:])[..., None]
        return y, new_window
