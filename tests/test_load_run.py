"""Loading a trained run (`ssm.load_run`) and sampling from it (`python -m ssm.sample`), on a character-LM
smoke run trained once per module (data/tiny.txt, the diag mixer: ≈ 10 s)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import ssm
from ssm.checks import ConfigError
from ssm.sample import generate, main
from ssm.tasks.char_lm import char_vocab
from ssm.train import train
from ssm.train.loop import evaluate, load_data
from ssm.train.objective import per_target
from tests.test_train import ROOT, get_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished char_lm run: validation (and checkpoints) at steps 2 and 4, both kept."""
    workdir = str(tmp_path_factory.mktemp("load_run") / "run")
    config = get_config("char_lm", "smoke", model__mixer="diag", train__num_steps=4, train__eval_every=2,
                        ckpt__every=2, ckpt__keep_last=2)
    train(config, workdir)
    return workdir


@pytest.fixture
def run_copy(run_dir, tmp_path):
    """A copy of the run that a test may edit."""
    return shutil.copytree(run_dir, tmp_path / "run")


def _summary(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def _params(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def _evaluate(model, config, split):
    """The training loop's evaluation (ssm/train/loop.py: evaluate + aggregate) of `model` alone."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def eval_step(state, batch):
        nll, correct = per_target(nnx.merge(graphdef, state), batch)
        return {"nll": nll, "correct": correct, "weights": batch["weights"]}

    data = load_data(config["data"])  # data.seed, as in training
    return evaluate(eval_step, state, data[split], config["data"], config["train"]["eval_batch_size"], split)


def test_load_last_reproduces_the_final_test_metrics(run_dir):
    model, config = ssm.load_run(run_dir, step="last")
    assert isinstance(model, ssm.SequenceModel) and "environment" not in config
    assert config["data"]["task"] == "char_lm" and config["model"]["mixer"] == "diag"
    assert _evaluate(model, config, "test") == _summary(run_dir)["test"]  # the same numbers, bit for bit


def test_best_is_the_step_summary_names(run_copy):
    summary = _summary(run_copy)
    best, other = summary["best"]["step"], ({2, 4} - {summary["best"]["step"]}).pop()
    model, config = ssm.load_run(run_copy)  # step="best" by default
    assert _evaluate(model, config, "test") == summary["best"]["test"]
    for a, b in zip(_params(model), _params(ssm.load_run(run_copy, step=best)[0])):
        np.testing.assert_array_equal(a, b)
    # summary.json decides: name the other kept checkpoint and "best" follows it
    summary["best"]["step"] = other
    with open(os.path.join(run_copy, "summary.json"), "w") as f:
        json.dump(summary, f)
    chosen, wanted = _params(ssm.load_run(run_copy)[0]), _params(ssm.load_run(run_copy, step=other)[0])
    assert any(not np.array_equal(a, b) for a, b in zip(chosen, _params(ssm.load_run(run_copy, step=best)[0])))
    for a, b in zip(chosen, wanted):
        np.testing.assert_array_equal(a, b)


def test_best_without_summary_ranks_the_kept_checkpoints(run_copy):
    """An unfinished run has no summary.json: "best" is the kept step with the lowest validation loss."""
    os.remove(os.path.join(run_copy, "summary.json"))
    with open(os.path.join(run_copy, "metrics.jsonl")) as f:
        losses = {r["step"]: r["loss"] for r in map(json.loads, f) if r["split"] == "validation"}
    expected = min(sorted(losses, reverse=True), key=losses.get)
    for a, b in zip(_params(ssm.load_run(run_copy)[0]), _params(ssm.load_run(run_copy, step=expected)[0])):
        np.testing.assert_array_equal(a, b)


def _break(kind, workdir):
    if kind == "no config":
        os.remove(os.path.join(workdir, "config.json"))
    elif kind == "no checkpoints":
        shutil.rmtree(os.path.join(workdir, "checkpoints"))
    elif kind == "multi-seed":
        config = json.load(open(os.path.join(workdir, "config.json")))
        config["train"]["num_seeds"] = 3
        json.dump(config, open(os.path.join(workdir, "config.json"), "w"))
    elif kind == "other model":
        config = json.load(open(os.path.join(workdir, "config.json")))
        config["model"]["d_model"] = 32
        json.dump(config, open(os.path.join(workdir, "config.json"), "w"))
    elif kind == "no ranking":
        os.remove(os.path.join(workdir, "summary.json"))
        os.remove(os.path.join(workdir, "metrics.jsonl"))


BAD_LOADS = [  # (how the run is broken, workdir, step, the start of the one-line message)
    (None, "{tmp}/missing", "best", "workdir: no such run directory"),
    (None, "gs://bucket/run", "best", "workdir: remote paths are not supported"),
    (None, "{tmp}", "best", "workdir: .* holds no config.json"),
    ("no config", "{run}", "last", "workdir: .* holds no config.json"),
    ("no checkpoints", "{run}", "last", "workdir: .* has no checkpoints/ folder"),
    ("multi-seed", "{run}", "last", r"replica: .* holds a multi-seed run \(train.num_seeds = 3\); name one with "
                                    r"replica=0..2"),
    ("other model", "{run}", "last", "step: checkpoint 4 in .* does not restore into the run's model"),
    ("no ranking", "{run}", "best", "step: no kept checkpoint of .* has a validation 'loss'"),
    (None, "{run}", 3, r"step: no checkpoint of step 3 in .* \(kept: 2, 4\)"),
    (None, "{run}", "first", "step: expected 'best', 'last' or a step number"),
    (None, "{run}", 2.0, "step: expected 'best', 'last' or a step number"),
]


@pytest.mark.parametrize("broken,workdir,step,message", BAD_LOADS, ids=[str(c[0] or c[3][:20]) for c in BAD_LOADS])
def test_bad_load_is_one_line(run_copy, tmp_path, broken, workdir, step, message):
    if broken:
        _break(broken, run_copy)
    with pytest.raises(ConfigError, match="^" + message) as info:
        ssm.load_run(workdir.format(tmp=tmp_path, run=run_copy), step=step)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------- multi-seed runs
@pytest.fixture(scope="module")
def multi_run_dir(tmp_path_factory):
    """run_dir's config trained as 2 replicas in one run (train.num_seeds = 2: seeds 0 and 1)."""
    workdir = str(tmp_path_factory.mktemp("load_run_seeds") / "run")
    config = get_config("char_lm", "smoke", model__mixer="diag", train__num_steps=4, train__eval_every=2,
                        ckpt__every=2, ckpt__keep_last=2, train__num_seeds=2)
    train(config, workdir)
    return workdir


def test_replica_of_a_multi_seed_run_is_that_seed(run_dir, multi_run_dir):
    """Replica k loads as the single run with seed k (run_dir is seed 0 of the same config) would, and
    reproduces its own final test metrics of summary.json["seeds"][k]."""
    from tests.test_seeds import ATOL, RTOL, _assert_close

    single = _params(ssm.load_run(run_dir, step="last")[0])
    summary = _summary(multi_run_dir)
    for k in (0, 1):
        model, config = ssm.load_run(multi_run_dir, step="last", replica=k)
        assert config["seed"] == k and config["train"]["num_seeds"] == 1
        _assert_close(_evaluate(model, config, "test"), {n: v for n, v in summary["seeds"][k]["test"].items()})
        params = _params(model)
        close = all(np.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(params, single))
        assert close == (k == 0), f"replica {k}"


def test_best_replica_follows_its_own_summary_entry(multi_run_dir, tmp_path):
    run = shutil.copytree(multi_run_dir, tmp_path / "run")
    summary = _summary(run)
    for k in (0, 1):
        for other in (2, 4):  # summary.json["seeds"][k]["best"]["step"] decides, per replica
            summary["seeds"][k]["best"]["step"] = other
            summary["seeds"][1 - k]["best"]["step"] = 6 - other
            json.dump(summary, open(os.path.join(run, "summary.json"), "w"))
            for a, b in zip(_params(ssm.load_run(run, replica=k)[0]),
                            _params(ssm.load_run(run, step=other, replica=k)[0])):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("replica", [2, -1, 0.0, True, "0"])
def test_bad_replica_is_one_line(multi_run_dir, replica):
    with pytest.raises(ConfigError, match=r"^replica: expected an integer in 0..1 \(the run's train.num_seeds = 2\), "
                                          r"got ") as info:
        ssm.load_run(multi_run_dir, step="last", replica=replica)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- sampling
def test_sample_cli_continues_the_prompt_with_the_loaded_model(run_dir, capsys):
    """`python -m ssm.sample` (in-process main) == generate() on load_run's model: prefill + step decode."""
    vocab = char_vocab(get_config("char_lm")["data"]["path"])
    prompt = "the "
    assert main(["--workdir", run_dir, "--prompt", prompt, "--length", "12", "--temperature", "0.8",
                 "--top_k", "5", "--seed", "3", "--step", "last"]) == 0
    out = capsys.readouterr().out
    model, _ = ssm.load_run(run_dir, step="last")
    ids = np.array([[vocab.index(c) + 1 for c in prompt]], np.int32)
    tokens = generate(model, ids, 12, temperature=0.8, top_k=5, seed=3, disallow=(0,))
    assert out == "".join(vocab[i - 1] for i in np.asarray(tokens[0])) + "\n"
    assert out.startswith(prompt) and len(out) == len(prompt) + 12 + 1


@pytest.mark.parametrize("args,message", [
    (["--prompt", "the ", "--step", "7"], "step: no checkpoint of step 7"),
    (["--prompt", "th\u00e9"], "--prompt: expected a non-empty text over the run's"),
    (["--prompt", "the", "--length", "0"], "length: expected a positive integer"),
    (["--prompt", "the", "--temperature", "-1"], "temperature: expected a finite number >= 0"),
    (["--prompt", "the", "--workdir", "gs://b/run"], "workdir: remote paths are not supported"),
    (["--prompt", "the", "--lenght", "3"], "unrecognized arguments: --lenght 3"),
])
def test_sample_cli_bad_input_is_one_line_exit_2(run_dir, capsys, args, message):
    argv = ["--workdir", run_dir, *args]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_sample_cli_refuses_a_run_that_is_not_a_character_lm(run_copy, capsys):
    config = json.load(open(os.path.join(run_copy, "config.json")))
    config["data"]["task"] = "parity"
    json.dump(config, open(os.path.join(run_copy, "config.json"), "w"))
    assert main(["--workdir", str(run_copy), "--prompt", "the"]) == 2
    assert "holds a 'parity' run; sampling text needs a char_lm run" in capsys.readouterr().err


@pytest.mark.slow
def test_sample_module_runs_as_a_command(run_dir):
    out = subprocess.run([sys.executable, "-m", "ssm.sample", "--workdir", run_dir, "--prompt", "the ",
                          "--length", "20", "--temperature", "0"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("the ") and len(out.stdout) == len("the ") + 20 + 1
