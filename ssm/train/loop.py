"""The training loop: `train(config, workdir)` with a plain nested dict config (sections model / data /
optim / train / ckpt, see configs/base.py). Resumes automatically from DIR/checkpoints.

DIR/config.json      resolved config, plus "environment" (versions, devices, git commit: ssm/train/environment.py)
DIR/metrics.jsonl    {"step", "split", metrics...} per logged train window and per evaluation
DIR/summary.json     final metrics per split, plus "best" (the best validation checkpoint's metrics), "environment"
DIR/checkpoints/     orbax checkpoints (model + optimizer state, data position, config)
DIR/events.out.tfevents.*  TensorBoard scalars (and W&B, the console: ssm/train/loggers.py)
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import nnx

from ssm.checks import fail
from ssm.registry import MIXERS, get_task, mixer_options
from ssm.train import distributed as dist
from ssm.train.build import build
from ssm.train.checkpoint import Checkpointer
from ssm.train.guard import Interrupted, NonFiniteCounter, NonFiniteError, StopSignals, locate_nonfinite
from ssm.train.data import SPLITS, Batches, eval_batches, load_split, seq_len_of
from ssm.train.environment import run_environment
from ssm.train.loggers import Reporter, Throughput, quiet_progress_bars_off_a_terminal
from ssm.train.metrics import MetricsLog, aggregate, best_step as best_kept_step, read_metrics, write_json
from ssm.train.optim import describe_groups, parse_group_overrides
from ssm.train.packing import bucket_key, model_batch, pack_examples
from ssm.train.step import make_eval_step, make_train_step
from ssm.train.model_config import migrate_config
from ssm.train.validate import check_workdir, validate_arrays, validate_config

RESUME_MUST_MATCH = ("seed", "model", "data")  # sections that must equal the checkpointed run's
RESUME_MAY_DIFFER = ("data.data_dir", "data.num_buckets")  # no effect on training


# ----------------------------------------------------------------------------------------------- setup
def load_data(data_cfg: dict, seed: int) -> dict:
    """split -> arrays; with data.pack, examples packed into rows of data.pack_len (0: the split's padded
    length) tokens with reset flags (ssm/train/packing.py)."""
    task = get_task(data_cfg["task"], data_cfg)
    out = {}
    for split in SPLITS:
        if task.load is not None:  # a dataset read from the hub / disk (ssm/tasks/hf_dataset)
            out[split] = task.load(data_cfg, split, data_cfg[f"num_{split}"])
            continue
        kwargs = task.split_kwargs(data_cfg, split)
        T = seq_len_of(data_cfg["task"], kwargs)
        out[split] = load_split(data_cfg["task"], split, data_cfg[f"num_{split}"], seed, kwargs,
                                data_cfg["data_dir"] or None, seq_len=T)
        if data_cfg.get("pack", False):
            out[split] = pack_examples(out[split], data_cfg.get("pack_len", 0) or T)
    return out


def _differences(a, b, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [x for k in sorted(set(a) | set(b)) for x in _differences(a.get(k), b.get(k), f"{prefix}.{k}")]
    return [] if a == b else [prefix]


def _resume_view(config: dict) -> dict:
    """The parts of a config that must match to resume: seed, data and the model with only the chosen
    mixer's section (every option, defaults filled in; other mixers' sections have no effect)."""
    m = config.get("model", {})
    view = {"seed": config.get("seed"), "data": config.get("data"),
            "model": {k: v for k, v in m.items() if k not in MIXERS}}
    if m.get("mixer") in MIXERS:
        defaults = {k: o.default for k, o in mixer_options(m["mixer"]).items()}
        view["model"][m["mixer"]] = {**defaults, **m.get(m["mixer"], {})}
    return json.loads(json.dumps(view))


def _check_resumable(workdir: str, config: dict, say=print) -> None:
    """Refuse to resume into a workdir whose run has another seed/model/data config."""
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
    if diffs and config["train"].get("allow_config_change", False):
        say(f"warning: resuming {workdir} with a changed config ({', '.join(diffs)}) "
            f"because train.allow_config_change=True")
    elif diffs:
        fail(f"--workdir={workdir}: holds a run with a different config ({', '.join(diffs)}); "
             f"use a new --workdir, the same settings, or --config.train.allow_config_change=True")


# ------------------------------------------------------------------------------------------------- eval
def evaluate(eval_step, state, arrays: dict, data_cfg: dict, batch_size: int, split: str, mesh=None) -> dict:
    task = get_task(data_cfg["task"], data_cfg)
    kwargs = task.split_kwargs(data_cfg, split)
    hi = kwargs.get("max_len", kwargs.get("length"))
    lo = kwargs.get("min_len", 1) if task.bucket_by == "length" else 1
    shard = model_batch if mesh is None else (lambda b: dist.shard_batch(model_batch(b), mesh))
    outputs = [jax.device_get(eval_step(state, shard(b))) for b in eval_batches(arrays, batch_size)]
    return aggregate(outputs, arrays["lengths"], num_classes=task.num_classes(data_cfg), lm=task.lm,
                     bucket_by=task.bucket_by, bucket_range=None if hi is None else (lo, hi),
                     num_buckets=data_cfg["num_buckets"], bucket_key=bucket_key(arrays, task.bucket_by))


# ------------------------------------------------------------------------------------------------ train
def train(config: dict, workdir: str) -> dict:
    """Train (or resume) the run in `workdir`; returns the summary written to DIR/summary.json.

    Multi-device / multi-host (docs/scaling.md): the state is replicated over `config["mesh"]`,
    each global batch is sharded over its data axis (every process feeds its own rows), process 0 alone
    prints and writes config.json / metrics.jsonl / summary.json, checkpoints are saved collectively."""
    validate_config(config)  # every field, before anything is built, written or computed
    check_workdir(workdir)
    m, d, t, c = (config[k] for k in ("model", "data", "train", "ckpt"))
    mesh_cfg = config.get("mesh", {})
    dist.initialize(mesh_cfg.get("distributed", False))
    mesh = dist.make_mesh(mesh_cfg.get("data", -1), mesh_cfg.get("model", 1))
    if mesh.shape[dist.MODEL] != 1:
        fail(f"mesh.model: only data parallelism is implemented (mesh.model=1), got {mesh.shape[dist.MODEL]}")
    dist.check_batch_size("data.batch_size", d["batch_size"], mesh)
    dist.check_batch_size("train.eval_batch_size", t["eval_batch_size"], mesh)
    main = dist.is_main_process()
    say = print if main else (lambda *a, **k: None)
    seed = config["seed"]
    os.makedirs(workdir, exist_ok=True)
    _check_resumable(workdir, config, say)

    # --- data and model
    quiet_progress_bars_off_a_terminal()
    data = load_data(d, seed)
    task = get_task(d["task"], d)
    for split, arrays in data.items():
        validate_arrays(arrays, task.vocab_size(d), task.num_classes(d), split)
    batches = Batches(data["train"], d["batch_size"], seed)
    built = build(config)
    say(describe_groups(built.merge()[0], parse_group_overrides(config["optim"].get("mixer_param_groups", ""))))
    graphdef, state, lr_schedule = built.graphdef, built.state, built.schedules["lr"]
    del built  # from here on the split state is the single source of truth
    state = dist.replicate(state, mesh)
    state_sharding, batch_sharding = dist.replicated(mesh), dist.batch_sharding(mesh)
    if jax.device_count() > 1:
        say(f"mesh: {dict(mesh.shape)} over {jax.device_count()} devices in {jax.process_count()} process(es)")

    # --- resume
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep_last=c["keep_last"], keep_best=c["keep_best"],
                        best_metric=c["best_metric"], best_mode=c["best_mode"], async_save=c["async_save"])
    log = MetricsLog(workdir) if main else _NoLog()
    start = 0
    restored_step, restored, meta = ckpt.restore_latest(state)
    if restored_step is not None:
        state, start = restored, meta["data_position"]["step"]
        log.truncate_after(start)
        say(f"resuming {workdir} from step {start}")
    elif os.path.exists(log.path):
        log.truncate_after(-1)  # an earlier attempt died before its first checkpoint
    if main:
        write_json(os.path.join(workdir, "config.json"), {**config, "environment": run_environment()})

    # --- loop
    train_step = make_train_step(graphdef, lr_schedule, state_sharding=state_sharding,
                                 batch_sharding=batch_sharding)
    eval_step = make_eval_step(graphdef, state_sharding=state_sharding, batch_sharding=batch_sharding,
                               step_rescale=m.get("eval_step_rescale", 1.0))
    run_eval = lambda st, split: evaluate(eval_step, st, data[split], d, t["eval_batch_size"], split, mesh)
    base_key = jax.random.key(seed)
    meta_of = lambda step: {"data_position": batches.position(step), "config": config}
    window, last_train, val = [], {}, None
    report = Reporter(workdir, config, start_step=start, jsonl=log, enabled=main)
    clock = Throughput()  # tokens_per_s leaves out compilation, evaluation and checkpointing
    nonfinite = NonFiniteCounter(t.get("nonfinite_policy", "skip"), t.get("max_nonfinite_in_a_row", 10))
    with StopSignals() as signals:
        for step in range(start, t["num_steps"]):
            batch = batches(step)
            key = jax.random.fold_in(base_key, step) if m["dropout"] > 0 else None
            timed = clock.running
            state, metrics = train_step(state, dist.shard_batch(model_batch(batch), mesh), key)
            window.append(metrics)
            if timed:
                clock.count(int(batch["lengths"].sum()))
            else:  # the first step of this process (it compiles) is not timed
                clock.start(after=state)
            done = step + 1
            if done % t["log_every"] == 0 or done == t["num_steps"]:
                window = jax.device_get(window)
                bad = [bool(w.pop("nonfinite")) for w in window]
                stop_at = nonfinite.update(bad, done - len(window))
                if stop_at is not None:
                    _stop_nonfinite(ckpt, graphdef, state, model_batch(batches(stop_at)), stop_at, nonfinite, workdir)
                good = [w for w, b in zip(window, bad) if not b] or window
                last_train = {k: float(np.mean([w[k] for w in good])) for k in window[0]}
                if nonfinite.total:
                    last_train["skipped_steps"] = sum(bad)  # non-finite loss/grad: update not applied
                last_train.update(clock.take())  # absent when the window had no timed step
                report.write(done, "train", last_train)
                window = []
            if done % t["eval_every"] == 0 or done == t["num_steps"]:
                with clock.paused(state):
                    val = run_eval(state, "validation")
                    report.write(done, "validation", val)
                    ckpt.save(done, state, meta_of(done), metrics=val)
            elif done % c["every"] == 0 or signals.signum is not None:
                with clock.paused(state):
                    ckpt.save(done, state, meta_of(done))
            report.advance()
            if signals.signum is not None:
                report.close()
                ckpt.close()  # waits for the save
                raise Interrupted(signals.signum, f"train: stopped by signal {signals.signum} after step {done}; "
                                  f"checkpoint saved, re-run the same command to resume from step {done}")

    # --- final evaluation and summary
    summary = {"step": t["num_steps"], "train": last_train or (_last_record(workdir, "train") if main else {}),
               "validation": val or run_eval(state, "validation"), "test": run_eval(state, "test")}
    report.write(t["num_steps"], "test", summary["test"])
    ckpt.save(t["num_steps"], state, meta_of(t["num_steps"]), metrics=summary["validation"])
    ckpt.wait()
    summary["best"] = _best(ckpt, workdir, state, summary, run_eval, c)
    ckpt.close()
    if main:
        summary["environment"] = run_environment()
        write_json(os.path.join(workdir, "summary.json"), summary)
    report.close(summary)
    test = summary["test"]
    headline = (f"bits/char {test['bits_per_char']:.4f}" if "bits_per_char" in test
                else f"accuracy {test['accuracy']:.4f} (scaled {test['scaled_accuracy']:.4f})")
    say(f"final test {headline}, loss {test['loss']:.4f}  [{workdir}]")
    return summary


def _stop_nonfinite(ckpt, graphdef, state, batch, first_bad: int, counter, workdir: str) -> None:
    """Raise NonFiniteError naming the step and, from a re-run of the batch, where it came from."""
    ckpt.close()  # finishes pending saves of good states (skipped steps never changed the state)
    model, _ = nnx.merge(graphdef, jax.device_get(state))
    where = locate_nonfinite(model, jax.tree.map(jax.numpy.asarray, batch))
    kept = ckpt.all_steps()
    raise NonFiniteError(
        f"train: non-finite loss/gradient in {counter.in_a_row} step(s) in a row from step {first_bad + 1} "
        f"(train.nonfinite_policy={counter.policy!r}, limit {counter.limit}); first non-finite value: {where}; "
        f"updates were not applied, last good checkpoint: "
        f"{max(kept) if kept else 'none'} in {os.path.join(workdir, 'checkpoints')}")


def _last_record(workdir: str, split: str) -> dict:
    records = [r for r in read_metrics(workdir) if r["split"] == split] if os.path.exists(
        os.path.join(workdir, "metrics.jsonl")) else []
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")} if records else {}


def _best(ckpt, workdir, state, summary, run_eval, c) -> dict:
    """Validation/test metrics of the kept checkpoint with the best validation metric (chosen on process 0
    from its metrics.jsonl and broadcast, since the restore is collective)."""
    best_step = -1
    if dist.is_main_process():
        found = best_kept_step(read_metrics(workdir), ckpt.all_steps(), c["best_metric"], c["best_mode"])
        best_step = -1 if found is None else found
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        best_step = int(multihost_utils.broadcast_one_to_all(np.int32(best_step)))
    if best_step < 0:
        return {}
    if best_step == summary["step"]:
        return {"step": best_step, "validation": summary["validation"], "test": summary["test"]}
    best_state, _ = ckpt.restore(best_step, state)
    return {"step": best_step, **{split: run_eval(best_state, split) for split in ("validation", "test")}}


class _NoLog:
    """MetricsLog of processes other than 0: writes nothing."""
    path = os.devnull

    def write(self, *args, **kwargs):
        pass

    def truncate_after(self, *args, **kwargs):
        pass
