"""S5 (Smith, Warrington, Linderman, ICLR 2023) with the S5-PTD initialization (Yu et al., ICLR 2024).

One MIMO diagonal SSM with P complex states shared by all H features:
    x_t = Λ̄ ⊙ x_{t−1} + B̄ u_t,      y_t = Re(C̃ x_t) + D ⊙ u_t          (u_t, y_t ∈ R^H, x_t ∈ C^P)
with Λ̄, B̄ from ZOH / bilinear and one Δ per state. With conjugate symmetry only P/2 states are stored
(one of each conjugate pair) and the output is 2·Re(C̃ x_t).

Initialization (J blocks of size P/J, block-diagonal V): Λ and V diagonalize
  "s5":     the normal part of HiPPO-LegS (unitary V; the S5 paper's init), or
  "s5-ptd": HiPPO-LegS itself after a small perturbation (`ssm.perturb_then_diagonalize`; default),
and B̃ = V⁻¹ B, C̃ = C V for random real B (lecun normal) and C (`C_init`).
Bidirectional (S5 convention): a second scan runs backwards over the same B̄u (current token included),
y_t = Re(C̃₁ x_t + C̃₂ x^rev_t) + D u_t. Padded steps are skipped in both directions (the layer contract,
ssm/layers/mixer.py), and with `reset` the reverse scan restarts at the end of each segment, so neither
padding nor a neighbouring segment reaches a real token.
The layer is the linear SSM only (+ D); activations / GLU belong to the block.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_choice, check_positive_float, check_positive_int, check_shape, fail
from ssm.ops.discretize import DISCRETIZATIONS, discretize
from ssm.init.diagonal import log_uniform, s5_eigenbasis
from ssm.layers.params import ssm_param
from ssm.layers.complex_params import as_complex, as_real_pair
from ssm.layers.mixer import begin_call, end_call, last_real, segment_ends
from ssm.ops.scan import METHODS, linear_recurrence

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def _init_C(kind, key, H, P, V, dtype):
    """C̃ (H, P') complex: C V for a random complex C (H, P), or a complex normal C̃ directly."""
    if kind == "complex_normal":
        return jax.random.normal(key, (H, V.shape[1], 2), dtype) * math.sqrt(0.5)
    # truncated normal (±2σ) rescaled to std 1/√fan_in, as jax's lecun_normal; fan_in = P per row of C
    # ("trunc_standard_normal", S5's per-row lecun init) or P·H (lecun_normal on the (H, P, 2) array)
    fan_in = P if kind == "trunc_standard_normal" else P * H
    C = jax.random.truncated_normal(key, -2.0, 2.0, (H, P, 2), dtype) / (0.87962566103423978 * math.sqrt(fan_in))
    return as_real_pair(jax.lax.complex(C[..., 0], C[..., 1]) @ V.astype(_complex_dtype(dtype)), dtype)


def _complex_dtype(dtype):
    return jnp.result_type(dtype, jnp.complex64)


class S5(nnx.Module):
    """S5 / S5-PTD layer: (B, T, H) -> (B, T, H). See the module docstring.

    Args:
      d_model: H.
      state_size: P, the latent size of the full (real-equivalent) system; P/2 complex states are stored
        with conj_sym.
      blocks: J, number of diagonal blocks of the initialization (each of size P/J).
      init: "s5-ptd" (default) or "s5".
      conj_sym: store one of each conjugate pair and output 2·Re.
      discretization: "zoh" or "bilinear".
      dt_min, dt_max: log Δ per state uniform on [log dt_min, log dt_max].
      C_init: "trunc_standard_normal" (default), "lecun_normal" or "complex_normal".
      bidirectional: add a reverse scan with its own C̃ (then `causal` is False, no `step`).
      clip_eigs: clamp Re Λ ≤ −1e-4 in the forward pass (keeps the system stable during training).
      step_rescale: multiplies Δ (evaluate at a different sampling rate); a mutable attribute.
      scan_method: the `ssm.linear_recurrence` method.
    """

    def __init__(self, d_model: int, *, state_size: int = 64, blocks: int = 1, init: str = "s5-ptd",
                 conj_sym: bool = True, discretization: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 C_init: str = "trunc_standard_normal", bidirectional: bool = False, clip_eigs: bool = False,
                 step_rescale: float = 1.0, scan_method: str = "auto", param_dtype=jnp.float32, rngs: nnx.Rngs):
        check_positive_int("d_model", d_model)
        check_choice("discretization", discretization, DISCRETIZATIONS)
        check_choice("C_init", C_init, C_INITS)
        check_choice("scan_method", scan_method, METHODS)
        check_positive_int("state_size", state_size)
        check_positive_int("blocks", blocks)
        check_positive_float("step_rescale", step_rescale)
        for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
            check_positive_float(name, value)
        if not dt_min <= dt_max:
            fail(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        Lambda, V, Vinv = s5_eigenbasis(init, state_size, blocks, conj_sym)
        H, P = d_model, state_size
        self.d_model, self.state_size, self.blocks, self.init = d_model, state_size, blocks, init
        self.conj_sym, self.discretization, self.bidirectional = conj_sym, discretization, bidirectional
        self.clip_eigs, self.step_rescale, self.scan_method = clip_eigs, step_rescale, scan_method
        self.causal = not bidirectional
        self.Lambda_re = ssm_param(jnp.asarray(Lambda.real, param_dtype))
        self.Lambda_im = ssm_param(jnp.asarray(Lambda.imag, param_dtype))
        # jnp (not NumPy) on random draws, so that nnx.eval_shape(lambda: S5(...)) works
        B = jax.nn.initializers.lecun_normal()(rngs.params(), (P, H), param_dtype)
        B_tilde = jnp.asarray(Vinv, _complex_dtype(param_dtype)) @ B  # B̃ = V⁻¹ B, (P', H)
        self.B = ssm_param(as_real_pair(B_tilde, param_dtype))
        n_dir = 2 if bidirectional else 1
        self.C = nnx.Param(jnp.stack([_init_C(C_init, rngs.params(), H, P, jnp.asarray(V), param_dtype)
                                      for _ in range(n_dir)]))  # (n_dir, H, P', 2)
        self.D = nnx.Param(jax.random.normal(rngs.params(), (H,), param_dtype))
        self.log_dt = ssm_param(log_uniform(rngs.params(), Lambda.shape, dt_min, dt_max, param_dtype))

    @property
    def num_states(self) -> int:
        """P' = the number of stored complex states."""
        return self.Lambda_re.shape[0]

    def ssm(self):
        """(Λ (P',), B̃ (P', H), C̃ (n_dir, H, P'), Δ (P',)) in their mathematical form."""
        re = self.Lambda_re[...]
        if self.clip_eigs:
            re = jnp.minimum(re, -1e-4)
        Lambda = jax.lax.complex(re, self.Lambda_im[...])
        dt = self.step_rescale * jnp.exp(self.log_dt[...])
        return Lambda, as_complex(self.B[...]), as_complex(self.C[...]), dt

    def discrete(self):
        """(Λ̄ (P',), B̄ (P', H), C̃ (n_dir, H, P'))."""
        Lambda, B, C, dt = self.ssm()
        Lambda_bar, B_bar = discretize(Lambda, B, dt, self.discretization)
        return Lambda_bar, B_bar, C

    def _readout(self, xs, C):
        """Re(C̃ x) (×2 with conj_sym) as two real matmuls instead of a complex one."""
        y = jnp.einsum("...p,hp->...h", xs.real, C.real) - jnp.einsum("...p,hp->...h", xs.imag, C.imag)
        return 2.0 * y if self.conj_sym else y

    @staticmethod
    def _input(x, B_bar):
        """B̄ u for real u: (..., H) -> (..., P') complex, as two real matmuls."""
        x = x.astype(B_bar.real.dtype)
        return jax.lax.complex(jnp.einsum("...h,ph->...p", x, B_bar.real),
                               jnp.einsum("...h,ph->...p", x, B_bar.imag))

    def _output(self, ssm_out, x):
        """y = SSM output + D ⊙ u, in x's dtype (parallel and step)."""
        return ssm_out.astype(x.dtype) + self.D[...].astype(x.dtype) * x

    def __call__(self, x, *, initial_state=None, mask=None, reset=None, return_state: bool = False):
        """x: (B, T, H) -> y (B, T, H); with return_state also the final state (B, P') complex.

        mask / reset (B, T) bool, the layer contract (ssm/layers/mixer.py): a padded step is skipped (input
        ignored, state unchanged, output 0); `reset` starts a new segment at t: the forward state is zeroed
        before t and the reverse state after t−1, so segments never see each other.
        """
        x, mask, reset, padding = begin_call(self, x, mask, reset, initial_state, return_state, "(B, T, H)")
        if initial_state is not None:
            check_shape("initial_state", initial_state, (x.shape[0], self.num_states), "(B, P')")
        Lambda_bar, B_bar, C = self.discrete()
        bu = self._input(x, B_bar)  # (B, T, P')
        xs = linear_recurrence(Lambda_bar, bu, initial_state, reset=reset, method=self.scan_method)
        y = self._readout(xs, C[0])
        if self.bidirectional:  # padding is trailing here (begin_call), so zero inputs keep it out
            xr = linear_recurrence(Lambda_bar, bu, reverse=True, reset=segment_ends(reset),
                                   method=self.scan_method)
            y = y + self._readout(xr, C[1])
        y = end_call(self._output(y, x), padding)
        return (y, last_real(xs, mask, initial_state)) if return_state else y

    def init_state(self, batch_size: int, dtype=None):
        """Zero state (B, P') complex."""
        dtype = jnp.result_type(dtype or self.log_dt[...].dtype, jnp.complex64)
        return jnp.zeros((batch_size, self.num_states), dtype)

    def step(self, x_t, state):
        """One token: x_t (B, H), state (B, P') -> (y_t (B, H), new state)."""
        if self.bidirectional:
            fail("step: a bidirectional S5 cannot run one token at a time")
        check_shape("x_t", x_t, (None, self.d_model), "(B, H)")
        Lambda_bar, B_bar, C = self.discrete()
        state = Lambda_bar * state + self._input(x_t, B_bar)
        return self._output(self._readout(state, C[0]), x_t), state
