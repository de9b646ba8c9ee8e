"""Delta rule / DeltaProduct benchmark: forward and forward+backward wall time, side by side in one run.

    PYTHONPATH=. python bench/delta.py            # the docs/delta_rule.md table (several minutes on 2 cores)
    PYTHONPATH=. python bench/delta.py --quick    # small shapes, a smoke run

Rows per shape (B, T, H, d): our per-token recurrent path, our chunk method at C = 16/32/64 (sequential
and associative scans over chunks), DeltaProduct n_h = 2, 3 (chunk 64, interleaved T·n_h steps), and
flash-linear-attention's pure-PyTorch chunkwise reference `fla.ops.delta_rule.naive.delta_rule_chunkwise`
(optional: install `torch==2.13.0 triton flash-linear-attention`; skipped with a message otherwise).
Forward+backward is the gradient of Σ o·w w.r.t. q, k, v, β. Times are medians after a warm-up;
the machine is shared, so compare ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssm.ops.delta_rule import delta_product, delta_rule


def median_time(fn, repeats):
    fn()  # warm-up (compiles)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def make_inputs(rng, B, T, H, d, n=None):
    lead = (B, T) if n is None else (B, T, n)
    q = rng.standard_normal((B, T, H, d)).astype(np.float32)
    k = rng.standard_normal(lead + (H, d)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal(lead + (H, d)).astype(np.float32)
    beta = rng.uniform(0.0, 1.0, lead + (H,)).astype(np.float32)
    return q, k, v, beta


def jax_timings(op, args, w, repeats, **kw):
    args = tuple(jnp.asarray(a) for a in args)
    w = jnp.asarray(w)
    fwd = jax.jit(lambda *a: op(*a, **kw)[0])
    grad = jax.jit(jax.grad(lambda q, k, v, b, w: jnp.sum(op(q, k, v, b, **kw)[0] * w), argnums=(0, 1, 2, 3)))
    t_f = median_time(lambda: jax.block_until_ready(fwd(*args)), repeats)
    t_b = median_time(lambda: jax.block_until_ready(grad(*args, w)), repeats)
    return t_f, t_b, np.asarray(fwd(*args))


def fla_timings(args, w, repeats, chunk, threads):
    import torch
    from fla.ops.delta_rule.naive import delta_rule_chunkwise

    torch.set_num_threads(threads)

    head_first = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 2, 1))) for a in args]  # (B, H, T, ...)
    w_t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(w, 2, 1)))

    def fwd():
        with torch.no_grad():
            return delta_rule_chunkwise(*head_first, chunk_size=chunk)[0]

    def fwd_bwd():
        leaves = [a.clone().requires_grad_(True) for a in head_first]
        o = delta_rule_chunkwise(*leaves, chunk_size=chunk)[0]
        (o * w_t).sum().backward()
        return [a.grad for a in leaves]

    t_f = median_time(fwd, repeats)
    t_b = median_time(fwd_bwd, repeats)
    return t_f, t_b, np.moveaxis(fwd().numpy(), 1, 2)


def try_import_fla():
    try:
        import torch  # noqa: F401
        from fla.ops.delta_rule.naive import delta_rule_chunkwise  # noqa: F401
    except Exception as e:  # any import failure: report exactly why and skip
        return f"{type(e).__name__}: {e}"
    return None


def run_shape(B, T, H, d, repeats, skip_recurrent, fla_error, torch_threads, rows):
    rng = np.random.default_rng(0)
    args = make_inputs(rng, B, T, H, d)
    w = rng.standard_normal((B, T, H, d)).astype(np.float32)
    shape = f"({B}, {T}, {H}, {d})"

    def add(name, t_f, t_b):
        rows.append((shape, name, t_f, t_b))
        print(f"{shape:18s} {name:34s} fwd {t_f:8.4f} s   fwd+bwd {t_b:8.4f} s", flush=True)

    ref_out = None
    if not skip_recurrent:
        t_f, t_b, ref_out = jax_timings(delta_rule, args, w, repeats, method="recurrent")
        add("DeltaNet recurrent", t_f, t_b)
    for C in (16, 32, 64):
        t_f, t_b, out = jax_timings(delta_rule, args, w, repeats, method="chunk", chunk_size=C)
        add(f"DeltaNet chunk {C}", t_f, t_b)
        ref_out = out if ref_out is None else ref_out
    t_f, t_b, _ = jax_timings(delta_rule, args, w, repeats, method="chunk", chunk_size=64,
                              chunk_scan="associative")
    add("DeltaNet chunk 64 (associative)", t_f, t_b)
    for n in (2, 3):
        p_args = make_inputs(rng, B, T, H, d, n)
        t_f, t_b, _ = jax_timings(delta_product, p_args, w, repeats, method="chunk", chunk_size=64)
        add(f"DeltaProduct n_h={n} chunk 64", t_f, t_b)
    if fla_error is None:
        for C in (32, 64):
            t_f, t_b, out = fla_timings(args, w, repeats, C, torch_threads)
            add(f"FLA naive chunkwise {C} (torch)", t_f, t_b)
            print(f"{'':18s} max |ours − FLA| = {np.abs(out - ref_out).max():.2e}")


def summarize(rows):
    print("\n| shape (B, T, H, d) | implementation | forward (s) | forward+backward (s) |")
    print("|---|---|---|---|")
    for shape, name, t_f, t_b in rows:
        print(f"| {shape} | {name} | {t_f:.4f} | {t_b:.4f} |")
    by = {(s, n): (f, b) for s, n, f, b in rows}
    print()
    for shape in dict.fromkeys(s for s, *_ in rows):
        c64 = by.get((shape, "DeltaNet chunk 64"))
        best = min((by[(shape, f"DeltaNet chunk {C}")] for C in (16, 32, 64)), key=lambda x: x[1])
        rec = by.get((shape, "DeltaNet recurrent"))
        line = [f"{shape}:"]
        if rec:
            line.append(f"recurrent/chunk64 fwd+bwd {rec[1] / c64[1]:.1f}x (best C: {rec[1] / best[1]:.1f}x)")
        for C in (32, 64):
            fla = by.get((shape, f"FLA naive chunkwise {C} (torch)"))
            if fla:
                line.append(f"FLA{C}/ours64 fwd {fla[0] / c64[0]:.2f}x fwd+bwd {fla[1] / c64[1]:.2f}x")
        for n in (2, 3):
            p = by[(shape, f"DeltaProduct n_h={n} chunk 64")]
            line.append(f"DeltaProduct{n}/DeltaNet fwd {p[0] / c64[0]:.2f}x fwd+bwd {p[1] / c64[1]:.2f}x "
                        f"(target ≤ {1.2 * n:.1f}x)")
        print("  ".join(line))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-recurrent", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for the FLA reference (default 1: on the shared 2-core "
                             "machine 2 threads made it ~15x slower)")
    opts = parser.parse_args()
    shapes = [(2, 256, 2, 32)] if opts.quick else [(4, 4096, 4, 64), (8, 1024, 8, 64)]
    fla_error = try_import_fla()
    if fla_error:
        print(f"FLA reference skipped: flash-linear-attention did not import ({fla_error})")
    print(f"jax {jax.__version__} on {jax.default_backend()}, {jax.device_count()} device(s); "
          f"FLA with {opts.torch_threads} torch thread(s)")
    rows = []
    for shape in shapes:
        run_shape(*shape, opts.repeats, opts.skip_recurrent, fla_error, opts.torch_threads, rows)
    summarize(rows)


if __name__ == "__main__":
    main()
