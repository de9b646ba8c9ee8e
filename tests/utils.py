"""Small helpers shared by tests: tree comparisons with stated tolerances."""

import jax
import numpy as np


def assert_trees_close(actual, expected, *, rtol, atol, err_msg=""):
    """Every leaf of `actual` equals the matching leaf of `expected` within (rtol, atol)."""
    la, ta = jax.tree.flatten(actual)
    le, te = jax.tree.flatten(expected)
    assert ta == te, f"tree structures differ: {ta} vs {te}"
    for i, (x, y) in enumerate(zip(la, le)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                   err_msg=f"{err_msg} (leaf {i})")


# Small sizes for model-level tests of any registered mixer: each applies where the mixer has the option.
SMALL_OPTIONS = {"state_size": 8, "num_heads": 2}


def small_options(mixer: str, **extra) -> dict:
    """Constructor options of `mixer` for a fast test: SMALL_OPTIONS and `extra`, restricted to the options
    the mixer's constructor has (so a newly registered mixer needs no entry here)."""
    from ssm.registry import mixer_options

    return {k: v for k, v in {**SMALL_OPTIONS, **extra}.items() if k in mixer_options(mixer)}


def every_mixer(*default: str) -> list:
    """pytest params over every registered mixer for a compile-heavy invariant: the mixers in `default` run in
    the default suite, the others (and any newly registered one) under `-m slow`."""
    import pytest

    from ssm.registry import MIXERS

    return [pytest.param(m, marks=() if m in default else pytest.mark.slow) for m in MIXERS]
