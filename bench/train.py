"""Training-step throughput: tokens/s of one jitted step (forward + backward + AdamW update) per mixer,
with remat off and on, on 1 and on 8 simulated CPU devices.

    PYTHONPATH=. python bench/train.py              # 4 layers, d_model 128, T = 1024, batch 16 (minutes)
    PYTHONPATH=. python bench/train.py --quick      # T = 128, fewer repeats: a smoke run
    PYTHONPATH=. python bench/train.py --mixers s5,deltanet --devices 1 --seq-len 2048

The step is the project's own `ssm.train.step.make_train_step` (jitted, state donated, explicit shardings
over a `ssm.train.distributed` data mesh), on the model and optimizer of `ssm.train.build.build` (groups
and schedules from configs/base.py), exactly as train.py builds them; `--set model.<mixer>.<option>=value`
changes a mixer option. Batches are random tokens with per-token targets. Each (devices) case runs in its
own subprocess, because JAX fixes its device count when it initializes: the 8-device case sets
XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts.
Simulated CPU devices share the same cores, so the 8-device rows only show that the data-parallel step runs
(plus its all-reduce overhead); they are no speed-up. Times are medians of `--repeats` steps after a
warm-up step (compilation excluded), with block_until_ready.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssm.registry import MIXERS  # noqa: E402  (every registered mixer)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixers", default=",".join(MIXERS), help="comma-separated mixer names")
    p.add_argument("--devices", default="1,8", help="comma-separated simulated CPU device counts")
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=1024, help="T")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (divisible by every device count)")
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field of configs/base.py, e.g. model.deltaproduct.num_householder=4 (repeatable); "
                        "mixer options default to configs/base.py's sections")
    p.add_argument("--remat-policy", default="nothing_saveable")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first one compiles)")
    p.add_argument("--quick", action="store_true", help="T = 128 and 3 repeats (overrides --seq-len/--repeats)")
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # internal: measure in this process
    args = p.parse_args(argv)
    if args.quick:
        args.seq_len, args.repeats = 128, 3
    return args


# ----------------------------------------------------------------------------------- worker (one process)
def bench_config(args, mixer: str, remat: bool) -> dict:
    """configs/base.py with the benchmark's model and optimizer settings (1000 steps, 10 warmup)."""
    from configs.base import base_config

    c = base_config()
    c.model.mixer, c.model.d_model, c.model.num_layers = mixer, args.d_model, args.num_layers
    c.model.remat, c.model.remat_policy = remat, args.remat_policy
    c.train.num_steps, c.optim.warmup_steps = 1000, 10
    from common import set_fields

    set_fields(c, args.set)
    return c.to_dict()


def measure(args, mixer: str, remat: bool, transfer_guard: bool = False) -> float:
    """Median seconds of one training step of `mixer` on a data mesh over all devices of this process.
    `transfer_guard`: afterwards run one more step under jax.transfer_guard("disallow") (raises if the step
    moves data between host and device implicitly)."""
    import numpy as np

    from common import time_fn
    from ssm.train import distributed as dist
    from ssm.train.build import build
    from ssm.train.step import make_train_step

    built = build(bench_config(args, mixer, remat), vocab_size=args.vocab_size, num_outputs=args.vocab_size,
                  pooling="none")
    graphdef, state, schedules = built.graphdef, built.state, built.schedules
    mesh = dist.make_mesh()
    state = dist.replicate(state, mesh)
    step = make_train_step(graphdef, schedules["lr"], state_sharding=dist.replicated(mesh),
                           batch_sharding=dist.batch_sharding(mesh))
    B, T = args.batch_size, args.seq_len
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, args.vocab_size, (B, T)).astype(np.int32)
    batch = dist.shard_batch({"inputs": inputs, "targets": np.roll(inputs, -1, axis=1),
                              "weights": np.ones((B, T), np.float32),
                              "lengths": np.full((B,), T, np.int32)}, mesh)

    metrics = None

    def run():
        nonlocal state, metrics
        state, metrics = step(state, batch, None)  # the state is donated: carry the new one
        return state, metrics

    seconds = time_fn(run, repeats=args.repeats, warmup=args.warmup)
    if transfer_guard:
        import jax

        with jax.transfer_guard("disallow"):
            jax.block_until_ready(run())
    if not np.isfinite(float(metrics["loss"])):
        raise RuntimeError(f"{mixer}: non-finite loss")
    return seconds


def worker(args) -> None:
    import jax

    from common import device_line

    if jax.device_count() != args.worker:
        raise RuntimeError(f"expected {args.worker} devices, JAX sees {jax.device_count()}")
    print(device_line(), f"devices={jax.device_count()}", file=sys.stderr, flush=True)
    for mixer in args.mixers.split(","):
        for remat in (False, True):
            seconds = measure(args, mixer, remat)
            print(f"  {mixer} devices={args.worker} remat={remat}: {seconds * 1e3:.1f} ms/step",
                  file=sys.stderr, flush=True)
            print("ROW " + json.dumps({"mixer": mixer, "devices": args.worker, "remat": remat,
                                       "seconds": seconds}), flush=True)


# ----------------------------------------------------------------------------------------------- driver
def run_case(devices: int, argv: list[str]) -> list[dict]:
    """Measure every mixer in a fresh subprocess that sees `devices` simulated CPU devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, f"--worker={devices}"], env=env,
                         stdout=subprocess.PIPE, text=True, check=True)
    return [json.loads(line[4:]) for line in out.stdout.splitlines() if line.startswith("ROW ")]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from common import print_table

    devices = [int(d) for d in args.devices.split(",")]
    for n in devices:
        if args.batch_size % n:
            raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {n} devices")
    rows = [r for n in devices for r in run_case(n, argv)]
    seconds = {(r["mixer"], r["devices"], r["remat"]): r["seconds"] for r in rows}
    tokens = args.batch_size * args.seq_len
    table = []
    for mixer in args.mixers.split(","):
        for n in devices:
            off, on = seconds[(mixer, n, False)], seconds[(mixer, n, True)]
            table.append([mixer, n if n == 1 else f"{n} (simulated)", f"{off * 1e3:,.0f}", f"{on * 1e3:,.0f}",
                          f"{tokens / off:,.0f}", f"{tokens / on:,.0f}", on / off])
    print_table(["mixer", "devices", "ms/step remat off", "ms/step remat on", "tokens/s remat off",
                 "tokens/s remat on", "time remat on / off"], table,
                title=f"Training step (fwd + bwd + AdamW), {args.num_layers} layers, d_model {args.d_model}, "
                      f"T = {args.seq_len}, batch {args.batch_size} ({tokens:,} tokens/step), float32, "
                      f"median of {args.repeats} steps after warm-up. Simulated devices share the same CPU "
                      f"cores: the multi-device rows show the data-parallel step runs, not a speed-up.")


if __name__ == "__main__":
    main()
