"""Closed-form positive controls (ssm/analysis/closed_form.py, docs/closed_form.md): the real one-layer
SequenceModel with hand-set weights solves parity, Zm, Dm, S3, S4 and S5 at 10× the training lengths in float32,
scored against the task generators' own targets: every prediction right, and every feature within 10% of the
prototype spacing of its class (a margin, not luck). Plus the reasons fewer Householder steps or real
eigenvalues cannot (Grazzi et al. 2025; Siems et al. 2025)."""

import numpy as np
import jax.numpy as jnp
import pytest
from flax import nnx
from scipy.optimize import minimize

from ssm.analysis import closed_form as cf
from ssm.analysis.group_representations import (REPRESENTATIONS, householder_factors, is_faithful,
                                                reflections_needed, representation)
from ssm.checks import ConfigError
from ssm.layers.deltanet import DeltaNet
from ssm.tasks import make_parity, make_word_problem
from ssm.tasks.word_problem import group_elements, multiplication_table


@nnx.jit
def _run(model, inputs, mask):
    """(features f_t (B, T, F) written by the mixer, predictions (B, T), final mixer state)."""
    vocab = model.embed.embedding.shape[0]
    x = model.blocks[0](model.embed(inputs), mask=mask)
    logits, states = model(inputs, mask=mask, return_state=True)
    return x[..., vocab:], logits.argmax(-1), states[0]


def check_solves(model, data):
    """Accuracy 1.0 on the weighted targets, and max ‖f_t − f_target‖ ≤ 0.1 · (closest prototype spacing).
    Returns the final mixer state."""
    T = data["inputs"].shape[1]
    mask = jnp.arange(T)[None] < jnp.asarray(data["lengths"])[:, None]
    feats, pred, state = _run(model, jnp.asarray(data["inputs"]), mask)
    feats, pred = np.asarray(feats), np.asarray(pred)
    w = data["weights"] > 0
    vocab = model.embed.embedding.shape[0]
    proto = np.asarray(model.head.kernel[...])[vocab:].T  # (C, F): the head stores the prototypes
    spacing = min(np.linalg.norm(a - b) for i, a in enumerate(proto) for b in proto[i + 1:])
    err = np.linalg.norm(feats - proto[data["targets"]], axis=-1)[w].max()
    assert (pred[w] == data["targets"][w]).all(), f"accuracy {(pred[w] == data['targets'][w]).mean()}"
    assert err <= 0.1 * spacing, (err, spacing)
    return state


# --------------------------------------------------------------------------------------------- helpers
def test_silu_inverse():
    y = np.concatenate([np.linspace(-0.27, 5, 200), [cf.SILU_FLOOR, 0.0, 40.0]])
    z = cf.silu_inverse(y)
    np.testing.assert_allclose(z / (1 + np.exp(-z)), y, rtol=1e-12, atol=1e-14)
    assert z.min() >= -1.2785  # the increasing branch
    with pytest.raises(ConfigError, match="y: SiLU"):
        cf.silu_inverse([-0.3])


def test_householder_factors_reproduce_the_matrix(rng):
    for d in (2, 3, 5):
        for r in range(d + 1):  # a product of r random reflections moves an r-dim subspace
            us = [u / np.linalg.norm(u) for u in rng.normal(size=(r, d))]
            M = np.eye(d)
            for u in us:
                M = M @ (np.eye(d) - 2 * np.outer(u, u))
            factors = householder_factors(M)
            assert len(factors) == r == reflections_needed(M)
            P = np.eye(d)
            for u in factors:
                P = P @ (np.eye(d) - 2 * np.outer(u, u))
            np.testing.assert_allclose(P, M, atol=1e-10)
    with pytest.raises(ConfigError, match="orthogonal"):
        householder_factors(np.diag([1.0, 2.0]))


@pytest.mark.parametrize("group,kind,dim,most_reflections", [
    ("Z2", "planar", 1, 1), ("Z5", "planar", 2, 2), ("D4", "planar", 2, 2), ("S3", "standard", 2, 2),
    ("S3", "permutation", 3, 2), ("S4", "standard", 3, 3), ("S4", "signed", 3, 2), ("S4", "permutation", 4, 3),
    ("A5", "standard", 4, 4), ("S5", "standard", 4, 4), ("S5", "permutation", 5, 4)])
