"""One-line input validation shared by the library: errors name the argument and what was expected.

Checks run at trace time (on static shapes/dtypes), so they cost nothing inside `jit`.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import jax.numpy as jnp


class ConfigError(ValueError):
    """Bad input (an argument, a config field, a data file): a one-line message naming the culprit.

    A `ValueError`, so callers that catch ValueError keep working; train.py prints it as one line (no
    traceback) and exits with status 2, while any other exception is a bug and keeps its traceback."""


def fail(message: str) -> None:
    """Raise the library's standard error (a ConfigError, i.e. a ValueError, with a one-line message)."""
    raise ConfigError(message)


def check_ndim(name: str, x, ndim: int | Iterable[int], layout: str) -> None:
    """`x.ndim` must be `ndim` (or one of them); `layout` is the expected layout, e.g. '(B, T, H)'."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if jnp.ndim(x) not in allowed:
        fail(f"{name}: expected a {'/'.join(map(str, allowed))}-D array {layout}, got shape {tuple(jnp.shape(x))}")


def check_shape(name: str, x, shape: Sequence[int | None], layout: str) -> None:
    """`x.shape` must equal `shape` (None matches any size); `layout` names the axes, e.g. '(B, T, H)'."""
    got = tuple(jnp.shape(x))
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        want = tuple("?" if s is None else s for s in shape)
        fail(f"{name}: expected shape {layout} = {want}, got {got}")


def check_floating(name: str, x, allow_complex: bool = True) -> None:
    """`x` must be a floating (or, if allowed, complex) array."""
    dt = jnp.result_type(x)
    ok = jnp.issubdtype(dt, jnp.floating) or (allow_complex and jnp.issubdtype(dt, jnp.complexfloating))
    if not ok:
        kinds = "a floating or complex" if allow_complex else "a floating"
        fail(f"{name}: expected {kinds} dtype, got {dt}")


def check_choice(name: str, value, choices: Iterable) -> None:
    """`value` must be one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        fail(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def check_positive_int(name: str, value) -> None:
    """`value` must be an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(f"{name}: expected a positive integer, got {value!r}")


def check_positive_float(name: str, value) -> None:
    """`value` must be a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        fail(f"{name}: expected a finite number > 0, got {value!r}")
