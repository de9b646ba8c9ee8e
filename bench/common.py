"""Timing helpers shared by the benchmarks: jit, warm up, median of several runs, block_until_ready."""

from __future__ import annotations

import ast
import statistics
import time

import jax


def time_fn(fn, *args, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of `fn(*args)` after `warmup` calls; `fn` should already be jitted."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(header: list[str], rows: list[list], title: str = "") -> None:
    """A markdown table (pastes straight into the docs)."""
    if title:
        print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in row) + " |")


def device_line() -> str:
    d = jax.devices()[0]
    return f"backend={jax.default_backend()} device={d.device_kind} jax={jax.__version__}"


def set_fields(config, assignments) -> None:
    """Apply `FIELD=VALUE` strings (e.g. "model.mixer=diag") to a ConfigDict; VALUE as a Python literal, else a
    string."""
    for assignment in assignments:
        dotted, _, text = assignment.partition("=")
        *path, field = dotted.split(".")
        node = config
        for key in path:
            node = node[key]
        try:
            node[field] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            node[field] = text
