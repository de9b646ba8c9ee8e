"""Many seeds in one run (`train.num_seeds` = S): the host side of S replicas trained by one vmapped step.

Replica k of a run with `seed` = s is the run `--config.seed=<s + k>`: its parameters, data order and dropout
keys come from s + k; the generated data set (`data.seed`) is shared. Per replica the loop keeps a list of
S metric dicts; a record (metrics.jsonl, TensorBoard, console) of S > 1 replicas holds their mean at the top
level (the keys of a single run) and the per-replica dicts under "seeds":

    {"step": 200, "split": "validation", "loss": 0.41, "accuracy": 0.8, ...,
     "seeds": [{"seed": 0, "loss": 0.12, ...}, {"seed": 1, "loss": 0.69, ...}]}

A single run's record has no "seeds" (the format of a run before num_seeds existed).
"""

from __future__ import annotations

import math

import numpy as np

from ssm.checks import fail
from ssm.train.data import Batches
from ssm.train.packing import model_batch, pack_batch, rows_needed

SUMMED = ("skipped_steps",)  # counts: the top level holds their total over replicas, not their mean
LOWER_IS_BETTER = ("loss", "bits_per_char")


class ReplicaBatches:
    """The training batch of each step for every replica: replica k's rows in the order of
    `Batches(arrays, batch_size, seeds[k])` (a single run's order for that seed), stacked (S, B, ...) for
    S > 1, as one (B, ...) batch for S = 1. With `pack_rows` (train.pack_batches) each replica's examples
    are packed into that many rows of `pack_row_len` tokens (default: the padded length) with reset flags
    (`pack_batch`), unless one replica's need more."""

    def __init__(self, arrays: dict, batch_size: int, seeds: list[int], pack_rows: int = 0,
                 pack_row_len: int | None = None):
        self.orders = [Batches(arrays, batch_size, s) for s in seeds]
        self.pack_rows, self.pack_row_len = pack_rows, pack_row_len

    def position(self, step: int) -> dict:
        return self.orders[0].position(step)

    def replica(self, k: int, step: int) -> dict:
        return model_batch(self.orders[k](step))

    def __call__(self, step: int) -> dict:
        batches = [self.replica(k, step) for k in range(len(self.orders))]
        if self.pack_rows:
            packed = [pack_batch(b, self.pack_rows, self.pack_row_len) for b in batches]
            batches = batches if any(p is None for p in packed) else packed
        if len(batches) == 1:
            return batches[0]
        return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def pack_rows_for(arrays: dict, batch_size: int, seeds: list[int], multiple: int = 1,
                  row_len: int | None = None) -> int:
    """Rows per training batch for train.pack_batches, in rows of `row_len` tokens (default: the padded
    length T): the most that any replica's batch of the first epoch (at most 1,000 steps) needs, plus one,
    rounded up to a `multiple` (the data-parallel devices); 0 (do not pack) for per-sequence targets, packed
    data (data.pack) or when packing would save no token slot. A later batch that needs more rows runs
    unpacked (one more compilation of the step)."""
    if np.ndim(arrays["targets"]) != 2 or "reset" in arrays:
        return 0
    T = np.shape(arrays["inputs"])[1]
    if row_len and row_len < T:
        fail(f"pack_rows_for: row_len must be at least the padded length {T}, got {row_len}")
    orders = [Batches(arrays, batch_size, s) for s in seeds]
    steps = range(min(orders[0].steps_per_epoch, 1000))
    need = max(rows_needed(order(step), row_len) for order in orders for step in steps) + 1
    rows = -(-need // multiple) * multiple
    return rows if rows * (row_len or T) < batch_size * T else 0


def training_batches(arrays: dict, batch_size: int, seeds: list[int], train_cfg: dict,
                     devices: int = 1) -> ReplicaBatches:
    """train.py's training batches: packed as `train_cfg` says (train.pack_batches, train.pack_row_multiple;
    `devices`: the data-parallel devices, which the number of rows is a multiple of)."""
    row_len = train_cfg.get("pack_row_multiple", 1) * np.shape(arrays["inputs"])[1]
    rows = pack_rows_for(arrays, batch_size, seeds, devices, row_len) if train_cfg.get("pack_batches", True) else 0
    return ReplicaBatches(arrays, batch_size, seeds, rows, row_len)


def real_tokens(batch: dict) -> int:
    """Real (non-padding) tokens of a (stacked) batch: its rows' lengths summed."""
    return int(np.asarray(batch["lengths"]).sum())


# --------------------------------------------------------------------------------------------- records
def mean_over_replicas(dicts: list[dict]) -> dict:
    """Per key, the mean over replicas of the finite values (NaN if none; nested dicts key by key);
    SUMMED keys: the total. Non-numeric values (flags) are left out."""
    out = {}
    for key, first in dicts[0].items():
        values = [d[key] for d in dicts if key in d]
        if isinstance(first, dict):
            out[key] = mean_over_replicas(values)
        elif isinstance(first, (int, float, np.number)) and not isinstance(first, (bool, np.bool_)):
            finite = [float(v) for v in values if math.isfinite(float(v))]
            out[key] = (sum(finite) if key in SUMMED else float(np.mean(finite))) if finite else float("nan")
    return out


def as_record(per_replica: list[dict], seeds: list[int]) -> dict:
    """The metrics of one log point: a single run's dict, or the mean plus "seeds" (see the module doc)."""
    if len(per_replica) == 1:
        return per_replica[0]
    return {**mean_over_replicas(per_replica), "seeds": [{"seed": s, **m} for s, m in zip(seeds, per_replica)]}


def per_replica(record: dict, num_seeds: int) -> list[dict]:
    """The S per-replica dicts of a record (as_record's inverse; a single run's record is its own)."""
    if "seeds" not in record:
        return [record] * num_seeds
    return [{k: v for k, v in r.items() if k != "seed"} for r in record["seeds"]]


def top_level(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seeds"}


def window_metrics(window: list[dict], num_seeds: int) -> tuple[list[dict], np.ndarray]:
    """Per replica, the mean of each train metric over the window's steps whose update was applied (all
    steps if none was); and the (steps, S) flags of the steps that were non-finite. `window`: the step's
    metrics, fetched to the host (scalars for S = 1, (S,) arrays for S > 1)."""
    arrays = {k: np.stack([np.reshape(w[k], (num_seeds,)) for w in window]) for k in window[0]}
    bad = arrays.pop("nonfinite").astype(bool)
    out = []
    for k in range(num_seeds):
        good = ~bad[:, k] if not bad[:, k].all() else np.ones(len(window), bool)
        out.append({name: float(v[good, k].mean()) for name, v in arrays.items()})
    return out, bad


# ---------------------------------------------------------------------------------------------- solved
def is_solved(test: dict, metric: str, threshold: float) -> bool | None:
    """Whether a replica's final test metrics reach the threshold (>= ; <= for loss-like metrics), None if
    the check is off (metric "") or the task has no such metric (e.g. scaled_accuracy of a language model)."""
    if not metric or metric not in test:
        return None
    value = test[metric]
    return bool(value <= threshold if metric in LOWER_IS_BETTER else value >= threshold)


def best_steps(records: list[dict], kept: set[int], metric: str, mode: str, num_seeds: int) -> list[int]:
    """For each replica, the kept checkpoint's step with its best validation `metric` (ties: the latest);
    -1 where no kept checkpoint has a validation record."""
    records = [r for r in records if r["split"] == "validation" and r["step"] in kept]
    sign = 1 if mode == "min" else -1
    out = []
    for k in range(num_seeds):
        scored = [(sign * per_replica(r, num_seeds)[k][metric], -r["step"]) for r in records]
        out.append(-min(scored)[1] if scored else -1)
    return out
