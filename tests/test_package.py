"""Packaging: the wheel's name, version, license, files and console scripts, and `ssm-train` run from the
installed wheel (not from this checkout)."""

import configparser
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import ssm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"ssm-train": "ssm.train.cli:run", "ssm-plot": "ssm.analysis.plot:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the build writes build/ and *.egg-info next to them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "ssm"), src / "ssm", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, text=True)
    (path,) = (tmp / "dist").iterdir()
    return path


def test_wheel_metadata_files_and_scripts(wheel):
    assert wheel.name == f"ssm_jax-{ssm.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"ssm_jax-{ssm.__version__}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = configparser.ConfigParser()
        entry_points.read_string(z.read(f"{info}/entry_points.txt").decode())
        license_text = z.read(f"{info}/licenses/LICENSE").decode()
        top_level = z.read(f"{info}/top_level.txt").decode().split()
    assert "Name: ssm-jax\n" in metadata and f"Version: {ssm.__version__}\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata and "Requires-Dist: tensorboardX" in metadata
    assert license_text == open(os.path.join(ROOT, "LICENSE")).read()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert top_level == ["ssm"]
    sources = {os.path.relpath(os.path.join(d, f), ROOT) for d, _, files in os.walk(os.path.join(ROOT, "ssm"))
               for f in files if f.endswith(".py")}
    assert sources <= names, sources - names  # every module, every subpackage
    assert "ssm/init/ptd_legs.npz" in names
    assert dict(entry_points["console_scripts"]) == SCRIPTS
    for target in SCRIPTS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a fresh target folder: its bin/ssm-train imports the installed ssm."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    return target


def ssm_train(installed, *args, timeout=300):
    """bin/ssm-train from the folder holding configs/, with only the installed copy of ssm importable."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([str(installed / "bin" / "ssm-train"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_installed_ssm_train_help_and_bad_field(installed, tmp_path):
    out = ssm_train(installed, "--help")
    assert out.returncode == 0 and not out.stderr, out.stderr[-2000:]
    assert "ssm-train --config=configs/<task>.py" in out.stdout and "--workdir" in out.stdout
    out = ssm_train(installed, "--config=configs/parity.py:smoke", f"--workdir={tmp_path}",
                    "--config.model.bogus_field=3")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "ssm-train: error: unknown config field 'model.bogus_field' (--config.model.bogus_field); "
        "see the config file for the available fields"]


@pytest.mark.slow
def test_installed_ssm_train_trains_a_smoke_config(installed, tmp_path):
    workdir = tmp_path / "run"
    out = ssm_train(installed, "--config=configs/parity.py:smoke", f"--workdir={workdir}",
                    "--config.model.mixer=diag", "--config.train.num_steps=2",
                    f"--config.data.data_dir={tmp_path / 'data'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final test accuracy" in out.stdout
    environment = json.load(open(workdir / "summary.json"))["environment"]
    assert "git_commit" not in environment  # the installed copy ran, not this checkout
    assert environment["ssm"] == ssm.__version__


def test_import_ssm_needs_only_the_layer_dependencies():
    """`import ssm` (layers, model, scan core, sampling) pulls in none of the training-only packages."""
    training_only = ("datasets", "ml_collections", "tqdm", "matplotlib", "tensorboardX", "wandb")
    code = ("import sys, ssm, ssm.sample; "
            f"print(','.join(m for m in {training_only!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
