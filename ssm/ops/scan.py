"""The scan core: every layer's recurrence goes through this module.

Two entry points:

* `linear_recurrence(a, b, h0)`: the diagonal recurrence h_t = a_t ⊙ h_{t-1} + b_t on batch-first arrays
  (S4D, S5, gates), with four interchangeable methods and one memory-lean custom VJP.
* `affine_scan(apply, combine, elems, h0)`: the generic version for any affine element type with an
  associative `combine` (e.g. the delta rule's matrix-valued chunk recurrence h_{c+1} = P_c h_c + H_c).

Layout legend: B batch, T time, `...` feature dims (e.g. N states or (H, d_k, d_v)).

Why batch-first without transposes: on CPU, moving (B, T, N) to time-major and back costs 2-3x the scan
itself, so the sequential kernel walks axis 1 in place with dynamic slices (bench/scan.py measures it).

Gradients (conventions: JAX's complex VJP is unconjugated). For the forward recurrence with
multiplier m_t = a_t·keep_t (keep = 1 − reset) the adjoint is the same recurrence run the other way on the
multiplier shifted by one step:
    λ_t = g_t + m_{t+1} λ_{t+1},   ∂b_t = λ_t,   ∂a_t = keep_t λ_t h_{t-1},   ∂h0 = m_0 λ_0,
so the backward pass re-uses whichever kernel ran forward and stores only (a, h, h0, reset).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from ssm.checks import check_choice, check_floating, check_ndim, check_shape, fail

METHODS = ("auto", "sequential", "associative", "chunked")
DEFAULT_CHUNK = 64


# --------------------------------------------------------------------------------------------------
# Kernels. Each computes h_t = (a_τ keep_τ) ⊙ h_prev + b_t along axis 1 and returns h (B, T, ...).
#   a: (B, T, ...) time-varying or (...) time-invariant (broadcast against b's feature dims).
#   keep: None or (B, T) of {0, 1} in h's real dtype.  h0: (B, ...).
#   reverse: h_prev is h_{t+1} (h0 is the state after the last step).
#   multiplier_at_prev: τ is the index of h_prev rather than t (the adjoint's shifted multiplier).
# --------------------------------------------------------------------------------------------------


def _multiplier(a, keep, idx, time_varying, n_feat):
    """Multiplier at time index `idx`, shaped to broadcast against a (B, 1, ...) slice of b."""
    m = lax.dynamic_slice_in_dim(a, idx, 1, axis=1) if time_varying else a
    if keep is not None:
        k = lax.dynamic_slice_in_dim(keep, idx, 1, axis=1)  # (B, 1)
        m = m * k.reshape(k.shape + (1,) * n_feat)
    return m


def _sequential(a, b, h0, keep, reverse, multiplier_at_prev):
    """In-place loop over axis 1: reads each b_t once and writes each h_t once (DRAM-bandwidth bound)."""
    T = b.shape[1]
    time_varying = a.ndim == b.ndim

    def body(i, carry):
        h, out = carry
        t = T - 1 - i if reverse else i
        if multiplier_at_prev:
            prev = t + 1 if reverse else t - 1
            idx = jnp.clip(prev, 0, T - 1)  # at the boundary h_prev = h0 = 0 in the adjoint: any index works
        else:
            idx = t
        m = _multiplier(a, keep, idx, time_varying, b.ndim - 2)
        h = m * h + lax.dynamic_slice_in_dim(b, t, 1, axis=1)
        return h, lax.dynamic_update_slice_in_dim(out, h, t, axis=1)

    _, out = lax.fori_loop(0, T, body, (h0[:, None], jnp.empty_like(b)))
    return out


def _sequential_adjoint(a, g, h0, h, keep, reverse):
    """The sequential method's backward in one pass: λ, ∂a and ∂h0 without re-reading λ afterwards.

    Walks the opposite direction of the forward: λ_t = g_t + m_{t+1} λ_{t+1} and ∂a_t = keep_t λ_t h_{t-1}
    (accumulated in a (B, 1, ...) carry for a time-invariant `a`, written per step otherwise).
    Returns (λ (B, T, ...), ∂a (a's shape before reduction over B), ∂h0 (B, ...)).
    """
    T = g.shape[1]
    n_feat = g.ndim - 2
    time_varying = a.ndim == g.ndim

    def body(i, carry):
        lam, da_acc, lam_out, da_out = carry
        t = i if reverse else T - 1 - i
        nxt = jnp.clip(t - 1 if reverse else t + 1, 0, T - 1)  # τ of the multiplier; λ carry is 0 at the edge
        lam = _multiplier(a, keep, nxt, time_varying, n_feat) * lam + lax.dynamic_slice_in_dim(g, t, 1, 1)
        prev = t + 1 if reverse else t - 1
        h_prev = lax.dynamic_slice_in_dim(h, jnp.clip(prev, 0, T - 1), 1, axis=1)
        h_prev = jnp.where((prev < 0) | (prev > T - 1), h0[:, None], h_prev)
        contrib = lam * h_prev
        if keep is not None:
            k = lax.dynamic_slice_in_dim(keep, t, 1, axis=1)
            contrib = contrib * k.reshape(k.shape + (1,) * n_feat)
        lam_out = lax.dynamic_update_slice_in_dim(lam_out, lam, t, axis=1)
        if time_varying:
            da_out = lax.dynamic_update_slice_in_dim(da_out, contrib, t, axis=1)
        else:
            da_acc = da_acc + contrib
        return lam, da_acc, lam_out, da_out

    zero = jnp.zeros_like(h0[:, None])
    init = (zero, zero, jnp.empty_like(g), jnp.empty_like(g) if time_varying else zero)
    lam, da_acc, lam_out, da_out = lax.fori_loop(0, T, body, init)
    first = T - 1 if reverse else 0
    dh0 = (_multiplier(a, keep, first, time_varying, n_feat) * lam)[:, 0]
    return lam_out, (da_out if time_varying else da_acc[:, 0]), dh0


def _dense_multiplier(a, keep, b_shape, reverse, multiplier_at_prev):
    """Materialize m (B, T, ...) for the parallel kernels (they need a per-step multiplier anyway)."""
    m = jnp.broadcast_to(a, b_shape) if a.ndim != len(b_shape) else a
    if keep is not None:
        m = m * keep.reshape(keep.shape + (1,) * (len(b_shape) - 2))
    if multiplier_at_prev:  # τ = t−1 (forward) or t+1 (reverse); the boundary value multiplies h0 = 0
        pad = [(0, 0)] * len(b_shape)
        if reverse:
            pad[1] = (0, 1)
            m = jnp.pad(m[:, 1:], pad)
        else:
            pad[1] = (1, 0)
            m = jnp.pad(m[:, :-1], pad)
    return m


def _fold_h0(m, b, h0, reverse):
    """Fold the initial state into the first step's input: b_first += m_first ⊙ h0."""
    first = b.shape[1] - 1 if reverse else 0
    return b.at[:, first].add(m[:, first] * h0)


def _diagonal_combine(earlier, later):
    """(m_i, b_i) then (m_j, b_j)  =  (m_j m_i, m_j b_i + b_j): composition of h ↦ m h + b."""
    m_i, b_i = earlier
    m_j, b_j = later
    return m_j * m_i, m_j * b_i + b_j


def _associative(a, b, h0, keep, reverse, multiplier_at_prev):
    """lax.associative_scan over (m, b) pairs along axis 1: O(log T) depth, ~2.5x the memory traffic."""
    m = _dense_multiplier(a, keep, b.shape, reverse, multiplier_at_prev)
    b = _fold_h0(m, b, h0, reverse)
    _, h = lax.associative_scan(_diagonal_combine, (m, b), reverse=reverse, axis=1)
    return h


def _chunked(a, b, h0, keep, reverse, multiplier_at_prev, chunk=DEFAULT_CHUNK):
    """Scan within chunks of `chunk` steps (all chunks at once), then carry states across chunks.

    Three passes: local scans from a zero state plus the cumulative multipliers within each chunk, a short
    sequential scan over the nC chunk carries, and the fix-up h = h_local + cumprod(m) ⊙ carry_in.
    A time-invariant `a` without reset keeps its cumulative products as a (C, ...) table of powers.
    """
    B, T = b.shape[:2]
    feat = b.shape[2:]
    C = min(chunk, T)
    nC = -(-T // C)
    pad = [(0, 0), (0, nC * C - T)] + [(0, 0)] * len(feat)
    invariant = a.ndim != b.ndim and keep is None  # shifted multiplier == a when it is time-invariant
    if invariant:
        m = a
    else:
        m = _dense_multiplier(a, keep, b.shape, reverse, multiplier_at_prev)
    if reverse:  # walk the flipped sequence forwards: chunk bookkeeping stays in one direction
        b = jnp.flip(b, 1)
        m = m if invariant else jnp.flip(m, 1)
    bb = jnp.pad(b, pad).reshape((B * nC, C) + feat)
    zeros = jnp.zeros((B * nC,) + feat, b.dtype)
    if invariant:
        h_local = _sequential(m, bb, zeros, None, False, False).reshape((B, nC, C) + feat)
        powers = jnp.cumprod(jnp.broadcast_to(m, (C,) + feat).astype(b.dtype), axis=0)  # a^1 .. a^C
        carries = _sequential(powers[-1], h_local[:, :, -1], h0, None, False, False)
        cum_m = powers[None, None]
    else:
        mm = jnp.pad(m, pad, constant_values=1).reshape((B * nC, C) + feat)
        h_local = _sequential(mm, bb, zeros, None, False, False).reshape((B, nC, C) + feat)
        cum_m = _sequential(mm, jnp.zeros_like(bb), jnp.ones_like(zeros), None, False, False)
        cum_m = cum_m.reshape((B, nC, C) + feat)
        carries = _sequential(cum_m[:, :, -1], h_local[:, :, -1], h0, None, False, False)
    carry_in = jnp.concatenate([h0[:, None], carries[:, :-1]], axis=1)  # state entering chunk c
    h = (h_local + cum_m * carry_in[:, :, None]).reshape((B, nC * C) + feat)[:, :T]
    return jnp.flip(h, 1) if reverse else h


_KERNELS = {"sequential": _sequential, "associative": _associative, "chunked": _chunked}


def auto_method(shape=None) -> str:
    """The fastest method for the default backend (measured by bench/scan.py).

    CPU: the sequential in-place scan runs at memory bandwidth; the parallel forms only add traffic.
    GPU/TPU: the associative scan (O(log T) depth); on an H100 the sequential loop is 100-4000x slower
    (one kernel launch per step) and the chunked form 10-70x slower (see docs/scan_core.md).
    """
    return "sequential" if jax.default_backend() == "cpu" else "associative"


# --------------------------------------------------------------------------------------------------
# Custom VJP shared by all kernels.
# --------------------------------------------------------------------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _recurrence(a, b, h0, keep, reverse, method):
    return _KERNELS[method](a, b, h0, keep, reverse, False)


def _recurrence_fwd(a, b, h0, keep, reverse, method):
    h = _KERNELS[method](a, b, h0, keep, reverse, False)
    return h, (a, h, h0, keep)


def _recurrence_bwd(reverse, method, res, g):
    a, h, h0, keep = res
    g = jnp.asarray(g)
    if method == "sequential":
        lam, da, dh0 = _sequential_adjoint(a, g, h0, h, keep, reverse)
    else:
        lam, da, dh0 = _parallel_adjoint(a, g, h0, h, keep, reverse, method)
    if a.ndim != h.ndim:  # time-invariant a: da is (B, ...) here; reduce batch and broadcast feature dims
        da = jnp.sum(da, axis=0)
        extra = da.ndim - a.ndim
        da = jnp.sum(da, axis=tuple(range(extra))) if extra else da
        da = jnp.sum(da, axis=tuple(i for i, s in enumerate(a.shape) if s == 1), keepdims=True)
    return da, lam, dh0, None if keep is None else jnp.zeros_like(keep)


def _parallel_adjoint(a, g, h0, h, keep, reverse, method):
    """Backward for the parallel methods: λ by the same kernel the other way, then ∂a, ∂h0 elementwise."""
    # λ_t = g_t + m_{t±1} λ_{t±1}: the same kernel, the other direction, multiplier read at the previous step.
    lam = _KERNELS[method](a, g, jnp.zeros_like(h0), keep, not reverse, True)
    # h_prev for every step: h shifted by one towards the start of the recurrence, h0 at the boundary.
    if reverse:
        h_prev = jnp.concatenate([h[:, 1:], h0[:, None]], axis=1)
        first = h.shape[1] - 1
    else:
        h_prev = jnp.concatenate([h0[:, None], h[:, :-1]], axis=1)
        first = 0
    kb = 1.0 if keep is None else keep.reshape(keep.shape + (1,) * (h.ndim - 2))
    da = kb * lam * h_prev
    if a.ndim != h.ndim:
        da = jnp.sum(da, axis=1)
    m_first = a[:, first] if a.ndim == h.ndim else a
    if keep is not None:
        m_first = m_first * keep[:, first].reshape((-1,) + (1,) * (h.ndim - 2))
    return lam, da, m_first * lam[:, first]


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def linear_recurrence(a, b, h0=None, *, reverse=False, reset=None, method="auto"):
    """Diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, batch-first.

    Args:
      a: multiplier; either (B, T, ...) like `b` (time-varying) or broadcastable to b's feature shape `...`
        (time-invariant, e.g. (N,) for S4D/S5; never broadcast over T internally by the sequential method).
      b: inputs (B, T, ...), real or complex.
      h0: optional state before the first step (B, ...); with `reverse=True`, the state after the last step.
      reverse: run h_t = a_t ⊙ h_{t+1} + b_t from t = T−1 down to 0.
      reset: optional bool (B, T); where true the carried state is zeroed before step t (h_t = b_t).
      method: "sequential" (in-place loop), "associative" (lax.associative_scan), "chunked" (scan within
        chunks of 64, combine across), or "auto" (fastest for the backend; `auto_method`).

    Returns:
      h: (B, T, ...) in the promoted dtype of (a, b, h0). Differentiable w.r.t. a, b and h0 by a custom VJP
      that re-runs the same method in the opposite direction and stores only (a, h, h0, reset).
    """
    check_choice("method", method, METHODS)
    check_floating("b", b)
    check_floating("a", a)
    b = jnp.asarray(b)
    a = jnp.asarray(a)
    if b.ndim < 2:
        check_ndim("b", b, 2, "(B, T, ...)")
    batch, feat = b.shape[0], b.shape[2:]
    if a.ndim == b.ndim and _broadcastable(a.shape, b.shape):
        a = jnp.broadcast_to(a, b.shape)  # time-varying
    elif a.ndim >= b.ndim or not _broadcastable(a.shape, feat):
        fail(f"a: expected shape {b.shape} (time-varying, like b) or a shape broadcastable to {feat} "
             f"(time-invariant), got {a.shape}")
    dt = jnp.result_type(a, b) if h0 is None else jnp.result_type(a, b, h0)
    if h0 is None:
        h0 = jnp.zeros((batch,) + feat, dt)
    else:
        h0 = jnp.asarray(h0)
        check_floating("h0", h0)
        check_shape("h0", h0, (batch,) + feat, "(B, ...)")
    keep = None
    if reset is not None:
        reset = jnp.asarray(reset)
        check_shape("reset", reset, b.shape[:2], "(B, T)")
        keep = (~reset.astype(bool)).astype(jnp.finfo(dt).dtype)  # real dtype of dt
    if b.shape[1] == 0:
        return jnp.zeros(b.shape, dt)
    if method == "auto":
        method = auto_method(b.shape)
    return _recurrence(a.astype(dt), b.astype(dt), h0.astype(dt), keep, bool(reverse), method)


def _broadcastable(shape, target) -> bool:
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Generic affine scan over an element type with an associative combine (time on axis 0).
# --------------------------------------------------------------------------------------------------


def affine_scan(apply: Callable[[Any, Any], Any], combine: Callable[[Any, Any], Any], elems, h0, *,
                method: str = "sequential", reverse: bool = False,
                readout: Callable[[Any, Any], Any] | None = None):
    """States of h_t = apply(e_t, h_{t-1}) for a pytree of elements with time on axis 0.

    `apply(e, h)` applies one element (an affine map) to a state; `combine(earlier, later)` composes two
    elements into the one that applies `earlier` first, and must be associative. Both must accept extra
    leading axes on every leaf (they are called on stacks of elements).

    Args:
      elems: pytree, each leaf (T, ...).
      h0: state before the first element (after the last one when `reverse=True`).
      method: "sequential" (lax.scan of `apply`: O(T) depth, no composed elements; fastest on CPU) or
        "associative" (lax.associative_scan of `combine`, then `apply` each prefix to h0: O(log T) depth).
      readout: optional `readout(e_t, h_t)`; then hs stacks its outputs instead of the states (the
        sequential method computes them inside the scan, so the T states are never stacked — e.g. the
        delta rule's o_t = h_tᵀ q_t with q_t carried in the element).
    Returns:
      (hs, h_final): hs stacks the state (or readout) after each element (T, ...); h_final is the last state.
    """
    check_choice("method", method, ("sequential", "associative"))
    if method == "sequential":
        def step(h, e):
            h = apply(e, h)
            return h, (h if readout is None else readout(e, h))

        h_final, hs = lax.scan(step, h0, elems, reverse=reverse)
        return hs, h_final
    prefixes = lax.associative_scan(combine, elems, reverse=reverse, axis=0)
    hs = jax.vmap(apply, in_axes=(0, None))(prefixes, h0)
    h_final = jax.tree.map(lambda x: x[0] if reverse else x[-1], hs)
    if readout is not None:
        hs = jax.vmap(readout)(elems, hs)
    return hs, h_final
