"""PTD robustness without training (Yu et al., ICLR 2024): transfer functions of the diagonal inits vs
HiPPO-LegS, N = 8…64, and the S4-PTD layer (S4D init="ptd") per channel. No training; ~1 minute on CPU (the
PTD perturbations come from the shipped table).

    python experiments/ptd_transfer.py          # table (markdown) + docs/figures/ptd_transfer.png

For each N: HiPPO-LegS (A, B) (dense, the target), S5-PTD (A + E = V diag(Λ) V⁻¹, κ(V) small) and the
normal-part init of S4D-LegS / S5 (A + PPᵀ = V diag(Λ) Vᴴ). Error = sup over ω ∈ [−4N², 4N²] (spacing
1/4, finer than the resonance width ½) of |G(iω) − G_HiPPO(iω)|, for C = B and four random C ~ N(0, 1)
(the same protocol as tests/test_ptd.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ssm
from ssm.analysis.transfer import diagonal_transfer, lower_triangular_transfer

from grid import ROOT, save_figure  # experiments/grid.py


def errors(N: int):
    A, B = ssm.hippo_legs(N)
    C = np.concatenate([B[:, None], np.random.default_rng(N).normal(size=(N, 4))], axis=1)  # C = B first
    omegas = np.linspace(-4 * N * N, 4 * N * N, 32 * N * N + 1)
    g = lower_triangular_transfer(A, B, C, omegas)
    lam, V, Vinv = ssm.perturb_then_diagonalize(A)
    lam_n, V_n = ssm.hippo_legs_normal_eig(N)
    g_ptd = diagonal_transfer(lam, V, Vinv, B, C, omegas)
    g_nrm = diagonal_transfer(lam_n, V_n, V_n.conj().T, B, C, omegas)
    E = (V * lam) @ Vinv - A
    stats = {"E_rel": np.linalg.norm(E.real, 2) / np.linalg.norm(A, 2), "kappa": np.linalg.cond(V),
             "ptd": np.abs(g_ptd - g).max(0), "normal": np.abs(g_nrm - g).max(0)}
    curves = (omegas, g[:, 0], g_ptd[:, 0], g_nrm[:, 0], np.abs(lam_n.imag).max())
    return stats, curves


def s4_layer_errors(N: int, H: int = 3):
    """The S4D layers as initialized (float32): per channel, sup_ω |G_layer − G_HiPPO| for S4-PTD (`init="ptd"`,
    its own random C̃ = cṼ with real c) and for S4D-LegS with the same read-out c (as tests/test_ptd.py)."""
    from flax import nnx

    def layer_transfer(A, B, C, omegas):  # the stored modes and their conjugates: (W, H)
        R, s = C * B, 1j * omegas[:, None, None]
        return (R / (s - A) + R.conj() / (s - A.conj())).sum(-1)

    ptd = ssm.S4D(H, state_size=N, init="ptd", rngs=nnx.Rngs(N))
    legs = ssm.S4D(H, state_size=N, init="legs", rngs=nnx.Rngs(N))
    A_p, B_p, C_p, _ = (np.asarray(v, np.complex128) for v in ptd.ssm())
    A_l, B_l, _, _ = (np.asarray(v, np.complex128) for v in legs.ssm())
    Vh = ssm.perturb_then_diagonalize(ssm.hippo_legs(N)[0])[1][:, : N // 2]
    c = np.linalg.solve(np.concatenate([Vh.real, Vh.imag], 1).T, np.concatenate([C_p[0].real, C_p[0].imag], 1).T).T
    C_l = (c @ ssm.hippo_legs_normal_eig(N)[1])[:, : N // 2]
    A, B = ssm.hippo_legs(N)
    omegas = np.linspace(-4 * N * N, 4 * N * N, 32 * N * N + 1)
    g = lower_triangular_transfer(A, B, c.T, omegas)
    return (np.abs(layer_transfer(A_p, B_p, C_p[0], omegas) - g).max(0),
            np.abs(layer_transfer(A_l, B_l, C_l, omegas) - g).max(0))


def main(out: Path, sizes=(8, 16, 32, 64), show_N: int = 32) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print("| N | ‖E‖₂/‖A‖₂ | κ₂(V) | sup error PTD, C = B | sup error normal, C = B | "
          "sup error PTD, random C (max of 4) | sup error normal, random C (min of 4) |")
    print("|---|---|---|---|---|---|---|")
    res = {}
    for N in sizes:
        s, curves = errors(N)
        res[N] = s
        if N == show_N:
            shown = curves
        print(f"| {N} | {s['E_rel']:.3f} | {s['kappa']:.2f} | {s['ptd'][0]:.2f} | {s['normal'][0]:.1f} | "
              f"{s['ptd'][1:].max():.2f} | {s['normal'][1:].min():.1f} |", flush=True)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    omegas, g, g_ptd, g_nrm, w_max = shown
    keep = omegas >= 0.5
    for y, label, kw in [(g, "HiPPO-LegS (dense)", dict(color="k", lw=2.2)),
                         (g_nrm, "normal part (S4D-LegS / S5)", dict(color="C3", lw=1)),
                         (g_ptd, "S5-PTD", dict(color="C0", lw=1, ls="--"))]:
        ax0.loglog(omegas[keep], np.abs(y[keep]), label=label, **kw)
    ax0.axvline(w_max, color="gray", lw=0.8, ls=":")
    ax0.text(w_max, ax0.get_ylim()[0] * 3, " largest\n eigenfreq.", fontsize=7, color="gray")
    ax0.set_xlabel("ω")
    ax0.set_ylabel("|G(iω)|, C = B")
    ax0.set_title(f"Transfer functions, N = {show_N}")
    ax0.legend(fontsize=7)
    Ns = np.array(sizes)
    for key, label, c in [("normal", "normal part (S4D-LegS / S5)", "C3"), ("ptd", "S5-PTD", "C0")]:
        ax1.semilogy(Ns, [res[N][key][0] for N in sizes], "o-", color=c, label=f"{label}, C = B")
        rnd = np.array([res[N][key][1:] for N in sizes])
        ax1.fill_between(Ns, rnd.min(1), rnd.max(1), color=c, alpha=0.25, label=f"{label}, 4 random C")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(Ns, [str(n) for n in Ns])
    ax1.set_xlabel("state size N")
    ax1.set_ylabel("sup_ω |G − G_HiPPO|")
    ax1.set_title("Distance to HiPPO-LegS's transfer function")
    ax1.legend(fontsize=7)
    save_figure(fig, out, dpi=100)

    print("\nS4-PTD: the S4D layer with init=\"ptd\" (float32, 3 channels, random real read-out c per channel)")
    print("| N | sup error S4-PTD layer (max of 3) | sup error S4D-LegS layer, same c (min of 3) | worst ratio |")
    print("|---|---|---|---|")
    for N in sizes:
        e_ptd, e_legs = s4_layer_errors(N)
        print(f"| {N} | {e_ptd.max():.2f} | {e_legs.min():.1f} | {(e_legs / e_ptd).min():.1f} |", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "ptd_transfer.png"))
    main(Path(p.parse_args().out))
