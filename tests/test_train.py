"""Training machinery: optimizer groups, config files, end-to-end smoke runs, resume, CLI errors."""

import importlib
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ssm.model import SequenceModel
from ssm.layers.params import marked_group
from ssm.registry import MIXERS, TASK_NAMES, mixer_factory
from ssm.train import train
from ssm.train.optim import make_optimizer, param_group, param_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# one config file per generated task, plus the real-data configs of the hf_dataset task that need no download
CONFIGS = tuple(t for t in TASK_NAMES if t != "hf_dataset") + ("digits",)
DEFAULT_MIXER = "deltanet"  # the README's default; the other mixers' end-to-end smoke runs are `-m slow`


def get_config(task: str, preset: str = "smoke", **overrides):
    sys.path.insert(0, ROOT)
    try:
        config = importlib.import_module(f"configs.{task}").get_config(preset)
    finally:
        sys.path.remove(ROOT)
    config = config.to_dict()
    for dotted, value in overrides.items():  # section__field or model__<mixer>__option
        *path, field = dotted.split("__")
        node = config
        for key in path:
            node = node[key]
        node[field] = value
    return config


@pytest.fixture
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "data")  # shared by the tests of one session


# ------------------------------------------------------------------------------------- optimizer groups
def test_param_groups_by_type_and_shape():
    model = SequenceModel(mixer_factory("diag", state_size=4), d_model=8, num_layers=1, num_outputs=3,
                          vocab_size=5, rngs=nnx.Rngs(0))
    groups = {".".join(map(str, p)): param_group(v) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert groups["blocks.0.mixer.decay_bias"] == "ssm"
    for name in ("blocks.0.mixer_norm.scale", "blocks.0.mlp_norm.scale", "final_norm.scale", "head.bias",
                 "blocks.0.mlp.up.bias"):
        assert groups[name] == "no_decay", name
    for name in ("embed.embedding", "head.kernel", "blocks.0.mixer.in_proj.kernel", "blocks.0.mlp.down.kernel"):
        assert groups[name] == "decay", name


def test_groups_get_their_lr_and_weight_decay():
    """With zero gradients Adam's step is 0, so only decoupled weight decay moves a parameter: the decay
    group shrinks by lr·wd·p, the others stay put. With unit gradients the SSM group moves by its own lr."""
    model = SequenceModel(mixer_factory("diag", state_size=4), d_model=8, num_layers=1, num_outputs=3,
                          vocab_size=5, rngs=nnx.Rngs(0))
    tx, _ = make_optimizer(model, num_steps=10, lr=0.1, ssm_lr=0.01, weight_decay=0.5, warmup_steps=0,
                           clip_norm=None, schedule_kind="constant")
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    labels = nnx.as_pure(param_labels(model))
    opt_state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, opt_state, params)
    for (path, u), (_, p), (_, g) in zip(*(jax.tree_util.tree_flatten_with_path(t)[0]
                                          for t in (updates, params, labels))):
        expected = -0.1 * 0.5 * np.asarray(p) if g == "decay" else 0.0
        np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6, atol=1e-8, err_msg=str(path))
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(ones, opt_state, params)
    u = updates["blocks"][0]["mixer"]["decay_bias"]
    np.testing.assert_allclose(np.asarray(u), -0.01, rtol=1e-4)  # Adam's first step is lr·sign(g)


