"""The residual blocks of `SequenceModel` (ssm/model.py), one per `block` choice, and their norms.

  "prenorm_mlp" (default)   x ↦ x + Drop(Mixer(Norm(x)))   then   x ↦ x + Drop(MLP(Norm(x)))
  "s5"  the S4 / S5 recipe (lindermanlab/S5 `SequenceLayer`; S4's block is its "full_glu"):
        prenorm  x ↦ x + Act(Mixer(Norm(x)))            postnorm  x ↦ Norm(x + Act(Mixer(x)))
        Act of the mixer output y (g = GELU, σ = sigmoid, W₁ and W₂ D×D linear layers with bias):
          "full_glu"   h = Drop(g(y)),  Drop(W₁h ⊙ σ(W₂h))
          "half_glu1"  h = Drop(g(y)),  Drop(h ⊙ σ(W₂h))        (S5's default)
          "half_glu2"  h = Drop(g(y)),  Drop(y ⊙ σ(W₂h))        (the gate alone sees the GELU)
          "gelu"       Drop(g(y))
        Drop here draws one mask per (example, feature) shared over time, as S5's dropout
        (`broadcast_dims=[0]` on a (T, H) example) and S4's `tie_dropout`; its two calls draw two masks.

Norms ("rmsnorm", "layernorm", "batchnorm"; `make_norm`, `apply_norm`): RMS / layer norm act on each token alone.
BatchNorm normalizes each feature with statistics over the real tokens of the batch (every (example, t)
with mask True; padding never enters them) when called with `train=True`, and updates its running
averages (r ← momentum·r + (1 − momentum)·batch, S5's bn_momentum 0.95); with `train=False` (evaluation,
sampling, `step`) it uses the running averages, so it is a fixed per-feature affine map. The running
averages are `nnx.BatchStat` state: the train step carries them, checkpoints save them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_choice, fail

NORMS = ("rmsnorm", "layernorm", "batchnorm")
MLPS = ("glu", "gelu", "none")
BLOCKS = ("prenorm_mlp", "s5")
S5_ACTIVATIONS = ("full_glu", "half_glu1", "half_glu2", "gelu")


def make_norm(kind: str, d_model: int, *, bn_momentum: float = 0.95, dtype=None, rngs: nnx.Rngs) -> nnx.Module:
    """One of NORMS over the last axis (flax's modules, so that parameter paths are the same as before
    batchnorm existed: old checkpoints restore); call it with `apply_norm`. Statistics in float32 (flax);
    the output has `dtype` (None: the input's)."""
    check_choice("norm", kind, NORMS)
    if not 0.0 <= bn_momentum < 1.0:
        fail(f"bn_momentum: expected a number in [0, 1), got {bn_momentum!r}")
    if kind == "batchnorm":
        return nnx.BatchNorm(d_model, momentum=bn_momentum, epsilon=1e-5, use_fast_variance=False, dtype=dtype,
                             rngs=rngs)
    return (nnx.RMSNorm if kind == "rmsnorm" else nnx.LayerNorm)(d_model, dtype=dtype, rngs=rngs)


def apply_norm(norm: nnx.Module, x, mask=None, train: bool = False):
    """x (..., D) normalized; `mask` (x's leading axes, bool: real tokens) and `train` matter to batchnorm
    only: statistics of the real tokens and an update of the running averages when training, the running
    averages otherwise."""
    if not isinstance(norm, nnx.BatchNorm):
        return norm(x)
    if not train:
        return norm(x, use_running_average=True)
    return norm(x, use_running_average=False, mask=None if mask is None else mask[..., None])


class MLP(nnx.Module):
    """Channel mixing: GLU (silu(x W_g) ⊙ x W_u) W_o, or GELU MLP gelu(x W_u) W_o; hidden = ratio · D."""

    def __init__(self, d_model: int, *, kind: str = "glu", ratio: float = 2.0, dtype=None, rngs: nnx.Rngs):
        check_choice("mlp", kind, MLPS[:2])
        hidden = max(1, int(round(ratio * d_model)))
        self.kind = kind
        self.up = nnx.Linear(d_model, (2 if kind == "glu" else 1) * hidden, dtype=dtype, rngs=rngs)
        self.down = nnx.Linear(hidden, d_model, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        h = self.up(x)
        if self.kind == "glu":
            gate, h = jnp.split(h, 2, axis=-1)
            h = jax.nn.silu(gate) * h
        else:
            h = jax.nn.gelu(h)
        return self.down(h)


def _check_dropout(dropout):
    if not 0.0 <= dropout < 1.0:
        fail(f"dropout: expected a rate in [0, 1), got {dropout!r}")


def _mixer_call(mixer, x, mask, reset, initial_state, return_state):
    out = mixer(x, mask=mask, reset=reset, initial_state=initial_state, return_state=return_state)
    return out if return_state else (out, None)


class ResidualBlock(nnx.Module):
    """block="prenorm_mlp": x ↦ x + Dropout(mixer(Norm(x))), then (unless mlp='none')
    x ↦ x + Dropout(MLP(Norm(x))).

    dtype: compute dtype of the norms and the MLP (e.g. bfloat16; parameters stay float32). The mixer gets
    its input in that dtype and its output is cast back to it; the mixers keep their recurrence state in
    float32 / complex64 (their parameters' dtype) whatever the input dtype."""

    parts = ("mixer_norm", "mixer", "mlp_norm", "mlp")  # in the order of the forward pass (ssm/train/guard.py)

    def __init__(self, d_model: int, mixer: nnx.Module, *, mlp: str = "glu", mlp_ratio: float = 2.0,
                 norm: str = "rmsnorm", bn_momentum: float = 0.95, dropout: float = 0.0, dtype=None,
                 rngs: nnx.Rngs):
        check_choice("mlp", mlp, MLPS)
        _check_dropout(dropout)
        self.mixer = mixer
        self.mixer_norm = make_norm(norm, d_model, bn_momentum=bn_momentum, dtype=dtype, rngs=rngs)
        self.mlp = MLP(d_model, kind=mlp, ratio=mlp_ratio, dtype=dtype, rngs=rngs) if mlp != "none" else None
        self.mlp_norm = (make_norm(norm, d_model, bn_momentum=bn_momentum, dtype=dtype, rngs=rngs)
                         if mlp != "none" else None)
        self.dropout = nnx.Dropout(dropout, rngs=None)

    def _drop(self, x, key):
        return x if key is None else self.dropout(x, deterministic=False, rngs=key)

    def _mlp(self, x, key, mask=None, train=False):
        if self.mlp is None:
            return x
        return x + self._drop(self.mlp(apply_norm(self.mlp_norm, x, mask, train)), key)

    def __call__(self, x, *, mask=None, reset=None, dropout_key=None, initial_state=None, return_state=False,
                 train: bool = False):
        """x (B, T, D), mask / reset (B, T) bool (ssm/layers/mixer.py) -> (B, T, D) [, mixer state]."""
        k1, k2 = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        y, state = _mixer_call(self.mixer, apply_norm(self.mixer_norm, x, mask, train), mask, reset,
                               initial_state, return_state)
        x = self._mlp(x + self._drop(y.astype(x.dtype), k1), k2, mask, train)
        return (x, state) if return_state else x

    def init_state(self, batch_size: int, dtype=None):
        return self.mixer.init_state(batch_size, dtype)

    def step(self, x_t, state):
        """x_t (B, D), mixer state -> (B, D), new state (inference: no dropout, batchnorm's running averages)."""
        y, state = self.mixer.step(apply_norm(self.mixer_norm, x_t), state)
        return self._mlp(x_t + y.astype(x_t.dtype), None), state


class S5Block(nnx.Module):
    """block="s5": the S4 / S5 layer recipe (module docstring): mixer → activation / GLU in one residual
    branch, one norm before (prenorm) or after (postnorm) the residual sum, dropout shared over time."""

    def __init__(self, d_model: int, mixer: nnx.Module, *, activation: str = "half_glu1", prenorm: bool = True,
                 norm: str = "batchnorm", bn_momentum: float = 0.95, dropout: float = 0.0, dtype=None,
                 rngs: nnx.Rngs):
        check_choice("s5_activation", activation, S5_ACTIVATIONS)
        _check_dropout(dropout)
        self.mixer, self.activation, self.prenorm = mixer, activation, bool(prenorm)
        self.norm = make_norm(norm, d_model, bn_momentum=bn_momentum, dtype=dtype, rngs=rngs)
        linear = lambda: nnx.Linear(d_model, d_model, dtype=dtype, rngs=rngs)  # noqa: E731
        self.out1 = linear() if activation == "full_glu" else None
        self.out2 = linear() if activation != "gelu" else None
        self.dropout = nnx.Dropout(dropout, broadcast_dims=(1,), rngs=None)  # (B, T, D): one mask per (b, d)

    @property
    def parts(self):
        """Sub-modules in the order of the forward pass (ssm/train/guard.py)."""
        return ("norm", "mixer", "out1", "out2") if self.prenorm else ("mixer", "out1", "out2", "norm")

    def _drop(self, x, key):
        return x if key is None else self.dropout(x, deterministic=False, rngs=key)

    def _branch(self, y, keys):
        """The activation / GLU of the mixer output y (B, T, D) (or (B, D) in step mode, keys None)."""
        k1, k2 = (None, None) if keys is None else keys
        h = self._drop(jax.nn.gelu(y), k1)
        if self.activation == "gelu":
            return h
        if self.activation == "full_glu":
            return self._drop(self.out1(h) * jax.nn.sigmoid(self.out2(h)), k2)
        gated = h if self.activation == "half_glu1" else y
        return self._drop(gated * jax.nn.sigmoid(self.out2(h)), k2)

    def __call__(self, x, *, mask=None, reset=None, dropout_key=None, initial_state=None, return_state=False,
                 train: bool = False):
        """x (B, T, D), mask / reset (B, T) bool (ssm/layers/mixer.py) -> (B, T, D) [, mixer state]."""
        keys = None if dropout_key is None else tuple(jax.random.split(dropout_key))
        u = apply_norm(self.norm, x, mask, train) if self.prenorm else x
        y, state = _mixer_call(self.mixer, u, mask, reset, initial_state, return_state)
        x = x + self._branch(y.astype(x.dtype), keys)
        if not self.prenorm:
            x = apply_norm(self.norm, x, mask, train)
        return (x, state) if return_state else x

    def init_state(self, batch_size: int, dtype=None):
        return self.mixer.init_state(batch_size, dtype)

    def step(self, x_t, state):
        """x_t (B, D), mixer state -> (B, D), new state (inference: no dropout, batchnorm's running averages)."""
        u = apply_norm(self.norm, x_t) if self.prenorm else x_t
        y, state = self.mixer.step(u, state)
        x_t = x_t + self._branch(y.astype(x_t.dtype), None)
        return (x_t if self.prenorm else apply_norm(self.norm, x_t)), state


def make_block(kind: str, d_model: int, mixer: nnx.Module, *, mlp: str, mlp_ratio: float, norm: str,
               bn_momentum: float, dropout: float, s5_activation: str, s5_prenorm: bool, dtype, rngs: nnx.Rngs):
    """The block named `kind` (BLOCKS) around `mixer`; each block takes the options that apply to it."""
    check_choice("block", kind, BLOCKS)
    if kind == "s5":
        return S5Block(d_model, mixer, activation=s5_activation, prenorm=s5_prenorm, norm=norm,
                       bn_momentum=bn_momentum, dropout=dropout, dtype=dtype, rngs=rngs)
    return ResidualBlock(d_model, mixer, mlp=mlp, mlp_ratio=mlp_ratio, norm=norm, bn_momentum=bn_momentum,
                         dropout=dropout, dtype=dtype, rngs=rngs)
