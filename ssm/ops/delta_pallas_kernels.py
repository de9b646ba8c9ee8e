"""Kernel bodies of the fused chunked delta rule (ssm/ops/delta_pallas.py has the pallas_calls and the VJP).

Per program (b, h, value block) on whole-sequence refs: `fwd_kernel` (outputs, or the states entering each
chunk), `bwd_kernel` (chunks in reverse, carrying λ = ∂L/∂S). The tile math below uses only 2-D tiles,
1-D vectors, iota masks, reductions, dots and fori_loops, so it passes Pallas' Triton lowering and keeps
a Mosaic (TPU) lowering possible. Notation: ssm/ops/delta_chunk.py; C chunk, K = d_k, BV value block.
"""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

# ---------------------------------------------------------------------------------------------- tile math


def _dot(a, b, mm_dtype, out_dtype, ta=False, tb=False):
    """a @ b (aᵀ if ta, bᵀ if tb) with inputs in mm_dtype, accumulated in out_dtype."""
    dims = (((0 if ta else 1,), (1 if tb else 0,)), ((), ()))
    prec = lax.Precision.DEFAULT if mm_dtype == jnp.bfloat16 else lax.Precision.HIGHEST
    return lax.dot_general(a.astype(mm_dtype), b.astype(mm_dtype), dims, precision=prec,
                           preferred_element_type=out_dtype)


def _rowsum(x):
    return jnp.sum(x, axis=1)


def _colsum(x):
    return jnp.sum(x, axis=0)


def _unit_lower_inverse(a):
    """(I + a)⁻¹ for strictly lower-triangular a (C, C) by forward substitution, one row per step:
    row i of T̃ = e_i − Σ_{j<i} a_ij T̃_j. Exact in the compute dtype (no precision policy)."""
    n = a.shape[0]
    rows = lax.broadcasted_iota(jnp.int32, (n, n), 0)
    eye = jnp.where(rows == lax.broadcasted_iota(jnp.int32, (n, n), 1), 1.0, 0.0).astype(a.dtype)

    def step(i, t):
        a_i = _colsum(jnp.where(rows == i, a, 0.0))  # row i of a, as a vector
        return jnp.where(rows == i, t - _colsum(a_i[:, None] * t)[None, :], t)

    return lax.fori_loop(0, n, step, eye)


def _decay_factors(g, r, gated, resets):
    """Decays of one chunk from the log decays g (C,) and reset flags r (C,) (1.0 = reset before step i).

    Returns D (C, C) = Γ_i/Γ_j on pairs j ≤ i of one segment else 0, gam (C,) = how much of the entering
    state reaches step i, tail (C,) = how much of step j reaches the chunk end, gamma = gam at the end;
    gam/tail/gamma are None when Γ ≡ 1 (no gate, no reset)."""
    C = g.shape[0]
    i = lax.broadcasted_iota(jnp.int32, (C, C), 0)
    j = lax.broadcasted_iota(jnp.int32, (C, C), 1)
    ok = i >= j
    if not (gated or resets):
        return jnp.where(ok, 1.0, 0.0).astype(g.dtype), None, None, None
    G = _rowsum(jnp.where(ok, g[None, :], 0.0)) if gated else jnp.zeros_like(g)  # inclusive cumsum
    G_end = jnp.sum(g) if gated else jnp.zeros((), g.dtype)
    start = end = None
    if resets:  # seg_i = number of resets up to and including i
        seg = _rowsum(jnp.where(ok, r[None, :], 0.0))
        seg_end = jnp.sum(r)
        ok = ok & (seg[:, None] == seg[None, :])
        start, end = seg == 0.0, seg == seg_end
    rel = jnp.where(ok, G[:, None] - G[None, :], 0.0)  # masked before exp: no inf above the diagonal
    D = jnp.where(ok, jnp.exp(rel), 0.0)
    gam, tail = jnp.exp(G), jnp.exp(G_end - G)
    gamma = jnp.exp(G_end)
    if resets:
        gam, tail = jnp.where(start, gam, 0.0), jnp.where(end, tail, 0.0)
        gamma = jnp.where(seg_end == 0.0, gamma, 0.0)
    return D, gam, tail, gamma


