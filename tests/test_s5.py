"""S5 / S5-PTD: a float64 NumPy per-step loop reference, the step loop == the parallel call, the
initialization (blocks, conjugate pairs, B̃ = V⁻¹B), bidirectional padding, clip_eigs, step_rescale,
causality, streaming and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import ssm
from ssm import S5
from ssm.layers.params import in_group


def reference(layer, x):
    """float64 NumPy per-step loop of the layer's own parameters: (B, T, H) -> (B, T, H)."""
    Lam, B, C, dt = (np.asarray(v, np.complex128) for v in layer.ssm())
    dt = dt.real
    if layer.discretization == "zoh":
        Lam_bar = np.exp(Lam * dt)
        B_bar = ((Lam_bar - 1) / Lam)[:, None] * B
    else:
        Lam_bar = (1 + Lam * dt / 2) / (1 - Lam * dt / 2)
        B_bar = (dt / (1 - Lam * dt / 2))[:, None] * B
    k = 2.0 if layer.conj_sym else 1.0
    x = np.asarray(x, np.float64)
    Bn, T, H = x.shape
    y = x * np.asarray(layer.D[...], np.float64)
    directions = [(0, range(T))] + ([(1, range(T - 1, -1, -1))] if layer.bidirectional else [])
    for d, times in directions:  # the reverse scan includes the current token (S5 convention)
        state = np.zeros((Bn, Lam.shape[0]), np.complex128)
        for t in times:
            state = Lam_bar * state + x[:, t] @ B_bar.T
            y[:, t] += k * (state @ C[d].T).real
    return y


@nnx.jit
def run(layer, x, mask=None):
    return layer(x, mask=mask)


@nnx.jit
def run_reset(layer, x, reset):
    return layer(x, reset=reset)


@nnx.jit
def run_carry(layer, x, state):
    return layer(x, initial_state=state, return_state=True)


@nnx.jit
def step(layer, x_t, state):
    return layer.step(x_t, state)


def make(**kw):
    kw.setdefault("state_size", 8)
    return S5(3, rngs=nnx.Rngs(kw.pop("seed", 0)), **kw)


