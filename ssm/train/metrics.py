"""Evaluation metrics (aggregated on the host) and the run's metric files.

* accuracy over weighted targets; scaled accuracy (acc − chance) / (1 − chance) with chance = 1 / classes
  (Grazzi et al., 2025); loss (mean NLL, nats); bits per character = loss / ln 2 for language modeling;
* per-bucket accuracy by sequence length (length generalization) or by position (prefix length);
* for per-token tagging (bucket "position", the group word problems): sequence accuracy (every target of an
  example right) and the cumulative-prefix sequence accuracy curve — for t = 1, 2, ..., the fraction of
  examples whose first t targets are all right — the metric the DeltaProduct paper plots over t (its
  code: `cumulative_sequence_accuracies` in automl/DeltaProduct state_tracking/src/utils.py).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np


def _bucketed(correct, weights, key, value_range: tuple[int, int], num_buckets: int) -> dict:
    """Accuracy per bucket of the integer array `key` (same shape as correct); buckets split the closed
    range `value_range` into `num_buckets` near-equal parts, named "lo-hi" (inclusive)."""
    valid = weights > 0
    lo, hi = value_range
    edges = np.unique(np.linspace(lo, hi + 1, num_buckets + 1).round().astype(int))
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = valid & (key >= lo) & (key < hi)
        if sel.any():
            out[f"{lo}-{hi - 1}"] = float((correct * weights)[sel].sum() / weights[sel].sum())
    return out


def prefix_sequence_accuracy(correct, weights, position, max_position: int) -> tuple[float, list[float]]:
    """(sequence accuracy, curve) of per-target `correct` (n, T) with `weights` (n, T) (> 0: a target) and
    `position` (n, T): the target's 1-based position inside its example (packed rows hold several examples,
    each starting at position 1; 0 on padding). curve[t − 1] = fraction of examples whose weighted targets
    at positions ≤ t are all right, t = 1..max_position (an example with no target up to t counts as right);
    sequence accuracy = fraction of examples with every target right."""
    valid = weights > 0
    T = correct.shape[1]
    example = np.arange(correct.shape[0])[:, None] * (T + 1) + np.cumsum(position == 1, axis=1)
    ids = np.unique(example[valid])
    if not len(ids):
        return float("nan"), [float("nan")] * max_position
    first_wrong = np.full(len(ids), np.inf)  # position of each example's first wrong target
    wrong = valid & (correct <= 0)
    np.minimum.at(first_wrong, np.searchsorted(ids, example[wrong]), position[wrong])
    t = np.arange(1, max_position + 1)
    curve = (first_wrong[None, :] > t[:, None]).mean(axis=1)
    return float(np.isinf(first_wrong).mean()), [float(c) for c in curve]


# The scalar metrics of one evaluation (`aggregate`) and which way is better: what ckpt.best_metric may name.
METRIC_MODES = {"loss": "min", "accuracy": "max", "scaled_accuracy": "max", "bits_per_char": "min",
                "sequence_accuracy": "max"}


def scalar_metrics(lm: bool, bucket_by: str | None = None) -> tuple[str, ...]:
    """The scalar metrics `aggregate` reports for a task: a language model (bits per character) or a
    classifier (scaled accuracy), plus the sequence accuracy of per-token tagging (bucket_by="position").
    The per-bucket accuracies are lists/dicts, not candidates for ckpt.best_metric."""
    names = ("loss", "accuracy", "bits_per_char") if lm else ("loss", "accuracy", "scaled_accuracy")
    return names + (("sequence_accuracy",) if bucket_by == "position" else ())


def best_step(records: list[dict], steps, metric: str, mode: str) -> int | None:
    """Among `steps`, the one whose validation record (metrics.jsonl) has the best `metric` ("min" or "max"
    `mode`); ties go to the later step. None if no validation record names one of `steps`."""
    steps = set(steps)
    ranked = [r for r in records if r["split"] == "validation" and r["step"] in steps and metric in r]
    if not ranked:
        return None
    sign = 1 if mode == "min" else -1
    return min(ranked, key=lambda r: (sign * r[metric], -r["step"]))["step"]


def aggregate(outputs: list[dict], lengths: np.ndarray, *, num_classes: int, lm: bool = False,
              bucket_by: str | None = None, bucket_range: tuple[int, int] | None = None,
              num_buckets: int = 4, bucket_key: np.ndarray | None = None) -> dict:
    """Metrics of one evaluation from the eval step's per-target outputs (concatenated over batches).

    bucket_key (n, T): the bucket of each target (packed rows: its example's length or position, see
    ssm/train/packing.py); default: the row's length / the token's position."""
    n = len(lengths)  # rows beyond n pad the last batch (zero weight)
    nll, correct, weights = (np.concatenate([np.asarray(o[k], np.float64) for o in outputs])[:n]
                             for k in ("nll", "correct", "weights"))
    total = max(weights.sum(), 1.0)
    loss = float((nll * weights).sum() / total)
    acc = float((correct * weights).sum() / total)
    metrics = {"loss": loss, "accuracy": acc}
    if lm:
        metrics["bits_per_char"] = loss / math.log(2)
    else:
        chance = 1.0 / num_classes
        metrics["scaled_accuracy"] = (acc - chance) / (1.0 - chance)
    if bucket_by is not None and correct.ndim == 2:
        if bucket_key is not None:
            key = np.asarray(bucket_key)
        elif bucket_by == "length":
            key = np.broadcast_to(lengths[:, None], correct.shape)
        else:  # position: prefix length t + 1
            key = np.broadcast_to(np.arange(1, correct.shape[1] + 1)[None, :], correct.shape)
        if bucket_range is None:
            bucket_range = (int(key[weights > 0].min()), int(key[weights > 0].max()))
        metrics[f"accuracy_by_{bucket_by}"] = _bucketed(correct, weights, key, bucket_range, num_buckets)
        if bucket_by == "position":
            metrics["sequence_accuracy"], metrics["sequence_accuracy_by_prefix"] = prefix_sequence_accuracy(
                correct, weights, key, bucket_range[1])
    return metrics


class MetricsLog:
    """Appends one JSON object per logged step / evaluation to DIR/metrics.jsonl."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")

    def truncate_after(self, step: int) -> None:
        """Drop records written after the checkpoint at `step` that a resumed run restarts from (and the
        final test record at `step`, which the resumed run writes again)."""
        if not os.path.exists(self.path):
            return
        keep = lambda r: r["step"] < step or (r["step"] == step and r["split"] != "test")
        with open(self.path) as f:
            records = [line for line in f if line.strip() and keep(json.loads(line))]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(records)
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, metrics: dict) -> None:
        record = {"step": int(step), "split": split, **_jsonable(metrics)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _jsonable(tree):
    if isinstance(tree, dict):
        return {k: _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, (np.generic, np.ndarray)) or hasattr(tree, "item"):
        return np.asarray(tree).item()
    return tree


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
