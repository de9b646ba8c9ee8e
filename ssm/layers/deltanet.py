"""The delta-rule family of mixers (Flax NNX), following flash-linear-attention's layers: DeltaNet, Gated
DeltaNet and (Gated) DeltaProduct, one implementation with options.

Layout legend: B batch, T time, D d_model, H q/k heads, H_v value heads (a multiple of H), K = d_k and
V = d_v = expand_v·K per head, n = n_h Householder steps per token.

Per token: q = φ(conv(W_q x)), k_j = φ(conv(W_k x))_j, v_j = SiLU(conv(W_v x))_j with φ = `qk_activation`
(SiLU by default) and depthwise causal convolutions of width `conv_size` (optional bias); q and k normalized
per head (`qk_norm`: L2, or divided by their sum); with H_v > H each q/k head serves H_v / H value heads
(grouped value heads, flash-linear-attention's GVA); β_j = σ(W_β x)_j per value head (≡ 1 without
`use_beta`), × 2 with `allow_neg_eigval` (eigenvalues 1 − β ∈ (−1, 1)); optional forget gate
g = −exp(A_log)·softplus(W_a x + dt_bias) per value head (Gated DeltaNet / Gated DeltaProduct). The state
(H_v heads of K × V) runs through `delta_product` (n = 1: `delta_rule`); the output per head is
RMS-normalized (optionally swish-gated by W_g x) and projected back to D.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_choice, check_ndim, check_positive_float, check_positive_int, fail
from ssm.ops.delta_rule import CHUNK_SCANS, METHODS, delta_product, delta_rule, delta_step
from ssm.ops.precision import PRECISIONS
from ssm.layers.mixer import begin_call, end_call, where_real
from ssm.layers.norms import HeadRMSNorm, l2_normalize, sum_normalize
from ssm.layers.params import no_decay_param
from ssm.layers.short_conv import ShortConv, segment_ids

# flash-linear-attention's q/k feature maps; "elu" is ELU + 1 (positive features)
QK_ACTIVATIONS = {"silu": jax.nn.silu, "relu": jax.nn.relu, "elu": lambda z: jax.nn.elu(z) + 1.0,
                  "identity": lambda z: z}
QK_NORMS = {"l2": l2_normalize, "sum": sum_normalize}


def _value_head_dim(head_dim, expand_v):
    """V = head_dim · expand_v, which must be a positive whole number."""
    real = isinstance(expand_v, (int, float)) and not isinstance(expand_v, bool) and math.isfinite(expand_v)
    V = head_dim * expand_v if real else None
    if V is None or V < 1 or not math.isclose(V, round(V), rel_tol=0, abs_tol=1e-6):
        fail(f"expand_v: head_dim·expand_v must be a positive whole number, got {head_dim}·{expand_v!r}")
    return int(round(V))


class DeltaProduct(nnx.Module):
    """(Gated) DeltaProduct mixer: n_h = `num_householder` delta steps per token (B, T, D) -> (B, T, D).

    Args:
      d_model: D. num_heads: H (q/k heads). head_dim: K per head (default D // H).
      num_householder: n_h (k, v, β are projected at n_h× width).
      expand_v: V = expand_v·K per value head (1: V = K).
      num_v_heads: H_v value heads (default H); a multiple of H, each q/k head serving H_v / H of them.
      allow_neg_eigval: β = 2σ(·) (with use_beta=False: β ≡ 2, a reflection, as flash-linear-attention).
      use_forget_gate: per-token, per-value-head log decay g = −exp(A_log)·softplus(W_a x + dt_bias).
      use_output_gate: swish-gated output RMSNorm. use_beta: learn β = σ(W_β x); False: β ≡ 1.
      qk_activation: "silu" (default), "relu", "elu" (ELU + 1) or "identity". qk_norm: "l2" or "sum".
      conv_size: short convolution width (0 disables it). conv_bias: the short convolutions get a bias.
      norm_eps: ε of the output RMSNorm.
      method / chunk_size / chunk_scan / precision: passed to `delta_product` for the parallel call
        (precision "auto": exact float32 on CPU, bf16 matmul inputs on GPU / TPU; ssm/ops/precision.py).
    """

    causal = True

    def __init__(self, d_model: int, *, num_heads: int = 4, num_householder: int = 2, head_dim: int | None = None,
                 expand_v: float = 1.0, num_v_heads: int | None = None, allow_neg_eigval: bool = False,
                 use_forget_gate: bool = False, use_output_gate: bool = False, use_beta: bool = True,
                 qk_activation: str = "silu", qk_norm: str = "l2", conv_size: int = 4, conv_bias: bool = False,
                 norm_eps: float = 1e-5, method: str = "auto", chunk_size: int = 64,
                 chunk_scan: str = "sequential", precision: str = "auto", rngs: nnx.Rngs):
        for name, val in (("d_model", d_model), ("num_heads", num_heads), ("num_householder", num_householder),
                          ("chunk_size", chunk_size)):
            check_positive_int(name, val)
        check_choice("method", method, METHODS)
        check_choice("chunk_scan", chunk_scan, CHUNK_SCANS)
        check_choice("qk_activation", qk_activation, QK_ACTIVATIONS)
        check_choice("qk_norm", qk_norm, QK_NORMS)
        check_choice("precision", precision, PRECISIONS)
        if head_dim is None:
            if d_model % num_heads:
                fail(f"num_heads: must divide d_model={d_model} when head_dim is not given, got {num_heads}")
            head_dim = d_model // num_heads
        check_positive_int("head_dim", head_dim)
        V = _value_head_dim(head_dim, expand_v)
        HV = num_heads if num_v_heads is None else num_v_heads
        if isinstance(HV, bool) or not isinstance(HV, int) or HV < 1 or HV % num_heads:
            fail(f"num_v_heads: expected a positive multiple of num_heads={num_heads}, got {num_v_heads!r}")
        if isinstance(conv_size, bool) or not isinstance(conv_size, int) or conv_size < 0:
            fail(f"conv_size: expected a width >= 1, or 0 for no short convolution, got {conv_size!r}")
        if conv_bias and not conv_size:
            fail("conv_bias: needs a short convolution, got conv_size=0")
        check_positive_float("norm_eps", norm_eps)
        H, n, K = num_heads, num_householder, head_dim
        self.d_model, self.num_heads, self.num_householder, self.head_dim = d_model, H, n, K
        self.num_v_heads, self.head_v_dim = HV, V
        self.allow_neg_eigval, self.use_forget_gate, self.use_beta = allow_neg_eigval, use_forget_gate, use_beta
        self.qk_activation, self.qk_norm = qk_activation, qk_norm
        self.method, self.chunk_size, self.chunk_scan, self.precision = method, chunk_size, chunk_scan, precision
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, rngs=rngs)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj = linear(d_model, H * K), linear(d_model, n * H * K), linear(
            d_model, n * HV * V)
        self.b_proj = linear(d_model, n * HV) if use_beta else None
        self.convs = nnx.List([ShortConv(c, conv_size, bias=conv_bias, rngs=rngs)
                               for c in (H * K, n * H * K, n * HV * V)]) if conv_size else None
        if use_forget_gate:  # Mamba-2 / Gated DeltaNet parameterization of the decay
            self.a_proj = linear(d_model, HV)
            a = jax.random.uniform(rngs.params(), (HV,), minval=1.0, maxval=16.0)
            self.A_log = no_decay_param(jnp.log(a))
            dt = jnp.exp(jax.random.uniform(rngs.params(), (HV,), minval=math.log(1e-3), maxval=math.log(1e-1)))
            dt = jnp.maximum(dt, 1e-4)
            self.dt_bias = no_decay_param(dt + jnp.log(-jnp.expm1(-dt)))  # softplus⁻¹(dt)
        self.g_proj = linear(d_model, HV * V) if use_output_gate else None
        self.norm = HeadRMSNorm(V, norm_eps)
        self.o_proj = linear(HV * V, d_model)

    # ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, dtype=None):
        """{"h": (B, H_v, K, V) float32 delta state, "conv": three (B, W−1, channels) windows (q, k, v)}."""
        dtype = jnp.float32 if dtype is None else dtype
        shape = (batch_size, self.num_v_heads, self.head_dim, self.head_v_dim)
        state = {"h": jnp.zeros(shape, jnp.promote_types(dtype, jnp.float32))}
        if self.convs is not None:
            state["conv"] = tuple(c.init_window(batch_size, dtype) for c in self.convs)
        return state

    def _inputs(self, x, windows, seg, length=None):
        """Projections, short convolutions and activations for x (B, T, D), per value head: q (B, T, H_v, K),
        k (B, T, n, H_v, K), v (B, T, n, H_v, V), β (B, T, n, H_v), gate (B, T, H_v) or None, new conv windows.
        Shared by the parallel call and `step` (T = 1)."""
        B, T, _ = x.shape
        H, HV, n, K, V = self.num_heads, self.num_v_heads, self.num_householder, self.head_dim, self.head_v_dim
        feats = [self.q_proj(x), self.k_proj(x), self.v_proj(x)]
        new_windows = None
        if self.convs is not None:
            windows = (None,) * 3 if windows is None else windows
            outs = [conv(f, w, seg, length) for conv, f, w in zip(self.convs, feats, windows)]
            feats, new_windows = [o[0] for o in outs], tuple(o[1] for o in outs)
        act, norm = QK_ACTIVATIONS[self.qk_activation], QK_NORMS[self.qk_norm]
        q = norm(act(feats[0]).reshape(B, T, H, K))
        k = norm(act(feats[1]).reshape(B, T, n, H, K))
        v = jax.nn.silu(feats[2]).reshape(B, T, n, HV, V)
        if HV > H:  # grouped value heads: value head i reads q/k head i // (H_v / H)
            q, k = jnp.repeat(q, HV // H, axis=2), jnp.repeat(k, HV // H, axis=3)
        if self.use_beta:
            beta = jax.nn.sigmoid(self.b_proj(x).reshape(B, T, n, HV))
        else:
            beta = jnp.ones((B, T, n, HV), x.dtype)
        if self.allow_neg_eigval:
            beta = 2.0 * beta
        gate = None
        if self.use_forget_gate:
            gate = -jnp.exp(self.A_log[...]) * jax.nn.softplus(self.a_proj(x) + self.dt_bias[...])
        return q, k, v, beta, gate, new_windows

    def _output(self, o, x):
        """o (B, T, H_v, V) -> (B, T, D): per-head (gated) RMSNorm, then the output projection (parallel and
        step)."""
        B, T = o.shape[:2]
        gate = None if self.g_proj is None else self.g_proj(x).reshape(o.shape)
        return self.o_proj(self.norm(o.astype(x.dtype), gate).reshape(B, T, -1))

    def __call__(self, x, *, initial_state=None, mask=None, reset=None, return_state=False):
        """x (B, T, D) -> y (B, T, D) [, state].

        mask / reset: (B, T) bool, the layer contract (ssm/layers/mixer.py): a padded step is skipped (by the
          short convolutions too; in the delta state β = 0 and no decay) and gives y = 0; `reset` starts a
          new segment at t (packed sequences) in the delta state and the short convolutions.
        initial_state / return_state: the `init_state` pytree, for streaming a long sequence in pieces.
        """
        x, mask, reset, padding = begin_call(self, x, mask, reset, initial_state, return_state)
        state = initial_state
        windows = None if state is None else state.get("conv")
        length = None if mask is None else jnp.sum(mask, axis=1)  # padding is trailing here (begin_call)
        q, k, v, beta, gate, new_windows = self._inputs(x, windows, segment_ids(reset), length)
        beta = where_real(mask, beta, 0.0)  # a padded step is skipped: β = 0 and no decay
        gate = None if gate is None else where_real(mask, gate, 0.0)
        h0 = None if state is None else state["h"]
        kw = dict(initial_state=h0, method=self.method, chunk_size=self.chunk_size, reset=reset,
                  chunk_scan=self.chunk_scan, precision=self.precision)
        if self.num_householder == 1:  # the plain delta rule (no interleaving)
            o, h = delta_rule(q, k[:, :, 0], v[:, :, 0], beta[:, :, 0], gate=gate, **kw)
        else:
            o, h = delta_product(q, k, v, beta, gate=gate, **kw)
        y = end_call(self._output(o, x), padding)
        if not return_state:
            return y
        new_state = {"h": h}
        if new_windows is not None:
            new_state["conv"] = new_windows
        return y, new_state

    def step(self, x_t, state):
        """One decode step: x_t (B, D), state from `init_state` -> (y_t (B, D), state)."""
        check_ndim("x_t", x_t, 2, "(B, d_model)")
        x = x_t[:, None]
        q, k, v, beta, gate, windows = self._inputs(x, state.get("conv"), None)  # T = 1
        h = state["h"]
        dt = h.dtype
        decay = None if gate is None else jnp.exp(gate[:, 0]).astype(dt)
        for j in range(self.num_householder):  # the gate acts once, before the first Householder step
            h = delta_step(h, k[:, 0, j].astype(dt), v[:, 0, j].astype(dt), beta[:, 0, j].astype(dt),
                           decay if j == 0 else None)
        o = jnp.einsum("bhkv,bhk->bhv", h, q[:, 0].astype(dt) * self.head_dim ** -0.5)
        new_state = {"h": h}
        if windows is not None:
            new_state["conv"] = windows
        return self._output(o[:, None], x)[:, 0], new_state


def _options(local_vars):
    """A subclass constructor's keyword options (its locals at entry), to pass on to DeltaProduct."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "d_model", "rngs", "__class__")}


class DeltaNet(DeltaProduct):
    """DeltaNet mixer (B, T, D) -> (B, T, D): the delta rule, one Householder step per token, no forget gate.

    Options as `DeltaProduct` (without num_householder / use_forget_gate).
    """

    def __init__(self, d_model: int, *, num_heads: int = 4, head_dim: int | None = None, expand_v: float = 1.0,
                 num_v_heads: int | None = None, allow_neg_eigval: bool = False, use_output_gate: bool = False,
                 use_beta: bool = True, qk_activation: str = "silu", qk_norm: str = "l2", conv_size: int = 4,
                 conv_bias: bool = False, norm_eps: float = 1e-5, method: str = "auto", chunk_size: int = 64,
                 chunk_scan: str = "sequential", precision: str = "auto", rngs: nnx.Rngs):
        super().__init__(d_model, num_householder=1, use_forget_gate=False, rngs=rngs, **_options(locals()))


class GatedDeltaNet(DeltaProduct):
    """Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024) mixer (B, T, D) -> (B, T, D): the delta rule with a
    per-token, per-head scalar decay α_t = exp(g_t), g_t = −exp(A_log)·softplus(W_a x_t + dt_bias):

        h_t = α_t (I − β_t k_t k_tᵀ) h_{t−1} + β_t k_t v_tᵀ,    o_t = h_tᵀ (K^−½ q_t).

    flash-linear-attention's GatedDeltaNet layer: its defaults expand_v = 2 and a swish-gated output
    RMSNorm (use_output_gate=True); head_dim defaults to D // num_heads (flash-linear-attention: 256, for
    D = 2048). A is drawn from U[1, 16] as in Mamba-2 and our DeltaProduct (flash-linear-attention: U[0, 16]).
    Options as `DeltaProduct` (without num_householder / use_forget_gate). Equal to
    DeltaProduct(num_householder=1, use_forget_gate=True) with the same options.
    """

    def __init__(self, d_model: int, *, num_heads: int = 4, head_dim: int | None = None, expand_v: float = 2.0,
                 num_v_heads: int | None = None, allow_neg_eigval: bool = False, use_output_gate: bool = True,
                 use_beta: bool = True, qk_activation: str = "silu", qk_norm: str = "l2", conv_size: int = 4,
                 conv_bias: bool = False, norm_eps: float = 1e-5, method: str = "auto", chunk_size: int = 64,
                 chunk_scan: str = "sequential", precision: str = "auto", rngs: nnx.Rngs):
        super().__init__(d_model, num_householder=1, use_forget_gate=True, rngs=rngs, **_options(locals()))
