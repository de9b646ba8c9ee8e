"""Open a dataset source (hub name, `save_to_disk` folder, data files, or a named reader's folder) and cut
the train / validation / test examples out of its splits, each with a fingerprint that changes whenever
the source data does.

Hub access follows the user's environment: `HF_DATASETS_OFFLINE=1` / `HF_HUB_OFFLINE=1` restrict
`datasets` to its local cache; nothing here sets them. Any failure to open the source is one ConfigError
line naming `data.dataset` and the cause.
"""

from __future__ import annotations

import glob
import os

from ssm.checks import fail
from ssm.tasks.hf_dataset.spec import SPLIT_ROLES, DatasetSpec, parse_split

# data file extension -> (datasets' packaged builder, its keyword arguments)
FILE_BUILDERS = {".parquet": ("parquet", {}), ".json": ("json", {}), ".jsonl": ("json", {}),
                 ".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t"}), ".arrow": ("arrow", {}),
                 ".txt": ("text", {})}
_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def _is_local(name: str) -> bool:
    return (os.path.exists(os.path.expanduser(name)) or name.startswith(("/", "./", "../", "~"))
            or any(c in name for c in "*?["))


def _splits_of(obj) -> dict:
    import datasets

    return dict(obj) if isinstance(obj, datasets.DatasetDict) else {"train": obj}


def _load_local(spec: DatasetSpec) -> dict:
    import datasets

    path = os.path.expanduser(spec.dataset)
    if os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json")):
        return _splits_of(datasets.load_from_disk(path))  # a save_to_disk folder
    if os.path.isdir(path):
        return _splits_of(datasets.load_dataset(path))   # data files; splits inferred from the file names
    if not glob.glob(path):
        fail(f"data.dataset: no such file, folder or glob match: {spec.dataset!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_BUILDERS:
        fail(f"data.dataset: cannot tell the format of {spec.dataset!r}: expected one of "
             f"{', '.join(FILE_BUILDERS)} (or a save_to_disk folder)")
    builder, kwargs = FILE_BUILDERS[ext]
    return _splits_of(datasets.load_dataset(builder, data_files={"train": path}, **kwargs))


def _load_hub(spec: DatasetSpec) -> dict:
    import datasets

    return _splits_of(datasets.load_dataset(spec.dataset, spec.config_name or None, revision=spec.revision or None))


def open_source(spec: DatasetSpec) -> tuple[dict, dict]:
    """({split name: datasets.Dataset}, {split name: fingerprint}) of the whole source."""
    from ssm.checks import ConfigError
    from ssm.tasks.hf_dataset.readers import READERS

    where = "the local files" if spec.reader == "auto" and _is_local(spec.dataset) else "the Hugging Face hub"
    try:
        if spec.reader != "auto":
            splits, fingerprint = READERS[spec.reader](spec)
            return splits, {name: f"{fingerprint}/{name}" for name in splits}
        splits = _load_local(spec) if _is_local(spec.dataset) else _load_hub(spec)
    except ConfigError:
        raise
    except ImportError as e:
        fail(f"data.dataset: reading {spec.dataset!r} needs a package that is not installed ({one_line(e)}); "
             f"pip install 'ssm[data]'")
    except Exception as e:  # datasets raises many types (not found, offline, network, bad config, bad file)
        what = repr(spec.dataset) + (f" (config {spec.config_name!r})" if spec.config_name else "") + (
            f" at revision {spec.revision!r}" if spec.revision else "")
        hint = (" [offline: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set, so only datasets already in the local "
                "Hugging Face cache can be loaded]") if where.endswith("hub") and offline() else ""
        fail(f"data.dataset: cannot load {what} from {where}: {one_line(e)}{hint}")
    return splits, {name: ds._fingerprint for name, ds in splits.items()}


def _bound(text: str, n: int, field: str) -> int | None:
    if text == "":
        return None
    try:
        value = round(float(text[:-1]) * n / 100) if text.endswith("%") else int(text)
    except ValueError:
        fail(f"data.{field}: bad slice bound {text!r}")
    return value


def select_splits(spec: DatasetSpec, splits: dict, fingerprints: dict) -> dict:
    """{role: (dataset, fingerprint)} for train / validation / test from the split expressions."""
    out = {}
    for role in SPLIT_ROLES:
        field = f"{role}_split"
        name, a, b = parse_split(field, spec.split_expression(role))
        if name not in splits:
            fail(f"data.{field}: {name!r} is not a split of {spec.dataset or spec.reader!r} "
                 f"(splits: {', '.join(sorted(splits))})")
        ds = splits[name]
        lo, hi, _ = slice(_bound(a, len(ds), field), _bound(b, len(ds), field)).indices(len(ds))
        if hi <= lo:
            fail(f"data.{field}: {spec.split_expression(role)!r} selects no example of the {len(ds)} in {name!r}")
        out[role] = (ds if (lo, hi) == (0, len(ds)) else ds.select(range(lo, hi)), f"{fingerprints[name]}[{lo}:{hi}]")
    return out


def check_fields(spec: DatasetSpec, ds, role: str) -> None:
    """Every field the spec reads is a column of the split."""
    wanted = [("input_field", spec.input_field)]
    if spec.second_field:
        wanted.append(("second_field", spec.second_field))
    if spec.target == "label":
        wanted.append(("label_field", spec.label_field))
    for name, column in wanted:
        if column not in ds.column_names:
            fail(f"data.{name}: {column!r} is not a column of the {role} split of {spec.dataset or spec.reader!r} "
                 f"(columns: {', '.join(ds.column_names)})")
