"""HiPPO-LegS and its normal-plus-low-rank (NPLR) pieces, the initializations of S4D-LegS and S5.

HiPPO-LegS (Gu et al. 2020; S4 appendix C.1), n, k = 0..N−1:
    A_nk = −√(2n+1)·√(2k+1) (n > k),   A_nn = −(n+1),   0 (n < k);      B_n = √(2n+1).
With P_n = √(n + ½), the normal part A + P Pᵀ = −½ I + S (S skew-symmetric) is unitarily diagonalizable
with eigenvalues −½ ± iω_k; the eigenvectors of A itself are exponentially ill-conditioned, which is why
S4D/S5 drop the low-rank term and PTD (`ssm.init.ptd`) perturbs instead.

Everything here is float64 NumPy: initializers run once, outside `jit`.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import check_positive_int


def hippo_legs(N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS state matrix and input vector: A (N, N) float64, B (N,) float64."""
    check_positive_int("N", N)
    q = np.sqrt(2.0 * np.arange(N) + 1.0)
    A = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(N) + 1.0)
    return A, q.copy()


def hippo_legs_low_rank(N: int) -> np.ndarray:
    """The rank-1 correction P (N,), P_n = √(n + ½), such that A + P Pᵀ is normal."""
    check_positive_int("N", N)
    return np.sqrt(np.arange(N) + 0.5)


def hippo_legs_normal(N: int) -> np.ndarray:
    """The normal part A + P Pᵀ = −½ I + skew-symmetric, (N, N) float64."""
    A, _ = hippo_legs(N)
    P = hippo_legs_low_rank(N)
    return A + np.outer(P, P)


def conj_pair_order(Lambda: np.ndarray, V: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Reorder an eigendecomposition of a real matrix into [pairs with Im > 0, their conjugates, reals].

    The conjugate half is set to the exact conjugate of the first half, so keeping the first
    (#complex)/2 modes and taking 2·Re of the output (S4D/S5's conjugate symmetry) is exact.
    Within each group modes are sorted by imaginary part (then real part). Columns of V are unit-norm.
    """
    V = V / np.linalg.norm(V, axis=0)
    upper = np.flatnonzero(Lambda.imag > tol)
    real = np.flatnonzero(np.abs(Lambda.imag) <= tol)
    upper = upper[np.lexsort((Lambda[upper].real, Lambda[upper].imag))]
    real = real[np.argsort(Lambda[real].real)[::-1]]
    lam_u, V_u = Lambda[upper], V[:, upper]
    V_r = V[:, real]
    if V_r.size:  # a real eigenvalue's eigenvector is real up to a phase: remove the phase
        pivot = V_r[np.argmax(np.abs(V_r), axis=0), np.arange(V_r.shape[1])]
        V_r = (V_r * (np.abs(pivot) / pivot)).real
    lam = np.concatenate([lam_u, lam_u.conj(), Lambda[real].real.astype(Lambda.dtype)])
    Vs = np.concatenate([V_u, V_u.conj(), V_r.astype(V.dtype)], axis=1)
    if lam.shape[0] != Lambda.shape[0]:
        raise ValueError("spectrum is not closed under conjugation; is the matrix real?")
    return lam, Vs


def hippo_legs_normal_eig(N: int) -> tuple[np.ndarray, np.ndarray]:
    """Unitary diagonalization of the normal part: A + P Pᵀ = V diag(Λ) Vᴴ.

    Returns Λ (N,) complex128 (Re Λ = −½) and unitary V (N, N) complex128, ordered by `conj_pair_order`:
    the first N//2 eigenvalues have Im > 0, the next N//2 are their conjugates (N even). This is the
    S4D-LegS / S5 initialization.
    """
    S = hippo_legs_normal(N)
    # −½I + skew: diagonalize the Hermitian −i·(S + ½I) for an exactly unitary V (as S4/S5 do).
    w, V = np.linalg.eigh(-1j * (S + 0.5 * np.eye(N)))
    Lambda = -0.5 + 1j * w
    Lambda, V = conj_pair_order(Lambda, V)
    return Lambda, V
