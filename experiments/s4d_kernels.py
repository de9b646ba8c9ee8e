"""S4D inits (Gu et al., 2022): kernel shapes per init, and how S4D-LegS's kernel approaches S4's
(the dense HiPPO-LegS A) as N grows. No training; ~1 minute on CPU.

    python experiments/s4d_kernels.py           # table (markdown) + docs/figures/s4d_kernels.png

Left: the S4D convolution kernel K[l] = 2·Re Σ_n C_n B̄_n Ā_n^l (`ssm.s4d_kernel`, ZOH, Δ = 0.005, C = 1) of
each init at N = 16. Middle/right: basis functions K_n(t) = e_nᵀ exp(tA) B of S4-LegS (A = HiPPO-LegS,
B = B_HiPPO) against the diagonal S4D-LegS system (the normal part A + PPᵀ, unitarily diagonalized; the
same functions as the layer's kernel with C = V e_n), with B scaled by ½ (S4D paper, the diagonal
restriction of HiPPO-LegS converges to S4-LegS with B/2). The convergence is weak: the diagonal system's
basis function is S4's plus a high-frequency oscillation whose amplitude does not shrink with N, so the
pointwise L2 error stays ≈ 0.71 while the error of the running integral ∫₀ᵗ K (what a smooth input
sees) falls like 1/N.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import ssm
from ssm.init.diagonal import S4D_INITS, s4d_init
from ssm.analysis.transfer import dense_impulse_response, diagonal_impulse_response

from grid import ROOT, save_figure  # experiments/grid.py


def legs_errors(N: int, t: np.ndarray, n_basis: int = 3):
    """Relative L2 and running-integral errors of ½·(S4D-LegS basis functions) vs S4-LegS's, per n."""
    A, B = ssm.hippo_legs(N)
    K = dense_impulse_response(A, B, t)[:, :n_basis]
    lam, V = ssm.hippo_legs_normal_eig(N)
    Kd = 0.5 * diagonal_impulse_response(lam, V, V.conj().T, B, t)[:, :n_basis]
    dt = t[1] - t[0]
    l2 = np.linalg.norm(Kd - K, axis=0) / np.linalg.norm(K, axis=0)
    cum = np.abs(np.cumsum(Kd - K, 0) * dt).max(0) / np.abs(np.cumsum(K, 0) * dt).max(0)
    return l2, cum, K, Kd


def main(out: Path, sizes=(8, 16, 32, 64, 128)) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    L, dt, N0 = 800, 0.005, 16  # largest eigenfrequency ≈ N²/π = 81 < Nyquist π/Δ = 628: no aliasing
    for i, init in enumerate(S4D_INITS):
        label = "S4-PTD" if init == "ptd" else f"S4D-{init.capitalize()}"
        A, B = s4d_init(init, N0)
        K = np.asarray(ssm.s4d_kernel(jnp.asarray(A)[None], jnp.asarray(B)[None],
                                      jnp.ones((1, N0 // 2), jnp.complex64), jnp.full((1,), dt), L)[0])
        axes[0].plot(np.arange(L) * dt, K / np.abs(K).max() - 2.2 * i, lw=1, color=f"C{i}")
        axes[0].text(4.0, -2.2 * i + 0.3, label, ha="right", fontsize=8, color=f"C{i}")
    axes[0].set_yticks([])
    axes[0].set_xlabel("t = l·Δ (Δ = 0.005)")
    axes[0].set_ylabel("K[l] / max|K|  (offset per init)")
    axes[0].set_title(f"S4D kernels per init (N = {N0}, C = 1)")

    t = np.linspace(0, 6, 3001)
    print("| N | rel. L2 error, n = 0, 1, 2 | rel. error of ∫₀ᵗ K, n = 0, 1, 2 |")
    print("|---|---|---|")
    l2s, cums = [], []
    for N in sizes:
        l2, cum, K, Kd = legs_errors(N, t)
        l2s.append(l2)
        cums.append(cum)
        print(f"| {N} | {', '.join(f'{x:.3f}' for x in l2)} | {', '.join(f'{x:.4f}' for x in cum)} |", flush=True)
        if N == 64:
            axes[1].plot(t, Kd[:, 1], "C1", lw=0.5, alpha=0.7, label="S4D-LegS (diagonal), B/2")
            axes[1].plot(t, K[:, 1], "k", lw=2, label="S4-LegS (dense HiPPO)")
    axes[1].set_xlim(0, 3)
    axes[1].set_xlabel("t")
    axes[1].set_title("basis function n = 1, N = 64")
    axes[1].legend(fontsize=7)
    l2s, cums = np.array(l2s), np.array(cums)
    for n in range(3):
        axes[2].loglog(sizes, cums[:, n], "o-", color=f"C{n}", label=f"∫₀ᵗ K error, n = {n}")
        axes[2].loglog(sizes, l2s[:, n], "s:", color=f"C{n}", alpha=0.6, label=f"L2 error, n = {n}")
    axes[2].loglog(sizes, 0.4 / np.array(sizes), "k--", lw=0.8, label="∝ 1/N")
    axes[2].set_xticks(sizes, [str(s) for s in sizes])
    axes[2].set_xlabel("state size N")
    axes[2].set_title("S4D-LegS → S4-LegS (weakly)")
    axes[2].legend(fontsize=6, ncol=2)
    save_figure(fig, out, dpi=100)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "s4d_kernels.png"))
    main(Path(p.parse_args().out))
