"""Cached ragged sequences -> the training arrays of one split (the same dict every task produces):

    inputs   (n, T) int32 token ids (0 = padding), or (n, T, F) float32 features (0 beyond the length)
    lengths  (n,) int32 real steps
    targets  (n,) int32 class ids and weights (n,) float32 ones        (target = "label", pooled)
             (n, T) int32 next tokens and weights (n, T) float32 ones  (target = "next", LM windows)

T = data.max_length (2·max_length + 1 for a pair: first ⊕ separator ⊕ second). Token ids: bytes b -> b + 1
(vocabulary 257), characters -> 1 + rank among the training split's characters (unseen ones -> one
unknown id), ListOps tokens as ssm/tasks/listops.py, ids i -> i + 1, gray pixel tokens v -> v + 1.
"""

from __future__ import annotations

import numpy as np

from ssm.checks import fail
from ssm.tasks import listops
from ssm.tasks.hf_dataset.cache import read_labels, read_ragged
from ssm.tasks.hf_dataset.spec import DatasetSpec


def base_vocab(spec: DatasetSpec, info: dict) -> int:
    """Token ids of one sequence lie in [0, base_vocab)."""
    if spec.preprocess == "chars":
        return len(info["chars"]) + 2  # padding, the characters, unknown
    if spec.preprocess == "listops":
        return listops.LISTOPS_VOCAB
    if spec.preprocess == "ids":
        return spec.id_vocab_size + 1
    return 257  # bytes, pixel tokens


def vocab_size(spec: DatasetSpec, info: dict) -> int:
    return base_vocab(spec, info) + (1 if spec.second_field else 0)  # the pair separator is the last id


def num_classes(spec: DatasetSpec, info: dict) -> int:
    return info["num_classes"] if spec.target == "label" else vocab_size(spec, info)


def seq_len(spec: DatasetSpec) -> int:
    return 2 * spec.max_length + 1 if spec.second_field else spec.max_length


def to_tokens(spec: DatasetSpec, info: dict, raw: np.ndarray) -> np.ndarray:
    if spec.preprocess == "chars":
        chars = np.asarray(info["chars"], np.int64)
        idx = np.minimum(np.searchsorted(chars, raw), len(chars) - 1)
        return np.where(chars[idx] == raw, idx + 1, len(chars) + 1).astype(np.int32)
    if spec.preprocess == "listops":
        return raw.astype(np.int32)
    if spec.preprocess == "ids" and raw.size and (raw.min() < 0 or raw.max() >= spec.id_vocab_size):
        fail(f"data.id_vocab_size: ids must lie in [0, {spec.id_vocab_size}), found [{raw.min()}, {raw.max()}]")
    return raw.astype(np.int32) + 1


def _sequences(spec: DatasetSpec, path: str, role: str, column: str, limit: int) -> list:
    """The first `limit` examples as (L, F) arrays after resampling, truncation and the length check."""
    values, offsets = read_ragged(path, role, column)
    F, k, M = spec.num_features, spec.resample_for(role), spec.max_length
    out = []
    for i in range(min(limit, len(offsets) - 1)):
        x = values[offsets[i]:offsets[i + 1]].reshape(-1, F)[::k]
        if len(x) > M:
            if not spec.truncate:
                fail(f"data.max_length: example {i} of the {role} split has {len(x)} steps, more than "
                     f"data.max_length = {M} (raise data.max_length, or set data.truncate=True to cut)")
            x = x[:M]
        out.append(x)
    return out


def _permutation(spec: DatasetSpec, seqs: list) -> np.ndarray | None:
    if not spec.permute:
        return None
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        fail(f"data.permute: needs sequences of one length, found lengths {min(lengths)}..{max(lengths)}")
    return np.random.default_rng(spec.permute_seed).permutation(lengths.pop())


def _normalizer(spec: DatasetSpec, info: dict):
    scale = spec.scale or (255.0 if spec.preprocess == "pixels" else 1.0)
    if spec.standardize:
        mean, std = np.asarray(info["train_mean"]) / scale, np.maximum(np.asarray(info["train_std"]) / scale, 1e-8)
    else:
        mean = np.asarray(spec.mean or (0.0,) * spec.num_features)
        std = np.asarray(spec.std or (1.0,) * spec.num_features)
    return lambda x: ((x / scale - mean) / std).astype(np.float32)


def _lm_windows(spec: DatasetSpec, info: dict, path: str, role: str, limit: int) -> dict:
    values, _ = read_ragged(path, role)
    stream = to_tokens(spec, info, values)
    T = spec.max_length
    m = min(limit, (stream.size - 1) // T)
    if m < 1:
        fail(f"data.max_length: the {role} split has {stream.size} tokens, fewer than one window of "
             f"data.max_length + 1 = {T + 1}")
    starts = np.arange(m)[:, None] * T + np.arange(T + 1)[None, :]
    windows = stream[starts]
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:], "weights": np.ones((m, T), np.float32),
            "lengths": np.full(m, T, np.int32)}


def split_arrays(spec: DatasetSpec, path: str, info: dict, role: str, limit: int = 0) -> dict:
    """The arrays of split `role` (at most `limit` examples / windows; 0 = all), from the cache at `path`."""
    limit = limit or np.iinfo(np.int64).max
    if spec.target == "next":
        return _lm_windows(spec, info, path, role, limit)
    seqs = _sequences(spec, path, role, "inputs", limit)
    n, T = len(seqs), seq_len(spec)
    perm = _permutation(spec, seqs)
    if spec.features:
        normalize = _normalizer(spec, info)
        inputs = np.zeros((n, T, spec.num_features), np.float32)
        for i, x in enumerate(seqs):
            inputs[i, :len(x)] = normalize(x if perm is None else x[perm])
        lengths = np.array([len(x) for x in seqs], np.int32)
    else:
        rows = [to_tokens(spec, info, (x if perm is None else x[perm]).reshape(-1)) for x in seqs]
        if spec.second_field:
            second = _sequences(spec, path, role, "inputs2", limit)
            sep = np.array([base_vocab(spec, info)], np.int32)
            rows = [np.concatenate([a, sep, to_tokens(spec, info, b.reshape(-1))]) for a, b in zip(rows, second)]
        inputs = np.zeros((n, T), np.int32)
        for i, r in enumerate(rows):
            inputs[i, :len(r)] = r
        lengths = np.array([len(r) for r in rows], np.int32)
    return {"inputs": inputs, "lengths": lengths, "targets": read_labels(path, role)[:n],
            "weights": np.ones(n, np.float32)}
