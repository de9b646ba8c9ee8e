"""Reliability: validation of bad input, the non-finite guard, robust checkpoints, kill / SIGTERM and exact
resume, long-sequence finiteness. Heavy subprocess tests are `slow` (each subprocess compiles a train
step: 20-45 s on the shared 2-core CPU)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm.checks import ConfigError
from ssm.model import SequenceModel
from ssm.registry import mixer_factory
from ssm.train.checkpoint import KILL_DURING_SAVE_ENV, Checkpointer
from ssm.train.guard import NonFiniteError, locate_nonfinite, new_guard, nonfinite_limit, update_guard
from ssm.train.step import make_train_step
from ssm.train.validate import validate_arrays, validate_config
from tests.test_train import ROOT, _checkpoint_arrays, cli, get_config, run

DEMO_TEXT = os.path.join(ROOT, "data", "tiny.txt")


@pytest.fixture
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "data")


# ----------------------------------------------------------------------------------- bad configs/inputs
def _text(tmp_path, content: str) -> str:
    path = tmp_path / "text.txt"
    path.write_text(content)
    return str(path)


BAD_CONFIGS = [  # (task, overrides, text that the one-line message must contain)
    ("parity", {"model__mixer": "lstm"}, "model.mixer"),
    ("parity", {"model__mixer": "deltanet", "model__d_model": 16, "model__deltanet__num_heads": 3},
     "model.deltanet.num_heads: must divide d_model"),
    ("parity", {"model__mixer": "deltaproduct", "model__deltaproduct__num_householder": 0},
     "model.deltaproduct.num_householder"),
    ("parity", {"model__mixer": "s5", "model__s5__state_size": 7}, "model.s5.state_size"),
    ("parity", {"model__mixer": "s4d", "model__s4d__state_size": 5}, "model.s4d.state_size"),
    ("parity", {"model__mixer": "s5", "model__s5__blocks": 3}, "model.s5.blocks"),
    ("parity", {"model__mixer": "s5", "model__s5__param_dtype": "float3"}, "model.s5.param_dtype"),
    ("parity", {"model__deltanet__num_head": 2}, "model.deltanet.num_head: not an option of DeltaNet (accepted: "),
    ("parity", {"model__num_heads": 2}, "model.num_heads: moved to model.deltanet.num_heads"),
    ("parity", {"model__mixer": "s5", "model__init": "s5"}, "model.init: moved to model.s5.init"),
    ("parity", {"model__lstm": {}}, "model.lstm: unknown field"),
    ("char_lm", {"model__mixer": "s5", "model__s5__bidirectional": True}, "model.s5: these options build a bidirec"),
    ("parity", {"model__d_model": "big"}, "model.d_model"),
    ("parity", {"model__d_model": 0}, "model.d_model"),
    ("parity", {"model__num_layers": 2.5}, "model.num_layers"),
    ("parity", {"model__dropout": 1.5}, "model.dropout"),
    ("parity", {"model__norm": "groupnorm"}, "model.norm"),
    ("parity", {"model__block": "transformer"}, "model.block"),
    ("parity", {"model__block": "s5", "model__s5_activation": "relu"}, "model.s5_activation"),
    ("parity", {"model__s5_prenorm": "yes"}, "model.s5_prenorm: expected True or False"),
    ("parity", {"model__bn_momentum": 1.0}, "model.bn_momentum"),
    ("parity", {"model__mixer": "diag", "model__eval_step_rescale": 2.0}, "model.eval_step_rescale: the diag mixer"),
    ("parity", {"model__mixer": "s4d", "model__s4d__step_rescale": 0.0}, "model.s4d.step_rescale"),
    ("listops", {"model__pooling": "pair"}, "model.pooling: 'pair' encodes the two documents"),
    ("parity", {"model__deltanet__allow_neg_eigval": "yes"}, "model.deltanet.allow_neg_eigval: expected True or"),
    ("parity", {"model__diag__state_size": 2.0}, "model.diag.state_size: expected int or None"),
    ("parity", {"model__mixer": "s5", "model__s5__init": "legs"}, "model.s5.init"),
    ("parity", {"model__mixer": "s4d", "model__s4d__init": "s5-ptd"}, "model.s4d.init"),
    ("parity", {"data__task": "sudoku"}, "data.task"),
    ("listops", {"data__pack": True}, "data.pack: listops has one label per sequence"),
    ("parity", {"data__pack": True, "data__pack_len": 30}, "data.pack_len: expected 0 or at least the longest"),
    ("parity", {"data__pack": "yes"}, "data.pack: expected True or False"),
    ("parity", {"data__train_min_len": -3}, "data.train_min_len"),
    ("parity", {"data__eval_min_len": 300, "data__eval_max_len": 64}, "data.eval_min_len"),
    ("parity", {"data__batch_size": 1000}, "data.batch_size"),
    ("parity", {"optim__lr": -1e-3}, "optim.lr"),
    ("parity", {"optim__lr": float("nan")}, "optim.lr"),
    ("parity", {"optim__b2": 1.0}, "optim.b2"),
    ("parity", {"optim__warmup_steps": 10}, "optim.warmup_steps"),
    ("parity", {"optim__schedule": "linear"}, "optim.schedule"),
    ("parity", {"optim__mixer_param_groups": "B:fast"}, "optim.mixer_param_groups: expected 'name:group'"),
    ("parity", {"model__mixer": "s5", "optim__mixer_param_groups": "log_step:decay"},
     "optim.mixer_param_groups: 'log_step' names no parameter"),
    ("parity", {"train__num_steps": 0}, "train.num_steps"),
    ("parity", {"train__nonfinite_policy": "ignore"}, "train.nonfinite_policy"),
    ("parity", {"ckpt__keep_last": 0}, "ckpt.keep_last"),
    ("parity", {"ckpt__best_mode": "lowest"}, "ckpt.best_mode"),
    ("parity", {"seed": -1}, "seed"),
    ("parity", {"data__seed": -1}, "data.seed: expected an integer in [0, inf]"),
    ("parity", {"train__num_seeds": 0}, "train.num_seeds: expected an integer in [1, inf]"),
    ("parity", {"train__num_seeds": 2.0}, "train.num_seeds: expected an integer"),
    ("parity", {"train__solved_metric": "acc"}, "train.solved_metric: expected one of"),
    ("parity", {"train__solved_threshold": float("nan")}, "train.solved_threshold: expected a finite number"),
    ("mqar", {"data__train_length": -1}, "data.train_length"),
    ("char_lm", {"data__path": "/nonexistent/book.txt"}, "data.path"),
    ("char_lm", {"data__path": "EMPTY"}, "data.path"),
    ("char_lm", {"data__path": "SHORT"}, "data.path"),
    ("char_lm", {"data__seq_len": 0}, "data.seq_len"),
    ("digits", {"data__preprocess": "pixel"}, "data.preprocess"),
    ("digits", {"data__channels": "cmyk"}, "data.channels"),
    ("digits", {"data__num_train": -1}, "data.num_train"),
    ("digits", {"data__max_length": 0}, "data.max_length"),
]


@pytest.mark.parametrize("task,overrides,field", BAD_CONFIGS, ids=[f"{c[2]}-{i}" for i, c in enumerate(BAD_CONFIGS)])
def test_bad_config_is_one_line_error_naming_the_field(tmp_path, task, overrides, field):
    overrides = dict(overrides)
    if overrides.get("data__path") in ("EMPTY", "SHORT"):
        overrides["data__path"] = _text(tmp_path, "" if overrides["data__path"] == "EMPTY" else "abc " * 20)
    config = get_config(task)
    for dotted, value in overrides.items():  # on the plain dict: wrong types get past ConfigDict's checks
        *path, field = dotted.split("__")
        node = config
        for key in path:
            node = node[key]
        node[field] = value
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    message = str(info.value)
    assert field in message and "\n" not in message, message


def test_bad_mixer_option_stops_train_before_anything_is_built(tmp_path, monkeypatch):
    """The constructor's own error, from validation (an abstract build), before data, model or workdir."""
    import ssm.train.loop as loop
    from ssm.train import train

    monkeypatch.setattr(loop, "build", lambda *a, **k: pytest.fail("build() reached"))
    config = get_config("parity", "smoke", model__mixer="deltaproduct", model__deltaproduct__chunk_scan="fast")
    with pytest.raises(ConfigError, match=r"^model.deltaproduct.chunk_scan: expected one of"):
        train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("task", ["parity", "mod_arithmetic", "word_problem", "mqar", "listops", "char_lm"])
