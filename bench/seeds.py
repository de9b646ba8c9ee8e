"""Many seeds in one run: tokens/s of train.py's step for S seeds at once (train.num_seeds = S) against
single-seed runs, side by side in one process.

    PYTHONPATH=. python bench/seeds.py                 # configs/parity.py default (DeltaNet), 1 vs 8 seeds
    PYTHONPATH=. python bench/seeds.py --quick         # the smoke preset, a few steps: a smoke run
    PYTHONPATH=. python bench/seeds.py --seeds 1,2,4,8 --set model.mixer=diag
    PYTHONPATH=. python bench/seeds.py --wide             # also 1 seed with an 8× batch: is the CPU saturated?

Each case runs train.py's own step (`ssm.train.step.make_replicas_step` on the state of `ssm.train.build.build`
with train.num_seeds = S) on the config's training batches in each replica's order (`ReplicaBatches`: the
host-side gather and stacking are timed too, as the loop does them), blocking on the result of every step.
Cases are measured in interleaved rounds (1, S, 1, S, ...), so a change of load on the shared machine hits all
of them; each time is the median over every timed step after `--warmup` steps (the first compiles). S single-
seed runs one after the other process tokens at the rate of one single-seed run, so the speed-up of S seeds
in one run over them is tokens/s(S) / tokens/s(1). Compilation, evaluation and checkpoints are left out
(one run of S seeds also compiles and evaluates once instead of S times).

`--wide` adds one case: a single seed with the batch of the largest S (S·B rows, the same tokens per step
in one model, no vmap). If it reaches no more tokens/s than 1 seed at batch B, the step is bound by
arithmetic throughput rather than per-step overhead, and no way of stacking replicas can beat S runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/parity.py:default", help="config file[:preset]")
    p.add_argument("--seeds", default="1,8", help="comma-separated numbers of seeds per run (train.num_seeds)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field, e.g. model.mixer=diag (repeatable)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measuring rounds")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per case and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one compiles)")
    p.add_argument("--wide", action="store_true", help="add 1 seed at S_max × the batch (no vmap)")
    p.add_argument("--quick", action="store_true", help="the smoke preset, 1 round of 3 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.config, args.rounds, args.repeats, args.warmup = args.config.split(":")[0] + ":smoke", 1, 3, 1
    return args


def load_config(spec: str, assignments: list[str]) -> dict:
    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    c = module.get_config(preset)
    from common import set_fields

    set_fields(c, assignments)
    return c.to_dict()


class Case:
    """train.py's step for `num_seeds` replicas, on the config's batches; `run(n)` times n steps."""

    def __init__(self, config: dict, data: dict, num_seeds: int, wide: bool = False):
        from ssm.train import distributed as dist
        from ssm.train.build import build
        from ssm.train.guard import new_guard, nonfinite_limit
        from ssm.train.replicas import training_batches
        from ssm.train.step import make_replicas_step

        t = config["train"]
        config = {**config, "train": {**t, "num_seeds": num_seeds}}
        self.num_seeds, seeds, self.wide = num_seeds, [config["seed"] + k for k in range(num_seeds)], wide
        self.mesh = dist.make_mesh()
        self.batches = training_batches(data["train"], config["data"]["batch_size"], seeds, t,
                                        self.mesh.shape[dist.DATA])  # packed as train.py packs
        built = build(config)
        self.state, self.guard = dist.replicate(built.state, self.mesh), dist.replicate(new_guard(num_seeds), self.mesh)
        self.step = make_replicas_step(
            built.graphdef, built.schedules["lr"], seeds=seeds, dropout=config["model"]["dropout"] > 0,
            nonfinite_limit=nonfinite_limit(t["nonfinite_policy"], t["max_nonfinite_in_a_row"]),
            state_sharding=dist.replicated(self.mesh), batch_sharding=dist.batch_sharding(self.mesh, num_seeds > 1))
        self.shard = lambda b: dist.shard_batch(b, self.mesh, replicas=num_seeds > 1)
        self.next_step, self.times, self.tokens = 0, [], []

    def run(self, n: int, timed: bool = True) -> None:
        import jax

        from ssm.train.replicas import real_tokens

        for _ in range(n):
            start = time.perf_counter()
            batch = self.batches(self.next_step)
            self.state, self.guard, metrics = self.step(self.state, self.guard, self.shard(batch), self.next_step)
            jax.block_until_ready((self.state, metrics))
            if timed:
                self.times.append(time.perf_counter() - start)
                self.tokens.append(real_tokens(batch))
            self.next_step += 1

    def row(self, base: "Case | None") -> list:
        seconds = statistics.median(self.times)
        rate = statistics.mean(self.tokens) / seconds
        speedup = rate / (statistics.mean(base.tokens) / statistics.median(base.times)) if base else 1.0
        runs = "1 run" if self.num_seeds == 1 else "1 run (vmapped)"
        if self.wide:
            runs = f"1 run, batch {self.batches.orders[0].batch_size} (no vmap)"
        return [self.num_seeds, runs, len(self.times), f"{seconds * 1e3:,.1f}", f"{statistics.mean(self.tokens):,.0f}",
                f"{rate:,.0f}", f"{speedup:.2f}×"]


def main(argv=None):
    args = parse_args(argv)
    from ssm.train.host_memory import keep_freed_memory

    keep_freed_memory()  # as train() does, before the backend starts (train.keep_freed_memory)
    import jax

    from common import device_line, print_table
    from ssm.train.loop import load_data

    config = load_config(args.config, args.set)
    counts = [int(s) for s in args.seeds.split(",")]
    data = load_data(config["data"])
    load_before = os.getloadavg()
    cases = [Case(config, data, s) for s in counts]
    if args.wide:
        wide = {**config, "data": {**config["data"], "batch_size": config["data"]["batch_size"] * max(counts)}}
        cases.append(Case(wide, data, 1, wide=True))
    for case in cases:
        case.run(args.warmup, timed=False)
    wall = time.perf_counter()
    for _ in range(args.rounds):
        for case in cases:
            case.run(args.repeats)
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()
    m, d = config["model"], config["data"]
    base = next((c for c in cases if c.num_seeds == 1 and not c.wide), None)
    print_table(["seeds per run", "runs", "steps timed", "ms/step (median)", "real tokens/step", "tokens/s",
                 "tokens/s vs 1 seed"], [c.row(base) for c in cases],
                title=f"{args.config}: {m['mixer']}, {m['num_layers']} layers, d_model {m['d_model']}, batch "
                      f"{d['batch_size']} per seed; {device_line()}, {jax.device_count()} device(s); "
                      f"{args.rounds} interleaved rounds of {args.repeats} steps per case ({wall:.0f} s); "
                      f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
                      f"({os.cpu_count()} CPUs). S single-seed runs one after the other: the tokens/s of 1 seed.")


if __name__ == "__main__":
    main()
