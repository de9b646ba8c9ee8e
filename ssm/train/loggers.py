"""Where a training run's numbers go, and the clock behind `tokens_per_s`.

    DIR/metrics.jsonl          every record (always; ssm/train/metrics.py)
    DIR/events.out.tfevents.*  TensorBoard (train.tensorboard): scalars tagged "<split>/<metric>" (nested
                               dicts such as accuracy_by_length flattened with "/"), the config as
                               hyperparameters (HParams tab) and as text; no TensorFlow needed. With
                               train.num_seeds > 1: the mean over replicas here, each replica's values
                               under the same tags in DIR/seeds/seed_<s>/ (one TensorBoard run per seed)
    Weights & Biases           the same scalars and the config (train.wandb, train.wandb_project,
                               train.wandb_mode: "" = wandb's default or $WANDB_MODE, online, offline)
    console                    one line per evaluation; per train window a progress bar on a terminal
                               (train.progress_bar), a plain line otherwise (no '\\r' in log files); with
                               several seeds each metric's mean and [min, max] over replicas

    report = Reporter(workdir, config, start_step=0, jsonl=MetricsLog(workdir))
    report.write(step, "train", metrics); report.advance(); ...; report.close(summary)
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from contextlib import contextmanager

import jax
import numpy as np
from tqdm import tqdm

from ssm.checks import check_choice, fail

WANDB_MODES = ("", "online", "offline", "disabled")


def check_logging_config(train_cfg: dict) -> None:
    """One-line ConfigError for a bad logging field, or W&B asked for but not installed."""
    for field in ("tensorboard", "wandb", "progress_bar"):
        if not isinstance(train_cfg.get(field, False), (bool, np.bool_)):
            fail(f"train.{field}: expected True or False, got {train_cfg[field]!r}")
    check_choice("train.wandb_mode", train_cfg.get("wandb_mode", ""), WANDB_MODES)
    if not isinstance(train_cfg.get("wandb_project", ""), str):
        fail(f"train.wandb_project: expected a string, got {train_cfg['wandb_project']!r}")
    if train_cfg.get("wandb", False):
        try:
            import wandb  # noqa: F401
        except ImportError:
            fail("train.wandb: needs the wandb package (pip install wandb), or set train.wandb=False")


def quiet_progress_bars_off_a_terminal() -> None:
    """Turn off the `datasets` progress bars (dataset generation) unless stderr is a terminal: in a log
    file they are '\r' fragments."""
    if not sys.stderr.isatty():
        import datasets

        datasets.disable_progress_bars()


def scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a (nested) metrics dict, keyed by its "/"-joined path."""
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(scalars(value, name))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
    return out


def hyperparameters(config: dict, prefix: str = "") -> dict:
    """The config flattened to {"model.d_model": 128, ...} with str / bool / int / float values."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(hyperparameters(value, name))
        elif isinstance(value, (str, bool, int, float)):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value)
    return out


# ------------------------------------------------------------------------------------------- throughput
class Throughput:
    """Tokens per second of training steps alone. The clock runs only between `start` and `pause`: the
    loop starts it once the first step of the process (which compiles) has finished and pauses it around
    evaluation and checkpointing; steps dispatched while it is stopped are not counted."""

    def __init__(self, clock=time.perf_counter):
        self._clock, self._since, self.seconds, self.tokens = clock, None, 0.0, 0

    @property
    def running(self) -> bool:
        return self._since is not None

    def start(self, after=None) -> None:
        """Start (if stopped), once the arrays in `after` are computed."""
        if after is not None:
            jax.block_until_ready(after)
        if self._since is None:
            self._since = self._clock()

    def pause(self, after=None) -> None:
        """Stop, once the arrays in `after` (the train state) are computed: their compute is training time."""
        if after is not None:
            jax.block_until_ready(after)
        if self._since is not None:
            self.seconds += self._clock() - self._since
            self._since = None

    @contextmanager
    def paused(self, state):
        self.pause(after=state)
        try:
            yield
        finally:
            self.start()

    def count(self, tokens: int) -> None:
        if self.running:
            self.tokens += tokens

    def take(self) -> dict:
        """{"tokens_per_s": ...} since the last take (empty if no step was timed), and reset."""
        running = self.running
        self.pause()
        out = {"tokens_per_s": self.tokens / self.seconds} if self.tokens and self.seconds > 0 else {}
        self.seconds, self.tokens = 0.0, 0
        if running:
            self.start()
        return out


# ---------------------------------------------------------------------------------------------- console
def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Console:
    """Progress bar (a terminal and train.progress_bar) or plain lines; one line per evaluation."""

    def __init__(self, total: int, start: int, desc: str, progress_bar: bool, stream=None):
        self.total, self.desc, self.stream = total, desc, stream
        tty = (stream or sys.stderr).isatty()
        self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, file=stream) \
            if progress_bar and tty else None
        self._first = None  # (wall time, step) of the first train line, for the ETA

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream or sys.stdout)
        else:
            print(text, file=self.stream or sys.stdout, flush=True)

    def write(self, step: int, split: str, metrics: dict) -> None:
        number = lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
        shown = {k: float(v) for k, v in sorted(metrics.items(), key=lambda kv: kv[0] != "loss") if number(v)}
        if split == "train" and self.bar is not None:
            self.bar.set_postfix(loss=_fmt(shown["loss"]), **({"tok_s": f"{shown['tokens_per_s']:.3g}"}
                                                              if "tokens_per_s" in shown else {}))
            return
        seeds = metrics.get("seeds", [])
        spread = {k: [float(r[k]) for r in seeds if number(r.get(k))] for k in shown}
        item = lambda k, v: f"{k} {_fmt(v)}" + (f" [{_fmt(min(spread[k]))}, {_fmt(max(spread[k]))}]"
                                                if spread[k] else "")
        over = f" (mean [min, max] of {len(seeds)} seeds)" if seeds else ""
        text = f"{self.desc} step {step}/{self.total} {split}{over}: " + ", ".join(item(k, v) for k, v in shown.items())
        if split == "train":
            now = time.perf_counter()
            self._first = self._first or (now, step)
            if step > self._first[1]:
                text += f", eta {_duration((self.total - step) * (now - self._first[0]) / (step - self._first[1]))}"
        self.line(text)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------------------------------------- sinks
class TensorBoardLog:
    """Event files in `workdir` (tensorboardX: no TensorFlow). A resumed run (start_step > 0) purges the
    earlier files' events after its checkpoint, as metrics.jsonl is truncated."""

    def __init__(self, workdir: str, config: dict, start_step: int):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        purge = start_step + 1 if start_step else None
        self.writer = SummaryWriter(workdir, purge_step=purge)
        self._seed_writer = lambda seed: SummaryWriter(os.path.join(workdir, "seeds", f"seed_{seed}"),
                                                       purge_step=purge)
        self.seed_writers = {}
        best = config.get("ckpt", {}).get("best_metric", "loss")
        tags = dict.fromkeys(f"{split}/{name}" for split in ("validation", "test") for name in ("loss", best))
        experiment, session_start, self._session_end = hparams(hyperparameters(config), tags)
        for summary in (experiment, session_start):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "    " + json.dumps(config, indent=2).replace("\n", "\n    "), start_step)

    def write(self, step: int, split: str, metrics: dict) -> None:
        for tag, value in scalars(metrics).items():
            self.writer.add_scalar(f"{split}/{tag}", value, step)
        self.writer.flush()
        for replica in metrics.get("seeds", []):
            seed = replica["seed"]
            if seed not in self.seed_writers:
                self.seed_writers[seed] = self._seed_writer(seed)
            for tag, value in scalars({k: v for k, v in replica.items() if k != "seed"}).items():
                self.seed_writers[seed].add_scalar(f"{split}/{tag}", value, step)
            self.seed_writers[seed].flush()

    def close(self, summary: dict | None = None) -> None:
        if summary is not None:
            self.writer.file_writer.add_summary(self._session_end)
        self.writer.close()
        for writer in self.seed_writers.values():
            writer.close()


