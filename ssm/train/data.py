"""Task data: generators materialized once as `datasets.Dataset`s cached on disk, held in RAM as NumPy,
batched in a deterministic order that depends only on (seed, epoch) — so a run resumed at step s sees
exactly the batches an uninterrupted run sees.

Cache layout: <data_dir>/<task>/<split>-<key>/ (save_to_disk), key = hash of the generator's name, every
keyword argument, n, seed and (for file-backed tasks) the file's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from ssm.checks import fail
from ssm.registry import Task, get_task

SPLITS = ("train", "validation", "test")
GENERATOR_VERSION = 1  # bump when a generator's output changes, to invalidate caches
DTYPES = {"inputs": np.int32, "targets": np.int32, "weights": np.float32, "lengths": np.int32}


def default_data_dir() -> str:
    return os.environ.get("SSM_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "ssm", "data"))


def save_atomically(path: str, save) -> None:
    """`save(target, scratch)` writes the folder `target` (using `scratch` for temporary files); the result
    is moved to `path` in one rename, so a half-written cache is never read. If another process has written
    `path` meanwhile, its copy is kept."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}-tmp-")
    try:
        save(os.path.join(tmp, "data"), tmp)
        try:
            os.replace(os.path.join(tmp, "data"), path)
        except OSError:
            if not os.path.isdir(path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fingerprint(kwargs: dict) -> dict:
    path = kwargs.get("path")
    if path is None:
        return {}
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        fail(f"data.path: no such file or dataset folder: {path!r}")
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(task_name: str, split: str, n: int, seed: int, kwargs: dict) -> str:
    blob = json.dumps({"task": task_name, "split": split, "n": n, "seed": seed, "kwargs": kwargs,
                       "file": _fingerprint(kwargs), "version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _rows(task_name: str, split: str, n: int, seed: int, **kwargs):
    """Generator for Dataset.from_generator: one dict per example."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    arrays = get_task(task_name).make(rng, n, **kwargs)
    for i in range(arrays["inputs"].shape[0]):
        yield {k: v[i] for k, v in arrays.items()}


def _features(task: Task, T: int):
    import datasets

    seq = lambda dtype: datasets.Sequence(datasets.Value(dtype), length=T)
    per_token = task.output == "token"
    return datasets.Features({"inputs": seq("int32"),
                              "targets": seq("int32") if per_token else datasets.Value("int32"),
                              "weights": seq("float32") if per_token else datasets.Value("float32"),
                              "lengths": datasets.Value("int32")})


def load_split(task_name: str, split: str, n: int, seed: int, kwargs: dict, data_dir: str | None = None,
               seq_len: int | None = None) -> dict:
    """The split as a dict of NumPy arrays (inputs (n, T), targets, weights, lengths), generated on the
    first call and read from the on-disk cache afterwards. `seq_len` is the padded length T (max_len)."""
    import datasets

    task = get_task(task_name)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    path = os.path.join(data_dir, task_name, f"{split}-{cache_key(task_name, split, n, seed, kwargs)}")
    if not os.path.isdir(path):
        if seq_len is None:  # probe one example for the padded length
            seq_len = next(_rows(task_name, split, 1, seed, **kwargs))["inputs"].shape[0]

        def save(target: str, scratch: str) -> None:
            ds = datasets.Dataset.from_generator(
                _rows, features=_features(task, seq_len), keep_in_memory=True, cache_dir=scratch,
                gen_kwargs={"task_name": task_name, "split": split, "n": n, "seed": seed, **kwargs})
            ds.save_to_disk(target)

        save_atomically(path, save)
    ds = datasets.load_from_disk(path).with_format("numpy")
    columns = ds[:]
    return {k: np.asarray(columns[k]).astype(dt, copy=False) for k, dt in DTYPES.items()}


def seq_len_of(task_name: str, kwargs: dict) -> int:
    """Padded length T of the task's examples for these generator kwargs."""
    for key in ("max_len", "length", "seq_len"):
        if key in kwargs:
            return int(kwargs[key])
    fail(f"data: cannot tell the sequence length of task {task_name!r} from {sorted(kwargs)}")


class Batches:
    """Deterministic training batches: step s ↦ epoch s // steps_per_epoch, slice of a permutation drawn
    from default_rng([seed, epoch]); the last incomplete batch of an epoch is dropped."""

    def __init__(self, arrays: dict, batch_size: int, seed: int):
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.size = arrays["inputs"].shape[0]
        if batch_size > self.size:
            fail(f"data.batch_size: {batch_size} is larger than the training set ({self.size} examples)")
        self.steps_per_epoch = self.size // batch_size
        self._epoch, self._perm = None, None

    def position(self, step: int) -> dict:
        epoch, index = divmod(step, self.steps_per_epoch)
        return {"step": step, "epoch": epoch, "batch_in_epoch": index}

    def __call__(self, step: int) -> dict:
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size)
        idx = self._perm[index * self.batch_size:(index + 1) * self.batch_size]
        return {k: v[idx] for k, v in self.arrays.items()}


def eval_batches(arrays: dict, batch_size: int):
    """Consecutive batches covering every example once; the last one is padded to full size with zero
    weights (one compiled shape)."""
    n = arrays["inputs"].shape[0]
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in arrays.items()}
        short = batch_size - batch["inputs"].shape[0]
        if short:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in batch.items()}
            batch["weights"][-short:] = 0
        yield batch
