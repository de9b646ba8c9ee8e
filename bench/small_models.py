"""Small models on CPU: train.py's training step and the end-to-end parity run, this checkout against a
baseline checkout (e.g. an older commit), side by side in one run.

    PYTHONPATH=. python bench/small_models.py --baseline /path/to/old/checkout     # the docs/scaling.md table
    PYTHONPATH=. python bench/small_models.py --baseline DIR --quick               # fewer steps, no e2e
    PYTHONPATH=. python bench/small_models.py --methods                            # delta-rule method choice

Steps: the default presets of configs/parity.py (DeltaNet, also with train.pack_row_multiple=1, and with
model.mixer=diag / s5) and configs/word_problem.py (S3, one DeltaProduct n_h = 2 layer). Each checkout runs in its own long-lived worker
process (`PYTHONPATH=<checkout>`, started with this file), which builds every case as that checkout's train.py
does (its step function, its allocator setting, its first training batch) and compiles it once. The driver
then asks the two workers in turn for `--repeats` timed steps of one case, round after round, so a change of
load on the shared machine hits both; a time is the median over every timed step (host-side batch preparation
and a block on the result included, compilation and `--warmup` steps excluded).

End to end: `python train.py --config=configs/parity.py --workdir=<fresh>` in each checkout, alternately,
`--e2e-rounds` times each; wall time of the whole command (imports, data from the on-disk cache, compilation,
600 steps, 4 evaluations, checkpoints, summary), with its final test accuracy.

`--methods`: forward + backward time of the delta-rule op, "recurrent" against "chunk" (C = 32, 64), over
head sizes and lengths at 16,384 steps per call, in this checkout only: the measurements behind
`SCAN_ON_CPU` in ssm/ops/delta_rule.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if sys.path and os.path.abspath(sys.path[0]) == HERE:
    sys.path.pop(0)  # bench/ssm.py would shadow the ssm package of the checkout being measured
CASES = {  # name -> (config file, preset, overrides)
    "parity DeltaNet": ("configs/parity.py", "", {}),
    "parity DeltaNet (rows of 40)": ("configs/parity.py", "", {"train.pack_row_multiple": 1}),
    "parity diag": ("configs/parity.py", "", {"model.mixer": "diag"}),
    "parity s5": ("configs/parity.py", "", {"model.mixer": "s5"}),
    "S3 DeltaProduct n_h=2": ("configs/word_problem.py", "", {}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="a checkout of the code to compare against (its root folder)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated step cases")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measuring rounds")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per case, checkout and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first one compiles)")
    p.add_argument("--e2e-rounds", type=int, default=2, help="end-to-end runs per checkout (0: none)")
    p.add_argument("--quick", action="store_true", help="1 round of 3 steps per case, no end-to-end runs")
    p.add_argument("--methods", action="store_true", help="the delta-rule method table instead")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: serve one checkout
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats, args.warmup, args.e2e_rounds = 1, 3, 2, 0
    return args


# ------------------------------------------------------------------------------- worker (one checkout)
def case_config(name: str) -> dict:
    import importlib

    path, preset, overrides = CASES[name]
    c = importlib.import_module(path[:-3].replace("/", ".")).get_config(preset)
    for dotted, value in overrides.items():
        *keys, field = dotted.split(".")
        node = c
        for key in keys:
            node = node[key]
        node[field] = value
    return c.to_dict()


class StepCase:
    """One case as this checkout's train.py runs it: `run(n)` -> n step times (s)."""

    def __init__(self, config: dict):
        import jax
        import numpy as np

        from ssm.train import distributed as dist
        from ssm.train.build import build
        from ssm.train.data import Batches
        from ssm.train.loop import load_data
        from ssm.train.packing import model_batch

        d = config["data"]
        try:
            data = load_data(d)
        except TypeError:  # older checkouts: load_data(data_cfg, seed)
            data = load_data(d, config["seed"])
        built = build(config)
        mesh = dist.make_mesh()
        self.params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(built.merge()[0]))
        state = dist.replicate(built.state, mesh)
        sharding = dict(state_sharding=dist.replicated(mesh), batch_sharding=dist.batch_sharding(mesh))
        try:  # train.pack_batches: each step's examples packed into fewer rows, as train.py does
            from ssm.train.replicas import training_batches

            batches = training_batches(data["train"], d["batch_size"], [config["seed"]], config["train"],
                                       mesh.shape["data"])
        except ImportError:
            batches = Batches(data["train"], d["batch_size"], config["seed"])
        self.tokens = int(batches(0)["lengths"].sum())
        self.slots = int(np.prod(batches(0)["inputs"].shape))
        try:  # train.py's step since train.num_seeds: (state, guard, batch, step)
            from ssm.train.guard import new_guard
            from ssm.train.step import make_replicas_step

            step = make_replicas_step(built.graphdef, built.schedules["lr"], seeds=[config["seed"]], **sharding)
            carry = [state, dist.replicate(new_guard(1), mesh)]

            def one(i):
                carry[0], carry[1], metrics = step(*carry, dist.shard_batch(model_batch(batches(i)), mesh), i)
                return carry, metrics
        except ImportError:  # older checkouts: (state, batch, key)
            from ssm.train.step import make_train_step

            step = make_train_step(built.graphdef, built.schedules["lr"], **sharding)
            carry = [state]

            def one(i):
                carry[0], metrics = step(carry[0], dist.shard_batch(model_batch(batches(i)), mesh), None)
                return carry, metrics
        self.one, self.next = one, 0

    def run(self, n: int) -> list[float]:
        import jax

        times = []
        for _ in range(n):
            start = time.perf_counter()
            jax.block_until_ready(self.one(self.next))
            times.append(time.perf_counter() - start)
            self.next += 1
        return times


