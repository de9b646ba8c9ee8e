"""Names used in configs → mixer classes and tasks (plain arguments; no ConfigDict here).

A mixer's constructor is its single schema: every keyword argument after `d_model` (except `rngs`) is an
option, with the constructor's default. configs/base.py turns each into a config section
`model.<name>.<option>`; `mixer_factory(name, **options)` checks and passes them on.

Adding a mixer: write the layer (the `Mixer` contract, ssm/layers/mixer.py), add one line to `MIXERS`;
the config section, the validation and the model-level tests (tests/conftest.py) follow from it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable

from ssm.checks import check_choice, fail
from ssm.layers.deltanet import DeltaNet, DeltaProduct, GatedDeltaNet
from ssm.layers.diag import DiagonalRNN
from ssm.layers.s4d import S4D
from ssm.layers.s5 import S5

MIXERS: dict[str, type] = {
    "s4d": S4D,
    "s5": S5,
    "deltanet": DeltaNet,
    "gated_deltanet": GatedDeltaNet,
    "deltaproduct": DeltaProduct,
    "diag": DiagonalRNN,  # gated diagonal linear RNN (Mamba-like baseline)
}

NOT_OPTIONS = ("self", "d_model", "rngs")  # constructor arguments that are not user options
PRIMITIVES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Option:
    """One constructor option: its default and the type a config field holds (`kind`). A dtype default
    (e.g. `param_dtype=jnp.float32`) is held by name (`"float32"`, kind str, `dtype=True`)."""

    name: str
    default: Any
    kind: type
    dtype: bool = False


def mixer_class(name: str) -> type:
    """The class registered as `name`."""
    check_choice("model.mixer", name, MIXERS)
    return MIXERS[name]


def mixer_options(name: str) -> dict[str, Option]:
    """name -> Option for every option of the mixer's constructor, in signature order."""
    return _options(mixer_class(name))


def _options(cls: type) -> dict[str, Option]:
    where = f"{cls.__module__}.{cls.__name__}.__init__"
    hints = typing.get_type_hints(cls.__init__)
    out = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in NOT_OPTIONS:
            continue
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            raise TypeError(f"{where}: list every option explicitly (no *args / **kwargs): they are its config")
        if p.default is p.empty:
            raise TypeError(f"{where}: option {p.name!r} needs a default (the config's default)")
        default = p.default
        if isinstance(default, PRIMITIVES):
            out[p.name] = Option(p.name, default, type(default))
        elif _is_dtype(default):
            out[p.name] = Option(p.name, _dtype(default).name, str, dtype=True)
        elif default is None:
            kinds = [t for t in typing.get_args(hints.get(p.name)) if t in PRIMITIVES]
            if len(kinds) != 1:
                raise TypeError(f"{where}: option {p.name!r} defaults to None; annotate it as `T | None` with T "
                                f"one of bool, int, float, str (the type its config field holds)")
            out[p.name] = Option(p.name, None, kinds[0])
        else:
            raise TypeError(f"{where}: option {p.name!r} has a default of type {type(default).__name__}; "
                            f"config fields hold None, bool, int, float, str or a dtype")
    return out


def _dtype(value):
    import jax.numpy as jnp

    return jnp.dtype(value)


def _is_dtype(value) -> bool:
    import numpy as np

    if isinstance(value, np.dtype):
        return True
    if not isinstance(value, type) or value in PRIMITIVES:
        return False
    try:
        _dtype(value)
        return True
    except TypeError:
        return False


def check_options(name: str, options: dict) -> dict:
    """The keyword arguments for the constructor of mixer `name` from `options` (a config section or the
    keywords of `mixer_factory`): every key must be an option (else a one-line error naming
    `model.<name>.<key>` and the accepted ones); dtype options given by name become dtypes."""
    known = mixer_options(name)
    kwargs = {}
    for key, value in options.items():
        if key not in known:
            fail(f"model.{name}.{key}: not an option of {mixer_class(name).__name__} "
                 f"(accepted: {', '.join(known)})")
        if known[key].dtype and isinstance(value, str):
            try:
                value = _dtype(value)
            except TypeError:
                fail(f"model.{name}.{key}: expected a dtype name such as 'float32', got {value!r}")
        kwargs[key] = value
    return kwargs


def mixer_factory(name: str, **options: Any) -> Callable:
    """`(d_model, rngs) -> mixer` for the mixer `name` with constructor options `options` (checked now)."""
    cls, kwargs = mixer_class(name), check_options(name, options)

    def make(d_model: int, rngs):
        return cls(d_model, rngs=rngs, **kwargs)

    return make


