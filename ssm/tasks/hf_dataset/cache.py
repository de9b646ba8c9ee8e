"""Decode a source's train / validation / test examples once into an on-disk cache of ragged sequences.

Layout: <data_dir>/hf_dataset/<key>/{train,validation,test}/ (save_to_disk; columns `inputs` (and `inputs2`
for pairs): one flat sequence of L·F values per example in the decoder's compact dtype; `label`: int32)
and info.json (features per step, classes, the training split's characters and per-feature mean / std,
audio sampling rate, example counts).

key = hash of the source's split fingerprints (which change with the data) and of every option that
changes what is decoded (CACHED_OPTIONS). The cheap steps that follow (token ids, resampling, truncation,
permutation, normalization, padding, LM windows: arrays.py) run at every load, so changing them never
re-decodes a dataset.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import numpy as np

from ssm.checks import fail
from ssm.tasks.hf_dataset import decode
from ssm.tasks.hf_dataset.source import check_fields, open_source, select_splits
from ssm.tasks.hf_dataset.spec import SPLIT_ROLES, DatasetSpec

CACHE_VERSION = 1  # bump when the decoders' output changes
CACHED_OPTIONS = ("dataset", "reader", "config_name", "revision", "train_split", "validation_split", "test_split",
                  "input_field", "second_field", "label_field", "preprocess", "target", "channels", "classes")


def cache_key(spec: DatasetSpec, fingerprints: dict) -> str:
    blob = json.dumps({"version": CACHE_VERSION, "fingerprints": fingerprints,
                       "options": {k: getattr(spec, k) for k in CACHED_OPTIONS}}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def prepare(spec: DatasetSpec, data_dir: str | None) -> tuple[str, dict]:
    """(cache folder, info): opens the source, decodes it into the cache on first use."""
    from ssm.train.data import default_data_dir, save_atomically

    selected = select_splits(spec, *open_source(spec))
    key = cache_key(spec, {role: fp for role, (_, fp) in selected.items()})
    path = os.path.join(os.path.expanduser(data_dir or default_data_dir()), "hf_dataset", key)
    if not os.path.isfile(os.path.join(path, "info.json")):
        for role, (ds, _) in selected.items():
            check_fields(spec, ds, role)
        save_atomically(path, lambda target, scratch: _build(spec, {r: ds for r, (ds, _) in selected.items()}, target))
    with open(os.path.join(path, "info.json")) as f:
        return path, json.load(f)


def _encoder(spec: DatasetSpec, rates: set):
    kind = spec.preprocess
    if kind == "pixels":
        return lambda v: decode.encode_pixels(v, spec.channels)
    if kind == "audio":
        def audio(v):
            x, rate = decode.encode_audio(v)
            rates.add(rate)
            return x
        return audio
    return getattr(decode, f"encode_{kind}")


def _label_mapper(spec: DatasetSpec, feature):
    """(value -> class id, or None to drop the example; number of classes or None if not known yet)."""
    import datasets

    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if spec.classes:
        if names is not None and (missing := [c for c in spec.classes if c not in names]):
            fail(f"data.classes: {missing} are not labels of {spec.label_field!r} (labels: {', '.join(names)})")
        lookup = {c: i for i, c in enumerate(spec.classes)}
        return (lambda v: lookup.get(names[v] if names is not None and v >= 0 else str(v))), len(spec.classes)

    def to_int(v):
        if isinstance(v, str) or v is None:
            fail(f"data.label_field: {spec.label_field!r} holds {v!r}; text labels need data.classes (the names "
                 f"to keep, in class-id order)")
        if float(v) != int(v) or int(v) < 0:
            fail(f"data.label_field: labels must be integers >= 0, found {v!r} in {spec.label_field!r}")
        return int(v)

    return to_int, (len(names) if names is not None else None)


def _ragged_table(arrays: list, dtype):
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def _build(spec: DatasetSpec, selected: dict, target: str) -> None:
    import datasets
    import pyarrow as pa

    rates: set = set()
    encode = _encoder(spec, rates)
    dtype = np.dtype(decode.CACHE_DTYPES[spec.preprocess])
    fields = [spec.input_field] + ([spec.second_field] if spec.second_field else [])
    with_labels = spec.target == "label"
    to_label, num_classes = _label_mapper(spec, selected["train"].features.get(spec.label_field)) if with_labels \
        else (None, None)
    info = {"num_features": spec.num_features, "counts": {}, "num_classes": num_classes}
    for role in SPLIT_ROLES:
        columns = {f: [] for f in fields}
        labels = []
        ds = selected[role].select_columns(fields + ([spec.label_field] if with_labels else []))
        for batch in ds.with_format("arrow").iter(batch_size=256):
            values = {f: batch.column(f).to_pylist() for f in batch.column_names}
            for i in range(batch.num_rows):
                if with_labels:
                    y = to_label(values[spec.label_field][i])
                    if y is None:
                        continue  # not one of data.classes
                    labels.append(y)
                for f in fields:
                    columns[f].append(encode(values[f][i]))
        if not labels and not columns[spec.input_field]:
            fail(f"data.{role}_split: no example left in {spec.split_expression(role)!r}"
                 + (f" with a label in data.classes = {spec.classes}" if spec.classes else ""))
        table = {name: _ragged_table(columns[f], dtype) for name, f in zip(("inputs", "inputs2"), fields)}
        if with_labels:
            table["label"] = pa.array(np.asarray(labels, np.int32))
        datasets.Dataset(datasets.table.InMemoryTable(pa.table(table))).save_to_disk(os.path.join(target, role))
        info["counts"][role] = len(columns[spec.input_field])
        if role == "train":
            flat = np.concatenate([np.concatenate(columns[f]) if columns[f] else np.zeros(0, dtype) for f in fields])
            if spec.preprocess == "chars":
                info["chars"] = np.unique(flat).tolist()
            if spec.features:
                per_feature = flat.reshape(-1, spec.num_features).astype(np.float64)
                info["train_mean"], info["train_std"] = per_feature.mean(0).tolist(), per_feature.std(0).tolist()
            if with_labels and info["num_classes"] is None:
                info["num_classes"] = int(max(labels)) + 1
    if len(rates) > 1:
        fail(f"data.input_field: the audio examples have different sampling rates {sorted(rates)}; resample them "
             f"to one rate first")
    info["sampling_rate"] = rates.pop() if rates else None
    with open(os.path.join(target, "info.json"), "w") as f:
        json.dump(info, f)


def read_ragged(path: str, role: str, column: str = "inputs") -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a cached ragged column: example i is values[offsets[i]:offsets[i + 1]]."""
    import datasets

    array = datasets.load_from_disk(os.path.join(path, role)).data.table.column(column).combine_chunks()
    return array.values.to_numpy(zero_copy_only=False), array.offsets.to_numpy()


def read_labels(path: str, role: str) -> np.ndarray:
    import datasets

    return datasets.load_from_disk(os.path.join(path, role)).data.table.column("label").to_numpy().astype(np.int32)
