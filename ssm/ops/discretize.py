"""Discretization of diagonal continuous-time SSMs and the S4D convolution kernel.

Continuous x'(t) = Λ x + B u, diagonal Λ. With step Δ (S4D paper eqs. for ZOH / bilinear):
    ZOH:       Λ̄ = exp(ΔΛ),                    B̄ = (Λ̄ − 1)/Λ · B
    bilinear:  Λ̄ = (1 + ΔΛ/2) / (1 − ΔΛ/2),    B̄ = Δ / (1 − ΔΛ/2) · B
and the discrete system x_t = Λ̄ x_{t−1} + B̄ u_t.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ssm.checks import check_choice, check_positive_int, check_shape

DISCRETIZATIONS = ("zoh", "bilinear")


def discretize(Lambda, B, dt, method: str = "zoh"):
    """Discretize a diagonal SSM.

    Args:
      Lambda: (..., P) complex (or real) diagonal of the state matrix.
      B: (..., P, H) input matrix (one more trailing axis than Lambda; leading axes broadcast).
      dt: step sizes broadcastable to Lambda, e.g. (P,) one per state or (H, 1) one per S4D channel.
      method: "zoh" or "bilinear".

    Returns:
      (Lambda_bar (..., P), B_bar (..., P, H)) with B_bar = f(Λ, Δ)[..., None] · B.
    """
    check_choice("method", method, DISCRETIZATIONS)
    Lambda = jnp.asarray(Lambda)
    dt = jnp.asarray(dt)
    dtL = Lambda * dt
    if method == "zoh":
        Lambda_bar = jnp.exp(dtL)
        factor = (Lambda_bar - 1.0) / Lambda
    else:
        denom = 1.0 - dtL / 2.0
        Lambda_bar = (1.0 + dtL / 2.0) / denom
        factor = dt / denom
    return Lambda_bar, factor[..., None] * B


@partial(jax.jit, static_argnames=("L", "method", "chunk"))
def s4d_kernel(A, B, C, dt, L: int, method: str = "zoh", chunk: int = 128):
    """The real S4D convolution kernel K[h, l] = 2·Re Σ_n C_hn B̄_hn Ā_hn^l, l = 0..L−1.

    Args:
      A, B, C: (H, N) complex, one mode of each conjugate pair (hence 2·Re).
      dt: (H,) step size per channel.
      L: kernel length.
      method: discretization, "zoh" or "bilinear".
      chunk: block length c. Writing l = c·i + j, Ā^l = Ā^{c·i} Ā^j, so K is one batched real matmul
        2·Re[(C B̄ Ā^{c·i})_{h,i,n} (Ā^j)_{h,n,j}]: the intermediates are (H, L/c, N) and (H, N, c), never
        (H, N, L), and only H·N·(L/c + c) complex exponentials are evaluated (not H·N·L).

    Returns:
      K: (H, L) real.
    """
    check_positive_int("L", L)
    check_positive_int("chunk", chunk)
    A = jnp.asarray(A)
    H, N = A.shape
    check_shape("B", B, (H, N), "(H, N)")
    check_shape("C", C, (H, N), "(H, N)")
    check_shape("dt", dt, (H,), "(H,)")
    A_bar, B_bar = discretize(A, jnp.asarray(B)[..., None], jnp.asarray(dt)[:, None], method)
    CB = C * B_bar[..., 0]  # (H, N)
    log_A_bar = A * dt[:, None] if method == "zoh" else jnp.log(A_bar)  # Ā^l = exp(l · log Ā)
    c = min(chunk, L)
    n_blocks = -(-L // c)
    real = log_A_bar.real.dtype
    inner = jnp.exp(log_A_bar[:, :, None] * jnp.arange(c, dtype=real))  # Ā^j: (H, N, c)
    outer = CB[:, None, :] * jnp.exp(log_A_bar[:, None, :] * (c * jnp.arange(n_blocks, dtype=real))[:, None])
    # Re(W P) = W.re P.re − W.im P.im: two real batched matmuls (H, L/c, N) @ (H, N, c)
    K = 2.0 * (jnp.einsum("hin,hnj->hij", outer.real, inner.real)
               - jnp.einsum("hin,hnj->hij", outer.imag, inner.imag))
    return K.reshape(H, n_blocks * c)[:, :L]
