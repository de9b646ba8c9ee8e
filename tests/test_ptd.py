"""Perturb-then-diagonalize on HiPPO-LegS: size of E, conditioning, stability, conjugate pairs, and the
PTD paper's central claim (the transfer function converges uniformly to HiPPO's; the normal-part
S4D/S5 initialization's does not), all in float64 NumPy (transfer functions: ssm.analysis.transfer, tested against
a dense solve in tests/test_transfer.py); the same claim for the S4D layer's S4-PTD init (`init="ptd"`)."""

import numpy as np
import pytest
from flax import nnx

import ssm
from ssm.init.ptd import DEFAULTS, optimize_perturbation, ptd_objective
from ssm.analysis.transfer import diagonal_transfer, lower_triangular_transfer


def sup_errors(N, C):
    """sup over ω ∈ [−4N², 4N²] (spacing ≤ 1/4, finer than the resonance width) of |G − G_HiPPO|, per
    column of C (N, k)."""
    A, B = ssm.hippo_legs(N)
    omegas = np.linspace(-4 * N * N, 4 * N * N, 32 * N * N + 1)
    g_hippo = lower_triangular_transfer(A, B, C, omegas)
    lam, V, Vinv = ssm.perturb_then_diagonalize(A)
    lam_n, V_n = ssm.hippo_legs_normal_eig(N)
    err_ptd = np.abs(diagonal_transfer(lam, V, Vinv, B, C, omegas) - g_hippo).max(0)
    err_normal = np.abs(diagonal_transfer(lam_n, V_n, V_n.conj().T, B, C, omegas) - g_hippo).max(0)
    return err_ptd, err_normal


def test_objective_gradient_matches_finite_differences(rng):
    A = ssm.hippo_legs(8)[0]
    E = rng.normal(size=(8, 8)) * 0.3
    f, g = ptd_objective(E.ravel(), A, gamma=10.0, margin=2.5)  # margin active: the penalty is tested too
    for _ in range(3):
        d = rng.normal(size=64)
        h = 1e-6
        fd = (ptd_objective(E.ravel() + h * d, A, 10.0, 2.5)[0] - ptd_objective(E.ravel() - h * d, A, 10.0, 2.5)[0])
        np.testing.assert_allclose(g @ d, fd / (2 * h), rtol=1e-5)


@pytest.mark.parametrize("N", [8, 16, 32, 64])
def test_ptd_hippo_legs_meets_the_paper_operating_point(N):
    A = ssm.hippo_legs(N)[0]
    lam, V, Vinv = ssm.perturb_then_diagonalize(A)
    E = (V * lam) @ Vinv - A
    assert np.abs(E.imag).max() < 1e-8 * np.abs(A).max()  # A + E is real
    assert np.linalg.norm(E.real, 2) / np.linalg.norm(A, 2) <= 0.15
    assert np.linalg.cond(V) <= 20
    np.testing.assert_allclose(Vinv @ V, np.eye(N), atol=1e-10)
    assert lam.real.max() < 0
    h = N // 2  # conjugate pairs, no real eigenvalues: S5's conj-sym halving keeps lam[:h]
    assert np.all(lam[:h].imag > 0)
    np.testing.assert_array_equal(lam[h:], lam[:h].conj())
    np.testing.assert_array_equal(V[:, h:], V[:, :h].conj())


@pytest.mark.parametrize("N", [8, 16, 32, 64])
def test_ptd_transfer_function_is_uniformly_closer_to_hippo(N):
    C = np.random.default_rng(N).normal(size=(N, 4))  # four random read-outs, and C = B (column 4)
    C = np.concatenate([C, ssm.hippo_legs(N)[1][:, None]], axis=1)
    err_ptd, err_normal = sup_errors(N, C)
    assert np.all(err_normal >= 5 * err_ptd), (err_ptd, err_normal)


