"""The training loop: `train(config, workdir)` with a plain nested dict config (sections model / data /
optim / train / ckpt, see configs/base.py). Resumes automatically from DIR/checkpoints.

DIR/config.json      resolved config, plus "environment" (versions, devices, git commit: ssm/train/environment.py)
DIR/metrics.jsonl    {"step", "split", metrics...} per logged train window and per evaluation
DIR/summary.json     final metrics per split, plus "best" (the best validation checkpoint's metrics), "seeds"
                     (per replica), "solved", "environment"
DIR/checkpoints/     orbax checkpoints (model + optimizer state, data position, guard counters, config)
DIR/events.out.tfevents.*  TensorBoard scalars (and W&B, the console: ssm/train/loggers.py)

train.num_seeds = S > 1 trains S replicas (seeds seed .. seed + S - 1) in one vmapped step
(ssm/train/replicas.py for the host side: batches, records, solved, best).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx

from ssm.checks import fail
from ssm.registry import get_task
from ssm.train import distributed as dist
from ssm.train import replicas as rep
from ssm.train.build import build, replica_state
from ssm.train.checkpoint import Checkpointer
from ssm.train.guard import (Interrupted, NonFiniteError, StopSignals, locate_nonfinite, new_guard,
                             nonfinite_limit)
from ssm.train.data import SPLITS, eval_batches, load_split, seq_len_of
from ssm.train.environment import run_environment
from ssm.train.host_memory import keep_freed_memory
from ssm.train.loggers import Reporter, Throughput, quiet_progress_bars_off_a_terminal
from ssm.train.metrics import MetricsLog, aggregate, read_metrics, write_json
from ssm.train.optim import describe_groups, parse_group_overrides
from ssm.train.packing import bucket_key, model_batch, pack_examples, pack_for_eval
from ssm.train.resume import check_resumable
from ssm.train.step import make_eval_step, make_replicas_step
from ssm.train.validate import validate_arrays, validate_config
from ssm.train.workdir import check_workdir


# ----------------------------------------------------------------------------------------------- setup
def load_data(data_cfg: dict, seed: int | None = None) -> dict:
    """split -> arrays, generated from `seed` (default data.seed); with data.pack, examples packed into rows
    of data.pack_len (0: the split's padded length) tokens with reset flags (ssm/train/packing.py)."""
    task = get_task(data_cfg["task"], data_cfg)
    seed = data_cfg.get("seed", 0) if seed is None else seed
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


# ------------------------------------------------------------------------------------------------- eval
def evaluate_replicas(eval_step, state, arrays: dict, data_cfg: dict, batch_size: int, split: str, mesh=None,
                      num_seeds: int = 1) -> list[dict]:
    """The metrics of each of the `num_seeds` replicas of `state` on `arrays` (eval_step of make_eval_step
    with the same num_seeds)."""
    task = get_task(data_cfg["task"], data_cfg)
    kwargs = task.split_kwargs(data_cfg, split)
    hi = kwargs.get("max_len", kwargs.get("length"))
    lo = kwargs.get("min_len", 1) if task.bucket_by == "length" else 1
    shard = model_batch if mesh is None else (lambda b: dist.shard_batch(model_batch(b), mesh))
    outputs = [jax.device_get(eval_step(state, shard(b))) for b in eval_batches(arrays, batch_size)]
    replica = (lambda k: outputs) if num_seeds == 1 else (lambda k: [{n: v[k] for n, v in o.items()} for o in outputs])
    return [aggregate(replica(k), arrays["lengths"], num_classes=task.num_classes(data_cfg), lm=task.lm,
                      bucket_by=task.bucket_by, bucket_range=None if hi is None else (lo, hi),
                      num_buckets=data_cfg["num_buckets"], bucket_key=bucket_key(arrays, task.bucket_by))
            for k in range(num_seeds)]


def evaluate(eval_step, state, arrays: dict, data_cfg: dict, batch_size: int, split: str, mesh=None) -> dict:
    """The metrics of a single model's state (evaluate_replicas with one replica)."""
    return evaluate_replicas(eval_step, state, arrays, data_cfg, batch_size, split, mesh)[0]


# ------------------------------------------------------------------------------------------------ train
def train(config: dict, workdir: str) -> dict:
    """Train (or resume) the run in `workdir`; returns the summary written to DIR/summary.json.

    Multi-device / multi-host (docs/scaling.md): the state is replicated over `config["mesh"]`,
    each global batch is sharded over its data axis (every process feeds its own rows), process 0 alone
    prints and writes config.json / metrics.jsonl / summary.json, checkpoints are saved collectively."""
    validate_config(config)  # every field, before anything is built, written or computed
    check_workdir(workdir)
    m, d, t, c = (config[k] for k in ("model", "data", "train", "ckpt"))
    if t.get("keep_freed_memory", True):
        keep_freed_memory()  # before the backend starts (ssm/train/host_memory.py)
    mesh_cfg = config.get("mesh", {})
    dist.initialize(mesh_cfg.get("distributed", False))
    mesh = dist.make_mesh(mesh_cfg.get("data", -1), mesh_cfg.get("model", 1))
    if mesh.shape[dist.MODEL] != 1:
        fail(f"mesh.model: only data parallelism is implemented (mesh.model=1), got {mesh.shape[dist.MODEL]}")
    dist.check_batch_size("data.batch_size", d["batch_size"], mesh)
    dist.check_batch_size("train.eval_batch_size", t["eval_batch_size"], mesh)
    main = dist.is_main_process()
    say = print if main else (lambda *a, **k: None)
    S = t.get("num_seeds", 1)
    seeds = [config["seed"] + k for k in range(S)]
    os.makedirs(workdir, exist_ok=True)
    check_resumable(workdir, config, say)

    # --- data and model
    quiet_progress_bars_off_a_terminal()
    data = load_data(d)
    if t.get("pack_eval", True):  # the same metrics from fewer rows (ssm/train/packing.py)
        data = {split: arrays if split == "train" else pack_for_eval(arrays) for split, arrays in data.items()}
    task = get_task(d["task"], d)
    for split, arrays in data.items():
        validate_arrays(arrays, task.vocab_size(d), task.num_classes(d), split)
    batches = rep.training_batches(data["train"], d["batch_size"], seeds, t, mesh.shape[dist.DATA] * jax.process_count())
    built = build(config)
    say(describe_groups(built.merge(built.replica(0))[0],
                        parse_group_overrides(config["optim"].get("mixer_param_groups", ""))))
    if batches.pack_rows:
        say(f"train.pack_batches: each step's {d['batch_size']} examples packed into {batches.pack_rows} rows of "
            f"{batches.pack_row_len} tokens")
    if S > 1:
        say(f"{S} replicas in one step: seeds {seeds[0]}..{seeds[-1]} (data set: data.seed={d.get('seed', 0)})")
    graphdef, state, lr_schedule = built.graphdef, built.state, built.schedules["lr"]
    del built  # from here on the split state is the single source of truth
    state = dist.replicate(state, mesh)
    state_sharding, batch_sharding = dist.replicated(mesh), dist.batch_sharding(mesh, replicas=S > 1)
    if jax.device_count() > 1:
        say(f"mesh: {dict(mesh.shape)} over {jax.device_count()} devices in {jax.process_count()} process(es)")

    # --- resume
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep_last=c["keep_last"], keep_best=c["keep_best"],
                        best_metric=c["best_metric"], best_mode=c["best_mode"], async_save=c["async_save"],
                        num_replicas=S)
    log = MetricsLog(workdir) if main else _NoLog()
    start, guard, stopped = 0, new_guard(S), {}  # stopped: replica -> {"from_step", "where"} (frozen ones)
    restored_step, restored, meta = ckpt.restore_latest(state)
    if restored_step is not None:
        state, start = restored, meta["data_position"]["step"]
        guard = {k: np.asarray(meta["guard"][k], v.dtype).reshape(v.shape) for k, v in guard.items()} \
            if "guard" in meta else guard  # checkpoints of earlier versions have no guard counters
        stopped = {int(k): v for k, v in meta.get("stopped", {}).items()}
        log.truncate_after(start)
        say(f"resuming {workdir} from step {start}")
    elif os.path.exists(log.path):
        log.truncate_after(-1)  # an earlier attempt died before its first checkpoint
    guard = dist.replicate(guard, mesh)
    if main:
        write_json(os.path.join(workdir, "config.json"), {**config, "environment": run_environment()})

    # --- loop
    limit = nonfinite_limit(t.get("nonfinite_policy", "skip"), t.get("max_nonfinite_in_a_row", 10))
    train_step = make_replicas_step(graphdef, lr_schedule, seeds=seeds, dropout=m["dropout"] > 0,
                                    nonfinite_limit=limit, state_sharding=state_sharding,
                                    batch_sharding=batch_sharding)
    eval_step = make_eval_step(graphdef, num_seeds=S, state_sharding=state_sharding,
                               batch_sharding=dist.batch_sharding(mesh), step_rescale=m.get("eval_step_rescale", 1.0))
    run_eval = lambda st, split: evaluate_replicas(eval_step, st, data[split], d, t["eval_batch_size"], split,
                                                   mesh, S)
    meta_of = lambda step: {"data_position": batches.position(step), "config": config, "stopped": stopped,
                            "guard": {k: np.asarray(v).tolist() for k, v in jax.device_get(guard).items()}}
    window, last_train, val, val_at = [], {}, None, {}  # val_at: step -> validation metrics of this process
    report = Reporter(workdir, config, start_step=start, jsonl=log, enabled=main)
    clock = Throughput()  # tokens_per_s leaves out compilation, evaluation and checkpointing
    with StopSignals() as signals:
        for step in range(start, t["num_steps"]):
            batch = batches(step)
            timed = clock.running
            state, guard, metrics = train_step(state, guard, dist.shard_batch(batch, mesh, replicas=S > 1), step)
            window.append(metrics)
            if timed:
                clock.count(rep.real_tokens(batch))
            else:  # the first step of this process (it compiles) is not timed
                clock.start(after=state)
            done = step + 1
            if done % t["log_every"] == 0 or done == t["num_steps"]:
                per, bad = rep.window_metrics(jax.device_get(window), S)
                counts = {k: np.reshape(v, (S,)) for k, v in jax.device_get(guard).items()}
                if any(counts["frozen"][k] and k not in stopped for k in range(S)):
                    with clock.paused(state):
                        _report_frozen(counts, stopped, seeds, graphdef, state, batches, ckpt, workdir, say, t, limit)
                for k in range(S):
                    if counts["skipped"][k]:
                        per[k]["skipped_steps"] = int(bad[:, k].sum())  # non-finite loss/grad: update not applied
                    if counts["frozen"][k]:
                        per[k]["frozen"] = True
                last_train = {**rep.as_record(per, seeds), **clock.take()}  # no tokens_per_s: no timed step
                report.write(done, "train", last_train)
                window = []
            if done % t["eval_every"] == 0 or done == t["num_steps"]:
                with clock.paused(state):
                    val = val_at[done] = run_eval(state, "validation")
                    report.write(done, "validation", rep.as_record(val, seeds))
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
    val = val or run_eval(state, "validation")
    test = run_eval(state, "test")
    report.write(t["num_steps"], "test", rep.as_record(test, seeds))
    ckpt.save(t["num_steps"], state, meta_of(t["num_steps"]), metrics=val)
    ckpt.wait()
    best = _best(ckpt, workdir, state, t["num_steps"], val, test, run_eval, c, S, val_at)
    ckpt.close()
    train_record = last_train or (_last_record(workdir, "train") if main else {})
    summary = _summary(t, seeds, train_record, val, test, best, stopped)
    if main:
        summary["environment"] = run_environment()
        write_json(os.path.join(workdir, "summary.json"), summary)
    report.close(summary)
    test = summary["test"]
    headline = (f"bits/char {test['bits_per_char']:.4f}" if "bits_per_char" in test
                else f"accuracy {test['accuracy']:.4f} (scaled {test['scaled_accuracy']:.4f})")
    solved = "" if summary["solved"] is None or S == 1 else f", solved by {summary['solved']}/{S} seeds"
    say(f"final test {headline}{' (mean over ' + str(S) + ' seeds)' if S > 1 else ''}, loss {test['loss']:.4f}"
        f"{solved}  [{workdir}]")
    return summary