# ----------------------------------------------------------------------------------------------- tasks
@dataclasses.dataclass(frozen=True)
class Task:
    """How the training script uses a generator `make(rng, n, **kwargs)` of ssm.tasks.

    split_kwargs(data, split) -> generator kwargs for that split, from the plain data options `data`.
    vocab_size(data), num_classes(data): model input/output sizes.
    output: "token" (per-token targets) or "pooled" (one label per sequence).
    bucket_by: test metrics per "length" (sequence length) or "position" (prefix length) bucket, or None.
    load(data, split, limit) -> arrays: tasks that read a dataset instead of generating one (make is None).
    input_dim(data): features per step of (B, T, F) float inputs, or None for (B, T) token ids.
    """

    make: Callable | None
    split_kwargs: Callable[[dict, str], dict]
    vocab_size: Callable[[dict], int | None]
    num_classes: Callable[[dict], int]
    output: str = "token"
    bucket_by: str | None = None
    lm: bool = False  # report bits per character
    load: Callable[[dict, str, int], dict] | None = None
    input_dim: Callable[[dict], int | None] = lambda data: None

    def model_inputs(self, data: dict) -> dict:
        """SequenceModel's input keyword: {"input_dim": F} for features, else {"vocab_size": V}."""
        dim = self.input_dim(data)
        return {"input_dim": dim} if dim else {"vocab_size": self.vocab_size(data)}


def _lengths(d: dict, split: str) -> dict:
    prefix = "train" if split == "train" else "eval"
    return {"min_len": d[f"{prefix}_min_len"], "max_len": d[f"{prefix}_max_len"]}


def _tasks() -> dict[str, Task | Callable[[dict], Task]]:
    """name -> Task, or -> a function of the data section returning the Task (datasets read from disk)."""
    from ssm import tasks
    from ssm.tasks import char_lm, formal, listops, word_problem
    from ssm.tasks.hf_dataset import make_task as hf_dataset_task

    return {
        "parity": Task(tasks.make_parity, _lengths, lambda d: formal.PARITY_VOCAB,
                       lambda d: formal.PARITY_CLASSES, bucket_by="length"),
        "mod_arithmetic": Task(
            tasks.make_mod_arithmetic,
            lambda d, s: {**_lengths(d, s), "modulus": d["modulus"], "brackets": d["brackets"], "mult": d["mult"]},
            lambda d: formal.mod_arithmetic_vocab(d["modulus"]), lambda d: d["modulus"], bucket_by="length"),
        "word_problem": Task(
            tasks.make_word_problem,
            lambda d, s: {"group": d["group"], "length": d["train_length" if s == "train" else "eval_length"]},
            lambda d: word_problem.word_problem_vocab(d["group"]),
            lambda d: len(word_problem.group_elements(d["group"])), bucket_by="position"),
        "mqar": Task(
            tasks.make_mqar,
            lambda d, s: {"vocab_size": d["vocab_size"], "num_kv_pairs": d["num_kv_pairs"],
                          "length": d["train_length" if s == "train" else "eval_length"]},
            lambda d: d["vocab_size"], lambda d: d["vocab_size"]),
        "listops": Task(
            tasks.make_listops,
            lambda d, s: {**_lengths(d, s), "max_depth": d["max_depth"], "max_args": d["max_args"]},
            lambda d: listops.LISTOPS_VOCAB, lambda d: listops.LISTOPS_CLASSES, output="pooled"),
        "char_lm": Task(
            tasks.make_char_lm,
            lambda d, s: {"path": d["path"], "split": s, "seq_len": d["seq_len"], "doc_sep": d.get("doc_sep", "")},
            lambda d: char_lm.char_lm_vocab_size(d["path"]), lambda d: char_lm.char_lm_vocab_size(d["path"]),
            lm=True),
        "hf_dataset": hf_dataset_task,  # ssm/tasks/hf_dataset/, docs/datasets.md
    }


TASK_NAMES = ("parity", "mod_arithmetic", "word_problem", "mqar", "listops", "char_lm", "hf_dataset")


def get_task(name: str, data: dict | None = None) -> Task:
    """The task `name`; tasks that read a dataset need their `data` config section to be resolved."""
    check_choice("data.task", name, TASK_NAMES)
    entry = _tasks()[name]
    if isinstance(entry, Task):
        return entry
    if data is None:
        fail(f"data.task: {name!r} depends on its data section: call get_task(name, data)")
    return entry(data)
