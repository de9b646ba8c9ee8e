"""Keeping a run alive and honest: the non-finite guard and graceful stops on SIGTERM / SIGINT.

Non-finite guard (inside the jitted step, no extra host sync):
    ok = isfinite(loss) & isfinite(grad_norm)
    state = select_if_finite(ok, new_state, old_state)    # a bad batch changes nothing (not even the step)
The step also counts skipped steps per replica (`update_guard`, counters carried next to the state and
saved in each checkpoint's meta); with policy "stop" (or after `max_nonfinite_in_a_row` skips in a row with
"skip") a replica is frozen (no further update). The loop reads the counters when it fetches the metrics it
logs anyway: a frozen replica is reported with the first module whose output is non-finite
(`locate_nonfinite`, a re-run of the bad batch that records every module's output); when every replica is
frozen (a single run: its one replica) it raises `NonFiniteError`.
"""

from __future__ import annotations

import signal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm.train.objective import forward, loss_and_grads


class NonFiniteError(RuntimeError):
    """Training stopped on non-finite losses/gradients; the last good checkpoint is kept."""


class Interrupted(Exception):
    """SIGTERM / SIGINT arrived; a checkpoint was saved. `exit_code` = 128 + signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


# ------------------------------------------------------------------------------------ non-finite guard
def all_finite(*trees) -> jax.Array:
    """Scalar bool: every floating leaf of every tree is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def select_if_finite(ok, new_state, old_leaves: list):
    """`new_state` where `ok` (scalar bool) else the state whose leaves are `old_leaves` (taken with
    jax.tree.leaves before the update), leaf by leaf; traced, so no host sync."""
    new_leaves, treedef = jax.tree.flatten(new_state)
    if len(new_leaves) != len(old_leaves):
        raise AssertionError(f"state has {len(new_leaves)} leaves after the update, {len(old_leaves)} before")
    return jax.tree.unflatten(treedef, [_where(ok, n, o) for n, o in zip(new_leaves, old_leaves)])


def _where(ok, new, old):
    if jnp.issubdtype(jnp.result_type(new), jax.dtypes.prng_key):  # typed PRNG keys: select their data
        data = jnp.where(ok, jax.random.key_data(new), jax.random.key_data(old))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(new))
    return jnp.where(ok, new, old)


def _first_nonfinite_param(model) -> str | None:
    for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if not np.all(np.isfinite(np.asarray(v[...]))):
            return ".".join(map(str, path))
    return None


def _forward_order(model) -> list[tuple]:
    """Module paths of a `SequenceModel` in the order its forward pass computes their outputs."""
    order = [("embed",)]
    for i, block in enumerate(model.blocks):
        order += [("blocks", i, part) for part in block.parts] + [("blocks", i)]
    return order + [("final_norm",), ("pair_proj",), ("head",)]


def locate_nonfinite(model, batch: dict) -> str:
    """Where a non-finite loss/gradient on `batch` comes from: a parameter, the first module output (in
    the order of the forward pass: embedding, block i's mixer (and which of its parts) / MLP, final norm,
    head), the loss, or the gradient of a parameter.

    Re-runs the train objective once (under jit), recording every module's output with `nnx.capture` (what
    the model computes, not a restatement of its forward pass). Best effort: returns a phrase for the error
    message."""
    bad = _first_nonfinite_param(model)
    if bad:
        return f"parameter {bad} is already non-finite"
    finite = lambda y: all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(y)
                           if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact))
    try:
        record = nnx.capture(lambda m, b: forward(m, b, train=True), nnx.Intermediate,
                             method_outputs=nnx.Intermediate)
        _, outputs = nnx.jit(record)(model, batch)
    except Exception as e:  # noqa: BLE001 — a debugging aid must never hide the original problem
        return f"(could not re-run the model: {type(e).__name__})"
    nonfinite = {path[:-1] for path, v in nnx.to_flat_state(outputs)
                 if path[-1] == "__call__" and not finite(v.get_value() if isinstance(v, nnx.Variable) else v)}
    for path in _forward_order(model):
        if path in nonfinite:
            module = model
            for p in path:
                module = module[p] if isinstance(p, int) else getattr(module, p)
            parts = sorted(".".join(map(str, q[len(path):])) for q in nonfinite
                           if len(q) > len(path) and q[:len(path)] == path)
            inside = f"; non-finite inside: {', '.join(parts[:4])}" if parts else ""
            return f"output of {'.'.join(map(str, path))} ({type(module).__name__}{inside})"
    loss, grads = nnx.jit(loss_and_grads)(model, batch)  # one compilation instead of one per op
    if not finite(loss):
        return "the loss (the forward pass is finite: check the targets and weights of the batch)"
    for path, g in nnx.to_flat_state(grads):
        if not finite(g[...] if isinstance(g, nnx.Variable) else g):
            return f"the gradient of {'.'.join(map(str, path))} (the forward pass and loss are finite)"
    return "nowhere on a re-run (the non-finite value did not reproduce)"


# ------------------------------------------------------------------------------------- graceful stops
class StopSignals:
    """Context manager: SIGTERM / SIGINT set `self.signum` instead of killing the process, so the loop can
    save a checkpoint at the end of the current step and raise `Interrupted`. A second signal of the same
    kind while saving falls back to the default behaviour (kill / KeyboardInterrupt)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # asked twice: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.signum = signum

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread (e.g. a notebook worker): signals stay as they are
            self._previous = {}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


def nonfinite_limit(policy: str = "skip", max_in_a_row: int = 10) -> int:
    """Skips in a row that freeze a replica: 1 for policy "stop", `max_in_a_row` for "skip" (0 = never)."""
    return 1 if policy == "stop" else max_in_a_row


def new_guard(num_seeds: int = 1) -> dict:
    """The guard's per-replica counters (shape () for one replica, (S,) for S): `skipped` steps in all,
    `in_a_row` (the current streak), `streak_start` (0-based step where it began), `frozen`."""
    shape = () if num_seeds == 1 else (num_seeds,)
    zeros = lambda dtype: jnp.zeros(shape, dtype)
    return {"skipped": zeros(jnp.int32), "in_a_row": zeros(jnp.int32), "streak_start": zeros(jnp.int32),
            "frozen": zeros(jnp.bool_)}


def update_guard(guard: dict, nonfinite, step, limit: int) -> dict:
    """The counters after (0-based) `step`, whose loss/gradient was non-finite where `nonfinite`. A frozen
    replica's counters no longer change; a replica freezes when its streak reaches `limit` (> 0). Traced
    (inside the jitted step); elementwise, so it serves one replica or S at once."""
    active = ~guard["frozen"]
    bad = nonfinite & active
    in_a_row = jnp.where(bad, guard["in_a_row"] + 1, jnp.where(active, 0, guard["in_a_row"]))
    streak_start = jnp.where(bad & (guard["in_a_row"] == 0), jnp.asarray(step, jnp.int32), guard["streak_start"])
    frozen = guard["frozen"] | ((limit > 0) & (in_a_row >= limit))
    return {"skipped": guard["skipped"] + bad.astype(jnp.int32), "in_a_row": in_a_row,
            "streak_start": streak_start, "frozen": frozen}