@pytest.mark.parametrize("preset", ["smoke", "default", "paper"])
def test_shipped_configs_validate(task, preset):
    if (task, preset) == ("char_lm", "paper"):  # seq_len 512 needs a real book in data.path, not the demo
        with pytest.raises(ConfigError, match="data.path: the validation split .* fewer than data.seq_len"):
            validate_config(get_config(task, preset))
        return
    validate_config(get_config(task, preset))


def test_token_ids_out_of_vocabulary():
    arrays = {"inputs": np.array([[1, 2, 7]], np.int32), "targets": np.array([[0, 1, 1]], np.int32),
              "weights": np.ones((1, 3), np.float32), "lengths": np.array([3], np.int32)}
    validate_arrays(arrays, vocab_size=8, num_classes=2, split="train")
    with pytest.raises(ConfigError, match=r"token ids must lie in \[0, vocab_size = 5\)"):
        validate_arrays(arrays, vocab_size=5, num_classes=2, split="train")
    with pytest.raises(ConfigError, match="targets"):
        validate_arrays({**arrays, "targets": np.array([[0, 1, 2]], np.int32)}, 8, 2, "test")
    with pytest.raises(ConfigError, match="weights"):
        validate_arrays({**arrays, "weights": np.full((1, 3), np.nan, np.float32)}, 8, 2, "test")


