"""Validation of a training config (plain nested dict) and of the data it produces, before anything is
built or compiled. Every error is a one-line `ssm.checks.ConfigError` naming the field (`model.num_heads`)
and the allowed values or range; train.py prints it without a traceback.

    validate_config(config)            # types, choices, ranges, cross-field constraints, data paths/text
    validate_arrays(arrays, vocab, classes, split)   # token ids / labels inside the vocabulary
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from ssm.checks import fail

NONFINITE_POLICIES = ("skip", "stop")
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
    from ssm.model import MLPS, NORMS
    from ssm.registry import MIXERS, TASK_NAMES, get_task

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
    _choice(config, "model", "pooling", ("mean", "last"))

    d = config["data"]
    _choice(config, "data", "task", TASK_NAMES)
    for field in ("batch_size", "num_train", "num_validation", "num_test", "num_buckets"):
        _int(config, "data", field)
    if d["batch_size"] > d["num_train"]:
        fail(f"data.batch_size: {d['batch_size']} is larger than data.num_train = {d['num_train']}")
    _str(config, "data", "data_dir")
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
            _int(config, "data", field)
    if d["task"] == "char_lm":
        if "doc_sep" in d:
            _str(config, "data", "doc_sep")
        _validate_text(d)
    if "pack" in d:
        _bool(config, "data", "pack")
        _int(config, "data", "pack_len", lo=0)
    packed = d.get("pack", False)
    if packed and get_task(d["task"]).output != "token":
        fail(f"data.pack: {d['task']} has one label per sequence (pooled); packing needs per-token targets")
    if packed and d["pack_len"]:
        task = get_task(d["task"])
        from ssm.train.data import seq_len_of
        longest = max(seq_len_of(d["task"], task.split_kwargs(d, split)) for split in ("train", "validation"))
        if d["pack_len"] < longest:
            fail(f"data.pack_len: expected 0 or at least the longest example ({longest} tokens), got {d['pack_len']}")

    t = config["train"]
    for field in ("num_steps", "log_every", "eval_every", "eval_batch_size"):
        _int(config, "train", field)
    if "nonfinite_policy" in t:
        _choice(config, "train", "nonfinite_policy", NONFINITE_POLICIES)
    if "max_nonfinite_in_a_row" in t:
        _int(config, "train", "max_nonfinite_in_a_row", lo=0)

    _float(config, "optim", "lr", lo=0.0, lo_open=True)
    _float(config, "optim", "ssm_lr", lo=0.0, lo_open=True, allow_none=True)
    _float(config, "optim", "weight_decay", lo=0.0)
    _float(config, "optim", "b1", lo=0.0, hi=1.0, hi_open=True)
    _float(config, "optim", "b2", lo=0.0, hi=1.0, hi_open=True)
    _float(config, "optim", "clip_norm", lo=0.0, allow_none=True)
    _int(config, "optim", "warmup_steps", lo=0, hi=t["num_steps"])
    _float(config, "optim", "min_lr_ratio", lo=0.0, hi=1.0)
    _choice(config, "optim", "schedule", ("cosine", "constant"))

    _int(config, "ckpt", "every")
    _int(config, "ckpt", "keep_last")
    _int(config, "ckpt", "keep_best", lo=0)
    _choice(config, "ckpt", "best_mode", ("min", "max"))
    _str(config, "ckpt", "best_metric")
    mixer = check_mixer_builds(m)  # last: the constructor's own checks, on an abstract (shape-only) build
    if not getattr(mixer, "causal", False) and get_task(d["task"]).lm:
        fail(f"model.{m['mixer']}: these options build a bidirectional (non-causal) mixer, which would see the "
             f"characters it predicts; {d['task']} needs a causal one")
    if not getattr(mixer, "causal", False) and packed:
        fail(f"data.pack: packed rows need a causal mixer (state reset between examples); model.{m['mixer']} "
             f"builds a bidirectional one")


# ----------------------------------------------------------------------------------------------- model
SHARED_MODEL_FIELDS = ("mixer", "d_model", "num_layers", "mlp", "mlp_ratio", "norm", "dropout", "pooling", "dtype",
                       "remat", "remat_policy")
# model fields of the flat schema, before each mixer got its own section model.<mixer>
MOVED_MODEL_FIELDS = ("num_heads", "state_size", "allow_neg_eigval", "num_householder", "use_forget_gate", "init",
                      "clip_eigs")


# what train.py passed to each mixer from those flat fields (init "" meant the layer's default)
LEGACY_MIXER_FIELDS = {"s4d": ("state_size", "init"), "s5": ("state_size", "clip_eigs", "init"),
                       "deltanet": ("num_heads", "allow_neg_eigval"),
                       "deltaproduct": ("num_heads", "num_householder", "allow_neg_eigval", "use_forget_gate"),
                       "diag": ("state_size", "allow_neg_eigval")}


def migrate_config(config: dict) -> tuple[dict, list[str]]:
    """A saved config (an old run's config.json) in today's form: the flat model fields the chosen mixer
    read move into model.<mixer>, the others (which had no effect) are dropped; data fields added since
    (pack, pack_len, doc_sep) get the values that reproduce the old behaviour. Returns the config and a list
    of 'model.f -> model.<mixer>.f' moves (empty if the model section was already per-mixer)."""
    data = config.get("data", {})
    added = {"pack": False, "pack_len": 0, **({"doc_sep": ""} if data.get("task") == "char_lm" else {})}
    config = {**config, "data": {**added, **data}}  # data fields added since, at their old behaviour
    m = config.get("model", {})
    if not any(k in m for k in MOVED_MODEL_FIELDS):
        return config, []
    mixer = m.get("mixer")
    new = {k: v for k, v in m.items() if k not in MOVED_MODEL_FIELDS}
    section, moved = dict(new.get(mixer, {})), []
    for field in LEGACY_MIXER_FIELDS.get(mixer, ()):
        if field in m and not (field == "init" and m[field] == ""):
            section[field] = m[field]
            moved.append(f"model.{field} -> model.{mixer}.{field}")
    new[mixer] = section
    return {**config, "model": new}, moved


def moved_message(field: str, mixer: str | None = None) -> str:
    """'model.<field>: moved to model.<mixer>.<field>', naming the mixers that have it."""
    from ssm.registry import MIXERS, mixer_options

    takers = [n for n in MIXERS if field in mixer_options(n)]
    where = (f"model.{mixer}.{field}" if mixer in takers else f"model.<mixer>.{field}")
    return (f"model.{field}: moved to {where} (one section per mixer; it is an option of "
            f"{', '.join(takers) or 'no registered mixer'})")


def unknown_field_message(dotted: str) -> str | None:
    """A better message for an unknown config field `dotted` (e.g. from a --config.a.b override), or None."""
    from ssm.registry import MIXERS, check_options

    parts = dotted.split(".")
    if len(parts) == 2 and parts[0] == "model" and parts[1] in MOVED_MODEL_FIELDS:
        return moved_message(parts[1])
    if len(parts) == 3 and parts[0] == "model" and parts[1] in MIXERS:
        try:
            check_options(parts[1], {parts[2]: None})
        except ValueError as e:
            return str(e)
    return None


def validate_model_fields(m: dict) -> None:
    """Every key of the model section is a shared field or a mixer's section; every section holds only that
    mixer's options, each of the type of the constructor's default."""
    from ssm.registry import MIXERS, mixer_options

    for key in m:
        if key in MOVED_MODEL_FIELDS:
            fail(moved_message(key, m.get("mixer")))
        if key not in SHARED_MODEL_FIELDS and key not in MIXERS:
            fail(f"model.{key}: unknown field (shared fields: {', '.join(SHARED_MODEL_FIELDS)}; one section per "
                 f"mixer: {', '.join(f'model.{n}' for n in MIXERS)})")
    for name in MIXERS:
        section = m.get(name, {})
        if not isinstance(section, dict):
            fail(f"model.{name}: expected a section of {name}'s options (a dict), got {section!r}")
        options = mixer_options(name)
        for key, value in section.items():
            if key not in options:
                fail(f"model.{name}.{key}: not an option of {MIXERS[name].__name__} "
                     f"(accepted: {', '.join(options)})")
            _check_kind(f"model.{name}.{key}", value, options[key])


def _check_kind(name: str, value, option) -> None:
    if value is None and option.default is None:
        return
    kind = option.kind
    ok = (isinstance(value, (bool, np.bool_)) if kind is bool else
          isinstance(value, (int, np.integer)) and not isinstance(value, bool) if kind is int else
          isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        fail(f"{name}: expected {'True or False' if kind is bool else kind.__name__}"
             f"{' or None' if option.default is None else ''}, got {value!r} ({_kind(value)})")


def mixer_kwargs(m: dict) -> dict:
    """The constructor keyword arguments of the chosen mixer from its section (missing options: defaults)."""
    from ssm.registry import check_options

    return check_options(m["mixer"], m.get(m["mixer"], {}))


def check_mixer_builds(m: dict):
    """Build the chosen mixer abstractly (`nnx.eval_shape`: shapes only, nothing computed or compiled), so
    that a bad value gets the constructor's own one-line error, with its field named model.<mixer>.<option>.
    Returns the abstract mixer."""
    from flax import nnx

    from ssm.checks import ConfigError
    from ssm.registry import MIXERS, mixer_options

    name, cls = m["mixer"], MIXERS[m["mixer"]]
    kwargs = mixer_kwargs(m)
    try:
        return nnx.eval_shape(lambda: cls(m["d_model"], rngs=nnx.Rngs(0), **kwargs))
    except ConfigError as e:
        head, sep, rest = str(e).partition(": ")
        names = set(mixer_options(name)) | {"d_model"}
        parts = head.replace(",", " ").replace("/", " ").split()
        if sep and parts and all(p in names for p in parts):
            qualify = lambda match: ("model." if match[0] == "d_model" else f"model.{name}.") + match[0]
            fail(re.sub(r"\w+", qualify, head) + f": {rest}")
        fail(f"model.{name}: {e}")
    except (TypeError, ValueError) as e:
        fail(f"model.{name}: {cls.__name__} refused these options ({type(e).__name__}: "
             f"{' '.join(str(e).split())})")


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
def validate_arrays(arrays: dict, vocab_size: int, num_classes: int, split: str) -> None:
    """Token ids in [0, vocab_size), targets in [0, num_classes), weights finite and >= 0, lengths in
    [0, T] — a cached or user-supplied dataset that breaks these would index out of range silently."""
    inputs, targets = np.asarray(arrays["inputs"]), np.asarray(arrays["targets"])
    if inputs.size and (inputs.min() < 0 or inputs.max() >= vocab_size):
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
