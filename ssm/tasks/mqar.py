"""Multi-query associative recall (Zoology, Arora et al., 2023).

A sequence starts with `num_kv_pairs` key-value pairs "k1 v1 k2 v2 ...", followed by a query region where
each key reappears once (in random order, at random positions) immediately followed by its value; the other
positions hold random noise tokens. Keys are drawn from the lower half of the vocabulary, values from the
upper half; the model must predict, at each query key, the value bound to it (next-token targets, weights
only at query positions). Deviation from Zoology: query gaps are uniform instead of power-law distributed.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import check_positive_int, fail


def make_mqar(rng: np.random.Generator, n: int, *, vocab_size: int = 256, length: int = 128,
              num_kv_pairs: int = 8) -> dict:
    """Returns inputs/targets/weights (n, length), lengths (n,). Token 0 is padding (never used here)."""
    check_positive_int("n", n)
    check_positive_int("num_kv_pairs", num_kv_pairs)
    if length < 4 * num_kv_pairs:
        fail(f"length: expected >= 4 * num_kv_pairs = {4 * num_kv_pairs}, got {length}")
    half = vocab_size // 2
    if half - 1 < num_kv_pairs:
        fail(f"vocab_size: expected > 2 * (num_kv_pairs + 1) = {2 * (num_kv_pairs + 1)}, got {vocab_size}")
    context = 2 * num_kv_pairs
    inputs = rng.integers(1, vocab_size, size=(n, length)).astype(np.int32)  # noise everywhere first
    targets = np.zeros((n, length), np.int32)
    weights = np.zeros((n, length), np.float32)
    slots = (length - context) // 2  # query region as slots of 2 tokens: (key, value)
    for i in range(n):
        keys = rng.choice(np.arange(1, half), size=num_kv_pairs, replace=False)
        values = rng.integers(half, vocab_size, size=num_kv_pairs)
        inputs[i, 0:context:2], inputs[i, 1:context:2] = keys, values
        order = rng.permutation(num_kv_pairs)
        pos = context + 2 * np.sort(rng.choice(slots, size=num_kv_pairs, replace=False))
        inputs[i, pos], inputs[i, pos + 1] = keys[order], values[order]
        targets[i, pos], weights[i, pos] = values[order], 1.0
    return {"inputs": inputs, "targets": targets, "weights": weights, "lengths": np.full(n, length, np.int32)}
