"""The per-token delta-rule scan with a hand-written backward pass (the "recurrent" method of delta_rule.py).

Layout legend: T tokens, B batch, n Householder steps per token, H heads, K = d_k, V = d_v; time-major
inside: q (T, B, H, K), k (T, B, n, H, K), v (T, B, n, H, V), beta / decay (T, B, n, H), h (B, H, K, V).

Step j of token t (s = its index over all T·n steps), with decay d_s (gate · keep, 1 without either):
    h̃_s = d_s h_{s−1},   e_s = v_s − h̃_sᵀ k_s,   h_s = h̃_s + β_s k_s e_sᵀ,    o_t = h_{tn+n−1}ᵀ q_t.
Backward with λ = ∂L/∂h_s (λ ← λ + q_t do_tᵀ at each token's last step), walking s downwards:
    ∂e_s = β_s λᵀ k_s,  ∂v_s = ∂e_s,  ∂β_s = k_sᵀ λ e_s,  ∂k_s = β_s λ e_s − h̃_s ∂e_s,  λ̃ = λ − k_s ∂e_sᵀ,
    ∂d_s = ⟨λ̃, h_{s−1}⟩,  λ ← d_s λ̃;    ∂q_t = h_t do_t,   ∂h_0 = λ at the end.
The forward pass keeps the state entering each token (T·B·H·K·V, as JAX's autodiff of the scan would), the
backward pass recomputes the errors e_s from it (and the inner states of a token with n > 1). Every product
with h̃_s = d_s h_{s−1} is taken as d_s (h_{s−1} ·), and the output's term q_t do_tᵀ of λ enters only through
its products (λᵀk, λe, ⟨λ, h⟩) and the one fused update of λ: per step, h is read by two matrix-vector
products and λ by two, plus one pass that rewrites λ. Autodiff of the same scan computes the same numbers but
also stacks every intermediate and zero-fills their cotangent buffers: on CPU the hand-written pass is
≈ 2× faster at small heads (bench/small_models.py).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ssm.ops.delta_chunk import mm


def _outer(a, b):
    """a (..., K), b (..., V) -> a bᵀ (..., K, V) as a broadcast product (fuses with the update around it)."""
    return a[..., :, None] * b[..., None, :]


@partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def recurrent_delta(q, k, v, beta, decay, h0, n, decay_grad=True):
    """o (T, B, H, V) and the final state (B, H, K, V) of the per-token scan (module docstring);
    decay None or (T, B, n, H). `decay_grad=False`: the decay's cotangent is returned as zeros without being
    computed (a decay made of resets alone, which nothing differentiates)."""
    (o, h), _ = _forward(q, k, v, beta, decay, h0, n)
    return o, h


def _forward(q, k, v, beta, decay, h0, n):
    """The scan over tokens: ((o, final state), the state entering each token)."""
    def token(h, e):
        q_t, k_t, v_t, b_t, d_t = e
        h_t = h
        for j in range(n):
            k_j = k_t[:, j]
            d_j = None if d_t is None else d_t[:, j, :, None]
            pk = mm("bhk,bhkv->bhv", k_j, h)
            if j == n - 1:  # o_t = d hᵀq + (β k·q) e
                pq = mm("bhk,bhkv->bhv", q_t, h)
            e_j = v_t[:, j] - (pk if d_j is None else d_j * pk)
            bk = b_t[:, j, :, None] * k_j
            if j == n - 1:
                o_t = (pq if d_j is None else d_j * pq) + jnp.sum(bk * q_t, -1, keepdims=True) * e_j
            h = (h if d_j is None else d_j[..., None] * h) + _outer(bk, e_j)
        return h, (o_t, h_t)

    h_final, (o, h_in) = lax.scan(token, h0, (q, k, v, beta, decay))
    return (o, h_final), h_in


def _recurrent_fwd(q, k, v, beta, decay, h0, n, decay_grad):
    (o, h_final), h_in = _forward(q, k, v, beta, decay, h0, n)
    return (o, h_final), (q, k, v, beta, decay, h_in)


def _recurrent_bwd(n, decay_grad, res, cotangents):
    q, k, v, beta, decay, h_in = res
    d_o, d_final = cotangents

    def token(lam, e):
        q_t, k_t, v_t, b_t, d_t, h_t, do_t = e
        # The states entering each of the token's steps (P_0 = h_t) and their errors e_j = v_j − d_j P_jᵀ k_j.
        prev, errs = [h_t], []
        for j in range(n):
            pk = mm("bhk,bhkv->bhv", k_t[:, j], prev[j])
            errs.append(v_t[:, j] - (pk if d_t is None else d_t[:, j, :, None] * pk))
            if j < n - 1:
                h = prev[j] if d_t is None else d_t[:, j, :, None, None] * prev[j]
                prev.append(h + _outer(b_t[:, j, :, None] * k_t[:, j], errs[j]))
        # The output's cotangent is the rank-1 term q do_tᵀ of Λ = λ + q do_tᵀ at the last step, applied
        # through its products (Λᵀk, Λe, ⟨Λ, P⟩) and added once in the update; ∂q = h_out do_t with
        # h_out = d P + β k eᵀ read as d (P do_t) + β k (e·do_t).
        p_do = mm("bhkv,bhv->bhk", prev[n - 1], do_t)
        d_last = None if d_t is None else d_t[:, n - 1, :, None]
        dq = (p_do if d_last is None else d_last * p_do) + \
            b_t[:, n - 1, :, None] * k_t[:, n - 1] * jnp.sum(errs[n - 1] * do_t, -1, keepdims=True)
        dk, dv, db, dd = [None] * n, [None] * n, [None] * n, [None] * n
        for j in reversed(range(n)):
            k_j, b_j, e_j, p_j = k_t[:, j], b_t[:, j, :, None], errs[j], prev[j]
            d_j = None if d_t is None else d_t[:, j, :, None]
            lam_k, lam_e = mm("bhkv,bhk->bhv", lam, k_j), mm("bhkv,bhv->bhk", lam, e_j)
            if j == n - 1:  # Λ = λ + q do_tᵀ
                lam_k = lam_k + do_t * jnp.sum(q_t * k_j, -1, keepdims=True)
                lam_e = lam_e + q_t * jnp.sum(do_t * e_j, -1, keepdims=True)
            de = b_j * lam_k
            db[j] = jnp.sum(k_j * lam_e, axis=-1)
            p_de = mm("bhkv,bhv->bhk", p_j, de)
            dk[j] = b_j * lam_e - (p_de if d_j is None else d_j * p_de)
            dv[j] = de
            if d_j is not None and decay_grad:  # ⟨Λ − k deᵀ, P_j⟩
                dd[j] = jnp.sum(lam * p_j, axis=(-2, -1)) - jnp.sum(k_j * p_de, -1) + (
                    jnp.sum(q_t * p_do, -1) if j == n - 1 else 0.0)
            lam = lam - _outer(k_j, de) + (_outer(q_t, do_t) if j == n - 1 else 0.0)
            if d_j is not None:
                lam = d_j[..., None] * lam
        stack = lambda xs: jnp.stack(xs, axis=1)  # noqa: E731
        return lam, (dq, stack(dk), stack(dv), stack(db), None if d_t is None or not decay_grad else stack(dd))

    dh0, (dq, dk, dv, db, dd) = lax.scan(token, d_final, (q, k, v, beta, decay, h_in, d_o), reverse=True)
    if decay is not None and not decay_grad:
        dd = jnp.zeros_like(decay)
    return dq, dk, dv, db, dd, dh0


recurrent_delta.defvjp(_recurrent_fwd, _recurrent_bwd)
