"""Names used in configs → mixers and tasks (plain arguments; no ConfigDict here).

Mixer classes are imported lazily inside their factory so that a missing optional layer only matters when
it is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from ssm.checks import check_choice, fail

# name -> (module, class, the model-config fields passed to the constructor as keyword arguments)
MIXERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "s4d": ("ssm.layers.s4d", "S4D", ("state_size", "init")),
    "s5": ("ssm.layers.s5", "S5", ("state_size", "clip_eigs", "init")),
    "deltanet": ("ssm.layers.deltanet", "DeltaNet", ("num_heads", "allow_neg_eigval")),
    "deltaproduct": ("ssm.layers.deltanet", "DeltaProduct",
                     ("num_heads", "num_householder", "allow_neg_eigval", "use_forget_gate")),
    # Gated diagonal linear RNN (Mamba-like baseline; ssm/layers/diag.py).
    "diag": ("ssm.layers.diag", "DiagonalRNN", ("state_size", "allow_neg_eigval")),
}


def mixer_class(name: str):
    """The class registered as `name` (imported now)."""
    check_choice("model.mixer", name, MIXERS)
    module, cls, _ = MIXERS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        fail(f"model.mixer: {name!r} needs {module}.{cls}, which is not available ({e})")


def mixer_factory(name: str, **options: Any) -> Callable:
    """`(d_model, rngs) -> mixer` for the mixer `name`; `options` may hold any model fields, only the ones
    this mixer takes (MIXERS[name][2]) are passed on; an empty string means the layer's default."""
    check_choice("model.mixer", name, MIXERS)
    kwargs = {k: options[k] for k in MIXERS[name][2] if k in options and options[k] != ""}

    def make(d_model: int, rngs):
        return mixer_class(name)(d_model, rngs=rngs, **kwargs)

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
            tasks.make_char_lm, lambda d, s: {"path": d["path"], "split": s, "seq_len": d["seq_len"]},
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