def worker(args) -> None:
    """Serve the driver on stdin/stdout: build every case, then 'NAME N' -> one JSON line of N step times."""
    reply = os.fdopen(os.dup(1), "w")  # the protocol; anything else printed goes to stderr
    os.dup2(2, 1)
    configs = {name: case_config(name) for name in args.cases.split(",")}
    try:  # as train.py does, before the backend starts
        from ssm.train.host_memory import keep_freed_memory
    except ImportError:
        keep_freed_memory = None
    if keep_freed_memory and all(c["train"].get("keep_freed_memory", True) for c in configs.values()):
        keep_freed_memory()
    import jax

    cases = {name: StepCase(c) for name, c in configs.items()}
    for case in cases.values():
        case.run(args.warmup)
    info = {n: {"params": c.params, "tokens": c.tokens, "slots": c.slots} for n, c in cases.items()}
    print(json.dumps({"ready": info, "device": f"{jax.default_backend()} {jax.devices()[0].device_kind}",
                      "jax": jax.__version__}), file=reply, flush=True)
    for line in sys.stdin:
        name, n = line.rsplit(" ", 1)
        print(json.dumps(cases[name].run(int(n))), file=reply, flush=True)


# ----------------------------------------------------------------------------------------------- driver
class Worker:
    def __init__(self, checkout: str, args):
        env = {**os.environ, "PYTHONPATH": checkout, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", f"--cases={args.cases}",
             f"--warmup={args.warmup}"], cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        self.ready = self._read()
        self.times = {name: [] for name in self.ready["ready"]}

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with status {self.proc.wait()}")
        return json.loads(line)

    def run(self, name: str, n: int) -> None:
        self.proc.stdin.write(f"{name} {n}\n")
        self.proc.stdin.flush()
        self.times[name] += self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def end_to_end(checkout: str) -> tuple[float, str]:
    """Wall time (s) of train.py on configs/parity.py in `checkout`, and its final test line."""
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": checkout}
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "train.py", "--config=configs/parity.py", f"--workdir={workdir}",
                              "--config.train.progress_bar=False"], cwd=checkout, env=env, check=True,
                             capture_output=True, text=True)
        seconds = time.perf_counter() - start
    final = [line for line in out.stdout.splitlines() if line.startswith("final test")]
    accuracy = final[-1].split("accuracy ")[1].split(" ")[0] if final else "?"
    return seconds, accuracy


