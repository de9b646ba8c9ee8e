"""Group word problems (Merrill et al., 2024; DeltaProduct, Siems et al., 2025): token tagging of the
running product of a sequence of group elements.

Input token g_t + 1 (g_t an element index of the group, 0 is padding); target at t is the index of the
prefix product p_t = p_{t-1} ∘ g_t with p_0 = identity, where (σ∘τ)(i) = σ(τ(i)) on permutations.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from ssm.checks import check_choice, check_positive_int

GROUPS = ("S3", "S4", "A5", "S5")


def _is_even(perm) -> bool:
    inversions = sum(perm[i] > perm[j] for i in range(len(perm)) for j in range(i + 1, len(perm)))
    return inversions % 2 == 0


@lru_cache(maxsize=None)
def group_elements(group: str) -> tuple[tuple[int, ...], ...]:
    """The group's permutations in lexicographic order (index 0 is the identity)."""
    check_choice("group", group, GROUPS)
    degree = int(group[1])
    perms = tuple(itertools.permutations(range(degree)))
    return tuple(p for p in perms if _is_even(p)) if group[0] == "A" else perms


@lru_cache(maxsize=None)
def multiplication_table(group: str) -> np.ndarray:
    """(G, G) int32: table[a, b] = index of elements[a] ∘ elements[b]."""
    elems = group_elements(group)
    index = {p: i for i, p in enumerate(elems)}
    return np.array([[index[tuple(a[b[i]] for i in range(len(a)))] for b in elems] for a in elems], np.int32)


def word_problem_vocab(group: str) -> int:
    return len(group_elements(group)) + 1


def make_word_problem(rng: np.random.Generator, n: int, *, group: str = "S3", length: int = 128) -> dict:
    """n uniformly random words of `length` elements; per-token targets = prefix products.

    Returns inputs/targets/weights (n, length), lengths (n,) (all equal to `length`).
    """
    check_positive_int("n", n)
    check_positive_int("length", length)
    table = multiplication_table(group)
    g = rng.integers(0, table.shape[0], size=(n, length)).astype(np.int32)
    targets = np.empty_like(g)
    prod = np.zeros(n, np.int32)  # identity
    for t in range(length):
        prod = table[prod, g[:, t]]
        targets[:, t] = prod
    return {"inputs": g + 1, "targets": targets, "weights": np.ones((n, length), np.float32),
            "lengths": np.full(n, length, np.int32)}