def test_mixer_param_group_overrides_move_parameters_by_name():
    """optim.mixer_param_groups (S5's opt_config variants): B to "ssm_decay" (SSM lr with weight decay), log Δ
    to "decay", D to "ssm"; with zero gradients only decoupled weight decay moves a parameter, by lr·wd·p
    with its group's lr. A name that is no mixer parameter is a one-line error."""
    from ssm.checks import ConfigError

    model = SequenceModel(mixer_factory("s5", state_size=4), d_model=8, num_layers=1, num_outputs=3,
                          vocab_size=5, rngs=nnx.Rngs(0))
    overrides = {"B": "ssm_decay", "log_dt": "decay", "D": "ssm"}
    tx, _ = make_optimizer(model, num_steps=10, lr=0.1, ssm_lr=0.01, weight_decay=0.5, warmup_steps=0,
                           clip_norm=None, schedule_kind="constant", group_overrides=overrides)
    labels = {".".join(map(str, p)): g for p, g in nnx.to_flat_state(param_labels(model, overrides))}
    assert {k: labels[f"blocks.0.mixer.{k}"] for k in ("B", "log_dt", "D", "Lambda_re", "C")} == {
        "B": "ssm_decay", "log_dt": "decay", "D": "ssm", "Lambda_re": "ssm", "C": "decay"}
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    mixer, p = updates["blocks"][0]["mixer"], params["blocks"][0]["mixer"]
    np.testing.assert_allclose(np.asarray(mixer["B"]), -0.01 * 0.5 * np.asarray(p["B"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mixer["log_dt"]), -0.1 * 0.5 * np.asarray(p["log_dt"]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(mixer["D"]), 0.0)
    with pytest.raises(ConfigError, match=r"^optim.mixer_param_groups: 'Bx' names no parameter of the mixer"):
        make_optimizer(model, num_steps=10, group_overrides={"Bx": "decay"})
    # without the ssm_decay group the optimizer state has the structure it had before it existed (resume)
    plain, _ = make_optimizer(model, num_steps=10, clip_norm=None)
    assert set(plain.init(params).inner_states) == {"decay", "no_decay", "ssm"}


@pytest.mark.parametrize("mixer", ["s4d", "s5"])
def test_ssm_dynamics_params_of_layers_land_in_ssm_group(mixer):
    model = SequenceModel(mixer_factory(mixer, state_size=8), d_model=8, num_layers=1, num_outputs=2,
                          vocab_size=4, rngs=nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    ssm = [p for p, v in flat if marked_group(v) == "ssm"]
    assert ssm, "the layer marks no ssm_param"
    labels = dict(nnx.to_flat_state(param_labels(model)))
    assert all(labels[p] == "ssm" for p in ssm)
    assert all(labels[p] != "ssm" for p, v in flat if marked_group(v) != "ssm")


# ----------------------------------------------------------------------------------- mixer config sections
# where configs/base.py departs from a layer's default (kept from the training script's behaviour)
BASE_DEPARTURES = {("s5", "clip_eigs"): True, ("diag", "state_size"): 64}


def base_model_config() -> dict:
    sys.path.insert(0, ROOT)
    try:
        return importlib.import_module("configs.base").base_config().to_dict()["model"]
    finally:
        sys.path.remove(ROOT)


def test_every_mixer_has_a_config_section_of_its_constructor_options(mixer):
    from ssm.registry import mixer_options

    section = base_model_config()[mixer]
    options = mixer_options(mixer)
    assert list(section) == sorted(options)  # every option, nothing else
    for name, option in options.items():
        assert section[name] == BASE_DEPARTURES.get((mixer, name), option.default), name


def test_every_option_of_the_section_reaches_the_constructor(mixer, monkeypatch):
    """build_model passes the chosen mixer's whole section (dtype names as dtypes) to its constructor."""
    import functools

    from ssm.registry import mixer_class
    from ssm.train.build import build_model

    cls, seen = mixer_class(mixer), []
    original = cls.__init__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", spy)
    config = get_config("parity", "smoke", model__mixer=mixer)
    nnx.eval_shape(lambda: build_model(config))
    section = config["model"][mixer]
    assert seen and all(set(kw) == set(section) | {"rngs"} for kw in seen)
    for name, value in section.items():
        assert str(seen[0][name]) == str(value), name


def test_the_issue_examples_build():
    """--config.model.mixer=deltaproduct --config.model.deltaproduct.conv_size=0 (no short convolution), and
    --config.model.mixer=s5 --config.model.s5.blocks=4 --config.model.s5.bidirectional=True on ListOps."""
    from ssm.train.build import build_model
    from ssm.train.validate import validate_config

    config = get_config("parity", "default", model__mixer="deltaproduct", model__deltaproduct__conv_size=0)
    validate_config(config)
    layer = nnx.eval_shape(lambda: build_model(config)).blocks[0].mixer
    assert type(layer).__name__ == "DeltaProduct" and layer.convs is None
    config = get_config("listops", "default", model__mixer="s5", model__s5__blocks=4, model__s5__bidirectional=True)
    validate_config(config)
    layer = nnx.eval_shape(lambda: build_model(config)).blocks[0].mixer
    assert layer.blocks == 4 and layer.bidirectional and not layer.causal


def test_docs_mixer_table_shows_every_section():
    """docs/training.md's mixer table has a row per registered mixer listing each option with its default."""
    text = open(os.path.join(ROOT, "docs", "training.md")).read()
    defaults = base_model_config()
    for name in MIXERS:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row, f"docs/training.md: no row for mixer {name!r}"
        for option, value in defaults[name].items():
            assert f"`{option}`={value!r}" in row, f"docs/training.md, {name}: `{option}`={value!r}"


# ------------------------------------------------------------------------------------------ end to end
def run(task, workdir, data_dir, **overrides):
    config = get_config(task, data__data_dir=data_dir, **overrides)
    return train(config, str(workdir)), config


def check_outputs(workdir, num_steps, config):
    files = set(os.listdir(workdir))
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints"} <= files
    with open(os.path.join(workdir, "config.json")) as f:
        written = json.load(f)
    assert written.pop("environment")["packages"]["jax"] == jax.__version__  # ssm/train/environment.py
    assert written == json.loads(json.dumps(config))
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(1, num_steps + 1))
    assert {r["split"] for r in records} == {"train", "validation", "test"}
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["step"] == num_steps
    for split in ("train", "validation", "test"):
        assert np.isfinite(summary[split]["loss"])
    assert "accuracy" in summary["test"] and ("scaled_accuracy" in summary["test"] or
                                              "bits_per_char" in summary["test"])
    assert summary["best"]["step"] in {r["step"] for r in records if r["split"] == "validation"}
    assert [s["seed"] for s in summary["seeds"]] == [config["seed"]] and summary["seeds"][0]["test"] == summary["test"]
    assert summary["solved"] == (None if "scaled_accuracy" not in summary["test"] else
                                 int(summary["test"]["scaled_accuracy"] >= 0.9))
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps and steps[-1] == num_steps
    return records, summary


def _flat_model_section(config: dict) -> dict:
    """config with the model section in the flat form of earlier versions (as their config.json has it)."""
    m = config["model"]
    flat = {k: v for k, v in m.items() if k not in MIXERS}
    flat.update(state_size=m["diag"]["state_size"], allow_neg_eigval=m["diag"]["allow_neg_eigval"], num_heads=4,
                num_householder=2, use_forget_gate=False, init="", clip_eigs=True)
    return {**config, "model": flat}


def test_parity_smoke_trains_then_resumes(tmp_path, data_dir, capsys):
    workdir = tmp_path / "run"
    _, config = run("parity", workdir, data_dir, model__mixer="diag")
    check_outputs(workdir, 3, config)
    # a run of an earlier version: config.json with flat model fields; it resumes (fields moved to model.diag)
    (workdir / "config.json").write_text(json.dumps(_flat_model_section(config)))
    summary, config = run("parity", workdir, data_dir, model__mixer="diag", train__num_steps=5)
    assert "read as model.state_size -> model.diag.state_size, model.allow_neg_eigval -> " in capsys.readouterr().out
    records, _ = check_outputs(workdir, 5, config)  # and config.json is now in the per-mixer form
    assert [r["step"] for r in records if r["split"] == "test"] == [5]
    assert "accuracy_by_length" in summary["test"]
    with pytest.raises(ValueError, match="model.d_model"):  # refuses to resume into another run
        run("parity", workdir, data_dir, model__mixer="diag", model__d_model=8)
    with pytest.raises(ValueError, match="model.diag.state_size"):
        run("parity", workdir, data_dir, model__mixer="diag", model__diag__state_size=4)
    # another mixer's section has no effect on this run: not a difference
    summary, _ = run("parity", workdir, data_dir, model__mixer="diag", model__s5__blocks=2, train__num_steps=5)
    assert summary["step"] == 5


def _records_without_timing(workdir):
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
            for line in open(workdir / "metrics.jsonl")]


def _checkpoint_arrays(path):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        return jax.tree.leaves(ckptr.restore(os.path.abspath(path)))


def test_resume_is_exact(tmp_path, data_dir):
    """Dropping the last checkpoint and re-running reproduces the uninterrupted run bitwise (CPU): same
    metrics, same final parameters and optimizer state (data order, dropout keys, schedule restored)."""
    workdir = tmp_path / "run"
    overrides = dict(model__mixer="diag", model__dropout=0.1, train__num_steps=4, ckpt__every=2,
                     train__eval_every=2, ckpt__async_save=False)
    first, _ = run("parity", workdir, data_dir, **overrides)
    before = _records_without_timing(workdir)
    shutil.move(workdir / "checkpoints" / "4", tmp_path / "uninterrupted-4")
    second, _ = run("parity", workdir, data_dir, **overrides)
    assert _records_without_timing(workdir) == before
    assert first["test"] == second["test"] and first["train"]["loss"] == second["train"]["loss"]
    a = _checkpoint_arrays(tmp_path / "uninterrupted-4" / "state")
    b = _checkpoint_arrays(workdir / "checkpoints" / "4" / "state")
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


PACKED = {"mod_arithmetic": {"data__pack": True},  # these two train on packed rows (data.pack)
          "char_lm": {"data__pack": True, "data__doc_sep": "\n\n"}}


@pytest.mark.parametrize("task", ["mod_arithmetic", "word_problem", "mqar", "listops", "char_lm", "digits"])
def test_every_config_smoke(tmp_path, data_dir, task):
    summary, config = run(task, tmp_path / "run", data_dir, model__mixer="diag", train__num_steps=2,
                          **PACKED.get(task, {}))
    check_outputs(tmp_path / "run", 2, config)
    if task == "mod_arithmetic":
        assert summary["test"]["accuracy_by_length"]
    if task == "word_problem":  # the DeltaProduct paper's curve, one value per prefix length of the test rows
        test = summary["test"]
        assert len(test["sequence_accuracy_by_prefix"]) == config["data"]["eval_length"]
        assert test["sequence_accuracy_by_prefix"][-1] == test["sequence_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("task", CONFIGS)
def test_every_mixer_on_every_config(tmp_path, data_dir, task, mixer):
    _, config = run(task, tmp_path / "run", data_dir, model__mixer=mixer)
    check_outputs(tmp_path / "run", 3, config)
    summary, config = run(task, tmp_path / "run", data_dir, model__mixer=mixer, train__num_steps=4)
    check_outputs(tmp_path / "run", 4, config)


@pytest.mark.parametrize("mixer", [pytest.param(m, marks=[] if m == DEFAULT_MIXER else [pytest.mark.slow])
                                   for m in MIXERS])
def test_layer_mixer_smoke(tmp_path, data_dir, mixer):
    """Each registered mixer trains the parity smoke config. Only the README's default mixer runs by default:
    compiling a layer's train step takes 20-70 s on a shared 2-core CPU (the rest are `-m slow`)."""
    _, config = run("parity", tmp_path / "run", data_dir, model__mixer=mixer, train__num_steps=2)
    check_outputs(tmp_path / "run", 2, config)


# ------------------------------------------------------------------------------------------------- CLI
def cli(*args, env=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_unknown_override_names_the_key(tmp_path):
    out = cli("--config=configs/parity.py:smoke", f"--workdir={tmp_path}", "--config.model.bogus_field=3")
    assert out.returncode != 0
    assert "model.bogus_field" in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "summary.json")


def test_cli_train_step_in_nnx_tree_mode(tmp_path, data_dir):
    """Guards the coming flax switch to tree mode: the whole CLI run with NNX_GRAPH_MODE=false."""
    out = cli("--config=configs/parity.py:smoke", f"--workdir={tmp_path / 'run'}", "--config.model.mixer=diag",
              "--config.train.num_steps=2", f"--config.data.data_dir={data_dir}", env={"NNX_GRAPH_MODE": "false"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final test accuracy" in out.stdout
    assert json.load(open(tmp_path / "run" / "summary.json"))["step"] == 2


def test_plot_writes_png(tmp_path):
    from ssm.analysis.plot import plot_run

    records = [{"step": s, "split": "train", "loss": 1.0 / s, "accuracy": 0.5} for s in (1, 2, 3)]
    records.append({"step": 3, "split": "validation", "loss": 0.4, "accuracy": 0.75, "scaled_accuracy": 0.5})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = plot_run(str(tmp_path))
    assert out == str(tmp_path / "curves.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
