"""Plot a run's curves: `python -m ssm.analysis.plot DIR [--out FILE]` (or the `ssm-plot` script).

Reads DIR/metrics.jsonl and writes DIR/curves.png: one panel per metric (loss, accuracy, ...), one line
per split (train / validation / test) against the step. A run of several seeds (train.num_seeds) draws
every replica as a thin line and their mean as a thick one, in the split's color.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

PANELS = ("loss", "accuracy", "scaled_accuracy", "bits_per_char", "lr", "grad_norm")
SPLITS = (("train", "C0"), ("validation", "C1"), ("test", "C2"))


def _points(records: list[dict], split: str, key: str, replica: int | None = None) -> list[tuple]:
    """(step, value) of `key` in the records of `split`: the top level, or replica `replica`'s."""
    out = []
    for r in records:
        source = r if replica is None else (r.get("seeds") or [{}] * (replica + 1))[replica]
        if r["split"] == split and key in source:
            out.append((r["step"], source[key]))
    return out


def draw(records: list[dict], title: str = ""):
    """The figure of `records` (metrics.jsonl's dicts): a panel per metric, a line per split and replica."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_seeds = max((len(r.get("seeds", [])) for r in records), default=0)
    panels = [k for k in PANELS if any(k in r for r in records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for split, color in SPLITS:
            for k in range(num_seeds):
                points = _points(records, split, key, replica=k)
                if points:
                    ax.plot(*zip(*points), color=color, lw=0.8, alpha=0.35)
            points = _points(records, split, key)
            if points:
                label = f"{split} (mean of {num_seeds} seeds)" if num_seeds else split
                ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, ms=3, label=label, color=color,
                        lw=2 if num_seeds else 1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in ("loss", "grad_norm") and all(v > 0 for r in records for k, v in r.items() if k == key):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_run(workdir: str, out: str | None = None) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise SystemExit(f"ssm.analysis.plot: no metrics.jsonl in {workdir!r}")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    fig = draw(records, os.path.basename(os.path.normpath(workdir)))
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
