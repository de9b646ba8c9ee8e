"""DeltaNet / Gated DeltaNet / DeltaProduct layers: a float64 NumPy re-statement of the layer (every option),
step == parallel, streaming, masks, resets, causality, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm import DeltaNet, DeltaProduct, GatedDeltaNet
from ssm.layers.mixer import Mixer
from ssm.ops.reference import delta_product_ref as np_delta_product

CONFIGS = {
    "deltanet": (DeltaNet, {}),
    "deltanet-neg-gated-out": (DeltaNet, dict(allow_neg_eigval=True, use_output_gate=True)),
    "deltaproduct2": (DeltaProduct, dict(num_householder=2, allow_neg_eigval=True)),
    "gated-deltaproduct3": (DeltaProduct, dict(num_householder=3, use_forget_gate=True, use_output_gate=True)),
    "gated-deltanet": (GatedDeltaNet, {}),  # expand_v = 2, output gate, forget gate
    # flash-linear-attention's options: grouped value heads, d_v != d_k, feature maps, sum norm, no β, conv bias
    "gated-deltanet-gva-neg": (GatedDeltaNet, dict(num_v_heads=4, expand_v=1.5, allow_neg_eigval=True,
                                                   conv_bias=True)),
    "deltanet-relu-sum-nobeta": (DeltaNet, dict(qk_activation="relu", qk_norm="sum", use_beta=False,
                                                conv_size=3, conv_bias=True)),
    "deltanet-elu-noconv-nobeta-neg": (DeltaNet, dict(qk_activation="elu", conv_size=0, use_beta=False,
                                                      allow_neg_eigval=True, expand_v=0.5)),
    "deltanet-identity": (DeltaNet, dict(qk_activation="identity", use_output_gate=True)),
    "deltaproduct2-gva": (DeltaProduct, dict(num_householder=2, num_v_heads=4, expand_v=2, use_forget_gate=True,
                                             qk_activation="silu", conv_bias=True)),
}
FAST = ["deltanet", "deltanet-neg-gated-out", "deltaproduct2", "gated-deltaproduct3", "gated-deltanet-gva-neg",
        "deltanet-relu-sum-nobeta"]


fwd = nnx.jit(lambda m, x: m(x))
fwd_state = nnx.jit(lambda m, x, s: m(x, initial_state=s, return_state=True))
fwd_reset = nnx.jit(lambda m, x, r: m(x, reset=r))
fwd_mask = nnx.jit(lambda m, x, mask: m(x, mask=mask, return_state=True))


def build(name, d_model=16, num_heads=2, **extra):
    cls, kw = CONFIGS[name]
    options = {"method": "chunk", **kw, **extra}  # "auto" would pick "recurrent" for these small heads on CPU
    return cls(d_model, num_heads=num_heads, chunk_size=8, rngs=nnx.Rngs(0), **options)


def np_layer(m, x):
    """The layer in float64 NumPy from its parameters (flash-linear-attention's DeltaNet / GatedDeltaNet /
    GatedDeltaProduct layers, with every option of ours)."""
    x = np.asarray(x, np.float64)
    B, T, _ = x.shape
    H, HV, n, K, V = m.num_heads, m.num_v_heads, m.num_householder, m.head_dim, m.head_v_dim
    P = lambda a: np.asarray(a[...], np.float64)  # noqa: E731
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    silu = lambda z: z * sigmoid(z)  # noqa: E731

    def conv(u, c):  # depthwise causal, width W, optional bias
        w = P(c.weight)
        W = w.shape[0]
        up = np.concatenate([np.zeros((B, W - 1, u.shape[-1])), u], axis=1)
        return sum(up[:, s:s + T] * w[s] for s in range(W)) + (0 if c.bias is None else P(c.bias))

    feats = [x @ P(p.kernel) for p in (m.q_proj, m.k_proj, m.v_proj)]
    if m.convs is not None:
        feats = [conv(f, c) for f, c in zip(feats, m.convs)]
    act = {"silu": silu, "relu": lambda z: np.maximum(z, 0), "elu": lambda z: np.where(z > 0, z + 1, np.exp(z)),
           "identity": lambda z: z}[m.qk_activation]
    norm = {"l2": lambda z: z / np.sqrt((z * z).sum(-1, keepdims=True) + 1e-6),
            "sum": lambda z: z / np.where(z.sum(-1, keepdims=True) == 0, 1, z.sum(-1, keepdims=True))}[m.qk_norm]
    q = norm(act(feats[0]).reshape(B, T, H, K))
    k = norm(act(feats[1]).reshape(B, T, n, H, K))
    v = silu(feats[2]).reshape(B, T, n, HV, V)
    q, k = np.repeat(q, HV // H, axis=2), np.repeat(k, HV // H, axis=3)  # value head i reads q/k head i // G
    beta = sigmoid((x @ P(m.b_proj.kernel)).reshape(B, T, n, HV)) if m.use_beta else np.ones((B, T, n, HV))
    beta = 2 * beta if m.allow_neg_eigval else beta
    gate = None
    if m.use_forget_gate:
        gate = -np.exp(P(m.A_log)) * np.log1p(np.exp(x @ P(m.a_proj.kernel) + P(m.dt_bias)))
    o, _ = np_delta_product(q, k, v, beta, np.zeros((B, HV, K, V)), K ** -0.5, gate)
    o = o / np.sqrt((o * o).mean(-1, keepdims=True) + m.norm.eps) * P(m.norm.scale)
    if m.g_proj is not None:
        o = o * silu((x @ P(m.g_proj.kernel)).reshape(o.shape))
    return o.reshape(B, T, HV * V) @ P(m.o_proj.kernel)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layer_matches_numpy_restatement(rng, x64, name):
    """In float64 (float32 parameters, float64 compute): the chunked layer equals the float64 loop to 1e-10."""
    m = build(name)
    x = rng.standard_normal((2, 13, 16))
    np.testing.assert_allclose(fwd(m, jnp.asarray(x, jnp.float64)), np_layer(m, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow) for c in CONFIGS])
def test_step_equals_parallel(rng, name):
    m = build(name)
    x = jnp.asarray(rng.standard_normal((2, 11, 16)), jnp.float32)
    y, state = fwd_state(m, x, None)
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))
    s = m.init_state(2)
    ys = []
    for t in range(x.shape[1]):
        y_t, s = step(m, x[:, t], s)
        ys.append(y_t)
    np.testing.assert_allclose(jnp.stack(ys, 1), y, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), s, state)


@pytest.mark.parametrize("name", ["deltanet", pytest.param("gated-deltaproduct3", marks=pytest.mark.slow)])
def test_streaming_and_recurrent_method_agree(rng, name):
    m = build(name)
    x = jnp.asarray(rng.standard_normal((2, 19, 16)), jnp.float32)
    y = fwd(m, x)
    y1, s1 = fwd_state(m, x[:, :7], None)
    y2, _ = fwd_state(m, x[:, 7:], s1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    m.method = "recurrent"
    np.testing.assert_allclose(fwd(m, x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, method", [
    ("deltanet", "chunk"), ("gated-deltaproduct3", "recurrent"),
    pytest.param("deltanet", "recurrent", marks=pytest.mark.slow),
    pytest.param("gated-deltaproduct3", "chunk", marks=pytest.mark.slow)])
def test_reset_equals_separate_sequences(rng, name, method):
    m = build(name, method=method)
    x = jnp.asarray(rng.standard_normal((2, 20, 16)), jnp.float32)
    reset = np.zeros((2, 20), bool)
    reset[0, 9] = True  # two packed segments in row 0: [0, 9) and [9, 20); row 1 has a reset at 0 (no-op)
    reset[1, 0] = True
    y = fwd_reset(m, x, jnp.asarray(reset))
    np.testing.assert_allclose(y[0, :9], fwd(m, x[:1, :9])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[0, 9:], fwd(m, x[:1, 9:])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[1], fwd(m, x[1:])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["deltanet", "gated-deltaproduct3"])
def test_padding_mask(rng, name):
    m = build(name)
    x = jnp.asarray(rng.standard_normal((2, 15, 16)), jnp.float32)
    mask = np.ones((2, 15), bool)
    mask[0, :4] = False  # left padding
    mask[1, 12:] = False  # right padding
    y, state = fwd_mask(m, x, jnp.asarray(mask))
    y_left, state_left = fwd_state(m, x[:1, 4:], None)
    np.testing.assert_allclose(y[0, 4:], y_left[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state["h"][0], state_left["h"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[1, :12], fwd(m, x[1:, :12])[0], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(y)[~mask] == 0)


@pytest.mark.parametrize("name", ["deltanet", pytest.param("gated-deltaproduct3", marks=pytest.mark.slow)])
def test_causality_and_gradients(rng, name):
    m = build(name)
    x = jnp.asarray(rng.standard_normal((1, 24, 16)), jnp.float32)
    x2 = x.at[:, 10:].add(1.0)
    np.testing.assert_allclose(fwd(m, x2)[:, :10], fwd(m, x)[:, :10], rtol=1e-6, atol=1e-6)
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(m, x)
    for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads, nnx.Param)):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, path


def test_mixer_protocol_and_errors():
    m = build("deltanet")
    assert isinstance(m, Mixer) and m.causal
    with pytest.raises(ValueError, match=r"x: expected shape"):
        m(jnp.zeros((1, 5, 8)))
    with pytest.raises(TypeError, match=r"num_householder"):  # not a DeltaNet option (use DeltaProduct)
        DeltaNet(16, num_householder=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"num_heads: must divide d_model"):
        DeltaProduct(16, num_heads=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"mask: expected shape"):
        m(jnp.zeros((1, 5, 16)), mask=jnp.ones((1, 4), bool))


def test_new_options_add_parameters_only_when_enabled_and_gated_deltanet_is_a_deltaproduct(rng):
    paths = lambda m: {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))}  # noqa: E731
    base = paths(build("deltanet"))
    assert base == {"q_proj.kernel", "k_proj.kernel", "v_proj.kernel", "b_proj.kernel", "convs.0.weight",
                    "convs.1.weight", "convs.2.weight", "norm.scale", "o_proj.kernel"}
    assert paths(build("deltanet", use_beta=False)) == base - {"b_proj.kernel"}
    assert paths(build("deltanet", conv_bias=True)) == base | {f"convs.{i}.bias" for i in range(3)}
    m = build("deltanet", num_v_heads=4, expand_v=2)
    assert m.v_proj.kernel.shape == (16, 4 * 16) and m.o_proj.kernel.shape == (4 * 16, 16)
    assert m.init_state(3)["h"].shape == (3, 4, 8, 16)
    # Gated DeltaNet = DeltaProduct with one Householder step and the forget gate (same parameters, same output)
    g = GatedDeltaNet(16, num_heads=2, chunk_size=8, rngs=nnx.Rngs(0))
    p = DeltaProduct(16, num_heads=2, num_householder=1, use_forget_gate=True, use_output_gate=True, expand_v=2.0,
                     chunk_size=8, rngs=nnx.Rngs(0))
    for (path, a), (_, b) in zip(*(nnx.to_flat_state(nnx.state(x, nnx.Param)) for x in (g, p))):
        np.testing.assert_array_equal(a[...], b[...], err_msg=str(path))
    x = jnp.asarray(rng.standard_normal((1, 5, 16)), jnp.float32)
    np.testing.assert_array_equal(fwd(g, x), fwd(p, x))


@pytest.mark.parametrize("kwargs, match", [
    (dict(expand_v=1.3), r"expand_v: head_dim·expand_v must be a positive whole number, got 8·1.3"),
    (dict(expand_v=0), r"expand_v"),
    (dict(num_v_heads=3), r"num_v_heads: expected a positive multiple of num_heads=2, got 3"),
    (dict(qk_activation="tanh"), r"qk_activation: expected one of 'silu', 'relu', 'elu', 'identity'"),
    (dict(qk_norm="l1"), r"qk_norm: expected one of 'l2', 'sum'"),
    (dict(conv_size=0, conv_bias=True), r"conv_bias: needs a short convolution"),
    (dict(conv_size=-1), r"conv_size: expected a width >= 1, or 0"),
])
def test_bad_options_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatedDeltaNet(16, num_heads=2, rngs=nnx.Rngs(0), **kwargs)
