"""Sampling from a causal `SequenceModel`: prefill the prompt with the parallel call, then decode one token at
a time with `model.step` (every mixer's exact recurrent form, so the decode costs O(1) per token).

    tokens = generate(model, prompt, length=200, temperature=0.8, top_k=20, seed=0)    # (B, P + length)

Command line, for character-LM runs trained with train.py / ssm-train (configs/char_lm.py):

    python -m ssm.sample --workdir DIR --prompt TEXT --length N [--temperature T --top_k K --seed S --step best]
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm.checks import ConfigError, check_ndim, check_positive_int, fail


def choose_token(key, logits, *, temperature: float = 1.0, top_k: int = 0):
    """logits (B, V) -> token ids (B,) int32: argmax for temperature 0, else a draw from
    softmax(logits / temperature) restricted to the top_k largest logits (top_k = 0: all of them)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _check(model, prompt, length: int, temperature: float, top_k: int, seed: int) -> None:
    if not isinstance(model, nnx.Module) or not hasattr(model, "step"):
        fail(f"model: expected a SequenceModel, got {type(model).__name__}")
    if getattr(model, "pooling", "none") != "none" or not model.causal:
        fail("model: sampling needs a causal model (every mixer causal) with per-token outputs (pooling='none')")
    check_ndim("prompt", prompt, 2, "(B, P) of token ids")
    if prompt.shape[1] < 1 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        fail(f"prompt: expected integer token ids of shape (B, P) with P >= 1, got {prompt.dtype}{prompt.shape}")
    _check_options(length, temperature, top_k, seed)


def _check_options(length: int, temperature: float, top_k: int, seed: int) -> None:
    check_positive_int("length", length)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature >= 0):
        fail(f"temperature: expected a finite number >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        fail(f"top_k: expected an integer >= 0 (0 = no restriction), got {top_k!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        fail(f"seed: expected an integer, got {seed!r}")


def generate(model, prompt, length: int, *, temperature: float = 1.0, top_k: int = 0, seed: int = 0,
             disallow: Sequence[int] = (), return_logits: bool = False):
    """Continue `prompt` (B, P) int by `length` tokens -> (B, P + length) int32 [, logits (B, length, V)].

    The prompt runs through the parallel call (`model(prompt, return_state=True)`), whose state after the
    last prompt token starts the decode: token t is drawn from the logits of step t − 1 (`choose_token`),
    then fed to `model.step`. `disallow`: token ids never drawn (e.g. 0, the padding id). `logits[:, t]` is
    the distribution token P + t was drawn from (before temperature / top_k / disallow)."""
    prompt = jnp.asarray(prompt)
    _check(model, prompt, length, temperature, top_k, seed)
    ban = jnp.zeros(model.head.out_features, bool).at[jnp.asarray(list(disallow), jnp.int32)].set(True)
    graphdef, params = nnx.split(model)
    logits, tokens = _decode(graphdef, params, prompt, jax.random.key(seed), ban, length=length,
                             temperature=float(temperature), top_k=int(top_k))
    out = jnp.concatenate([prompt.astype(jnp.int32), tokens], axis=1)
    return (out, logits) if return_logits else out


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("length", "temperature", "top_k"))
def _decode(graphdef, params, prompt, key, ban, *, length, temperature, top_k):
    model = nnx.merge(graphdef, params)
    prompt_logits, state = model(prompt, return_state=True)

    def one_token(carry, key_t):
        logits, state = carry
        token = choose_token(key_t, jnp.where(ban, -jnp.inf, logits), temperature=temperature, top_k=top_k)
        next_logits, state = model.step(token, state)
        return (next_logits, state), (logits, token)

    _, (logits, tokens) = jax.lax.scan(one_token, (prompt_logits[:, -1], state), jax.random.split(key, length))
    return jnp.moveaxis(logits, 0, 1), tokens.T  # (B, length, V), (B, length)


# ------------------------------------------------------------------------------------ character LM CLI
def encode_text(vocab: str, text: str):
    """(1, len(text)) int32 token ids of `text` for a character LM over `vocab` (vocab[i] has id i + 1, 0 pads)."""
    lookup = {c: i + 1 for i, c in enumerate(vocab)}
    unknown = sorted(set(text) - set(lookup))
    if not text or unknown:
        fail(f"--prompt: expected a non-empty text over the run's {len(vocab)} characters, "
             f"got {'an empty prompt' if not text else 'characters not in it: ' + repr(''.join(unknown))}")
    return jnp.asarray([[lookup[c] for c in text]], jnp.int32)


def sample_text(model, vocab: str, prompt: str, length: int, **options) -> str:
    """Continue the text `prompt` with a character LM over `vocab` (token id of vocab[i] is i + 1, 0 pads);
    options: temperature, top_k, seed (`generate`)."""
    tokens = generate(model, encode_text(vocab, prompt), length, disallow=(0,), **options)
    return "".join(vocab[int(t) - 1] for t in np.asarray(tokens[0]))


def sample_run(workdir, prompt: str, length: int, *, step="best", temperature: float = 1.0, top_k: int = 0,
               seed: int = 0) -> str:
    """The text `prompt` continued by `length` characters by the character-LM run in `workdir` (train.py with
    configs/char_lm.py) at checkpoint `step` (`ssm.load_run`). Every argument is checked before the restore."""
    from ssm.tasks.char_lm import char_vocab
    from ssm.train.load import load_run, read_run_config

    data = read_run_config(workdir)["data"]
    if data["task"] != "char_lm":
        fail(f"--workdir: {workdir!r} holds a {data['task']!r} run; sampling text needs a char_lm run "
             f"(configs/char_lm.py)")
    vocab = char_vocab(data["path"])
    encode_text(vocab, prompt)
    _check_options(length, temperature, top_k, seed)
    model, _ = load_run(workdir, step=step)
    return sample_text(model, vocab, prompt, length, temperature=temperature, top_k=top_k, seed=seed)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the usage too; one line, exit status 2, as every bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None) -> int:
    parser = _OneLineParser(prog="python -m ssm.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a character-LM run of train.py")
    parser.add_argument("--prompt", required=True, help="text to continue (characters of the training text)")
    parser.add_argument("--length", type=int, default=200, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=0, help="draw among the k likeliest (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", default="best", help="checkpoint: best | last | a step number")
    args = parser.parse_args(argv)
    try:
        step = int(args.step) if args.step.isdigit() else args.step
        text = sample_run(args.workdir, args.prompt, args.length, step=step, temperature=args.temperature,
                          top_k=args.top_k, seed=args.seed)
    except ConfigError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
