"""The options of the `hf_dataset` task (the config's `data` section), with their defaults and checks.

`DatasetSpec` is the single schema: `configs/real_data.py` builds the config section from its fields, and
`spec_from_data(data)` turns a plain `data` dict back into a checked spec (one-line ConfigErrors naming
`data.<field>`). docs/datasets.md describes every field.
"""

from __future__ import annotations

import dataclasses
import re

from ssm.checks import fail

READERS = ("auto", "lra_listops", "lra_retrieval", "lra_pathfinder", "speech_commands", "digits")
PREPROCESS = ("bytes", "chars", "listops", "ids", "pixels", "audio")
TARGETS = ("label", "next")
CHANNELS = ("gray", "rgb")
SPLIT_ROLES = ("train", "validation", "test")
_SPLIT_EXPR = re.compile(r"^([\w.-]+)(?:\[(-?\d*%?):(-?\d*%?)\])?$")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where the examples come from and how each becomes a sequence.

    Source: `dataset` is a hub name ("uoft-cs/cifar10"), a local `save_to_disk` folder, a data file, folder
    or glob (parquet / json / jsonl / csv / tsv / arrow / txt), or the root folder a named `reader` expects.
    Split expressions: a split name, optionally sliced by example index or percent ("train[:45000]",
    "train[90%:]"). The three roles may name the same split with disjoint slices.
    """

    dataset: str = ""
    reader: str = "auto"
    config_name: str = ""           # hub config (e.g. "v0.02"); lra_pathfinder: the difficulty folder
    revision: str = ""              # hub branch / tag / commit
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    input_field: str = "text"
    second_field: str = ""          # a second text (retrieval): joined to the first with a separator token
    label_field: str = "label"
    preprocess: str = "bytes"       # bytes | chars | listops | ids | pixels | audio
    target: str = "label"           # label: one class per sequence (pooled); next: next-token LM
    max_length: int = 1024          # longest sequence (per document for pairs; LM window length)
    truncate: bool = False          # cut longer sequences to max_length instead of refusing them
    classes: tuple = ()             # keep only these label names, relabelled 0..k-1 in this order
    id_vocab_size: int = 0          # ids: the ids lie in [0, id_vocab_size); token = id + 1
    channels: str = "gray"          # pixels: gray (1 feature) | rgb (3 features)
    pixel_tokens: bool = False      # pixels (gray): intensity v in 0..255 as token v + 1 instead of a feature
    permute: bool = False           # one fixed permutation of the time axis (seeded by permute_seed)
    permute_seed: int = 0
    resample: int = 1               # audio: keep every resample-th sample (16 kHz -> 8 kHz: 2)
    eval_resample: int = 0          # audio: factor for validation/test (0: same as resample)
    scale: float = 0.0              # features are divided by this (0: 255 for pixels, 1 for audio)
    mean: tuple = ()                # then (x - mean) / std per feature (empty: 0 and 1) ...
    std: tuple = ()
    standardize: bool = False       # ... or with the training split's mean / std per feature

    @property
    def features(self) -> bool:
        """Inputs are (T, F) floats rather than token ids."""
        return self.preprocess == "audio" or (self.preprocess == "pixels" and not self.pixel_tokens)

    @property
    def num_features(self) -> int:
        return 3 if self.preprocess == "pixels" and self.channels == "rgb" else 1

    def split_expression(self, role: str) -> str:
        return getattr(self, f"{role}_split")

    def resample_for(self, role: str) -> int:
        return self.resample if role == "train" or not self.eval_resample else self.eval_resample


FIELDS = {f.name: f for f in dataclasses.fields(DatasetSpec)}


def parse_split(field: str, expr: str) -> tuple[str, str, str]:
    """'train[10:90%]' -> ('train', '10', '90%'); a bare name -> (name, '', '')."""
    m = _SPLIT_EXPR.match(expr) if isinstance(expr, str) else None
    if not m:
        fail(f"data.{field}: expected a split name, optionally sliced like 'train[:45000]' or 'train[90%:]', "
             f"got {expr!r}")
    return m.group(1), m.group(2) or "", m.group(3) or ""


def _check_type(name: str, value, default) -> None:
    kind = type(default)
    ok = (isinstance(value, (list, tuple)) if kind is tuple else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
    if not ok:
        fail(f"data.{name}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")


def spec_from_data(data: dict) -> DatasetSpec:
    """The checked spec of a plain `data` config section (other fields, e.g. batch_size, are ignored)."""
    values = {}
    for name, f in FIELDS.items():
        if name in data:
            _check_type(name, data[name], f.default)
            values[name] = tuple(data[name]) if f.default == () else data[name]
    spec = DatasetSpec(**values)
    if not spec.dataset and spec.reader != "digits":
        fail("data.dataset: expected a hub dataset name, a local dataset folder or data files, got ''")
    for name, choices in (("reader", READERS), ("preprocess", PREPROCESS), ("target", TARGETS),
                          ("channels", CHANNELS)):
        if getattr(spec, name) not in choices:
            fail(f"data.{name}: expected one of {', '.join(map(repr, choices))}, got {getattr(spec, name)!r}")
    for role in SPLIT_ROLES:
        parse_split(f"{role}_split", spec.split_expression(role))
    for name, lo in (("max_length", 1), ("resample", 1), ("eval_resample", 0), ("id_vocab_size", 0),
                     ("permute_seed", 0)):
        if getattr(spec, name) < lo:
            fail(f"data.{name}: expected an integer >= {lo}, got {getattr(spec, name)}")
    if spec.preprocess == "ids" and spec.id_vocab_size < 1:
        fail("data.id_vocab_size: preprocess='ids' needs the size of the id vocabulary (ids in [0, size))")
    if spec.target == "next" and (spec.features or spec.second_field):
        fail(f"data.target: 'next' (language modeling) needs token inputs from one field, got "
             f"preprocess={spec.preprocess!r}{', second_field=' + repr(spec.second_field) if spec.second_field else ''}")
    if spec.second_field and spec.preprocess not in ("bytes", "chars", "ids"):
        fail(f"data.second_field: pairs of sequences need a text or ids preprocessing, got {spec.preprocess!r}")
    if spec.pixel_tokens and (spec.preprocess != "pixels" or spec.channels != "gray"):
        fail("data.pixel_tokens: only for preprocess='pixels' with channels='gray'")
    if not spec.scale >= 0:  # also NaN
        fail(f"data.scale: expected a number > 0 (or 0 for the default), got {spec.scale}")
    F = spec.num_features
    for name in ("mean", "std"):
        v = getattr(spec, name)
        if v and (len(v) != F or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            fail(f"data.{name}: expected {F} number(s), one per input feature, got {v!r}")
    if spec.std and min(spec.std) <= 0:
        fail(f"data.std: expected positive numbers, got {spec.std!r}")
    if (spec.mean or spec.std or spec.standardize) and not spec.features:
        fail(f"data.mean/std/standardize: only for feature inputs (pixels, audio), not preprocess={spec.preprocess!r}")
    if spec.standardize and (spec.mean or spec.std):
        fail("data.standardize: give either fixed data.mean/data.std or standardize=True, not both")
    if (spec.resample != 1 or spec.eval_resample) and spec.preprocess != "audio":
        fail(f"data.resample: only for preprocess='audio', not {spec.preprocess!r}")
    return spec
