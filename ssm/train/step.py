"""The functional, jitted, donated train step and the eval step over `nnx.split((model, optimizer))`.

    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef)        # jit(donate state)
    state, metrics = train_step(state, batch, key)

Batches and the objective: ssm/train/objective.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssm.train.guard import select_if_finite
from ssm.train.objective import loss_and_accuracy, per_target


def make_train_step(graphdef, lr_schedule=None, *, state_sharding=None, batch_sharding=None):
    """`(state, batch, key) -> (state, metrics)`, jitted with the state donated. A step whose loss
    or gradient norm is not finite is not applied (state returned unchanged, metrics["nonfinite"] = True).

    With shardings (ssm/train/distributed.py) the step is jitted with them as in/out shardings: state as
    `state_sharding` (e.g. replicated), batch as `batch_sharding` (over "data"), metrics replicated; XLA
    then all-reduces the gradients over the data axis itself."""

    def train_step(state, batch, key):
        old_leaves = jax.tree.leaves(state)
        model, optimizer = nnx.merge(graphdef, state)

        loss_fn = lambda model: loss_and_accuracy(model, batch, key, train=True)  # batchnorm: batch stats
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


def make_eval_step(graphdef, *, state_sharding=None, batch_sharding=None, step_rescale: float = 1.0):
    """`(state, batch) -> {'nll', 'correct', 'weights'}` per target (host code aggregates them); with
    shardings the outputs are replicated, so every process can read them. `step_rescale` multiplies every
    mixer's step size Δ in evaluation only (`SequenceModel.rescale_steps`; model.eval_step_rescale)."""

    def eval_step(state, batch):
        model, _ = nnx.merge(graphdef, state)
        if step_rescale != 1.0:
            model.rescale_steps(step_rescale)
        nll, correct = per_target(model, batch)
        return {"nll": nll, "correct": correct, "weights": batch["weights"]}

    if state_sharding is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=_replicated_like(state_sharding))
