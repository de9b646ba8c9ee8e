"""Sampling (ssm/sample.py): the cached decode (prefill + `step`) equals recomputing the whole prefix with the
parallel call at every step, for every causal mixer in the registry; the sampler's distribution; the CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm import S4D, SequenceModel
from ssm.checks import ConfigError
from ssm.registry import mixer_factory
from ssm.sample import choose_token, generate, sample_text
from tests.utils import small_options

VOCAB = 7


def small_model(mixer: str, vocab: int = VOCAB, **kwargs) -> SequenceModel:
    return SequenceModel(mixer_factory(mixer, **small_options(mixer, state_size=4, num_householder=2, allow_neg_eigval=True)), d_model=8, num_layers=2, num_outputs=vocab,
                         vocab_size=vocab, rngs=nnx.Rngs(0), **kwargs)


def test_cached_decode_equals_parallel_recompute(mixer):
    model = small_model(mixer)
    if not model.causal:
        pytest.skip(f"{mixer} is not causal")
    P, N = 3, 4
    prompt = jax.random.randint(jax.random.key(1), (2, P), 1, VOCAB)
    tokens, logits = generate(model, prompt, N, temperature=1.0, seed=3, return_logits=True)
    assert tokens.shape == (2, P + N) and logits.shape == (2, N, VOCAB)
    np.testing.assert_array_equal(tokens[:, :P], prompt)
    forward = nnx.jit(lambda m, x: m(x)[:, -1])
    for t in range(N):  # the distribution of token P + t, from the whole prefix in one parallel call
        np.testing.assert_allclose(logits[:, t], forward(model, tokens[:, :P + t]), rtol=1e-5, atol=2e-5,
                                   err_msg=f"{mixer}: decode step {t}")


def test_greedy_picks_the_parallel_argmax():
    model = small_model("diag")
    tokens = generate(model, jnp.array([[1, 2, 3]]), 3, temperature=0)
    for t in range(3):
        assert tokens[0, 3 + t] == jnp.argmax(model(tokens[:, :3 + t])[0, -1])


def test_sampler_distribution_temperature_and_top_k():
    """Frequencies of 40 000 draws against the closed form softmax(logits / T) over the top-k logits."""
    logits = jnp.array([2.0, 1.0, 0.5, -1.0, 0.0])
    n = 40_000
    for temperature, top_k in ((1.0, 0), (0.5, 0), (2.0, 3), (1.0, 1)):
        draws = jax.vmap(lambda k: choose_token(k, logits[None], temperature=temperature, top_k=top_k)[0])(
            jax.random.split(jax.random.key(0), n))
        freq = np.bincount(np.asarray(draws), minlength=5) / n
        z = np.asarray(logits, np.float64) / temperature
        if top_k:
            z[np.argsort(-z)[top_k:]] = -np.inf
        p = np.exp(z - z.max())
        p /= p.sum()
        np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(0.25 / n), err_msg=f"T={temperature} k={top_k}")


def test_disallowed_tokens_are_never_drawn():
    model = small_model("diag")
    tokens = generate(model, jnp.ones((8, 2), jnp.int32), 20, temperature=3.0, seed=1, disallow=(0, 4))
    assert not np.isin(np.asarray(tokens), [0, 4]).any()


@pytest.mark.parametrize("make, prompt, kwargs, message", [
    (lambda: SequenceModel(lambda d, rngs: S4D(d, state_size=4, bidirectional=True, rngs=rngs), d_model=8,
                           num_layers=1, num_outputs=VOCAB, vocab_size=VOCAB, rngs=nnx.Rngs(0)),
     [[1, 2]], {}, "model: sampling needs a causal model"),
    (lambda: small_model("diag", pooling="mean"), [[1, 2]], {}, "model: sampling needs a causal model"),
    (lambda: small_model("diag"), [1, 2], {}, r"prompt: expected a 2-D array"),
    (lambda: small_model("diag"), np.zeros((1, 0), np.int32), {}, "prompt: expected integer token ids"),
    (lambda: small_model("diag"), [[1, 2]], {"temperature": -1.0}, "temperature: expected a finite number"),
    (lambda: small_model("diag"), [[1, 2]], {"top_k": -2}, "top_k: expected an integer >= 0"),
    (lambda: small_model("diag"), [[1, 2]], {"length": 0}, "length"),
])
def test_bad_input_is_one_line(make, prompt, kwargs, message):
    kwargs = {"length": 3, **kwargs}
    with pytest.raises(ConfigError, match=message):
        generate(make(), jnp.asarray(prompt), kwargs.pop("length"), **kwargs)


# ------------------------------------------------------------------------------------------ char LM
def test_sample_text():
    vocab = " abc"
    model = small_model("diag", vocab=len(vocab) + 1)
    out = sample_text(model, vocab, "ab", 12, temperature=1.0, seed=0)
    assert len(out) == 14 and out.startswith("ab") and set(out) <= set(vocab)
    greedy = generate(model, jnp.array([[vocab.index("c") + 1, vocab.index("a") + 1]]), 5, temperature=0,
                      disallow=(0,))
    assert sample_text(model, vocab, "ca", 5, temperature=0) == "".join(vocab[i - 1] for i in np.asarray(greedy[0]))
    with pytest.raises(ConfigError, match="--prompt: .*not in it: 'z'"):
        sample_text(model, vocab, "az", 3)


# The command line on a trained character-LM run: tests/test_load_run.py
