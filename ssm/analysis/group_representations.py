"""Orthogonal representations of the word-problem groups and their factorization into Householder reflections.

Every group of `ssm.tasks.word_problem` is a group of permutations of n points, composed as (σ∘τ)(i) = σ(τ(i)).
The permutation matrices P_σ e_i = e_σ(i) form a representation (P_{σ∘τ} = P_σ P_τ). Restricting it to an
invariant subspace W with orthonormal basis Q (n, d) gives the d-dimensional representations used here,
ρ(σ) = Qᵀ P_σ Q:

  "permutation"  W = R^n                                   (S_n: the n-cycle needs n − 1 reflections)
  "standard"     W = {x : Σ x_i = 0}, d = n − 1            (S3: the triangle's symmetries in the plane)
  "signed"       sign(σ) · standard                        (S4: the rotations of the cube, all in SO(3))
  "planar"       W = span{cos(2πi/m), sin(2πi/m)}_i        (Zm / Dm: rotations / reflections of the m-gon;
                 d = 2, or 1 for m = 2)

Reflections (Cartan–Dieudonné): an orthogonal M is a product of r = rank(I − M) reflections H(u) = I − 2uuᵀ and of
no fewer, since a product of r reflections (or of r generalized Householders I − βkkᵀ) equals I on the
orthogonal complement of its r vectors, so rank(I − M) ≤ r. A DeltaProduct layer with n_h Householder steps per
token can therefore realize ρ(g) exactly only if rank(I − ρ(g)) ≤ n_h for every element g.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import check_choice, fail
from ssm.tasks.word_problem import group_elements

REPRESENTATIONS = ("planar", "standard", "signed", "permutation")


def permutation_matrices(group: str) -> np.ndarray:
    """(G, n, n) float64: P_σ with P_σ e_i = e_σ(i), in the order of `group_elements(group)`."""
    elems = np.array(group_elements(group))
    G, n = elems.shape
    P = np.zeros((G, n, n))
    P[np.arange(G)[:, None], elems, np.arange(n)[None, :]] = 1.0
    return P


def _sign(perm) -> float:
    return float(round(np.linalg.det(np.eye(len(perm))[list(perm)])))


def representation(group: str, kind: str) -> np.ndarray:
    """(G, d, d) float64 orthogonal matrices ρ(g) of `kind` (see the module docstring), element order of
    `group_elements(group)`; ρ(elements[a] ∘ elements[b]) = ρ(a) ρ(b)."""
    check_choice("representation", kind, REPRESENTATIONS)
    P = permutation_matrices(group)
    n = P.shape[1]
    if kind == "permutation":
        return P
    if kind == "planar":
        if group[0] not in "ZD":
            fail(f"representation: 'planar' is for the cyclic / dihedral groups Zm, Dm, got group {group!r}")
        angle = 2 * np.pi * np.arange(n) / n
        spanning = np.stack([np.cos(angle), np.sin(angle)], 1)
    else:
        spanning = np.eye(n) - 1.0 / n  # the sum-zero subspace
    U, s, _ = np.linalg.svd(spanning, full_matrices=False)
    Q = U[:, s > 1e-9]  # orthonormal basis of the invariant subspace
    rho = np.einsum("nd,gnm,me->gde", Q, P, Q)
    if kind == "signed":
        rho = rho * np.array([_sign(p) for p in group_elements(group)])[:, None, None]
    return rho


def reflections_needed(M, tol: float = 1e-9) -> int:
    """rank(I − M): the least number of Householder reflections whose product is the orthogonal M."""
    M = np.asarray(M, np.float64)
    return int(np.linalg.matrix_rank(np.eye(M.shape[0]) - M, tol=tol))


def householder_factors(M, tol: float = 1e-9) -> list[np.ndarray]:
    """Unit vectors u_1..u_r, r = rank(I − M), with M = H(u_1) H(u_2) ⋯ H(u_r), H(u) = I − 2uuᵀ.

    Column by column: if R e_i ≠ e_i, the reflection through u ∝ R e_i − e_i swaps R e_i and e_i and fixes every
    e_j already fixed (u ⊥ e_j because R e_i ⊥ R e_j = e_j), so H(u_r)⋯H(u_1) M = I after at most d steps.
    Each column that moves is sent home by one reflection, and the count equals rank(I − M) (checked).
    """
    R = np.array(M, np.float64)
    d = R.shape[0]
    if not np.allclose(R.T @ R, np.eye(d), atol=1e-9):
        fail("M: expected an orthogonal matrix")
    factors = []
    for i in range(d):
        w = R[:, i] - np.eye(d)[i]
        if np.linalg.norm(w) > tol:
            u = w / np.linalg.norm(w)
            R = R - 2.0 * np.outer(u, u @ R)
            factors.append(u)
    assert np.allclose(R, np.eye(d), atol=1e-8) and len(factors) == reflections_needed(M), "not orthogonal?"
    return factors


def smallest_representation(group: str) -> tuple[str, np.ndarray]:
    """(kind, ρ) of the faithful representation of REPRESENTATIONS that needs the fewest reflections per
    element (then the smallest dimension): the fewest Householder steps per token for DeltaProduct."""
    best = None
    for kind in REPRESENTATIONS:
        if kind == "planar" and group[0] not in "ZD":
            continue
        rho = representation(group, kind)
        if not is_faithful(rho):
            continue
        key = (max(reflections_needed(m) for m in rho), rho.shape[1])
        if best is None or key < best[0]:
            best = (key, kind, rho)
    return best[1], best[2]


def is_faithful(rho, tol: float = 1e-9) -> bool:
    """Distinct elements have distinct matrices."""
    flat = np.asarray(rho).reshape(len(rho), -1)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    return bool(np.all(dist[~np.eye(len(rho), dtype=bool)] > tol))
