"""The sequence model shared by every mixer (S4D, S5, DeltaNet, DeltaProduct, ...).

    tokens (B, T) ─ embed ─┐            (or features (B, T, F) ─ input projection)
                           ▼
        N × residual block (ssm/blocks.py):  "prenorm_mlp"  x + Drop(Mixer(Norm(x))) → x + Drop(MLP(Norm(x)))
                                             "s5"           the S4 / S5 recipe: Mixer → GELU / GLU, pre/post norm
                           ▼
                      final Norm (optional) ─ pooling ─ head
    → logits (B, T, C) per token (LM, tagging, answer-token tasks) or (B, C) per sequence (pooled: mean over
      real tokens, last real token, or "pair": two documents encoded separately, S5's retrieval head)

Mixers come from a factory `mixer_factory(d_model, rngs) -> Mixer` (see ssm/layers/mixer.py), so the model never
knows which layer it runs. Dropout keys are passed at call time; without a key the model is deterministic.
`train=True` (the train step only) makes batchnorm use and update batch statistics; the default is evaluation.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ssm.blocks import apply_norm, make_block, make_norm
from ssm.checks import check_choice, check_ndim, check_positive_int, check_shape, fail

POOLINGS = ("none", "mean", "last", "pair")


REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable", "everything_saveable")


def _run_block(block, x, mask, reset, key, state, return_state, train):
    """One block as a function (so that it can be wrapped in `nnx.remat`): -> (x, state or None)."""
    out = block(x, mask=mask, reset=reset, dropout_key=key, initial_state=state, return_state=return_state,
                train=train)
    return out if return_state else (out, None)


def _mean_pool(x, mask):
    """(B, T, D), mask (B, T) bool or None -> (B, D): the mean over the real tokens."""
    if mask is None:
        return x.mean(axis=1)
    w = mask.astype(x.dtype)[..., None]
    return (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)


def split_pair(tokens, mask, separator: int):
    """Rows 'first ⊕ separator ⊕ second' (B, 2L+1) -> the two documents as rows (2B, L) and their mask:
    row b is the first document of pair b, row B + b its second (the separator is the first `separator`
    token of a row; the first document holds at most L tokens, as the hf_dataset pair layout guarantees)."""
    B, T = tokens.shape
    L = (T - 1) // 2
    lengths = jnp.full((B,), T) if mask is None else mask.sum(axis=1)
    sep = jnp.argmax(tokens == separator, axis=1)  # = length of the first document
    t = jnp.arange(L)[None]
    first, m1 = tokens[:, :L], t < sep[:, None]
    second = jnp.take_along_axis(tokens, jnp.minimum(sep[:, None] + 1 + t, T - 1), axis=1)
    m2 = t < (lengths - sep - 1)[:, None]
    both_mask = jnp.concatenate([m1, m2])
    return jnp.where(both_mask, jnp.concatenate([first, second]), 0), both_mask


class SequenceModel(nnx.Module):
    """Embedding/input projection → N residual blocks → final norm → pooling → linear head.

    Args:
      mixer_factory: `(d_model, rngs) -> mixer` building one sequence mixer per block.
      num_outputs: classes of the head (vocabulary size for LM).
      vocab_size: token inputs (B, T) int; or input_dim: feature inputs (B, T, input_dim).
      pooling: "none" (per-token logits (B, T, C)), "mean" over real tokens or "last" real token ((B, C));
        "pair" (token inputs whose last id, vocab_size − 1, separates two documents: rows
        'first ⊕ separator ⊕ second' of length 2L + 1): each document is encoded alone (a batch of 2B rows
        of length L), mean-pooled to h₁, h₂, and [h₁, h₂, h₁ − h₂, h₁·h₂] goes through
        Linear(4D, D) → GELU → head (S5's / LRA's retrieval model).
      block: "prenorm_mlp" or "s5" (ssm/blocks.py); mlp, mlp_ratio apply to "prenorm_mlp", s5_activation and
        s5_prenorm to "s5"; norm ("rmsnorm", "layernorm", "batchnorm"), bn_momentum and dropout to both.
      final_norm: a norm after the last block (S5's code has none; S4's prenorm models have one).
      dtype: compute dtype of embedding, norms, MLPs and head (None = float32; "bfloat16" for mixed
        precision). Parameters are float32 either way; mixers keep float32 / complex64 recurrence state.
      remat: rematerialize each block in the backward pass (`nnx.remat` with `remat_policy`, a name in
        `jax.checkpoint_policies`): activation memory of one block instead of all, for ≈ one more forward.
    """

    def __init__(self, mixer_factory: Callable[[int, nnx.Rngs], Any], *, d_model: int, num_layers: int,
                 num_outputs: int, vocab_size: int | None = None, input_dim: int | None = None,
                 pooling: str = "none", block: str = "prenorm_mlp", mlp: str = "glu", mlp_ratio: float = 2.0,
                 norm: str = "rmsnorm", bn_momentum: float = 0.95, s5_activation: str = "half_glu1",
                 s5_prenorm: bool = True, final_norm: bool = True, dropout: float = 0.0, dtype=None,
                 remat: bool = False, remat_policy: str = "nothing_saveable", rngs: nnx.Rngs):
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
        if pooling == "pair" and vocab_size is None:
            fail("pooling: 'pair' needs token inputs whose last id separates the two documents (vocab_size)")
        self.pooling = pooling
        if vocab_size is not None:
            check_positive_int("vocab_size", vocab_size)
            self.embed = nnx.Embed(vocab_size, d_model, dtype=dtype, rngs=rngs)
        else:
            check_positive_int("input_dim", input_dim)
            self.embed = nnx.Linear(input_dim, d_model, dtype=dtype, rngs=rngs)
        self.tokens = vocab_size is not None
        self.separator = None if vocab_size is None else vocab_size - 1
        self.blocks = nnx.List([
            make_block(block, d_model, mixer_factory(d_model, rngs), mlp=mlp, mlp_ratio=mlp_ratio, norm=norm,
                       bn_momentum=bn_momentum, dropout=dropout, s5_activation=s5_activation,
                       s5_prenorm=s5_prenorm, dtype=dtype, rngs=rngs)
            for _ in range(num_layers)])
        self.final_norm = make_norm(norm, d_model, bn_momentum=bn_momentum, dtype=dtype, rngs=rngs) \
            if final_norm else None
        self.pair_proj = nnx.Linear(4 * d_model, d_model, dtype=dtype, rngs=rngs) if pooling == "pair" else None
        self.head = nnx.Linear(d_model, num_outputs, dtype=dtype, rngs=rngs)

    @property
    def causal(self) -> bool:
        return all(getattr(b.mixer, "causal", False) for b in self.blocks)

    def rescale_steps(self, factor: float) -> None:
        """Multiply the step size Δ of every mixer by `factor` (its `step_rescale` attribute): evaluate a
        model trained at one sampling rate on data sampled `factor` times more coarsely (S5's 8 kHz
        Speech Commands protocol: factor 2). Changes this Python object only, not the parameters."""
        for i, b in enumerate(self.blocks):
            if not hasattr(b.mixer, "step_rescale"):
                fail(f"step_rescale: the mixer of block {i} ({type(b.mixer).__name__}) has no step size Δ to rescale")
            b.mixer.step_rescale = b.mixer.step_rescale * factor

    def __call__(self, inputs, *, mask=None, reset=None, dropout_key=None, initial_state=None,
                 return_state=False, train: bool = False):
        """inputs (B, T) tokens or (B, T, F) features; mask (B, T) bool (True = real token); reset (B, T) bool
        (True where a packed segment starts: every block clears its state there, so each segment of a packed
        row gives the logits it gives alone; needs pooling="none"); train: batchnorm uses and updates batch
        statistics (the train step), else its running averages.

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
        if (initial_state is not None or return_state) and self.pooling == "pair":
            fail("initial_state/return_state: not with pooling='pair' (each document is a separate row)")
        if self.pooling == "pair":
            inputs, mask = split_pair(inputs, mask, self.separator)
        x = self.embed(inputs)
        keys = [None] * len(self.blocks) if dropout_key is None else jax.random.split(dropout_key, len(self.blocks))
        states = [None] * len(self.blocks) if initial_state is None else list(initial_state)
        if len(states) != len(self.blocks):
            fail(f"initial_state: expected one state per block ({len(self.blocks)}), got {len(states)}")
        new_states = []
        for block, key, s in zip(self.blocks, keys, states):
            if self.remat:
                run = nnx.remat(_run_block, static_argnums=(6, 7),
                                policy=getattr(jax.checkpoint_policies, self.remat_policy))
            else:
                run = _run_block
            x, s = run(block, x, mask, reset, key, s, return_state, train)
            new_states.append(s)
        if self.final_norm is not None:
            x = apply_norm(self.final_norm, x, mask, train)
        if self.pooling in ("mean", "pair"):
            x = _mean_pool(x, mask)
        elif self.pooling == "last":
            if mask is None:
                x = x[:, -1]
            else:
                last = jnp.maximum(mask.sum(axis=1) - 1, 0)
                x = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        if self.pooling == "pair":
            h1, h2 = jnp.split(x, 2)
            x = jax.nn.gelu(self.pair_proj(jnp.concatenate([h1, h2, h1 - h2, h1 * h2], axis=-1)))
        logits = self.head(x)
        return (logits, tuple(new_states)) if return_state else logits

    def init_state(self, batch_size: int, dtype=None) -> tuple:
        """Recurrent state for `step`: one mixer state per block."""
        return tuple(b.init_state(batch_size, dtype) for b in self.blocks)

    def step(self, inputs_t, state):
        """One token: inputs_t (B,) tokens or (B, F) features, state -> logits (B, C), new state.

        Only for causal models with per-token outputs (pooling="none"); batchnorm uses its running averages."""
        if self.pooling != "none" or not self.causal:
            fail("step: needs a causal model with pooling='none'")
        x = self.embed(inputs_t)
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block.step(x, s)
            new_state.append(s)
        if self.final_norm is not None:
            x = apply_norm(self.final_norm, x)
        return self.head(x), tuple(new_state)
