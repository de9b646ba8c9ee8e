"""Shared machinery of the training experiments: run a grid of settings × seeds through train.py, then
report a mean ± std table and an accuracy-by-length (or by-prefix-length) figure.

An experiment module declares an `Experiment` and calls `main(experiment)`; see experiments/parity.py.
Each run goes to runs/<name>[-<preset>]/<setting>-s<seed>/ (train.py's --workdir); runs execute one after the other
(never two at once: CPU), finished runs (summary.json present) are skipped, and the wall / CPU time of each
is appended to runs/<name>/walltimes.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Experiment:
    name: str                             # runs/<name>/, docs/figures/<name>_by_<bucket>.png
    config: str                           # e.g. "configs/parity.py"
    settings: dict                        # setting -> (label, [--config.* overrides])
    bucket: str = "length"                # "length" (test sequence length) or "position" (prefix length)
    xlabel: str = "test sequence length"
    title: str = ""

    def runs_dir(self, preset: str = "default") -> Path:
        """runs/<name>/ for the default preset, runs/<name>-<preset>/ for another one."""
        return ROOT / "runs" / (self.name if preset == "default" else f"{self.name}-{preset}")


def save_figure(fig, out: Path, dpi: int = 110) -> None:
    """Lay out, write (creating the folder) and report a matplotlib figure."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    print(f"wrote {out}")


def train_logged(args: list[str], workdir: Path, log: Path, preset: str, seed: int, lock: str | None = None) -> None:
    """`train.py --workdir=<workdir> <args>` unless that run finished already (summary.json); appends the
    command and its wall / CPU time to `log` (JSON lines). With `lock` (a file path, e.g. /tmp/ssm_cpu.lock on
    a shared machine) the run first waits for an exclusive flock on it (the wait is not timed) and the record
    also holds the 1-minute load average at its start and end."""
    if (workdir / "summary.json").exists():
        return
    cmd = [sys.executable, "train.py", f"--workdir={workdir}", *args]
    print(" ".join(cmd[1:]), flush=True)
    held = open(lock, "a") if lock else None
    if held:
        import fcntl
        fcntl.flock(held, fcntl.LOCK_EX)
    load0 = os.getloadavg()[0]
    t0, c0 = time.time(), os.times()
    try:
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        load1 = os.getloadavg()[0]
        if held:
            held.close()  # releases the lock
    c1 = os.times()
    rec = {"run": workdir.name, "preset": preset, "seed": seed, "cmd": " ".join(cmd[1:]),
           "wall_s": round(time.time() - t0, 1),
           "cpu_s": round(c1.children_user - c0.children_user + c1.children_system - c0.children_system, 1),
           **({"load_start": round(load0, 2), "load_end": round(load1, 2)} if lock else {})}
    with open(log, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(rec, flush=True)


def run(exp: Experiment, preset: str, seeds: list[int], only: list[str], extra: list[str]) -> None:
    runs = exp.runs_dir(preset)
    runs.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for name in only:
            args = [f"--config={exp.config}:{preset}", f"--config.seed={seed}", "--config.train.progress_bar=False",
                    *exp.settings[name][1], *extra]
            train_logged(args, runs / f"{name}-s{seed}", runs / "walltimes.jsonl", preset, seed)


def collect(exp: Experiment, runs: Path) -> dict:
    """setting -> {"label", "seeds", "scaled" (per seed), "buckets" (per seed dict), "wall_min"}."""
    walls = {}
    if (runs / "walltimes.jsonl").exists():
        for line in open(runs / "walltimes.jsonl"):
            r = json.loads(line)
            walls[r["run"]] = r["wall_s"] / 60
    out = {}
    for name, (label, _) in exp.settings.items():
        dirs = sorted(p for p in runs.glob(f"{name}-s*") if (p / "summary.json").exists())
        if not dirs:
            continue
        tests = [json.load(open(d / "summary.json"))["test"] for d in dirs]
        out[name] = {"label": label, "seeds": [d.name.rsplit("-s", 1)[1] for d in dirs],
                     "scaled": [t["scaled_accuracy"] for t in tests],
                     "buckets": [t.get(f"accuracy_by_{exp.bucket}", {}) for t in tests],
                     "prefix": [t["sequence_accuracy_by_prefix"] for t in tests
                                if "sequence_accuracy_by_prefix" in t],  # word problems (bucket position)
                     "wall_min": [walls[d.name] for d in dirs if d.name in walls]}
    return out


def report(exp: Experiment, out_png: Path, preset: str = "default") -> None:
    import numpy as np

    results = collect(exp, exp.runs_dir(preset))
    print("| setting | seeds | test scaled acc. (mean ± std) | per seed | wall min / run |")
    print("|---|---|---|---|---|")
    for r in results.values():
        a = np.array(r["scaled"])
        wall = f"{np.mean(r['wall_min']):.1f}" if r["wall_min"] else "–"
        print(f"| {r['label']} | {', '.join(r['seeds'])} | {a.mean():.3f} ± {a.std():.3f} | "
              f"{', '.join(f'{x:.3f}' for x in a)} | {wall} |")
    if not results:
        print(f"no finished runs under {exp.runs_dir(preset)}")
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = [r for r in results.values() if r["prefix"] and len(r["prefix"]) == len(r["scaled"])]
    fig, axes = plt.subplots(1, 2 if prefix else 1, figsize=(11.5 if prefix else 6.4, 3.8), squeeze=False)
    ax = axes[0, 0]
    for r in results.values():
        keys = sorted(r["buckets"][0], key=lambda k: int(k.split("-")[0]))
        acc = np.array([[b[k] for k in keys] for b in r["buckets"]])
        x = np.arange(len(keys))
        ax.errorbar(x, acc.mean(0), yerr=acc.std(0), marker="o", capsize=3,
                    label=f"{r['label']} ({len(acc)} seeds)")
    ax.set_xticks(x, keys, fontsize=7)
    ax.set_xlabel(exp.xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.03)
    ax.set_title(exp.title or exp.name)
    ax.legend(fontsize=7, loc="lower left")
    if prefix:  # the DeltaProduct paper's figure: fraction of sequences whose first t predictions are all right
        ax = axes[0, 1]
        for r in prefix:
            curve = np.array(r["prefix"])
            t = np.arange(1, curve.shape[1] + 1)
            ax.plot(t, curve.mean(0), label=r["label"])
            ax.fill_between(t, curve.min(0), curve.max(0), alpha=0.2)
        ax.set_xlabel("prefix length t")
        ax.set_ylabel("test sequence accuracy of the first t")
        ax.set_ylim(0.0, 1.03)
        ax.set_title("cumulative-prefix sequence accuracy (mean, min–max over seeds)", fontsize=9)
    save_figure(fig, out_png)


def main(exp: Experiment, doc: str) -> None:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=list(exp.settings), choices=list(exp.settings))
    p.add_argument("--out", default=None, help="figure path (default docs/figures/<name>[-<preset>]_by_<bucket>.png)")
    p.add_argument("overrides", nargs="*", help="extra --config.* flags passed to every run (after '--')")
    a = p.parse_args()
    if a.command == "run":
        run(exp, a.preset, a.seeds, a.only, a.overrides)
    else:
        stem = exp.name if a.preset == "default" else f"{exp.name}-{a.preset}"
        report(exp, Path(a.out or ROOT / "docs" / "figures" / f"{stem}_by_{exp.bucket}.png"), a.preset)
