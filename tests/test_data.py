"""Cached datasets and deterministic batch order (what exact resume relies on)."""

import os

import numpy as np

from ssm.tasks import make_parity
from ssm.train.data import Batches, eval_batches, load_split
from ssm.train.metrics import aggregate

KW = {"min_len": 3, "max_len": 12}


def test_split_is_generated_once_and_cached(tmp_path):
    a = load_split("parity", "train", 50, 7, KW, str(tmp_path), seq_len=12)
    (entry,) = os.listdir(tmp_path / "parity")
    b = load_split("parity", "train", 50, 7, KW, str(tmp_path), seq_len=12)
    assert os.listdir(tmp_path / "parity") == [entry]
    expected = make_parity(np.random.default_rng([7, 0]), 50, **KW)  # the generator, uncached
    for k, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32), ("lengths", np.int32)):
        assert a[k].dtype == dtype and b[k].dtype == dtype  # explicit casts (numpy format widens ints)
        np.testing.assert_array_equal(a[k], expected[k])
        np.testing.assert_array_equal(b[k], expected[k])
    load_split("parity", "train", 50, 8, KW, str(tmp_path), seq_len=12)  # another seed: another entry
    load_split("parity", "validation", 50, 7, KW, str(tmp_path), seq_len=12)
    assert len(os.listdir(tmp_path / "parity")) == 3


def test_batches_depend_only_on_seed_and_step():
    arrays = make_parity(np.random.default_rng(0), 40, **KW)
    one, two = Batches(arrays, 8, seed=3), Batches(arrays, 8, seed=3)
    for step in (0, 7, 3, 12, 4):  # any order, fresh instance: same batch
        for k in arrays:
            np.testing.assert_array_equal(one(step)[k], two(step)[k])
    epoch = np.concatenate([one(s)["inputs"] for s in range(5)])
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, arrays["inputs"]))  # an epoch sees each example
    assert not np.array_equal(one(0)["inputs"], one(5)["inputs"])  # reshuffled next epoch
    assert one.position(12) == {"step": 12, "epoch": 2, "batch_in_epoch": 2}


def test_eval_batches_pad_with_zero_weight_and_aggregate():
    arrays = make_parity(np.random.default_rng(1), 10, **KW)
    batches = list(eval_batches(arrays, 4))
    assert [b["inputs"].shape[0] for b in batches] == [4, 4, 4]
    assert batches[-1]["weights"][2:].sum() == 0
    # a perfect predictor: accuracy 1, scaled accuracy 1; a constant one: scaled accuracy by the formula
    outs = [{"nll": np.zeros_like(b["weights"]), "correct": np.ones_like(b["weights"]), "weights": b["weights"]}
            for b in batches]
    m = aggregate(outs, arrays["lengths"], num_classes=2, bucket_by="length", bucket_range=(3, 12))
    assert m["accuracy"] == 1.0 and m["scaled_accuracy"] == 1.0 and set(m["accuracy_by_length"]) <= {
        "3-5", "6-7", "8-9", "10-12"} and set(m["accuracy_by_length"].values()) == {1.0}
    answers = np.concatenate([(b["targets"] * b["weights"]).sum(1) for b in batches])[:10]
    outs = [{"nll": np.zeros_like(b["weights"]), "correct": (b["targets"] == 0) * 1.0, "weights": b["weights"]}
            for b in batches]
    acc = float(np.mean(answers == 0))
    m = aggregate(outs, arrays["lengths"], num_classes=2)
    np.testing.assert_allclose(m["accuracy"], acc)
    np.testing.assert_allclose(m["scaled_accuracy"], (acc - 0.5) / 0.5)
