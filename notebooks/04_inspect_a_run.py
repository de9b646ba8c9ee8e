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
# # Looking inside a trained run
#
# `train.py` writes a run directory (config.json, metrics.jsonl, summary.json, checkpoints/);
# `ssm.load_run(workdir)` gives back its model, ready for inference, and its config. Here we train the gated
# diagonal linear RNN (`--config.model.mixer=diag`, eigenvalues in (−1, 1)) on parity with
# `configs/parity.py` (lengths 3–40), then look inside it:
#
# 1. the learning curves from metrics.jsonl;
# 2. the learned eigenvalues `a_t = 2σ(W_a x_t + λ) − 1` of the recurrence `h_t = a_t ⊙ h_{t−1} + b_t`, for
#    the two input bits, before and after training;
# 3. the norm of the recurrent state over time, running the model one token at a time (`model.step`) on
#    strings 6× longer than the longest training string;
# 4. accuracy by length, from summary.json and on fresh strings up to 512 bits.
#
# Full mode trains the `default` preset (600 steps, ≈ 2 min on one CPU core) into `runs/04_inspect_a_run`
# and reuses it when the notebook runs again; `SMOKE=1` (as CI does) trains the 3-step `smoke` preset into
# a temporary folder.

# %%
import json
import os
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import ssm
from ssm.tasks import make_parity
from ssm.train import build_model, train

ROOT = Path(ssm.__file__).resolve().parents[1]  # a clone: configs/ sits next to ssm/
sys.path.insert(0, str(ROOT))
from configs.parity import get_config  # noqa: E402

SMOKE = os.environ.get("SMOKE") == "1"
plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})

# %% [markdown]
# ## Train (or reuse) a run
# The same as `python train.py --config=configs/parity.py --config.model.mixer=diag --workdir=...`.

# %%
config = get_config("smoke" if SMOKE else "default")
config.model.mixer = "diag"
config.train.progress_bar = False
config.train.tensorboard = False
WORKDIR = Path(tempfile.mkdtemp()) / "run" if SMOKE else Path(os.path.relpath(ROOT / "runs" / "04_inspect_a_run"))
if not (WORKDIR / "summary.json").exists():
    train(config.to_dict(), str(WORKDIR))
summary = json.loads((WORKDIR / "summary.json").read_text())
print("best checkpoint:", summary["best"]["step"], "| test accuracy (lengths 40–256):",
      round(summary["best"]["test"]["accuracy"], 4))

# %% [markdown]
# ## Load it
# `step="best"` (the default) is the checkpoint summary.json names as best by `ckpt.best_metric`
# (validation accuracy for parity); `"last"` or a step number pick others.

# %%
model, config = ssm.load_run(WORKDIR)
print(type(model).__name__, "with", config["model"]["num_layers"], "×", type(model.blocks[0].mixer).__name__,
      "| d_model", config["model"]["d_model"], "| state size", model.blocks[0].mixer.state_size)

# %% [markdown]
# ## Learning curves (metrics.jsonl)

# %%
records = [json.loads(line) for line in (WORKDIR / "metrics.jsonl").read_text().splitlines()]
train_rec = [r for r in records if r["split"] == "train"]
val_rec = [r for r in records if r["split"] == "validation"]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["step"] for r in train_rec], [r["accuracy"] for r in train_rec], label="train (lengths 3–40)")
ax.plot([r["step"] for r in val_rec], [r["accuracy"] for r in val_rec], "o-", label="validation (40–256)")
ax.set(xlabel="step", ylabel="accuracy", ylim=(0.4, 1.02))
ax.legend()
plt.show()

# %% [markdown]
# ## Learned eigenvalues
# Each layer's decay `a_t` depends on its input. In layer 1 the input is the embedded bit itself, so `a_t`
# takes one value per state feature and bit. Parity is solved by a state that flips sign on a 1
# (`a ≈ −1`) and keeps it on a 0 (`a ≈ +1`); the initialization (same seed, before training) puts every
# eigenvalue in [0.8, 1] (`σ(λ)` ∈ [0.9, 0.999], mapped by `2σ − 1`).

# %%
def layer_inputs(model, tokens):
    """The normalized input of each block's mixer, [(B, T, D)] (what the mixer's gates see)."""
    x, out = model.embed(tokens), []
    for block in model.blocks:
        out.append(block.mixer_norm(x))
        x = block(x)
    return out


