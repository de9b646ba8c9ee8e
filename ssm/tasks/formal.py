"""Formal-language tasks of the negative-eigenvalue paper (Grazzi et al., 2025; tasks of Deletang et al., 2023).

The answer is read at the last real token (loss on the answer token only); train on lengths 3–40, test on
40–256 for length generalization. Token 0 is padding.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import check_positive_int
from ssm.tasks._common import answer_at_last, check_lengths, pad_rows, sample_lengths

# ------------------------------------------------------------------------------------------------ parity
PARITY_VOCAB = 3  # 0 pad, 1 = bit 0, 2 = bit 1
PARITY_CLASSES = 2


def make_parity(rng: np.random.Generator, n: int, *, min_len: int = 3, max_len: int = 40) -> dict:
    """Bit strings of length in [min_len, max_len]; label = number of ones mod 2, at the last token.

    Returns inputs/targets/weights (n, max_len), lengths (n,).
    """
    check_positive_int("n", n)
    check_lengths(min_len, max_len)
    lengths = sample_lengths(rng, n, min_len, max_len)
    bits = rng.integers(0, 2, size=(n, max_len), dtype=np.int32)
    valid = np.arange(max_len)[None, :] < lengths[:, None]
    bits = np.where(valid, bits, 0)
    targets, weights = answer_at_last(lengths, bits.sum(1) % 2, max_len)
    return {"inputs": np.where(valid, bits + 1, 0).astype(np.int32), "targets": targets,
            "weights": weights, "lengths": lengths}


# ------------------------------------------------------------------------------------ modular arithmetic
OPS = "+-*()"  # token of op c is modulus + 1 + OPS.index(c); digit d is d + 1


def mod_arithmetic_vocab(modulus: int) -> int:
    return modulus + 1 + len(OPS)


def _encode(expr: str, modulus: int) -> list[int]:
    return [int(c) + 1 if c.isdigit() else modulus + 1 + OPS.index(c) for c in expr]


def _simple_expression(rng, length: int, modulus: int) -> tuple[str, int]:
    """d op d op ... d (length odd) with +, -, *; * binds tighter (Deletang et al.'s 'simple' task)."""
    digits = rng.integers(0, modulus, size=length // 2 + 1)
    ops = rng.choice(list("+-*"), size=length // 2)
    total, term, sign = 0, int(digits[0]), 1
    for op, d in zip(ops, digits[1:]):
        if op == "*":
            term = term * int(d) % modulus
        else:
            total += sign * term
            term, sign = int(d), (1 if op == "+" else -1)
    total += sign * term
    expr = str(digits[0]) + "".join(o + str(d) for o, d in zip(ops, digits[1:]))
    return expr, total % modulus


def _bracket_expression(rng, length: int, modulus: int, mult: bool) -> tuple[str, int]:
    """A fully bracketed expression of exactly `length` characters (Deletang et al.'s grammar)."""
    d = int(rng.integers(0, modulus))
    if length == 1:
        return str(d), d
    if length == 2:
        return f"-{d}", -d % modulus
    if length == 3:
        return f"({d})", d
    if length == 4:
        return f"(-{d})", -d % modulus
    left_len = int(rng.integers(1, length - 3))
    left, lv = _bracket_expression(rng, left_len, modulus, mult)
    right, rv = _bracket_expression(rng, length - left_len - 3, modulus, mult)
    op = "+-*"[int(rng.integers(0, 3 if mult else 2))]
    value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op] % modulus
    return f"({left}{op}{right})", value


def make_mod_arithmetic(rng: np.random.Generator, n: int, *, min_len: int = 3, max_len: int = 40,
                        modulus: int = 5, brackets: bool = False, mult: bool = False) -> dict:
    """Arithmetic expressions mod `modulus`, answer (the value, in [0, modulus)) at the last token.

    brackets=False: 'd op d op ... d' with + - * and the usual precedence (odd lengths only).
    brackets=True: fully bracketed expressions with unary minus, ops + - (and * if `mult`).
    Returns inputs/targets/weights (n, max_len), lengths (n,).
    """
    check_positive_int("n", n)
    check_positive_int("modulus", modulus)
    check_lengths(min_len, max_len)
    lengths = sample_lengths(rng, n, min_len, max_len, odd=not brackets)
    rows, answers = [], np.zeros(n, np.int32)
    for i, length in enumerate(lengths):
        if brackets:
            expr, answers[i] = _bracket_expression(rng, int(length), modulus, mult)
        else:
            expr, answers[i] = _simple_expression(rng, int(length), modulus)
        rows.append(_encode(expr, modulus))
    targets, weights = answer_at_last(lengths, answers, max_len)
    return {"inputs": pad_rows(rows, max_len), "targets": targets, "weights": weights, "lengths": lengths}


def decode_mod_arithmetic(tokens, modulus: int) -> str:
    """Token ids (padding dropped) back to the expression string."""
    return "".join(str(t - 1) if 1 <= t <= modulus else OPS[t - modulus - 1] for t in tokens if t != 0)
