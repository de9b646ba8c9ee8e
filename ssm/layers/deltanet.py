"""DeltaNet and (Gated) DeltaProduct mixers (Flax NNX), following flash-linear-attention's layers.

Layout legend: B batch, T time, D d_model, H heads, K = d_k, V = d_v per head, n = n_h Householder steps.

Per token: q = SiLU(conv(W_q x)), k_j = SiLU(conv(W_k x))_j, v_j = SiLU(conv(W_v x))_j (depthwise causal
convolutions of width 4), q and k L2-normalized per head, β_j = σ(W_β x)_j (× 2 with `allow_neg_eigval`:
eigenvalues 1 − β ∈ (−1, 1)), optional forget gate g = −exp(A_log)·softplus(W_a x + dt_bias) (Gated
DeltaProduct); the state runs through `delta_product` (n = 1: `delta_rule`), the output per head is
RMS-normalized (optionally swish-gated by W_g x) and projected back to D.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_choice, check_ndim, check_positive_int, check_shape, fail
from ssm.ops.delta_rule import CHUNK_SCANS, METHODS, delta_product, delta_rule, delta_step
from ssm.ops.precision import PRECISIONS
from ssm.layers.norms import HeadRMSNorm, l2_normalize
from ssm.layers.params import NoDecayParam
from ssm.layers.short_conv import ShortConv, segment_ids


class DeltaProduct(nnx.Module):
    """(Gated) DeltaProduct mixer: n_h = `num_householder` delta steps per token (B, T, D) -> (B, T, D).

    Args:
      d_model: D. num_heads: H. head_dim: K = V per head (default D // H).
      num_householder: n_h (k, v, β are projected at n_h× width). allow_neg_eigval: β = 2σ(·).
      use_forget_gate: per-token, per-head log decay g = −exp(A_log)·softplus(W_a x + dt_bias).
      use_output_gate: swish-gated output RMSNorm. conv_size: short convolution width (0 disables it).
      method / chunk_size / chunk_scan / precision: passed to `delta_product` for the parallel call
        (precision "auto": exact float32 on CPU, bf16 matmul inputs on GPU / TPU; ssm/ops/precision.py).
    """

    causal = True

    def __init__(self, d_model: int, *, num_heads: int = 4, num_householder: int = 2, head_dim: int | None = None,
                 allow_neg_eigval: bool = False, use_forget_gate: bool = False, use_output_gate: bool = False,
                 conv_size: int = 4, norm_eps: float = 1e-5, method: str = "auto", chunk_size: int = 64,
                 chunk_scan: str = "sequential", precision: str = "auto", rngs: nnx.Rngs):
        for name, val in (("d_model", d_model), ("num_heads", num_heads), ("num_householder", num_householder),
                          ("chunk_size", chunk_size)):
            check_positive_int(name, val)
        check_choice("method", method, METHODS)
        check_choice("chunk_scan", chunk_scan, CHUNK_SCANS)
        check_choice("precision", precision, PRECISIONS)
        if head_dim is None:
            if d_model % num_heads:
                fail(f"num_heads: must divide d_model={d_model} when head_dim is not given, got {num_heads}")
            head_dim = d_model // num_heads
        check_positive_int("head_dim", head_dim)
        H, n, K = num_heads, num_householder, head_dim
        self.d_model, self.num_heads, self.num_householder, self.head_dim = d_model, H, n, K
        self.allow_neg_eigval, self.use_forget_gate = allow_neg_eigval, use_forget_gate
        self.method, self.chunk_size, self.chunk_scan, self.precision = method, chunk_size, chunk_scan, precision
        linear = lambda i, o: nnx.Linear(i, o, use_bias=False, rngs=rngs)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj = linear(d_model, H * K), linear(d_model, n * H * K), linear(
            d_model, n * H * K)
        self.b_proj = linear(d_model, n * H)
        self.convs = nnx.List([ShortConv(c, conv_size, rngs=rngs) for c in (H * K, n * H * K, n * H * K)]
                              ) if conv_size else None
        if use_forget_gate:  # Mamba-2 / Gated DeltaNet parameterization of the decay
            self.a_proj = linear(d_model, H)
            a = jax.random.uniform(rngs.params(), (H,), minval=1.0, maxval=16.0)
            self.A_log = NoDecayParam(jnp.log(a))
            dt = jnp.exp(jax.random.uniform(rngs.params(), (H,), minval=math.log(1e-3), maxval=math.log(1e-1)))
            dt = jnp.maximum(dt, 1e-4)
            self.dt_bias = NoDecayParam(dt + jnp.log(-jnp.expm1(-dt)))  # softplus⁻¹(dt)
        self.g_proj = linear(d_model, H * K) if use_output_gate else None
        self.norm = HeadRMSNorm(K, norm_eps)
        self.o_proj = linear(H * K, d_model)

    # ---------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, dtype=None):
        """{"h": (B, H, K, V) float32 delta state, "conv": three (B, W−1, channels) windows (q, k, v)}."""
        dtype = jnp.float32 if dtype is None else dtype
        K = self.head_dim
        state = {"h": jnp.zeros((batch_size, self.num_heads, K, K), jnp.promote_types(dtype, jnp.float32))}
        if self.convs is not None:
            state["conv"] = tuple(c.init_window(batch_size, dtype) for c in self.convs)
        return state

    def _inputs(self, x, windows, seg):
        """Projections, short convolutions and activations for x (B, T, D): q (B, T, H, K), k/v (B, T, n, H, K),
        β (B, T, n, H), gate (B, T, H) or None, new conv windows."""
        B, T, _ = x.shape
        H, n, K = self.num_heads, self.num_householder, self.head_dim
        feats = [self.q_proj(x), self.k_proj(x), self.v_proj(x)]
        new_windows = None
        if self.convs is not None:
            windows = (None,) * 3 if windows is None else windows
            outs = [conv(f, w, seg) for conv, f, w in zip(self.convs, feats, windows)]
            feats, new_windows = [o[0] for o in outs], tuple(o[1] for o in outs)
        q, k, v = (jax.nn.silu(f) for f in feats)
        q = l2_normalize(q.reshape(B, T, H, K))
        k = l2_normalize(k.reshape(B, T, n, H, K))
        v = v.reshape(B, T, n, H, K)
        beta = jax.nn.sigmoid(self.b_proj(x).reshape(B, T, n, H))
        if self.allow_neg_eigval:
            beta = 2.0 * beta
        gate = None
        if self.use_forget_gate:
            gate = -jnp.exp(self.A_log[...]) * jax.nn.softplus(self.a_proj(x) + self.dt_bias[...])
        return q, k, v, beta, gate, new_windows

    def _output(self, o, x):
        """o (B, T, H, V) -> (B, T, D): per-head (gated) RMSNorm, then the output projection."""
        B, T = o.shape[:2]
        gate = None if self.g_proj is None else self.g_proj(x).reshape(o.shape)
        return self.o_proj(self.norm(o.astype(x.dtype), gate).reshape(B, T, -1))

    def __call__(self, x, *, initial_state=None, mask=None, reset=None, return_state=False):
        """x (B, T, D) -> y (B, T, D) [, state].

        mask: (B, T) bool, False on padding: padded tokens are zeroed at the input, leave the state unchanged
          (β = 0, no decay) and give y = 0. reset: (B, T) bool, start a new segment at t (packed sequences).
        initial_state / return_state: the `init_state` pytree, for streaming a long sequence in pieces.
        """
        check_ndim("x", x, 3, "(B, T, d_model)")
        B, T, D = x.shape
        check_shape("x", x, (B, T, self.d_model), "(B, T, d_model)")
        for name, m in (("mask", mask), ("reset", reset)):
            if m is not None:
                check_shape(name, m, (B, T), "(B, T)")
        if mask is not None:
            mask = mask.astype(bool)
            x = x * mask[..., None].astype(x.dtype)
        reset = None if reset is None else reset.astype(bool)
        state = initial_state
        windows = None if state is None else state.get("conv")
        q, k, v, beta, gate, new_windows = self._inputs(x, windows, segment_ids(reset))
        if mask is not None:
            beta = beta * mask[:, :, None, None].astype(beta.dtype)
            gate = None if gate is None else gate * mask[..., None].astype(gate.dtype)
        h0 = None if state is None else state["h"]
        kw = dict(initial_state=h0, method=self.method, chunk_size=self.chunk_size, reset=reset,
                  chunk_scan=self.chunk_scan, precision=self.precision)
        if self.num_householder == 1:  # the plain delta rule (no interleaving)
            o, h = delta_rule(q, k[:, :, 0], v[:, :, 0], beta[:, :, 0], gate=gate, **kw)
        else:
            o, h = delta_product(q, k, v, beta, gate=gate, **kw)
        y = self._output(o, x)
        if mask is not None:
            y = y * mask[..., None].astype(y.dtype)
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


class DeltaNet(DeltaProduct):
    """DeltaNet mixer (B, T, D) -> (B, T, D): DeltaProduct with one Householder step per token, no forget gate.

    Args as `DeltaProduct` (without num_householder / use_forget_gate): d_model, num_heads=4, head_dim,
    allow_neg_eigval, use_output_gate, conv_size, norm_eps, method, chunk_size, chunk_scan, precision, rngs.
    """

    def __init__(self, d_model: int, *, num_heads: int = 4, allow_neg_eigval: bool = False, rngs: nnx.Rngs,
                 **kwargs):
        for name in ("num_householder", "use_forget_gate"):
            if name in kwargs:
                fail(f"{name}: not a DeltaNet option (use DeltaProduct)")
        super().__init__(d_model, num_heads=num_heads, num_householder=1, allow_neg_eigval=allow_neg_eigval,
                         use_forget_gate=False, rngs=rngs, **kwargs)
