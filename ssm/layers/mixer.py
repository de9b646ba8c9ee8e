"""The interface every sequence mixer (S4D, S5, DeltaNet, DeltaProduct) implements.

A mixer maps (B, T, D) -> (B, T, D) and can run three ways that agree numerically:

* parallel:  `y = mixer(x)` or `y, state = mixer(x, initial_state=state, return_state=True)`
  (streaming a long sequence chunk by chunk with the carried state);
* step:      `state = mixer.init_state(batch_size)`, then `y_t, state = mixer.step(x_t, state)` with
  x_t, y_t of shape (B, D) (decoding / streaming one token at a time);
* masked:    `mixer(x, mask=mask)` with mask (B, T) bool, True for real tokens. Padding never influences
  real tokens (bidirectional layers reset their reverse scan at the padding boundary). Causal mixers
  may additionally accept `reset` (B, T) bool: start a new segment at t (packed sequences).

Causal mixers set `causal = True`; a bidirectional mixer sets it False and has no `step`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class Mixer(Protocol):
    causal: bool

    def __call__(self, x: jax.Array, *, initial_state: Any = None, mask: jax.Array | None = None,
                 return_state: bool = False) -> Any: ...

    def init_state(self, batch_size: int, dtype: Any = None) -> Any: ...

    def step(self, x_t: jax.Array, state: Any) -> tuple[jax.Array, Any]: ...
