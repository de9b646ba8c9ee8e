"""Chunkwise (WY / UT-transform) delta rule: the parallel part per chunk, the recurrence across chunks.

Layout legend: nC chunks of C steps, B batch, H heads, K = d_k, V = d_v. Every chunk tensor is laid out
(nC, B, H, C, ...) so that the per-chunk work is one batched matmul over (nC, B, H) and the scan over chunks
walks axis 0 (the scan core's `affine_scan` convention).

Within a chunk entering with state S (K, V), with the (optional) log decay g and its inclusive cumulative sum
G_i = Σ_{j≤i} g_j, Γ_i = exp(G_i), the recurrence h_i = e^{g_i}(I − β_i k_i k_iᵀ) h_{i−1} + β_i k_i v_iᵀ unrolls
to (papers.md, DeltaNet chunkwise form; the gated form of Gated DeltaNet):
    v_new = U − W S,            U = T̃ (β ⊙ V),  W = T̃ (βΓ ⊙ K),
    T̃ = (I + A)⁻¹,              A_ij = β_i (Γ_i/Γ_j) k_i·k_j  for j < i   (a unit lower-triangular solve),
    S_next = Γ_C S + K̃ᵀ v_new,  K̃_j = (Γ_C/Γ_j) k_j,
    O = Γ Q S + Aqk v_new,      Aqk_ij = (Γ_i/Γ_j) q_i·k_j  for j ≤ i.
Everything that does not depend on S is computed for all chunks at once (`prepare_chunks`), leaving
    S_{c+1} = γ_c S_c + K̃_cᵀ (U_c − W_c S_c),   O_c = O_intra_c + Q'_c S_c,   Q' = Γ Q − Aqk W,
for the scan over chunks (`chunk_scan`), whose custom VJP re-runs the state recurrence instead of storing the
nC states and runs the adjoint λ_c = Q'_cᵀ dO_c + P_cᵀ λ_{c+1} (P_c = γ_c I − K̃_cᵀ W_c) backwards.
Segment resets (packed sequences) cut the decay products at the reset: a pair (i, j) interacts only
within one segment, and S reaches step i only if no reset happened in the chunk up to i.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ssm.ops.precision import einsum
from ssm.ops.scan import affine_scan


def mm(spec, *operands, precision="float32"):
    """einsum under a resolved precision policy (ssm/ops/precision.py); "float32" is exact float32."""
    return einsum(spec, *operands, precision=precision)


# --------------------------------------------------------------------------------------------------
# Layout: (B, T, H, ...) <-> (nC, B, H, C, ...), padding T up to a multiple of C.
# --------------------------------------------------------------------------------------------------


def to_chunks(x, chunk):
    """(B, T, H, ...) -> (nC, B, H, C, ...), zero-padded at the end (zero β / k / q steps are no-ops)."""
    B, T = x.shape[:2]
    nC = -(-T // chunk)
    x = jnp.pad(x, [(0, 0), (0, nC * chunk - T)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape((B, nC, chunk) + x.shape[2:])
    return jnp.moveaxis(x, (1, 2), (0, 3))


def from_chunks(o, length):
    """(nC, B, H, C, V) -> (B, T, H, V), dropping the padding."""
    nC, B, H, C, V = o.shape
    return jnp.moveaxis(o, (0, 3), (1, 2)).reshape(B, nC * C, H, V)[:, :length]


def unit_lower_inverse(a):
    """(I + a)⁻¹ for strictly lower-triangular a (..., n, n), by 2×2 block recursion.

    [[L11, 0], [L21, L22]]⁻¹ = [[T11, 0], [−T22 L21 T11, T22]], both diagonal blocks inverted in one batch.
    The same operations as a blocked forward substitution (no Neumann series: its terms grow like
    binomials for β ≈ 2), but as batched matmuls; XLA's batched triangular solve is ~10× slower on CPU.
    Always exact float32 (whatever the precision policy): the inverse is the ill-conditioned step for β ≈ 2.
    """
    n = a.shape[-1]
    if n == 1:
        return jnp.ones_like(a)
    if n & (n - 1):  # pad to a power of two with an identity block
        p = 1 << n.bit_length()
        pad = [(0, 0)] * (a.ndim - 2) + [(0, p - n), (0, p - n)]
        return unit_lower_inverse(jnp.pad(a, pad))[..., :n, :n]
    h = n // 2
    t11, t22 = unit_lower_inverse(jnp.stack([a[..., :h, :h], a[..., h:, h:]]))
    t21 = -mm("...ij,...jk->...ik", t22, mm("...ij,...jk->...ik", a[..., h:, :h], t11))
    top = jnp.concatenate([t11, jnp.zeros_like(t11)], axis=-1)
    return jnp.concatenate([top, jnp.concatenate([t21, t22], axis=-1)], axis=-2)


# --------------------------------------------------------------------------------------------------
# The parallel part: everything that does not depend on the state entering a chunk.
# --------------------------------------------------------------------------------------------------


def prepare_chunks(q, k, v, beta, log_decay=None, reset=None, q_stride=1, precision="float32"):
    """Per-chunk WY factors, batched over all chunks.

    Args (all chunked, compute dtype): k (nC, B, H, C, K); v (nC, B, H, C, V); beta (nC, B, H, C);
      q (nC, B, H, C / q_stride, K): one query per `q_stride` steps, at steps s−1, 2s−1, … (DeltaProduct
        reads out after the last of a token's n steps; the delta rule has q_stride = 1);
      log_decay: None or (nC, B, H, C) log multiplier applied to the state before step i's update;
      reset: None or (nC, B, H or 1, C) bool, the carried state is zeroed before step i.
      precision: resolved matmul policy, "float32" or "bfloat16" (ssm/ops/precision.py).
    Returns:
      elems = (gamma (nC, B, H) or None, K̃ (nC, B, H, C, K), W (…, C, K), U (…, C, V)), the chunk
      transitions; q_state (nC, B, H, Cq, K) = Q' and o_intra (nC, B, H, Cq, V) for O = o_intra + Q' S.
    """
    C, K = k.shape[-2:]
    i = jnp.arange(C)
    qi = jnp.arange(q.shape[-2]) * q_stride + q_stride - 1  # the step each query reads
    strict = i[:, None] > i[None, :]
    if log_decay is None and reset is None:
        decay = None  # Γ ≡ 1
    else:
        G = jnp.zeros(beta.shape, beta.dtype) if log_decay is None else jnp.cumsum(log_decay, axis=-1)
        ok_pair = i[:, None] >= i[None, :]
        ok_start = ok_end = True
        if reset is not None:  # seg_i = number of resets in the chunk up to and including i
            seg = jnp.cumsum(reset.astype(jnp.int32), axis=-1)
            ok_pair = ok_pair & (seg[..., :, None] == seg[..., None, :])
            ok_start = seg == 0
            ok_end = seg == seg[..., -1:]
        rel = jnp.where(ok_pair, G[..., :, None] - G[..., None, :], -jnp.inf)
        decay = jnp.exp(rel)  # Γ_i/Γ_j within a segment, 0 across a reset or above the diagonal
        gam = jnp.where(ok_start, jnp.exp(G), 0.0)  # Γ_i: how much of S reaches step i
        tail = jnp.where(ok_end, jnp.exp(G[..., -1:] - G), 0.0)  # Γ_C/Γ_j: how much of step j reaches the end
    kk = mm("...id,...jd->...ij", k, k, precision=precision) * beta[..., :, None]
    qk = mm("...id,...jd->...ij", q, k, precision=precision)  # (…, Cq, C)
    if decay is None:
        a_kk = jnp.where(strict, kk, 0.0)
        a_qk = jnp.where(qi[:, None] >= i[None, :], qk, 0.0)
        bk = k * beta[..., None]
    else:
        a_kk = jnp.where(strict, kk * decay, 0.0)
        a_qk = qk * (decay if q_stride == 1 else decay[..., qi, :])
        bk = k * (beta * gam)[..., None]
    rhs = jnp.concatenate([bk, v * beta[..., None]], axis=-1)
    wu = mm("...ij,...jd->...id", unit_lower_inverse(a_kk), rhs, precision=precision)  # [W | U] = T̃ [βΓ K | β V]
    w, u = wu[..., :K], wu[..., K:]
    q_w = mm("...ij,...jd->...id", a_qk, wu, precision=precision)  # [Aqk W | Aqk U] in one matmul
    o_intra = q_w[..., K:]
    if decay is None:
        return (None, k, w, u), q - q_w[..., :K], o_intra
    gam_q = gam if q_stride == 1 else gam[..., qi]
    q_state = q * gam_q[..., None] - q_w[..., :K]
    return (gam[..., -1], k * tail[..., None], w, u), q_state, o_intra


# --------------------------------------------------------------------------------------------------
# The recurrence across chunks on the scan core, and its custom VJP.
# --------------------------------------------------------------------------------------------------


def _apply_lowrank(e, h, prec="float32"):
    """h ↦ γ h + K̃ᵀ (U − W h) without forming P = γI − K̃ᵀW (O(C·K·V) instead of O(K²·V))."""
    gamma, kt, w, u = e
    v_new = u - mm("...ck,...kv->...cv", w, h, precision=prec)
    h = h if gamma is None else gamma[..., None, None] * h
    return h + mm("...ck,...cv->...kv", kt, v_new, precision=prec)


def _apply_adjoint_lowrank(e, lam, prec="float32"):
    """λ ↦ g + γ λ − Wᵀ (K̃ λ): the transposed chunk transition plus the readout's cotangent g."""
    gamma, kt, w, g = e
    lam_scaled = lam if gamma is None else gamma[..., None, None] * lam
    kt_lam = mm("...ck,...kv->...cv", kt, lam, precision=prec)
    return g + lam_scaled - mm("...ck,...cv->...kv", w, kt_lam, precision=prec)


def _dense_transition(gamma, kt, w, prec="float32"):
    """P = γ I − K̃ᵀ W (…, K, K)."""
    p = -mm("...ck,...cj->...kj", kt, w, precision=prec)
    eye = jnp.eye(p.shape[-1], dtype=p.dtype)
    return p + (eye if gamma is None else gamma[..., None, None] * eye)


def _apply_dense(e, h, prec="float32"):
    p, b = e
    return mm("...kj,...jv->...kv", p, h, precision=prec) + b


def _combine_dense(earlier, later, prec="float32"):
    """(P1, b1) then (P2, b2) = (P2 P1, P2 b1 + b2)."""
    p1, b1 = earlier
    p2, b2 = later
    return mm("...kj,...ji->...ki", p2, p1, precision=prec), mm("...kj,...jv->...kv", p2, b1, precision=prec) + b2


def _chunk_states(elems, h0, method, prec):
    """States entering each chunk (nC, B, H, K, V) and the final state (B, H, K, V)."""
    combine = partial(_combine_dense, prec=prec)
    if method == "sequential":
        hs, h_final = affine_scan(partial(_apply_lowrank, prec=prec), combine, elems, h0, method="sequential")
    else:
        gamma, kt, w, u = elems
        dense = (_dense_transition(gamma, kt, w, prec), mm("...ck,...cv->...kv", kt, u, precision=prec))
        hs, h_final = affine_scan(partial(_apply_dense, prec=prec), combine, dense, h0, method="associative")
    return jnp.concatenate([h0[None], hs[:-1]], axis=0), h_final


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def chunk_scan(elems, q_state, h0, method, prec="float32"):
    """O_inter (nC, B, H, C, V) = Q'_c S_c and the final state, for S_{c+1} = γ_c S_c + K̃_cᵀ(U_c − W_c S_c).

    `method`: "sequential" (lax.scan of the low-rank update; fastest on CPU) or "associative" (dense
    (P_c, K̃_cᵀU_c) summaries combined by lax.associative_scan; O(log nC) depth). `prec`: the resolved
    matmul policy (ssm/ops/precision.py).
    """
    s_in, h_final = _chunk_states(elems, h0, method, prec)
    return mm("...ck,...kv->...cv", q_state, s_in, precision=prec), h_final


def _chunk_scan_fwd(elems, q_state, h0, method, prec):
    s_in, h_final = _chunk_states(elems, h0, method, prec)
    return (mm("...ck,...kv->...cv", q_state, s_in, precision=prec), h_final), (elems, q_state, h0)


def _chunk_scan_bwd(method, prec, res, cotangents):
    elems, q_state, h0 = res
    d_o, d_final = cotangents
    gamma, kt, w, u = elems
    mp = partial(mm, precision=prec)
    s_in, _ = _chunk_states(elems, h0, method, prec)  # recomputed: nC states are not kept between passes
    g = mp("...ck,...cv->...kv", q_state, d_o)  # readout cotangent Q'ᵀ dO per chunk
    combine = partial(_combine_dense, prec=prec)
    if method == "sequential":
        lam, dh0 = affine_scan(partial(_apply_adjoint_lowrank, prec=prec), combine, (gamma, kt, w, g), d_final,
                               method="sequential", reverse=True)
    else:
        p_t = jnp.swapaxes(_dense_transition(gamma, kt, w, prec), -1, -2)
        lam, dh0 = affine_scan(partial(_apply_dense, prec=prec), combine, (p_t, g), d_final,
                               method="associative", reverse=True)
    lam_out = jnp.concatenate([lam[1:], d_final[None]], axis=0)  # λ_{c+1}: cotangent of the state after c
    v_new = u - mp("...ck,...kv->...cv", w, s_in)
    d_u = mp("...ck,...kv->...cv", kt, lam_out)
    d_kt = mp("...cv,...kv->...ck", v_new, lam_out)
    d_w = -mp("...cv,...kv->...ck", d_u, s_in)
    d_gamma = None if gamma is None else jnp.sum(s_in * lam_out, axis=(-2, -1))
    d_q_state = mp("...cv,...kv->...ck", d_o, s_in)
    return (d_gamma, d_kt, d_w, d_u), d_q_state, dh0


chunk_scan.defvjp(_chunk_scan_fwd, _chunk_scan_bwd)


def chunked_delta_rule(q, k, v, beta, log_decay, reset, h0, chunk, method, q_stride=1, checkpoint_prepare=True,
                       precision="float32"):
    """The chunk algorithm on batch-first inputs (compute dtype): returns o (B, T / q_stride, H, V), h_final.

    k (B, T, H, K); v (B, T, H, V); beta, log_decay (B, T, H); reset (B, T) bool; h0 (B, H, K, V);
    q (scaled) (B, T / q_stride, H, K), one query per `q_stride` steps; `chunk` a multiple of q_stride.
    `checkpoint_prepare` recomputes the per-chunk C×C factors in the backward pass instead of storing them.
    `precision`: the resolved matmul policy, "float32" or "bfloat16" (ssm/ops/precision.py).
    """
    T = q.shape[1]
    chunked = [to_chunks(q, chunk // q_stride)] + [to_chunks(x, chunk) for x in (k, v, beta)]
    chunked.append(None if log_decay is None else to_chunks(log_decay, chunk))
    chunked.append(None if reset is None else to_chunks(reset[:, :, None], chunk))  # (nC, B, 1, C)
    prepare = partial(prepare_chunks, q_stride=q_stride, precision=precision)
    prepare = jax.checkpoint(prepare) if checkpoint_prepare else prepare
    elems, q_state, o_intra = prepare(*chunked)
    o_inter, h_final = chunk_scan(elems, q_state, h0, method, precision)
    return from_chunks(o_intra + o_inter, T), h_final
