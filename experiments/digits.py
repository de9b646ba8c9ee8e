"""Sequential and permuted UCI digits (64 steps of one gray feature, 10 classes; configs/digits.py) on this CPU:
S5-PTD (the digits config's pre-norm + MLP block, and the S4/S5 block recipe), S4D-LegS and the gated diagonal
RNN baseline, 3 seeds each. The target of issue 16: a 2-layer S5-PTD at >= 95 % test accuracy in <= 10 min.

    python experiments/digits.py run [--preset default|permuted] [--seeds 0 1 2] [--only s5ptd s4d ...]
    python experiments/digits.py report [--preset ...]     # markdown table (docs/results.md)

Each run waits for the shared CPU lock (/tmp/ssm_cpu.lock, not timed) and records its wall time and the
machine's 1-minute load average at start and end (runs/digits[-permuted]/walltimes.jsonl).
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


def run(preset: str, seeds: list, only: list, extra: list) -> None:
    runs = DIGITS.runs_dir(preset)
    runs.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for name in only:
            args = [f"--config={DIGITS.config}:{preset}", f"--config.seed={seed}", "--config.train.progress_bar=False",
                    *DIGITS.settings[name][1], *extra]
            train_logged(args, runs / f"{name}-s{seed}", runs / "walltimes.jsonl", preset, seed, lock=LOCK)


def report(preset: str) -> None:
    runs = DIGITS.runs_dir(preset)
    walls = {}
    if (runs / "walltimes.jsonl").exists():
        for line in open(runs / "walltimes.jsonl"):
            r = json.loads(line)
            walls[r["run"]] = r
    print(f"| model ({preset}) | seeds | test acc. (final) mean ± std | per seed | test acc. at best val. | "
          f"wall min (mean, max) | load avg. | ≥ {TARGET:.0%} in ≤ {BUDGET_MIN:g} min |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (label, _) in DIGITS.settings.items():
        dirs = sorted(p for p in runs.glob(f"{name}-s*") if (p / "summary.json").exists())
        if not dirs:
            continue
        summaries = [json.load(open(d / "summary.json")) for d in dirs]
        final = np.array([s["test"]["accuracy"] for s in summaries])
        best = np.array([s["best"]["test"]["accuracy"] for s in summaries])
        recs = [walls.get(d.name, {}) for d in dirs]
        minutes = np.array([r.get("wall_s", np.nan) / 60 for r in recs])
        loads = [r[k] for r in recs for k in ("load_start", "load_end") if k in r]
        hits = sum(bool(a >= TARGET and m <= BUDGET_MIN) for a, m in zip(final, minutes))
        seeds = ", ".join(d.name.rsplit("-s", 1)[1] for d in dirs)
        print(f"| {label} | {seeds} | {final.mean():.3f} ± {final.std():.3f} | {', '.join(f'{a:.3f}' for a in final)} "
              f"| {best.mean():.3f} | {np.nanmean(minutes):.1f}, {np.nanmax(minutes):.1f} | "
              f"{min(loads, default=np.nan):.1f}–{max(loads, default=np.nan):.1f} | {hits}/{len(dirs)} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--preset", default="default", choices=["default", "permuted"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=list(DIGITS.settings), choices=list(DIGITS.settings))
    p.add_argument("overrides", nargs="*", help="extra --config.* flags passed to every run (after '--')")
    a = p.parse_args()
    if a.command == "run":
        run(a.preset, a.seeds, a.only, a.overrides)
    else:
        report(a.preset)
