"""Residual block and sequence model shared by every mixer (S4D, S5, DeltaNet, DeltaProduct, ...).

    tokens (B, T) ─ embed ─┐            (or features (B, T, F) ─ input projection)
                           ▼
        N × [ x + Dropout(Mixer(Norm(x)))  →  x + Dropout(MLP(Norm(x))) ]     (pre-norm residual blocks)
                           ▼
                      final Norm ─ pooling (mean over real tokens / last real token / none) ─ head
    → logits (B, T, C) per token (LM, tagging, answer-token tasks) or (B, C) per sequence (pooled)

Mixers come from a factory `mixer_factory(d_model, rngs) -> Mixer` (see ssm/layers/mixer.py), so the model never
knows which layer it runs. Dropout keys are passed at call time; without a key the model is deterministic.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.checks import check_choice, check_ndim, check_positive_int, check_shape, fail

NORMS = ("rmsnorm", "layernorm")
MLPS = ("glu", "gelu", "none")
POOLINGS = ("none", "mean", "last")


REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable", "everything_saveable")


def make_norm(kind: str, d_model: int, rngs: nnx.Rngs, dtype=None) -> nnx.Module:
    """Statistics are computed in float32 by flax; the output has `dtype` (None: the input's)."""
    check_choice("norm", kind, NORMS)
    norm = nnx.RMSNorm if kind == "rmsnorm" else nnx.LayerNorm
    return norm(d_model, dtype=dtype, rngs=rngs)


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


class ResidualBlock(nnx.Module):
    """x ↦ x + Dropout(mixer(Norm(x))), then (unless mlp='none') x ↦ x + Dropout(MLP(Norm(x))).

    dtype: compute dtype of the norms and the MLP (e.g. bfloat16; parameters stay float32). The mixer gets
    its input in that dtype and its output is cast back to it; the mixers keep their recurrence state in
    float32 / complex64 (their parameters' dtype) whatever the input dtype."""

    def __init__(self, d_model: int, mixer: nnx.Module, *, mlp: str = "glu", mlp_ratio: float = 2.0,
                 norm: str = "rmsnorm", dropout: float = 0.0, dtype=None, rngs: nnx.Rngs):
        check_choice("mlp", mlp, MLPS)
        if not 0.0 <= dropout < 1.0:
            fail(f"dropout: expected a rate in [0, 1), got {dropout!r}")
        self.mixer = mixer
        self.mixer_norm = make_norm(norm, d_model, rngs, dtype)
        self.mlp = MLP(d_model, kind=mlp, ratio=mlp_ratio, dtype=dtype, rngs=rngs) if mlp != "none" else None
        self.mlp_norm = make_norm(norm, d_model, rngs, dtype) if mlp != "none" else None
        self.dropout = nnx.Dropout(dropout, rngs=None)

    def _drop(self, x, key):
        return x if key is None else self.dropout(x, deterministic=False, rngs=key)

    def _mlp(self, x, key):
        if self.mlp is None:
            return x
        return x + self._drop(self.mlp(self.mlp_norm(x)), key)

    def __call__(self, x, *, mask=None, reset=None, dropout_key=None, initial_state=None, return_state=False):
        """x (B, T, D), mask / reset (B, T) bool (ssm/layers/mixer.py) -> (B, T, D) [, mixer state]."""
        k1, k2 = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        out = self.mixer(self.mixer_norm(x), mask=mask, reset=reset, initial_state=initial_state,
                         return_state=return_state)
        y, state = out if return_state else (out, None)
        x = self._mlp(x + self._drop(y.astype(x.dtype), k1), k2)
        return (x, state) if return_state else x

    def init_state(self, batch_size: int, dtype=None):
        return self.mixer.init_state(batch_size, dtype)

    def step(self, x_t, state):
        """x_t (B, D), mixer state -> (B, D), new state (inference: no dropout)."""
        y, state = self.mixer.step(self.mixer_norm(x_t), state)
        return self._mlp(x_t + y.astype(x_t.dtype), None), state


def _run_block(block, x, mask, reset, key, state, return_state):
    """One block as a function (so that it can be wrapped in `nnx.remat`): -> (x, state or None)."""
    out = block(x, mask=mask, reset=reset, dropout_key=key, initial_state=state, return_state=return_state)
    return out if return_state else (out, None)


class SequenceModel(nnx.Module):
    """Embedding/input projection → N residual blocks → final norm → pooling → linear head.

    Args:
      mixer_factory: `(d_model, rngs) -> mixer` building one sequence mixer per block.
      num_outputs: classes of the head (vocabulary size for LM).
      vocab_size: token inputs (B, T) int; or input_dim: feature inputs (B, T, input_dim).
      pooling: "none" (per-token logits (B, T, C)), "mean" over real tokens or "last" real token ((B, C)).
      dtype: compute dtype of embedding, norms, MLPs and head (None = float32; "bfloat16" for mixed
        precision). Parameters are float32 either way; mixers keep float32 / complex64 recurrence state.
      remat: rematerialize each block in the backward pass (`nnx.remat` with `remat_policy`, a name in
        `jax.checkpoint_policies`): activation memory of one block instead of all, for ≈ one more forward.
    """

    def __init__(self, mixer_factory: Callable[[int, nnx.Rngs], Any], *, d_model: int, num_layers: int,
                 num_outputs: int, vocab_size: int | None = None, input_dim: int | None = None,
                 pooling: str = "none", mlp: str = "glu", mlp_ratio: float = 2.0, norm: str = "rmsnorm",
                 dropout: float = 0.0, dtype=None, remat: bool = False,
                 remat_policy: str = "nothing_saveable", rngs: nnx.Rngs):
        for name, value in (("d_model", d_model), ("num_layers", num_layers), ("num_outputs", num_outputs)):
            check_positive_int(name, value)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("remat_policy", remat_policy, REMAT_POLICIES)
        dtype = None if dtype is None else jnp.dtype(dtype)
        if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
            fail(f"dtype: expected a floating dtype such as 'bfloat16' or 'float32', got {dtype}")
        self.remat, self.remat_policy = bool(remat), remat_policy
        if (vocab_size is None) == (input_dim is None):
            fail(f"vocab_size/input_dim: give exactly one, got vocab_size={vocab_size!r}, input_dim={input_dim!r}")
        self.pooling = pooling
        if vocab_size is not None:
            check_positive_int("vocab_size", vocab_size)
            self.embed = nnx.Embed(vocab_size, d_model, dtype=dtype, rngs=rngs)
        else:
            check_positive_int("input_dim", input_dim)
            self.embed = nnx.Linear(input_dim, d_model, dtype=dtype, rngs=rngs)
        self.tokens = vocab_size is not None
        self.blocks = nnx.List([
            ResidualBlock(d_model, mixer_factory(d_model, rngs), mlp=mlp, mlp_ratio=mlp_ratio, norm=norm,
                          dropout=dropout, dtype=dtype, rngs=rngs)
            for _ in range(num_layers)])
        self.final_norm = make_norm(norm, d_model, rngs, dtype)
        self.head = nnx.Linear(d_model, num_outputs, dtype=dtype, rngs=rngs)

    @property
    def causal(self) -> bool:
        return all(getattr(b.mixer, "causal", False) for b in self.blocks)

    def __call__(self, inputs, *, mask=None, reset=None, dropout_key=None, initial_state=None,
                 return_state=False):
        """inputs (B, T) tokens or (B, T, F) features; mask (B, T) bool (True = real token); reset (B, T) bool
        (True where a packed segment starts: every block clears its state there, so each segment of a packed
        row gives the logits it gives alone; needs pooling="none").

        Returns logits (B, T, C) for pooling="none", else (B, C). With `return_state=True` also the state
        after the last step (one mixer state per block, as `init_state`), which `initial_state=` continues
        from: a long sequence can be streamed in chunks (causal models, see docs/scaling.md).
        """
        check_ndim("inputs", inputs, 2 if self.tokens else 3, "(B, T)" if self.tokens else "(B, T, F)")
        for name, m in (("mask", mask), ("reset", reset)):
            if m is not None:
                check_shape(name, m, inputs.shape[:2], "(B, T)")
        if reset is not None and self.pooling != "none":
            fail(f"reset: packed sequences need per-token outputs (pooling='none'), got pooling={self.pooling!r}")
        if (initial_state is not None or return_state) and not self.causal:
            fail("initial_state/return_state: need a causal model (every mixer causal)")
        x = self.embed(inputs)
        keys = [None] * len(self.blocks) if dropout_key is None else jax.random.split(dropout_key, len(self.blocks))
        states = [None] * len(self.blocks) if initial_state is None else list(initial_state)
        if len(states) != len(self.blocks):
            fail(f"initial_state: expected one state per block ({len(self.blocks)}), got {len(states)}")
        new_states = []
        for block, key, s in zip(self.blocks, keys, states):
            if self.remat:
                run = nnx.remat(_run_block, static_argnums=(6,),
                                policy=getattr(jax.checkpoint_policies, self.remat_policy))
            else:
                run = _run_block
            x, s = run(block, x, mask, reset, key, s, return_state)
            new_states.append(s)
        x = self.final_norm(x)
        if self.pooling == "mean":
            if mask is None:
                x = x.mean(axis=1)
            else:
                w = mask.astype(x.dtype)[..., None]
                x = (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)
        elif self.pooling == "last":
            if mask is None:
                x = x[:, -1]
            else:
                last = jnp.maximum(mask.sum(axis=1) - 1, 0)
                x = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        logits = self.head(x)
        return (logits, tuple(new_states)) if return_state else logits

    def init_state(self, batch_size: int, dtype=None) -> tuple:
        """Recurrent state for `step`: one mixer state per block."""
        return tuple(b.init_state(batch_size, dtype) for b in self.blocks)

    def step(self, inputs_t, state):
        """One token: inputs_t (B,) tokens or (B, F) features, state -> logits (B, C), new state.

        Only for causal models with per-token outputs (pooling="none")."""
        if self.pooling != "none" or not self.causal:
            fail("step: needs a causal model with pooling='none'")
        x = self.embed(inputs_t)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        return self.head(self.final_norm(x)), tuple(new_state)
