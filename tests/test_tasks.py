"""Task generators: shapes, vocabularies, and labels recomputed independently of the generator."""

import itertools
import os

import numpy as np
import pytest

from ssm.tasks import (make_char_lm, make_listops, make_mod_arithmetic, make_mqar, make_parity,
                       make_word_problem)
from ssm.tasks import char_lm, formal, listops, word_problem


def check_layout(d, n, T, vocab, per_token=True):
    assert d["inputs"].shape == (n, T) and d["inputs"].dtype == np.int32
    assert d["lengths"].shape == (n,) and d["lengths"].dtype == np.int32
    shape = (n, T) if per_token else (n,)
    assert d["targets"].shape == shape and d["targets"].dtype == np.int32
    assert d["weights"].shape == shape and d["weights"].dtype == np.float32
    assert d["inputs"].min() >= 0 and d["inputs"].max() < vocab
    pad = np.arange(T)[None, :] >= d["lengths"][:, None]
    assert (d["inputs"][pad] == 0).all() and (d["inputs"][~pad] != 0).all()
    if per_token:
        assert (d["weights"][pad] == 0).all()


def test_parity(rng):
    d = make_parity(rng, 200, min_len=3, max_len=40)
    check_layout(d, 200, 40, formal.PARITY_VOCAB)
    assert d["lengths"].min() >= 3 and d["lengths"].max() <= 40 and len(set(d["lengths"])) > 20
    for x, L, y, w in zip(d["inputs"], d["lengths"], d["targets"], d["weights"]):
        ones = sum(1 for tok in x[:L] if tok == 2)
        assert w.sum() == 1 and w[L - 1] == 1 and y[L - 1] == ones % 2


@pytest.mark.parametrize("brackets", [False, True])
def test_mod_arithmetic_labels_match_python_eval(rng, brackets):
    m = 5
    d = make_mod_arithmetic(rng, 150, min_len=3, max_len=40, modulus=m, brackets=brackets, mult=True)
    check_layout(d, 150, 40, formal.mod_arithmetic_vocab(m))
    for x, L, y in zip(d["inputs"], d["lengths"], d["targets"]):
        expr = formal.decode_mod_arithmetic(x[:L], m)
        assert len(expr) == L
        if not brackets:
            assert L % 2 == 1 and "(" not in expr
        assert y[L - 1] == eval(expr) % m, expr  # Python's own precedence and unary minus


@pytest.mark.parametrize("group,order", [("S3", 6), ("S4", 24), ("A5", 60), ("S5", 120), ("Z2", 2), ("Z3", 3),
                                         ("Z5", 5), ("Z12", 12), ("D3", 6), ("D4", 8), ("D5", 10)])
def test_word_problem_running_product(rng, group, order):
    assert len(word_problem.group_elements(group)) == order
    d = make_word_problem(rng, 20, group=group, length=30)
    check_layout(d, 20, 30, order + 1)
    elems = word_problem.group_elements(group)
    for x, y in zip(d["inputs"], d["targets"]):
        p = tuple(range(len(elems[0])))  # identity permutation
        for tok, target in zip(x, y):
            g = elems[tok - 1]
            p = tuple(p[g[i]] for i in range(len(p)))  # p ∘ g
            assert elems[target] == p


@pytest.mark.parametrize("m", [2, 3, 5, 7])
def test_cyclic_group_targets_are_running_sums_mod_m(rng, m):
    d = make_word_problem(rng, 30, group=f"Z{m}", length=50)
    np.testing.assert_array_equal(d["targets"], np.cumsum(d["inputs"] - 1, axis=1) % m)


@pytest.mark.parametrize("m", [3, 4, 5, 6])
def test_dihedral_group_is_the_symmetries_of_the_m_gon(m):
    elems = word_problem.group_elements(f"D{m}")
    # brute force over all permutations of the m vertices: the ones that keep every edge {i, i+1} an edge
    edges = {frozenset((i, (i + 1) % m)) for i in range(m)}
    symmetries = [p for p in itertools.permutations(range(m))
                  if {frozenset((p[i], p[(i + 1) % m])) for i in range(m)} == edges]
    assert sorted(elems) == sorted(symmetries) and len(elems) == 2 * m
    assert elems[0] == tuple(range(m))


