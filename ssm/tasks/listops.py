"""ListOps (Nangia & Bowman, 2018) from its grammar, with Long Range Arena's generator settings.

Expressions in prefix form, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]`; operators MAX, MIN, MED (median, truncated to an
int), SM (sum mod 10); the label is the value in 0..9 (sequence classification with pooling). LRA uses
max_depth=10, max_args=10 and lengths in (500, 2000); a node is a digit with probability 0.75 below the
maximum depth. Tokens: 0 pad, digit d -> d + 1, operators 11..14, ']' 15.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import check_positive_int, fail
from ssm.tasks._common import check_lengths, pad_rows

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
CLOSE = 15
LISTOPS_VOCAB = 16
LISTOPS_CLASSES = 10
VALUE_P = 0.25  # LRA: a subtree is a digit when a uniform draw exceeds this


def _apply(op: str, args: list[int]) -> int:
    if op == "[MAX":
        return max(args)
    if op == "[MIN":
        return min(args)
    if op == "[MED":
        return int(np.median(args))
    return sum(args) % 10


def _tree(rng, depth: int, max_depth: int, max_args: int, out: list[int]) -> int:
    """Append the tokens of a random subtree to `out`; return its value."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        d = int(rng.integers(0, 10))
        out.append(d + 1)
        return d
    op = int(rng.integers(0, len(OPERATORS)))
    out.append(11 + op)
    args = [_tree(rng, depth + 1, max_depth, max_args, out) for _ in range(int(rng.integers(2, max_args + 1)))]
    out.append(CLOSE)
    return _apply(OPERATORS[op], args)


def make_listops(rng: np.random.Generator, n: int, *, min_len: int = 20, max_len: int = 100,
                 max_depth: int = 10, max_args: int = 10) -> dict:
    """n expressions with min_len < tokens < max_len (LRA's rejection rule; min_len = 0 takes any).

    Returns inputs (n, max_len), lengths (n,), targets/weights (n,) (one label per sequence).
    """
    check_positive_int("n", n)
    check_positive_int("max_depth", max_depth)
    check_lengths(min_len, max_len, smallest=0)
    if not isinstance(max_args, int) or max_args < 2:
        fail(f"max_args: expected an integer >= 2, got {max_args!r}")
    rows, labels = [], []
    while len(rows) < n:
        tokens: list[int] = []
        value = _tree(rng, 1, max_depth, max_args, tokens)
        if min_len < len(tokens) < max_len:
            rows.append(tokens)
            labels.append(value)
    return {"inputs": pad_rows(rows, max_len), "lengths": np.array([len(r) for r in rows], np.int32),
            "targets": np.array(labels, np.int32), "weights": np.ones(n, np.float32)}
