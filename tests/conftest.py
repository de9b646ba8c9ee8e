"""Shared pytest fixtures. Reference values are always float64 NumPy; JAX runs in float32 unless a test
asks for the `x64` fixture (needed for `jax.test_util.check_grads` and tight float64 comparisons)."""

import os

# No machine of this project reaches a dataset hub: `datasets` fails fast instead of waiting for timeouts
# (set before anything imports `datasets`, which reads them once).
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ssm.registry import MIXERS


@pytest.fixture
def x64():
    """Run the test body with 64-bit JAX types enabled (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh per test."""
    return np.random.default_rng(0)


@pytest.fixture(params=list(MIXERS))
def mixer(request):
    """Every registered mixer name (ssm.registry.MIXERS): model-level invariants cover a new mixer without
    a list to edit. Build it small with `tests.utils.small_options(mixer)`."""
    return request.param


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """`datasets`' own cache (its Arrow copies of data files) in a temporary folder instead of ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