class WandbLog:
    """A W&B run in `workdir`/wandb; its id is kept in `workdir`/wandb_run_id so a resumed run continues it."""

    def __init__(self, workdir: str, config: dict, project: str, mode: str):
        import wandb

        id_path = os.path.join(workdir, "wandb_run_id")
        if os.path.exists(id_path):
            with open(id_path) as f:
                run_id = f.read().strip()
        else:
            run_id = uuid.uuid4().hex[:12]
            with open(id_path, "w") as f:
                f.write(run_id + "\n")
        self.run = wandb.init(project=project or "ssm", mode=mode or None, dir=workdir, id=run_id,
                              resume="allow", name=os.path.basename(os.path.normpath(workdir)), config=config)

    def write(self, step: int, split: str, metrics: dict) -> None:
        per_seed = {f"seed_{r['seed']}": {k: v for k, v in r.items() if k != "seed"} for r in metrics.get("seeds", [])}
        self.run.log({f"{split}/{k}": v for k, v in scalars({**metrics, **per_seed}).items()}, step=step)

    def close(self, summary: dict | None = None) -> None:
        if summary is not None:
            self.run.summary.update(scalars({k: v for k, v in summary.items() if k not in ("environment", "seeds")}))
        self.run.finish(exit_code=0 if summary is not None else 1)


# --------------------------------------------------------------------------------------------- reporter
class Reporter:
    """Fans each record out to metrics.jsonl (`jsonl`, a MetricsLog), TensorBoard, W&B and the console.
    With enabled=False (processes other than 0) only `jsonl` is written to."""

    def __init__(self, workdir: str, config: dict, *, start_step: int, jsonl, enabled: bool = True):
        t = config["train"]
        self.sinks = [jsonl]
        if enabled and t.get("tensorboard", True):
            self.sinks.append(TensorBoardLog(workdir, config, start_step))
        if enabled and t.get("wandb", False):
            self.sinks.append(WandbLog(workdir, config, t.get("wandb_project", ""), t.get("wandb_mode", "")))
        desc = f"{config['data']['task']}/{config['model']['mixer']}"
        self.console = Console(t["num_steps"], start_step, desc, t.get("progress_bar", True)) if enabled else None

    def write(self, step: int, split: str, metrics: dict) -> None:
        for sink in self.sinks:
            sink.write(step, split, metrics)
        if self.console is not None:
            self.console.write(step, split, metrics)

    def advance(self, n: int = 1) -> None:
        if self.console is not None:
            self.console.advance(n)

    def close(self, summary: dict | None = None) -> None:
        """Close every sink; `summary` (None when the run stopped early) goes to W&B's run summary."""
        if self.console is not None:
            self.console.close()
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close(summary)
