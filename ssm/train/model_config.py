"""The model section of a training config: the fields shared by every mixer, and one section per registered
mixer (`model.<mixer>.<option>`, the options of its constructor; ssm/registry.py). Checks (one-line
ConfigErrors naming `model.<mixer>.<option>`), the abstract build that runs the constructor's own checks,
and the migration of configs written before the per-mixer sections (old runs' config.json).
"""

from __future__ import annotations

import re

import numpy as np

from ssm.checks import fail


SHARED_MODEL_FIELDS = ("mixer", "d_model", "num_layers", "block", "mlp", "mlp_ratio", "s5_activation", "s5_prenorm",
                       "norm", "bn_momentum", "final_norm", "dropout", "pooling", "eval_step_rescale", "dtype",
                       "remat", "remat_policy")
# shared model fields added since the first runs, with the values that reproduce the model before them
ADDED_MODEL_FIELDS = {"block": "prenorm_mlp", "s5_activation": "half_glu1", "s5_prenorm": True, "bn_momentum": 0.95,
                      "final_norm": True, "eval_step_rescale": 1.0}
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
    (pack, pack_len, doc_sep; data.seed = the run's seed, which drew its data set before data.seed existed)
    and model fields added since (ADDED_MODEL_FIELDS) get the values that reproduce the old behaviour.
    Returns the config and a list of 'model.f -> model.<mixer>.f' moves (empty if the model section was
    already per-mixer)."""
    data = config.get("data", {})
    added = {"pack": False, "pack_len": 0, "seed": config.get("seed", 0),
             **({"doc_sep": ""} if data.get("task") == "char_lm" else {})}
    config = {**config, "data": {**added, **data}}  # data fields added since, at their old behaviour
    if "model" in config:
        config["model"] = {**ADDED_MODEL_FIELDS, **config["model"]}
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
             f"{' or None' if option.default is None else ''}, got {value!r} ({type(value).__name__})")


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
    except (TypeError, ValueError, ArithmeticError, MemoryError) as e:
        fail(f"model.{name}: {cls.__name__} refused these options ({type(e).__name__}: "
             f"{' '.join(str(e).split())})")