def git_describe(checkout: str) -> str:
    out = subprocess.run(["git", "-C", checkout, "log", "-1", "--format=%h"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", checkout, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() or os.path.basename(checkout)) + ("+changes" if dirty else "")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    sys.path.insert(0, REPO)
    common = _bench_common()
    if args.methods:
        return methods_table(common)
    if not args.baseline:
        raise SystemExit("--baseline DIR: a checkout to compare against is needed")
    checkouts = {"baseline": os.path.abspath(args.baseline), "this": REPO}
    load_before, start = os.getloadavg(), time.perf_counter()
    workers = {k: Worker(path, args) for k, path in checkouts.items()}
    names = list(workers["this"].times)
    for _ in range(args.rounds):
        for name in names:
            for w in workers.values():
                w.run(name, args.repeats)
    for w in workers.values():
        w.close()
    e2e = {k: [] for k in checkouts}
    for _ in range(args.e2e_rounds):
        for k, path in checkouts.items():
            e2e[k].append(end_to_end(path))
    load_after, wall = os.getloadavg(), time.perf_counter() - start
    rows = []
    for name in names:
        b, t = (statistics.median(workers[k].times[name]) for k in checkouts)
        info = workers["this"].ready["ready"][name]
        rows.append([name, f"{info['params']:,}", f"{info['tokens']:,} / {info['slots']:,}", f"{b * 1e3:,.1f}",
                     f"{t * 1e3:,.1f}", f"{b / t:.2f}×"])
    if args.e2e_rounds:
        b, t = (statistics.median(s for s, _ in e2e[k]) for k in checkouts)
        acc = {k: ", ".join(a for _, a in e2e[k]) for k in checkouts}
        rows.append(["parity DeltaNet, train.py end to end (s)", "", f"test accuracy {acc['baseline']} / "
                     f"{acc['this']}", f"{b:,.1f}", f"{t:,.1f}", f"{b / t:.2f}×"])
    common.print_table(["case", "parameters", "real tokens / slots per step", f"baseline {git_describe(args.baseline)} "
                 "ms/step", f"this {git_describe(REPO)} ms/step", "speed-up"], rows,
                title=f"{workers['this'].ready['device']}, jax {workers['this'].ready['jax']}, {os.cpu_count()} CPUs; "
                      f"median of {args.rounds} interleaved rounds × {args.repeats} steps per case after "
                      f"{args.warmup} warm-up steps; end to end: median of {args.e2e_rounds} runs each; "
                      f"{wall:.0f} s in all; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


# ------------------------------------------------------------------------------------ --methods table
def _bench_common():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", os.path.join(HERE, "common.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def methods_table(common) -> None:
    """fwd+bwd of delta_rule per method over head sizes d_k = d_v and lengths T (16,384 steps per call)."""
    from ssm.train.host_memory import keep_freed_memory

    keep_freed_memory()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ssm.ops.delta_rule import delta_rule, resolve_method

    rows = []
    for d in (16, 32, 64):
        for T in (64, 256, 1024):
            B, H = 16384 // T, 4
            rng = np.random.default_rng(0)
            q, k, v = (rng.standard_normal((B, T, H, d)).astype(np.float32) for _ in range(3))
            k /= np.linalg.norm(k, axis=-1, keepdims=True)
            beta = rng.uniform(0.0, 2.0, (B, T, H)).astype(np.float32)
            args = tuple(jnp.asarray(a) for a in (q, k, v, beta))
            row = [f"{d}×{d}", T, B]
            for method, chunk in (("recurrent", 64), ("chunk", 32), ("chunk", 64)):
                def loss(q, k, v, b, method=method, chunk=chunk):
                    return jnp.sum(delta_rule(q, k, v, b, method=method, chunk_size=chunk)[0] ** 2)

                grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
                row.append(f"{common.time_fn(grad, *args, repeats=5, warmup=2) * 1e3:,.1f}")
            row.append(resolve_method("auto", head_size=d * d, steps=T))
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    common.print_table(["head d_k×d_v", "T", "B", "recurrent ms", "chunk 32 ms", "chunk 64 ms", "auto picks"],
                       rows, title=f"delta_rule forward + backward, H = 4 heads, B·T = 16,384 steps; "
                                   f"{common.device_line()}; median of 5 after 2 warm-up calls")


if __name__ == "__main__":
    main()