def test_layer_arguments_are_one_line_errors():
    from ssm.layers.s4d import S4D

    with pytest.raises(ConfigError, match="dt_min"):
        S4D(4, state_size=4, dt_min=0.1, dt_max=0.01, rngs=nnx.Rngs(0))
    layer = mixer_factory("diag", state_size=4)(4, nnx.Rngs(0))
    with pytest.raises(ConfigError, match="x"):
        layer(jnp.ones((2, 4)))  # missing the time axis


# The command line's one-line errors and exit codes: tests/test_bad_input.py


@pytest.mark.slow
def test_cli_refuses_incompatible_workdir_unless_allowed(tmp_path, data_dir):
    common = ["--config=configs/parity.py:smoke", f"--workdir={tmp_path / 'run'}", "--config.model.mixer=diag",
              f"--config.data.data_dir={data_dir}", "--config.train.num_steps=2"]
    assert cli(*common).returncode == 0
    out = cli(*common, "--config.seed=1", "--config.train.num_steps=3")
    assert out.returncode == 2 and "seed" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = cli(*common, "--config.seed=1", "--config.train.num_steps=3", "--config.train.allow_config_change=True")
    assert out.returncode == 0, out.stderr[-2000:]


# ------------------------------------------------------------------------------------ non-finite guard
def _tiny_model():
    return SequenceModel(mixer_factory("diag", state_size=4), d_model=8, num_layers=1, num_outputs=2,
                         vocab_size=3, rngs=nnx.Rngs(0))


def _batch(weights_value=1.0):
    rng = np.random.default_rng(0)
    return {"inputs": rng.integers(1, 3, (2, 5)).astype(np.int32), "targets": rng.integers(0, 2, (2, 5)).astype(np.int32),
            "weights": np.full((2, 5), weights_value, np.float32), "lengths": np.array([5, 3], np.int32)}


def test_guard_skips_a_poisoned_batch_inside_the_step():
    import optax

    model = _tiny_model()
    graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)))
    step = make_train_step(graphdef)
    before = [np.array(x) for x in jax.tree.leaves(state)]
    state, metrics = step(state, _batch(np.nan), None)  # NaN weights -> NaN loss and gradients
    assert bool(metrics["nonfinite"])
    after = [np.asarray(x) for x in jax.tree.leaves(state)]
    for a, b in zip(before, after):  # nothing moved, not even the optimizer's step count
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, _batch(1.0), None)
    assert not bool(metrics["nonfinite"])
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before, jax.tree.leaves(state)))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state))


def _guard_reference(flags, limit):
    """The guard's counters by a plain loop: flags[t][k] = step t of replica k was non-finite."""
    S = len(flags[0])
    skipped, in_a_row, start, frozen = [0] * S, [0] * S, [0] * S, [False] * S
    for t, row in enumerate(flags):
        for k, bad in enumerate(row):
            if frozen[k]:
                continue
            if bad:
                skipped[k] += 1
                start[k] = t if in_a_row[k] == 0 else start[k]
                in_a_row[k] += 1
                frozen[k] = limit > 0 and in_a_row[k] >= limit
            else:
                in_a_row[k] = 0
    return {"skipped": skipped, "in_a_row": in_a_row, "streak_start": start, "frozen": frozen}


