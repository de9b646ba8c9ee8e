"""The gated diagonal RNN mixer against a float64 NumPy loop, and the sequence model's modes agreeing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm.layers.diag import DiagonalRNN
from ssm.model import SequenceModel
from ssm.registry import mixer_factory
from tests.utils import assert_trees_close, small_options


def diag_reference(mixer, x, neg):
    """float64 loop of h_t = a_t h_{t-1} + W_b x_t, y_t = W_o (h_t ⊙ silu(W_g x_t))."""
    W = np.asarray(mixer.in_proj.kernel[...], np.float64)
    Wo = np.asarray(mixer.out_proj.kernel[...], np.float64)
    lam = np.asarray(mixer.decay_bias[...], np.float64)
    N = lam.shape[0]
    x = np.asarray(x, np.float64)
    y = np.zeros(x.shape[:2] + (Wo.shape[1],))
    for b in range(x.shape[0]):
        h = np.zeros(N)
        for t in range(x.shape[1]):
            z = x[b, t] @ W
            a = 1 / (1 + np.exp(-(z[:N] + lam)))
            a = 2 * a - 1 if neg else a
            h = a * h + z[N:2 * N]
            g = z[2 * N:] / (1 + np.exp(-z[2 * N:]))
            y[b, t] = (h * g) @ Wo
    return y


@pytest.mark.parametrize("neg", [False, True])
def test_diag_matches_numpy_loop(rng, neg):
    mixer = DiagonalRNN(6, state_size=5, allow_neg_eigval=neg, rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, 11, 6)).astype(np.float32)
    y = nnx.jit(lambda m, x: m(x))(mixer, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), diag_reference(mixer, x, neg), rtol=1e-4, atol=1e-5)


def test_diag_step_state_and_mask(rng):
    mixer = DiagonalRNN(4, state_size=3, rngs=nnx.Rngs(1))
    x = jnp.asarray(rng.standard_normal((2, 9, 4)), jnp.float32)
    run = nnx.jit(lambda m, x, **kw: m(x, **kw), static_argnames="return_state")
    y, h_last = run(mixer, x, return_state=True)
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))
    state = mixer.init_state(2)
    for t in range(9):
        y_t, state = step(mixer, x[:, t], state)
        np.testing.assert_allclose(np.asarray(y_t), np.asarray(y[:, t]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(state), np.asarray(h_last), rtol=1e-5, atol=1e-5)
    # chunked streaming with the carried state equals one call
    y1, s1 = run(mixer, x[:, :4], return_state=True)
    y2 = run(mixer, x[:, 4:], initial_state=s1)
    np.testing.assert_allclose(np.asarray(jnp.concatenate([y1, y2], 1)), np.asarray(y), rtol=1e-5, atol=1e-5)
    # with a mask, the returned state is the state after the last real token; padding never leaks back
    mask = jnp.arange(9)[None, :] < jnp.array([[5], [9]])
    ym, hm = run(mixer, x, mask=mask, return_state=True)
    _, h5 = run(mixer, x[:1, :5], return_state=True)
    np.testing.assert_allclose(np.asarray(hm[0]), np.asarray(h5[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ym[:, :5]), np.asarray(y[:, :5]), rtol=1e-5, atol=1e-5)


def tiny_model(pooling="none", dropout=0.0, num_outputs=3):
    """A 2-layer model, initialized under one jit (eager init compiles every initializer op separately)."""
    return nnx.jit(lambda: SequenceModel(
        mixer_factory("diag", state_size=8, allow_neg_eigval=True), d_model=8, num_layers=2,
        num_outputs=num_outputs, vocab_size=7, pooling=pooling, dropout=dropout, rngs=nnx.Rngs(0)))()


@nnx.jit
def call(model, inputs, mask=None, dropout_key=None):
    return model(inputs, mask=mask, dropout_key=dropout_key)


step = nnx.jit(lambda model, x_t, state: model.step(x_t, state))


def test_step_loop_equals_parallel_call(rng):
    model = tiny_model()
    tokens = jnp.asarray(rng.integers(1, 7, size=(3, 10)), jnp.int32)
    logits = call(model, tokens)
    state = model.init_state(3)
    steps = []
    for t in range(10):
        out, state = step(model, tokens[:, t], state)
        steps.append(out)
    np.testing.assert_allclose(np.asarray(jnp.stack(steps, 1)), np.asarray(logits), rtol=1e-5, atol=1e-5)


def test_causal_and_padding_invariant(rng):
    model = tiny_model()
    tokens = jnp.asarray(rng.integers(1, 7, size=(2, 12)), jnp.int32)
    changed = tokens.at[:, 7:].set(1)
    a, b = call(model, tokens), call(model, changed)
    np.testing.assert_allclose(np.asarray(a[:, :7]), np.asarray(b[:, :7]), rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(a[:, 7:]), np.asarray(b[:, 7:]))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_over_real_tokens_only(rng, pooling):
    model = tiny_model(pooling=pooling, num_outputs=4)
    tokens = jnp.asarray(rng.integers(1, 7, size=(2, 10)), jnp.int32)
    lengths = jnp.array([6, 10])
    mask = jnp.arange(10)[None] < lengths[:, None]
    out = call(model, tokens, mask)
    assert out.shape == (2, 4)
    # the same as running the first example unpadded
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(call(model, tokens[:1, :6])[0]), rtol=1e-5, atol=1e-5)
    # padded positions do not matter
    out2 = call(model, jnp.where(mask, tokens, 3), mask)
    np.testing.assert_allclose(np.asarray(out2), np.asarray(out), rtol=1e-6, atol=1e-6)


def test_dropout_only_with_a_key(rng):
    model = tiny_model(dropout=0.5)
    tokens = jnp.asarray(rng.integers(1, 7, size=(2, 8)), jnp.int32)
    assert_trees_close(call(model, tokens), call(model, tokens), rtol=0, atol=0)
    a = call(model, tokens, dropout_key=jax.random.key(0))
    b = call(model, tokens, dropout_key=jax.random.key(0))
    c = call(model, tokens, dropout_key=jax.random.key(1))
    assert_trees_close(a, b, rtol=0, atol=0)
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_feature_inputs_and_errors():
    model = nnx.eval_shape(lambda: SequenceModel(mixer_factory("diag", state_size=4), d_model=8, num_layers=1,
                                                 num_outputs=2, input_dim=3, pooling="mean", mlp="none",
                                                 rngs=nnx.Rngs(0)))
    assert nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((2, 5, 3))).shape == (2, 2)
    with pytest.raises(ValueError, match="inputs"):
        nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="reset: packed sequences need per-token outputs"):
        nnx.eval_shape(lambda m, x, r: m(x, reset=r), model, jnp.ones((2, 5, 3)), jnp.ones((2, 5), bool))
    with pytest.raises(ValueError, match="pooling"):
        SequenceModel(mixer_factory("diag"), d_model=8, num_layers=1, num_outputs=2, vocab_size=3,
                      pooling="max", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="model.mixer"):
        mixer_factory("lstm")
    with pytest.raises(ValueError, match=r"model.diag.num_heads: not an option of DiagonalRNN \(accepted: state_size"):
        mixer_factory("diag", num_heads=2)


def test_every_registered_mixer_in_the_model_step_equals_parallel(rng, mixer):
    """Each registered mixer inside the residual model: one-token steps reproduce the parallel call."""
    model = SequenceModel(mixer_factory(mixer, **small_options(mixer, allow_neg_eigval=True)), d_model=8,
                          num_layers=2, num_outputs=3, vocab_size=7, rngs=nnx.Rngs(0))
    tokens = jnp.asarray(rng.integers(1, 7, size=(2, 9)), jnp.int32)
    logits = call(model, tokens)
    state = model.init_state(2)
    outs = []
    for t in range(9):
        out, state = step(model, tokens[:, t], state)
        outs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.stack(outs, 1)), np.asarray(logits), rtol=1e-3, atol=1e-4)
