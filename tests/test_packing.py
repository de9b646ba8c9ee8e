"""Packed sequences, data side (ssm/train/packing.py, data.pack): rows hold every example exactly once with
its own targets / weights and a reset at its first token; a fixed model gives every example the same
per-target loss and correctness packed or not, so the evaluation metrics (loss, accuracy, per-length
buckets) are unchanged. Training on packed rows: tests/test_train.py::test_every_config_smoke."""

import jax
import numpy as np
import pytest

from ssm.tasks import make_char_lm, make_parity
from ssm.train.build import build
from ssm.train.loop import evaluate
from ssm.train.packing import model_batch, pack_examples
from ssm.train.step import make_eval_step
from tests.test_reliability import DEMO_TEXT
from tests.test_train import get_config


def unpack_reference(packed: dict, n: int, T: int) -> dict:
    """The examples rebuilt from the packed rows by a plain loop over tokens (segment / position)."""
    out = {k: np.zeros((n, T), packed[k].dtype) for k in ("inputs", "targets", "weights")}
    lengths = np.zeros(n, np.int32)
    R, L = packed["inputs"].shape
    for r in range(R):
        for t in range(L):
            i, p = packed["segment"][r, t], packed["position"][r, t]
            if i < 0:
                assert t >= packed["lengths"][r] and not packed["reset"][r, t]
                continue
            assert packed["reset"][r, t] == (p == 1) and t < packed["lengths"][r]
            for k in out:
                out[k][i, p - 1] = packed[k][r, t]
            lengths[i] = max(lengths[i], p)
    return {**out, "lengths": lengths}


@pytest.mark.parametrize("row_len", [40, 97])
def test_packing_holds_every_example_once_with_its_targets_and_resets(rng, row_len):
    examples = make_parity(rng, 300, min_len=3, max_len=40)
    packed = pack_examples(examples, row_len)
    R = packed["inputs"].shape[0]
    assert packed["inputs"].shape == (R, row_len) and packed["lengths"].max() <= row_len
    back = unpack_reference(packed, 300, 40)
    for k in ("inputs", "targets", "weights", "lengths"):
        np.testing.assert_array_equal(back[k], examples[k], err_msg=k)
    np.testing.assert_array_equal(np.sort(np.unique(packed["segment"][packed["segment"] >= 0])), np.arange(300))
    assert packed["segment_length"][packed["reset"]].sum() == examples["lengths"].sum()
    # best fit leaves little padding: > 90% of the packed tokens are real (unpacked: about 54%)
    assert examples["lengths"].sum() / packed["inputs"].size > 0.9


def test_packing_refuses_examples_longer_than_a_row(rng):
    with pytest.raises(ValueError, match="data.pack_len"):
        pack_examples(make_parity(rng, 8, min_len=3, max_len=40), 20)


def test_char_lm_document_windows_never_span_documents():
    """doc_sep: each example is a window of one document, consecutive windows of a document tile it."""
    text = open(DEMO_TEXT).read()
    from ssm.tasks.char_lm import char_vocab, split_text

    vocab = char_vocab(DEMO_TEXT)
    ex = make_char_lm(np.random.default_rng(0), 10_000, path=DEMO_TEXT, split="validation", seq_len=16,
                      doc_sep="\n\n")
    docs = [d for d in split_text(text, "validation").split("\n\n") if len(d) > 1]
    decoded = ["".join(vocab[t - 1] for t in row[:n]) + vocab[tgt[n - 1] - 1]
               for row, tgt, n in zip(ex["inputs"], ex["targets"], ex["lengths"])]
    rebuilt, i = [], 0
    for doc in docs:  # in text order for validation: the windows of each document, overlapping by one
        parts = []
        while sum(len(p) - 1 for p in parts) < len(doc) - 1:
            parts.append(decoded[i])
            i += 1
        rebuilt.append(parts[0] + "".join(p[1:] for p in parts[1:]))
    assert rebuilt == docs and i == len(decoded)
    assert (ex["lengths"] < 16).any() and (ex["weights"].sum(1) == ex["lengths"]).all()


def _per_target(eval_step, state, arrays, batch_size=64):
    from ssm.train.data import eval_batches

    outs = [jax.device_get(eval_step(state, model_batch(b))) for b in eval_batches(arrays, batch_size)]
    n = arrays["inputs"].shape[0]
    return {k: np.concatenate([o[k] for o in outs])[:n] for k in ("nll", "correct", "weights")}