@pytest.mark.parametrize("policy,max_in_a_row", [("skip", 3), ("skip", 0), ("stop", 10)])
def test_guard_counters_per_replica(policy, max_in_a_row):
    """update_guard (traced, all replicas at once) against a plain loop, on random non-finite flags of 4
    replicas over 40 steps; the limit is 1 for "stop", max_in_a_row for "skip" (0: never freeze)."""
    limit = nonfinite_limit(policy, max_in_a_row)
    flags = np.random.default_rng(0).random((40, 4)) < [0.0, 0.3, 0.6, 0.9]
    update = jax.jit(lambda g, bad, step: update_guard(g, bad, step, limit))
    guard = new_guard(4)
    for t, row in enumerate(flags):
        guard = update(guard, jnp.asarray(row), t)
    expected = _guard_reference(flags.tolist(), limit)
    assert {k: np.asarray(v).tolist() for k, v in guard.items()} == expected
    assert not expected["frozen"][0] and any(expected["frozen"]) == (limit > 0)  # the case is not trivial
    single = update_guard(new_guard(1), jnp.bool_(True), 5, 1)  # one replica: scalars
    assert single["frozen"].shape == () and bool(single["frozen"]) and int(single["streak_start"]) == 5


def test_locate_nonfinite_names_the_culprit():
    model = _tiny_model()
    batch = jax.tree.map(jnp.asarray, _batch())
    assert "the loss" in locate_nonfinite(model, {**batch, "weights": batch["weights"] * jnp.nan})
    model.blocks[0].mixer.in_proj.kernel[...] = model.blocks[0].mixer.in_proj.kernel[...] * jnp.inf
    assert "blocks.0.mixer.in_proj.kernel" in locate_nonfinite(model, batch)


@pytest.mark.parametrize("block,norm", [("prenorm_mlp", "rmsnorm"), ("s5", "batchnorm")])
def test_locate_nonfinite_finds_the_first_nonfinite_module_output(block, norm):
    """Finite parameters, but the mixer overflows float32 (input projection scaled by 1e30): the locator
    names the mixer (from the outputs the model computed, here through per-block remat), not the block, MLP,
    final norm or head after it, which are non-finite too."""
    model = SequenceModel(mixer_factory("diag", state_size=4), d_model=8, num_layers=1, num_outputs=2,
                          vocab_size=3, remat=True, block=block, norm=norm, rngs=nnx.Rngs(0))
    batch = jax.tree.map(jnp.asarray, _batch())
    assert "nowhere" in locate_nonfinite(model, batch)
    model.blocks[0].mixer.in_proj.kernel[...] = model.blocks[0].mixer.in_proj.kernel[...] * 1e30
    where = locate_nonfinite(model, batch)
    assert where.startswith("output of blocks.0.mixer (DiagonalRNN"), where


def _poison(monkeypatch, steps):
    """Training batches at `steps` get NaN weights (the NaN reaches the loss and every gradient)."""
    from ssm.train.data import Batches

    original = Batches.__call__

    def poisoned(self, step):
        batch = original(self, step)
        return {**batch, "weights": batch["weights"] * np.nan} if step in steps else batch

    monkeypatch.setattr(Batches, "__call__", poisoned)


@pytest.mark.slow
def test_guard_in_training_skip_then_stop(tmp_path, data_dir, monkeypatch):
    _poison(monkeypatch, {1})
    summary, _ = run("parity", tmp_path / "skip", data_dir, model__mixer="diag", train__num_steps=3)
    records = [json.loads(line) for line in open(tmp_path / "skip" / "metrics.jsonl")]
    assert [r.get("skipped_steps", 0) for r in records if r["split"] == "train"] == [0, 1, 0]
    assert all(np.isfinite(np.asarray(x)).all() for x in _checkpoint_arrays(tmp_path / "skip" / "checkpoints" / "3" / "state"))
    with pytest.raises(NonFiniteError, match=r"from step 2.*the loss.*last good checkpoint: none"):
        run("parity", tmp_path / "stop", data_dir, model__mixer="diag", train__num_steps=3,
            train__nonfinite_policy="stop")


