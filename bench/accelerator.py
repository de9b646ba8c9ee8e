"""GPU benchmark: the delta rule against flash-linear-attention's Triton kernels, the scan core against the
device's copy bandwidth, and training-step tokens/s per mixer. One script for one device call (< 8 min).

    PYTHONPATH=. python bench/accelerator.py               # on a GPU: every section, markdown tables
    PYTHONPATH=. python bench/accelerator.py --cpu-smoke   # tiny shapes on CPU: proves the harness runs
    PYTHONPATH=. python bench/accelerator.py --sections delta --repeats 10

Sections (`--sections`, comma-separated):
  delta  forward and forward+backward (gradient of Σ o·w w.r.t. q, k, v, β [, g]) at (B, T, H, d) =
         (8, 4096, 16, 128) and (16, 2048, 16, 64), bf16 inputs: our XLA chunk path and our Pallas kernels
         (`precision="auto"`: bf16 matmul inputs, float32 accumulation on GPU) against FLA's Triton
         `chunk_delta_rule` (DeltaNet) and `chunk_gated_delta_product` (gated DeltaProduct, n_h = 2).
         FLA is optional (torch + triton + the flash-linear-attention / fla-core wheels); without it
         those rows are skipped with the import error. Ratios are ours / FLA (< 1: ours faster).
  scan   `ssm.linear_recurrence` (float32, (B, T, N) = (8, 4096, 2048)) forward and forward+backward, as
         achieved bandwidth (minimal bytes: read b + write h forward; + read dh + write db backward) over
         the copy bandwidth of the same device (a jitted x + 1 over 1 GiB, bytes read + written).
  train  tokens/s of the project's own train step (bench/train.py's `measure`: ssm.train.step, AdamW,
         donated state) per registered mixer, 8 layers, d_model 512, T = 2048, batch 8, remat off; each
         step is also run once under jax.transfer_guard("disallow") to show it makes no host transfers.
On a machine where JAX sees no GPU it prints one line saying so and exits 0 (unless --cpu-smoke).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import print_table, time_fn  # noqa: E402

from ssm import delta_product, delta_rule, linear_recurrence  # noqa: E402

DELTA_SHAPES = ((8, 4096, 16, 128), (16, 2048, 16, 64))
SMOKE_DELTA_SHAPES = ((1, 64, 2, 16),)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="delta,scan,train")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (median)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny shapes, runs on CPU (Pallas interpreted)")
    p.add_argument("--mixers", default="", help="train section: comma-separated (default: every registered)")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="stop starting new rows after this many seconds (the tables print what was measured)")
    opts = p.parse_args(argv)
    opts.start = time.perf_counter()
    return opts


def over_budget(opts, what):
    """True (and says so) once --budget-s has passed: the caller skips `what`."""
    spent = time.perf_counter() - opts.start
    if spent > opts.budget_s:
        print(f"budget: {spent:.0f} s > --budget-s {opts.budget_s:.0f}; skipped {what}", flush=True)
        return True
    return False


# ------------------------------------------------------------------------------------------------ delta rule
def delta_inputs(rng, B, T, H, d, n=None, gated=False):
    """bf16 q, k (L2-normalized), v, β ∈ (0, 1), optional log decay g; k/v/β with n_h steps if n."""
    lead = (B, T) if n is None else (B, T, n)
    q = rng.standard_normal((B, T, H, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    k = rng.standard_normal(lead + (H, d)).astype(np.float32)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal(lead + (H, d)).astype(np.float32)
    beta = rng.uniform(0.0, 1.0, lead + (H,)).astype(np.float32)
    g = -rng.uniform(0.0, 0.1, (B, T, H)).astype(np.float32) if gated else None
    return q, k, v, beta, g


def ours(product, method):
    """jitted forward and gradient of our op; inputs (q, k, v, β[, g]) in bf16, weights w (B, T, H, d)."""
    def run(q, k, v, beta, g):
        if product:
            return delta_product(q, k, v, beta, gate=g, method=method)[0]
        return delta_rule(q, k, v, beta, method=method)[0]

    def loss(q, k, v, beta, g, w):
        return jnp.sum(run(q, k, v, beta, g).astype(jnp.float32) * w)

    return jax.jit(run), jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3) + ((4,) if product else ())))


def fla_import():
    try:
        import torch
        from fla.ops.delta_rule import chunk_delta_rule
        from fla.ops.gated_delta_product import chunk_gated_delta_product
        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
    except Exception as e:  # any import failure: say exactly why and skip those rows
        return None, f"{type(e).__name__}: {e}"
    return (torch, chunk_delta_rule, chunk_gated_delta_product), None


def fla_fns(fla, product, n, args, w):
    """FLA forward / forward+backward closures on CUDA bf16 tensors (our layout (B, T, H, ...) is FLA's)."""
    torch, chunk_delta_rule, chunk_gated_delta_product = fla
    q, k, v, beta, g = args
    B, T = q.shape[:2]
    cuda = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to("cuda", torch.bfloat16)  # noqa: E731
    if product:  # FLA takes the interleaved steps: k (B, T·n, H, d), β (B, T·n, H)
        k, v, beta = (x.reshape((B, T * n) + x.shape[3:]) for x in (k, v, beta))
    leaves = [cuda(x) for x in (q, k, v, beta) + ((g,) if product else ())]
    w_t = torch.from_numpy(w).to("cuda")

    def call(*t):
        if product:
            q_, k_, v_, b_, g_ = t
            return chunk_gated_delta_product(q_, k_, v_, g_.float(), b_, num_householder=n)[0]
        return chunk_delta_rule(*t)[0]

    def fwd():
        with torch.no_grad():
            out = call(*leaves)
        torch.cuda.synchronize()
        return out

    def fwd_bwd():
        ts = [x.detach().requires_grad_(True) for x in leaves]
        (call(*ts).float() * w_t).sum().backward()
        torch.cuda.synchronize()

    return fwd, fwd_bwd


def median_seconds(fn, repeats):
    fn()  # warm-up (compiles / autotunes)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def delta_section(opts):
    rng = np.random.default_rng(0)
    fla, why = (None, "--cpu-smoke") if opts.cpu_smoke else fla_import()
    if fla is None:
        print(f"FLA rows skipped: {why}")
    rows = []
    for B, T, H, d in SMOKE_DELTA_SHAPES if opts.cpu_smoke else DELTA_SHAPES:
        w = rng.standard_normal((B, T, H, d)).astype(np.float32)
        for product in (False, True):
            if over_budget(opts, f"delta rule rows at {(B, T, H, d)}"):
                break
            n = 2 if product else None
            args = delta_inputs(rng, B, T, H, d, n, gated=product)
            name = "gated DeltaProduct n_h=2" if product else "DeltaNet"
            times, outs = {}, {}
            for method in ("chunk", "pallas"):
                fwd, grad = ours(product, method)
                j_args = [None if x is None else jnp.asarray(x, jnp.bfloat16) for x in args]
                times[method] = (time_fn(fwd, *j_args, repeats=opts.repeats),
                                 time_fn(grad, *j_args, jnp.asarray(w), repeats=opts.repeats))
                outs[method] = np.asarray(fwd(*j_args), np.float32)
            agree = np.abs(outs["pallas"] - outs["chunk"]).max() / max(np.abs(outs["chunk"]).max(), 1e-30)
            fla_t = None
            if fla is not None:
                f_fwd, f_fb = fla_fns(fla, product, n, args, w)
                fla_t = (median_seconds(f_fwd, opts.repeats), median_seconds(f_fb, opts.repeats))
                out = f_fwd().float().cpu().numpy()
                print(f"({B}, {T}, {H}, {d}) {name}: max |ours chunk − FLA| / max |FLA| = "
                      f"{np.abs(outs['chunk'] - out).max() / np.abs(out).max():.2e}")
            for method, (t_f, t_b) in times.items():
                ratio = ("", "") if fla_t is None else (f"{t_f / fla_t[0]:.2f}", f"{t_b / fla_t[1]:.2f}")
                rows.append([f"({B}, {T}, {H}, {d})", name, f"ours {method}", t_f * 1e3, t_b * 1e3, *ratio])
            if fla_t is not None:
                rows.append([f"({B}, {T}, {H}, {d})", name, "FLA Triton", fla_t[0] * 1e3, fla_t[1] * 1e3, "1", "1"])
            print(f"({B}, {T}, {H}, {d}) {name}: pallas vs chunk max rel diff {agree:.2e}", flush=True)
    print_table(["shape (B, T, H, d)", "op", "implementation", "fwd ms", "fwd+bwd ms", "fwd / FLA",
                 "fwd+bwd / FLA"], rows, title=f"Delta rule, bf16 inputs, median of {opts.repeats}")


# ------------------------------------------------------------------------------------------------ scan core
def scan_section(opts):
    B, T, N = (2, 256, 64) if opts.cpu_smoke else (8, 4096, 2048)
    key = jax.random.split(jax.random.key(0), 3)
    a = jax.random.uniform(key[0], (B, T, N), minval=0.5, maxval=0.999)
    b = jax.random.normal(key[1], (B, T, N))
    w = jax.random.normal(key[2], (B, T, N))
    fwd = jax.jit(lambda a, b: linear_recurrence(a, b))
    grad = jax.jit(jax.grad(lambda a, b, w: jnp.sum(linear_recurrence(a, b) * w), argnums=(0, 1)))
    t_f = time_fn(fwd, a, b, repeats=opts.repeats)
    t_b = time_fn(grad, a, b, w, repeats=opts.repeats)
    x = jnp.zeros((2 ** 18 if opts.cpu_smoke else 2 ** 28,), jnp.float32)  # 1 GiB on a GPU
    t_copy = time_fn(jax.jit(lambda x: x + 1.0), x, repeats=opts.repeats)
    copy_bw = 2 * x.nbytes / t_copy
    size = b.nbytes
    rows = [["forward", t_f * 1e3, 2 * size / t_f / 1e9, 2 * size / t_f / copy_bw],
            ["forward+backward", t_b * 1e3, 4 * size / t_b / 1e9, 4 * size / t_b / copy_bw]]
    print_table(["linear_recurrence (a, b time-varying)", "ms", "GB/s (minimal bytes)", "fraction of copy"], rows,
                title=f"Scan core, float32 (B, T, N) = ({B}, {T}, {N}); copy bandwidth "
                      f"{copy_bw / 1e9:.0f} GB/s (x + 1, read + write), median of {opts.repeats}")


# ------------------------------------------------------------------------------------------- training step
def train_section(opts):
    import importlib.util

    from ssm.registry import MIXERS

    # bench/train.py (not the repository's train.py): the same measurement as the CPU training table
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(os.path.dirname(__file__), "train.py"))
    train_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_bench)

    mixers = opts.mixers.split(",") if opts.mixers else list(MIXERS)
    shape = (["--num-layers=1", "--d-model=32", "--seq-len=64", "--batch-size=2"] if opts.cpu_smoke else
             ["--num-layers=8", "--d-model=512", "--seq-len=2048", "--batch-size=8", "--num-heads=8"])
    args = train_bench.parse_args(shape + [f"--repeats={opts.repeats}", "--warmup=2"])
    rows = []
    for mixer in mixers:
        if over_budget(opts, f"training step of {mixer}"):
            continue
        seconds = train_bench.measure(args, mixer, remat=False, transfer_guard=True)
        rows.append([mixer, seconds * 1e3, f"{args.batch_size * args.seq_len / seconds:,.0f}", "none"])
        print(f"  {mixer}: {seconds * 1e3:.1f} ms/step", flush=True)
    print_table(["mixer", "ms/step", "tokens/s", "host transfers in step"], rows,
                title=f"Training step (fwd + bwd + AdamW), {args.num_layers} layers, d_model {args.d_model}, "
                      f"T = {args.seq_len}, batch {args.batch_size}, float32 params, remat off, median of "
                      f"{args.repeats} steps")


def main(argv=None):
    opts = parse_args(argv)
    backend = jax.default_backend()
    if backend != "gpu" and not opts.cpu_smoke:
        print(f"bench/accelerator.py: JAX sees no GPU (backend={backend}); nothing measured "
              f"(--cpu-smoke runs tiny shapes on CPU)")
        return 0
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({backend}), jax {jax.__version__}, {jax.device_count()} device(s)")
    sections = {"delta": delta_section, "scan": scan_section, "train": train_section}
    for name in opts.sections.split(","):
        if over_budget(opts, f"section {name}"):
            continue
        t0 = time.perf_counter()
        sections[name](opts)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
