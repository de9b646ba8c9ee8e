"""Perturb-then-diagonalize (PTD; Yu, Nigmetov, Morozov, Mahoney, Erichson, ICLR 2024).

HiPPO-LegS is non-normal: its exact eigenvectors have condition number ~2^N, so S4D/S5 diagonalize the
normal part A + PPᵀ instead (a rank-1 change of size ~N²/2 whose transfer function has resonance spikes).
PTD instead finds a *small* real E such that A + E = V diag(Λ) V⁻¹ with a well-conditioned V, and uses
(Λ, V⁻¹B, CV): a backward-stable approximate diagonalization of A itself.

Optimization (float64 NumPy + SciPy L-BFGS): minimize over real E

    f(E) = κ_F(V)/N + γ ‖E‖_F² / ‖A‖_F² + ρ Σ_i max(0, Re λ_i + margin)²

where V has unit columns, so κ_F(V) = ‖V‖_F ‖V⁻¹‖_F = √N ‖V⁻¹‖_F (≥ N; a smooth surrogate for κ_2).
`np.linalg.eig` has no derivative, so the gradient uses first-order eigen-perturbation theory: for
A + E = V Λ V⁻¹ with distinct eigenvalues and dM = V⁻¹ dE V,
    dλ_i = dM_ii,    dV = V (F ∘ dM),    F_ij = 1 / (λ_j − λ_i) (i ≠ j), F_ii = 0,
so for a real-valued g(V, λ) with Wirtinger gradients G_V, G_λ the gradient with respect to the real E is
    ∇_E g = Re( V⁻ᴴ [ F̄ ∘ (Vᴴ G_V) + diag(G_λ) ] Vᴴ ).
E stays real, so the spectrum of A + E is closed under conjugation. The start is a small random
skew-symmetric E whose spectrum has no real eigenvalues (N even): eigenvalues can only become real by
colliding on the real axis, where V is defective and κ → ∞, so the descent keeps all of them in complex
pairs and S4D/S5's conjugate-symmetric halving applies. Seeds are tried in a fixed order (deterministic).

HiPPO-LegS results for the default settings are cached in `ptd_legs.npz` (the perturbation E per N);
regenerate with `python -m ssm.init.ptd_table 8 16 32 64 ...`.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from scipy.optimize import minimize

from ssm.init.hippo import conj_pair_order, hippo_legs

TABLE_PATH = os.path.join(os.path.dirname(__file__), "ptd_legs.npz")
DEFAULTS = dict(gamma=10.0, init_scale=0.02, seed=0, max_iter=2000, margin=0.5, pairs=True)


def _eig_unit(M):
    lam, V = np.linalg.eig(M)
    return lam, V / np.linalg.norm(V, axis=0)


def ptd_objective(e, A, gamma, margin, penalty=100.0):
    """f(E) above and its gradient with respect to E, both for the flattened real E (N*N,)."""
    N = A.shape[0]
    E = e.reshape(N, N)
    lam, V = _eig_unit(A + E)
    W = np.linalg.inv(V)
    g = np.sum(np.abs(W) ** 2)  # ‖V⁻¹‖_F²
    kappa = np.sqrt(g / N)  # κ_F(V) / N
    # Wirtinger gradient of κ_F/N w.r.t. V (d‖W‖² = −2 Re<Wᴴ W Wᴴ, dV>), projected onto unit columns.
    G_V = -(W.conj().T @ W @ W.conj().T) / np.sqrt(g * N)
    G_V = G_V - V * np.real(np.sum(V.conj() * G_V, axis=0))
    violation = np.maximum(lam.real + margin, 0.0)
    G_lam = 2.0 * penalty * violation  # d/d Re λ of the stability penalty
    diff = lam[None, :] - lam[:, None]
    np.fill_diagonal(diff, 1.0)
    F = 1.0 / diff
    np.fill_diagonal(F, 0.0)
    inner = F.conj() * (V.conj().T @ G_V) + np.diag(G_lam)
    grad = np.real(W.conj().T @ inner @ V.conj().T)
    scale = np.sum(A ** 2)
    f = kappa + gamma * np.sum(E ** 2) / scale + penalty * np.sum(violation ** 2)
    grad = grad + 2.0 * gamma * E / scale
    return f, grad.ravel()


def _n_real(lam, tol=1e-9):
    return int(np.sum(np.abs(lam.imag) <= tol))


def optimize_perturbation(A, *, gamma=DEFAULTS["gamma"], init_scale=DEFAULTS["init_scale"],
                          seed=DEFAULTS["seed"], max_iter=DEFAULTS["max_iter"], margin=DEFAULTS["margin"],
                          pairs=DEFAULTS["pairs"], attempts=16) -> np.ndarray:
    """The PTD perturbation E (N, N) float64 for a real A (see the module docstring)."""
    A = np.asarray(A, np.float64)
    N = A.shape[0]
    want_real = N % 2  # an odd-sized real matrix keeps one real eigenvalue
    paired = (lambda lam: _n_real(lam) == want_real) if pairs else (lambda lam: True)
    best = None
    for attempt in range(attempts):
        rng = np.random.default_rng([seed, attempt])
        K = rng.standard_normal((N, N))
        K = K - K.T
        scale = init_scale * 2.0 ** (attempt // 4)  # small matrices may need a larger start to pair up
        E0 = K * (scale * np.linalg.norm(A) / np.linalg.norm(K))
        if not paired(np.linalg.eigvals(A + E0)):
            continue
        res = minimize(ptd_objective, E0.ravel(), args=(A, gamma, margin), jac=True, method="L-BFGS-B",
                       options=dict(maxiter=max_iter))
        E = res.x.reshape(N, N)
        lam = np.linalg.eigvals(A + E)
        ok = paired(lam) and lam.real.max() < 0
        if ok:
            return E
        if best is None or res.fun < best[0]:
            best = (res.fun, E)
    if best is None:
        raise RuntimeError("perturb_then_diagonalize: no start with a conjugate-paired spectrum was found")
    warnings.warn("perturb_then_diagonalize: no run ended with a stable, conjugate-paired spectrum; "
                  "returning the lowest-objective result", RuntimeWarning, stacklevel=2)
    return best[1]


def _table_lookup(A, options):
    N = A.shape[0]
    if options != DEFAULTS or not os.path.exists(TABLE_PATH):
        return None
    if not np.array_equal(A, hippo_legs(N)[0]):
        return None
    with np.load(TABLE_PATH) as table:
        key = f"E_{N}"
        return table[key] if key in table else None


def perturb_then_diagonalize(A, *, gamma: float = DEFAULTS["gamma"], init_scale: float = DEFAULTS["init_scale"],
                             seed: int = DEFAULTS["seed"], max_iter: int = DEFAULTS["max_iter"],
                             margin: float = DEFAULTS["margin"], pairs: bool = DEFAULTS["pairs"],
                             use_table: bool = True):
    """Approximately diagonalize a real (non-normal) A: A + E = V diag(Λ) V⁻¹ with small E, small κ(V).

    Args:
      A: (N, N) real matrix, e.g. `ssm.hippo_legs(N)[0]`.
      gamma: weight of ‖E‖_F²/‖A‖_F² against κ_F(V)/N (larger: smaller E, worse-conditioned V).
      init_scale: ‖E₀‖_F/‖A‖_F of the random skew-symmetric start.
      seed: seeds the starts (deterministic).
      max_iter: L-BFGS iterations.
      margin: eigenvalues are pushed to Re λ ≤ −margin (stability).
      pairs: require a spectrum of conjugate pairs only (one real eigenvalue for odd N), as S5's conj-sym
        halving needs; starts that do not have one are skipped. Set False for a general matrix.
      use_table: for HiPPO-LegS with default options, use the shipped cache of E when it has this N.

    Returns:
      (Lambda (N,), V (N, N), Vinv (N, N)), complex128 NumPy, ordered by `ssm.init.hippo.conj_pair_order`
      (for even N: the first N/2 eigenvalues have Im > 0 and the next N/2 are their exact conjugates).
    """
    A = np.asarray(A, np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A: expected a square (N, N) matrix, got shape {A.shape}")
    options = dict(gamma=gamma, init_scale=init_scale, seed=seed, max_iter=max_iter, margin=margin, pairs=pairs)
    E = _table_lookup(A, options) if use_table else None
    if E is None:
        E = optimize_perturbation(A, **options)
    Lambda, V = conj_pair_order(*np.linalg.eig(A + E))
    return Lambda, V, np.linalg.inv(V)
