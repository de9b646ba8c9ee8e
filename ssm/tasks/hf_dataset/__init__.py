"""The `hf_dataset` task: any dataset that `datasets` can open (a hub name, a `save_to_disk` folder, data
files) or that a named reader turns into one (the LRA release files, Speech Commands, the UCI digits), as
token or feature sequences with one label per sequence or next-token targets. docs/datasets.md.

    spec.py       the options (the config's data section) and their checks
    source.py     opening the source; split expressions; fingerprints; the one-line load errors
    readers.py    benchmark file layouts -> datasets splits with hub-style schemas
    decode.py     one field value -> a flat sequence (bytes, chars, ListOps, ids, pixels, audio)
    cache.py      decoded splits cached on disk, keyed by fingerprints and decoding options
    arrays.py     cached sequences -> padded training arrays (tokens, resampling, permutation, normalization)
    benchmarks.py the standard benchmarks' data sections (LRA, sCIFAR, Speech Commands, byte LM, digits)
"""

from __future__ import annotations

from ssm.tasks.hf_dataset.spec import DatasetSpec, spec_from_data


def load_arrays(data: dict, split: str, limit: int = 0, data_dir: str | None = None) -> dict:
    """The training arrays of `split` for the plain data section `data` (decoded and cached on first use)."""
    from ssm.tasks.hf_dataset.arrays import split_arrays
    from ssm.tasks.hf_dataset.cache import prepare

    spec = spec_from_data(data)
    path, info = prepare(spec, data_dir)
    return split_arrays(spec, path, info, split, limit)


def make_task(data: dict):
    """The registry's Task for a data section (its sizes depend on the dataset, e.g. the class count)."""
    from ssm.registry import Task
    from ssm.tasks.hf_dataset import arrays
    from ssm.tasks.hf_dataset.cache import prepare

    spec = spec_from_data(data)
    info = lambda d: prepare(spec, d.get("data_dir") or None)[1]
    return Task(
        make=None, split_kwargs=lambda d, s: {},
        vocab_size=lambda d: None if spec.features else arrays.vocab_size(spec, info(d)),
        num_classes=lambda d: arrays.num_classes(spec, info(d)),
        output="pooled" if spec.target == "label" else "token", lm=spec.target == "next",
        load=lambda d, split, limit: load_arrays(d, split, limit, d.get("data_dir") or None),
        input_dim=lambda d: spec.num_features if spec.features else None)


__all__ = ["DatasetSpec", "spec_from_data", "load_arrays", "make_task"]
