"""Parameter markers that the training script turns into optax parameter groups by path/type."""

from __future__ import annotations

from flax import nnx


class SSMParam(nnx.Param):
    """SSM dynamics parameters (Λ / A, B, Δ): trained with their own (small) learning rate, no weight decay.

    The papers (S4D, S5) train these with lr ≈ 1e-3 and no weight decay; marking them with a type, not a
    leaf name, keeps norms and biases from being mis-grouped (S5's leaf-name matching did exactly that).
    """


class NoDecayParam(nnx.Param):
    """Parameters trained with the main learning rate but without weight decay (norm scales, biases)."""
