"""The layer contract (ssm/layers/mixer.py) for every registered mixer: the protocol, padding skipped,
packed rows == segments alone (model, gradients included), parameter groups through the Linen bridge.
Parametrized over the registry, so a new mixer is covered without editing this file."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.nnx import bridge

from ssm.layers.mixer import Mixer
from ssm.layers.params import GROUP_KEY
from ssm.model import SequenceModel
from ssm.registry import mixer_class
from tests.utils import small_options

D = 8


def test_linen_bridge_puts_every_parameter_in_params_and_sgd_moves_the_marked_ones(rng, mixer):
    name = mixer
    """Optimizer groups are Param metadata, not Param subclasses: through `nnx.bridge.to_linen` every
    trainable leaf is in Linen's `params` (a subclass would land in its own collection, which a Linen loop
    never trains), the group survives as metadata, and one SGD step on `params` changes Λ / A, B, Δ."""
    cls = mixer_class(name)
    opts = small_options(name)
    module = bridge.to_linen(cls, D, **opts)
    x = jnp.asarray(rng.standard_normal((2, 7, D)), jnp.float32)
    variables = jax.jit(module.init)(jax.random.key(0), x)
    assert set(variables) == {"params"}
    nnx_params = nnx.state(cls(D, rngs=nnx.Rngs(0), **opts), nnx.Param)
    assert len(jax.tree.leaves(variables["params"])) == len(jax.tree.leaves(nnx_params))

    params = variables["params"]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(module.apply({"params": p}, x)))))(params)
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


def build(name, **extra):
    cls = mixer_class(name)
    return cls(D, rngs=nnx.Rngs(0), **small_options(name, **extra))


def test_follows_the_protocol(rng, mixer):
    name = mixer
    m = build(name)
    assert isinstance(m, Mixer) and isinstance(m.causal, bool)
    params = inspect.signature(type(m).__call__).parameters
    for arg in ("initial_state", "mask", "reset", "return_state"):
        assert params[arg].kind == inspect.Parameter.KEYWORD_ONLY and params[arg].default in (None, False), arg
    x = jnp.asarray(rng.standard_normal((2, 5, D)), jnp.float32)
    with pytest.raises(ValueError, match="mask: expected shape"):
        m(x, mask=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="reset: expected shape"):
        m(x, reset=jnp.ones((1, 5), bool))
    with pytest.raises(ValueError, match="x: expected shape"):
        m(jnp.zeros((2, 5, D + 1)))


def test_padding_is_skipped(rng, mixer):
    name = mixer
    """Leading, trailing and a gap of padding with garbage inputs, for each row of a batch: real-token
    outputs and the final state equal those of the rows with the padding removed; padded outputs are 0."""
    m = build(name)
    T = 16
    real = np.ones((2, T), bool)
    real[0, :3] = real[0, 13:] = real[0, 7:9] = False  # 8 real tokens
    real[1, 8:] = False  # 8 real tokens
    x = rng.standard_normal((2, T, D)).astype(np.float32)
    noisy = np.where(real[..., None], x, 1e3 * rng.standard_normal(x.shape)).astype(np.float32)
    compact = jnp.asarray(x[real].reshape(2, 8, D))
    mask = jnp.asarray(real)
    if m.causal:
        f = nnx.jit(lambda m, x, mask: m(x, mask=mask, return_state=True))
        (y, state), (y_ref, state_ref) = f(m, jnp.asarray(noisy), mask), f(m, compact, None)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), state, state_ref)
    else:
        f = nnx.jit(lambda m, x, mask: m(x, mask=mask))
        y, y_ref = f(m, jnp.asarray(noisy), mask), f(m, compact, None)
    np.testing.assert_allclose(np.asarray(y)[real].reshape(2, 8, D), y_ref, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(y)[~real] == 0)


SEGMENTS = (6, 9, 5)  # one packed row of T = 20


def test_packed_row_equals_each_segment_alone_in_the_model(rng, mixer):
    name = mixer
    """SequenceModel on one packed row (reset at each segment start) == on each segment alone: logits and
    the gradient of a token-weighted loss with respect to every parameter (float32). The segments alone run
    as one batch, right-padded with a mask (padding is skipped: test_padding_is_skipped). Absolute tolerances
    are 1e-5 times the largest logit and 5e-5 times the largest gradient entry (float32 rounding: two gated
    layers' gradients differ by up to 1.1e-5 of the largest entry in float32 and by 3e-15 in float64)."""
    cls = mixer_class(name)
    opts = small_options(name)
    if not cls(D, rngs=nnx.Rngs(0), **opts).causal:
        pytest.skip("bidirectional")
    model = SequenceModel(lambda d, rngs: cls(d, rngs=rngs, **opts), d_model=D, num_layers=2, num_outputs=5,
                          vocab_size=7, rngs=nnx.Rngs(1))
    T, L, n = sum(SEGMENTS), max(SEGMENTS), len(SEGMENTS)
    starts = np.cumsum((0,) + SEGMENTS[:-1])
    tokens = rng.integers(0, 7, (1, T))
    w = rng.standard_normal((1, T, 5)).astype(np.float32)
    reset = np.zeros((1, T), bool)
    reset[0, starts] = True
    seg_tokens, seg_w, seg_mask = np.zeros((n, L), int), np.zeros((n, L, 5), np.float32), np.zeros((n, L), bool)
    for i, (s, length) in enumerate(zip(starts, SEGMENTS)):
        seg_tokens[i, :length], seg_w[i, :length], seg_mask[i, :length] = tokens[0, s:s + length], w[0, s:s + length], True

    @nnx.jit
    def loss_and_grads(model, tokens, w, mask, reset):
        def loss(model):
            logits = model(tokens, mask=mask, reset=reset)
            return jnp.sum(w * logits), logits

        return nnx.grad(loss, has_aux=True)(model)

    g_packed, packed = loss_and_grads(model, jnp.asarray(tokens), jnp.asarray(w), None, jnp.asarray(reset))
    g_alone, alone = loss_and_grads(model, jnp.asarray(seg_tokens), jnp.asarray(seg_w), jnp.asarray(seg_mask), None)
    scale = float(np.abs(alone).max())  # float32: errors relative to the scale of the logits
    for i, (s, length) in enumerate(zip(starts, SEGMENTS)):
        np.testing.assert_allclose(packed[0, s:s + length], alone[i, :length], rtol=1e-5, atol=1e-5 * scale)
    for (path, a), (_, b) in zip(*(nnx.to_flat_state(nnx.state(g, nnx.Param)) for g in (g_packed, g_alone))):
        np.testing.assert_allclose(a[...], b[...], rtol=1e-5, atol=5e-5 * float(np.abs(b[...]).max()) + 1e-7,
                                   err_msg=str(path))
