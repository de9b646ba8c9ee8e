"""Shared pytest fixtures. Reference values are always float64 NumPy; JAX runs in float32 unless a test
asks for the `x64` fixture (needed for `jax.test_util.check_grads` and tight float64 comparisons)."""

import jax
import numpy as np
import pytest

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
