"""Resuming a run: which settings must equal the checkpointed run's, and the refusal (or warning) when they
differ. Configs written by earlier versions are read in today's form first (ssm/train/model_config.py).
"""

from __future__ import annotations

import json
import os

from ssm.checks import fail
from ssm.registry import MIXERS, get_task, mixer_options
from ssm.train.model_config import migrate_config

RESUME_MUST_MATCH = ("seed", "model", "data", "train")  # sections (train: only num_seeds) that must match
RESUME_MAY_DIFFER = ("data.data_dir", "data.num_buckets")  # no effect on training


def _differences(a, b, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [x for k in sorted(set(a) | set(b)) for x in _differences(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [prefix]


def _resume_view(config: dict) -> dict:
    """The parts of a config that must match to resume: seed, data, train.num_seeds (the checkpoint's
    shape; data.seed only where the data are generated) and the model with only the chosen mixer's section (every option, defaults filled in; other
    mixers' sections have no effect)."""
    m = config.get("model", {})
    view = {"seed": config.get("seed"), "data": config.get("data"),
            "train": {"num_seeds": config.get("train", {}).get("num_seeds", 1)},
            "model": {k: v for k, v in m.items() if k not in MIXERS}}
    d = config.get("data") or {}
    if d.get("task") and get_task(d["task"], d).load is not None:  # a dataset read from disk: no data.seed
        view["data"] = {k: v for k, v in d.items() if k != "seed"}
    if m.get("mixer") in MIXERS:
        defaults = {k: o.default for k, o in mixer_options(m["mixer"]).items()}
        view["model"][m["mixer"]] = {**defaults, **m.get(m["mixer"], {})}
    return json.loads(json.dumps(view))


def check_resumable(workdir: str, config: dict, say=print) -> None:
    """Refuse to resume into a workdir whose run has another seed/model/data config or number of seeds."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    saved, moved = migrate_config(saved)
    if moved:
        say(f"{path}: written before per-mixer config sections; read as {', '.join(moved)}")
    current, saved = _resume_view(config), _resume_view(saved)
    diffs = [x for s in RESUME_MUST_MATCH for x in _differences(current.get(s), saved.get(s), s)
             if x not in RESUME_MAY_DIFFER]
    if "train.num_seeds" in diffs:  # the checkpoint holds another number of replicas: it cannot restore
        fail(f"train.num_seeds: --workdir={workdir} holds a run of {saved['train']['num_seeds']} replica(s), "
             f"got {current['train']['num_seeds']}; use a new --workdir or the same train.num_seeds")
    if diffs and config["train"].get("allow_config_change", False):
        say(f"warning: resuming {workdir} with a changed config ({', '.join(diffs)}) "
            f"because train.allow_config_change=True")
    elif diffs:
        fail(f"--workdir={workdir}: holds a run with a different config ({', '.join(diffs)}); "
             f"use a new --workdir, the same settings, or --config.train.allow_config_change=True")
