"""Every bad input is one line, before any compute: a sweep of every field of every shipped config, a table of
values of the right type but out of range / choice (tests/test_reliability.py holds the first table), the
workdir, ckpt.best_metric against the task's declared metrics, and the command line's lines and exit codes
(docs/reliability.md): 0 done (and --help), 2 bad input, 3 non-finite stop, 128 + signal, 1 a crash."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from ssm.checks import ConfigError
from ssm.train import train
from ssm.train.metrics import METRIC_MODES, aggregate, scalar_metrics
from ssm.train.validate import validate_config
from ssm.train.workdir import check_workdir
from tests.test_train import CONFIGS, ROOT, get_config


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _set(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _one_line_error(config, field):
    with pytest.raises(ConfigError) as info:
        validate_config(config)
        pytest.fail(f"{field}: accepted")
    message = str(info.value)
    assert field in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("task", CONFIGS)
def test_every_field_of_a_wrong_type_is_one_line_naming_it(task):
    """Each field of the smoke preset set to a value of another type (a number for a string field, a string
    for every other one, None included) is refused by validation with a message naming the field."""
    base = get_config(task)
    fields = list(_leaves(base))
    assert len(fields) > 40  # the whole config, every mixer's section included
    for path, value in fields:
        config = copy.deepcopy(base)
        _set(config, path, 3 if isinstance(value, str) else "x")
        _one_line_error(config, ".".join(path))


BAD_VALUES = [  # (task, overrides, the field the one-line message starts with), right type, wrong value
    ("parity", {"model__dtype": "bf16"}, "model.dtype"),
    ("parity", {"model__remat": "yes"}, "model.remat"),
    ("parity", {"model__remat_policy": "save_all"}, "model.remat_policy"),
    ("parity", {"ckpt__best_metric": "acc"}, "ckpt.best_metric"),
    ("char_lm", {"ckpt__best_metric": "scaled_accuracy"}, "ckpt.best_metric"),  # an LM reports bits/char
    ("parity", {"ckpt__best_metric": "accuracy_by_length"}, "ckpt.best_metric"),  # a dict, not a number
    ("parity", {"ckpt__best_mode": "min"}, "ckpt.best_mode"),  # accuracy: larger is better
    ("char_lm", {"ckpt__best_metric": "bits_per_char", "ckpt__best_mode": "max"}, "ckpt.best_mode"),
    ("parity", {"ckpt__async_save": 1}, "ckpt.async_save"),
    ("parity", {"train__allow_config_change": "no"}, "train.allow_config_change"),
    ("parity", {"mesh__data": 0}, "mesh.data"),
    ("parity", {"mesh__data": -2}, "mesh.data"),
    ("parity", {"mesh__model": 0}, "mesh.model"),
    ("parity", {"mesh__distributed": "auto"}, "mesh.distributed"),
    ("mod_arithmetic", {"data__modulus": 1}, "data.modulus"),
    ("mod_arithmetic", {"data__brackets": 1}, "data.brackets"),
    ("word_problem", {"data__group": "S9"}, "data.group"),
    ("mqar", {"data__num_kv_pairs": 100}, "data.train_length"),  # needs length >= 4 · num_kv_pairs
    ("mqar", {"data__vocab_size": 5}, "data.vocab_size"),
    ("listops", {"data__max_args": 1}, "data.max_args"),
    ("parity", {"model__mixer": "s5", "model__s5__blocks": 0}, "model.s5.blocks"),
    ("parity", {"model__mixer": "s5", "model__s5__state_size": 0}, "model.s5.state_size"),
    ("parity", {"model__mixer": "s5", "model__s5__step_rescale": float("nan")}, "model.s5.step_rescale"),
    ("parity", {"model__mixer": "s5", "model__s5__dt_max": float("inf")}, "model.s5.dt_max"),
    ("parity", {"model__mixer": "s4d", "model__s4d__dt_min": -1e-3}, "model.s4d.dt_min"),
    ("parity", {"model__deltanet__norm_eps": 0.0}, "model.deltanet.norm_eps"),
    ("parity", {"model__deltanet__expand_v": float("inf")}, "model.deltanet.expand_v"),
    ("digits", {"data__scale": float("nan")}, "data.scale"),
]


@pytest.mark.parametrize("task,overrides,field", BAD_VALUES, ids=[f"{c[2]}-{i}" for i, c in enumerate(BAD_VALUES)])
def test_bad_value_is_one_line_naming_the_field(task, overrides, field):
    config = get_config(task)
    for dotted, value in overrides.items():
        _set(config, dotted.split("__"), value)
    assert _one_line_error(config, field).startswith(field + ":")


def test_declared_metrics_are_what_evaluation_reports():
    """ckpt.best_metric is checked against `scalar_metrics`: it must list exactly the numbers `aggregate`
    returns (the per-bucket accuracies are dicts), and every one must have a direction."""
    rng = np.random.default_rng(0)
    outputs = [{"nll": rng.random((4, 6)), "correct": rng.random((4, 6)) > 0.5, "weights": np.ones((4, 6))}]
    for lm in (False, True):
        for bucket_by in (None, "length", "position"):
            metrics = aggregate(outputs, np.full(4, 6), num_classes=3, lm=lm, bucket_by=bucket_by)
            numbers = tuple(k for k, v in metrics.items() if not isinstance(v, (dict, list)))
            assert set(numbers) == set(scalar_metrics(lm, bucket_by)) and set(numbers) <= set(METRIC_MODES)


# ------------------------------------------------------------------------------------------------ workdir
@pytest.mark.parametrize("workdir,message", [
    ("gs://bucket/run", r"--workdir: remote paths are not supported \('gs://bucket/run'\)"),
    ("s3://bucket/run", "--workdir: remote paths are not supported"),
    ("", "--workdir: expected a directory path, got ''"),
    ("FILE", "--workdir: .* is a file, expected a directory"),
    ("FILE/run", "--workdir: cannot create .*: .* is a file"),
])
def test_bad_workdir_stops_train_before_anything_is_written(tmp_path, monkeypatch, workdir, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("not a folder")
    with pytest.raises(ConfigError, match="^" + message):
        train(get_config("parity", model__mixer="diag"), workdir)
    assert sorted(os.listdir(tmp_path)) == ["FILE"]  # no ./gs: folder, nothing else either


def test_workdir_that_can_be_created_passes(tmp_path):
    check_workdir(tmp_path / "new" / "run")  # os.PathLike, parents created by the run
    check_workdir(str(tmp_path))
    assert not os.path.exists(tmp_path / "new")


def test_best_metric_is_checked_before_training(tmp_path, monkeypatch):
    """It used to be a KeyError at the first evaluation, after training had started."""
    import ssm.train.loop as loop

    monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("load_data() reached"))
    with pytest.raises(ConfigError, match=r"^ckpt.best_metric: expected one of this task's validation metrics "
                                          r"'loss', 'accuracy', 'scaled_accuracy', got 'acc'$"):
        train(get_config("parity", ckpt__best_metric="acc"), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


# ------------------------------------------------------------------------------------------- command line
SMOKE = f"--config={os.path.join(ROOT, 'configs', 'parity.py')}:smoke"


def train_py(cwd, *args, timeout=300):
    """train.py run from `cwd` (not the clone: a stray relative folder such as ./gs: would land there)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=timeout)


