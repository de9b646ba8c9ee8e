"""The delta rule (DeltaNet) and DeltaProduct as functional ops on the scan core.

Layout legend: B batch, T time, H heads, K = d_k, V = d_v, n = n_h Householder steps per token.
State per head h ∈ R^{K×V}, batch-first: q, k (B, T, H, K), v (B, T, H, V), β (B, T, H), state (B, H, K, V).

    h_t = (I − β_t k_t k_tᵀ) h_{t−1} + β_t k_t v_tᵀ,     o_t = h_tᵀ (scale · q_t)          (DeltaNet)

β ∈ [0, 2] (β > 1 gives the negative eigenvalue 1 − β of the generalized Householder factor). Keys and
queries are used as given: the layers L2-normalize them. Two methods compute the same thing:

* "recurrent": the per-token scan (ssm/ops/delta_recurrent.py), outputs read inside the scan, with a
  hand-written backward pass that keeps the state entering each token (T·K·V per head). The fastest method
  on CPU for small heads, and the reference the others are tested against.
* "chunk": the WY / UT-transform chunkwise algorithm (ssm/ops/delta_chunk.py): per-chunk triangular inverses and
  batched matmuls for all chunks at once, and only the cheap update h ↦ h + K̃ᵀ(U − W h) in the scan over
  chunks (`affine_scan`; `chunk_scan="associative"` combines dense chunk summaries instead). Its custom VJP
  re-runs the chunk recurrence rather than storing the chunk states.
* "pallas": the same chunk algorithm as fused Pallas kernels, forward and backward (ssm/ops/delta_pallas.py);
  Triton on GPU, `interpret=True` on CPU (slow there: for tests).
* "auto": the fastest measured method of the backend: on CPU "recurrent" for small heads and "chunk" for
  large ones (`SCAN_ON_CPU`), "chunk" elsewhere (`AUTO_METHOD`).

All compute in float32 (or float64 if given); the output has the inputs' dtype (e.g. bf16) and the final
state stays in the compute dtype. `precision` (ssm/ops/precision.py) sets the matmuls of "chunk" and
"pallas": exact float32 on CPU by default, bf16 inputs with float32 accumulation on GPU / TPU. "recurrent"
(the reference) and `delta_step` (decoding) are always exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssm.checks import check_choice, check_floating, check_ndim, check_positive_int, check_shape, fail
from ssm.ops.delta_chunk import chunked_delta_rule, mm
from ssm.ops.delta_recurrent import recurrent_delta
from ssm.ops.precision import PRECISIONS, resolve_precision

METHODS = ("auto", "recurrent", "chunk", "pallas")
CHUNK_SCANS = ("sequential", "associative")
# method="auto" per backend: the fastest path measured there. CPU: the per-token scan for small heads, "chunk"
# for large ones (`SCAN_ON_CPU`; docs/delta_rule.md, "Choosing the method"; Pallas only interprets on CPU).
# GPU / TPU: NOT MEASURED yet (docs/accelerators.md lists the pending runs); "chunk" until bench/accelerator.py
# says otherwise.
AUTO_METHOD = {"cpu": "chunk", "gpu": "chunk", "tpu": "chunk"}
# On CPU "auto" runs "recurrent" where the state of a head (d_k·d_v) and the number of steps (T·n_h) are at
# most one of these (max d_k·d_v, max steps) pairs (None: any); measured forward + backward
# (bench/small_models.py --methods): 16×16 heads 2–3.5× faster than "chunk" at 40–1024 steps; 32×32 1.2×
# faster at 256 steps, 1.2× slower at 1024; 64×64 3× slower.
SCAN_ON_CPU = ((16 * 16, None), (32 * 32, 512))


def resolve_method(method: str, backend: str | None = None, head_size: int | None = None,
                   steps: int | None = None) -> str:
    """"auto" -> "recurrent" on CPU for a head state of `head_size` = d_k·d_v over `steps` steps within
    `SCAN_ON_CPU`, else `AUTO_METHOD[backend]`; other names pass through."""
    if method != "auto":
        return method
    backend = jax.default_backend() if backend is None else backend
    if backend == "cpu" and head_size is not None and steps is not None and any(
            head_size <= size and (most is None or steps <= most) for size, most in SCAN_ON_CPU):
        return "recurrent"
    return AUTO_METHOD.get(backend, "chunk")


def delta_step(h, k, v, beta, decay=None):
    """One delta-rule update on any leading axes: h ← decay·h, then h ← h + β k (v − hᵀk)ᵀ.

    h (..., K, V); k (..., K); v (..., V); beta (...); decay None or (...) multiplier (gate·keep).
    This is also the per-token element of the recurrent method and the decode step of the layers.
    """
    if decay is not None:
        h = decay[..., None, None] * h
    err = v - mm("...k,...kv->...v", k, h)
    return h + mm("...k,...v->...kv", beta[..., None] * k, err)


def delta_rule(q, k, v, beta, *, scale=None, initial_state=None, method="auto", chunk_size=64, gate=None,
               reset=None, chunk_scan="sequential", precision="auto"):
    """DeltaNet's recurrence h_t = (I − β_t k_t k_tᵀ) h_{t−1} + β_t k_t v_tᵀ, read out as o_t = h_tᵀ(scale·q_t).

    Args:
      q, k: (B, T, H, K) queries and keys (not normalized here). v: (B, T, H, V). beta: (B, T, H) in [0, 2].
      scale: query scale, default K^−½.
      initial_state: (B, H, K, V) state before the first token (default zeros).
      method: "auto" (default: `resolve_method`; on CPU "recurrent" for heads up to 16×16, or 32×32 up to
        512 steps, else "chunk"), "chunk" (WY chunkwise, XLA),
        "pallas" (the chunk algorithm as fused Pallas kernels) or "recurrent" (per-token scan, the reference).
      chunk_size: steps per chunk for "chunk" (any T works: the sequence is padded internally).
        For `delta_product` it counts Householder steps, rounded down to whole tokens (a multiple of n).
      gate: optional (B, T, H) log decay: h ← exp(g_t)·h before step t's update (Gated DeltaNet).
      reset: optional (B, T) bool: the carried state is zeroed before step t (packed sequences).
      chunk_scan: recurrence across chunks, "sequential" (default, fastest on CPU) or "associative".
      precision: matmul policy of "chunk" / "pallas": "auto" (default: "float32" on CPU, "bfloat16" on
        GPU / TPU), "float32" (exact) or "bfloat16" (bf16 inputs, float32 accumulation); ssm/ops/precision.py.
    Returns:
      (o (B, T, H, V) in the inputs' dtype, final_state (B, H, K, V) in float32 or wider).
    """
    q, k, v, beta, gate, reset, h0 = _validate(q, k, v, beta, gate, reset, initial_state, method, chunk_size,
                                               chunk_scan, precision, product=False)
    return _run(q, k, v, beta, gate, reset, h0, scale, method, chunk_size, chunk_scan, precision)


def delta_product(q, k, v, beta, *, gate=None, scale=None, initial_state=None, method="auto", chunk_size=64,
                  reset=None, chunk_scan="sequential", precision="auto"):
    """DeltaProduct: n generalized-Householder delta steps per token, read out after the last.

    For token t: h ← exp(g_t)·h (if `gate`), then for j = 1..n: h ← (I − β_{t,j} k_{t,j} k_{t,j}ᵀ) h
    + β_{t,j} k_{t,j} v_{t,j}ᵀ; o_t = hᵀ(scale·q_t). Computed as the delta rule on the interleaved sequence of
    length T·n with queries only at every n-th position (so `chunk_size` counts interleaved steps).

    Args:
      q: (B, T, H, K). k: (B, T, n, H, K). v: (B, T, n, H, V). beta: (B, T, n, H) in [0, 2].
      gate: optional (B, T, H) log-space decay applied once per token, before its n steps.
      scale, initial_state, method, chunk_size, reset, chunk_scan, precision: as in `delta_rule`.
    Returns:
      (o (B, T, H, V), final_state (B, H, K, V)). n = 1 without a gate equals `delta_rule`.
    """
    q, k, v, beta, gate, reset, h0 = _validate(q, k, v, beta, gate, reset, initial_state, method, chunk_size,
                                               chunk_scan, precision, product=True)
    B, T, n, H, K = k.shape
    steps = T * n
    # Token t's query reads its last step (q_stride = n); its gate and reset act on its first.
    if gate is not None:
        gate = jnp.pad(gate[:, :, None], [(0, 0), (0, 0), (0, n - 1), (0, 0)]).reshape(B, steps, H)
    if reset is not None:
        reset = jnp.pad(reset[:, :, None], [(0, 0), (0, 0), (0, n - 1)]).reshape(B, steps)
    return _run(q, k.reshape(B, steps, H, K), v.reshape(B, steps, H, -1), beta.reshape(B, steps, H), gate,
                reset, h0, scale, method, chunk_size, chunk_scan, precision, q_stride=n)


def _run(q, k, v, beta, gate, reset, h0, scale, method, chunk_size, chunk_scan, precision, q_stride=1):
    """Shared driver: k, v, beta, gate, reset on the T steps, q (B, T / q_stride, H, K) on every q_stride-th."""
    out_dtype = jnp.result_type(q, k, v, beta)
    dt = jnp.promote_types(out_dtype, jnp.float32)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    q = q.astype(dt) * scale
    k, v, beta = k.astype(dt), v.astype(dt), beta.astype(dt)
    gate = None if gate is None else gate.astype(dt)
    B, T, H, K = k.shape
    V = v.shape[-1]
    h0 = jnp.zeros((B, H, K, V), dt) if h0 is None else h0.astype(dt)
    if T == 0:
        return jnp.zeros((B, 0, H, V), out_dtype), h0
    method, precision = resolve_method(method, head_size=K * V, steps=T), resolve_precision(precision)
    if method == "recurrent":
        o, h = _recurrent(q, k, v, beta, gate, reset, h0, q_stride)
    elif method == "pallas":
        from ssm.ops.delta_pallas import pallas_delta_rule  # imports jax.experimental.pallas only when used

        chunk = min(chunk_size, max(16, 1 << (T - 1).bit_length()))  # short sequences: one padded 2^k chunk
        o, h = pallas_delta_rule(q, k, v, beta, gate, reset, h0, chunk, precision, q_stride)
    else:
        chunk = max(q_stride, min(chunk_size, T) // q_stride * q_stride)  # whole tokens per chunk
        o, h = chunked_delta_rule(q, k, v, beta, gate, reset, h0, chunk, chunk_scan, q_stride,
                                  precision=precision)
    return o.astype(out_dtype), h


def _recurrent(q, k, v, beta, gate, reset, h0, n):
    """The per-token scan (ssm/ops/delta_recurrent.py): each token's n steps, decayed by exp(g)·(1 − reset)
    before its first step, then o_t = h_tᵀ q_t."""
    decay = None if gate is None else jnp.exp(gate)
    if reset is not None:
        keep = jnp.broadcast_to((~reset)[:, :, None], beta.shape).astype(beta.dtype)
        decay = keep if decay is None else decay * keep
    B, T = q.shape[:2]

    def per_token(x):  # (B, T·n, ...) -> (T, B, n, ...)
        return None if x is None else jnp.moveaxis(x.reshape((B, T, n) + x.shape[2:]), 1, 0)

    o, h = recurrent_delta(jnp.moveaxis(q, 1, 0), *(per_token(x) for x in (k, v, beta, decay)), h0, n,
                           gate is not None)  # a decay of resets alone needs no gradient
    return jnp.moveaxis(o, 0, 1), h


def _validate(q, k, v, beta, gate, reset, h0, method, chunk_size, chunk_scan, precision, product):
    check_choice("method", method, METHODS)
    check_choice("chunk_scan", chunk_scan, CHUNK_SCANS)
    check_choice("precision", precision, PRECISIONS)
    check_positive_int("chunk_size", chunk_size)
    q, k, v, beta = (jnp.asarray(x) for x in (q, k, v, beta))
    for name, x in (("q", q), ("k", k), ("v", v), ("beta", beta)):
        check_floating(name, x, allow_complex=False)
    check_ndim("q", q, 4, "(B, T, H, d_k)")
    B, T, H, K = q.shape
    if product:
        check_ndim("k", k, 5, "(B, T, n_h, H, d_k)")
        n = k.shape[2]
        check_shape("k", k, (B, T, n, H, K), "(B, T, n_h, H, d_k)")
        check_ndim("v", v, 5, "(B, T, n_h, H, d_v)")
        check_shape("v", v, (B, T, n, H, None), "(B, T, n_h, H, d_v)")
        check_shape("beta", beta, (B, T, n, H), "(B, T, n_h, H)")
    else:
        check_shape("k", k, (B, T, H, K), "(B, T, H, d_k)")
        check_ndim("v", v, 4, "(B, T, H, d_v)")
        check_shape("v", v, (B, T, H, None), "(B, T, H, d_v)")
        check_shape("beta", beta, (B, T, H), "(B, T, H)")
    if gate is not None:
        gate = jnp.asarray(gate)
        check_floating("gate", gate, allow_complex=False)
        check_shape("gate", gate, (B, T, H), "(B, T, H)")
    if reset is not None:
        reset = jnp.asarray(reset)
        check_shape("reset", reset, (B, T), "(B, T)")
        if reset.dtype != jnp.bool_:
            fail(f"reset: expected a bool array (B, T), got dtype {reset.dtype}")
    if h0 is not None:
        h0 = jnp.asarray(h0)
        check_floating("initial_state", h0, allow_complex=False)
        check_shape("initial_state", h0, (B, H, K, v.shape[-1]), "(B, H, d_k, d_v)")
    return q, k, v, beta, gate, reset, h0
