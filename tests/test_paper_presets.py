"""The `paper` presets (configs/parity.py, mod_arithmetic.py, word_problem.py) load, validate and build (shapes
only), and carry the authors' values: layer sizes against parameter counts worked out from the authors' layer
definitions, learning rates against their schedules written out from the formulas (torch's CosineAnnealingLR;
LinearWarmupCosineAnnealing of automl/unlocking_state_tracking), and the protocol numbers of their configs."""

import math

import numpy as np
import pytest
from flax import nnx

from ssm.train.build import build
from ssm.train.validate import validate_config
from tests.test_train import get_config


def paper_model(task: str):
    config = get_config(task, "paper")
    validate_config(config)
    built = build(config, abstract=True)
    return config, built, built.merge()[0]


def n_params(module) -> int:
    return sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param)))


def kernel_shapes(mlp):
    return mlp.up.kernel.shape, mlp.down.kernel.shape


def test_word_problem_paper_preset_is_the_deltaproduct_run():
    """automl/DeltaProduct: README S3 commands + state_tracking/src/main.py (hidden 128, 8 heads × 32, n_h = 2,
    no short conv / output gate / forget gate, batch 2048, 100 epochs of 49 batches, wd 1e-6, cosine to 0)."""
    c, built, model = paper_model("word_problem")
    (block,) = model.blocks
    mixer = block.mixer
    assert (mixer.num_heads, mixer.head_dim, mixer.head_v_dim, mixer.num_householder) == (8, 32, 32, 2)
    assert mixer.convs is None and mixer.g_proj is None and not hasattr(mixer, "A_log")
    assert mixer.allow_neg_eigval and mixer.norm.eps == 1e-6
    # their layer: q 128→256, k and v 128→256 and β 128→8 per Householder step, RMSNorm(32), o 256→128
    D, HK, n = 128, 8 * 32, 2
    assert n_params(mixer) == D * HK + n * (D * HK + D * HK + D * 8) + 32 + HK * D
    assert kernel_shapes(block.mlp) == ((D, 2 * 512), (512, D))  # fla GatedMLP: gate and up 128→512, down 512→128
    d, o = c["data"], c["optim"]
    assert (d["train_length"], d["eval_length"], d["num_train"], d["num_validation"], d["batch_size"]) == (
        128, 512, 99_000, 1_000, 2048)
    assert (o["weight_decay"], o["clip_norm"], o["warmup_steps"]) == (1e-6, 0.0, 0)
    assert c["model"]["dtype"] == "bfloat16" and c["ckpt"]["best_metric"] == "sequence_accuracy"
    steps_per_epoch = math.ceil(99_000 / 2048)  # their DataLoader keeps the last partial batch
    assert c["train"]["num_steps"] == 100 * steps_per_epoch and c["train"]["eval_every"] == steps_per_epoch
    T = 100 * steps_per_epoch  # CosineAnnealingLR(T_max = epochs · len(loader)), eta_min = 0, stepped per batch
    for step in (0, 1, 1000, 2450, 4000, T):
        np.testing.assert_allclose(built.schedules["lr"](step), 1e-3 * (1 + math.cos(math.pi * step / T)) / 2,
                                   rtol=1e-5, atol=1e-9)


def grazzi_lr(step, *, warmup, total, lr=1e-3, decay_factor=1e-3):
    """Linear warmup from 0, then cosine from lr to decay_factor·lr at `total` (their lr_scheduler.py)."""
    if step < warmup:
        return lr * step / warmup
    low = decay_factor * lr
    return low + (lr - low) * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup))) / 2


