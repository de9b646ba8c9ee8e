"""Negative eigenvalues on parity (Grazzi et al., 2025): DeltaNet β ∈ (0, 2) vs β ∈ (0, 1), DeltaProduct
n_h = 2, and the diagonal S4D / S5 layers as baselines. Train lengths 3–40, test 40–256, scaled accuracy.

    python experiments/parity.py run  [--preset default] [--seeds 0 1 2] [--only dn-neg dn-pos ...]
    python experiments/parity.py report            # table (markdown) + docs/figures/parity_by_length.png

`run` trains each setting with `train.py --config=configs/parity.py:<preset>` one after the other (never
two at once: CPU), into runs/parity/<setting>-s<seed>/, and appends the wall time of each to
runs/parity/walltimes.jsonl. Existing finished runs are skipped (train.py would resume them anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "parity"
# setting -> (label, --config overrides)
SETTINGS = {
    "dn-neg": ("DeltaNet, β ∈ (0, 2): eigenvalues (−1, 1)",
               ["--config.model.mixer=deltanet", "--config.model.allow_neg_eigval=True"]),
    "dn-pos": ("DeltaNet, β ∈ (0, 1): eigenvalues (0, 1)",
               ["--config.model.mixer=deltanet", "--config.model.allow_neg_eigval=False"]),
    "dp2-neg": ("DeltaProduct n_h = 2, (−1, 1)",
                ["--config.model.mixer=deltaproduct", "--config.model.num_householder=2",
                 "--config.model.allow_neg_eigval=True"]),
    "s4d": ("S4D-LegS (diagonal, complex)", ["--config.model.mixer=s4d"]),
    "s5": ("S5-PTD (diagonal, complex)", ["--config.model.mixer=s5"]),
}


def run(preset: str, seeds: list[int], only: list[str]) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for name in only:
            workdir = RUNS / f"{name}-s{seed}"
            if (workdir / "summary.json").exists():
                continue
            cmd = [sys.executable, "train.py", f"--config=configs/parity.py:{preset}", f"--workdir={workdir}",
                   f"--config.seed={seed}", *SETTINGS[name][1]]
            print(" ".join(cmd), flush=True)
            t0, c0 = time.time(), os.times()
            subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            c1 = os.times()
            rec = {"run": workdir.name, "preset": preset, "seed": seed, "cmd": " ".join(cmd[1:]),
                   "wall_s": round(time.time() - t0, 1),
                   "cpu_s": round(c1.children_user - c0.children_user + c1.children_system - c0.children_system, 1)}
            with open(RUNS / "walltimes.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(rec, flush=True)


def report(out_png: Path) -> None:
    import numpy as np

    walls = {}
    if (RUNS / "walltimes.jsonl").exists():
        for line in open(RUNS / "walltimes.jsonl"):
            r = json.loads(line)
            walls[r["run"]] = r
    rows, curves = [], {}
    print("| setting | seeds | test scaled acc. (mean ± std) | per seed | wall min / run |")
    print("|---|---|---|---|---|")
    for name, (label, _) in SETTINGS.items():
        dirs = sorted(p for p in RUNS.glob(f"{name}-s*") if (p / "summary.json").exists())
        if not dirs:
            continue
        accs, by_len, wall = [], [], []
        for d in dirs:
            test = json.load(open(d / "summary.json"))["test"]
            accs.append(test["scaled_accuracy"])
            by_len.append(test.get("accuracy_by_length", {}))
            if d.name in walls:
                wall.append(walls[d.name]["wall_s"] / 60)
        seeds = [d.name.rsplit("-s", 1)[1] for d in dirs]
        a = np.array(accs)
        print(f"| {label} | {', '.join(seeds)} | {a.mean():.3f} ± {a.std():.3f} | "
              f"{', '.join(f'{x:.3f}' for x in accs)} | {np.mean(wall):.1f} |" if wall else
              f"| {label} | {', '.join(seeds)} | {a.mean():.3f} ± {a.std():.3f} | "
              f"{', '.join(f'{x:.3f}' for x in accs)} | – |")
        curves[label] = by_len
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for label, by_len in curves.items():
        keys = sorted(by_len[0], key=lambda k: float(k.split("-")[0]))
        acc = np.array([[b[k] for k in keys] for b in by_len])
        x = np.arange(len(keys))
        ax.errorbar(x, acc.mean(0), yerr=acc.std(0), marker="o", capsize=3, label=f"{label} ({len(by_len)} seeds)")
    ax.set_xticks(x, keys)
    ax.set_xlabel("test sequence length (trained on 3–40)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.03)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_title("Parity: accuracy vs length")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "report"])
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "parity_by_length.png"))
    a = p.parse_args()
    run(a.preset, a.seeds, a.only) if a.command == "run" else report(Path(a.out))