# --------------------------------------------------------------------------------------- checkpoints
def _corrupt(step_dir):
    """Overwrite every file of a checkpoint's `state` item with garbage of the same size."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.write(b"\x00garbage" * max(1, os.path.getsize(path) // 8))


def test_corrupted_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(0)}
    ckpt = Checkpointer(str(tmp_path / "ck"), keep_last=3, keep_best=0, async_save=False)
    for step in (1, 2):
        ckpt.save(step, jax.tree.map(lambda x: x + step, state), {"data_position": {"step": step}})
    ckpt.close()
    _corrupt(tmp_path / "ck" / "2")
    ckpt = Checkpointer(str(tmp_path / "ck"), keep_last=3, keep_best=0, async_save=False)
    step, restored, meta = ckpt.restore_latest(state)
    assert step == 1 and meta["data_position"]["step"] == 1
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) + 1)
    assert "checkpoint 2 could not be restored" in capsys.readouterr().err
    assert ckpt.all_steps() == [1] and os.path.isdir(tmp_path / "ck" / "corrupt-2-0")
    assert ckpt.save(2, state, {"data_position": {"step": 2}})  # the step can be written again
    ckpt.close()


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "ck"), keep_last=2, keep_best=0, async_save=False)
    ckpt.save(1, {"w": jnp.zeros(3)}, {"data_position": {"step": 1}})
    with pytest.raises(ConfigError, match="no checkpoint .* can be restored"):
        ckpt.restore_latest({"w": jnp.zeros(4), "b": jnp.zeros(2)})  # another model
    assert ckpt.all_steps() == [1]  # nothing moved aside
    ckpt.close()


# ----------------------------------------------------------------------------- kill, SIGTERM, resume
SMOKE = ["--config=configs/parity.py:smoke", "--config.model.mixer=diag", "--config.model.dropout=0.1",
         "--config.train.num_steps=8", "--config.train.eval_every=4", "--config.ckpt.every=2"]


def _final_params(workdir):
    return [np.asarray(x) for x in _checkpoint_arrays(os.path.join(workdir, "checkpoints", "8", "state"))]


def _records(workdir):
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
            for line in open(os.path.join(workdir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run (subprocess), shared by the kill tests."""
    base = tmp_path_factory.mktemp("reference")
    out = cli(*SMOKE, f"--workdir={base / 'run'}", f"--config.data.data_dir={base / 'data'}")
    assert out.returncode == 0, out.stderr[-3000:]
    return str(base / "run"), str(base / "data")


def _assert_same_run(workdir, reference):
    assert _records(workdir) == _records(reference)
    a, b = _final_params(workdir), _final_params(reference)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _start(workdir, data_dir, env=None):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *SMOKE, f"--workdir={workdir}",
                             f"--config.data.data_dir={data_dir}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_train_records(proc, workdir, n, timeout=300):
    path, t0 = os.path.join(workdir, "metrics.jsonl"), time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if os.path.exists(path) and sum('"train"' in line for line in open(path)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {n} train steps (rc={proc.poll()})")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_identical(tmp_path, reference):
    ref, data_dir = reference
    proc = _start(tmp_path / "run", data_dir)
    _wait_for_train_records(proc, tmp_path / "run", 5)
    proc.kill()
    proc.communicate()
    out = cli(*SMOKE, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming" in out.stdout
    _assert_same_run(tmp_path / "run", ref)


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_then_resume_is_bitwise_identical(tmp_path, reference):
    ref, data_dir = reference
    proc = _start(tmp_path / "run", data_dir, env={KILL_DURING_SAVE_ENV: "6"})
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    steps = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    assert "6" not in steps and any(s.startswith("6.") for s in steps), steps  # a partial write of step 6
    out = cli(*SMOKE, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming" in out.stdout and "from step 4" in out.stdout
    _assert_same_run(tmp_path / "run", ref)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, reference):
    ref, data_dir = reference
    proc = _start(tmp_path / "run", data_dir)
    _wait_for_train_records(proc, tmp_path / "run", 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    stopped = int(err.split("after step ")[1].split(";")[0])
    assert str(stopped) in os.listdir(tmp_path / "run" / "checkpoints")
    out = cli(*SMOKE, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"from step {stopped}" in out.stdout
    _assert_same_run(tmp_path / "run", ref)


@pytest.mark.slow
def test_corrupted_latest_checkpoint_resume_is_bitwise_identical(tmp_path, reference):
    ref, data_dir = reference
    shutil.copytree(ref, tmp_path / "run")
    for name in ("summary.json",):
        os.remove(tmp_path / "run" / name)
    _corrupt(tmp_path / "run" / "checkpoints" / "8")
    out = cli(*SMOKE, f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "checkpoint 8 could not be restored" in out.stderr and "from step 6" in out.stdout
    _assert_same_run(tmp_path / "run", ref)
