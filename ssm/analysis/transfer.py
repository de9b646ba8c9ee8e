"""Continuous-time transfer functions and impulse responses of (dense or diagonal) SSMs, float64 NumPy.

Used to compare initializations without training (PTD paper; S4D paper §4): the dense HiPPO-LegS system
(A, B) against a diagonal one (Λ, V, V⁻¹) that approximates it.

    G(iω) = C (iωI − A)⁻¹ B            transfer function (frequency response)
    K(t)  = exp(tA) B                  impulse response of every state ("basis functions"), y = C K(t)
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ssm.checks import check_ndim


def lower_triangular_transfer(A, B, C, omegas):
    """G(iω) = C (iωI − A)⁻¹ B for a lower-triangular A (N, N) such as HiPPO-LegS, by forward substitution.

    Args: A (N, N), B (N,), C (N,) or (N, k), omegas (W,). Returns (W,) or (W, k) complex128.
    """
    A = np.asarray(A)
    if np.any(np.triu(A, 1)):
        raise ValueError("A: expected a lower-triangular matrix (use a dense solve otherwise)")
    N = A.shape[0]
    s = 1j * np.asarray(omegas, np.float64)
    X = np.zeros((s.size, N), np.complex128)
    for n in range(N):
        X[:, n] = (B[n] + X[:, :n] @ A[n, :n]) / (s - A[n, n])
    return X @ C


def diagonal_transfer(Lambda, V, Vinv, B, C, omegas, chunk: int = 4096):
    """G(iω) = (C V) diag(1/(iω − Λ)) (V⁻¹ B) of the diagonalized system A ≈ V diag(Λ) V⁻¹.

    Args: Lambda (N,), V (N, N), Vinv (N, N), B (N,), C (N,) or (N, k), omegas (W,). Returns (W,) or (W, k).
    """
    check_ndim("Lambda", Lambda, 1, "(N,)")
    weights = (V * (Vinv @ B)).T @ C  # residue of each pole: (N,) or (N, k)
    omegas = np.asarray(omegas, np.float64)
    out = [(1.0 / (1j * w[:, None] - Lambda[None])) @ weights
           for w in np.array_split(omegas, max(1, omegas.size // chunk))]
    return np.concatenate(out)


def dense_impulse_response(A, B, t):
    """K(t) = exp(tA) B on a uniform grid t (L,) starting at 0, by repeated exact steps exp(Δt·A): (L, N)."""
    t = np.asarray(t, np.float64)
    step = scipy.linalg.expm((t[1] - t[0]) * np.asarray(A)) if t.size > 1 else None
    x, out = np.asarray(B, np.float64).copy(), []
    for _ in range(t.size):
        out.append(x)
        x = step @ x if step is not None else x
    return np.stack(out)


def diagonal_impulse_response(Lambda, V, Vinv, B, t):
    """K(t) = V exp(tΛ) V⁻¹ B (real part; the spectrum is closed under conjugation): (L, N)."""
    t = np.asarray(t, np.float64)
    return ((np.exp(t[:, None] * Lambda[None]) * (Vinv @ B)[None]) @ V.T).real
