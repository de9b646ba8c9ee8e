"""Hand-set weights that make the real `ssm.SequenceModel` solve state tracking exactly: positive controls.

Each builder returns a one-layer `SequenceModel` (mlp="none", RMSNorm) around the library's own mixer, with every
weight set in closed form, so that a test (or a reader) can check that the whole stack — embedding, norm,
projections, activations, the scan / delta-rule kernels, output norm, head — can represent the solution and keeps
it at lengths far beyond any training length. See docs/closed_form.md for the constructions and tested lengths.

Shared skeleton (V tokens, F feature dims, d_model D = V + F):
  embedding  token v ↦ e_v (one-hot in dims 0..V−1). The block's RMSNorm gives u_v = e_v / √(1/D + ε), so every
             projection inside the mixer is a per-token lookup table, solved for exactly (least squares on u_v).
  mixer      writes its feature f_t ∈ R^F into dims V..V+F−1, so the residual stream is x_t = e_{v_t} + f_t.
  head       nearest prototype: logit_c = ⟨f_c, f_t⟩ − ½‖f_c‖² (the −½‖f_c‖² sits on the token dims, where every
             token contributes exactly 1), i.e. argmax_c = argmin_c ‖f_t − f_c‖ for prototypes f_c computed from
             the construction in float64. The final RMSNorm rescales all logits by one positive number and the head
             has no bias, so it does not change the argmax.
Activations are inverted where needed: SiLU on its increasing branch (values ≥ −0.278), sigmoid gates saturate
(σ(±30) is 1 or 0 in float32, so β = 2σ(30) = 2 and 2σ(∓30) − 1 = ±1 exactly).
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp
from flax import nnx

from ssm.analysis.group_representations import (householder_factors, is_faithful, reflections_needed,
                                                representation, smallest_representation)
from ssm.checks import check_positive_int, fail
from ssm.layers.deltanet import DeltaNet, DeltaProduct
from ssm.layers.diag import DiagonalRNN
from ssm.layers.s5 import S5
from ssm.model import SequenceModel
from ssm.tasks.word_problem import word_problem_vocab

SATURATE = 30.0  # sigmoid logit that rounds to exactly 0 / 1 in float32
SILU_MIN = -0.27846454276107380  # min_z z·σ(z), at z ≈ −1.2785
SILU_FLOOR = -0.25  # most negative SiLU output we ask for (safely above SILU_MIN)
HEAD_NORM_SCALE = 3e-4  # DeltaProduct read-out size, ≈ 0.1·√ε of the per-head RMSNorm (ε = 1e-5)


def silu_inverse(y) -> np.ndarray:
    """z ≥ −1.2785 with z·σ(z) = y (float64, by bisection), for y ≥ SILU_MIN."""
    y = np.asarray(y, np.float64)
    if np.any(y < SILU_MIN):
        fail(f"y: SiLU never goes below {SILU_MIN:.4f}, got {y.min():.4f}")
    lo, hi = np.full_like(y, -1.2784645427610738), np.maximum(y, 0.0) + 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        below = mid / (1 + np.exp(-mid)) < y
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def _positive_scale(vec, cap=4.0) -> float:
    """The largest α ≤ cap with α·vec ≥ SILU_FLOOR entrywise (so silu_inverse(α·vec) exists)."""
    neg = max(-float(np.min(vec)), 0.0)
    return cap if neg * cap <= -SILU_FLOOR else -SILU_FLOOR / neg


# ------------------------------------------------------------------------------------------------ skeleton
def _skeleton(make_mixer, vocab: int, num_classes: int, features: int):
    """(model, U): the one-layer model with one-hot embeddings, and U (V, D) float64 = the normalized embeddings
    the mixer sees (computed by the model's own RMSNorm in float32)."""
    D = vocab + features
    model = SequenceModel(make_mixer, d_model=D, num_layers=1, num_outputs=num_classes, vocab_size=vocab,
                          mlp="none", rngs=nnx.Rngs(0))
    model.embed.embedding[...] = jnp.eye(vocab, D)
    return model, np.asarray(model.blocks[0].mixer_norm(model.embed.embedding[...]), np.float64)


def _lookup(U, targets) -> jnp.ndarray:
    """Kernel W (D, k) float32 of a bias-free linear map with U W = targets (V, k): one output row per token."""
    W = np.linalg.lstsq(U, np.asarray(targets, np.float64), rcond=None)[0]
    return jnp.asarray(W, jnp.float32)


def _set_head(model, vocab: int, prototypes) -> None:
    """Nearest-prototype head for prototypes (C, F) of the feature dims V..V+F−1."""
    f = np.asarray(prototypes, np.float64)
    dist = np.linalg.norm(f[:, None] - f[None], axis=-1) + np.eye(len(f)) * 1e9
    if dist.min() < 1e-3:
        fail(f"prototypes: two classes share a feature vector (distance {dist.min():.2e})")
    W = np.concatenate([np.broadcast_to(-0.5 * (f ** 2).sum(1), (vocab, len(f))), f.T])
    model.head.kernel[...] = jnp.asarray(W, jnp.float32)
    model.head.bias[...] = jnp.zeros_like(model.head.bias[...])


# --------------------------------------------------------------------------------------- diagonal: parity
def diag_parity(gate: float = 4.0) -> SequenceModel:
    """`DiagonalRNN(allow_neg_eigval=True)` with one state solving parity (`make_parity`) and Z2
    (`make_word_problem(group="Z2")`); tokens 1 = bit 0 / identity, 2 = bit 1 / generator, 0 = padding.

    Decay a_t = 2σ(±30) − 1 = +1 for a 0 and −1 for a 1; input b_t = 1 for a 1, else 0. With h_0 = 0,
    h_t = a_t h_{t−1} + b_t keeps h_t = (1 − s_t)/2 ∈ {0, 1} for s_t = (−1)^{#ones}: a 1 maps h ↦ 1 − h.
    The output gate is a constant silu(gate), undone by out_proj; prototypes f_even = 0, f_odd = 1.
    """
    model, U = _skeleton(lambda d, rngs: DiagonalRNN(d, state_size=1, allow_neg_eigval=True, rngs=rngs), 3, 2, 1)
    mixer = model.blocks[0].mixer
    flip = np.array([0.0, 0.0, 1.0])  # per token: padding, bit 0, bit 1
    mixer.in_proj.kernel[...] = _lookup(U, np.stack([SATURATE * (1 - 2 * flip), flip, np.full(3, gate)], 1))
    mixer.decay_bias[...] = jnp.zeros_like(mixer.decay_bias[...])
    mixer.out_proj.kernel[...] = jnp.asarray(np.eye(1, 4, 3) * (1 + np.exp(-gate)) / gate, jnp.float32)  # 1/silu
    _set_head(model, 3, [[0.0], [1.0]])
    return model


# ------------------------------------------------------------------------------ DeltaProduct: any group
def _choose_query(rho, c, eps, rng, tries: int = 64):
    """(α, q̂, prototypes (G, d)): the unit query (best of `tries` random ones) whose read-outs of the G states are
    farthest apart after the per-head RMSNorm (eps `eps`); α scales q̂ into SiLU's range."""
    d = rho.shape[1]
    best = None
    for _ in range(tries):
        q = rng.standard_normal(d)
        q /= np.linalg.norm(q)
        a = _positive_scale(q)
        q_eff = q * a / np.sqrt(a * a + 1e-6)  # l2_normalize(x) = x / √(‖x‖² + 1e-6)
        o = c * d ** -0.5 * (np.eye(d) - rho) @ q_eff  # (G, d): o_p = hᵀ (q / √d), h = c (I − ρ(p)ᵀ)
        f = o / np.sqrt((o ** 2).mean(-1, keepdims=True) + eps)  # HeadRMSNorm
        dist = np.linalg.norm(f[:, None] - f[None], axis=-1) + np.eye(len(f)) * 1e9
        if best is None or dist.min() > best[0]:
            best = (dist.min(), a, q, f)
    return best[1:]


def deltaproduct_group(group: str, *, representation_kind: str | None = None, num_householder: int | None = None,
                       conv_size: int = 0) -> SequenceModel:
    """One DeltaProduct layer (DeltaNet when n_h = 1) with β = 2 reflections solving the word problem of `group`
    (`make_word_problem`; Z2 is also parity, `make_parity`).

    ρ: an orthogonal representation of dimension d (`smallest_representation` by default: the one needing the
    fewest reflections, e.g. S3 on the plane, S4 as the cube's rotations in R^3). One head, K = V = d, n_h =
    max_g rank(I − ρ(g)) (or `num_householder`, which must be at least that). Token g's transition is
    ρ(g)ᵀ = H(u_1)⋯H(u_r) (`householder_factors`), run as the steps k_1 = u_r, …, k_r = u_1 with β = 2 (and
    β = 0 for the remaining n_h − r steps). With X = −c·I, step values v_j = −Xᵀk_j = c·k_j keep the state
    affine in the group element: each step h ↦ H h + β k vᵀ = H h + (H − I)X, so from h_0 = 0,
        h_t = (P_t − I) X = c (I − ρ(p_t)ᵀ),   P_t = ρ(g_t)ᵀ⋯ρ(g_1)ᵀ = ρ(p_t)ᵀ,   p_t = g_1 ∘ ⋯ ∘ g_t,
    and the read-out o_t = h_tᵀ q / √d = c (I − ρ(p_t)) q / √d, normalized per head, identifies p_t for a generic
    q (distinct for distinct p since no non-identity element fixes q). Keys and queries have negative entries,
    which SiLU only reaches down to −0.278: they are scaled into [−0.25, ∞) before inverting the SiLU. The small
    c = HEAD_NORM_SCALE·√d keeps v = c·k in SiLU's range and the per-head RMSNorm in its linear range.
    `conv_size` > 0 keeps the short convolutions with the identity tap.
    """
    if representation_kind is None:
        kind, rho = smallest_representation(group)
    else:
        kind, rho = representation_kind, representation(group, representation_kind)
        if not is_faithful(rho):
            fail(f"representation_kind: {kind!r} is not faithful for {group}")
    need = max(reflections_needed(m) for m in rho)
    n_h = max(need, 1) if num_householder is None else num_householder
    check_positive_int("num_householder", n_h)
    if n_h < need:
        fail(f"num_householder: the {kind} representation of {group} has an element moving a {need}-dim subspace, "
             f"which needs {need} reflections per token, got n_h = {n_h}")
    G, d = rho.shape[:2]
    vocab = word_problem_vocab(group)
    kw = {} if n_h == 1 else {"num_householder": n_h}
    cls = DeltaNet if n_h == 1 else DeltaProduct
    model, U = _skeleton(lambda D, rngs: cls(D, num_heads=1, head_dim=d, allow_neg_eigval=True, conv_size=conv_size,
                                             rngs=rngs, **kw), vocab, G, d)
    # keys per token (token 0 = padding = identity); sign of each u chosen to keep its entries least negative
    keys = np.zeros((vocab, n_h, d))
    keys[:, :, 0] = 1.0  # unused steps: any unit key, with β = 0
    used = np.zeros((vocab, n_h), bool)
    for g in range(G):
        factors = householder_factors(rho[g].T)[::-1]
        for j, u in enumerate(factors):
            keys[g + 1, j] = u if u.min() >= (-u).min() else -u
            used[g + 1, j] = True
    alpha = np.array([[_positive_scale(k) for k in row] for row in keys])  # (vocab, n_h)
    k_eff = keys * (alpha / np.sqrt(alpha ** 2 + 1e-6))[..., None]  # the layer's l2-normalized keys
    # c keeps |o| ≪ √ε of the head RMSNorm (its linear range): the identity's state is 0, and a norm in its
    # saturated range would magnify the float32 drift of that zero state by 1/√ε ≈ 316
    c = HEAD_NORM_SCALE * np.sqrt(d)
    mixer = model.blocks[0].mixer
    a_q, q, prototypes = _choose_query(rho, c, mixer.norm.eps, np.random.default_rng(0))
    mixer.q_proj.kernel[...] = _lookup(U, np.tile(silu_inverse(a_q * q), (vocab, 1)))
    mixer.k_proj.kernel[...] = _lookup(U, silu_inverse(keys * alpha[..., None]).reshape(vocab, -1))
    mixer.v_proj.kernel[...] = _lookup(U, silu_inverse(np.where(used[..., None], c * k_eff, 0.0)).reshape(vocab, -1))
    mixer.b_proj.kernel[...] = _lookup(U, np.where(used, SATURATE, -SATURATE))
    if mixer.convs is not None:
        for conv in mixer.convs:
            conv.weight[...] = jnp.zeros_like(conv.weight[...]).at[-1].set(1.0)  # y_t = x_t
    mixer.o_proj.kernel[...] = jnp.asarray(np.eye(d, vocab + d, vocab), jnp.float32)
    _set_head(model, vocab, prototypes)
    return model


# ------------------------------------------------------------------------------- S5: counting modulo m
def s5_cyclic_counter(m: int) -> SequenceModel:
    """S5 with one conjugate pair of states whose discrete eigenvalue is e^{2πi/m} (to float32 rounding): it counts
    the tokens modulo m, i.e. solves the Zm word problem on words made of the generator alone (target: t mod m).

    Continuous Λ = iθ with θ = 2π/m and Δ = 1 (Re Λ = 0, allowed with clip_eigs=False), so ZOH gives
    Λ̄ = exp(iθ) on the unit circle. B̃ u_v = Λ for every real token makes B̄u = (Λ̄ − 1)/Λ · Λ = Λ̄ − 1 and
    x_t = Σ_{j<t} Λ̄^j (Λ̄ − 1) = Λ̄^t − 1; C̃ writes Re x_t and Im x_t to two dims; prototypes (cos kθ − 1, sin kθ).
    S5 is time-invariant (Λ̄ does not depend on the token): the state is a fixed linear filter of the inputs and
    cannot multiply by e^{iθ g_t} for a token-dependent g_t, which the general Zm word problem needs.
    """
    check_positive_int("m", m)
    if m < 2:
        fail(f"m: expected m >= 2, got {m}")
    vocab = word_problem_vocab(f"Z{m}")
    theta = 2 * np.pi / m
    model, U = _skeleton(lambda d, rngs: S5(d, state_size=2, clip_eigs=False, rngs=rngs), vocab, m, 2)
    mixer = model.blocks[0].mixer
    D = vocab + 2
    mixer.Lambda_re[...] = jnp.zeros((1,))
    mixer.Lambda_im[...] = jnp.full((1,), theta, jnp.float32)
    mixer.log_dt[...] = jnp.zeros((1,))
    real = (np.arange(vocab) > 0).astype(np.float64)  # B̃ u_v = iθ for real tokens, 0 for padding
    B = np.stack([np.zeros(D), np.asarray(_lookup(U, theta * real[:, None]))[:, 0]], -1)  # (D, 2): Re, Im
    mixer.B[...] = jnp.asarray(B[None], jnp.float32)
    C = np.zeros((1, D, 1, 2))
    C[0, vocab, 0, 0], C[0, vocab + 1, 0, 1] = 0.5, -0.5  # 2·Re(x/2) = Re x, 2·Re(−i x/2) = Im x
    mixer.C[...] = jnp.asarray(C, jnp.float32)
    mixer.D[...] = jnp.zeros((D,))
    k = np.arange(m)
    _set_head(model, vocab, np.stack([np.cos(k * theta) - 1, np.sin(k * theta)], 1))
    return model
