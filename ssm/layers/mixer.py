"""The layer contract: the interface every sequence mixer implements, and the one place masks are handled.

A mixer maps x (B, T, D) -> y (B, T, D) (D = d_model) and runs three ways that agree numerically:

* parallel:  `y = mixer(x)`, or `y, state = mixer(x, initial_state=state, return_state=True)` to stream a
  long sequence in pieces with the carried state (`state` is the `init_state` pytree);
* step:      `state = mixer.init_state(batch_size, dtype=None)`, then `y_t, state = mixer.step(x_t, state)`
  with x_t, y_t (B, D): decoding one token at a time. `step` uses the same input and output code as the
  parallel call (projections, gates, norms); only the recurrence is one update instead of a scan.

    __call__(x, *, initial_state=None, mask=None, reset=None, return_state=False)
    init_state(batch_size, dtype=None) -> state pytree (zeros)
    step(x_t, state) -> (y_t, state)
    causal: bool

Optional per-token arguments, both (B, T) bool:

* mask: True for real tokens. A padded position is skipped: its input is ignored, the carried state (and
  any short-convolution window) passes through it unchanged and its output is 0. So at its real tokens a
  padded row gives the outputs, and at its end the state, of the row with the padding removed, wherever
  the padding sits (leading, trailing or gaps); flash-linear-attention's layers get the same by unpadding.
  A `reset` flag on a padded position moves to the next real token (it is dropped if there is none).
* reset: True where a new segment starts (packed sequences): the carried state, and any short-convolution
  window, is cleared before step t, so each segment gives what it gives alone. A bidirectional mixer also
  stops its backward pass at the end of each segment.

Causal mixers set `causal = True`. A bidirectional mixer sets `causal = False`, has no `step`, refuses
`initial_state` / `return_state`, and still accepts `mask` and `reset`.

How masks are handled, in one place: `begin_call` validates the call and moves each row's real tokens to
its front, in order (a stable sort), so that inside a mixer all padding is trailing; `end_call` moves the
outputs back and zeroes the padded ones. A mixer then only has to keep trailing padding out of the state
it returns: `last_real` picks the state after the last real token from the per-step states, or, for a
recurrence that only returns its final state, `where_real` makes a padded step a no-op (β = 0, decay 1).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from ssm.checks import check_ndim, check_shape, fail


@runtime_checkable
class Mixer(Protocol):
    causal: bool

    def __call__(self, x: jax.Array, *, initial_state: Any = None, mask: jax.Array | None = None,
                 reset: jax.Array | None = None, return_state: bool = False) -> Any: ...

    def init_state(self, batch_size: int, dtype: Any = None) -> Any: ...

    def step(self, x_t: jax.Array, state: Any) -> tuple[jax.Array, Any]: ...


class Padding(NamedTuple):
    """How `begin_call` rearranged a masked call: the caller's mask and, per original position, its index in
    the rearranged row (both (B, T))."""
    mask: jax.Array
    position: jax.Array


def _take(x, idx):
    """x (B, T, ...) gathered along T at idx (B, T') -> (B, T', ...)."""
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def begin_call(layer, x, mask, reset, initial_state=None, return_state=False, layout="(B, T, d_model)"):
    """Validate a parallel call of `layer` (it has `d_model` and `causal`) and move padding to the end.

    x (B, T, D); mask, reset (B, T) or None. Returns (x, mask, reset, padding): mask / reset as bool arrays
    (or None); with a mask, each row's real tokens first (in order), the padding after them zeroed, the
    mask a prefix mask, resets on padding moved to the next real token, and `padding` (a `Padding`) for
    `end_call`; without a mask x, reset unchanged and padding None.
    """
    check_ndim("x", x, 3, layout)
    check_shape("x", x, (None, None, layer.d_model), layout)
    if not layer.causal and (initial_state is not None or return_state):
        fail(f"initial_state/return_state: a bidirectional {type(layer).__name__} has no carried state")
    out = []
    for name, m in (("mask", mask), ("reset", reset)):
        if m is not None:
            check_shape(name, m, x.shape[:2], "(B, T)")
            m = jnp.asarray(m).astype(bool)
        out.append(m)
    mask, reset = out
    if mask is None:
        return x, None, reset, None
    B, T = mask.shape
    order = jnp.argsort(~mask, axis=1, stable=True)  # real positions first, each group in time order
    x = _take(x * mask[..., None].astype(x.dtype), order)
    packed = jnp.arange(T)[None] < jnp.sum(mask, axis=1, keepdims=True)
    if reset is not None:  # a real token starts a segment if a reset lies between it and the previous one
        seg = _take(jnp.cumsum(reset, axis=1), order)
        reset = packed & (seg != jnp.pad(seg[:, :-1], ((0, 0), (1, 0))))
    return x, packed, reset, Padding(mask, jnp.argsort(order, axis=1))


def end_call(y, padding):
    """Undo `begin_call`'s rearrangement of the outputs y (B, T, ...) and zero the padded ones."""
    if padding is None:
        return y
    y = _take(y, padding.position)
    return y * padding.mask.reshape(padding.mask.shape + (1,) * (y.ndim - 2)).astype(y.dtype)


def last_real(states, mask, initial_state=None):
    """The state after the last real token: states (B, T, ...) per step, mask (B, T) a prefix mask (as
    `begin_call` returns it) or None. Rows with no real token give `initial_state` (default zeros)."""
    if mask is None:
        return states[:, -1]
    count = jnp.sum(mask, axis=1)
    last = _take(states, jnp.maximum(count - 1, 0)[:, None])[:, 0]
    before = jnp.zeros_like(last) if initial_state is None else jnp.asarray(initial_state, last.dtype)
    return jnp.where((count > 0).reshape((-1,) + (1,) * (last.ndim - 1)), last, before)


def where_real(mask, value, padding_value):
    """`value` (B, T, ...) at real tokens and `padding_value` at padded ones (`value` if mask is None).

    Makes a padded step a no-op of a recurrence that only returns its final state (β 0, decay 1, ...)."""
    if mask is None:
        return value
    value = jnp.asarray(value)
    m = mask.reshape(mask.shape + (1,) * (value.ndim - 2))
    return jnp.where(m, value, jnp.asarray(padding_value, value.dtype))


def segment_ends(reset):
    """(B, T) bool: t is the last step of a segment that is followed by another (reset[t + 1]); None if
    `reset` is None. A backward (anti-causal) scan is reset here so that it never crosses into the
    previous segment."""
    if reset is None:
        return None
    return jnp.pad(reset[:, 1:], ((0, 0), (0, 1)), constant_values=False)
