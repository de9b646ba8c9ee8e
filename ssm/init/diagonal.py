"""Initializers of the diagonal SSM layers (S4D, S5 / S5-PTD): eigenvalues, eigenbases, log-uniform Δ.

NumPy float64 / complex128 on the host (the layers cast to their parameter dtype).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from scipy.linalg import block_diag

from ssm.checks import check_choice, fail
from ssm.init.hippo import hippo_legs, hippo_legs_normal_eig
from ssm.init.ptd import perturb_then_diagonalize

S4D_INITS = ("legs", "inv", "lin", "real", "ptd")
S5_INITS = ("s5", "s5-ptd")


def s4d_init(init: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal A (N/2,) and B (N/2,) (complex128) of the S4D inits, n = 0..N/2−1 (S4D paper §4):

      legs: eigenvalues −½ + iω of HiPPO-LegS's normal part (Im > 0 half), B = (Vᴴ B_HiPPO) on those modes;
      inv:  A_n = −½ + i (N/π)(N/(2n+1) − 1),  B = 1;
      lin:  A_n = −½ + iπn,                     B = 1;
      real: A_n = −(n+1),                       B = 1;
      ptd:  S4-PTD (Yu et al. 2024): eigenvalues Λ̃ of HiPPO-LegS after the PTD perturbation, A + E = Ṽ Λ̃ Ṽ⁻¹
            (`ssm.perturb_then_diagonalize`), B = (Ṽ⁻¹ B_HiPPO) on the Im > 0 half; the layer draws C̃ = C Ṽ
            (`s4d_ptd_basis`).
    """
    check_choice("init", init, S4D_INITS)
    if N < 2 or N % 2:
        fail(f"state_size: expected an even integer >= 2 (N/2 conjugate pairs are stored), got {N}")
    n = np.arange(N // 2)
    ones = np.ones(N // 2, np.complex128)
    if init == "ptd":
        Lambda, V, Vinv = perturb_then_diagonalize(hippo_legs(N)[0])
        _check_pairs("ptd", Lambda, N)
        return Lambda[: N // 2], (Vinv @ hippo_legs(N)[1])[: N // 2]
    if init == "legs":
        Lambda, V = hippo_legs_normal_eig(N)
        B = V.conj().T @ hippo_legs(N)[1]
        return Lambda[: N // 2], B[: N // 2]
    if init == "inv":
        return -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1), ones
    if init == "lin":
        return -0.5 + 1j * np.pi * n, ones
    return -(n + 1.0) + 0j, ones


def s4d_ptd_basis(N: int) -> np.ndarray:
    """Ṽ[:, :N/2] (N, N/2) complex128 of the S4-PTD init: a real read-out C (N,) in HiPPO's basis becomes
    C̃ = C Ṽ[:, :N/2] on the stored modes, and 2·Re(C̃ x̃) is exactly C x of the real N-state system."""
    Lambda, V, _ = perturb_then_diagonalize(hippo_legs(N)[0])
    _check_pairs("ptd", Lambda, N)
    return V[:, : N // 2]


def _check_pairs(init, Lambda, size):
    """Lambda (size,) must be [Im > 0 half, their exact conjugates] (`conj_pair_order`)."""
    h = size // 2
    if not (size % 2 == 0 and np.all(Lambda[:h].imag > 0) and np.array_equal(Lambda[h:], Lambda[:h].conj())):
        fail(f"init: the {init} spectrum of size {size} is not all conjugate pairs; use conj_sym=False")


def s5_eigenbasis(init: str, state_size: int, blocks: int, conj_sym: bool):
    """Block-diagonal initial (Λ (P',), V (P, P'), V⁻¹ (P', P)) complex128, P' = P/2 with conj_sym else P."""
    check_choice("init", init, S5_INITS)
    if state_size % blocks:
        fail(f"blocks: state_size={state_size} is not divisible by blocks={blocks}")
    size = state_size // blocks
    if conj_sym and size % 2:
        fail(f"state_size/blocks: conjugate symmetry needs an even block size, got {size}")
    if init == "s5":
        Lambda, V = hippo_legs_normal_eig(size)
        Vinv = V.conj().T
    else:
        Lambda, V, Vinv = perturb_then_diagonalize(hippo_legs(size)[0])
    if conj_sym:
        _check_pairs(init, Lambda, size)
    if conj_sym:  # eigenpairs are ordered [Im > 0 half, conjugates]: keep the first half
        Lambda, V, Vinv = Lambda[: size // 2], V[:, : size // 2], Vinv[: size // 2]
    return np.tile(Lambda, blocks), block_diag(*[V] * blocks), block_diag(*[Vinv] * blocks)


def log_uniform(key, shape, low, high, dtype):
    """log of samples log-uniform on [low, high]."""
    return jax.random.uniform(key, shape, dtype, math.log(low), math.log(high))