@pytest.mark.parametrize("task", ["parity", "char_lm"])
def test_metrics_are_unchanged_by_packing(task, tmp_path):
    """A fixed (randomly initialized) model: every example's per-target loss and correctness are the same
    in its own padded row and inside a packed row (float32, rtol 1e-5), hence the same loss, accuracy and
    accuracy per length bucket. (That every mixer's packed row equals its segments alone: test_mixers.py.)"""
    overrides = {"model__mixer": "diag", "data__data_dir": str(tmp_path)}
    if task == "char_lm":
        overrides.update(data__doc_sep="\n\n")
    config = get_config(task, "smoke", **overrides)
    d = config["data"]
    rng = np.random.default_rng(0)
    examples = (make_parity(rng, 40, min_len=d["eval_min_len"], max_len=d["eval_max_len"]) if task == "parity"
                else make_char_lm(rng, 40, path=d["path"], split="validation", seq_len=d["seq_len"],
                                  doc_sep="\n\n"))
    packed = pack_examples(examples, 2 * examples["inputs"].shape[1])  # data.pack_len = 2 T
    assert packed["inputs"].shape[0] < 40  # fewer rows: less compute
    built = build(config)
    eval_step = make_eval_step(built.graphdef)
    plain, pk = (_per_target(eval_step, built.state, a) for a in (examples, packed))
    real = pk["weights"] > 0
    seg, pos = packed["segment"][real], packed["position"][real] - 1
    for k in ("nll", "correct", "weights"):
        np.testing.assert_allclose(pk[k][real], plain[k][seg, pos], rtol=1e-5, atol=1e-6, err_msg=k)
    assert pk["weights"].sum() == plain["weights"].sum()
    a = evaluate(eval_step, built.state, examples, d, 64, "validation")
    b = evaluate(eval_step, built.state, packed, d, 64, "validation")
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert a[key].keys() == b[key].keys()
            np.testing.assert_allclose(list(b[key].values()), list(a[key].values()), rtol=1e-5, err_msg=key)
        else:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=key)


def test_pack_batch_keeps_the_batch_and_its_loss_and_gradient(x64, rng, tmp_path):
    """train.pack_batches: one training batch's examples in fewer rows (each once, with a reset at its first
    token); the step's gradient (DeltaNet with short convolutions, float64) equals that of the unpacked batch
    to 1e-9 and its loss and accuracy (float32 means) to 1e-6, in rows of the padded length and in longer
    rows (train.pack_row_length); too few rows gives None (the loop then runs the batch unpacked)."""
    import jax.numpy as jnp
    from flax import nnx

    from ssm.train.objective import loss_and_accuracy
    from ssm.train.packing import pack_batch, rows_needed

    batch = make_parity(rng, 16, min_len=3, max_len=40)
    need = rows_needed(batch)
    assert need < 12 and pack_batch(batch, need - 1) is None
    packed = pack_batch(batch, 12)
    assert packed["inputs"].shape == (12, 40) and set(packed) == {"inputs", "targets", "weights", "lengths", "reset"}
    assert packed["lengths"].sum() == batch["lengths"].sum() and packed["reset"].sum() == 16
    for k in ("inputs", "targets", "weights"):  # the same multiset of tokens, and nothing on padding
        real = np.arange(40)[None] < packed["lengths"][:, None]
        assert (packed[k][~real] == 0).all()
        np.testing.assert_array_equal(np.sort(packed[k][real]), np.sort(batch[k][np.arange(40)[None] <
                                                                                  batch["lengths"][:, None]]))
    long_rows = pack_batch(batch, 7, row_len=100)  # train.pack_row_length: rows longer than the padded length
    assert long_rows["inputs"].shape == (7, 100) and rows_needed(batch, 100) <= 7
    assert long_rows["reset"].sum() == 16 and long_rows["lengths"].sum() == batch["lengths"].sum()
    config = get_config("parity", "smoke", data__data_dir=str(tmp_path), model__d_model=8, model__dtype="float64")
    graphdef, state = nnx.split(build(config).merge()[0])
    model = nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(jnp.float64), state))
    results = []
    for b in (model_batch(batch), packed, long_rows):
        (loss, acc), grads = nnx.value_and_grad(lambda m, b=b: loss_and_accuracy(m, jax.tree.map(jnp.asarray, b)),
                                                has_aux=True)(model)
        results.append((loss, acc, nnx.state(grads, nnx.Param)))
    (l0, a0, g0), *others = results
    for l1, a1, g1 in others:
        np.testing.assert_allclose(l1, l0, rtol=1e-6)  # float32 (the loss's weighted mean): summation order
        np.testing.assert_allclose(a1, a0, rtol=1e-6)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12), g1, g0)
