"""The residual blocks (ssm/blocks.py) and the model options around them: the S4/S5 block against a float64
NumPy restatement of S5's SequenceLayer, batchnorm statistics over real tokens only (train) and running
averages (evaluation) through the functional train step and a checkpoint, dropout shared over time, the pair
(retrieval) head against separate encodings, and evaluation with a rescaled step size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm.blocks import S5Block, apply_norm, make_norm
from ssm.model import SequenceModel, split_pair
from ssm.registry import mixer_factory
from ssm.train.build import build
from ssm.train.step import make_eval_step, make_train_step
from tests.utils import assert_trees_close


def gelu(x):  # the tanh approximation (jax.nn.gelu's and flax's default, as in S5's code)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def linear(layer, x):
    return x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def norm_ref(n, x):
    """float64 per-token layer norm, or batchnorm with its running averages (evaluation)."""
    scale, bias = np.asarray(n.scale[...], np.float64), np.asarray(n.bias[...], np.float64)
    if isinstance(n, nnx.LayerNorm):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + n.epsilon) * scale + bias
    mu, var = np.asarray(n.mean[...], np.float64), np.asarray(n.var[...], np.float64)
    return (x - mu) / np.sqrt(var + n.epsilon) * scale + bias


def s5_block_ref(block: S5Block, x):
    """S5's SequenceLayer (lindermanlab/S5 s5/layers.py) restated in float64, no dropout; the mixer output is
    the block's own mixer on the reference's normalized input."""
    x = np.asarray(x, np.float64)
    u = norm_ref(block.norm, x) if block.prenorm else x
    y = np.asarray(nnx.jit(lambda m, u: m(u))(block.mixer, jnp.asarray(u, jnp.float32)), np.float64)
    h = gelu(y)
    act = block.activation
    if act == "full_glu":
        h = linear(block.out1, h) * sigmoid(linear(block.out2, h))
    elif act == "half_glu1":
        h = h * sigmoid(linear(block.out2, h))
    elif act == "half_glu2":
        h = y * sigmoid(linear(block.out2, h))
    out = x + h
    return out if block.prenorm else norm_ref(block.norm, out)


def randomize_batch_stats(module, seed=0):
    """Non-trivial running averages (a fresh batchnorm has mean 0, var 1)."""
    rng = np.random.default_rng(seed)
    for _, v in nnx.iter_graph(module):
        if isinstance(v, nnx.BatchNorm):
            v.mean[...] = jnp.asarray(rng.normal(size=v.mean.shape), jnp.float32)
            v.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=v.var.shape), jnp.float32)


@pytest.mark.parametrize("activation,prenorm,norm", [("full_glu", True, "batchnorm"), ("half_glu1", False, "layernorm"),
                                                     ("half_glu2", True, "layernorm"), ("gelu", False, "batchnorm")])
def test_s5_block_matches_float64_sequence_layer(rng, activation, prenorm, norm):
    mixer = mixer_factory("s5", state_size=8)(6, nnx.Rngs(1))
    block = S5Block(6, mixer, activation=activation, prenorm=prenorm, norm=norm, rngs=nnx.Rngs(2))
    randomize_batch_stats(block)
    x = rng.standard_normal((2, 9, 6)).astype(np.float32)
    out = nnx.jit(lambda b, x: b(x))(block, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), s5_block_ref(block, x), rtol=1e-4, atol=1e-5)
    assert block.parts[0 if prenorm else -1] == "norm"


def test_batchnorm_statistics_over_real_tokens_only(rng):
    norm = make_norm("batchnorm", 4, bn_momentum=0.9, rngs=nnx.Rngs(0))
    x = rng.standard_normal((3, 7, 4)).astype(np.float32) * 2 + 1
    mask = np.arange(7)[None] < np.array([[7], [3], [5]])
    y = apply_norm(norm, jnp.asarray(x), jnp.asarray(mask), train=True)
    real = x[mask].astype(np.float64)  # (N, 4): the real tokens only
    mu, var = real.mean(0), real.var(0)
    np.testing.assert_allclose(np.asarray(y)[mask], (real - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.mean[...]), 0.1 * mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(norm.var[...]), 0.9 + 0.1 * var, rtol=1e-5)
    # padding values never enter the statistics
    other = make_norm("batchnorm", 4, bn_momentum=0.9, rngs=nnx.Rngs(0))
    y2 = apply_norm(other, jnp.asarray(np.where(mask[..., None], x, 100.0)), jnp.asarray(mask), train=True)
    np.testing.assert_allclose(np.asarray(y2)[mask], np.asarray(y)[mask], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(other.var[...]), np.asarray(norm.var[...]), rtol=1e-6)
    # evaluation: the running averages, a fixed per-feature affine map; nothing is updated
    before = np.asarray(norm.mean[...]).copy()
    ev = apply_norm(norm, jnp.asarray(x), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(ev), norm_ref(norm, x.astype(np.float64)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(norm.mean[...]), before)


def s5_config(**model):
    config = {"seed": 0, "model": {"mixer": "diag", "d_model": 8, "num_layers": 2, "block": "s5",
                                   "s5_activation": "half_glu1", "s5_prenorm": True, "norm": "batchnorm",
                                   "bn_momentum": 0.9, "final_norm": False, "mlp": "glu", "mlp_ratio": 2.0,
                                   "dropout": 0.0, "pooling": "mean", "diag": {"state_size": 8}, **model},
              "optim": {"lr": 1e-2, "ssm_lr": 1e-3, "weight_decay": 0.0, "b1": 0.9, "b2": 0.999, "clip_norm": 1.0,
                        "warmup_steps": 0, "min_lr_ratio": 0.0, "schedule": "constant"},
              "train": {"num_steps": 10}, "data": {}}
    return config


def token_batch(rng, lengths, T=10, pad=0):
    lengths = np.asarray(lengths)
    tokens = rng.integers(1, 7, size=(len(lengths), T))
    tokens = np.where(np.arange(T)[None] < lengths[:, None], tokens, pad)
    return {"inputs": jnp.asarray(tokens, jnp.int32), "lengths": jnp.asarray(lengths, jnp.int32),
            "targets": jnp.asarray(rng.integers(0, 3, size=len(lengths)), jnp.int32),
            "weights": jnp.ones(len(lengths), jnp.float32)}


def batch_stats(state):
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(state, nnx.BatchStat))}


def test_train_step_updates_batch_stats_from_real_tokens_and_eval_uses_them(rng):
    built = build(s5_config(), vocab_size=7, num_outputs=3, pooling="mean")
    train_step, eval_step = make_train_step(built.graphdef), make_eval_step(built.graphdef)
    batch = token_batch(rng, [10, 4, 7])
    before = batch_stats(built.state)
    state, _ = train_step(jax.tree.map(jnp.copy, built.state), batch, None)
    after = batch_stats(state)
    # block 0's norm sees the embeddings of the real tokens: running mean = (1 − 0.9) · their mean
    model, _ = built.merge()
    table = np.asarray(model.embed.embedding[...], np.float64)
    real = np.asarray(batch["inputs"])[np.arange(10)[None] < np.asarray(batch["lengths"])[:, None]]
    key = next(p for p in after if p[:3] == (0, "blocks", 0) and p[-1] == "mean")
    np.testing.assert_allclose(after[key], 0.1 * table[real].mean(0), rtol=1e-5, atol=1e-6)
    assert all(not np.array_equal(after[p], before[p]) for p in after)
    # other padding values: the same update
    padded = {**batch, "inputs": jnp.where(jnp.arange(10)[None] < batch["lengths"][:, None], batch["inputs"], 5)}
    state2, _ = train_step(jax.tree.map(jnp.copy, built.state), padded, None)
    assert_trees_close(nnx.state(state2, nnx.Param), nnx.state(state, nnx.Param), rtol=1e-6, atol=1e-7)
    assert_trees_close(batch_stats(state2), after, rtol=1e-6, atol=1e-7)
    # evaluation uses the running averages: a row's loss does not depend on the rest of its batch
    full = eval_step(state, batch)
    others = token_batch(np.random.default_rng(7), [10, 4, 7])  # other rows around row 1
    alone = eval_step(state, jax.tree.map(lambda a, b: a.at[1].set(b[1]), others, batch))
    np.testing.assert_allclose(np.asarray(full["nll"][1]), np.asarray(alone["nll"][1]), rtol=1e-5)
    assert not np.allclose(np.asarray(full["nll"][0]), np.asarray(alone["nll"][0]))
    assert_trees_close(batch_stats(state), after, rtol=0, atol=0)


def test_batch_stats_are_saved_and_restored_with_the_state(tmp_path):
    from ssm.train.checkpoint import Checkpointer

    config = s5_config()
    built = build(config, vocab_size=7, num_outputs=3, pooling="mean")
    model, optimizer = built.merge()
    randomize_batch_stats(model)  # as after some training steps
    state = nnx.state((model, optimizer))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), async_save=False)
    ckpt.save(1, state, {"step": 1})
    abstract = build(config, abstract=True, vocab_size=7, num_outputs=3, pooling="mean").state
    _, restored, _ = ckpt.restore_latest(abstract)
    ckpt.close()
    assert batch_stats(restored) and batch_stats(restored).keys() == batch_stats(state).keys()
    assert_trees_close(batch_stats(restored), batch_stats(state), rtol=0, atol=0)


def test_s5_block_dropout_is_shared_over_time(rng):
    mixer = mixer_factory("diag", state_size=4)(6, nnx.Rngs(0))
    block = S5Block(6, mixer, activation="gelu", norm="layernorm", dropout=0.5, rngs=nnx.Rngs(1))
    x = jnp.asarray(rng.standard_normal((3, 8, 6)), jnp.float32)
    call = nnx.jit(lambda b, x, key: b(x, dropout_key=key))
    branch = np.asarray(call(block, x, None) - x)  # GELU(mixer output), (B, T, D)
    dropped_branch = np.asarray(call(block, x, jax.random.key(0)) - x)
    kept = np.isclose(dropped_branch, 2 * branch, rtol=1e-4, atol=1e-6)  # rate 0.5: kept values scaled by 2
    assert np.all(kept | np.isclose(dropped_branch, 0, atol=1e-6))
    visible = np.abs(branch) > 1e-3  # where the two outcomes can be told apart
    per_feature = [set(kept[b, visible[b, :, d], d]) for b in range(3) for d in range(6)]
    assert all(len(s) <= 1 for s in per_feature)  # one decision per (example, feature), for every t
    assert {True} in per_feature and {False} in per_feature
    assert_trees_close(call(block, x, None), call(block, x, None), rtol=0, atol=0)  # without a key: deterministic


@pytest.mark.parametrize("prenorm", [True, False])
def test_s5_block_model_steps_equal_the_parallel_call(rng, prenorm):
    model = SequenceModel(mixer_factory("s5", state_size=8), d_model=6, num_layers=2, num_outputs=3, vocab_size=7,
                          block="s5", norm="batchnorm", s5_prenorm=prenorm, s5_activation="full_glu",
                          final_norm=prenorm, rngs=nnx.Rngs(0))
    randomize_batch_stats(model)
    tokens = jnp.asarray(rng.integers(1, 7, size=(2, 7)), jnp.int32)
    logits = nnx.jit(lambda m, t: m(t))(model, tokens)
    state, outs = model.init_state(2), []
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))
    for t in range(7):
        out, state = step(model, tokens[:, t], state)
        outs.append(out)
    np.testing.assert_allclose(np.asarray(jnp.stack(outs, 1)), np.asarray(logits), rtol=1e-4, atol=1e-5)


def test_split_pair_matches_numpy(rng):
    L, sep = 5, 9
    rows, docs = [], []
    for n1, n2 in [(5, 5), (2, 4), (0, 3)]:
        a, b = rng.integers(1, 9, size=n1), rng.integers(1, 9, size=n2)
        rows.append(np.concatenate([a, [sep], b, np.zeros(2 * L + 1 - n1 - n2 - 1, int)]))
        docs.append((a, b))
    tokens = jnp.asarray(np.stack(rows), jnp.int32)
    mask = tokens > 0
    both, both_mask = split_pair(tokens, mask, sep)
    for i, (a, b) in enumerate(docs):
        for row, doc in ((i, a), (len(docs) + i, b)):
            np.testing.assert_array_equal(np.asarray(both[row]), np.pad(doc, (0, L - len(doc))))
            np.testing.assert_array_equal(np.asarray(both_mask[row]), np.arange(L) < len(doc))


def test_pair_head_encodes_each_document_alone(rng):
    vocab, L = 8, 6
    model = SequenceModel(mixer_factory("s5", state_size=8, bidirectional=True), d_model=6, num_layers=1,
                          num_outputs=2, vocab_size=vocab, pooling="pair", block="s5", norm="layernorm",
                          rngs=nnx.Rngs(0))
    pairs = [(rng.integers(1, vocab - 1, size=4), rng.integers(1, vocab - 1, size=6)),
             (rng.integers(1, vocab - 1, size=6), rng.integers(1, vocab - 1, size=4))]
    rows = [np.pad(np.concatenate([a, [vocab - 1], b]), (0, 2 * L + 1 - len(a) - len(b) - 1)) for a, b in pairs]
    tokens = jnp.asarray(np.stack(rows), jnp.int32)
    logits = nnx.jit(lambda m, t: m(t, mask=t > 0))(model, tokens)

    @nnx.jit
    def encode(model, doc):  # the model's encoder on one document alone, unpadded, mean-pooled
        x = model.embed(doc[None])
        for block in model.blocks:
            x = block(x)
        return apply_norm(model.final_norm, x).mean(1)[0]

    for i, (a, b) in enumerate(pairs):
        h1, h2 = (np.asarray(encode(model, jnp.asarray(d, jnp.int32)), np.float64) for d in (a, b))
        hidden = gelu(linear(model.pair_proj, np.concatenate([h1, h2, h1 - h2, h1 * h2])))
        np.testing.assert_allclose(np.asarray(logits[i]), linear(model.head, hidden), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mixer", ["s5", pytest.param("s4d", marks=pytest.mark.slow)])
def test_eval_step_rescale_equals_the_layer_with_scaled_delta(tmp_path, mixer):
    """On the digits feature task (F = 1): evaluating with a step-size factor r = 2 (model.eval_step_rescale)
    gives the per-example losses of the same parameters in layers built with step_rescale = 2 (Δ·r), and
    not those of r = 1."""
    from ssm.train.data import eval_batches
    from ssm.train.loop import load_data
    from ssm.train.packing import model_batch
    from tests.test_train import get_config

    config = get_config("digits", data__data_dir=str(tmp_path), model__mixer=mixer, model__d_model=8)
    batch = model_batch(next(iter(eval_batches(load_data(config["data"], 0)["test"], 16))))
    built = build(config)
    config["model"][mixer]["step_rescale"] = 2.0
    scaled = build(config, abstract=True)  # the same parameters; only the static attribute differs
    rescaled = make_eval_step(built.graphdef, step_rescale=2.0)(built.state, batch)["nll"]
    reference = make_eval_step(scaled.graphdef)(built.state, batch)["nll"]
    plain = make_eval_step(built.graphdef)(built.state, batch)["nll"]
    np.testing.assert_allclose(np.asarray(rescaled), np.asarray(reference), rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(rescaled) - np.asarray(plain)).max() > 1e-4


def test_runs_written_before_the_block_fields_resume_with_the_old_block():
    """A config.json without the block fields reads as the block it was trained with (prenorm_mlp, ...)."""
    from ssm.train.resume import _resume_view
    from ssm.train.model_config import ADDED_MODEL_FIELDS, migrate_config
    from tests.test_train import get_config

    config = get_config("parity")
    old = {**config, "model": {k: v for k, v in config["model"].items() if k not in ADDED_MODEL_FIELDS}}
    assert _resume_view(migrate_config(old)[0]) == _resume_view(config)
    changed = get_config("parity", model__block="s5")
    assert _resume_view(migrate_config(old)[0]) != _resume_view(changed)


@pytest.mark.slow
def test_s5_block_batchnorm_run_resumes_exactly(tmp_path):
    """Dropping the last checkpoint and re-running reproduces the uninterrupted run bitwise, batch statistics
    included (an S5 block with batchnorm and dropout on the parity smoke task)."""
    import shutil

    from tests.test_train import _checkpoint_arrays, _records_without_timing, run

    workdir, data_dir = tmp_path / "run", str(tmp_path / "data")
    overrides = dict(model__mixer="diag", model__block="s5", model__norm="batchnorm", model__dropout=0.1,
                     train__num_steps=4, ckpt__every=2, train__eval_every=2, ckpt__async_save=False)
    first, _ = run("parity", workdir, data_dir, **overrides)
    before = _records_without_timing(workdir)
    shutil.move(workdir / "checkpoints" / "4", tmp_path / "uninterrupted-4")
    second, _ = run("parity", workdir, data_dir, **overrides)
    assert _records_without_timing(workdir) == before and first["test"] == second["test"]
    a = _checkpoint_arrays(tmp_path / "uninterrupted-4" / "state")
    b = _checkpoint_arrays(workdir / "checkpoints" / "4" / "state")
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_zero_shot_reevaluation_of_a_finished_run(tmp_path):
    """The zero_shot_8k protocol on digits: re-running a finished run's workdir with model.eval_step_rescale=2
    and train.allow_config_change trains no step and re-evaluates the final and best checkpoints with Δ·2."""
    import json
    import shutil

    from ssm.train.checkpoint import Checkpointer
    from ssm.train.loop import evaluate, load_data
    from tests.test_train import run

    data_dir, first = str(tmp_path / "data"), tmp_path / "run"
    overrides = dict(model__mixer="s5", train__num_steps=4, train__eval_every=2, ckpt__every=2,
                     ckpt__async_save=False)
    plain, config = run("digits", first, data_dir, **overrides)
    shutil.copytree(first, tmp_path / "rescaled")
    rescaled, config2 = run("digits", tmp_path / "rescaled", data_dir, model__eval_step_rescale=2.0,
                            train__allow_config_change=True, **overrides)
    records = [json.loads(line) for line in open(tmp_path / "rescaled" / "metrics.jsonl")]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]  # nothing trained again
    built = build(config)
    ckpt = Checkpointer(str(first / "checkpoints"), async_save=False)
    state, _ = ckpt.restore(4, built.state)
    ckpt.close()
    test = load_data(config["data"], 0)["test"]
    expected = evaluate(make_eval_step(built.graphdef, step_rescale=2.0), state, test, config["data"], 16, "test")
    assert rescaled["test"]["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert abs(rescaled["test"]["loss"] - plain["test"]["loss"]) > 1e-4
    assert rescaled["best"]["step"] == plain["best"]["step"]