def _summary(t: dict, seeds: list[int], train_record: dict, val: list, test: list, best: list, stopped: dict) -> dict:
    """summary.json: the keys of a single run (means over replicas), "seeds" (one summary per replica) and
    "solved" (how many replicas' final test `train.solved_metric` reaches `train.solved_threshold`)."""
    S, metric = len(seeds), t.get("solved_metric", "scaled_accuracy")
    train = rep.per_replica(train_record, S) if train_record else [{}] * S
    per = []
    for k, seed in enumerate(seeds):
        one = {"seed": seed, "train": train[k], "validation": val[k], "test": test[k], "best": best[k],
               "solved": rep.is_solved(test[k], metric, t.get("solved_threshold", 0.9))}
        per.append({**one, **({"stopped": stopped[k]} if k in stopped else {})})
    if S == 1:
        top_best = best[0]
    else:
        found = [b for b in best if b]
        top_best = {"step": [b.get("step", -1) for b in best],
                    **{split: rep.mean_over_replicas([b[split] for b in found]) for split in ("validation", "test")
                       if found}}
    solved = [p["solved"] for p in per]
    mean = lambda split: rep.top_level(rep.as_record(split, seeds))
    return {"step": t["num_steps"], "train": rep.top_level(train_record), "validation": mean(val), "test": mean(test),
            "best": top_best, "seeds": per, "solved": None if None in solved else sum(solved)}


