"""Loading a trained run for inference: `ssm.load_run(workdir, step)` -> (model, config).

    model, config = ssm.load_run("runs/parity")                 # the best validation checkpoint
    model, config = ssm.load_run("runs/parity", step="last")    # the latest one; or step=400

The run's directory is what train.py / ssm-train writes (ssm/train/loop.py): config.json, summary.json,
metrics.jsonl and checkpoints/. Every bad input (a missing workdir, step or checkpoint) is a one-line
`ssm.checks.ConfigError`, raised before anything is restored.
"""

from __future__ import annotations

import json
import os

from ssm.checks import fail

STEPS = ("best", "last")


def read_run_config(workdir: str) -> dict:
    """The resolved config of the run in `workdir` (its config.json without the "environment" record), in
    today's form (`migrate_config`: runs written before the per-mixer model sections load too)."""
    from ssm.train.model_config import migrate_config
    from ssm.train.workdir import check_local_path

    workdir = check_local_path("workdir", workdir)
    path = os.path.join(workdir, "config.json")
    if not os.path.isdir(workdir):
        fail(f"workdir: no such run directory: {workdir!r}")
    if not os.path.isfile(path):
        fail(f"workdir: {workdir!r} holds no config.json (not a run of train.py / ssm-train)")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"workdir: cannot read {path!r} ({' '.join(str(e).split())})")
    saved.pop("environment", None)
    return migrate_config(saved)[0]


def resolve_step(workdir: str, step, kept: list[int], config: dict, replica: int | None = None) -> int:
    """The checkpoint step that `step` names among the `kept` ones: "last" = the latest; "best" = the one
    summary.json["best"]["step"] names (a finished run; replica k of a multi-seed run: its entry of
    summary.json["seeds"]), else the kept checkpoint with the best validation `ckpt.best_metric` in
    metrics.jsonl (a run still going, or one stopped early); an int = that step."""
    from ssm.train.metrics import best_step, read_metrics
    from ssm.train.replicas import best_steps

    if hasattr(step, "__index__") and not isinstance(step, (bool, int)):  # a NumPy integer
        step = int(step)
    where = os.path.join(workdir, "checkpoints")
    if not kept:
        fail(f"workdir: {workdir!r} has no checkpoint in {where} (the run saved none yet)")
    available = f"kept: {', '.join(map(str, sorted(kept)))}"
    if isinstance(step, bool) or not (step in STEPS or isinstance(step, int)):
        fail(f"step: expected 'best', 'last' or a step number ({available}), got {step!r}")
    if step == "last":
        return max(kept)
    if step != "best":
        if step not in kept:
            fail(f"step: no checkpoint of step {step} in {where} ({available})")
        return step
    summary = os.path.join(workdir, "summary.json")
    if os.path.isfile(summary):
        with open(summary) as f:
            saved = json.load(f)
        if replica is not None:
            saved = saved.get("seeds", [{}] * (replica + 1))[replica]
        named = saved.get("best", {}).get("step")
        if named in kept:
            return named
    records = read_metrics(workdir) if os.path.isfile(os.path.join(workdir, "metrics.jsonl")) else []
    metric, mode = config["ckpt"]["best_metric"], config["ckpt"]["best_mode"]
    if replica is None:
        found = best_step(records, kept, metric, mode)
    else:
        found = best_steps(records, set(kept), metric, mode, config["train"]["num_seeds"])[replica]
        found = None if found < 0 else found
    if found is None:
        fail(f"step: no kept checkpoint of {workdir!r} has a validation {config['ckpt']['best_metric']!r} to "
             f"rank it by ({available}); use step='last' or a step number")
    return found


def load_run(workdir, step: str | int = "best", replica: int | None = None):
    """(model, config) of the run in `workdir` at checkpoint `step`, ready for inference.

    step: "best" (the checkpoint summary.json names as best by the validation `ckpt.best_metric`, or, while
      the run is unfinished, the best kept one by metrics.jsonl), "last" (the latest), or a step number.
    model: the run's `SequenceModel`, built from its config with `ssm.train.build.build(config,
      abstract=True)` (shapes only) and filled from the checkpoint; in eval mode (`model.eval()`; dropout is
      only drawn when a dropout key is passed, which inference never does).
    config: the run's resolved config as a plain dict (config.json, migrated to today's form).

    replica: which replica of a multi-seed run (train.num_seeds = S > 1: one checkpoint holds every
      replica's state stacked on a leading axis) to load, 0..S-1 (required there; None or 0 for a
      single-seed run). "best" is then that replica's best step (its entry of summary.json["seeds"], or
      its validation records), and the config returned is that of the equivalent single run:
      seed = seed + replica, train.num_seeds = 1 (replica k trains as `--config.seed=<seed + k>` would).
    """
    from ssm.train.build import build, replica_state
    from ssm.train.checkpoint import Checkpointer

    config = read_run_config(workdir)
    workdir = os.fspath(workdir)
    num_seeds = config.get("train", {}).get("num_seeds", 1)
    if num_seeds > 1 and replica is None:
        fail(f"replica: {workdir!r} holds a multi-seed run (train.num_seeds = {num_seeds}); "
             f"name one with replica=0..{num_seeds - 1}")
    if replica is not None and (isinstance(replica, bool) or not hasattr(replica, "__index__")
                                or not 0 <= replica < num_seeds):
        fail(f"replica: expected an integer in 0..{num_seeds - 1} (the run's train.num_seeds = {num_seeds}), "
             f"got {replica!r}")
    replica = None if num_seeds == 1 else int(replica)
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        fail(f"workdir: {workdir!r} has no checkpoints/ folder (the run saved no checkpoint yet)")
    ckpt = Checkpointer(directory, read_only=True, async_save=False)
    try:
        step = resolve_step(workdir, step, ckpt.all_steps(), config, replica)
        built = build(config, abstract=True)
        try:
            state, _ = ckpt.restore(step, built.state)
        except Exception as e:  # noqa: BLE001 — a checkpoint that does not restore is bad input, one line
            fail(f"step: checkpoint {step} in {directory} does not restore into the run's model "
                 f"({type(e).__name__}: {' '.join(str(e).split())[:200]})")
    finally:
        ckpt.close()
    if replica is not None:
        state = replica_state(state, replica, num_seeds)
        config = {**config, "seed": config["seed"] + replica, "train": {**config["train"], "num_seeds": 1}}
    model, _ = built.merge(state)
    model.eval()
    return model, config