def inputs(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


CONFIGS = [  # (init, discretization, conj_sym, blocks, bidirectional, C_init)
    ("s5", "zoh", True, 1, False, "trunc_standard_normal"),
    ("s5-ptd", "bilinear", False, 2, False, "lecun_normal"),
    ("s5-ptd", "zoh", True, 2, True, "complex_normal"),
    ("s5", "bilinear", False, 1, True, "trunc_standard_normal"),
    ("s5-ptd", "zoh", True, 4, False, "trunc_standard_normal"),
]


@pytest.mark.parametrize("init,disc,conj_sym,blocks,bidirectional,C_init", CONFIGS)
def test_layer_equals_float64_loop(init, disc, conj_sym, blocks, bidirectional, C_init):
    layer = make(init=init, discretization=disc, conj_sym=conj_sym, blocks=blocks,
                 bidirectional=bidirectional, C_init=C_init)
    x = inputs((2, 23, 3))
    y = run(layer, x)
    ref = reference(layer, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("conj_sym,blocks,disc", [(True, 1, "zoh"), (False, 2, "zoh"), (True, 2, "bilinear"),
                                                   (False, 1, "bilinear")])
def test_step_loop_equals_parallel_call(conj_sym, blocks, disc):
    layer = make(conj_sym=conj_sym, blocks=blocks, discretization=disc)
    assert layer.causal
    x = inputs((2, 19, 3))
    state = layer.init_state(2)
    assert state.shape == (2, 4 if conj_sym else 8)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = step(layer, x[:, t], state)
        ys.append(y_t)
    y, final = layer(x, return_state=True)
    np.testing.assert_allclose(jnp.stack(ys, 1), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state, final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("init", ["s5", "s5-ptd"])
@pytest.mark.parametrize("conj_sym", [True, False])
def test_initialization_blocks_and_input_matrix(x64, init, conj_sym):
    P, J, H = 16, 2, 3
    layer = S5(H, state_size=P, blocks=J, init=init, conj_sym=conj_sym, param_dtype=jnp.float64,
               rngs=nnx.Rngs(0))
    Lam, Bt, _, dt = (np.asarray(v) for v in layer.ssm())
    size = P // J
    if init == "s5":
        A_block = ssm.hippo_legs_normal(size)
        ref, V, Vinv = *ssm.hippo_legs_normal_eig(size), None
        Vinv = V.conj().T
    else:
        A_block = ssm.hippo_legs(size)[0]
        ref, V, Vinv = ssm.perturb_then_diagonalize(A_block)
        np.testing.assert_allclose((V * ref) @ Vinv, A_block, atol=0.15 * np.linalg.norm(A_block, 2))
    ev = np.linalg.eigvals((V * ref) @ Vinv)  # independent check: the spectrum of the real block matrix
    keep = size // 2 if conj_sym else size
    assert Lam.shape == (J * keep,) and dt.shape == (J * keep,)
    np.testing.assert_allclose(Lam.reshape(J, keep), np.broadcast_to(ref[:keep], (J, keep)), rtol=1e-6)
    np.testing.assert_allclose(np.sort(ref.imag), np.sort(ev.imag), atol=1e-8 * size * size)
    assert np.all(Lam.real < 0)
    if conj_sym:
        assert np.all(Lam.imag > 0)
    # B̃ = V⁻¹ B for a real B: mapping back with V (and the conjugate half) gives a real matrix
    Bt = Bt.reshape(J, keep, H)
    for j in range(J):
        B_back = V[:, :keep] @ Bt[j]
        B_back = 2 * B_back.real if conj_sym else B_back
        assert np.abs(np.imag(B_back)).max() < 1e-10
        assert 0.1 < np.std(np.real(B_back)) * np.sqrt(P) < 3  # lecun normal: std 1/√P


@pytest.mark.parametrize("lengths", [[16, 10], [16, 1]])
def test_bidirectional_padding_never_leaks(lengths):
    layer = make(bidirectional=True)
    assert not layer.causal
    x = inputs((2, 16, 3))
    mask = jnp.arange(16)[None] < jnp.array(lengths)[:, None]
    y = run(layer, x, mask)
    y_noisy = run(layer, jnp.where(mask[..., None], x, 1e3), mask)
    np.testing.assert_allclose(y_noisy, y, rtol=1e-5, atol=1e-5)
    n = lengths[1]
    np.testing.assert_allclose(y[1, :n], run(layer, x[1:, :n])[0], rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(y[1, n:]) == 0)


def test_left_padding_bidirectional():
    layer = make(bidirectional=True)
    x = inputs((1, 12, 3))
    mask = jnp.arange(12)[None] >= 5
    y = run(layer, jnp.where(mask[..., None], x, -7.0), mask)
    np.testing.assert_allclose(y[0, 5:], run(layer, x[:, 5:])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_reset_separates_packed_sequences(bidirectional):
    layer = make(bidirectional=bidirectional, blocks=2)
    x = inputs((1, 15, 3))
    reset = (jnp.arange(15) == 6)[None] | (jnp.arange(15) == 11)[None]
    y = run_reset(layer, x, reset)
    parts = [run(layer, x[:, a:b]) for a, b in [(0, 6), (6, 11), (11, 15)]]
    np.testing.assert_allclose(y, jnp.concatenate(parts, 1), rtol=1e-4, atol=1e-5)


def test_clip_eigs_and_step_rescale():
    layer = make(clip_eigs=True)
    layer.Lambda_re[...] = jnp.full_like(layer.Lambda_re[...], 0.5)  # unstable, e.g. after an update
    Lam_bar, _, _ = layer.discrete()
    dt = np.exp(np.asarray(layer.log_dt[...]))
    np.testing.assert_allclose(np.abs(Lam_bar), np.exp(-1e-4 * dt), rtol=1e-6)
    a, b = make(step_rescale=2.0), make()
    b.log_dt[...] = b.log_dt[...] + jnp.log(2.0)
    x = inputs((1, 9, 3))
    np.testing.assert_allclose(run(a, x), run(b, x), rtol=1e-5, atol=1e-6)


def test_causality_and_streaming():
    layer = make(blocks=2)
    x = inputs((2, 20, 3))
    x2 = x.at[:, 8:].add(1.0)
    y, y2 = run(layer, x), run(layer, x2)
    np.testing.assert_allclose(y[:, :8], y2[:, :8], rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(y[:, 8:] - y2[:, 8:])).max() > 1e-3
    y1, s = run_carry(layer, x[:, :7], layer.init_state(2))
    y2, _ = run_carry(layer, x[:, 7:], s)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [pytest.param(False, marks=pytest.mark.slow), True])
def test_gradients_match_finite_differences(x64, bidirectional):
    layer = make(bidirectional=bidirectional, blocks=2, param_dtype=jnp.float64)
    x = inputs((2, 10, 3)).astype(jnp.float64)
    graphdef, params = nnx.split(layer, nnx.Param)

    @jax.jit
    def loss(params, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)))

    grads = jax.grad(loss)(params, x)
    assert all(np.abs(np.asarray(v)).max() > 0 for v in jax.tree.leaves(grads))
    check_grads(loss, (params, x), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_dynamics_params_are_marked():
    marked = {p[-1] for p, _ in nnx.to_flat_state(nnx.state(make(), in_group("ssm")))}
    assert marked == {"Lambda_re", "Lambda_im", "B", "log_dt"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="blocks"):
        make(state_size=8, blocks=3)
    with pytest.raises(ValueError, match="even block size"):
        make(state_size=6, blocks=2)
    with pytest.raises(ValueError, match="C_init"):
        make(C_init="zeros")
    with pytest.raises(ValueError, match="step"):
        make(bidirectional=True).step(jnp.zeros((1, 3)), jnp.zeros((1, 4), jnp.complex64))


def test_abstract_init_for_checkpoint_restore():
    """nnx.eval_shape builds both layers without concrete arrays (orbax restores into this)."""
    for build in (lambda: S5(8, state_size=16, blocks=2, bidirectional=True, rngs=nnx.Rngs(0)),
                  lambda: ssm.S4D(8, state_size=16, rngs=nnx.Rngs(0))):
        abstract = nnx.eval_shape(build)
        concrete = build()
        shapes = jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(abstract, nnx.Param))
        assert shapes == jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(concrete, nnx.Param))
