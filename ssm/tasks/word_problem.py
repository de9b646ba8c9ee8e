"""Group word problems (Merrill et al., 2024; DeltaProduct, Siems et al., 2025): token tagging of the
running product of a sequence of group elements.

Input token g_t + 1 (g_t an element index of the group, 0 is padding); target at t is the index of the
prefix product p_t = p_{t-1} ∘ g_t with p_0 = identity, where (σ∘τ)(i) = σ(τ(i)) on permutations.

Groups (every one as permutations of {0, …, n−1}, elements in lexicographic order, so index 0 is the identity):
  S3, S4, S5  all permutations of 3 / 4 / 5 points;  A5  the even permutations of 5 points (order 60);
  Zm          the cyclic group of order m ≥ 2: the rotations i ↦ i + k (mod m), index k = k;
  Dm          the dihedral group of order 2m, m ≥ 3 (symmetries of the regular m-gon): i ↦ ±i + k (mod m).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from ssm.checks import check_positive_int, fail

GROUPS = ("S3", "S4", "A5", "S5")  # fixed names; the families Zm (m ≥ 2) and Dm (m ≥ 3) are parsed
FAMILIES = {"Z": 2, "D": 3}  # family letter -> smallest m
MAX_ORDER = 512  # the (order × order) multiplication table is materialized


def _is_even(perm) -> bool:
    inversions = sum(perm[i] > perm[j] for i in range(len(perm)) for j in range(i + 1, len(perm)))
    return inversions % 2 == 0


def _family(group) -> tuple[str, int] | None:
    """("Z" or "D", m) for a valid cyclic / dihedral name, else None."""
    if not isinstance(group, str) or len(group) < 2 or group[0] not in FAMILIES or not group[1:].isdigit():
        return None
    m = int(group[1:])
    ok = group[1] != "0" and m >= FAMILIES[group[0]] and m * (2 if group[0] == "D" else 1) <= MAX_ORDER
    return (group[0], m) if ok else None


def check_group(group) -> None:
    """`group` must be S3, S4, A5, S5, Zm (2 ≤ m) or Dm (3 ≤ m), with order ≤ MAX_ORDER."""
    if group not in GROUPS and _family(group) is None:
        fail(f"group: expected one of {', '.join(GROUPS)}, Zm (m ≥ 2) or Dm (m ≥ 3) with order ≤ {MAX_ORDER}, "
             f"got {group!r}")


@lru_cache(maxsize=None)
def group_elements(group: str) -> tuple[tuple[int, ...], ...]:
    """The group's permutations in lexicographic order (index 0 is the identity)."""
    check_group(group)
    family = _family(group)
    if family is not None:
        kind, m = family
        signs = (1,) if kind == "Z" else (1, -1)
        return tuple(sorted(tuple((s * i + k) % m for i in range(m)) for s in signs for k in range(m)))
    degree = int(group[1])
    perms = tuple(itertools.permutations(range(degree)))
    return tuple(p for p in perms if _is_even(p)) if group[0] == "A" else perms


@lru_cache(maxsize=None)
def multiplication_table(group: str) -> np.ndarray:
    """(G, G) int32: table[a, b] = index of elements[a] ∘ elements[b]."""
    elems = np.array(group_elements(group), np.int32)  # (G, n)
    index = {p.tobytes(): i for i, p in enumerate(elems)}
    return np.array([[index[row.tobytes()] for row in a[elems]] for a in elems], np.int32)  # a[b] = a ∘ b


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
