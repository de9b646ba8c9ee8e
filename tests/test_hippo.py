"""HiPPO-LegS, its normal part, discretization and the S4D kernel against closed forms / float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm
from ssm.ops.discretize import s4d_kernel


@pytest.mark.parametrize("N", [1, 5, 16])
def test_hippo_legs_matches_definition(N):
    A, B = ssm.hippo_legs(N)
    ref = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                ref[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                ref[n, k] = -(n + 1)
    np.testing.assert_array_equal(A, ref)
    np.testing.assert_allclose(B, np.sqrt(2 * np.arange(N) + 1), rtol=0, atol=0)


@pytest.mark.parametrize("N", [4, 7, 32])
def test_normal_part_is_half_identity_plus_skew(N):
    S = ssm.hippo_legs_normal(N) + 0.5 * np.eye(N)
    np.testing.assert_allclose(S, -S.T, atol=1e-12)
    P = ssm.hippo_legs_low_rank(N)
    np.testing.assert_allclose(ssm.hippo_legs_normal(N) - np.outer(P, P), ssm.hippo_legs(N)[0], atol=1e-12)


@pytest.mark.parametrize("N", [2, 8, 33, 64])
def test_normal_part_unitary_diagonalization(N):
    Lambda, V = ssm.hippo_legs_normal_eig(N)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(N), atol=1e-12)
    np.testing.assert_allclose(V @ np.diag(Lambda) @ V.conj().T, ssm.hippo_legs_normal(N), atol=1e-10 * N)
    np.testing.assert_allclose(Lambda.real, -0.5, atol=1e-12)
    h = N // 2  # ordering: [Im > 0 half, exact conjugates, (one real mode for odd N)]
    assert np.all(Lambda[:h].imag > 0)
    np.testing.assert_array_equal(Lambda[h:2 * h], Lambda[:h].conj())
    np.testing.assert_array_equal(V[:, h:2 * h], V[:, :h].conj())
    ref = np.linalg.eigvals(ssm.hippo_legs_normal(N))  # independent (non-symmetric) eigen-solver
    np.testing.assert_allclose(np.sort(Lambda.imag), np.sort(ref.imag), atol=1e-9 * N * N)
    np.testing.assert_allclose(ref.real, -0.5, atol=1e-9 * N)


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_discretize_closed_form(method, rng):
    P, H = 6, 3
    lam = -rng.uniform(0.1, 2, P) + 1j * rng.normal(size=P) * 5
    B = rng.normal(size=(P, H)) + 1j * rng.normal(size=(P, H))
    dt = rng.uniform(1e-3, 1e-1, P)
    lam_bar, B_bar = ssm.discretize(jnp.asarray(lam, jnp.complex64), jnp.asarray(B, jnp.complex64),
                                    jnp.asarray(dt, jnp.float32), method)
    if method == "zoh":
        ref_lam = np.exp(lam * dt)
        ref_B = ((ref_lam - 1) / lam)[:, None] * B
    else:
        ref_lam = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        ref_B = (dt / (1 - dt * lam / 2))[:, None] * B
    np.testing.assert_allclose(lam_bar, ref_lam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B_bar, ref_B, rtol=1e-5, atol=1e-6)
    # leading dims broadcast: a stack of two systems equals each one alone
    lam2, B2 = ssm.discretize(jnp.stack([lam, 2 * lam]), jnp.stack([B, B]), jnp.stack([dt, dt]), method)
    lam1, B1 = ssm.discretize(2 * lam, B, dt, method)
    np.testing.assert_allclose(lam2[1], lam1, rtol=1e-12)
    np.testing.assert_allclose(B2[1], B1, rtol=1e-12)


def test_discretize_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        ssm.discretize(jnp.ones(2), jnp.ones((2, 1)), jnp.ones(2), "euler")


def _vandermonde_kernel(A, B, C, dt, L, method):
    """float64 NumPy: K[h, l] = 2 Re Σ_n C B̄ Ā^l with an explicit Vandermonde matrix."""
    dtA = A * dt[:, None]
    if method == "zoh":
        A_bar = np.exp(dtA)
        B_bar = (A_bar - 1) / A * B
    else:
        A_bar = (1 + dtA / 2) / (1 - dtA / 2)
        B_bar = dt[:, None] / (1 - dtA / 2) * B
    vander = A_bar[:, :, None] ** np.arange(L)  # (H, N, L)
    return 2 * np.einsum("hn,hnl->hl", C * B_bar, vander).real


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize("L,chunk", [(1, 4), (37, 8), (64, 64), (100, 256)])
def test_s4d_kernel_equals_vandermonde_sum(x64, rng, method, L, chunk):
    H, N = 3, 5
    A = -rng.uniform(0.1, 1.0, (H, N)) + 1j * rng.uniform(0, 20, (H, N))
    B = rng.normal(size=(H, N)) + 1j * rng.normal(size=(H, N))
    C = rng.normal(size=(H, N)) + 1j * rng.normal(size=(H, N))
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))
    K = s4d_kernel(jnp.asarray(A), jnp.asarray(B), jnp.asarray(C), jnp.asarray(dt), L, method, chunk=chunk)
    assert K.shape == (H, L) and K.dtype == jnp.float64
    np.testing.assert_allclose(K, _vandermonde_kernel(A, B, C, dt, L, method), rtol=1e-10, atol=1e-12)


def _all_shapes(jaxpr):
    """Every intermediate shape in a (closed) jaxpr, including sub-jaxprs (scan/map/checkpoint bodies)."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield tuple(getattr(v.aval, "shape", ()))
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _all_shapes(getattr(inner, "jaxpr", inner))


def test_s4d_kernel_never_materializes_H_N_L():
    H, N, L = 4, 8, 4096
    args = (jnp.full((H, N), -0.5 + 1j), jnp.ones((H, N), jnp.complex64), jnp.ones((H, N), jnp.complex64),
            jnp.full((H,), 0.01))

    def loss(A, B, C, dt):
        return jnp.sum(s4d_kernel(A, B, C, dt, L, chunk=64) ** 2)

    for fn in (loss, jax.grad(loss, argnums=(0, 1, 2, 3))):
        sizes = [int(np.prod(s)) for s in _all_shapes(jax.make_jaxpr(fn)(*args).jaxpr)]
        assert max(sizes) <= max(H * N * 64, H * L), max(sizes)  # O(H·N·(L/chunk + chunk)) and the output
