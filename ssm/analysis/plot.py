"""Plot a run's curves: `python -m ssm.analysis.plot DIR [--out FILE]` (or the `ssm-plot` script).

Reads DIR/metrics.jsonl and writes DIR/curves.png: one panel per metric (loss, accuracy, ...), one line
per split (train / validation / test) against the step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PANELS = ("loss", "accuracy", "scaled_accuracy", "bits_per_char", "lr", "grad_norm")


def plot_run(workdir: str, out: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"ssm.analysis.plot: no metrics.jsonl in {workdir!r}")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    panels = [k for k in PANELS if any(k in r for r in records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for split, color in (("train", "C0"), ("validation", "C1"), ("test", "C2")):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if len(points) < 30 else None, ms=3, label=split, color=color)
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in ("loss", "grad_norm") and all(v > 0 for r in records for k, v in r.items() if k == key):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(os.path.basename(os.path.normpath(workdir)))
    fig.tight_layout()
    out = out or os.path.join(workdir, "curves.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ssm-plot", description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--out", default=None, help="output PNG (default DIR/curves.png)")
    args = parser.parse_args(argv)
    print(plot_run(args.workdir, args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
