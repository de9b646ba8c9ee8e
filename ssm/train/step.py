"""The functional, jitted, donated train step and the eval step over `nnx.split((model, optimizer))`.

    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef)        # jit(donate state)
    state, metrics = train_step(state, batch, key)

Batches are dicts of arrays: inputs (B, T), lengths (B,), targets/weights (B, T) per token or (B,) per
sequence. The loss is the weighted mean cross-entropy over targets with nonzero weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssm.train.guard import select_if_finite


def token_mask(batch) -> jax.Array:
    """(B, T) bool: True at real (non-padding) tokens."""
    T = batch["inputs"].shape[1]
    return jnp.arange(T)[None, :] < batch["lengths"][:, None]


def per_target(model, batch, dropout_key=None):
    """Per-target negative log-likelihood and correctness, shaped like targets ((B, T) or (B,))."""
    logits = model(batch["inputs"], mask=token_mask(batch), dropout_key=dropout_key).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    return nll, correct


def weighted_mean(x, w):
    return (x * w).sum() / jnp.maximum(w.sum(), 1.0)


def make_train_step(graphdef, lr_schedule=None, *, state_sharding=None, batch_sharding=None):
    """`(state, batch, key) -> (state, metrics)`, jitted with the state donated. A step whose loss
    or gradient norm is not finite is not applied (state returned unchanged, metrics["nonfinite"] = True).

    With shardings (ssm/train/distributed.py) the step is jitted with them as in/out shardings: state as
    `state_sharding` (e.g. replicated), batch as `batch_sharding` (over "data"), metrics replicated; XLA
    then all-reduces the gradients over the data axis itself."""

    def train_step(state, batch, key):
        old_leaves = jax.tree.leaves(state)
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model):
            nll, correct = per_target(model, batch, dropout_key=key)
            w = batch["weights"]
            return weighted_mean(nll, w), weighted_mean(correct, w)

        (loss, accuracy), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        grad_norm = optax.tree.norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "nonfinite": ~ok}
        if lr_schedule is not None:
            metrics["lr"] = lr_schedule(optimizer.step[...])
        optimizer.update(model, grads)
        return select_if_finite(ok, nnx.state((model, optimizer)), old_leaves), metrics

    if state_sharding is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated = _replicated_like(state_sharding)
    return jax.jit(train_step, donate_argnums=0, in_shardings=(state_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated))


def _replicated_like(sharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())


def make_eval_step(graphdef, *, state_sharding=None, batch_sharding=None):
    """`(state, batch) -> {'nll', 'correct', 'weights'}` per target (host code aggregates them); with
    shardings the outputs are replicated, so every process can read them."""

    def eval_step(state, batch):
        model, _ = nnx.merge(graphdef, state)
        nll, correct = per_target(model, batch)
        return {"nll": nll, "correct": correct, "weights": batch["weights"]}

    if state_sharding is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=_replicated_like(state_sharding))
