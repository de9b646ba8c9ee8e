"""The per-token delta-rule scan with a hand-written backward pass (the "recurrent" method of delta_rule.py).

Layout legend: T tokens, B batch, n Householder steps per token, H heads, K = d_k, V = d_v; time-major
inside: q (T, B, H, K), k (T, B, n, H, K), v (T, B, n, H, V), beta / decay (T, B, n, H), h (B, H, K, V).

Step j of token t (s = its index over all T·n steps), with decay d_s (gate · keep, 1 without either):
    h̃_s = d_s h_{s−1},   e_s = v_s − h̃_sᵀ k_s,   h_s = h̃_s + β_s k_s e_sᵀ,    o_t = h_{tn+n−1}ᵀ q_t.
Backward with λ = ∂L/∂h_s (λ ← λ + q_t do_tᵀ at each token's last step), walking s downwards:
    ∂e_s = β_s λᵀ k_s,  ∂v_s = ∂e_s,  ∂β_s = k_sᵀ λ e_s,  ∂k_s = β_s λ e_s − h̃_s ∂e_s,  λ̃ = λ − k_s ∂e_sᵀ,
    ∂d_s = ⟨λ̃, h_{s−1}⟩,  λ ← d_s λ̃;    ∂q_t = h_t do_t,   ∂h_0 = λ at the end.
The forward pass keeps the state entering each token (T·B·H·K·V, as JAX's autodiff of the scan would), the
backward pass re-runs a token's n steps from it. Autodiff of the same scan computes the same numbers but
also stacks every intermediate and zero-fills their cotangent buffers: on CPU the hand-written pass is
≈ 2× faster at small heads (bench/small_models.py). Both passes are plain `lax.scan`s rather than the scan
core's `affine_scan`: the backward pass's per-token outputs (∂q, ∂k, ∂v, ∂β, ∂d) come from the intermediate
adjoints of the token's n steps, which an `apply` / `readout` pair of the core cannot return.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ssm.ops.delta_chunk import mm


def _token_states(h, k_t, v_t, b_t, d_t, n):
    """Run token t's n steps from the state h entering it: (h_{j−1}, h̃_j, e_j) per step and the state after."""
    prev, tilde, errs = [], [], []
    for j in range(n):
        prev.append(h)
        if d_t is not None:
            h = d_t[:, j, :, None, None] * h
        e = v_t[:, j] - mm("bhk,bhkv->bhv", k_t[:, j], h)
        tilde.append(h)
        errs.append(e)
        h = h + mm("bhk,bhv->bhkv", b_t[:, j, :, None] * k_t[:, j], e)
    return prev, tilde, errs, h


@partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def recurrent_delta(q, k, v, beta, decay, h0, n, decay_grad=True):
    """o (T, B, H, V) and the final state (B, H, K, V) of the per-token scan (module docstring);
    decay None or (T, B, n, H). `decay_grad=False`: the decay's cotangent is returned as zeros without being
    computed (a decay made of resets alone, which nothing differentiates)."""
    (o, h), _ = _forward(q, k, v, beta, decay, h0, n)
    return o, h


def _forward(q, k, v, beta, decay, h0, n):
    def token(h, e):
        q_t, k_t, v_t, b_t, d_t = e
        *_, h_next = _token_states(h, k_t, v_t, b_t, d_t, n)
        return h_next, (mm("bhkv,bhk->bhv", h_next, q_t), h)

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
        prev, tilde, errs, h_out = _token_states(h_t, k_t, v_t, b_t, d_t, n)
        lam = lam + q_t[..., :, None] * do_t[..., None, :]
        dq = mm("bhkv,bhv->bhk", h_out, do_t)
        dk, dv, db, dd = [None] * n, [None] * n, [None] * n, [None] * n
        for j in reversed(range(n)):
            k_j, b_j = k_t[:, j], b_t[:, j]
            de = b_j[..., None] * mm("bhkv,bhk->bhv", lam, k_j)
            lam_e = mm("bhkv,bhv->bhk", lam, errs[j])
            db[j] = jnp.sum(k_j * lam_e, axis=-1)
            dk[j] = b_j[..., None] * lam_e - mm("bhkv,bhv->bhk", tilde[j], de)
            dv[j] = de
            lam = lam - k_j[..., :, None] * de[..., None, :]
            if d_t is not None:
                if decay_grad:
                    dd[j] = jnp.sum(lam * prev[j], axis=(-2, -1))
                lam = d_t[:, j, :, None, None] * lam
        stack = lambda xs: jnp.stack(xs, axis=1)  # noqa: E731
        return lam, (dq, stack(dk), stack(dv), stack(db), None if d_t is None or not decay_grad else stack(dd))

    dh0, (dq, dk, dv, db, dd) = lax.scan(token, d_final, (q, k, v, beta, decay, h_in, d_o), reverse=True)
    if decay is not None and not decay_grad:
        dd = jnp.zeros_like(decay)
    return dq, dk, dv, db, dd, dh0


recurrent_delta.defvjp(_recurrent_fwd, _recurrent_bwd)
