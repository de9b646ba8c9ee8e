"""Pallas kernels for the chunked delta rule (DeltaNet, Gated DeltaNet, DeltaProduct), forward and backward.

Same algorithm and notation as ssm/ops/delta_chunk.py (derived in docs/delta_rule.md), but fused: one program
per (batch b, head h, block of `block_v` value columns) walks the chunks of its sequence in order, keeping
the state S (K, block_v) in registers, and per chunk computes the decay factors, A = strict(β KKᵀ ⊙ D), the
triangular inverse T̃ = (I + A)⁻¹, W = T̃(βΓ ⊙ K), U = T̃(β ⊙ V) and the intra/inter-chunk outputs

    v_new = U − W S,   O = (Γ ⊙ Q) S + (QKᵀ ⊙ D) v_new,   S ← γ S + (tail ⊙ K)ᵀ v_new,

where D_ij = Γ_i/Γ_j within a segment (0 across a reset or above the diagonal). The value columns of S are
independent, so splitting V over programs is exact; the K-side factors are recomputed per block.

Backward: `_states_kernel` re-runs the recurrence and writes the state entering every chunk (nC·K·V floats
per (b, h), freed after the backward pass), then `_bwd_kernel` walks the chunks in reverse carrying
λ = ∂L/∂S and recomputes the chunk factors; the per-chunk adjoint is written out in `_chunk_bwd`. Gradients
w.r.t. q, k, β, g get one partial per value block, summed outside the kernel.

Lowering: GPU through Pallas' Triton lowering (`compiler_params=pallas.triton.CompilerParams`); values are 2-D
tiles or 1-D vectors and every loop is a `fori_loop`, so a TPU (Mosaic) lowering can follow. On CPU the
kernels run with `interpret=True` (what the tests do). Layout legend: B, T (padded to nC·C), H, K, V as in
delta_rule.py; C = chunk, BV = block_v.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ssm.checks import fail

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


def _fwd_kernel(q_ref, k_ref, v_ref, b_ref, g_ref, r_ref, h0_ref, out_ref, ht_ref, *, C, nC, gated, resets,
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


def _chunk_bwd(q, k, v, b, g, r, s, lam, d_o, gated, resets, mm_dtype):
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


def _bwd_kernel(q_ref, k_ref, v_ref, b_ref, g_ref, r_ref, st_ref, do_ref, dht_ref, dq_ref, dk_ref, dv_ref,
                db_ref, dg_ref, dh0_ref, *, C, nC, gated, resets, mm_dtype):
    """One (b, h, value block), chunks in reverse: writes dq, dk, dβ, dg partials, dv and dh0 (K, BV)."""
    def body(step, lam):
        c = nC - 1 - step
        q, k, v, b, g, r = _load_chunk((q_ref, k_ref, v_ref, b_ref, g_ref, r_ref), c, C)
        sl = pl.ds(c * C, C)
        d_q, d_k, d_v, d_b, d_g, d_s = _chunk_bwd(q, k, v, b, g, r, st_ref[c], lam, do_ref[sl, :], gated,
                                                  resets, mm_dtype)
        dq_ref[sl, :], dk_ref[sl, :], dv_ref[sl, :] = d_q, d_k, d_v
        db_ref[sl], dg_ref[sl] = d_b, d_g
        return d_s

    dh0_ref[...] = lax.fori_loop(0, nC, body, dht_ref[...])


# ------------------------------------------------------------------------------------------- pallas_calls

_SQ = pl.squeezed


class _Config(tuple):
    """Static kernel configuration (hashable): chunk, gated, resets, mm dtype name, block_v, interpret, warps."""

    def __new__(cls, chunk, gated, resets, mm_dtype, block_v, interpret, num_warps):
        return super().__new__(cls, (chunk, gated, resets, mm_dtype, block_v, interpret, num_warps))


def _call(kernel, cfg, grid, in_specs, out_shape, out_specs, name):
    _, _, _, _, _, interpret, num_warps = cfg
    params = None
    if not interpret:
        from jax.experimental.pallas import triton as pl_triton  # GPU first; a Mosaic TPU variant can follow
        params = pl_triton.CompilerParams(num_warps=num_warps, num_stages=1)
    return pl.pallas_call(kernel, out_shape=out_shape, grid=grid, in_specs=in_specs, out_specs=out_specs,
                          interpret=interpret, compiler_params=params, name=name)


def _input_specs(T, K, BV):
    """BlockSpecs of q, k, v, β, g, reset on grid (b, h, value block); the kernel sees a whole sequence."""
    qk = pl.BlockSpec((_SQ, T, _SQ, K), lambda b, h, j: (b, 0, h, 0))
    v = pl.BlockSpec((_SQ, T, _SQ, BV), lambda b, h, j: (b, 0, h, j))
    per_step = pl.BlockSpec((_SQ, T, _SQ), lambda b, h, j: (b, 0, h))
    reset = pl.BlockSpec((_SQ, T), lambda b, h, j: (b, 0))
    return [qk, qk, v, per_step, per_step, reset]


def _state_spec(K, BV):
    return pl.BlockSpec((_SQ, _SQ, K, BV), lambda b, h, j: (b, h, 0, j))


def _forward(q, k, v, beta, gate, reset, h0, cfg, states=False):
    """o (B, T, H, V) and h_final, or (with `states`) the states entering each chunk (B, H, nC, K, V)."""
    chunk, gated, resets, mm_name, BV, _, _ = cfg
    B, T, H, K = k.shape
    V, nC, ct = v.shape[-1], T // chunk, h0.dtype
    kernel = partial(_fwd_kernel, C=chunk, nC=nC, gated=gated, resets=resets, mm_dtype=jnp.dtype(mm_name),
                     states=states)
    if states:
        out = (jax.ShapeDtypeStruct((B, H, nC, K, V), ct),
               pl.BlockSpec((_SQ, _SQ, nC, K, BV), lambda b, h, j: (b, h, 0, 0, j)))
    else:
        out = (jax.ShapeDtypeStruct((B, T, H, V), ct), pl.BlockSpec((_SQ, T, _SQ, BV), lambda b, h, j: (b, 0, h, j)))
    out_shape = (out[0], jax.ShapeDtypeStruct((B, H, K, V), ct))
    return _call(kernel, cfg, (B, H, V // BV), _input_specs(T, K, BV) + [_state_spec(K, BV)], out_shape,
                 (out[1], _state_spec(K, BV)), "delta_chunk_states" if states else "delta_chunk_fwd")(
        q, k, v, beta, gate, reset, h0)


def _backward(q, k, v, beta, gate, reset, states, d_o, d_ht, cfg):
    chunk, gated, resets, mm_name, BV, _, _ = cfg
    B, T, H, K = k.shape
    V, nC, ct = v.shape[-1], T // chunk, states.dtype
    nV = V // BV
    kernel = partial(_bwd_kernel, C=chunk, nC=nC, gated=gated, resets=resets, mm_dtype=jnp.dtype(mm_name))
    in_specs = _input_specs(T, K, BV) + [
        pl.BlockSpec((_SQ, _SQ, nC, K, BV), lambda b, h, j: (b, h, 0, 0, j)),
        pl.BlockSpec((_SQ, T, _SQ, BV), lambda b, h, j: (b, 0, h, j)), _state_spec(K, BV)]
    part_k = pl.BlockSpec((_SQ, _SQ, T, _SQ, K), lambda b, h, j: (j, b, 0, h, 0))
    part_step = pl.BlockSpec((_SQ, _SQ, T, _SQ), lambda b, h, j: (j, b, 0, h))
    out_specs = (part_k, part_k, pl.BlockSpec((_SQ, T, _SQ, BV), lambda b, h, j: (b, 0, h, j)), part_step,
                 part_step, _state_spec(K, BV))
    shape = jax.ShapeDtypeStruct
    out_shape = (shape((nV, B, T, H, K), ct), shape((nV, B, T, H, K), ct), shape((B, T, H, V), ct),
                 shape((nV, B, T, H), ct), shape((nV, B, T, H), ct), shape((B, H, K, V), ct))
    dq, dk, dv, db, dg, dh0 = _call(kernel, cfg, (B, H, nV), in_specs, out_shape, out_specs, "delta_chunk_bwd")(
        q, k, v, beta, gate, reset, states, d_o, d_ht)
    return dq.sum(0), dk.sum(0), dv, db.sum(0), dg.sum(0), dh0


@partial(jax.custom_vjp, nondiff_argnums=(7,))
def _fused(q, k, v, beta, gate, reset, h0, cfg):
    return _forward(q, k, v, beta, gate, reset, h0, cfg)


def _fused_fwd(q, k, v, beta, gate, reset, h0, cfg):
    return _forward(q, k, v, beta, gate, reset, h0, cfg), (q, k, v, beta, gate, reset, h0)


def _fused_bwd(cfg, res, cotangents):
    q, k, v, beta, gate, reset, h0 = res
    d_o, d_ht = cotangents
    states, _ = _forward(q, k, v, beta, gate, reset, h0, cfg, states=True)
    dq, dk, dv, db, dg, dh0 = _backward(q, k, v, beta, gate, reset, states, d_o.astype(states.dtype),
                                        d_ht.astype(states.dtype), cfg)
    return dq, dk, dv, db, dg, jnp.zeros_like(reset), dh0


_fused.defvjp(_fused_fwd, _fused_bwd)


# ------------------------------------------------------------------------------------------------ driver


def pallas_delta_rule(q, k, v, beta, log_decay, reset, h0, chunk, precision="float32", q_stride=1, block_v=None,
                      interpret=None, num_warps=4):
    """The fused kernels on batch-first inputs (compute dtype), same contract as `chunked_delta_rule`.

    q (scaled) (B, T / q_stride, H, K); k (B, T, H, K); v (B, T, H, V); beta, log_decay (B, T, H) or None;
    reset (B, T) bool or None; h0 (B, H, K, V). A query every q_stride steps (DeltaProduct) is run as a
    query at every step that is zero except at each token's last step, so any chunk works.
    `precision`: resolved policy ("float32" / "bfloat16"); `block_v`: value columns per program (default
    min(V, 64)); `interpret`: default True on CPU. Returns o (B, T / q_stride, H, V), h_final (B, H, K, V).
    """
    B, T, H, K = k.shape
    V, ct = v.shape[-1], h0.dtype
    if q_stride > 1:
        Tq = q.shape[1]
        q = jnp.zeros((B, Tq, q_stride, H, K), q.dtype).at[:, :, -1].set(q).reshape(B, T, H, K)
    backend = jax.default_backend()
    interpret = backend == "cpu" if interpret is None else interpret
    if backend == "tpu" and not interpret:
        fail("method: 'pallas' has no TPU lowering yet (Mosaic needs a head-first layout); use 'chunk'")
    block_v = min(V, 64) if block_v is None else block_v
    if V % block_v:
        fail(f"block_v: must divide d_v={V}, got {block_v}")
    if not interpret:  # Triton tiles: power-of-two sizes, and tl.dot needs every dimension >= 16
        for name, n in (("chunk_size", chunk), ("d_k", K), ("block_v", block_v)):
            if n < 16 or n & (n - 1):
                fail(f"{name}: method='pallas' on {backend} needs a power of two >= 16, got {n}")
    mm_name = "bfloat16" if precision == "bfloat16" else jnp.dtype(ct).name
    cfg = _Config(chunk, log_decay is not None, reset is not None, mm_name, block_v, interpret, num_warps)
    pad = -T % chunk
    steps = lambda x: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))  # noqa: E731
    gate = jnp.zeros((B, T, H), ct) if log_decay is None else log_decay
    reset = jnp.zeros((B, T), ct) if reset is None else reset.astype(ct)
    o, h = _fused(*(steps(x) for x in (q, k, v, beta, gate, reset)), h0, cfg)
    o = o[:, :T]
    if q_stride > 1:
        o = o.reshape(B, T // q_stride, q_stride, H, V)[:, :, -1]
    return o, h
