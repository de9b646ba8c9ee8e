"""S4D: inits against their closed forms, conv == scan == step, a float64 NumPy loop reference, the
bidirectional kernel, masks, causality, streaming with carried state, and gradients."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads
from scipy.linalg import expm

import ssm
from ssm import S4D
from ssm.layers.params import in_group


def reference(layer, x):
    """float64 NumPy per-step loop of the layer's own parameters: (B, T, H) -> (B, T, H)."""
    A, B, C, dt = (np.asarray(v, np.complex128) for v in layer.ssm())
    dt = dt.real[:, None]
    if layer.discretization == "zoh":
        A_bar = np.exp(A * dt)
        B_bar = (A_bar - 1) / A * B
    else:
        A_bar = (1 + A * dt / 2) / (1 - A * dt / 2)
        B_bar = dt / (1 - A * dt / 2) * B
    D = np.asarray(layer.D[...], np.float64)
    x = np.asarray(x, np.float64)
    Bn, T, H = x.shape
    y = x * D
    state = np.zeros((Bn, H, A.shape[1]), np.complex128)
    for t in range(T):  # forward: y_t += 2 Re C x_t
        state = A_bar * state + B_bar * x[:, t, :, None]
        y[:, t] += 2 * np.einsum("bhn,hn->bh", state, C[0]).real
    if layer.bidirectional:  # backward, strictly anti-causal: y_t += 2 Re C_b x^rev_{t+1}
        state = np.zeros_like(state)
        for t in range(T - 1, -1, -1):
            y[:, t] += 2 * np.einsum("bhn,hn->bh", state, C[1]).real
            state = A_bar * state + B_bar * x[:, t, :, None]
    return y


@nnx.jit(static_argnames=("mode",))
def run(layer, x, mask=None, mode=None):
    return layer(x, mask=mask, mode=mode)


@nnx.jit
def run_carry(layer, x, state):
    return layer(x, initial_state=state, return_state=True)


@nnx.jit
def step(layer, x_t, state):
    return layer.step(x_t, state)


def make(rngs=0, **kw):
    kw.setdefault("state_size", 8)
    return S4D(3, rngs=nnx.Rngs(rngs), **kw)


