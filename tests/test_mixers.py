"""The layer contract (ssm/layers/mixer.py) for every registered mixer: parameter groups through the Linen
bridge. Parametrized over the registry, so a new mixer is covered without editing this file."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.nnx import bridge

from ssm.layers.params import GROUP_KEY
from ssm.registry import MIXERS, mixer_class

D = 8
SMALL = {"state_size": 8, "num_heads": 2}  # small sizes for the options a mixer has (others: defaults)


def small_options(cls, **extra):
    """The entries of SMALL (and `extra`) that `cls`'s constructor accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in {**SMALL, **extra}.items() if k in accepted}


@pytest.mark.parametrize("name", list(MIXERS))
def test_linen_bridge_puts_every_parameter_in_params_and_sgd_moves_the_marked_ones(rng, name):
    """Optimizer groups are Param metadata, not Param subclasses: through `nnx.bridge.to_linen` every
    trainable leaf is in Linen's `params` (a subclass would land in its own collection, which a Linen loop
    never trains), the group survives as metadata, and one SGD step on `params` changes Λ / A, B, Δ."""
    cls = mixer_class(name)
    opts = small_options(cls)
    module = bridge.to_linen(cls, D, **opts)
    x = jnp.asarray(rng.standard_normal((2, 7, D)), jnp.float32)
    variables = module.init(jax.random.key(0), x)
    assert set(variables) == {"params"}
    nnx_params = nnx.state(cls(D, rngs=nnx.Rngs(0), **opts), nnx.Param)
    assert len(jax.tree.leaves(variables["params"])) == len(jax.tree.leaves(nnx_params))

    params = variables["params"]
    grads = jax.grad(lambda p: jnp.sum(jnp.sin(module.apply({"params": p}, x))))(params)
    tx = optax.sgd(0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)

    is_meta = lambda v: isinstance(v, bridge.NNXMeta)  # noqa: E731
    flat_old = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_meta)[0]
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new, is_leaf=is_meta)[0])
    marked = {path: v for path, v in flat_old if is_meta(v) and GROUP_KEY in v.metadata}
    assert marked, f"{name} marks no parameter group"
    if name in ("s4d", "s5", "diag"):
        assert any(v.metadata[GROUP_KEY] == "ssm" for v in marked.values())
    for path, old in marked.items():
        assert not np.allclose(np.asarray(flat_new[path].value), np.asarray(old.value)), path