@pytest.mark.parametrize("task,steps,warmup,wd,lengths,num_train", [
    ("parity", 20_000, 2_000, 0.0, (2, 39, 39, 255), 5_120_000),
    ("mod_arithmetic", 100_000, 10_000, 0.1, (1, 37, 37, 253), 2_560_000),
])
def test_formal_language_paper_presets_are_grazzi_et_al(task, steps, warmup, wd, lengths, num_train):
    """automl/unlocking_state_tracking xlstm/experiments/{parity,mod_arithmetic}_delta_net_2.yaml + main.py."""
    c, built, model = paper_model(task)
    assert len(model.blocks) == 2
    mixer = model.blocks[0].mixer
    assert type(mixer).__name__ == "DeltaNet" and mixer.allow_neg_eigval  # sigmoid_scale 2
    assert (mixer.num_heads, mixer.head_dim, mixer.norm.eps) == (4, 32, 1e-6)
    # their DeltaNet: q, k, v, o 128×128, β 128→4, three depthwise width-4 convolutions (no bias), RMSNorm(32)
    D = 128
    assert n_params(mixer) == 4 * D * D + D * 4 + 3 * D * 4 + 32
    assert kernel_shapes(model.blocks[0].mlp) == ((D, 2 * 512), (512, D))
    d, o, t = c["data"], c["optim"], c["train"]
    assert (d["train_min_len"], d["train_max_len"], d["eval_min_len"], d["eval_max_len"]) == lengths
    assert (d["batch_size"], d["num_validation"], d["num_test"], d["num_train"]) == (256, 8192, 8192, num_train)
    assert (o["weight_decay"], o["clip_norm"], o["lr"]) == (wd, 0.0, 1e-3)
    assert (t["num_steps"], t["eval_every"], c["model"]["dtype"]) == (steps, 200, "bfloat16")
    for step in (0, warmup // 2, warmup, (warmup + steps) // 2, steps - 1, steps):
        np.testing.assert_allclose(built.schedules["lr"](step), grazzi_lr(step, warmup=warmup, total=steps),
                                   rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("task,preset,changes", [
    ("parity", "seeds8", {("optim", "lr"): 3e-3, ("optim", "weight_decay"): 0.0, ("train", "num_steps"): 1000,
                          ("train", "eval_every"): 250, ("ckpt", "every"): 125}),
    ("mod_arithmetic", "seeds4", {("optim", "lr"): 3e-3}),
])
def test_multi_seed_presets_differ_from_default_only_as_documented(task, preset, changes):
    """The multi-seed recipes of docs/results.md: the default preset with the fields their docstrings name."""
    config, default = get_config(task, preset), get_config(task, "default")
    validate_config(config)
    flat = lambda c: {(s, k): v for s, sec in c.items() if isinstance(sec, dict) for k, v in sec.items()}
    got, base = flat(config), flat(default)
    assert {key: got[key] for key in got if got[key] != base[key]} == changes


def _override(config: dict, flag: str) -> None:
    """Apply one `--config.a.b=value` flag of an experiment setting to a plain config dict."""
    dotted, value = flag.removeprefix("--config.").split("=", 1)
    *path, field = dotted.split(".")
    node = config
    for key in path:
        node = node[key]
    assert field in node, f"{flag}: no such config field"  # as train.py's locked config refuses it
    node[field] = {"True": True, "False": False}.get(value, int(value) if value.isdigit() else value)


def test_word_problem_cpu_preset_and_its_experiment_settings():
    """The `cpu` preset (docs/results.md's word-problem table): one DeltaProduct layer d_model 64, 4 heads × 16,
    n_h = 2, no short conv; words of 8, test 32; 8 seeds solved by sequence accuracy. Every setting of
    experiments/word_problem.py (S3 n_h / eigenvalues, Z5 and Z2 with diag / S5) validates on it."""
    import sys
    from pathlib import Path

    c = get_config("word_problem", "cpu")
    validate_config(c)
    (block,) = build(c, abstract=True).merge()[0].blocks
    mixer = block.mixer
    assert (mixer.num_heads, mixer.head_dim, mixer.num_householder, mixer.convs) == (4, 16, 2, None)
    D, HK, H, n = 64, 64, 4, 2  # q, then k, v (D→HK) and β (D→H) per Householder step, RMSNorm(16), o
    assert n_params(mixer) == 8 * (D * HK + n * (2 * D * HK + D * H) + 16 + HK * D)  # 8 stacked replicas
    d, t = c["data"], c["train"]
    assert (d["train_length"], d["eval_length"], d["batch_size"]) == (8, 32, 128)
    assert (t["num_steps"], t["num_seeds"]) == (2000, 8)
    assert get_config("word_problem", "cpu_1000")["train"]["num_steps"] == 1000
    assert (t["solved_metric"], t["solved_threshold"], c["ckpt"]["best_metric"]) == ("sequence_accuracy", 0.9,
                                                                                    "sequence_accuracy")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    try:
        from word_problem import WORD_PROBLEM
    finally:
        sys.path.pop(0)
    for name, (_, flags) in WORD_PROBLEM.settings.items():
        config = get_config("word_problem", "cpu")
        for flag in flags:
            _override(config, flag)
        validate_config(config)
        assert config["model"]["mixer"] in ("deltaproduct", "diag", "s5"), name