def _report_frozen(counts, stopped, seeds, graphdef, state, batches, ckpt, workdir, say, t, limit) -> None:
    """Name each newly frozen replica and where its non-finite value came from (a re-run of the first bad
    batch of its streak); raise NonFiniteError when every replica is frozen."""
    S = len(seeds)
    for k in np.flatnonzero(counts["frozen"]):
        if int(k) in stopped:
            continue
        first = int(counts["streak_start"][k])
        model, _ = nnx.merge(graphdef, jax.device_get(replica_state(state, int(k), S)))
        where = locate_nonfinite(model, jax.tree.map(jax.numpy.asarray, batches.replica(int(k), first)))
        stopped[int(k)] = {"from_step": first + 1, "where": where}
        if S > 1 and not counts["frozen"].all():
            say(f"replica {k} (seed {seeds[k]}): non-finite loss/gradient in {limit} step(s) in a row from step "
                f"{first + 1}; first non-finite value: {where}; frozen at its last good state, the other "
                f"replicas go on")
    if counts["frozen"].all():
        ckpt.close()  # finishes pending saves of good states (skipped steps never changed the state)
        kept = ckpt.all_steps()
        which = "; ".join(f"replica {k} (seed {seeds[k]}) from step {v['from_step']}: {v['where']}"
                          for k, v in sorted(stopped.items())) if S > 1 else None
        head = (f"non-finite loss/gradient in {limit} step(s) in a row from step {stopped[0]['from_step']} "
                if S == 1 else f"every replica stopped on non-finite losses/gradients ({which}) ")
        tail = f"; first non-finite value: {stopped[0]['where']}" if S == 1 else ""
        raise NonFiniteError(
            f"train: {head}(train.nonfinite_policy={t.get('nonfinite_policy', 'skip')!r}, limit {limit}){tail}; "
            f"updates were not applied, last good checkpoint: "
            f"{max(kept) if kept else 'none'} in {os.path.join(workdir, 'checkpoints')}")


