"""The training objective, shared by the train / eval steps (ssm/train/step.py) and the non-finite locator
(ssm/train/guard.py).

Batches are dicts of arrays: inputs (B, T), lengths (B,) (real tokens are t < lengths), targets / weights
(B, T) per token or (B,) per sequence, and for packed rows (data.pack) reset (B, T) bool: a new example
starts at t. The loss is the weighted mean cross-entropy over targets with nonzero weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def token_mask(batch) -> jax.Array:
    """(B, T) bool: True at real (non-padding) tokens."""
    T = batch["inputs"].shape[1]
    return jnp.arange(T)[None, :] < batch["lengths"][:, None]


def forward(model, batch, dropout_key=None, train: bool = False) -> jax.Array:
    """The model's logits on `batch` ((B, T, C) per token or (B, C) pooled), float32. `train=True` (the train
    step): batchnorm uses and updates the batch's statistics; otherwise its running averages."""
    kwargs = {"reset": batch["reset"]} if "reset" in batch else {}
    return model(batch["inputs"], mask=token_mask(batch), dropout_key=dropout_key, train=train,
                 **kwargs).astype(jnp.float32)


def per_target(model, batch, dropout_key=None, train: bool = False):
    """Per-target negative log-likelihood and correctness, shaped like targets ((B, T) or (B,))."""
    logits = forward(model, batch, dropout_key, train)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    return nll, correct


def weighted_mean(x, w):
    return (x * w).sum() / jnp.maximum(w.sum(), 1.0)


def loss_and_accuracy(model, batch, dropout_key=None, train: bool = False):
    """(loss, accuracy): weighted means over the batch's targets."""
    nll, correct = per_target(model, batch, dropout_key, train)
    return weighted_mean(nll, batch["weights"]), weighted_mean(correct, batch["weights"])


def loss_and_grads(model, batch):
    """(loss, grads) of the train objective without dropout (the non-finite locator's re-run)."""
    return nnx.value_and_grad(lambda model: loss_and_accuracy(model, batch, train=True)[0])(model)
