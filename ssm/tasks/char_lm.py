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
                 val_fraction: float = 0.05, test_fraction: float = 0.05, doc_sep: str = "") -> dict:
    """Windows of the text's `split`: random windows for train, consecutive disjoint ones otherwise (at
    most n; fewer if the split is short).

    doc_sep (e.g. "\n\n"): the split is cut into documents at each `doc_sep`, and the examples are every
    document's consecutive windows (the last one of a document shorter, so lengths vary; a window never
    spans two documents), in a random order for train, in text order otherwise (at most n). Packing
    (data.pack) then fills rows with them.

    Returns inputs/targets/weights (m, seq_len), lengths (m,).
    """
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    text = load_text(path)
    lookup = {c: i + 1 for i, c in enumerate(char_vocab(path))}
    part_text = split_text(text, split, val_fraction, test_fraction)
    if doc_sep:
        return _document_windows(rng, n, [[lookup[c] for c in d] for d in part_text.split(doc_sep)], split,
                                 seq_len)
    part = np.array([lookup[c] for c in part_text], np.int32)
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


def _document_windows(rng, n: int, docs: list[list[int]], split: str, seq_len: int) -> dict:
    """Consecutive windows of seq_len + 1 characters per document (overlapping by one: the last target of
    a window is the first input of the next); documents of one character have no target and are skipped."""
    pieces = [doc[s:s + seq_len + 1] for doc in docs for s in range(0, max(len(doc) - 1, 0), seq_len)]
    if not pieces:
        fail(f"data.doc_sep: the {split} split has no document of 2 or more characters")
    order = rng.permutation(len(pieces)) if split == "train" else np.arange(len(pieces))
    pieces = [pieces[i] for i in order[:n]]
    m = len(pieces)
    out = {"inputs": np.zeros((m, seq_len), np.int32), "targets": np.zeros((m, seq_len), np.int32),
           "weights": np.zeros((m, seq_len), np.float32), "lengths": np.zeros(m, np.int32)}
    for i, piece in enumerate(pieces):
        k = len(piece) - 1
        out["inputs"][i, :k], out["targets"][i, :k] = piece[:-1], piece[1:]
        out["weights"][i, :k], out["lengths"][i] = 1.0, k
    return out