def test_representations_are_faithful_orthogonal_homomorphisms(group, kind, dim, most_reflections):
    rho = representation(group, kind)
    table = multiplication_table(group)
    assert rho.shape == (len(group_elements(group)), dim, dim) and is_faithful(rho)
    np.testing.assert_allclose(np.einsum("gji,gjk->gik", rho, rho), np.broadcast_to(np.eye(dim), rho.shape), atol=1e-12)
    np.testing.assert_allclose(np.einsum("aij,bjk->abik", rho, rho), rho[table], atol=1e-12)  # ρ(a)ρ(b) = ρ(a∘b)
    assert max(reflections_needed(m) for m in rho) == most_reflections


# ------------------------------------------------------------------------- why n_h = 1 cannot: S3, Zm
def _three_cycle(kind):
    idx = group_elements("S3").index((1, 2, 0))
    return representation("S3", kind)[idx]


@pytest.mark.parametrize("group,element,order", [("S3", (1, 2, 0), 3), ("Z3", (1, 2, 0), 3),
                                                 ("Z5", (1, 2, 3, 4, 0), 5), ("S5", (1, 2, 3, 4, 0), 5)])
def test_elements_of_order_three_or_more_move_a_plane_in_every_faithful_representation(group, element, order):
    """ρ(g)^order = I with ρ(g)^k ≠ I for k < order ≥ 3 puts a primitive order-th root of unity (non-real) among
    ρ(g)'s eigenvalues, with its conjugate: rank(I − ρ(g)) ≥ 2. A generalized Householder I − βkkᵀ (eigenvalues 1 and
    1 − β) and a real diagonal transition have real eigenvalues only, so no basis change makes one of them ρ(g):
    one Householder step per token (DeltaNet) or a real diagonal layer cannot carry the group action. For S5 the
    5-cycle moves 4 dimensions (its characters are rational, so all four primitive 5th roots appear): n_h ≥ 4."""
    idx = group_elements(group).index(element)
    for kind in REPRESENTATIONS:
        try:
            rho = representation(group, kind)
        except ConfigError:  # 'planar' exists for Zm / Dm only
            continue
        if not is_faithful(rho):
            continue
        ev = np.linalg.eigvals(rho[idx])
        assert np.any(np.abs(ev - np.exp(2j * np.pi / order)) < 1e-9)  # a primitive root of unity
        assert reflections_needed(rho[idx]) >= (4 if group == "S5" else 2)
    rng = np.random.default_rng(0)
    for _ in range(100):  # every generalized Householder has real eigenvalues {1, 1 − β}
        k = rng.normal(size=3)
        k /= np.linalg.norm(k)
        beta = rng.uniform(0, 2)
        ev = np.linalg.eigvals(np.eye(3) - beta * np.outer(k, k))
        np.testing.assert_allclose(np.sort(ev.real), np.sort([1 - beta, 1, 1]), atol=1e-12)
        assert np.abs(ev.imag).max() < 1e-12


@pytest.mark.parametrize("kind", ["standard", "permutation"])
def test_best_single_householder_misses_the_three_cycle(kind):
    """No I − βkkᵀ, β ∈ [0, 2], equals the 3-cycle C: det(I − βkkᵀ) = 1 − β while det C = 1 forces β = 0 (the
    identity); and I − βkkᵀ is symmetric while C is not, so ‖I − βkkᵀ − C‖_F ≥ ‖(C − Cᵀ)/2‖_F = √(3/2) (the
    distance of C to the symmetric matrices). Exactly: (C + Cᵀ)/2 is −½ on C's rotation plane (and 1 on its axis),
    so the best is k in that plane with β = 3/2, at distance √(3/2 + 3²/2²) = √15/2 ≈ 1.94; a numerical search over
    (k, β) from 50 starts finds that and nothing closer."""
    C = _three_cycle(kind)
    d = C.shape[0]
    assert np.isclose(np.linalg.det(C), 1.0)
    bound = np.linalg.norm((C - C.T) / 2)
    np.testing.assert_allclose(bound, np.sqrt(1.5), rtol=1e-12)

    def dist(params):
        k, beta = params[:d] / np.linalg.norm(params[:d]), 2 / (1 + np.exp(-params[d]))  # β = 2σ(·)
        return np.linalg.norm(np.eye(d) - beta * np.outer(k, k) - C)

    rng = np.random.default_rng(1)
    best = min(minimize(dist, rng.normal(size=d + 1), method="Nelder-Mead").fun for _ in range(50))
    assert best >= bound
    np.testing.assert_allclose(best, np.sqrt(15) / 2, rtol=1e-6)
    for beta in np.linspace(0, 2, 9):  # the determinant of a generalized Householder is 1 − β
        k = rng.normal(size=d)
        k /= np.linalg.norm(k)
        np.testing.assert_allclose(np.linalg.det(np.eye(d) - beta * np.outer(k, k)), 1 - beta, atol=1e-12)


