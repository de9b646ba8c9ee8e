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
