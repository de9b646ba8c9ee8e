"""Multi-device and multi-host layout of a training run, all through JAX's own runtime (no home-made machinery).

    initialize(distributed)          jax.distributed.initialize() when asked (config or SSM_DISTRIBUTED=1)
    mesh = make_mesh(data=-1)        a ("data", "model") mesh over every device of every process
    state = replicate(state, mesh)   parameters + optimizer state: one full copy per device
    lo, hi = local_rows(global_batch_size, mesh)   this process's rows of every global batch
    batch = global_batch(local, mesh)              (B_local, ...) NumPy -> (B, ...) jax.Array sharded over "data"
    batch = shard_batch(batch, mesh, replicas=True)   S replicas' batches (S, B, ...): B sharded over "data"

The step is jitted with these shardings (ssm/train/step.py), so XLA inserts the gradient all-reduce itself.
Each process loads the (deterministic) dataset, takes rows [lo, hi) of each global batch and hands them to
`jax.make_array_from_process_local_data`; with one process this is the whole batch. The time axis is never
sharded (the recurrence runs along it); the "model" axis is reserved for sharding heads / channels later.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ssm.checks import fail

DATA, MODEL = "data", "model"
ENV_FLAG = "SSM_DISTRIBUTED"


def initialize(distributed: bool = False) -> bool:
    """Call `jax.distributed.initialize()` if `distributed` or $SSM_DISTRIBUTED=1 (once; before any JAX op).

    On TPU pods, SLURM, Open MPI, GKE and the like JAX finds the coordinator and process ids itself. Elsewhere
    (e.g. several processes on one machine) set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID. Returns whether the distributed runtime is (now) initialized."""
    if not (distributed or os.environ.get(ENV_FLAG, "0") not in ("", "0", "false", "False")):
        return False
    if jax.distributed.is_initialized():
        return True
    env_int = lambda name: int(os.environ[name]) if os.environ.get(name) else None
    jax.distributed.initialize(coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS") or None,
                               num_processes=env_int("JAX_NUM_PROCESSES"), process_id=env_int("JAX_PROCESS_ID"))
    return True


def is_main_process() -> bool:
    """True on process 0: the one that prints, writes metrics.jsonl / summary.json / config.json."""
    return jax.process_index() == 0


def make_mesh(data: int = -1, model: int = 1) -> jax.sharding.Mesh:
    """A (data, model) mesh over all devices; data=-1 takes every device not used by the model axis."""
    n = jax.device_count()
    if model < 1 or n % model:
        fail(f"mesh.model: expected a positive divisor of the {n} devices, got {model!r}")
    if data == -1:
        data = n // model
    if data < 1 or data * model != n:
        fail(f"mesh.data: data × model must equal the number of devices ({n}), got data={data}, model={model}")
    return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh, replicas: bool = False) -> NamedSharding:
    """The batch axis over "data", everything else (time, features) unsharded; the batch axis leads, or
    with `replicas` (stacked batches (S, B, ...) of train.num_seeds > 1) comes second."""
    return NamedSharding(mesh, P(None, DATA) if replicas else P(DATA))


def replicate(tree, mesh):
    """Put every leaf of `tree` (params, optimizer state) on every device of `mesh`."""
    return jax.device_put(tree, replicated(mesh))


def check_batch_size(name: str, batch_size: int, mesh) -> None:
    n = mesh.shape[DATA]
    if batch_size % n or batch_size % jax.process_count():
        fail(f"{name}: {batch_size} must be divisible by the {n} data-parallel devices "
             f"and the {jax.process_count()} processes")


def local_rows(global_batch_size: int, mesh) -> tuple[int, int]:
    """Rows [lo, hi) of each global batch that this process loads: those of its own devices' shards."""
    check_batch_size("batch size", global_batch_size, mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
    rows = [(s[0].start or 0, global_batch_size if s[0].stop is None else s[0].stop) for s in index_map.values()]
    lo, hi = min(r[0] for r in rows), max(r[1] for r in rows)
    if hi - lo != global_batch_size // jax.process_count():
        fail("mesh: this process's devices do not hold one contiguous block of the batch")
    return lo, hi


def global_batch(local: dict, mesh, global_batch_size: int, replicas: bool = False):
    """Dict of this process's (B_local, ...) NumPy arrays -> dict of global (B, ...) arrays over "data";
    with `replicas`, (S, B_local, ...) -> (S, B, ...)."""
    sharding = batch_sharding(mesh, replicas)
    shape = lambda v: (*v.shape[:int(replicas)], global_batch_size, *v.shape[int(replicas) + 1:])
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v), shape(v)) for k, v in local.items()}


def shard_batch(batch: dict, mesh, replicas: bool = False):
    """A full global batch present on every process (e.g. in tests, eval) -> global arrays; each process
    contributes its own rows (of each replica's batch, with `replicas`)."""
    axis = int(replicas)
    B = next(iter(batch.values())).shape[axis]
    lo, hi = local_rows(B, mesh)
    return global_batch({k: v[:, lo:hi] if replicas else v[lo:hi] for k, v in batch.items()}, mesh, B, replicas)
