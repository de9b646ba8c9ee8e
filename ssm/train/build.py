"""Building a run from its config: the model, the optimizer and the learning-rate schedules. The one place
where train.py (ssm/train/loop.py), experiments/ and bench/ construct them.

    built = build(config)                        # initialized (under one jit), split: graphdef + state
    model, optimizer = built.merge()
    built = build(config, abstract=True)         # shapes only: a template to restore a checkpoint into
    model = build_model(config)                  # just the model, initialized from config["seed"]

With train.num_seeds = S > 1 the state is S replicas stacked on a leading axis of every leaf (replica k
initialized from seed + k, exactly as a single run with that seed); `built.replica(k)` is one of them.

`config` is the plain nested dict of a training config (configs/base.py): model.* and the task's data.*
(which sets the vocabulary and the number of classes; give `vocab_size=` (or `input_dim=`) / `num_outputs=` /
`pooling=` to build without a task, e.g. for benchmarks on random tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from flax import nnx

from ssm.model import SequenceModel
from ssm.registry import get_task, mixer_factory
from ssm.train.optim import make_optimizer, parse_group_overrides


def model_io(config: dict, vocab_size: int | None = None, num_outputs: int | None = None,
             pooling: str | None = None, input_dim: int | None = None) -> dict:
    """The model's inputs (token vocabulary `vocab_size`, or `input_dim` features), number of outputs and
    pooling for config's task (given ones win; with the inputs, num_outputs and pooling all given, the task
    is not consulted: a dataset task need not be read)."""
    m, d = config["model"], config["data"]
    given = {"vocab_size": vocab_size} if input_dim is None else {"input_dim": input_dim}
    if (vocab_size is None and input_dim is None) or num_outputs is None or pooling is None:
        task = get_task(d["task"], d)
        inputs = given if vocab_size is not None or input_dim is not None else task.model_inputs(d)
        num_outputs = task.num_classes(d) if num_outputs is None else num_outputs
        pooling = (m["pooling"] if task.output == "pooled" else "none") if pooling is None else pooling
    else:
        inputs = given
    return {**inputs, "num_outputs": num_outputs, "pooling": pooling}


def build_model(config: dict, seed=None, **io) -> SequenceModel:
    """The SequenceModel of config["model"] (mixer options from model.<mixer>), parameters drawn from
    `seed` (default config["seed"]; an int or a traced integer scalar)."""
    m = config["model"]
    seed = config["seed"] if seed is None else seed
    return SequenceModel(
        mixer_factory(m["mixer"], **m.get(m["mixer"], {})), d_model=m["d_model"], num_layers=m["num_layers"],
        **model_io(config, **io), block=m.get("block", "prenorm_mlp"), mlp=m["mlp"], mlp_ratio=m["mlp_ratio"],
        norm=m["norm"], bn_momentum=m.get("bn_momentum", 0.95), s5_activation=m.get("s5_activation", "half_glu1"),
        s5_prenorm=m.get("s5_prenorm", True), final_norm=m.get("final_norm", True), dropout=m["dropout"],
        dtype=m.get("dtype", "float32"), remat=m.get("remat", False),
        remat_policy=m.get("remat_policy", "nothing_saveable"), rngs=nnx.Rngs(params=jax.random.key(seed)))


def build_optimizer(model: nnx.Module, config: dict):
    """(optax transformation, {"lr": schedule, "ssm_lr": schedule}) from config["optim"] and train.num_steps."""
    o = config["optim"]
    return make_optimizer(model, num_steps=config["train"]["num_steps"], lr=o["lr"], ssm_lr=o["ssm_lr"],
                          weight_decay=o["weight_decay"], b1=o["b1"], b2=o["b2"], clip_norm=o["clip_norm"],
                          warmup_steps=o["warmup_steps"], min_lr_ratio=o["min_lr_ratio"], schedule_kind=o["schedule"],
                          group_overrides=parse_group_overrides(o.get("mixer_param_groups", "")))


@dataclasses.dataclass
class Built:
    """A model and its optimizer, split: `graphdef` (static structure) and `state` (the arrays; abstract
    `jax.ShapeDtypeStruct`s with `build(..., abstract=True)`); `schedules` {"lr", "ssm_lr"}: step -> rate."""

    graphdef: Any
    state: Any
    schedules: dict[str, Callable]
    num_seeds: int = 1

    def merge(self, state=None):
        """(model, optimizer) over `state` (default: the built one; with num_seeds > 1 pass one replica's)."""
        return nnx.merge(self.graphdef, self.state if state is None else state)

    def replica(self, k: int):
        """The state of replica k (the whole state when num_seeds = 1)."""
        return replica_state(self.state, k, self.num_seeds)


def replica_state(state, k: int, num_seeds: int):
    """Replica k of a state stacked over `num_seeds` replicas (a num_seeds = 1 state is returned as is)."""
    return state if num_seeds == 1 else jax.tree.map(lambda x: x[k], state)


def stack_replicas(states: list):
    """One state from replicas' states: every leaf gets a leading replica axis (len(states) > 1)."""
    if len(states) == 1:
        return states[0]
    return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *states)


def build(config: dict, *, abstract: bool = False, **io) -> Built:
    """Model + AdamW optimizer (parameter groups, warmup + cosine) of `config`, initialized in one jit; with
    train.num_seeds = S > 1, S replicas (seeds seed .. seed + S - 1) stacked on a leading axis."""
    num_seeds = config.get("train", {}).get("num_seeds", 1)

    def create(seed):
        model = build_model(config, seed=seed, **io)
        return model, nnx.Optimizer(model, build_optimizer(model, config)[0], wrt=nnx.Param)

    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: create(config["seed"])))
    schedules = build_optimizer(nnx.merge(graphdef, abstract_state)[0], config)[1]
    if abstract:
        if num_seeds > 1:
            abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_seeds, *x.shape), x.dtype),
                                          abstract_state)
        return Built(graphdef, abstract_state, schedules, num_seeds)
    seeds = [config["seed"] + k for k in range(num_seeds)]
    return Built(graphdef, stack_replicas(_initialize(create, seeds)), schedules, num_seeds)


_NOT_TRACEABLE = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                  jax.errors.TracerIntegerConversionError)


def _initialize(create, seeds: list[int]) -> list:
    """The states of `create(seed)` for each seed, initialized by one jitted function of the seed (one
    compilation, the same code for every seed and for a single run); layers whose init needs concrete values
    (NumPy on parameters) are built eagerly."""
    init = jax.jit(lambda seed: nnx.state(create(seed)))
    try:
        return [init(jax.numpy.int32(seed)) for seed in seeds]
    except _NOT_TRACEABLE:
        return [nnx.state(create(seed)) for seed in seeds]