def _scale_rows(x, s):
    return x if s is None else x * s[:, None]


def _chunk_factors(k, v, b, g, r, gated, resets, mm_dtype):
    """The state-independent factors of one chunk: (D, gam, tail, gamma, KKᵀ, T̃, Kb, Vb, W, U)."""
    ct = k.dtype
    D, gam, tail, gamma = _decay_factors(g, r, gated, resets)
    C = k.shape[0]
    strict = lax.broadcasted_iota(jnp.int32, (C, C), 0) > lax.broadcasted_iota(jnp.int32, (C, C), 1)
    kk = _dot(k, k, mm_dtype, ct, tb=True)
    a = jnp.where(strict, b[:, None] * kk * D, 0.0)
    t_inv = _unit_lower_inverse(a)
    kb = k * (b if gam is None else b * gam)[:, None]
    vb = v * b[:, None]
    w, u = _dot(t_inv, kb, mm_dtype, ct), _dot(t_inv, vb, mm_dtype, ct)
    return D, gam, tail, gamma, kk, t_inv, kb, vb, w, u


def _load_chunk(refs, c, C):
    """q, k (C, K), v (C, BV), β, g, reset (C,) of chunk c, in the compute dtype."""
    q_ref, k_ref, v_ref, b_ref, g_ref, r_ref = refs
    sl = pl.ds(c * C, C)
    return q_ref[sl, :], k_ref[sl, :], v_ref[sl, :], b_ref[sl], g_ref[sl], r_ref[sl]


# ------------------------------------------------------------------------------------------------ kernels


def fwd_kernel(q_ref, k_ref, v_ref, b_ref, g_ref, r_ref, h0_ref, out_ref, ht_ref, *, C, nC, gated, resets,
                mm_dtype, states):
    """One (b, h, value block): out = o (T, BV), or with `states` the state entering each chunk (nC, K, BV)
    (the backward pass's recomputation, no outputs); ht = the final state (K, BV)."""

    def body(c, s):
        q, k, v, b, g, r = _load_chunk((q_ref, k_ref, v_ref, b_ref, g_ref, r_ref), c, C)
        ct = s.dtype
        D, gam, tail, gamma, _, _, _, _, w, u = _chunk_factors(k, v, b, g, r, gated, resets, mm_dtype)
        v_new = u - _dot(w, s, mm_dtype, ct)
        if states:
            out_ref[c] = s
        else:
            p = _dot(q, k, mm_dtype, ct, tb=True) * D
            o = _dot(_scale_rows(q, gam), s, mm_dtype, ct) + _dot(p, v_new, mm_dtype, ct)
            out_ref[pl.ds(c * C, C), :] = o.astype(out_ref.dtype)
        s_kept = s if gamma is None else gamma * s
        return s_kept + _dot(_scale_rows(k, tail), v_new, mm_dtype, ct, ta=True)

    ht_ref[...] = lax.fori_loop(0, nC, body, h0_ref[...]).astype(ht_ref.dtype)