def inputs(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("init", ssm.init.diagonal.S4D_INITS)
def test_init_eigenvalues_closed_form(init):
    N = 16
    A, B, _, dt = (np.asarray(v) for v in make(init=init, state_size=N).ssm())
    n = np.arange(N // 2)
    closed = {
        "inv": -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1),
        "lin": -0.5 + 1j * np.pi * n,
        "real": -(n + 1.0) + 0j,
    }
    if init == "legs":  # the Im > 0 half of the spectrum of HiPPO-LegS's normal part (a dense eig)
        ev = np.linalg.eigvals(ssm.hippo_legs_normal(N))
        np.testing.assert_allclose(np.sort(A[0].imag), np.sort(ev.imag[ev.imag > 0]), rtol=1e-5)
        np.testing.assert_allclose(A.real, -0.5, rtol=1e-6)
    elif init == "ptd":  # the Im > 0 half of the spectrum of the perturbed HiPPO-LegS A + E (a dense eig)
        lam, V, Vinv = ssm.perturb_then_diagonalize(ssm.hippo_legs(N)[0])
        ev = np.linalg.eigvals(((V * lam) @ Vinv).real)
        ev = ev[ev.imag > 0]
        np.testing.assert_allclose(A[0], ev[np.argsort(ev.imag)], rtol=1e-5)
        np.testing.assert_allclose(B[0], np.linalg.solve(V, ssm.hippo_legs(N)[1])[: N // 2], rtol=1e-5)
    else:
        np.testing.assert_allclose(A, np.broadcast_to(closed[init], A.shape), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(B, 1.0)
    assert np.all(A == A[:1])  # every channel starts from the same A
    assert np.all((dt >= 1e-3 * (1 - 1e-6)) & (dt <= 1e-1 * (1 + 1e-6)))
    assert dt.std() > 0  # one Δ per channel


def test_legs_init_is_the_dense_normal_part_ssm(x64, rng):
    """S4D-LegS with C̃ = (c V)[:N/2] has the kernel of the real SSM (A + PPᵀ, B_HiPPO, c): ZOH by expm."""
    N, L = 8, 20
    layer = S4D(1, state_size=N, init="legs", param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    _, V = ssm.hippo_legs_normal_eig(N)
    c = rng.normal(size=N)
    ct = (c @ V)[: N // 2]
    layer.C[...] = jnp.stack([jnp.real(ct), jnp.imag(ct)], -1)[None, None]
    dt = float(jnp.exp(layer.log_dt[...])[0])
    An, Bh = ssm.hippo_legs_normal(N), ssm.hippo_legs(N)[1]
    Ad = expm(dt * An)
    Bd = np.linalg.solve(An, (Ad - np.eye(N)) @ Bh)
    ref = [c @ np.linalg.matrix_power(Ad, l) @ Bd for l in range(L)]
    np.testing.assert_allclose(layer.kernel(L)[0, 0], ref, rtol=1e-9, atol=1e-12)


def test_ptd_init_is_the_dense_perturbed_hippo_ssm(x64):
    """S4-PTD: with its own random C̃, the layer's kernel is that of the real N-state SSM (A_HiPPO + E, B_HiPPO, c)
    for a real read-out c (recovered from C̃ = c Ṽ), discretized by ZOH with a dense expm."""
    N, L, H = 8, 20, 2
    layer = S4D(H, state_size=N, init="ptd", param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    lam, V, Vinv = ssm.perturb_then_diagonalize(ssm.hippo_legs(N)[0])
    M = ((V * lam) @ Vinv).real  # A + E
    Ct = np.asarray(layer.ssm()[2][0])  # (H, N/2) complex
    Vh = V[:, : N // 2]
    basis = np.concatenate([Vh.real, Vh.imag], axis=1)  # c ↦ [Re cṼ, Im cṼ]: real (N, N), invertible
    c = np.linalg.solve(basis.T, np.concatenate([Ct.real, Ct.imag], axis=1).T).T  # (H, N) real
    np.testing.assert_allclose(c @ Vh, Ct, atol=1e-12)  # C̃ is exactly c Ṽ with a real c
    assert 0.3 < c.std() < 3  # C ~ N(0, 1)
    Bh = ssm.hippo_legs(N)[1]
    K = np.asarray(layer.kernel(L)[0])
    for h in range(H):
        dt = float(jnp.exp(layer.log_dt[...])[h])
        Ad = expm(dt * M)
        Bd = np.linalg.solve(M, (Ad - np.eye(N)) @ Bh)
        ref = [c[h] @ np.linalg.matrix_power(Ad, l) @ Bd for l in range(L)]
        np.testing.assert_allclose(K[h], ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("init", ssm.init.diagonal.S4D_INITS)
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_conv_scan_step_and_float64_reference_agree(init, disc):
    layer = make(init=init, discretization=disc)
    x = inputs((2, 29, 3))
    y_conv = run(layer, x)
    y_scan = run(layer, x, mode="scan")
    state = layer.init_state(2)
    steps = []
    for t in range(x.shape[1]):
        y_t, state = step(layer, x[:, t], state)
        steps.append(y_t)
    ref = reference(layer, x)
    for y in (y_conv, y_scan, jnp.stack(steps, 1)):
        assert y.shape == x.shape and y.dtype == x.dtype
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("mode", ["conv", "scan"])
def test_bidirectional_matches_reference(mode):
    layer = make(bidirectional=True, mode=mode, init="inv")
    assert not layer.causal
    x = inputs((2, 17, 3))
    ref = reference(layer, x)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(ValueError, match="step"):
        layer.step(x[:, 0], layer.init_state(2))


@pytest.mark.parametrize("mode", ["conv", "scan"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_real_outputs(mode, bidirectional):
    layer = make(bidirectional=bidirectional, mode=mode)
    x = inputs((2, 16, 3))
    lengths = jnp.array([16, 11])
    mask = jnp.arange(16)[None] < lengths[:, None]
    y = run(layer, x, mask)
    y_noisy = run(layer, jnp.where(mask[..., None], x, 1e3), mask)  # garbage in the padding
    np.testing.assert_allclose(y_noisy, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[1, :11], run(layer, x[1:, :11])[0], rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(y[1, 11:]) == 0)


@pytest.mark.parametrize("mode", ["conv", "scan"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_segments_with_padding_gaps_match_the_float64_loop(mode, bidirectional):
    """reset (packed rows; the conv mode switches to the scan) and padding anywhere (skipped): each segment's
    real tokens give the float64 loop run on that segment alone, padded outputs are 0."""
    layer = make(bidirectional=bidirectional, mode=mode)
    x = inputs((1, 15, 3))
    reset = np.isin(np.arange(15), [6, 11])[None]
    mask = ~np.isin(np.arange(15), [2, 3, 8, 14])[None]
    y = nnx.jit(lambda m, x, mask, reset: m(x, mask=mask, reset=reset))(layer, x, jnp.asarray(mask),
                                                                         jnp.asarray(reset))
    for idx in ([0, 1, 4, 5], [6, 7, 9, 10], [11, 12, 13]):
        ref = reference(layer, x[:, idx])
        np.testing.assert_allclose(y[:, idx], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.all(np.asarray(y)[~mask] == 0)


def test_step_rescale_is_delta_times_the_factor():
    """step_rescale = r gives the float64 loop of the same layer with log Δ shifted by log r (conv and scan)."""
    a = make(step_rescale=2.0)
    b = make()
    b.log_dt[...] = b.log_dt[...] + jnp.log(2.0)
    x = inputs((2, 9, 3))
    ref = reference(b, x)
    for mode in ("conv", "scan"):
        np.testing.assert_allclose(run(a, x, mode=mode), ref, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(run(make(), x)) - ref).max() > 1e-3


@pytest.mark.parametrize("mode", ["conv", "scan"])
def test_causality(mode):
    layer = make(mode=mode)
    x = inputs((1, 24, 3))
    x2 = x.at[:, 10:].add(inputs((1, 14, 3), seed=5))
    y, y2 = run(layer, x), run(layer, x2)
    np.testing.assert_allclose(y[:, :10], y2[:, :10], rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(y[:, 10:] - y2[:, 10:])).max() > 1e-2


def test_streaming_with_carried_state():
    layer = make()
    x = inputs((2, 30, 3))
    y1, s = run_carry(layer, x[:, :13], layer.init_state(2))
    y2, s = run_carry(layer, x[:, 13:], s)
    np.testing.assert_allclose(jnp.concatenate([y1, y2], 1), run(layer, x), rtol=1e-4, atol=1e-5)
    assert s.shape == (2, 3, 4)


def _loss_and_params():
    layer = make(param_dtype=jnp.float64)
    x = inputs((2, 12, 3)).astype(jnp.float64)
    graphdef, params = nnx.split(layer, nnx.Param)

    @partial(jax.jit, static_argnums=2)
    def loss(params, x, mode):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x, mode=mode)))

    return loss, params, x


def test_gradients_conv_mode_equal_scan_mode(x64):
    loss, params, x = _loss_and_params()
    g_conv = jax.grad(loss, argnums=(0, 1))(params, x, "conv")
    g_scan = jax.grad(loss, argnums=(0, 1))(params, x, "scan")
    for a, b in zip(jax.tree.leaves(g_conv), jax.tree.leaves(g_scan)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    assert all(np.abs(np.asarray(v)).max() > 0 for v in jax.tree.leaves(g_conv))


@pytest.mark.slow
def test_gradients_match_finite_differences(x64):
    loss, params, x = _loss_and_params()
    check_grads(lambda p, x: loss(p, x, "conv"), (params, x), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_dynamics_params_are_marked():
    layer = make()
    marked = {p[-1] for p, _ in nnx.to_flat_state(nnx.state(layer, in_group("ssm")))}
    assert marked == {"log_A_real", "A_imag", "B", "log_dt"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="init"):
        make(init="legt")
    with pytest.raises(ValueError, match="state_size"):
        make(state_size=7)
    with pytest.raises(ValueError, match="x"):
        make()(jnp.zeros((2, 5, 4)))