@pytest.mark.parametrize("bad", ["Z1", "D2", "Z0", "Z03", "X3", "S6", "Z", "D1000", "z3"])
def test_unknown_group_names_the_field(rng, bad):
    with pytest.raises(ValueError, match="group: expected"):
        make_word_problem(rng, 2, group=bad, length=4)


def test_a5_is_the_even_permutations():
    for p in word_problem.group_elements("A5"):
        sign = np.linalg.det(np.eye(5)[list(p)])
        assert round(sign) == 1


def test_mqar_targets_are_the_bound_values(rng):
    d = make_mqar(rng, 30, vocab_size=64, length=48, num_kv_pairs=6)
    check_layout(d, 30, 48, 64)
    for x, y, w in zip(d["inputs"], d["targets"], d["weights"]):
        bound = {x[2 * i]: x[2 * i + 1] for i in range(6)}
        assert len(bound) == 6 and all(k < 32 <= v for k, v in bound.items())
        queries = np.flatnonzero(w)
        assert len(queries) == 6 and queries.min() >= 12
        for q in queries:
            assert y[q] == bound[x[q]] and x[q + 1] == bound[x[q]]


def _eval_listops_stack(tokens):
    """Independent evaluator: a stack machine over the token sequence."""
    stack = []
    for tok in tokens:
        if 11 <= tok <= 14:
            stack.append(("op", tok))
        elif tok == listops.CLOSE:
            args = []
            while stack[-1][0] != "op":
                args.append(stack.pop()[1])
            op = stack.pop()[1]
            args = sorted(args)
            value = {11: args[-1], 12: args[0], 14: sum(args) % 10}.get(op)
            if op == 13:  # median of the sorted arguments, truncated
                mid = len(args) // 2
                value = args[mid] if len(args) % 2 else int((args[mid - 1] + args[mid]) / 2)
            stack.append(("val", value))
        else:
            stack.append(("val", tok - 1))
    assert len(stack) == 1
    return stack[0][1]


def test_listops_labels_match_stack_evaluator(rng):
    d = make_listops(rng, 60, min_len=10, max_len=80, max_depth=6, max_args=5)
    check_layout(d, 60, 80, listops.LISTOPS_VOCAB, per_token=False)
    assert (d["lengths"] > 10).all() and (d["lengths"] < 80).all()
    for x, L, y in zip(d["inputs"], d["lengths"], d["targets"]):
        assert 0 <= y < 10 and y == _eval_listops_stack(x[:L])


def test_char_lm_windows(rng, tmp_path):
    text = "".join(itertools.islice(itertools.cycle("the quick brown fox jumps over the lazy dog. "), 2000))
    path = tmp_path / "t.txt"
    path.write_text(text)
    vocab = char_lm.char_vocab(str(path))
    d = make_char_lm(rng, 10, path=str(path), split="train", seq_len=32)
    check_layout(d, 10, 32, len(vocab) + 1)
    decode = lambda ids: "".join(vocab[i - 1] for i in ids)
    for x, y in zip(d["inputs"], d["targets"]):
        assert decode(x)[1:] == decode(y)[:-1] and decode(x) in text
    test = make_char_lm(rng, 1000, path=str(path), split="test", seq_len=32)
    assert test["inputs"].shape[0] == (100 - 32 + 31) // 32  # 5% of 2000 chars in disjoint windows
    assert decode(test["inputs"][0]) == text[1900:1932]


def test_shipped_demo_text_exists():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tiny.txt")
    assert len(char_lm.load_text(path)) > 4000


def test_bad_generator_arguments_name_the_field(rng, tmp_path):
    with pytest.raises(ValueError, match="min_len"):
        make_parity(rng, 4, min_len=10, max_len=3)
    with pytest.raises(ValueError, match="group"):
        make_word_problem(rng, 4, group="Q8")
    with pytest.raises(ValueError, match="data.path"):
        make_char_lm(rng, 4, path=str(tmp_path / "missing.txt"))