def _last_record(workdir: str, split: str) -> dict:
    records = [r for r in read_metrics(workdir) if r["split"] == split] if os.path.exists(
        os.path.join(workdir, "metrics.jsonl")) else []
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")} if records else {}


def _best(ckpt, workdir, state, final_step, val, test, run_eval, c, S, val_at=None) -> list[dict]:
    """Per replica, the validation/test metrics of the kept checkpoint with its best validation metric
    (chosen on process 0 from metrics.jsonl and broadcast, since the restore is collective); {} if none."""
    steps = [-1] * S
    if dist.is_main_process():
        steps = rep.best_steps(read_metrics(workdir), set(ckpt.all_steps()), c["best_metric"], c["best_mode"], S)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        steps = [int(x) for x in multihost_utils.broadcast_one_to_all(np.asarray(steps, np.int32))]
    metrics = {final_step: {"validation": val, "test": test}}
    for step in sorted(set(steps) - {-1, final_step}):
        best_state, _ = ckpt.restore(step, state)
        val_then = (val_at or {}).get(step)  # evaluated at that step by this process: the same state
        metrics[step] = {"validation": val_then or run_eval(best_state, "validation"),
                         "test": run_eval(best_state, "test")}
    return [{} if s < 0 else {"step": s, **{split: metrics[s][split][k] for split in ("validation", "test")}}
            for k, s in enumerate(steps)]


class _NoLog:
    """MetricsLog of processes other than 0: writes nothing."""
    path = os.devnull

    def write(self, *args, **kwargs):
        pass

    def truncate_after(self, *args, **kwargs):
        pass
