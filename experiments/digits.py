"""Sequential and permuted UCI digits (64 steps of one gray feature, 10 classes; configs/digits.py) on this CPU:
S5-PTD (the digits config's pre-norm + MLP block, and the S4/S5 block recipe), S4D-LegS and the gated diagonal
RNN baseline. The target of issue 16: a 2-layer S5-PTD at >= 95 % test accuracy in <= 10 min.

    python experiments/digits.py run [--preset default|permuted] [--seed0 0] [--num-seeds 3] [--only s5ptd s4d ...]
    python experiments/digits.py report [--preset ...]     # markdown table (docs/results.md)

Each setting is ONE train.py run with `train.num_seeds` replicas (seeds seed0 .. seed0 + S - 1, vmapped in one
step) into runs/digits[-permuted]/<setting>.seeds<first>-<last>/. It waits for the shared CPU lock
(/tmp/ssm_cpu.lock, not timed) and records its wall time and the machine's 1-minute load average at start and
end (runs/digits[-permuted]/walltimes.jsonl). The wall time is that of all S seeds together.
"""

import argparse
import json

import numpy as np
from grid import Experiment, train_logged

LOCK = "/tmp/ssm_cpu.lock"
TARGET, BUDGET_MIN = 0.95, 10.0
DIGITS = Experiment(
    name="digits", config="configs/digits.py",
    settings={
        "s5ptd": ("S5-PTD, pre-norm + GLU MLP block", ["--config.model.mixer=s5"]),
        "s5ptd-s5block": ("S5-PTD, S5 block (batchnorm, half_glu1, bidirectional)",
                          ["--config.model.mixer=s5", "--config.model.block=s5", "--config.model.norm=batchnorm",
                           "--config.model.final_norm=False", "--config.model.s5.bidirectional=True"]),
        "s4d": ("S4D-LegS, pre-norm + GLU MLP block", ["--config.model.mixer=s4d", "--config.model.s4d.state_size=32"]),
        "diag": ("gated diagonal RNN (`diag`), pre-norm + GLU MLP block",
                 ["--config.model.mixer=diag", "--config.model.diag.state_size=32"]),
    })


def run_name(setting: str, seed0: int, num_seeds: int) -> str:
    return f"{setting}.seeds{seed0}-{seed0 + num_seeds - 1}"


def run(preset: str, seed0: int, num_seeds: int, only: list, extra: list) -> None:
    runs = DIGITS.runs_dir(preset)
    runs.mkdir(parents=True, exist_ok=True)
    for name in only:
        args = [f"--config={DIGITS.config}:{preset}", f"--config.seed={seed0}", f"--config.train.num_seeds={num_seeds}",
                "--config.train.progress_bar=False", *DIGITS.settings[name][1], *extra]
        train_logged(args, runs / run_name(name, seed0, num_seeds), runs / "walltimes.jsonl", preset, seed0, lock=LOCK)


def per_seed(summary: dict) -> list[dict]:
    """The per-replica summaries of a run (a single-seed run: itself, with its seed unknown here)."""
    return summary.get("seeds", [{"seed": None, **summary}])


def report(preset: str) -> None:
    runs = DIGITS.runs_dir(preset)
    walls = {}
    if (runs / "walltimes.jsonl").exists():
        walls = {r["run"]: r for r in map(json.loads, open(runs / "walltimes.jsonl"))}
    print(f"| model ({preset}) | seeds | test acc. (final) mean ± std | per seed | test acc. at best val. | "
          f"wall min (all seeds, one run) | load avg. | ≥ {TARGET:.0%} in ≤ {BUDGET_MIN:g} min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (label, _) in DIGITS.settings.items():
        for d in sorted(p for p in runs.glob(f"{name}.seeds*") if (p / "summary.json").exists()):
            seeds = per_seed(json.load(open(d / "summary.json")))
            final = np.array([s["test"]["accuracy"] for s in seeds])
            best = np.array([s["best"]["test"]["accuracy"] for s in seeds])
            rec = walls.get(d.name, {})
            minutes = rec.get("wall_s", np.nan) / 60
            loads = [rec[k] for k in ("load_start", "load_end") if k in rec]
            hits = int(((final >= TARGET) & (minutes <= BUDGET_MIN)).sum())
            print(f"| {label} | {', '.join(str(s['seed']) for s in seeds)} | {final.mean():.3f} ± {final.std():.3f} | "
                  f"{', '.join(f'{a:.3f}' for a in final)} | {best.mean():.3f} | {minutes:.1f} | "
                  f"{min(loads, default=np.nan):.1f}–{max(loads, default=np.nan):.1f} | {hits}/{len(seeds)} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--preset", default="default", choices=["default", "permuted"])
    p.add_argument("--seed0", type=int, default=0, help="the first seed (config.seed)")
    p.add_argument("--num-seeds", type=int, default=3, help="train.num_seeds: replicas in the one run")
    p.add_argument("--only", nargs="+", default=list(DIGITS.settings), choices=list(DIGITS.settings))
    p.add_argument("overrides", nargs="*", help="extra --config.* flags passed to every run (after '--')")
    a = p.parse_args()
    if a.command == "run":
        run(a.preset, a.seed0, a.num_seeds, a.only, a.overrides)
    else:
        report(a.preset)
