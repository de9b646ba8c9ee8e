"""The functional, jitted, donated train step and the eval step over `nnx.split((model, optimizer))`.

    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef)        # jit(donate state)
    state, metrics = train_step(state, batch, key)

train.py's step (`make_replicas_step`) is the same update for S replicas at once (train.num_seeds): `jax.vmap`
over states stacked on a leading replica axis and batches (S, B, ...), each replica with its own dropout keys
and non-finite guard. Batches and the objective: ssm/train/objective.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssm.train.guard import select_if_finite, update_guard
from ssm.train.objective import loss_and_accuracy, per_target


def _update(graphdef, lr_schedule):
    """`(state, batch, key, active) -> (state, metrics)`: one AdamW step, applied only where `active` and
    the loss and gradient norm are finite (else the old state, metrics["nonfinite"] = not finite)."""

    def update(state, batch, key, active=True):
        old_leaves = jax.tree.leaves(state)
        model, optimizer = nnx.merge(graphdef, state)

        loss_fn = lambda model: loss_and_accuracy(model, batch, key, train=True)  # batchnorm: batch stats
        (loss, accuracy), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "nonfinite": ~finite}
        if lr_schedule is not None:
            metrics["lr"] = lr_schedule(optimizer.step[...])
        optimizer.update(model, grads)
        return select_if_finite(finite & active, nnx.state((model, optimizer)), old_leaves), metrics

    return update


def make_train_step(graphdef, lr_schedule=None, *, state_sharding=None, batch_sharding=None):
    """`(state, batch, key) -> (state, metrics)`, jitted with the state donated. A step whose loss
    or gradient norm is not finite is not applied (state returned unchanged, metrics["nonfinite"] = True).

    With shardings (ssm/train/distributed.py) the step is jitted with them as in/out shardings: state as
    `state_sharding` (e.g. replicated), batch as `batch_sharding` (over "data"), metrics replicated; XLA
    then all-reduces the gradients over the data axis itself."""
    update = _update(graphdef, lr_schedule)
    train_step = lambda state, batch, key: update(state, batch, key)
    if state_sharding is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated = _replicated_like(state_sharding)
    return jax.jit(train_step, donate_argnums=0, in_shardings=(state_sharding, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated))


def make_replicas_step(graphdef, lr_schedule=None, *, seeds: list[int], dropout: bool = False,
                       nonfinite_limit: int = 10, state_sharding=None, batch_sharding=None):
    """`(state, guard, batch, step) -> (state, guard, metrics)` for len(seeds) = S replicas, jitted with
    state and guard donated. S = 1: the state and batch (B, ...) of a single run, metrics scalars; S > 1:
    every leaf of state / batch with a leading replica axis (S, ...), metrics (S,).

    Replica k draws its dropout key from (seeds[k], step) as a single run with that seed does; its update is
    skipped when non-finite or when its guard (ssm/train/guard.py, counters (S,)) has frozen it; it freezes
    after `nonfinite_limit` skips in a row. `step` is the 0-based step being taken."""
    update = _update(graphdef, lr_schedule)

    def one(state, guard, batch, seed, step):
        key = jax.random.fold_in(jax.random.key(seed), step) if dropout else None
        state, metrics = update(state, batch, key, ~guard["frozen"])
        return state, update_guard(guard, metrics["nonfinite"], step, nonfinite_limit), metrics

    seeds = jnp.asarray(seeds, jnp.int32)
    if len(seeds) == 1:
        step_fn = lambda state, guard, batch, step: one(state, guard, batch, seeds[0], step)
    else:
        vmapped = jax.vmap(one, in_axes=(0, 0, 0, 0, None))
        step_fn = lambda state, guard, batch, step: vmapped(state, guard, batch, seeds, step)
    if state_sharding is None:
        return jax.jit(step_fn, donate_argnums=(0, 1))
    replicated = _replicated_like(state_sharding)
    return jax.jit(step_fn, donate_argnums=(0, 1),
                   in_shardings=(state_sharding, replicated, batch_sharding, replicated),
                   out_shardings=(state_sharding, replicated, replicated))


def _replicated_like(sharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())


def make_eval_step(graphdef, *, num_seeds: int = 1, state_sharding=None, batch_sharding=None,
                   step_rescale: float = 1.0):
    """`(state, batch) -> {'nll', 'correct', 'weights'}` per target (host code aggregates them); with
    num_seeds = S > 1 the state is stacked, the batch shared, and each output gets a leading axis (S, ...).
    With shardings the outputs are replicated, so every process can read them. `step_rescale` multiplies every
    mixer's step size Δ in evaluation only (`SequenceModel.rescale_steps`; model.eval_step_rescale)."""

    def eval_step(state, batch):
        model, _ = nnx.merge(graphdef, state)
        if step_rescale != 1.0:
            model.rescale_steps(step_rescale)
        nll, correct = per_target(model, batch)
        return {"nll": nll, "correct": correct, "weights": batch["weights"]}

    if num_seeds > 1:
        eval_step = jax.vmap(eval_step, in_axes=(0, None))
    if state_sharding is None:
        return jax.jit(eval_step)
    return jax.jit(eval_step, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=_replicated_like(state_sharding))