def test_deltaproduct_construction_needs_enough_householder_steps():
    with pytest.raises(ConfigError, match="num_householder: .* needs 2 reflections per token, got n_h = 1"):
        cf.deltaproduct_group("S3", num_householder=1)
    with pytest.raises(ConfigError, match="num_householder"):
        cf.deltaproduct_group("S5", num_householder=3)


# ------------------------------------------------------------------------------- controls at 10× length
def test_diag_solves_parity_and_z2_at_10x(rng):
    model = cf.diag_parity()
    check_solves(model, make_parity(rng, 256, min_len=40, max_len=400))  # trained on ≤ 40 in the papers
    check_solves(model, make_word_problem(rng, 16, group="Z2", length=1280))  # word problems: trained on 128


@pytest.mark.parametrize("conv_size", [0, pytest.param(4, marks=pytest.mark.slow)])
def test_deltanet_solves_parity_at_10x(rng, conv_size):
    model = cf.deltaproduct_group("Z2", conv_size=conv_size)
    mixer = model.blocks[0].mixer
    assert type(mixer) is DeltaNet and mixer.allow_neg_eigval and (mixer.convs is None) == (conv_size == 0)
    check_solves(model, make_parity(rng, 256, min_len=40, max_len=400))


@pytest.mark.parametrize("group,kind,n_h", [
    ("S3", None, 2), ("Z3", None, 2), pytest.param("D4", None, 2, marks=pytest.mark.slow),
    pytest.param("S3", "permutation", 2, marks=pytest.mark.slow), pytest.param("Z5", None, 2, marks=pytest.mark.slow),
    pytest.param("D5", None, 2, marks=pytest.mark.slow), pytest.param("S4", None, 2, marks=pytest.mark.slow),
    pytest.param("S5", None, 4, marks=pytest.mark.slow)])
def test_deltaproduct_solves_group_word_problems_at_10x(rng, group, kind, n_h):
    model = cf.deltaproduct_group(group, representation_kind=kind)
    mixer = model.blocks[0].mixer
    assert mixer.num_householder == n_h and mixer.allow_neg_eigval
    data = make_word_problem(rng, 16, group=group, length=1280)  # the DeltaProduct paper trains on 128
    state = check_solves(model, data)
    # the state is what the construction says: h_T = c (I − ρ(p_T)ᵀ), c = HEAD_NORM_SCALE·√d
    rho = representation(group, kind) if kind else cf.smallest_representation(group)[1]
    h = np.asarray(state["h"])[:, 0]  # (B, d, d), one head
    d = rho.shape[1]
    expected = cf.HEAD_NORM_SCALE * np.sqrt(d) * (np.eye(d) - np.swapaxes(rho[data["targets"][:, -1]], 1, 2))
    np.testing.assert_allclose(h, expected, atol=0.05 * cf.HEAD_NORM_SCALE * np.sqrt(d))


@pytest.mark.slow
def test_deltaproduct_s3_holds_at_100x(rng):
    check_solves(cf.deltaproduct_group("S3"), make_word_problem(rng, 8, group="S3", length=12800))


@pytest.mark.parametrize("m", [pytest.param(2, marks=pytest.mark.slow), 3, pytest.param(5, marks=pytest.mark.slow)])
def test_s5_counts_modulo_m_with_roots_of_unity_at_10x(rng, m):
    model = cf.s5_cyclic_counter(m)
    Lambda_bar = np.asarray(model.blocks[0].mixer.discrete()[0], np.complex128)
    np.testing.assert_allclose(Lambda_bar, [np.exp(2j * np.pi / m)], atol=1e-6)  # an m-th root of unity
    assert abs(abs(Lambda_bar[0]) - 1) < 1e-7
    T = 1280
    one_letter = {"inputs": np.full((4, T), 2, np.int32), "lengths": np.full(4, T, np.int32),
                  "targets": np.tile(np.arange(1, T + 1) % m, (4, 1)).astype(np.int32),
                  "weights": np.ones((4, T), np.float32)}  # the generator g = 1 repeated: p_t = t mod m
    check_solves(model, one_letter)
    # time-invariant: it counts tokens, not the group product, so general Zm words are beyond it
    words = make_word_problem(rng, 16, group=f"Z{m}", length=200)
    mask = jnp.ones(words["inputs"].shape, bool)
    pred = np.asarray(_run(model, jnp.asarray(words["inputs"]), mask)[1])
    assert (pred == words["targets"]).mean() < 0.5 + 0.5 / m
