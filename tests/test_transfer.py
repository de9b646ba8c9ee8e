"""ssm.analysis.transfer against dense float64 references (np.linalg.solve, scipy expm at each t)."""

import numpy as np
import pytest
import scipy.linalg

import ssm
from ssm.analysis.transfer import (dense_impulse_response, diagonal_impulse_response, diagonal_transfer,
                          lower_triangular_transfer)


def test_transfer_functions_match_dense_solve(rng):
    A, B = ssm.hippo_legs(6)
    C = rng.normal(size=(6, 2))
    w = np.array([-50.0, 0.3, 7.0])
    ref = np.array([C.T @ np.linalg.solve(1j * x * np.eye(6) - A, B) for x in w])
    np.testing.assert_allclose(lower_triangular_transfer(A, B, C, w), ref, rtol=1e-12)
    lam, V = np.linalg.eig(A)  # distinct eigenvalues −(n+1): diagonalizable
    np.testing.assert_allclose(diagonal_transfer(lam, V, np.linalg.inv(V), B, C, w), ref, rtol=1e-9)


def test_impulse_responses_match_expm(rng):
    A = ssm.hippo_legs_normal(6)
    B = rng.normal(size=6)
    t = np.linspace(0, 3, 7)
    ref = np.stack([scipy.linalg.expm(s * A) @ B for s in t])
    np.testing.assert_allclose(dense_impulse_response(A, B, t), ref, rtol=1e-9, atol=1e-12)
    lam, V = ssm.hippo_legs_normal_eig(6)
    np.testing.assert_allclose(diagonal_impulse_response(lam, V, V.conj().T, B, t), ref, atol=1e-10)


def test_lower_triangular_transfer_rejects_dense():
    with pytest.raises(ValueError, match="lower-triangular"):
        lower_triangular_transfer(np.ones((3, 3)), np.ones(3), np.ones(3), np.zeros(1))
