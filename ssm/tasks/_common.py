"""Helpers shared by the task generators."""

from __future__ import annotations

import numpy as np

from ssm.checks import fail


def check_lengths(min_len: int, max_len: int, smallest: int = 1) -> None:
    """min_len/max_len must satisfy smallest <= min_len <= max_len."""
    if not (isinstance(min_len, int) and isinstance(max_len, int)) or not smallest <= min_len <= max_len:
        fail(f"min_len/max_len: expected integers with {smallest} <= min_len <= max_len, "
             f"got min_len={min_len!r}, max_len={max_len!r}")


def sample_lengths(rng: np.random.Generator, n: int, min_len: int, max_len: int, odd: bool = False):
    """n lengths uniform in [min_len, max_len] (only odd ones if `odd`), int32 (n,)."""
    choices = np.arange(min_len, max_len + 1)
    if odd:
        choices = choices[choices % 2 == 1]
        if choices.size == 0:
            fail(f"min_len/max_len: no odd length in [{min_len}, {max_len}]")
    return rng.choice(choices, size=n).astype(np.int32)


def answer_at_last(lengths: np.ndarray, answers: np.ndarray, T: int):
    """Per-token targets/weights with the label `answers` (n,) at the last real token only."""
    n = lengths.shape[0]
    targets = np.zeros((n, T), np.int32)
    weights = np.zeros((n, T), np.float32)
    rows = np.arange(n)
    targets[rows, lengths - 1] = answers
    weights[rows, lengths - 1] = 1.0
    return targets, weights


def pad_rows(rows: list, T: int) -> np.ndarray:
    """Stack variable-length int sequences into a (n, T) int32 array padded with 0."""
    out = np.zeros((len(rows), T), np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
