"""The noise helpers of experiments/ptd_noise.py: the largest eigenfrequency of an S5 layer and the Fourier
noise, against closed forms (NumPy eigenvalues of HiPPO-LegS's normal part, the ZOH angle, cos)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

import ssm

_spec = importlib.util.spec_from_file_location(
    "ptd_noise", Path(__file__).resolve().parents[1] / "experiments" / "ptd_noise.py")
ptd_noise = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ptd_noise)


@pytest.mark.parametrize("N", [8, 32])
def test_largest_eigenfrequency_of_normal_part_init(N):
    layer = ssm.S5(4, state_size=N, init="s5", rngs=nnx.Rngs(0))
    p, im, theta = ptd_noise.largest_eigenfrequency(layer)
    expected = np.abs(np.linalg.eigvals(ssm.hippo_legs_normal(N)).imag).max()  # float64, independent
    np.testing.assert_allclose(abs(im), expected, rtol=1e-5)
    assert 0.5 < abs(im) / (N ** 2 / np.pi) < 1.0  # the ≈ N²/π scale (the ratio → 1 slowly as N grows)
    # θ is the angle per step of the ZOH-discretized eigenvalue Λ̄_p = exp(Λ_p Δ_p), up to 2π
    Lambda_bar = np.asarray(layer.discrete()[0], np.complex128)[p]
    np.testing.assert_allclose(np.angle(np.exp(1j * theta)), np.angle(Lambda_bar), atol=1e-4)
    # ... which is where that state's frequency response 1 / |1 − Λ̄_p e^{−iω}| peaks
    omega = np.linspace(-np.pi, np.pi, 200_001)
    peak = omega[np.argmax(np.abs(1 / (1 - Lambda_bar * np.exp(-1j * omega))))]
    np.testing.assert_allclose(peak, np.angle(np.exp(1j * theta)), atol=1e-4)


def test_largest_eigenfrequency_picks_the_largest_imaginary_part():
    layer = ssm.S5(4, state_size=8, init="s5-ptd", rngs=nnx.Rngs(1))
    layer.Lambda_im[...] = np.array([1.0, -7.0, 3.0, 5.0], np.float32)
    layer.log_dt[...] = np.log(np.array([0.1, 0.02, 0.3, 0.5], np.float32))
    p, im, theta = ptd_noise.largest_eigenfrequency(layer)
    assert (p, im) == (1, -7.0)
    np.testing.assert_allclose(theta, -7.0 * 0.02, rtol=1e-6)


def test_fourier_noise_closed_form():
    direction = np.array([1.0, -0.5, 0.25])
    out = ptd_noise.fourier_noise(14.25, 50, 0.3, direction)
    t = np.arange(50)
    assert out.shape == (50, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3 * np.cos(14.25 * t)[:, None] * direction[None], atol=1e-6)
    assert not ptd_noise.fourier_noise(2.0, 10, 0.0, direction).any()


def test_model_init_field_reaches_the_layer():
    from ssm.registry import mixer_factory
    from ssm.train.build import build_model
    from tests.test_train import get_config

    assert get_config("char_lm", "ptd_noise")["model"]["s5"]["init"] == "s5-ptd"  # the layer's default
    for init in ("s5", "s5-ptd"):  # what experiments/ptd_noise.py sets with --config.model.s5.init
        config = get_config("char_lm", "ptd_noise", model__s5__init=init)
        assert all(b.mixer.init == init for b in nnx.eval_shape(lambda: build_model(config)).blocks)
    s4d = mixer_factory("s4d", state_size=8, init="lin")(4, nnx.Rngs(0))
    np.testing.assert_allclose(np.asarray(s4d.A_imag[...])[0], np.pi * np.arange(4), rtol=1e-6)


@pytest.mark.parametrize("init", ["legs", "ptd"])
def test_s4d_largest_eigenfrequency_is_per_channel(init):
    N = 16
    layer = ssm.S4D(3, state_size=N, init=init, rngs=nnx.Rngs(0))
    n, im, theta = ptd_noise.largest_eigenfrequency(layer)
    assert n.shape == im.shape == theta.shape == (3,)
    if init == "legs":  # every channel starts from the Im > 0 half of the normal part's spectrum (float64 eig)
        expected = np.abs(np.linalg.eigvals(ssm.hippo_legs_normal(N)).imag).max()
        np.testing.assert_allclose(np.abs(im), expected, rtol=1e-5)
    dt = np.exp(np.asarray(layer.log_dt[...], np.float64))
    np.testing.assert_allclose(theta, im * dt, rtol=1e-6)
    A_bar = np.asarray(layer.discrete()[0], np.complex128)[np.arange(3), n]  # ZOH eigenvalue of that mode
    np.testing.assert_allclose(np.angle(np.exp(1j * theta)), np.angle(A_bar), atol=1e-4)


def test_fourier_noise_per_channel_frequencies():
    theta = np.array([0.3, 2.0, 14.25])
    out = ptd_noise.fourier_noise(theta, 40, 0.5, np.ones(3))
    t = np.arange(40)[:, None]
    np.testing.assert_allclose(out, 0.5 * np.cos(theta[None] * t), atol=1e-6)


@pytest.mark.parametrize("mixer,init", [("s4d", "ptd"), ("s4d", "legs"), ("s5", "s5-ptd")])
def test_run_flags_select_the_mixer_and_init(mixer, init):
    """The flags `run` passes to train.py, applied to the config as train.py would, build that layer."""
    from configs.char_lm import get_config
    from ssm.train.build import build_model

    args = ptd_noise.train_args("ptd_noise", 3, mixer, init, num_seeds=2)
    config_file, preset = args[0].split("=", 1)[1].split(":")
    assert config_file == "configs/char_lm.py"
    c = get_config(preset)
    for flag in args[1:]:
        key, value = flag[len("--config."):].split("=", 1)
        c.update_from_flattened_dict({key: {"True": True, "False": False}.get(value, int(value) if value.isdigit()
                                                                             else value)})
    mixer_layer = nnx.eval_shape(lambda: build_model(c.to_dict())).blocks[0].mixer
    assert type(mixer_layer).__name__ == {"s4d": "S4D", "s5": "S5"}[mixer] and mixer_layer.init == init and c.seed == 3
    assert c.train.num_seeds == 2


@pytest.mark.slow
def test_multi_seed_run_and_report_evaluate_every_replica(tmp_path, monkeypatch):
    """`run` trains one 2-seed run per init (char_lm smoke); `report` noise-evaluates each replica: at ε = 0 its
    accuracy is the training loop's final test accuracy of that replica (summary.json["seeds"][k])."""
    import json

    monkeypatch.setattr(ptd_noise, "RUNS", tmp_path / "ptd_noise")
    monkeypatch.setattr(ptd_noise, "LOCK", None)  # the caller holds the CPU lock already
    monkeypatch.setenv("SSM_DATA_DIR", str(tmp_path / "data"))
    ptd_noise.run("smoke", 4, 2, "s5")
    ptd_noise.report([0.0, 1.0], tmp_path / "fig.png")
    results = json.load(open(tmp_path / "ptd_noise" / "noise_results.json"))
    assert sorted(results) == ["s5-ptd-s4", "s5-ptd-s5", "s5-s4", "s5-s5"]
    for name, r in results.items():
        summary = json.load(open(tmp_path / "ptd_noise" / r["run"] / "summary.json"))
        k = r["seed"] - 4
        assert summary["seeds"][k]["seed"] == r["seed"]
        np.testing.assert_allclose(r["accuracy"][0], summary["seeds"][k]["test"]["accuracy"], rtol=1e-6, err_msg=name)
    assert (tmp_path / "fig.png").exists()
