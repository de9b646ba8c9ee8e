"""Shared machinery of the training experiments: run a grid of settings × seeds through train.py, then
report a table (mean ± std, per seed, how many seeds solved the task) and an accuracy-by-length (or
by-prefix-length) figure.

An experiment module declares an `Experiment` and calls `main(experiment)`; see experiments/parity.py.
All seeds of a setting train as ONE train.py run with `train.num_seeds` (vmapped replicas; consecutive seeds
s..s+S-1, a gap in --seeds starts another run) into runs/<name>[-<preset>]/<setting>-seeds<s>-<s+S-1>/;
the report reads each replica from summary.json's "seeds" and "solved" (the task's `train.solved_metric`
>= `train.solved_threshold`). Runs execute one after the other (never two at once: CPU), finished runs
(summary.json present) are skipped, and the wall / CPU time of each is appended to
runs/<name>[-<preset>]/walltimes.jsonl. With `--lock FILE` each run first waits for an flock on FILE.
Single-seed run folders of older versions (<setting>-s<seed>/) are still read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def seed_runs(seeds: list[int]) -> list[tuple[int, int]]:
    """Consecutive blocks of `seeds` as (first seed, number of seeds): [0, 1, 2, 5] -> [(0, 3), (5, 1)]."""
    blocks = []
    for seed in sorted(set(seeds)):
        if blocks and seed == blocks[-1][0] + blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + 1)
        else:
            blocks.append((seed, 1))
    return blocks


def run(exp: Experiment, preset: str, seeds: list[int], only: list[str], extra: list[str],
        lock: str | None = None) -> None:
    runs = exp.runs_dir(preset)
    runs.mkdir(parents=True, exist_ok=True)
    for first, count in seed_runs(seeds):
        for name in only:
            args = [f"--config={exp.config}:{preset}", f"--config.seed={first}", f"--config.train.num_seeds={count}",
                    "--config.train.progress_bar=False", *exp.settings[name][1], *extra]
            train_logged(args, runs / f"{name}-seeds{first}-{first + count - 1}", runs / "walltimes.jsonl", preset,
                         first, lock=lock)


def replicas(summary: dict) -> list[dict]:
    """The per-seed summaries of a run: summary.json's "seeds" (each with "seed" and "solved"), or the
    single-seed summary of an older run folder (its "solved" is None)."""
    return summary["seeds"] if "seeds" in summary else [{**summary, "solved": summary.get("solved")}]


def collect(exp: Experiment, runs: Path) -> dict:
    """setting -> {"label", "seeds", "scaled", "solved" (per seed: True / False / None), "buckets" (per seed
    dict), "prefix", "wall_min" (per run, all its seeds)}."""
    walls = {}
    if (runs / "walltimes.jsonl").exists():
        for line in open(runs / "walltimes.jsonl"):
            r = json.loads(line)
            walls[r["run"]] = r["wall_s"] / 60
    out = {}
    for name, (label, _) in exp.settings.items():
        pattern = re.compile(rf"{re.escape(name)}-(s\d+|seeds\d+-\d+)")
        dirs = sorted(p for p in runs.iterdir() if pattern.fullmatch(p.name) and (p / "summary.json").exists())
        if not dirs:
            continue
        found = [(int(r.get("seed", d.name.rsplit("-s", 1)[-1])), r)
                 for d in dirs for r in replicas(json.load(open(d / "summary.json")))]
        found.sort(key=lambda sr: sr[0])
        seeds, per = [str(s) for s, _ in found], [r for _, r in found]
        tests = [r["test"] for r in per]
        out[name] = {"label": label, "seeds": seeds, "scaled": [t["scaled_accuracy"] for t in tests],
                     "solved": [r.get("solved") for r in per],
                     "buckets": [t.get(f"accuracy_by_{exp.bucket}", {}) for t in tests],
                     "prefix": [t["sequence_accuracy_by_prefix"] for t in tests
                                if "sequence_accuracy_by_prefix" in t],  # word problems (bucket position)
                     "sequence": [t["sequence_accuracy"] for t in tests if "sequence_accuracy" in t],
                     "train_acc": [r.get("train", {}).get("accuracy", float("nan")) for r in per],
                     "train_length": next((json.load(open(d / "config.json"))["data"].get("train_length")
                                           for d in dirs if (d / "config.json").exists()), None),
                     "wall_min": [walls[d.name] for d in dirs if d.name in walls]}
    return out


def solved_text(solved: list) -> str:
    """"k / n" seeds solved, "–" when the runs did not count it (older runs, or no solved metric)."""
    return "–" if None in solved else f"{sum(solved)} / {len(solved)}"


def print_position_table(results: dict) -> None:
    """Per-token tagging (word problems): the last logged train accuracy, the test accuracy per prefix-length
    bucket and the test sequence accuracy (every token of a test word right), mean ± std over seeds."""
    import numpy as np

    keys = sorted(next(iter(results.values()))["buckets"][0], key=lambda k: int(k.split("-")[0]))
    print("\n| setting | train acc. | " + " | ".join(f"test acc. {k}" for k in keys)
          + " | test sequence acc. (mean ± std) | per seed | first 2×train-length tokens right, per seed |")
    print("|---|---|" + "---|" * len(keys) + "---|---|---|")
    for r in results.values():
        acc = np.array([[b.get(k, np.nan) for k in keys] for b in r["buckets"]]).mean(0)
        seq = np.array(r["sequence"])
        twice = 2 * r["train_length"] if r["train_length"] else None  # the curve at t = 2 × training length
        at_twice = [c[twice - 1] for c in r["prefix"]] if twice and r["prefix"] and twice <= len(r["prefix"][0]) else []
        print(f"| {r['label']} | {np.mean(r['train_acc']):.3f} | " + " | ".join(f"{a:.3f}" for a in acc)
              + f" | {seq.mean():.3f} ± {seq.std():.3f} | {', '.join(f'{x:.2f}' for x in seq)} | "
              + (f"t = {twice}: {', '.join(f'{x:.2f}' for x in at_twice)}" if at_twice else "–") + " |")
    print()


def report(exp: Experiment, out_png: Path, preset: str = "default", only: list[str] | None = None) -> None:
    """Markdown table and figure of the finished runs of the settings in `only` (default: all)."""
    import numpy as np

    results = {k: v for k, v in collect(exp, exp.runs_dir(preset)).items() if only is None or k in only}
    print("| setting | seeds | solved | test scaled acc. (mean ± std) | per seed | wall min (all seeds) |")
    print("|---|---|---|---|---|---|")
    for r in results.values():
        a = np.array(r["scaled"])
        wall = f"{sum(r['wall_min']):.1f}" if r["wall_min"] else "–"
        print(f"| {r['label']} | {', '.join(r['seeds'])} | {solved_text(r['solved'])} | {a.mean():.3f} ± {a.std():.3f}"
              f" | {', '.join(f'{x:.3f}' for x in a)} | {wall} |")
    if not results:
        print(f"no finished runs under {exp.runs_dir(preset)}")
        return
    if exp.bucket == "position":
        print_position_table(results)
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
        line = ax.errorbar(x, acc.mean(0), yerr=acc.std(0), marker="o", capsize=3,
                           label=f"{r['label']} (solved {solved_text(r['solved'])} seeds)")
        for seed_acc in acc:  # every seed, thin
            ax.plot(x, seed_acc, color=line[0].get_color(), lw=0.6, alpha=0.35)
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
    p.add_argument("--lock", default=None, help="wait for an flock on this file before each run (/tmp/ssm_cpu.lock)")
    p.add_argument("overrides", nargs="*", help="extra --config.* flags passed to every run (after '--')")
    a = p.parse_args()
    if a.command == "run":
        run(exp, a.preset, a.seeds, a.only, a.overrides, a.lock)
    else:
        stem = exp.name if a.preset == "default" else f"{exp.name}-{a.preset}"
        report(exp, Path(a.out or ROOT / "docs" / "figures" / f"{stem}_by_{exp.bucket}.png"), a.preset, a.only)
