"""Subprocess side of tests/test_distributed.py: needs a fresh JAX (device count / distributed runtime are
fixed when JAX initializes), so the tests run `python -m tests.multidevice_worker <case> ...` with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (or the JAX_* distributed variables) set. Prints one JSON
line prefixed RESULT; failing comparisons raise (non-zero exit)."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from ssm.model import SequenceModel
from ssm.registry import mixer_factory
from ssm.train import distributed as dist
from ssm.train.optim import make_optimizer
from ssm.train.build import stack_replicas
from ssm.train.guard import new_guard
from ssm.train.step import make_replicas_step, make_train_step
from tests.utils import small_options

B, T, VOCAB, STEPS = 16, 8, 7, 3


def batches(steps: int = STEPS, seed: int = 0):
    """Deterministic (B, T) token batches with per-row lengths (so padding masks take part)."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        lengths = rng.integers(T // 2, T + 1, size=B).astype(np.int32)
        inputs = rng.integers(0, VOCAB, (B, T)).astype(np.int32)
        yield {"inputs": inputs, "targets": np.roll(inputs, 1, axis=1),  # learnable: the previous token
               "weights": (np.arange(T)[None] < lengths[:, None]).astype(np.float32), "lengths": lengths}


def create(mixer: str, seed: int = 0):
    model = SequenceModel(mixer_factory(mixer, **small_options(mixer)), d_model=16, num_layers=1,
                          num_outputs=VOCAB, vocab_size=VOCAB, rngs=nnx.Rngs(seed))
    return model, nnx.Optimizer(model, make_optimizer(model, num_steps=10, lr=1e-2, warmup_steps=1)[0],
                                wrt=nnx.Param)


def replica_steps(mixer: str, mesh, seeds: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """train.py's step for len(seeds) replicas over `mesh` (replica k: parameters from seeds[k], batches of
    `batches(seed=seeds[k])`): losses (STEPS, S) and the final stacked parameters."""
    graphdef = nnx.split(create(mixer))[0]
    state = dist.replicate(stack_replicas([nnx.split(create(mixer, s))[1] for s in seeds]), mesh)
    S = len(seeds)
    step = make_replicas_step(graphdef, seeds=seeds, state_sharding=dist.replicated(mesh),
                              batch_sharding=dist.batch_sharding(mesh, replicas=S > 1))
    guard, losses = dist.replicate(new_guard(S), mesh), []
    for i, per in enumerate(zip(*(batches(seed=s) for s in seeds))):
        batch = per[0] if S == 1 else {k: np.stack([b[k] for b in per]) for k in per[0]}
        state, guard, metrics = step(state, guard, dist.shard_batch(batch, mesh, replicas=S > 1), i)
        losses.append(np.reshape(np.asarray(metrics["loss"]), (S,)))
    params = nnx.state(nnx.merge(graphdef, state)[0], nnx.Param)
    return np.array(losses), [np.asarray(x) for x in jax.tree.leaves(params)]


def seeds_equal_single_runs(mixer: str) -> dict:
    """2 replicas data-parallel over 8 devices (batch (2, B, ...) sharded over B): the same losses and
    parameters (rtol 1e-5) as each seed's single run on 1 device."""
    assert jax.device_count() == 8, jax.device_count()
    one = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), (dist.DATA, dist.MODEL))
    losses, params = replica_steps(mixer, dist.make_mesh(), [3, 4])
    for k, seed in enumerate((3, 4)):
        l1, p1 = replica_steps(mixer, one, [seed])
        np.testing.assert_allclose(losses[:, k], l1[:, 0], rtol=1e-5, err_msg=f"replica {k}: losses")
        for a, b in zip(params, p1):
            np.testing.assert_allclose(a[k], b, rtol=1e-5, atol=1e-7, err_msg=f"replica {k}: parameters")
    assert not np.allclose(losses[:, 0], losses[:, 1]), "the replicas should differ"
    return {"losses": losses.tolist()}


def train_steps(mixer: str, mesh) -> tuple[list[float], list[np.ndarray]]:
    """Losses of STEPS training steps over `mesh` and the final parameters (as NumPy leaves)."""
    def create():
        model = SequenceModel(mixer_factory(mixer, **small_options(mixer)), d_model=16, num_layers=1,
                              num_outputs=VOCAB, vocab_size=VOCAB, rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, make_optimizer(model, num_steps=10, lr=1e-2, warmup_steps=1)[0],
                                    wrt=nnx.Param)

    graphdef, state = nnx.split(create())
    state = dist.replicate(state, mesh)
    step = make_train_step(graphdef, state_sharding=dist.replicated(mesh), batch_sharding=dist.batch_sharding(mesh))
    losses = []
    for batch in batches():
        state, metrics = step(state, dist.shard_batch(batch, mesh), None)
        losses.append(float(metrics["loss"]))
    params = nnx.state(nnx.merge(graphdef, state)[0], nnx.Param)
    return losses, [np.asarray(x) for x in jax.tree.leaves(params)]


def equal_to_one_device(mixers: list[str]) -> dict:
    """Same losses and parameters (rtol 1e-5) on a 1-device mesh and an all-device data-parallel mesh."""
    assert jax.device_count() == 8, jax.device_count()
    one = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), (dist.DATA, dist.MODEL))
    out = {}
    for mixer in mixers:
        l1, p1 = train_steps(mixer, one)
        l8, p8 = train_steps(mixer, dist.make_mesh())
        np.testing.assert_allclose(l8, l1, rtol=1e-5, err_msg=f"{mixer}: losses")
        for a, b in zip(p8, p1):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{mixer}: parameters")
        assert l1[-1] < l1[0], f"{mixer}: loss did not go down: {l1}"
        out[mixer] = {"losses_1": l1, "losses_8": l8}
    return out


def two_process_step(mixer: str) -> dict:
    """Run under jax.distributed (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set): each
    process feeds its half of every global batch; returns losses and a parameter checksum to compare."""
    assert dist.initialize(True) and jax.process_count() == 2, jax.process_count()
    mesh = dist.make_mesh()
    losses, params = train_steps(mixer, mesh)
    return {"process": jax.process_index(), "devices": jax.device_count(), "rows": dist.local_rows(B, mesh),
            "losses": losses, "param_sum": float(sum(np.abs(p).sum() for p in params))}


if __name__ == "__main__":
    case, *args = sys.argv[1:]
    result = {"equal": lambda: equal_to_one_device(args), "two_process": lambda: two_process_step(args[0]),
              "seeds": lambda: seeds_equal_single_runs(args[0])}[case]()
    print("RESULT " + json.dumps(result), flush=True)
