"""A gated diagonal linear RNN (Mamba/HGRN-like baseline) over the scan core.

Per feature n of an N-dimensional state (N = state_size):
    a_t = σ(W_a x_t + λ)                 (or 2σ(·) − 1 ∈ (−1, 1) with allow_neg_eigval, Grazzi et al. 2025)
    h_t = a_t ⊙ h_{t−1} + W_b x_t        (ssm.linear_recurrence)
    y_t = W_o (h_t ⊙ silu(W_g x_t))
The decay bias λ is an `ssm_param` (dynamics: own lr, no weight decay), initialized so that σ(λ) spans
[0.9, 0.999] across features (slow and fast memories, as in HGRN/Mamba's Δ range). With negative
eigenvalues the input-dependent decay can flip the state's sign, which is what parity needs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm.checks import check_choice, check_positive_int, check_shape
from ssm.layers.params import ssm_param
from ssm.layers.mixer import begin_call, end_call, last_real
from ssm.ops.scan import METHODS, linear_recurrence


class DiagonalRNN(nnx.Module):
    """Gated diagonal linear RNN mixer, (B, T, D) -> (B, T, D); causal, with step mode.

    Args:
      d_model: D. state_size: N (default D). allow_neg_eigval: a = 2σ(·) − 1 ∈ (−1, 1).
      method: the `ssm.linear_recurrence` method.
    """

    causal = True

    def __init__(self, d_model: int, *, state_size: int | None = None, allow_neg_eigval: bool = False,
                 method: str = "auto", rngs: nnx.Rngs):
        check_positive_int("d_model", d_model)
        state_size = d_model if state_size is None else state_size
        check_positive_int("state_size", state_size)
        check_choice("method", method, METHODS)
        self.d_model, self.state_size = d_model, state_size
        self.allow_neg_eigval, self.method = allow_neg_eigval, method
        self.in_proj = nnx.Linear(d_model, 3 * state_size, use_bias=False, rngs=rngs)  # -> a, b, gate
        self.out_proj = nnx.Linear(state_size, d_model, use_bias=False, rngs=rngs)
        decay = np.linspace(0.9, 0.999, state_size)
        self.decay_bias = ssm_param(jnp.asarray(np.log(decay / (1 - decay)), jnp.float32))  # logit of σ(λ)

    def _gates(self, x):
        """x (..., D) -> decay a, input b, output gate g, each (..., N)."""
        za, b, g = jnp.split(self.in_proj(x), 3, axis=-1)
        a = jax.nn.sigmoid(za + self.decay_bias[...])
        if self.allow_neg_eigval:
            a = 2 * a - 1
        return a, b, jax.nn.silu(g)

    def _output(self, h, g):
        """y = W_o (h ⊙ g) (parallel and step)."""
        return self.out_proj(h * g)

    def __call__(self, x, *, initial_state=None, mask=None, reset=None, return_state=False):
        """x (B, T, D) -> y (B, T, D) [, state (B, N)]; mask / reset (B, T) bool as in ssm/layers/mixer.py."""
        x, mask, reset, padding = begin_call(self, x, mask, reset, initial_state, return_state)
        a, b, g = self._gates(x)
        if initial_state is not None:
            check_shape("initial_state", initial_state, (x.shape[0], self.state_size), "(B, N)")
        h = linear_recurrence(a, b, initial_state, reset=reset, method=self.method)
        y = end_call(self._output(h, g), padding)
        return (y, last_real(h, mask, initial_state)) if return_state else y

    def init_state(self, batch_size: int, dtype=None):
        """Zero state (B, N)."""
        return jnp.zeros((batch_size, self.state_size), dtype or jnp.float32)

    def step(self, x_t, state):
        """x_t (B, D), state (B, N) -> y_t (B, D), new state."""
        check_shape("x_t", x_t, (None, self.d_model), "(B, D)")
        a, b, g = self._gates(x_t)
        h = a * state + b
        return self._output(h, g), h