def eigenvalues_by_bit(model):
    """Layer 1's a_t per state feature (N,) for bit 0 and bit 1 (token ids 1 and 2)."""
    u = layer_inputs(model, jnp.array([[1, 2]]))[0][0]  # (2, D): the embedded bit 0, bit 1
    a, _, _ = model.blocks[0].mixer._gates(u)
    return np.asarray(a)


init_model = build_model(config)  # the run's model at initialization (config["seed"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
bins = np.linspace(-1, 1, 41)
for ax, (title, m) in zip(axes, [("at initialization", init_model), ("trained", model)]):
    a = eigenvalues_by_bit(m)
    ax.hist(a[0], bins=bins, alpha=0.7, label="input bit 0")
    ax.hist(a[1], bins=bins, alpha=0.7, label="input bit 1")
    ax.set(title=f"layer 1 eigenvalues a_t, {title}", xlabel="a_t (one per state feature)")
axes[0].set_ylabel("state features")
axes[0].legend()
plt.show()
a = eigenvalues_by_bit(model)
print(f"trained layer 1: {np.mean(a[1] < -0.5):.0%} of the features have a < -0.5 on a 1 "
      f"(bit 0: {np.mean(a[0] < -0.5):.0%})")

# %% [markdown]
# ## State norms over time
# The model runs one token at a time (`model.step`, the exact recurrence every mixer has) over 32 fresh strings
# of 240 bits; we record ‖h_t‖ of each layer. A stable state stays bounded far beyond the training lengths
# (grey band).

# %%
def state_norms(model, tokens):
    """‖h_t‖ per layer: (layers, T, B), running model.step over tokens (B, T)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, tokens):
        m = nnx.merge(graphdef, state)

        def one(h, token):
            _, h = m.step(token, h)
            return h, jnp.stack([jnp.linalg.norm(hl.reshape(hl.shape[0], -1), axis=-1) for hl in h])

        return jax.lax.scan(one, m.init_state(tokens.shape[0]), tokens.T)[1]

    return np.moveaxis(np.asarray(run(state, tokens)), 0, 1)


T = 60 if SMOKE else 240
strings = make_parity(np.random.default_rng(1), 32, min_len=T, max_len=T)["inputs"]
norms = state_norms(model, jnp.asarray(strings))
fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 3), squeeze=False)
for i, (ax, n) in enumerate(zip(axes[0], norms)):
    t = np.arange(1, T + 1)
    ax.axvspan(3, 40, color="0.9")
    ax.plot(t, n[:, :4], lw=0.8)
    ax.fill_between(t, n.min(1), n.max(1), color="C0", alpha=0.15)
    ax.set(title=f"layer {i + 1}", xlabel="t (tokens)", ylabel="‖h_t‖")
plt.show()

# %% [markdown]
# ## Accuracy by length
# summary.json holds the test accuracy per length bucket (lengths 40–256). Below, the loaded model answers
# fresh strings of each length up to 512 (the answer is read at the last bit).

# %%
def accuracy(model, length, n=128):
    batch = make_parity(np.random.default_rng(length), n, min_len=length, max_len=length)
    logits = nnx.jit(lambda m, x: m(x)[:, -1])(model, jnp.asarray(batch["inputs"]))
    return float(np.mean(np.argmax(logits, -1) == batch["targets"][:, -1]))


lengths = [10, 40, 80] if SMOKE else [10, 20, 40, 80, 160, 256, 384, 512]
acc = [accuracy(model, L) for L in lengths]
buckets = summary["best"]["test"].get("accuracy_by_length", {})
fig, ax = plt.subplots(figsize=(6, 3))
ax.axvspan(3, 40, color="0.9", label="training lengths")
ax.plot(lengths, acc, "o-", label="fresh strings (load_run model)")
centers = [np.mean([int(v) for v in k.split("-")]) for k in buckets]
ax.plot(centers, list(buckets.values()), "s", label="summary.json test buckets")
ax.axhline(0.5, color="gray", ls="--", lw=0.8)
ax.set(xlabel="string length", ylabel="accuracy", ylim=(0.4, 1.02))
ax.legend(fontsize=8)
plt.show()
print({length: round(a, 3) for length, a in zip(lengths, acc)})
