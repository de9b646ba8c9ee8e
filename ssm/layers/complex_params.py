"""Complex parameters stored as real (..., 2) arrays (optimizers and checkpoints see real leaves only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def as_complex(p):
    """(..., 2) real parameter -> (...) complex."""
    return jax.lax.complex(p[..., 0], p[..., 1])


def as_real_pair(z, dtype):
    """(...) complex -> (..., 2) real of `dtype`."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(dtype)
