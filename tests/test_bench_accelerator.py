"""bench/accelerator.py: without a GPU it says so in one line and exits 0; `--cpu-smoke` runs every section
on tiny shapes (slow: about a minute and a half on 2 cores)."""

import importlib.util
import os

import jax
import pytest

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "accelerator.py")


def load():
    spec = importlib.util.spec_from_file_location("bench_accelerator", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="the message is for machines without a GPU")
def test_without_gpu_prints_one_line_and_exits_0(capsys):
    assert load().main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no GPU" in out[0]


@pytest.mark.slow
def test_cpu_smoke_runs_every_section(capsys):
    assert load().main(["--cpu-smoke", "--repeats=1", "--mixers=diag,deltanet"]) == 0
    out = capsys.readouterr().out
    for title in ("Delta rule", "Scan core", "Training step"):
        assert title in out
    assert "ours pallas" in out and "deltanet" in out
