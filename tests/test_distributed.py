"""Data parallelism over simulated CPU devices and over two processes (jax.distributed on localhost).

JAX fixes its device count when it initializes, so these run tests/multidevice_worker.py in subprocesses
with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the pytest process itself keeps 1 device)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.utils import every_mixer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_worker(*args, devices: int = 8, env=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "tests.multidevice_worker", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result_of(proc, timeout=600) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


@pytest.mark.multidevice
@pytest.mark.parametrize("mixer", every_mixer("s5"))  # a subprocess compiling 2 train steps: 15-20 s each
def test_eight_devices_equal_one_device(mixer):
    """A few steps data-parallel over 8 devices: same losses and parameters as on 1 device (rtol 1e-5)."""
    result = result_of(run_worker("equal", mixer))
    assert set(result) == {mixer}


@pytest.mark.multidevice
def test_seeds_on_eight_devices_equal_single_seed_runs():
    """train.num_seeds on a data mesh: 2 replicas, each replica's batch sharded over 8 devices, give each
    seed's single-run losses and parameters on 1 device (rtol 1e-5)."""
    result = result_of(run_worker("seeds", "diag"))
    assert len(result["losses"]) == 3


@pytest.mark.multidevice
def test_mesh_and_batch_helpers_on_one_device():
    from ssm.train import distributed as dist

    mesh = dist.make_mesh()
    assert dict(mesh.shape) == {"data": 1, "model": 1}
    assert dist.local_rows(8, mesh) == (0, 8)
    batch = dist.shard_batch({"x": np.arange(12).reshape(4, 3)}, mesh)
    np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(12).reshape(4, 3))
    stacked = dist.shard_batch({"x": np.arange(24).reshape(2, 4, 3)}, mesh, replicas=True)
    np.testing.assert_array_equal(np.asarray(stacked["x"]), np.arange(24).reshape(2, 4, 3))
    assert tuple(stacked["x"].sharding.spec) == (None, "data")
    with pytest.raises(ValueError, match="mesh.data"):
        dist.make_mesh(data=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multidevice
def test_two_processes_agree_with_one():
    """jax.distributed over localhost, 2 processes × 2 CPU devices, each feeding half of every batch:
    both processes see the same losses/parameters, equal to a single-device run."""
    from tests.multidevice_worker import train_steps
    from ssm.train import distributed as dist

    port = _free_port()
    procs = [run_worker("two_process", "s5", devices=2, env={
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
        for i in range(2)]
    r0, r1 = (result_of(p) for p in procs)
    assert (r0["process"], r1["process"]) == (0, 1) and r0["devices"] == 4
    assert r0["rows"] == [0, 8] and r1["rows"] == [8, 16]
    assert r0["losses"] == r1["losses"] and r0["param_sum"] == r1["param_sum"]
    losses, params = train_steps("s5", dist.make_mesh())  # this process: 1 device
    np.testing.assert_allclose(r0["losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(r0["param_sum"], sum(np.abs(p).sum() for p in params), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.multidevice
def test_train_script_on_eight_devices_resumes(tmp_path):
    """train.py end to end on 8 devices (bf16, remat): writes its files, then resumes from the checkpoint."""
    cmd = [sys.executable, "train.py", "--config=configs/parity.py:smoke", f"--workdir={tmp_path}/run",
           "--config.model.mixer=s5", "--config.model.dtype=bfloat16", "--config.model.remat=True",
           f"--config.data.data_dir={tmp_path}/data"]
    env = {**os.environ, "PYTHONPATH": ROOT, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "'data': 8" in out.stdout
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "run" / name).exists()
    out = subprocess.run([*cmd, "--config.train.num_steps=4"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "resuming" in out.stdout and "from step 3" in out.stdout
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 4
