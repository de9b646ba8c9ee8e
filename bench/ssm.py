"""Benchmark of the SSM layers (forward and forward+backward, jit, median of several runs).

    python bench/ssm.py [--lengths 1024,4096,16384] [--batch 1] [--repeats 3] [--quick]

* S4D (H=256, N=64, i.e. 32 stored modes per channel): mode="conv" (FFT with the chunked kernel) vs
  mode="scan" (`ssm.linear_recurrence` over a (B, T, H, N/2) complex state).
* S5-PTD (H=256, P=64 with conjugate symmetry, i.e. 32 stored states): the layer (`linear_recurrence`,
  default method for the backend) vs the S5 reference approach (lindermanlab/S5 `apply_ssm`: Λ̄ broadcast to
  (T, P), the pair operator (a_i, b_i)∘(a_j, b_j) = (a_j a_i, a_j b_i + b_j) under
  `jax.lax.associative_scan`, vmapped over the batch, differentiated by autodiff), same parameters.
Loss for forward+backward: sum(y · w), gradients w.r.t. every parameter and the input.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
from flax import nnx

# This file is named like the package: drop its folder from the path before importing the package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [q for q in sys.path if os.path.abspath(q or os.curdir) != HERE]
from ssm import S4D, S5, discretize  # noqa: E402

sys.path.insert(0, HERE)
from common import device_line, print_table, time_fn  # noqa: E402


def s5_reference_apply(layer: S5):
    """y(params, u) with the S5 reference's scan, on the layer's own parameterization."""
    graphdef, _ = nnx.split(layer, nnx.Param)

    def apply(params, u):
        m = nnx.merge(graphdef, params)
        Lambda, B, C, dt = m.ssm()
        Lambda_bar, B_bar = discretize(Lambda, B, dt, m.discretization)

        def op(q_i, q_j):
            return q_j[0] * q_i[0], q_j[0] * q_i[1] + q_j[1]

        def one(u1):  # (T, H) -> (T, H)
            bu = jax.vmap(lambda v: B_bar @ v.astype(B_bar.dtype))(u1)
            a = Lambda_bar * jnp.ones((u1.shape[0], Lambda_bar.shape[0]), Lambda_bar.dtype)
            xs = jax.lax.associative_scan(op, (a, bu))[1]
            return jax.vmap(lambda x: 2.0 * (C[0] @ x).real)(xs) + m.D[...] * u1

        return jax.vmap(one)(u)

    return apply


def layer_apply(layer, **call_kw):
    graphdef, _ = nnx.split(layer, nnx.Param)
    return lambda params, u: nnx.merge(graphdef, params)(u, **call_kw)


def timed(apply, params, u, w, repeats):
    fwd = jax.jit(apply)
    grad = jax.jit(jax.grad(lambda p, u: jnp.sum(apply(p, u) * w), argnums=(0, 1)))
    return time_fn(fwd, params, u, repeats=repeats), time_fn(grad, params, u, repeats=repeats)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="1024,4096,16384")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--d_model", type=int, default=256)
    p.add_argument("--state_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="T in {1024, 4096}, 2 repeats")
    args = p.parse_args()
    lengths = [1024, 4096] if args.quick else [int(t) for t in args.lengths.split(",")]
    repeats = 2 if args.quick else args.repeats
    H, N, Bn = args.d_model, args.state_size, args.batch
    print(device_line())
    s4d = S4D(H, state_size=N, rngs=nnx.Rngs(0))
    s5 = S5(H, state_size=N, rngs=nnx.Rngs(0))
    s4d_params = nnx.state(s4d, nnx.Param)
    s5_params = nnx.state(s5, nnx.Param)
    u0 = jax.random.normal(jax.random.key(3), (Bn, 64, H))  # sanity: the two S5 paths compute the same y
    diff = jnp.abs(layer_apply(s5)(s5_params, u0) - s5_reference_apply(s5)(s5_params, u0)).max()
    print(f"max |y_layer - y_S5ref| at T=64: {float(diff):.2e}")
    rows4, rows5 = [], []
    for T in lengths:
        u = jax.random.normal(jax.random.key(1), (Bn, T, H))
        w = jax.random.normal(jax.random.key(2), (Bn, T, H))
        conv = timed(layer_apply(s4d, mode="conv"), s4d_params, u, w, repeats)
        scan = timed(layer_apply(s4d, mode="scan"), s4d_params, u, w, repeats)
        rows4.append([T, conv[0] * 1e3, scan[0] * 1e3, conv[1] * 1e3, scan[1] * 1e3, scan[1] / conv[1]])
        lay = timed(layer_apply(s5), s5_params, u, w, repeats)
        ref = timed(s5_reference_apply(s5), s5_params, u, w, repeats)
        rows5.append([T, lay[0] * 1e3, ref[0] * 1e3, lay[1] * 1e3, ref[1] * 1e3, ref[1] / lay[1]])
        print(f"T={T} done", file=sys.stderr, flush=True)
    print_table(["T", "conv fwd ms", "scan fwd ms", "conv fwd+bwd ms", "scan fwd+bwd ms", "scan / conv (fwd+bwd)"],
                rows4, title=f"S4D (B, H, N) = ({Bn}, {H}, {N}), median of {repeats}")
    print_table(["T", "layer fwd ms", "S5 ref fwd ms", "layer fwd+bwd ms", "S5 ref fwd+bwd ms",
                 "speed-up vs S5 ref (fwd+bwd)"], rows5,
                title=f"S5-PTD (B, H, P) = ({Bn}, {H}, {N}) conj-sym ({N // 2} stored states), median of {repeats}")


if __name__ == "__main__":
    main()