def test_optimizer_is_deterministic_and_reproduces_the_table():
    A = ssm.hippo_legs(8)[0]
    E1 = optimize_perturbation(A, **DEFAULTS)
    E2 = optimize_perturbation(A, **DEFAULTS)
    np.testing.assert_array_equal(E1, E2)
    lam_t, _, _ = ssm.perturb_then_diagonalize(A)  # from the shipped table
    lam_f, _, _ = ssm.perturb_then_diagonalize(A, use_table=False)
    np.testing.assert_allclose(lam_t, lam_f, rtol=1e-6)


def test_general_matrix_and_seed_changes_result(rng):
    A = np.triu(rng.normal(size=(6, 6)), 1) * 3 - np.diag(np.arange(1, 7.0))  # non-normal, stable
    lam, V, Vinv = ssm.perturb_then_diagonalize(A, seed=1, pairs=False)
    lam2, _, _ = ssm.perturb_then_diagonalize(A, seed=2, pairs=False)
    assert lam.real.max() < 0 and np.linalg.cond(V) < 20
    assert not np.allclose(np.sort_complex(lam), np.sort_complex(lam2))


def test_rejects_non_square():
    with pytest.raises(ValueError, match="A: expected a square"):
        ssm.perturb_then_diagonalize(np.ones((3, 4)))


def layer_transfer(A, B, C, omegas):
    """Continuous transfer function of each S4D channel from its stored modes: (H, N/2) complex A, B, C ->
    (W, H). The real system has the N/2 conjugate modes too: G = Σ_n R_n/(iω − A_n) + R̄_n/(iω − Ā_n),
    R = C B."""
    R = C * B
    s = 1j * np.asarray(omegas)[:, None, None]
    return (R / (s - A) + R.conj() / (s - A.conj())).sum(-1)


@pytest.mark.parametrize("N", [8, 16, 32, 64])
def test_s4_ptd_layer_transfer_function_is_uniformly_close_to_hippo(N):
    """The S4D layer with init="ptd" (S4-PTD), as initialized (float32 parameters, its own random C̃ = cṼ per
    channel): per channel, sup_ω |G_layer − G_HiPPO| with the same real read-out c stays ≤ 2 for N ≤ 64,
    while the S4D-LegS layer (normal-part init) with the same c is ≥ 5× farther (as for S5-PTD above)."""
    H = 3
    ptd = ssm.S4D(H, state_size=N, init="ptd", rngs=nnx.Rngs(N))
    legs = ssm.S4D(H, state_size=N, init="legs", rngs=nnx.Rngs(N))
    A_p, B_p, C_p, _ = (np.asarray(v, np.complex128) for v in ptd.ssm())
    A_l, B_l, _, _ = (np.asarray(v, np.complex128) for v in legs.ssm())
    _, V, _ = ssm.perturb_then_diagonalize(ssm.hippo_legs(N)[0])
    Vh = V[:, : N // 2]
    basis = np.concatenate([Vh.real, Vh.imag], axis=1)
    c = np.linalg.solve(basis.T, np.concatenate([C_p[0].real, C_p[0].imag], axis=1).T).T  # C̃ = c Ṽ, c real
    np.testing.assert_allclose(c @ Vh, C_p[0], atol=1e-5)
    _, V_n = ssm.hippo_legs_normal_eig(N)
    C_l = (c @ V_n)[:, : N // 2]  # the same read-out for the normal-part system
    A, B = ssm.hippo_legs(N)
    omegas = np.linspace(-4 * N * N, 4 * N * N, 32 * N * N + 1)
    g_hippo = lower_triangular_transfer(A, B, c.T, omegas)  # (W, H)
    err_ptd = np.abs(layer_transfer(A_p, B_p, C_p[0], omegas) - g_hippo).max(0)
    err_legs = np.abs(layer_transfer(A_l, B_l, C_l, omegas) - g_hippo).max(0)
    assert np.all(err_ptd <= 2.0), err_ptd
    assert np.all(err_legs >= 5 * err_ptd), (err_ptd, err_legs)
