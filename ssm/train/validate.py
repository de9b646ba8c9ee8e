"""Validation of a training config (plain nested dict) and of the data it produces, before anything is
built or compiled. Every error is a one-line `ssm.checks.ConfigError` naming the field (`data.batch_size`)
and the allowed values or range; train.py prints it without a traceback.

    validate_config(config)            # types, choices, ranges, cross-field constraints, data paths/text,
                                       # one generated example per split, ckpt.best_metric among the task's
                                       # metrics; the model section: ssm/train/model_config.py
    validate_arrays(arrays, vocab, classes, split)   # token ids / labels inside the vocabulary

The run directory's checks (local, creatable, writable): ssm/train/workdir.py.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ssm.checks import fail
from ssm.train.model_config import check_mixer_builds, validate_model_fields

NONFINITE_POLICIES = ("skip", "stop")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
SOLVED_METRICS = ("scaled_accuracy", "accuracy", "loss", "bits_per_char", "sequence_accuracy", "")  # test metrics; "" = off
_SECTIONS = ("model", "data", "optim", "train", "ckpt")


def _kind(value) -> str:
    return type(value).__name__


def _int(cfg: dict, section: str, field: str, lo: int | None = 1, hi: int | None = None) -> None:
    name, v = f"{section}.{field}", cfg[section][field]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        fail(f"{name}: expected an integer, got {v!r} ({_kind(v)})")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        fail(f"{name}: expected an integer in [{lo if lo is not None else '-inf'}, "
             f"{hi if hi is not None else 'inf'}], got {v}")


def _float(cfg: dict, section: str, field: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False, allow_none: bool = False) -> None:
    name, v = f"{section}.{field}", cfg[section][field]
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        fail(f"{name}: expected a finite number, got {v!r} ({_kind(v)})")
    bad = ((lo is not None and (v <= lo if lo_open else v < lo)) or
           (hi is not None and (v >= hi if hi_open else v > hi)))
    if bad:
        left, right = ("(" if lo_open else "[") + str(lo if lo is not None else "-inf"), \
            str(hi if hi is not None else "inf") + (")" if hi_open else "]")
        fail(f"{name}: expected a number in {left}, {right}, got {v}")


def _choice(cfg: dict, section: str, field: str, choices) -> None:
    v = cfg[section][field]
    if v not in tuple(choices):
        fail(f"{section}.{field}: expected one of {', '.join(map(repr, choices))}, got {v!r}")


def _bool(cfg: dict, section: str, field: str) -> None:
    v = cfg[section][field]
    if not isinstance(v, (bool, np.bool_)):
        fail(f"{section}.{field}: expected True or False, got {v!r} ({_kind(v)})")


def _str(cfg: dict, section: str, field: str) -> None:
    v = cfg[section][field]
    if not isinstance(v, str):
        fail(f"{section}.{field}: expected a string, got {v!r} ({_kind(v)})")


# ---------------------------------------------------------------------------------------------- config
def validate_config(config: dict) -> None:
    """Raise ConfigError (one line, naming the field) for any field that cannot make a working run."""
    from ssm.blocks import BLOCKS, MLPS, NORMS, S5_ACTIVATIONS
    from ssm.model import REMAT_POLICIES
    from ssm.registry import MIXERS, TASK_NAMES, get_task, mixer_options

    for section in _SECTIONS:
        if not isinstance(config.get(section), dict):
            fail(f"{section}: missing config section (expected a dict with the {section} fields)")
    if isinstance(config.get("seed"), bool) or not isinstance(config.get("seed"), int) or config["seed"] < 0:
        fail(f"seed: expected a non-negative integer, got {config.get('seed')!r}")

    m = config["model"]
    _choice(config, "model", "mixer", MIXERS)
    for field in ("d_model", "num_layers"):
        _int(config, "model", field)
    validate_model_fields(m)
    _choice(config, "model", "mlp", MLPS)
    _float(config, "model", "mlp_ratio", lo=0.0, lo_open=True)
    _choice(config, "model", "norm", NORMS)
    _float(config, "model", "dropout", lo=0.0, hi=1.0, hi_open=True)
    _choice(config, "model", "pooling", ("mean", "last", "pair"))
    if "dtype" in m:
        _choice(config, "model", "dtype", COMPUTE_DTYPES)
    if "remat" in m:
        _bool(config, "model", "remat")
        _choice(config, "model", "remat_policy", REMAT_POLICIES)
    _validate_block_fields(config, BLOCKS, S5_ACTIVATIONS, mixer_options)

    d = config["data"]
    _choice(config, "data", "task", TASK_NAMES)
    if m["pooling"] == "pair" and get_task(d["task"], d).output == "pooled" and not d.get("second_field"):
        fail("model.pooling: 'pair' encodes the two documents of a pair separately; it needs a dataset of "
             "pairs (data.task='hf_dataset' with data.second_field set)")
    reads = get_task(d["task"], d).load is not None  # checks a dataset task's own fields; num_* = 0: all
    for field in ("batch_size", "num_train", "num_validation", "num_test", "num_buckets"):
        _int(config, "data", field, lo=0 if reads and field.startswith("num_") and field != "num_buckets" else 1)
    if d["num_train"] and d["batch_size"] > d["num_train"]:
        fail(f"data.batch_size: {d['batch_size']} is larger than data.num_train = {d['num_train']}")
    _str(config, "data", "data_dir")
    if "seed" in d:
        _int(config, "data", "seed", lo=0)
    for prefix in ("train", "eval"):
        if f"{prefix}_min_len" in d:
            _int(config, "data", f"{prefix}_min_len", lo=1)
            _int(config, "data", f"{prefix}_max_len", lo=1)
            if d[f"{prefix}_min_len"] > d[f"{prefix}_max_len"]:
                fail(f"data.{prefix}_min_len: expected <= data.{prefix}_max_len = {d[f'{prefix}_max_len']}, "
                     f"got {d[f'{prefix}_min_len']}")
        if f"{prefix}_length" in d:
            _int(config, "data", f"{prefix}_length", lo=1)
    for field in ("seq_len", "modulus", "vocab_size", "num_kv_pairs", "max_depth", "max_args"):
        if field in d:
            _int(config, "data", field, lo=2 if field == "modulus" else 1)
    for field in ("brackets", "mult"):
        if field in d:
            _bool(config, "data", field)
    if d["task"] == "char_lm":
        if "doc_sep" in d:
            _str(config, "data", "doc_sep")
        _validate_text(d)
    if "pack" in d:
        _bool(config, "data", "pack")
        _int(config, "data", "pack_len", lo=0)
    packed = d.get("pack", False)
    if packed and get_task(d["task"], d).output != "token":
        fail(f"data.pack: {d['task']} has one label per sequence (pooled); packing needs per-token targets")
    if packed and d["pack_len"]:
        task = get_task(d["task"], d)
        from ssm.train.data import seq_len_of
        longest = max(seq_len_of(d["task"], task.split_kwargs(d, split)) for split in ("train", "validation"))
        if d["pack_len"] < longest:
            fail(f"data.pack_len: expected 0 or at least the longest example ({longest} tokens), got {d['pack_len']}")

    _check_generator(d)

    t = config["train"]
    for field in ("num_steps", "log_every", "eval_every", "eval_batch_size"):
        _int(config, "train", field)
    if "pack_row_multiple" in t:
        _int(config, "train", "pack_row_multiple")
    for field in ("allow_config_change", "keep_freed_memory", "pack_batches", "pack_eval"):
        if field in t:
            _bool(config, "train", field)
    if "nonfinite_policy" in t:
        _choice(config, "train", "nonfinite_policy", NONFINITE_POLICIES)
    if "max_nonfinite_in_a_row" in t:
        _int(config, "train", "max_nonfinite_in_a_row", lo=0)
    from ssm.train.loggers import check_logging_config

    check_logging_config(t)  # progress_bar, tensorboard, wandb*
    if "num_seeds" in t:
        _int(config, "train", "num_seeds", lo=1)
    if "solved_metric" in t:
        _choice(config, "train", "solved_metric", SOLVED_METRICS)
        _float(config, "train", "solved_threshold")

    _float(config, "optim", "lr", lo=0.0, lo_open=True)
    _float(config, "optim", "ssm_lr", lo=0.0, lo_open=True, allow_none=True)
    _float(config, "optim", "weight_decay", lo=0.0)
    _float(config, "optim", "b1", lo=0.0, hi=1.0, hi_open=True)
    _float(config, "optim", "b2", lo=0.0, hi=1.0, hi_open=True)
    _float(config, "optim", "clip_norm", lo=0.0, allow_none=True)
    _int(config, "optim", "warmup_steps", lo=0, hi=t["num_steps"])
    _float(config, "optim", "min_lr_ratio", lo=0.0, hi=1.0)
    _choice(config, "optim", "schedule", ("cosine", "constant"))
    overrides = {}
    if "mixer_param_groups" in config["optim"]:
        from ssm.train.optim import parse_group_overrides

        _str(config, "optim", "mixer_param_groups")
        overrides = parse_group_overrides(config["optim"]["mixer_param_groups"])

    _int(config, "ckpt", "every")
    _int(config, "ckpt", "keep_last")
    _int(config, "ckpt", "keep_best", lo=0)
    _choice(config, "ckpt", "best_mode", ("min", "max"))
    _check_best_metric(config["ckpt"], get_task(d["task"], d))
    if "async_save" in config["ckpt"]:
        _bool(config, "ckpt", "async_save")
    _check_mesh(config.get("mesh", {}))
    mixer = check_mixer_builds(m)  # last: the constructor's own checks, on an abstract (shape-only) build
    if overrides:
        from ssm.train.optim import check_group_overrides, mixer_param_names
        check_group_overrides(mixer_param_names(mixer), overrides)
    if not getattr(mixer, "causal", False) and get_task(d["task"], d).lm:
        fail(f"model.{m['mixer']}: these options build a bidirectional (non-causal) mixer, which would see the "
             f"characters it predicts; {d['task']} needs a causal one")


def _check_best_metric(c: dict, task) -> None:
    """ckpt.best_metric: one of the scalar metrics the task's evaluation reports (ssm/train/metrics.py),
    ranked the way that metric improves (a checkpoint with the *lowest* accuracy is never wanted)."""
    from ssm.train.metrics import METRIC_MODES, scalar_metrics

    names, metric = scalar_metrics(task.lm, task.bucket_by), c["best_metric"]
    if metric not in names:
        fail(f"ckpt.best_metric: expected one of this task's validation metrics {', '.join(map(repr, names))}, "
             f"got {metric!r}")
    if c["best_mode"] != METRIC_MODES[metric]:
        fail(f"ckpt.best_mode: {metric!r} is better when {'smaller' if METRIC_MODES[metric] == 'min' else 'larger'}"
             f", expected {METRIC_MODES[metric]!r} with ckpt.best_metric={metric!r}, got {c['best_mode']!r}")


def _check_mesh(mesh: dict) -> None:
    """mesh.data (-1 = every device, or >= 1), mesh.model >= 1, mesh.distributed; whether they fit the
    devices is checked when the mesh is made (ssm/train/distributed.py)."""
    cfg = {"mesh": mesh}
    if "data" in mesh:
        _int(cfg, "mesh", "data", lo=-1)
        if mesh["data"] == 0:
            fail("mesh.data: expected -1 (every device) or a positive number of devices, got 0")
    if "model" in mesh:
        _int(cfg, "mesh", "model")
    if "distributed" in mesh:
        _bool(cfg, "mesh", "distributed")


# generator argument -> data field (per split), where the names differ
_SPLIT_FIELDS = {"length": "{prefix}_length", "min_len": "{prefix}_min_len", "max_len": "{prefix}_max_len"}


def _check_generator(d: dict) -> None:
    """Generate one example of each split: the generator's own checks (e.g. MQAR's length >= 4 ·
    num_kv_pairs, a group name) run now, before anything is written or built, with the data field named."""
    from ssm.checks import ConfigError
    from ssm.registry import get_task

    task = get_task(d["task"], d)
    if task.make is None:  # a dataset read from disk / the hub: its fields are checked by the task
        return
    for split in ("train", "validation", "test"):
        kwargs = task.split_kwargs(d, split)
        try:
            task.vocab_size(d), task.num_classes(d)
            task.make(np.random.default_rng(0), 1, **kwargs)
        except ConfigError as e:
            head, sep, rest = str(e).partition(": ")
            prefix = "train" if split == "train" else "eval"
            field = _SPLIT_FIELDS.get(head, "{head}").format(prefix=prefix, head=head)
            if sep and field in d:
                fail(f"data.{field}: {rest}")
            fail(f"data ({d['task']}, {split} split): {e}")


def _validate_block_fields(config: dict, blocks, activations, mixer_options) -> None:
    """The block choice and its options (fields missing from configs written before them are skipped)."""
    m = config["model"]
    if "block" in m:
        _choice(config, "model", "block", blocks)
    if "s5_activation" in m:
        _choice(config, "model", "s5_activation", activations)
    for field in ("s5_prenorm", "final_norm"):
        if field in m:
            _bool(config, "model", field)
    if "bn_momentum" in m:
        _float(config, "model", "bn_momentum", lo=0.0, hi=1.0, hi_open=True)
    if "eval_step_rescale" in m:
        _float(config, "model", "eval_step_rescale", lo=0.0, lo_open=True)
        if m["eval_step_rescale"] != 1.0 and "step_rescale" not in mixer_options(m["mixer"]):
            takers = [n for n in ("s4d", "s5") if "step_rescale" in mixer_options(n)]
            fail(f"model.eval_step_rescale: the {m['mixer']} mixer has no step size to rescale "
                 f"(mixers with a step_rescale option: {', '.join(takers)})")


def _validate_text(d: dict) -> None:
    """char_lm: data.path readable, non-empty, each split long enough for one window of seq_len + 1."""
    from ssm.tasks.char_lm import SPLITS, split_text

    path = d.get("path")
    if not isinstance(path, str) or not path:
        fail(f"data.path: expected the path of a UTF-8 text file or a save_to_disk folder, got {path!r}")
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        fail(f"data.path: no such file or dataset folder: {path!r}")
    if not os.access(full, os.R_OK):
        fail(f"data.path: not readable (permission denied): {path!r}")
    if os.path.isdir(full):
        return  # a datasets folder: its text is checked when it is loaded
    if d.get("doc_sep"):
        return  # examples are document windows of any length (the generator checks there are some)
    try:
        with open(full, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        fail(f"data.path: {path!r} is not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        fail(f"data.path: cannot read {path!r} ({e.strerror})")
    if not text:
        fail(f"data.path: {path!r} is empty")
    need = d["seq_len"] + 1
    for split in SPLITS:
        n = len(split_text(text, split))
        if n < need:
            fail(f"data.path: the {split} split of {path!r} has {n} characters, fewer than "
                 f"data.seq_len + 1 = {need} (use a longer text or a smaller data.seq_len)")


# ------------------------------------------------------------------------------------------------ data
def validate_arrays(arrays: dict, vocab_size: int | None, num_classes: int, split: str) -> None:
    """Token ids in [0, vocab_size) (or finite features when vocab_size is None), targets in
    [0, num_classes), weights finite and >= 0, lengths in [0, T] — a cached or user-supplied dataset that
    breaks these would index out of range silently."""
    inputs, targets = np.asarray(arrays["inputs"]), np.asarray(arrays["targets"])
    if vocab_size is None:
        if not np.all(np.isfinite(inputs)):
            fail(f"data ({split}): feature inputs must be finite")
    elif inputs.size and (inputs.min() < 0 or inputs.max() >= vocab_size):
        fail(f"data ({split}): token ids must lie in [0, vocab_size = {vocab_size}), found "
             f"[{inputs.min()}, {inputs.max()}]")
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        fail(f"data ({split}): targets must lie in [0, num_classes = {num_classes}), found "
             f"[{targets.min()}, {targets.max()}]")
    weights = np.asarray(arrays["weights"])
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        fail(f"data ({split}): weights must be finite and >= 0")
    lengths, T = np.asarray(arrays["lengths"]), inputs.shape[1]
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        fail(f"data ({split}): lengths must lie in [0, T = {T}], found [{lengths.min()}, {lengths.max()}]")