CLI_CASES = [  # (arguments after --config, exit status, the one line on stderr (a part of it); None: no stderr)
    (["--config.model.d_modle=3"], 2, "train.py: error: unknown config field 'model.d_modle' "
                                      "(--config.model.d_modle); did you mean 'model.d_model'?"),
    (["--config.model.dtype=bf16"], 2, "train.py: error: model.dtype: expected one of 'float32', 'bfloat16'"),
    (["--config.ckpt.best_metric=acc"], 2, "train.py: error: ckpt.best_metric: expected one of this task's"),
    (["--workdir=gs://bucket/run"], 2, "train.py: error: --workdir: remote paths are not supported"),
    (["--config.model.d_model=abc"], 2, "train.py: error: flag --config.model.d_model=abc: invalid literal for int()"),
    (["--help"], 0, None),
    pytest.param(["--config.model.num_heads=2"], 2, "model.num_heads: moved to model.<mixer>.num_heads",
                 marks=pytest.mark.slow),
    pytest.param(["--config.model.deltaproduct.conv_sise=0"], 2,
                 "model.deltaproduct.conv_sise: not an option of DeltaProduct", marks=pytest.mark.slow),
    pytest.param(["--config.modle.d_model=3"], 2, "did you mean 'model.d_model'?", marks=pytest.mark.slow),
    pytest.param(["--config.model.mixer=deltanet", "--config.model.deltanet.num_heads=3"], 2,
                 "model.deltanet.num_heads: must divide d_model", marks=pytest.mark.slow),
    pytest.param(["extra"], 2, "train.py: error: unexpected arguments: extra", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("args,code,line", CLI_CASES)
def test_cli_bad_input_is_one_line_with_its_exit_status(tmp_path, args, code, line):
    workdir = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={tmp_path / 'run'}"]
    out = train_py(tmp_path, SMOKE, *workdir, *args)
    assert out.returncode == code, out.stderr[-2000:]
    if line is None:
        assert out.stderr == "" and "--workdir" in out.stdout
    else:
        assert line in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert os.listdir(tmp_path) == []  # no workdir, no ./gs: folder


@pytest.mark.slow
def test_cli_exit_status_3_on_a_non_finite_stop(tmp_path):
    """A learning rate of 1e30 overflows the parameters after the first update: with
    train.nonfinite_policy=stop the run stops with one line and exit status 3."""
    out = train_py(tmp_path, SMOKE, f"--workdir={tmp_path / 'run'}", "--config.model.mixer=diag",
                   "--config.optim.lr=1e30", "--config.optim.warmup_steps=0", "--config.train.nonfinite_policy=stop",
                   f"--config.data.data_dir={tmp_path / 'data'}")
    assert out.returncode == 3, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("train: non-finite loss/gradient"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
