# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Use a layer in your own code
#
# The layers of `ssm` are plain Flax NNX modules with one interface (`ssm/layers/mixer.py`):
# `layer(x (B, T, D), *, initial_state=None, mask=None, return_state=False)`, `layer.init_state(B)` and
# `layer.step(x_t (B, D), state)`. This notebook puts one into a model of its own, runs it in parallel
# and step mode, and streams a long sequence in chunks with a carried state. `SMOKE=1` shrinks it for CI.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax
from flax import nnx

import ssm

SMOKE = os.environ.get("SMOKE") == "1"
T = 256 if SMOKE else 4096


# %% [markdown]
# ## A plain NNX model around an `ssm` layer
# Any mixer works the same way: `ssm.S5`, `ssm.S4D`, `ssm.DiagonalRNN` (and the delta-rule layers).

# %%
class Tagger(nnx.Module):
    """Embed → S5 layer (with a residual and a GELU) → linear read-out."""

    def __init__(self, vocab: int, d: int, classes: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        self.mixer = ssm.S5(d, state_size=16, rngs=rngs)
        self.out = nnx.Linear(d, classes, rngs=rngs)

    def __call__(self, tokens, *, initial_state=None, return_state=False):
        x = self.embed(tokens)                                   # (B, T, d)
        y, state = self.mixer(x, initial_state=initial_state, return_state=True)
        logits = self.out(x + jax.nn.gelu(y))                    # (B, T, classes)
        return (logits, state) if return_state else logits

    def step(self, token_t, state):
        x_t = self.embed(token_t)                                # (B, d)
        y_t, state = self.mixer.step(x_t, state)
        return self.out(x_t + jax.nn.gelu(y_t)), state


model = Tagger(vocab=8, d=32, classes=8, rngs=nnx.Rngs(0))
tokens = jax.random.randint(jax.random.key(1), (4, T), 0, 8)
logits = model(tokens)
print(logits.shape)

# %% [markdown]
# It trains like any NNX model (here a few steps of "output the running sum of the tokens mod 8").

# %%
targets = jnp.cumsum(tokens, axis=1) % 8
optimizer = nnx.Optimizer(model, optax.adamw(3e-3), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, tokens, targets):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(tokens), targets).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


losses = [float(train_step(model, optimizer, tokens[:, :64], targets[:, :64])) for _ in range(3 if SMOKE else 100)]
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
plt.figure(figsize=(4, 2.5))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.title("training the Tagger (running sum mod 8)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Parallel call vs one token at a time
# The parallel call runs the whole sequence through the scan core; `step` carries the state token by
# token (streaming / decoding). They compute the same function.

# %%
short = tokens[:, :64]
parallel = model(short)


@jax.jit
def run_steps(tokens):
    def body(state, token_t):         # one token: (B,) -> logits (B, classes)
        logits_t, state = model.step(token_t, state)
        return state, logits_t
    _, out = jax.lax.scan(body, model.mixer.init_state(tokens.shape[0]), tokens.T)
    return jnp.swapaxes(out, 0, 1)    # (B, T, classes)


stepped = run_steps(short)
print(f"max |parallel − step| = {float(jnp.abs(parallel - stepped).max()):.1e}")
assert jnp.allclose(parallel, stepped, atol=1e-4)

# %% [markdown]
# ## Stream a long sequence in chunks
# Pass the final state of one chunk as the `initial_state` of the next: the result equals one call over
# the whole sequence, with memory bounded by the chunk length.

# %%
chunk = T // 8
state = model.mixer.init_state(tokens.shape[0])
chunks = []
for start in range(0, T, chunk):
    out, state = model(tokens[:, start:start + chunk], initial_state=state, return_state=True)
    chunks.append(out)
streamed = jnp.concatenate(chunks, axis=1)
full = model(tokens)
print(f"T = {T}, chunk = {chunk}: max |streamed − full| = {float(jnp.abs(streamed - full).max()):.1e}")
assert jnp.allclose(streamed, full, atol=1e-3)

# %% [markdown]
# The same works for every mixer of the package: `ssm.S4D` (its carried state is the scan mode's),
# `ssm.DiagonalRNN`, and the delta-rule layers, through the same three methods.
