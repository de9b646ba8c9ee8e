"""Character-level language modeling on a local text (a UTF-8 file or a `datasets` folder saved with
`save_to_disk` holding a "text" column). No hub access.

The vocabulary is the sorted set of characters of the whole text (token = index + 1, 0 is padding); the
text is split contiguously into train / validation / test (90 / 5 / 5 % by default). Each example is a
window of seq_len + 1 characters: inputs are the first seq_len, targets the next-character labels.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ssm.checks import check_choice, check_positive_int, fail

SPLITS = ("train", "validation", "test")


@lru_cache(maxsize=4)
def load_text(path: str) -> str:
    """The text at `path` (a file, or a save_to_disk dataset folder with a 'text' column)."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        import datasets

        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"]
        if "text" not in ds.column_names:
            fail(f"data.path: the dataset at {path!r} has no 'text' column (columns: {ds.column_names})")
        text = "\n".join(ds["text"])
    elif os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        fail(f"data.path: no such file or dataset folder: {path!r}")
    return text


def char_vocab(path: str) -> str:
    """All distinct characters of the text, sorted (token id of vocab[i] is i + 1)."""
    return "".join(sorted(set(load_text(path))))


def char_lm_vocab_size(path: str) -> int:
    return len(char_vocab(path)) + 1


def split_text(text: str, split: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """The contiguous part of `text` belonging to `split`."""
    check_choice("split", split, SPLITS)
    n_val, n_test = int(len(text) * val_fraction), int(len(text) * test_fraction)
    n_train = len(text) - n_val - n_test
    return {"train": text[:n_train], "validation": text[n_train:n_train + n_val],
            "test": text[n_train + n_val:]}[split]


def make_char_lm(rng: np.random.Generator, n: int, *, path: str, split: str = "train", seq_len: int = 128,
                 val_fraction: float = 0.05, test_fraction: float = 0.05) -> dict:
    """Windows of the text's `split`: random windows for train, consecutive disjoint ones otherwise (at
    most n; fewer if the split is short).

    Returns inputs/targets/weights (m, seq_len), lengths (m,).
    """
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    text = load_text(path)
    lookup = {c: i + 1 for i, c in enumerate(char_vocab(path))}
    part = np.array([lookup[c] for c in split_text(text, split, val_fraction, test_fraction)], np.int32)
    if part.size < seq_len + 1:
        fail(f"data.path: the {split} split of {path!r} has {part.size} characters, "
             f"need at least seq_len + 1 = {seq_len + 1}")
    if split == "train":
        starts = rng.integers(0, part.size - seq_len, size=n)
    else:
        starts = np.arange(0, part.size - seq_len, seq_len)[:n]
    windows = part[starts[:, None] + np.arange(seq_len + 1)[None, :]]
    m = windows.shape[0]
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:], "weights": np.ones((m, seq_len), np.float32),
            "lengths": np.full(m, seq_len, np.int32)}
