# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SSM kernels: S4D inits, three ways to run S4D, and PTD vs the normal-part init
#
# Everything here comes from the `ssm` package; no model is redefined. Set `SMOKE=1` (as CI does) for a
# seconds-long run with smaller sizes.
#
# 1. The S4D inits (S4D paper §4) and their convolution kernels `K[l] = 2·Re Σ_n C_n B̄_n Ā_n^l`.
# 2. One S4D layer run three ways: FFT convolution, the scan core, and one token at a time — same numbers.
# 3. Why S5-PTD: the transfer function of the normal-part init (S4D-LegS / S5) has resonances near its
#    largest eigenfrequencies that do not shrink with N; PTD's stays close to HiPPO-LegS's.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import ssm
from ssm.init.diagonal import S4D_INITS, s4d_init
from ssm.analysis.transfer import diagonal_transfer, lower_triangular_transfer

SMOKE = os.environ.get("SMOKE") == "1"
N = 16                       # state size (N/2 stored conjugate modes per channel)
L = 200 if SMOKE else 800    # kernel length

# %% [markdown]
# ## 1. S4D inits and their kernels
# `s4d_init(init, N)` returns the diagonal `A` and `B` (N/2 modes); `ssm.s4d_kernel` discretizes (ZOH) and
# evaluates the kernel without ever materializing an (H, N, L) array.

# %%
dt = 0.005
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for i, init in enumerate(S4D_INITS):
    label = "S4-PTD" if init == "ptd" else f"S4D-{init.capitalize()}"
    A, B = s4d_init(init, N)
    axes[0].scatter(A.real, A.imag, s=12, label=label, color=f"C{i}")
    K = ssm.s4d_kernel(jnp.asarray(A)[None], jnp.asarray(B)[None], jnp.ones((1, N // 2), jnp.complex64),
                       jnp.full((1,), dt), L)[0]
    K = np.asarray(K)
    axes[1].plot(np.arange(L) * dt, K / np.abs(K).max() - 2.2 * i, color=f"C{i}", lw=1)
axes[0].set(xlabel="Re A", ylabel="Im A", title=f"eigenvalues (N = {N})", xscale="symlog")
axes[0].legend(fontsize=8)
axes[1].set(xlabel="t = l·Δ", yticks=[], title="kernels (C = 1, offset per init)")
plt.show()

# %% [markdown]
# ## 2. Convolution, scan and step agree
# `S4D` trains in FFT-convolution mode (`mode="conv"`); `mode="scan"` runs the same SSM through the scan
# core `ssm.linear_recurrence`; `init_state` + `step` process one token at a time (streaming).

# %%
H, T = 8, (64 if SMOKE else 512)
layer = ssm.S4D(H, state_size=N, init="legs", rngs=nnx.Rngs(0))
x = jax.random.normal(jax.random.key(1), (2, T, H))
y_conv = layer(x)                   # (2, T, H)
y_scan = layer(x, mode="scan")


@jax.jit
def run_steps(x):
    def body(state, x_t):
        y_t, state = layer.step(x_t, state)
        return state, y_t
    _, ys = jax.lax.scan(body, layer.init_state(x.shape[0]), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


y_step = run_steps(x)
scale = float(jnp.abs(y_conv).max())
print(f"max |conv − scan| / max|y| = {float(jnp.abs(y_conv - y_scan).max()) / scale:.1e}")
print(f"max |conv − step| / max|y| = {float(jnp.abs(y_conv - y_step).max()) / scale:.1e}")
assert jnp.allclose(y_conv, y_scan, atol=1e-4 * scale) and jnp.allclose(y_conv, y_step, atol=1e-4 * scale)

# %% [markdown]
# ## 3. PTD vs the normal-part init: transfer functions
# `G(iω) = C (iωI − A)⁻¹ B`. HiPPO-LegS's `A` is not stably diagonalizable. S4D-LegS / S5 drop its low-rank
# part and diagonalize the normal part (unitarily); S5-PTD perturbs `A` by a small `E` so that `A + E` has
# a well-conditioned eigenbasis (`ssm.perturb_then_diagonalize`). Compare both with HiPPO's, with `C = B`.
# `S4D(init="ptd")` (S4-PTD) uses the same PTD eigenvalues and B̃ = Ṽ⁻¹B in every channel (curve "PTD").

# %%
sizes = (8, 16) if SMOKE else (8, 16, 32, 64)
errs = {"PTD": [], "normal part": []}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for N_ in sizes:
    A, B = ssm.hippo_legs(N_)
    omegas = np.linspace(0, 4 * N_ * N_, 16 * N_ * N_ + 1)   # spacing 1/4: resolves the resonances
    g = lower_triangular_transfer(A, B, B, omegas)
    lam, V, Vinv = ssm.perturb_then_diagonalize(A)           # shipped table for these N: instant
    lam_n, V_n = ssm.hippo_legs_normal_eig(N_)
    g_ptd = diagonal_transfer(lam, V, Vinv, B, B, omegas)
    g_nrm = diagonal_transfer(lam_n, V_n, V_n.conj().T, B, B, omegas)
    errs["PTD"].append(np.abs(g_ptd - g).max())
    errs["normal part"].append(np.abs(g_nrm - g).max())
    if N_ == sizes[-1]:
        keep = omegas > 0.5
        axes[0].loglog(omegas[keep], np.abs(g[keep]), "k", lw=2, label="HiPPO-LegS")
        axes[0].loglog(omegas[keep], np.abs(g_nrm[keep]), "C3", lw=1, label="normal part (S4D-LegS / S5)")
        axes[0].loglog(omegas[keep], np.abs(g_ptd[keep]), "C0--", lw=1, label="PTD")
        axes[0].set(xlabel="ω", ylabel="|G(iω)|", title=f"N = {N_}")
        axes[0].legend(fontsize=8)
for name, e in errs.items():
    axes[1].semilogy(sizes, e, "o-", label=name)
axes[1].set(xlabel="N", ylabel="sup_ω |G − G_HiPPO|", title="distance to HiPPO-LegS")
axes[1].legend()
plt.show()
for name, e in errs.items():
    print(name, [f"{v:.2f}" for v in e])

# %% [markdown]
# The normal-part error grows with N (its resonances sit near the largest eigenfrequencies, ≈ N²/π), while
# PTD's stays ≈ 1. The full comparison (N = 8…64, random read-outs) is `experiments/ptd_transfer.py`;
# results in `docs/results.md`.
