"""Many seeds in one run (train.num_seeds): replica k == the single run with seed + k, the per-replica guard,
exact resume, the host-side bookkeeping (records, solved, best) and the plot of every replica."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm.checks import ConfigError
from ssm.train import replicas as rep
from ssm.train.replicas import as_record
from ssm.train.build import build, replica_state
from ssm.train.guard import NonFiniteError, new_guard, update_guard
from tests.test_train import _checkpoint_arrays, _records_without_timing, get_config, run
from tests.utils import assert_trees_close

# float32: a replica runs the same ops as the single run, batched (vmap), so results agree to rounding
RTOL, ATOL = 2e-5, 1e-6


@pytest.fixture
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "data")


def _poisoned_call(seed, steps):
    """Batches.__call__ (as it is now) whose batches of the data order of `seed` at `steps` get NaN weights
    (NaN loss and gradients)."""
    from ssm.train.data import Batches

    original = Batches.__call__

    def poisoned(self, step):
        batch = original(self, step)
        return {**batch, "weights": batch["weights"] * np.nan} if self.seed == seed and step in steps else batch

    return poisoned


def _poison(monkeypatch, seed, steps):
    monkeypatch.setattr("ssm.train.data.Batches.__call__", _poisoned_call(seed, steps))


def _replica_records(workdir, k):
    """Replica k's records of an S-seed run, in a single run's form: (step, split, metrics)."""
    out = []
    for r in _records_without_timing(workdir):
        one = {key: v for key, v in r["seeds"][k].items() if key not in ("seed", "frozen", "skipped_steps")}
        out.append({"step": r["step"], "split": r["split"], **one})
    return out


def _assert_close(actual, expected, where=""):
    if isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, str):
        assert actual == expected, where
    else:
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=where)


def test_replica_equals_single_run_poisoned_replica_frozen_and_resume_exact(tmp_path, data_dir, monkeypatch):
    """The three contracts of an S-seed run in one (each training run compiles for ≈ 15 s): seed = 1, S = 2,
    with dropout. Replica 1 gives the metrics and final state of the single run with seed 2 (float32
    tolerance). Replica 0 (seed 1) gets a NaN batch at step 2 (policy "stop"): it is frozen at its last good
    state (its first step had learning rate 0 in warmup, so its initial parameters), reported, and replica 1
    is untouched. Dropping the last checkpoint and re-running reproduces the run bitwise (both replicas, the
    frozen one stays frozen)."""
    common = dict(model__mixer="diag", model__dropout=0.1, train__nonfinite_policy="stop", ckpt__async_save=False)
    _poison(monkeypatch, seed=1, steps={1})
    summary, config = run("parity", tmp_path / "s2", data_dir, seed=1, train__num_seeds=2, **common)
    assert [s["seed"] for s in summary["seeds"]] == [1, 2]
    final = _final_state(tmp_path / "s2", config)
    records = _records_without_timing(tmp_path / "s2")

    single, single_config = run("parity", tmp_path / "seed2", data_dir, seed=2, **common)
    _assert_close(_replica_records(tmp_path / "s2", 1), _records_without_timing(tmp_path / "seed2"), "records")
    for split in ("train", "validation", "test", "best"):
        _assert_close({k: v for k, v in summary["seeds"][1][split].items() if k != "tokens_per_s"},
                      {k: v for k, v in single[split].items() if k != "tokens_per_s"}, split)
    assert_trees_close(replica_state(final, 1, 2), _final_state(tmp_path / "seed2", single_config),
                       rtol=RTOL, atol=ATOL, err_msg="replica 1 state")

    stopped = summary["seeds"][0]["stopped"]
    assert stopped["from_step"] == 2 and stopped["where"].startswith("the loss"), stopped
    assert [r["seeds"][0].get("frozen", False) for r in records if r["split"] == "train"] == [False, True, True]
    initial = build(get_config("parity", seed=1, **common))
    model, optimizer = initial.merge(replica_state(final, 0, 2))
    assert_trees_close(nnx.state(model, nnx.Param), nnx.state(initial.merge()[0], nnx.Param), rtol=0, atol=0)
    assert int(optimizer.step[...]) == 1
    for split in ("validation", "test"):  # the top level: the mean over replicas
        assert summary[split]["loss"] == pytest.approx(np.mean([s[split]["loss"] for s in summary["seeds"]]))

    shutil.move(tmp_path / "s2" / "checkpoints" / "3", tmp_path / "uninterrupted-3")
    resumed, _ = run("parity", tmp_path / "s2", data_dir, seed=1, train__num_seeds=2, **common)
    assert _records_without_timing(tmp_path / "s2") == records
    assert resumed["seeds"][0]["stopped"] == stopped and resumed["test"] == summary["test"]
    a = _checkpoint_arrays(tmp_path / "uninterrupted-3" / "state")
    b = _checkpoint_arrays(tmp_path / "s2" / "checkpoints" / "3" / "state")
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_every_replica_equals_its_single_run(tmp_path, data_dir):
    """S = 3 (seed = 1, dropout): replica k == the single run with seed 1 + k, for every k."""
    common = dict(model__mixer="diag", model__dropout=0.1, ckpt__async_save=False)
    summary, config = run("parity", tmp_path / "s3", data_dir, seed=1, train__num_seeds=3, **common)
    final = _final_state(tmp_path / "s3", config)
    for k in range(3):
        single, single_config = run("parity", tmp_path / f"seed{1 + k}", data_dir, seed=1 + k, **common)
        _assert_close(_replica_records(tmp_path / "s3", k), _records_without_timing(tmp_path / f"seed{1 + k}"),
                      f"replica {k} records")
        for split in ("validation", "test", "best"):
            _assert_close(summary["seeds"][k][split], single[split], f"replica {k} {split}")
        assert_trees_close(replica_state(final, k, 3), _final_state(tmp_path / f"seed{1 + k}", single_config),
                           rtol=RTOL, atol=ATOL, err_msg=f"replica {k} state")


@pytest.mark.slow
def test_guard_per_replica_skip_then_every_replica_stops(tmp_path, data_dir, monkeypatch):
    """policy "skip" with max_nonfinite_in_a_row = 2: replica 0 (one NaN batch) skips it and goes on;
    replica 1 (two in a row) is frozen; when every replica is frozen the run stops, naming each."""
    common = dict(model__mixer="diag", train__num_seeds=2, train__max_nonfinite_in_a_row=2, train__num_steps=4)
    _poison(monkeypatch, seed=0, steps={1})
    monkeypatch.setattr("ssm.train.data.Batches.__call__", _poisoned_call(seed=1, steps={1, 2}))
    summary, _ = run("parity", tmp_path / "skip", data_dir, **common)
    train = [r for r in _records_without_timing(tmp_path / "skip") if r["split"] == "train"]
    assert [[r["seeds"][k].get("skipped_steps", 0) for k in (0, 1)] for r in train] == [[0, 0], [1, 1], [0, 1], [0, 0]]
    assert [r["seeds"][1].get("frozen", False) for r in train] == [False, False, True, True]
    assert "stopped" not in summary["seeds"][0] and summary["seeds"][1]["stopped"]["from_step"] == 2
    assert summary["seeds"][0]["train"]["lr"] != summary["seeds"][1]["train"]["lr"]  # replica 1 took 1 step
    monkeypatch.setattr("ssm.train.data.Batches.__call__", _poisoned_call(seed=0, steps={2, 3}))
    with pytest.raises(NonFiniteError, match=r"every replica stopped.*replica 0 \(seed 0\) from step 3.*"
                                             r"replica 1 \(seed 1\) from step 2"):
        run("parity", tmp_path / "stop", data_dir, **common)


def _final_state(workdir, config):
    from ssm.train.checkpoint import Checkpointer

    ckpt = Checkpointer(str(workdir / "checkpoints"))
    state, _ = ckpt.restore(config["train"]["num_steps"], build(config, abstract=True).state)
    ckpt.close()
    return state


def test_plot_draws_every_replica():
    """Records of 3 replicas: each panel has, per split, one thin line per replica with that replica's values
    and a thick line of the mean."""
    from ssm.analysis.plot import draw

    losses = {1: [1.0, 2.0, 6.0], 2: [0.5, 1.0, 3.0]}  # step -> per-replica values
    records = [as_record([{"loss": v} for v in losses[s]], [0, 1, 2]) | {"step": s, "split": "train"}
               for s in (1, 2)]
    ax = draw(records).axes[0]
    lines = [(list(line.get_xdata()), list(line.get_ydata()), line.get_linewidth()) for line in ax.lines]
    replicas = [([1, 2], [losses[1][k], losses[2][k]], 0.8) for k in range(3)]
    assert lines == replicas + [([1, 2], [3.0, 1.5], 2)]


# ------------------------------------------------------------------------------------ host bookkeeping
def test_build_stacks_the_single_seed_builds():
    """build() with train.num_seeds = 3, seed = 5: replica k is bitwise the state built with seed 5 + k; the
    abstract build has the same stacked shapes."""
    config = get_config("parity", seed=5, train__num_seeds=3, model__mixer="diag")
    built = build(config)
    for k in range(3):
        single = build(get_config("parity", seed=5 + k, model__mixer="diag")).state
        assert_trees_close(built.replica(k), single, rtol=0, atol=0, err_msg=f"replica {k}")
    shapes = lambda state: [(x.shape, x.dtype) for x in jax.tree.leaves(state)]
    assert shapes(build(config, abstract=True).state) == shapes(built.state)
    assert all(x.shape[0] == 3 for x in jax.tree.leaves(built.state))


def test_replica_batches_follow_each_seeds_order():
    from ssm.train.data import Batches

    arrays = {"inputs": np.arange(40).reshape(20, 2), "targets": np.arange(20), "weights": np.ones(20),
              "lengths": np.full(20, 2), "segment": np.zeros(20)}  # segment: a host-only key, dropped
    stacked = rep.ReplicaBatches(arrays, 4, [7, 8])(6)  # step 6: the second epoch
    for k, seed in enumerate((7, 8)):
        single = Batches(arrays, 4, seed)(6)
        assert set(stacked) == {"inputs", "targets", "weights", "lengths"}
        for key in stacked:
            np.testing.assert_array_equal(stacked[key][k], single[key])
    assert rep.real_tokens(stacked) == 16


def test_records_means_and_solved():
    per = [{"loss": 1.0, "skipped_steps": 2, "by": {"a": 0.0}, "frozen": True},
           {"loss": float("nan"), "skipped_steps": 1, "by": {"a": 1.0}},
           {"loss": 4.0, "skipped_steps": 0, "by": {"a": 0.5}}]
    record = rep.as_record(per, [3, 4, 5])
    assert rep.top_level(record) == {"loss": 2.5, "skipped_steps": 3, "by": {"a": 0.5}}  # finite mean; a count's total
    assert [r["seed"] for r in record["seeds"]] == [3, 4, 5] and rep.per_replica(record, 3) == per
    assert rep.as_record(per[:1], [3]) == per[0] and rep.per_replica(per[0], 1) == [per[0]]
    test = {"loss": 0.2, "accuracy": 0.95, "scaled_accuracy": 0.9, "bits_per_char": 1.5}
    assert rep.is_solved(test, "scaled_accuracy", 0.9) is True and rep.is_solved(test, "accuracy", 0.96) is False
    assert rep.is_solved(test, "loss", 0.25) is True and rep.is_solved(test, "bits_per_char", 1.0) is False
    assert rep.is_solved({"loss": 1.0, "bits_per_char": 1.4}, "scaled_accuracy", 0.9) is None  # an LM task
    assert rep.is_solved(test, "", 0.9) is None


def test_best_checkpoint_per_replica():
    """Each replica's best kept validation step (ties: the latest); a step without a kept checkpoint never."""
    val = lambda step, losses: rep.as_record([{"loss": x} for x in losses], [0, 1]) | {"step": step,
                                                                                     "split": "validation"}
    records = [val(2, [0.5, 0.9]), {"step": 3, "split": "train", "loss": 0.0}, val(4, [0.7, 0.1]),
               val(6, [0.5, 0.05]), val(8, [0.6, 0.4])]
    assert rep.best_steps(records, {2, 4, 6, 8}, "loss", "min", 2) == [6, 6]
    assert rep.best_steps(records, {2, 4, 8}, "loss", "min", 2) == [2, 4]
    assert rep.best_steps(records, {2, 4, 8}, "loss", "max", 2) == [4, 2]
    assert rep.best_steps(records, {3}, "loss", "min", 2) == [-1, -1]


def test_resume_needs_the_same_num_seeds_and_old_runs_keep_their_data_seed(tmp_path):
    """check_resumable: another train.num_seeds is refused (the checkpoint's shape); a config.json of a run
    from before data.seed (its data set was drawn from `seed`) reads as data.seed = seed."""
    from ssm.train.resume import check_resumable

    config = get_config("parity", seed=2, train__num_seeds=2)
    (tmp_path / "config.json").write_text(json.dumps(config))
    check_resumable(str(tmp_path), config)
    with pytest.raises(ConfigError, match=r"^train.num_seeds: .* holds a run of 2 replica\(s\), got 3"):
        check_resumable(str(tmp_path), get_config("parity", seed=2, train__num_seeds=3))
    old = get_config("parity", seed=2)
    del old["data"]["seed"], old["train"]["num_seeds"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"different config \(data.seed\)"):
        check_resumable(str(tmp_path), get_config("parity", seed=2))
    check_resumable(str(tmp_path), get_config("parity", seed=2, data__seed=2))
