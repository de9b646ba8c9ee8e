"""What a run ran on, recorded in DIR/config.json and DIR/summary.json under "environment":

    {"python": "3.11.7", "packages": {"jax": "0.10.2", "jaxlib": ..., "flax": ..., "optax": ...,
     "orbax-checkpoint": ...}, "ssm": "0.1.0", "platform": "cpu", "device_kind": "cpu", "device_count": 1,
     "process_count": 1, "git_commit": "683f153...", "git_dirty": false}

The git fields are there only when the `ssm` package being run lives in a git work tree (a clone or an
editable install), not for an installed wheel.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")


def package_versions(names=PACKAGES) -> dict:
    """Installed distribution versions (None for a package that is not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(path: str) -> dict:
    """{"git_commit", "git_dirty"} of the git work tree holding `path`, or {} outside one (or without git)."""
    def git(*args):
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {}
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


def run_environment() -> dict:
    """Versions, devices and code commit of this process (see the module docstring)."""
    import jax

    import ssm

    devices = jax.devices()
    code_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {"python": platform.python_version(), "packages": package_versions(), "ssm": ssm.__version__,
            "platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "device_count": jax.device_count(), "process_count": jax.process_count(), **git_state(code_dir)}