def chunk_bwd(q, k, v, b, g, r, s, lam, d_o, gated, resets, mm_dtype):
    """Adjoint of one chunk: given the entering state s, λ = ∂L/∂(state after the chunk) and dO, returns
    (dq, dk, dv, dβ, dg, ∂L/∂s); dq, dk, dβ, dg are this value block's partials."""
    ct = s.dtype
    dot = partial(_dot, mm_dtype=mm_dtype, out_dtype=ct)
    D, gam, tail, gamma, kk, t_inv, kb, vb, w, u = _chunk_factors(k, v, b, g, r, gated, resets, mm_dtype)
    qk = dot(q, k, tb=True)
    p = qk * D
    kt = _scale_rows(k, tail)
    v_new = u - dot(w, s)
    # outputs O = (Γ⊙Q) S + P v_new and S' = γ S + K̃ᵀ v_new
    d_vnew = dot(p, d_o, ta=True) + dot(kt, lam)
    d_p = dot(d_o, v_new, tb=True)
    d_s = dot(_scale_rows(q, gam), d_o, ta=True) + (lam if gamma is None else gamma * lam) - dot(w, d_vnew, ta=True)
    d_kt = dot(v_new, lam, tb=True)
    d_qg = dot(d_o, s, tb=True)
    # W = T̃ Kb, U = T̃ Vb with dU = dv_new, dW = −dv_new Sᵀ; T̃ = (I + A)⁻¹ gives dA = −T̃ᵀ dT̃ T̃ᵀ
    d_w = -dot(d_vnew, s, tb=True)
    d_t = dot(d_w, kb, tb=True) + dot(d_vnew, vb, tb=True)
    d_kb, d_vb = dot(t_inv, d_w, ta=True), dot(t_inv, d_vnew, ta=True)
    C = k.shape[0]
    strict = lax.broadcasted_iota(jnp.int32, (C, C), 0) > lax.broadcasted_iota(jnp.int32, (C, C), 1)
    exact = partial(_dot, mm_dtype=ct, out_dtype=ct)  # the inverse stays exact, as in the forward pass
    d_a = jnp.where(strict, -exact(exact(t_inv, d_t, ta=True), t_inv, tb=True), 0.0)
    # A = strict(β_i KK_ij D_ij), P = QK ⊙ D
    d_kk = d_a * b[:, None] * D
    d_qk = d_p * D
    k_dkb = _rowsum(k * d_kb)
    d_b = _rowsum(v * d_vb) + _rowsum(d_a * kk * D) + (k_dkb if gam is None else gam * k_dkb)
    d_v = b[:, None] * d_vb
    d_q = _scale_rows(d_qg, gam) + dot(d_qk, k)
    d_k = (_scale_rows(d_kb, b if gam is None else b * gam) + _scale_rows(d_kt, tail) + dot(d_qk, q, ta=True)
           + dot(d_kk, k) + dot(d_kk, k, ta=True))
    d_g = jnp.zeros_like(b)
    if gated:
        e = (d_a * b[:, None] * kk + d_p * qk) * D  # ∂L/∂D_ij · D_ij = ∂L/∂(G_i − G_j)
        d_gam = b * k_dkb + _rowsum(q * d_qg)
        d_tail_t = _rowsum(k * d_kt) * tail
        last = lax.broadcasted_iota(jnp.int32, (C,), 0) == C - 1
        d_gamma = jnp.sum(s * lam) * gamma
        d_G = (_rowsum(e) - _colsum(e) + d_gam * gam - d_tail_t
               + jnp.where(last, jnp.sum(d_tail_t) + d_gamma, 0.0))
        i = lax.broadcasted_iota(jnp.int32, (C, C), 0)
        j = lax.broadcasted_iota(jnp.int32, (C, C), 1)
        d_g = _colsum(jnp.where(i >= j, d_G[:, None], 0.0))  # G = cumsum(g): dg_j = Σ_{i≥j} dG_i
    return d_q, d_k, d_v, d_b, d_g, d_s


def bwd_kernel(q_ref, k_ref, v_ref, b_ref, g_ref, r_ref, st_ref, do_ref, dht_ref, dq_ref, dk_ref, dv_ref,
                db_ref, dg_ref, dh0_ref, *, C, nC, gated, resets, mm_dtype):
    """One (b, h, value block), chunks in reverse: writes dq, dk, dβ, dg partials, dv and dh0 (K, BV)."""
    def body(step, lam):
        c = nC - 1 - step
        q, k, v, b, g, r = _load_chunk((q_ref, k_ref, v_ref, b_ref, g_ref, r_ref), c, C)
        sl = pl.ds(c * C, C)
        d_q, d_k, d_v, d_b, d_g, d_s = chunk_bwd(q, k, v, b, g, r, st_ref[c], lam, do_ref[sl, :], gated,
                                                  resets, mm_dtype)
        dq_ref[sl, :], dk_ref[sl, :], dv_ref[sl, :] = d_q, d_k, d_v
        db_ref[sl], dg_ref[sl] = d_b, d_g
        return d_s

    dh0_ref[...] = lax.fori_loop(0, nC, body, dht_ref[...])
