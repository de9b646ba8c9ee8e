"""Benchmark of the scan core: every method vs the S5 reference approach and a streaming probe.

    python bench/scan.py [--sizes 8x1024x256,8x16384x256] [--repeats 5]

S5 reference approach (lindermanlab/S5 `apply_ssm`): Λ̄ broadcast to (T, P), the pair operator
(a_i, b_i)∘(a_j, b_j) = (a_j a_i, a_j b_i + b_j) under `jax.lax.associative_scan`, vmapped over the batch,
differentiated by autodiff. Streaming probe: one fused elementwise pass h = Λ̄ ⊙ b that reads and writes the
same bytes as the scan's forward (the memory roofline). Loss for forward+backward: sum(Re h · w).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from common import device_line, print_table, time_fn  # noqa: E402

from ssm import linear_recurrence  # noqa: E402

METHODS = ("sequential", "chunked", "associative")


def s5_reference(a, b):
    """lindermanlab/S5's approach: broadcast Λ̄ over time, vmapped associative scan, time-major per example."""
    def op(q_i, q_j):
        return q_j[0] * q_i[0], q_j[0] * q_i[1] + q_j[1]

    def one(bu):  # (T, P)
        a_elems = a * jnp.ones((bu.shape[0], a.shape[0]), a.dtype)
        return jax.lax.associative_scan(op, (a_elems, bu))[1]

    return jax.vmap(one)(b)


def probe(a, b):
    return a * b


def make_fns(fwd):
    def loss(a, b, w):
        return jnp.sum(jnp.real(fwd(a, b)) * w)

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="8x1024x256,8x16384x256", help="comma-separated BxTxN")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(device_line())
    key = jax.random.PRNGKey(0)
    for size in args.sizes.split(","):
        B, T, N = map(int, size.split("x"))
        k1, k2, k3 = jax.random.split(key, 3)
        b = (jax.random.normal(k1, (B, T, N)) + 1j * jax.random.normal(k2, (B, T, N))).astype(jnp.complex64)
        a = (0.999 * jnp.exp(1j * jnp.linspace(0.0, 3.0, N))).astype(jnp.complex64)
        w = jax.random.normal(k3, (B, T, N))
        candidates = {"s5-reference (assoc, broadcast Λ̄)": s5_reference}
        for m in METHODS + ("auto",):
            candidates[f"ssm {m}"] = lambda a, b, m=m: linear_recurrence(a, b, method=m)
        times = {}
        for name, fwd in candidates.items():
            f, g = make_fns(fwd)
            times[name] = (time_fn(f, a, b, repeats=args.repeats), time_fn(g, a, b, w, repeats=args.repeats))
        t_probe = time_fn(jax.jit(probe), a, b, repeats=args.repeats)
        ref_fb = times["s5-reference (assoc, broadcast Λ̄)"][1]
        rows = [[name, fw * 1e3, fb * 1e3, fw / t_probe, ref_fb / fb] for name, (fw, fb) in times.items()]
        rows.append(["streaming probe (Λ̄ ⊙ b)", t_probe * 1e3, "", 1.0, ""])
        print_table(["method", "fwd ms", "fwd+bwd ms", "fwd / probe", "fwd+bwd speed-up vs S5 ref"], rows,
                    title=f"(B, T, N) = ({B}, {T}, {N}) complex64, median of {args.repeats}")


if __name__ == "__main__":
    main()
