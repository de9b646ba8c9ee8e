"""Packed sequences: variable-length examples concatenated into fixed-length rows, with `reset` flags where
each example starts, so no compute goes to padding (data.pack=True; docs/training.md).

    packed = pack_examples(arrays, row_len)     # arrays: inputs/targets/weights (n, T), lengths (n,)

Returns rows of length L = row_len: inputs / targets / weights (R, L) (each example's tokens with their own
per-token targets and weights, so an answer-token task keeps its one weighted target per example),
lengths (R,) (filled tokens; the rest of the row is padding), reset (R, L) bool (True at each example's
first token: the model clears its state there), and for metrics segment (R, L) (the example's index, −1 on
padding), position (R, L) (1-based position inside its example, 0 on padding), segment_length (R, L).
Loss and accuracy are weighted sums over targets, so they are the same packed or not; per-length and
per-position buckets read segment_length / position.

Rows are filled best-fit in the examples' order (each example goes to the open row with the least room
that still fits it), which is deterministic and typically leaves a few percent of padding.
"""

from __future__ import annotations

import bisect

import numpy as np

from ssm.checks import fail

PER_TOKEN = ("inputs", "targets", "weights")
MODEL_KEYS = ("inputs", "targets", "weights", "lengths", "reset")  # what the train / eval step reads


def assign_rows(lengths: np.ndarray, row_len: int) -> list[list[int]]:
    """Example indices of each row: best fit by remaining room, examples taken in order."""
    if lengths.size and lengths.max() > row_len:
        fail(f"data.pack_len: {row_len} is shorter than the longest example ({int(lengths.max())} tokens)")
    rows: list[list[int]] = []
    room: list[int] = []                        # remaining room of each row
    open_by_room: dict[int, list[int]] = {}     # room -> rows with exactly that room (> 0)
    rooms: list[int] = []                       # sorted distinct keys of open_by_room
    for i, n in enumerate(lengths.tolist()):
        if n <= 0:
            continue
        k = bisect.bisect_left(rooms, n)
        if k < len(rooms):
            r = open_by_room[rooms[k]].pop()
            if not open_by_room[rooms[k]]:
                del open_by_room[rooms.pop(k)]
        else:
            r = len(rows)
            rows.append([])
            room.append(row_len)
        rows[r].append(i)
        room[r] -= n
        if room[r] > 0:
            if room[r] not in open_by_room:
                bisect.insort(rooms, room[r])
                open_by_room[room[r]] = []
            open_by_room[room[r]].append(r)
    return rows


def _layout(lengths: np.ndarray, rows: list[list[int]], num_rows: int, row_len: int):
    """Where each example's tokens go: example (R, L) (its index, −1 on padding) and position (R, L) (0-based
    inside its example), for the rows of `assign_rows`."""
    example = np.full((num_rows, row_len), -1, np.int64)
    position = np.zeros((num_rows, row_len), np.int64)
    for r, members in enumerate(rows):
        t = 0
        for i in members:
            n = int(lengths[i])
            example[r, t:t + n] = i
            position[r, t:t + n] = np.arange(n)
            t += n
    return example, position


def _gather(arrays: dict, lengths: np.ndarray, example: np.ndarray, position: np.ndarray) -> dict:
    """The per-token arrays (n, T) laid out as (example, position) (R, L) say, with lengths and reset flags."""
    real = example >= 0
    T = np.shape(arrays["inputs"])[1]
    src = np.where(real, example * T + position, 0)
    out = {k: np.where(real, np.asarray(arrays[k]).reshape(-1)[src], 0).astype(np.asarray(arrays[k]).dtype)
           for k in PER_TOKEN}
    out["lengths"] = real.sum(axis=1).astype(np.int32)
    out["reset"] = real & (position == 0)
    return out


def pack_examples(arrays: dict, row_len: int) -> dict:
    """Pack the per-token examples of `arrays` (inputs/targets/weights (n, T), lengths (n,)) into rows of
    `row_len` tokens (see the module docstring for the returned arrays)."""
    if np.ndim(arrays["targets"]) != 2:
        fail("data.pack: packing needs per-token targets (this task has one label per sequence)")
    lengths = np.asarray(arrays["lengths"])
    rows = assign_rows(lengths, row_len)
    example, position = _layout(lengths, rows, max(len(rows), 1), row_len)
    out = _gather(arrays, lengths, example, position)
    real = example >= 0
    out["segment"] = example.astype(np.int32)
    out["position"] = np.where(real, position + 1, 0).astype(np.int32)
    out["segment_length"] = np.where(real, lengths[np.maximum(example, 0)], 0).astype(np.int32)
    return out


def pack_for_eval(arrays: dict) -> dict:
    """train.pack_eval: a validation / test split's per-token examples packed into rows of their padded
    length when that saves rows (else unchanged); the metrics are the same (tests/test_packing.py)."""
    if np.ndim(arrays["targets"]) != 2 or "reset" in arrays:
        return arrays
    packed = pack_examples(arrays, np.shape(arrays["inputs"])[1])
    return packed if len(packed["inputs"]) < len(arrays["inputs"]) else arrays


# ------------------------------------------------------- one training batch into fewer rows (train.pack_batches)
def pack_batch(batch: dict, num_rows: int, row_len: int | None = None) -> dict | None:
    """The examples of one batch (inputs/targets/weights (B, T), lengths (B,)) in `num_rows` rows of `row_len`
    tokens (default T; at least T) with reset flags (the step's keys), or None if they need more rows. The
    same examples, targets and weights: the step's loss and gradient are the batch's own, up to float
    rounding."""
    lengths, row_len = np.asarray(batch["lengths"]), row_len or np.shape(batch["inputs"])[1]
    rows = assign_rows(lengths, row_len)
    if len(rows) > num_rows:
        return None
    return _gather(batch, lengths, *_layout(lengths, rows, num_rows, row_len))


def rows_needed(batch: dict, row_len: int | None = None) -> int:
    """Rows of `row_len` tokens (default T) that `pack_batch` needs for this batch."""
    return len(assign_rows(np.asarray(batch["lengths"]), row_len or np.shape(batch["inputs"])[1]))


def bucket_key(arrays: dict, bucket_by: str | None):
    """Per-target bucket key of packed arrays (segment_length or position), None for unpacked ones (the
    metrics then use the row's length / the token's position)."""
    if bucket_by is None or "segment" not in arrays:
        return None
    return arrays["segment_length" if bucket_by == "length" else "position"]


def model_batch(batch: dict) -> dict:
    """The arrays of `batch` that the train / eval step reads (packing's metric keys stay on the host)."""
    return {k: batch[k] for k in MODEL_KEYS if k in batch}
