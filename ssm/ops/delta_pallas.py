"""Pallas kernels for the chunked delta rule (DeltaNet, Gated DeltaNet, DeltaProduct), forward and backward.

Same algorithm and notation as ssm/ops/delta_chunk.py (derived in docs/delta_rule.md), but fused: one program
per (batch b, head h, block of `block_v` value columns) walks the chunks of its sequence in order, keeping
the state S (K, block_v) in registers, and per chunk computes the decay factors, A = strict(β KKᵀ ⊙ D), the
triangular inverse T̃ = (I + A)⁻¹, W = T̃(βΓ ⊙ K), U = T̃(β ⊙ V) and the intra/inter-chunk outputs

    v_new = U − W S,   O = (Γ ⊙ Q) S + (QKᵀ ⊙ D) v_new,   S ← γ S + (tail ⊙ K)ᵀ v_new,

where D_ij = Γ_i/Γ_j within a segment (0 across a reset or above the diagonal). The value columns of S are
independent, so splitting V over programs is exact; the K-side factors are recomputed per block.

Backward: `fwd_kernel(states=True)` re-runs the recurrence and writes the state entering every chunk (nC·K·V
floats per (b, h), freed after the backward pass), then `bwd_kernel` walks the chunks in reverse carrying
λ = ∂L/∂S and recomputes the chunk factors; the per-chunk adjoint is written out in `chunk_bwd`
(ssm/ops/delta_pallas_kernels.py). Gradients w.r.t. q, k, β, g get one partial per value block, summed
outside the kernel.

Lowering: GPU through Pallas' Triton lowering (`compiler_params=pallas.triton.CompilerParams`); values are 2-D
tiles or 1-D vectors and every loop is a `fori_loop`, so a TPU (Mosaic) lowering can follow. On CPU the
kernels run with `interpret=True` (what the tests do). Layout legend: B, T (padded to nC·C), H, K, V as in
delta_rule.py; C = chunk, BV = block_v.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from ssm.checks import fail
from ssm.ops.delta_pallas_kernels import bwd_kernel, fwd_kernel

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
    kernel = partial(fwd_kernel, C=chunk, nC=nC, gated=gated, resets=resets, mm_dtype=jnp.dtype(mm_name),
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
    kernel = partial(bwd_kernel, C=chunk, nC=nC, gated=gated, resets=resets, mm_dtype=jnp.dtype(mm_name))
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
