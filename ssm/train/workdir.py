"""The run directory given as --workdir (train.py) or to ssm.load_run: a local path; remote URLs (gs://,
s3://, ...) are refused in one line, since runs are written and read with local file I/O.

    check_workdir(workdir)             # a local directory that is, or can be created as, writable
    check_local_path(name, path)       # a local path as str (named `name` in the error)
"""

from __future__ import annotations

import os

from ssm.checks import fail


def check_local_path(name: str, path) -> str:
    """`path` (str or os.PathLike) as a str; a remote URL (gs://, s3://, ...) is refused in one line."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        fail(f"{name}: expected a directory path, got {path!r}")
    path = os.fspath(path)
    if "://" in path:
        fail(f"{name}: remote paths are not supported ({path!r}); use a local directory (copy a run there "
             f"first, or train into one and copy it afterwards, e.g. gsutil -m cp -r DIR {path})")
    return path


def check_workdir(workdir) -> None:
    """The run directory: a local path (remote URLs such as gs://bucket/run are refused: the run's JSON
    files, metrics log and TensorBoard events are written with local file I/O) that is, or can be created
    as, a writable directory."""
    path = check_local_path("--workdir", workdir)
    full = os.path.abspath(os.path.expanduser(path))
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if existing == full and not os.path.isdir(full):
        fail(f"--workdir: {path!r} is a file, expected a directory")
    if existing != full and not os.path.isdir(existing):
        fail(f"--workdir: cannot create {path!r}: {existing!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"--workdir: {existing!r} is not writable")
