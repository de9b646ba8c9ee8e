"""S4D (Gu, Gupta, Goel, Ré 2022): H independent single-input diagonal SSMs, one per channel.

Per channel h with N/2 stored modes (one of each conjugate pair, hence 2·Re):
    x_t = Ā_h ⊙ x_{t−1} + B̄_h u_{t,h},     y_{t,h} = 2·Re(C_h · x_t) + D_h u_{t,h}
equivalently y = causal_conv(u, K) + D u with K = `ssm.s4d_kernel` (the "2 lines of code" kernel).

Three interchangeable ways to run it (they agree to float32 precision; tests/test_s4d.py):
  mode="conv"  FFT convolution with the materialized kernel (the training default; O(T log T)).
  mode="scan"  the recurrence through `ssm.linear_recurrence` (carries state: `initial_state`,
               `return_state` and `reset` (packed sequences) always use it).
  step()       one token at a time with a carried state (streaming / decoding).
Bidirectional (S4's convention): a second C gives a strictly anti-causal kernel,
    y_t = Σ_{l≥0} K_f[l] u_{t−l} + Σ_{l≥0} K_b[l] u_{t+1+l} + D u_t,
sharing A, B and Δ with the forward direction. Padding (mask False) is skipped in both modes (the layer
contract, ssm/layers/mixer.py); with `reset` each packed segment is computed as if alone, in both directions.

The layer is the linear SSM only (+ D skip); activation / GLU / output projection belong to the block.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm.checks import check_choice, check_positive_float, check_positive_int, check_shape, fail
from ssm.ops.discretize import DISCRETIZATIONS, discretize, s4d_kernel
from ssm.init.diagonal import log_uniform, s4d_init, s4d_ptd_basis
from ssm.layers.complex_params import as_complex, as_real_pair
from ssm.layers.mixer import begin_call, end_call, last_real, segment_ends, where_real
from ssm.layers.params import ssm_param
from ssm.ops.scan import METHODS, linear_recurrence

S4D_MODES = ("conv", "scan")


def causal_fft_conv(u, K):
    """y[b, t, h] = Σ_{j<n} K[h, j] u[b, (t − j) mod n, h] with n = K.shape[1] ≥ 2T (so it is linear).

    u: (B, T, H) real, K: (H, n) real. Returns (B, T, H).
    """
    T, n = u.shape[1], K.shape[1]
    U = jnp.fft.rfft(u, n=n, axis=1)
    Kf = jnp.fft.rfft(K, n=n, axis=1).T  # (n//2+1, H)
    return jnp.fft.irfft(U * Kf[None], n=n, axis=1)[:, :T].astype(u.dtype)


def _real_readout(xs, C):
    """2·Re Σ_n C_hn x_..hn for xs (..., H, N/2), C (H, N/2): real arithmetic only."""
    return 2.0 * (jnp.sum(xs.real * C.real, -1) - jnp.sum(xs.imag * C.imag, -1))


class S4D(nnx.Module):
    """S4D layer: (B, T, H) -> (B, T, H). See the module docstring.

    Args:
      d_model: H, the number of channels (independent SSMs).
      state_size: N; N/2 complex modes are stored per channel.
      init: "legs" (default), "inv", "lin", "real" or "ptd" (S4-PTD: PTD eigenvalues of HiPPO-LegS,
        B̃ = Ṽ⁻¹B and C̃ = C Ṽ for a real C ~ N(0, 1) per channel; Yu et al. 2024).
      discretization: "zoh" (default) or "bilinear".
      dt_min, dt_max: Δ per channel is log-uniform on [dt_min, dt_max].
      mode: "conv" (FFT, default) or "scan".
      bidirectional: add an anti-causal direction (then `causal` is False and `step` is unavailable).
      step_rescale: multiplies Δ (evaluate at a different sampling rate, as S5's `step_rescale`); a mutable
        attribute (`SequenceModel.rescale_steps`).
      scan_method: the `ssm.linear_recurrence` method for mode="scan".
      kernel_chunk: block length of `ssm.s4d_kernel` (memory O(H·N·(T/chunk + chunk))).
      param_dtype: dtype of the real parameters (complex ones are stored as (..., 2) real pairs).
    """

    def __init__(self, d_model: int, *, state_size: int = 64, init: str = "legs", discretization: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, mode: str = "conv", bidirectional: bool = False,
                 step_rescale: float = 1.0, scan_method: str = "auto", kernel_chunk: int = 128,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        check_positive_int("d_model", d_model)
        check_positive_int("kernel_chunk", kernel_chunk)
        check_choice("discretization", discretization, DISCRETIZATIONS)
        check_choice("mode", mode, S4D_MODES)
        check_choice("scan_method", scan_method, METHODS)
        for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
            check_positive_float(name, value)
        if not dt_min <= dt_max:
            fail(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        A0, B0 = s4d_init(init, state_size)
        H, N2 = d_model, state_size // 2
        self.d_model, self.state_size, self.init = d_model, state_size, init
        self.discretization, self.mode, self.bidirectional = discretization, mode, bidirectional
        if not step_rescale > 0:
            fail(f"step_rescale: expected a positive number, got {step_rescale!r}")
        self.step_rescale = step_rescale
        self.scan_method, self.kernel_chunk = scan_method, kernel_chunk
        self.causal = not bidirectional
        tile = lambda v: np.broadcast_to(v, (H, N2))  # noqa: E731
        self.log_A_real = ssm_param(jnp.asarray(np.log(-tile(A0.real)), param_dtype))  # Re A = −exp(·) < 0
        self.A_imag = ssm_param(jnp.asarray(tile(A0.imag), param_dtype))
        self.B = ssm_param(as_real_pair(tile(B0), param_dtype))  # (H, N/2, 2)
        self.log_dt = ssm_param(log_uniform(rngs.params(), (H,), dt_min, dt_max, param_dtype))
        n_dir = 2 if bidirectional else 1
        if init == "ptd":  # C̃ = C Ṽ for a real C in HiPPO's basis (unit columns of Ṽ: E|C̃_n|² = 1 as below)
            C = jax.random.normal(rngs.params(), (n_dir, H, state_size), param_dtype)
            cdt = jnp.result_type(param_dtype, jnp.complex64)
            C = as_real_pair(C.astype(cdt) @ jnp.asarray(s4d_ptd_basis(state_size), cdt),
                             param_dtype)
        else:  # C ~ complex standard normal (E|C|² = 1), as in the S4D reference code
            C = jax.random.normal(rngs.params(), (n_dir, H, N2, 2), param_dtype) * math.sqrt(0.5)
        self.C = nnx.Param(C)
        self.D = nnx.Param(jax.random.normal(rngs.params(), (H,), param_dtype))

    # ---- parameters in their mathematical form ------------------------------------------------------
    def ssm(self):
        """(A, B, C, dt): A, B (H, N/2) complex, C (n_dir, H, N/2) complex, dt (H,) (× step_rescale)."""
        A = jax.lax.complex(-jnp.exp(self.log_A_real[...]), self.A_imag[...])
        dt = self.step_rescale * jnp.exp(self.log_dt[...])
        return A, as_complex(self.B[...]), as_complex(self.C[...]), dt

    def discrete(self):
        """(Ā, B̄) each (H, N/2) complex."""
        A, B, _, dt = self.ssm()
        A_bar, B_bar = discretize(A, B[..., None], dt[:, None], self.discretization)
        return A_bar, B_bar[..., 0]

    def kernel(self, L: int):
        """Forward kernel (H, L), or (2, H, L) = (forward, backward) when bidirectional."""
        A, B, C, dt = self.ssm()
        return jnp.stack([s4d_kernel(A, B, c, dt, L, self.discretization, self.kernel_chunk) for c in C])

    # ---- parallel call -----------------------------------------------------------------------------
    def __call__(self, x, *, initial_state=None, mask=None, reset=None, return_state: bool = False,
                 mode: str | None = None):
        """x: (B, T, H) -> y (B, T, H); with return_state also the final state (B, H, N/2) complex.

        mask / reset (B, T) bool: the layer contract (ssm/layers/mixer.py); padded steps are skipped in
        both modes. Carrying a state (`initial_state` / `return_state`) or `reset` runs the scan mode: the
        FFT convolution has no state and cannot restart at a segment boundary.
        """
        x, mask, reset, padding = begin_call(self, x, mask, reset, initial_state, return_state, "(B, T, H)")
        mode = self.mode if mode is None else mode
        check_choice("mode", mode, S4D_MODES)
        if initial_state is not None or return_state or reset is not None:
            mode = "scan"
        if mode == "conv":
            y, state = self._conv(x), None
        else:
            y, state = self._scan(x, initial_state, mask, reset)
        y = end_call(self._output(y, x), padding)
        return (y, state) if return_state else y

    def _drive(self, x, B_bar):
        """B̄ u: x (..., H) -> (..., H, N/2) complex (the input of the recurrence, parallel and step)."""
        return x[..., None] * B_bar

    def _output(self, ssm_out, x):
        """y = SSM output + D ⊙ u, in x's dtype (parallel and step)."""
        return ssm_out.astype(x.dtype) + self.D[...].astype(x.dtype) * x

    def _conv(self, x):
        T = x.shape[1]
        dtype = jnp.promote_types(x.dtype, jnp.float32)  # the FFT needs float32+ (bf16 inputs are upcast)
        K = self.kernel(T).astype(dtype)
        full = jnp.pad(K[0], ((0, 0), (0, T)))  # causal lags 0..T−1, zeros after: a linear conv
        if self.bidirectional:  # lags −1..−T sit at the end of the length-2T circular kernel
            full = full + jnp.pad(jnp.flip(K[1], 1), ((0, 0), (T, 0)))
        return causal_fft_conv(x.astype(dtype), full)

    def _scan(self, x, initial_state, mask, reset):
        A_bar, B_bar = self.discrete()
        _, _, C, _ = self.ssm()
        bu = self._drive(x, B_bar)  # (B, T, H, N/2)
        if initial_state is not None:
            check_shape("initial_state", initial_state, (x.shape[0],) + A_bar.shape, "(B, H, N/2)")
        xs = linear_recurrence(A_bar, bu, initial_state, reset=reset, method=self.scan_method)
        y = _real_readout(xs, C[0])
        if self.bidirectional:
            ends = segment_ends(reset)
            xr = linear_recurrence(A_bar, bu, reverse=True, reset=ends, method=self.scan_method)
            xr_next = jnp.pad(xr[:, 1:], ((0, 0), (0, 1), (0, 0), (0, 0)))  # strictly anti-causal
            if ends is not None:  # the last token of a segment sees nothing of the next one
                xr_next = where_real(~ends, xr_next, 0.0)
            y = y + _real_readout(xr_next, C[1])
        return y, last_real(xs, mask, initial_state)  # padding is trailing here (begin_call)

    # ---- recurrent step ----------------------------------------------------------------------------
    def init_state(self, batch_size: int, dtype=None):
        """Zero state (B, H, N/2) complex."""
        dtype = jnp.result_type(dtype or self.log_dt[...].dtype, jnp.complex64)
        return jnp.zeros((batch_size, self.d_model, self.state_size // 2), dtype)

    def step(self, x_t, state):
        """One token: x_t (B, H), state (B, H, N/2) -> (y_t (B, H), new state)."""
        if self.bidirectional:
            fail("step: a bidirectional S4D cannot run one token at a time")
        check_shape("x_t", x_t, (None, self.d_model), "(B, H)")
        A_bar, B_bar = self.discrete()
        _, _, C, _ = self.ssm()
        state = A_bar * state + self._drive(x_t, B_bar)
        return self._output(_real_readout(state, C[0]), x_t), state
