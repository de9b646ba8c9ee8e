"""Building a run from its config: the model, the optimizer and the learning-rate schedules. The one place
where train.py (ssm/train/loop.py), experiments/ and bench/ construct them.

    built = build(config)                        # initialized (under one jit), split: graphdef + state
    model, optimizer = built.merge()
    built = build(config, abstract=True)         # shapes only: a template to restore a checkpoint into
    model = build_model(config)                  # just the model, initialized from config["seed"]

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


def build_model(config: dict, **io) -> SequenceModel:
    """The SequenceModel of config["model"] (mixer options from model.<mixer>), parameters drawn from
    config["seed"]."""
    m = config["model"]
    return SequenceModel(
        mixer_factory(m["mixer"], **m.get(m["mixer"], {})), d_model=m["d_model"], num_layers=m["num_layers"],
        **model_io(config, **io), block=m.get("block", "prenorm_mlp"), mlp=m["mlp"], mlp_ratio=m["mlp_ratio"],
        norm=m["norm"], bn_momentum=m.get("bn_momentum", 0.95), s5_activation=m.get("s5_activation", "half_glu1"),
        s5_prenorm=m.get("s5_prenorm", True), final_norm=m.get("final_norm", True), dropout=m["dropout"],
        dtype=m.get("dtype", "float32"), remat=m.get("remat", False),
        remat_policy=m.get("remat_policy", "nothing_saveable"), rngs=nnx.Rngs(params=config["seed"]))


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

    def merge(self, state=None):
        """(model, optimizer) over `state` (default: the built one)."""
        return nnx.merge(self.graphdef, self.state if state is None else state)


def build(config: dict, *, abstract: bool = False, **io) -> Built:
    """Model + AdamW optimizer (parameter groups, warmup + cosine) of `config`, initialized in one jit."""

    def create():
        model = build_model(config, **io)
        return model, nnx.Optimizer(model, build_optimizer(model, config)[0], wrt=nnx.Param)

    graphdef, abstract_state = nnx.split(nnx.eval_shape(create))
    schedules = build_optimizer(nnx.merge(graphdef, abstract_state)[0], config)[1]
    if abstract:
        return Built(graphdef, abstract_state, schedules)
    return Built(graphdef, _initialize(create), schedules)


_NOT_TRACEABLE = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                  jax.errors.TracerIntegerConversionError)


def _initialize(create):
    """The state of `create()`, initialized inside one jit (one compilation instead of one per initializer
    op); layers whose init needs concrete values (NumPy on parameters) are built eagerly."""
    try:
        return jax.jit(lambda: nnx.state(create()))()
    except _NOT_TRACEABLE:
        return nnx.state(create())
