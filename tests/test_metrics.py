"""Evaluation metrics of per-token tagging (bucket "position", the word problems): sequence accuracy and the
cumulative-prefix sequence accuracy curve, against independent recomputations — the DeltaProduct authors'
formula (floor of cumulative correct / cumulative valid, averaged over sequences) in NumPy, and a plain
Python loop over the examples of packed rows."""

import numpy as np

from ssm.train.metrics import aggregate
from ssm.train.packing import pack_examples


def _errors_at(rng, n: int, T: int) -> np.ndarray:
    """(n, T) 0/1 correctness: about a third of the rows all right, the rest with a few random errors."""
    correct = np.ones((n, T))
    for i in range(n):
        if i % 3:
            correct[i, rng.choice(T, size=rng.integers(1, 4), replace=False)] = 0.0
    return correct


def test_prefix_sequence_accuracy_matches_the_authors_formula(rng):
    n, T = 50, 24
    correct = _errors_at(rng, n, T)
    weights = np.ones((n, T))
    outputs = [{"nll": np.zeros((32, T)), "correct": np.vstack([correct, np.zeros((14, T))])[s:s + 32],
                "weights": np.vstack([weights, np.zeros((14, T))])[s:s + 32]} for s in (0, 32)]  # padded batches
    m = aggregate(outputs, np.full(n, T), num_classes=6, bucket_by="position", bucket_range=(1, T), num_buckets=3)
    # automl/DeltaProduct state_tracking/src/utils.py: floor(cumsum(correct) / cumsum(valid)).mean(0), every t
    reference = np.floor(np.cumsum(correct, 1) / np.cumsum(weights, 1)).mean(0)
    np.testing.assert_allclose(m["sequence_accuracy_by_prefix"], reference, rtol=0, atol=1e-12)
    assert len(m["sequence_accuracy_by_prefix"]) == T
    np.testing.assert_allclose(m["sequence_accuracy"], np.mean(correct.all(1)), rtol=0, atol=1e-12)
    assert 0 < m["sequence_accuracy"] < m["accuracy"] < 1  # the setup has both kinds of rows
    assert np.all(np.diff(m["sequence_accuracy_by_prefix"]) <= 0)  # a prefix can only lose sequences


def test_prefix_sequence_accuracy_of_packed_rows_is_per_example(rng):
    """Rows holding several examples (data.pack): each example's prefixes start at its own first token."""
    n, T = 40, 20
    lengths = rng.integers(3, T + 1, size=n).astype(np.int32)
    weights = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
    weights[::5, 0] = 0.0  # some examples have no target at their first position
    examples = {"inputs": np.ones((n, T), np.int32), "targets": _errors_at(rng, n, T).astype(np.int32),
                "weights": weights, "lengths": lengths}
    packed = pack_examples(examples, 37)
    assert (packed["segment"] >= 0).sum(1).max() > T  # rows really hold more than one example
    correct = packed["targets"].astype(np.float64)  # the 0/1 pattern stands for "prediction right"
    outputs = [{"nll": np.zeros_like(correct), "correct": correct, "weights": packed["weights"]}]
    m = aggregate(outputs, packed["lengths"], num_classes=6, bucket_by="position", bucket_range=(1, T),
                  bucket_key=packed["position"])
    # plain loop: each example's (position, correct) pairs from the packed rows
    per_example = {}
    for r, t in zip(*np.nonzero(packed["weights"] > 0)):
        per_example.setdefault(packed["segment"][r, t], []).append((packed["position"][r, t], correct[r, t]))
    assert len(per_example) == n
    curve = [np.mean([all(c for p, c in pairs if p <= t) for pairs in per_example.values()]) for t in range(1, T + 1)]
    np.testing.assert_allclose(m["sequence_accuracy_by_prefix"], curve, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["sequence_accuracy"], np.mean([all(c for _, c in v) for v in per_example.values()]),
                               rtol=0, atol=1e-12)


def test_length_bucketed_tasks_have_no_sequence_accuracy(rng):
    correct = _errors_at(rng, 6, 8)
    outputs = [{"nll": np.zeros((6, 8)), "correct": correct, "weights": np.ones((6, 8))}]
    m = aggregate(outputs, np.full(6, 8), num_classes=2, bucket_by="length")
    assert "accuracy_by_length" in m and "sequence_accuracy" not in m and "sequence_accuracy_by_prefix" not in m
