"""Readers for benchmark data that are not `datasets` datasets as distributed: each turns its files
(`data.dataset` = the folder) into `datasets.Dataset` splits with the hub-style schema the preprocessing
reads, plus a fingerprint of the files (size and mtime of each), so the cache notices any change.

    lra_listops      LRA release `listops-1000/`: basic_{train,val,test}.tsv, header `Source\tTarget`
    lra_retrieval    LRA release `tsv_data/`: new_aan_pairs.{train,eval,test}.tsv, no header, columns
                     label, id1, id2, text1, text2 (tab-separated, quotes are literal characters)
    lra_pathfinder   LRA release `pathfinder32/` or `pathfinder128/` (Path-X): <difficulty>/metadata/<k>.npy
                     (text lines `imgs/<k> sample_<i>.png <?> <label> ...`) and <difficulty>/imgs/<k>/*.png;
                     split 80/10/10 by a fixed permutation (seed 42)
    speech_commands  speech_commands_v0.02 extracted: <word>/*.wav, validation_list.txt, testing_list.txt
                     (the official split that S4 / S5 use for SC35); labels as on the hub (google/speech_commands)
    digits           scikit-learn's copy of the UCI handwritten digits (1,797 8×8 images, pixels 0..16);
                     a fixed split (seed 0): 1,257 train / 180 validation / 360 test
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ssm.checks import fail

# google/speech_commands v0.02 ClassLabel names, in its order (ids 0..35)
SPEECH_COMMANDS_LABELS = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine", "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila",
    "tree", "wow", "backward", "forward", "follow", "learn", "visual", "_silence_")
DIGITS_SPLIT = {"test": 360, "validation": 180}  # the rest (1,257) is train


def files_fingerprint(paths, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _root(spec) -> str:
    root = os.path.expanduser(spec.dataset)
    if not os.path.isdir(root):
        fail(f"data.dataset: reader {spec.reader!r} expects a folder, no such folder: {spec.dataset!r}")
    return root


def _require(root: str, names: dict, reader: str) -> dict:
    paths = {split: os.path.join(root, name) for split, name in names.items()}
    missing = [name for name, p in zip(names.values(), paths.values()) if not os.path.isfile(p)]
    if missing:
        fail(f"data.dataset: reader {reader!r} expects {', '.join(names.values())} in {root!r}; missing: "
             f"{', '.join(missing)}")
    return paths


def lra_listops(spec):
    import datasets

    paths = _require(_root(spec), {"train": "basic_train.tsv", "validation": "basic_val.tsv",
                                   "test": "basic_test.tsv"}, "lra_listops")
    dd = datasets.load_dataset("csv", data_files=paths, sep="\t")
    return dict(dd), files_fingerprint(paths.values(), "lra_listops")


def lra_retrieval(spec):
    import datasets

    paths = _require(_root(spec), {s: f"new_aan_pairs.{f}.tsv" for s, f in
                                   (("train", "train"), ("validation", "eval"), ("test", "test"))}, "lra_retrieval")
    columns = ["label", "id1", "id2", "text1", "text2"]
    features = datasets.Features({"label": datasets.Value("float32"), **{c: datasets.Value("string") for c in columns[1:]}})
    dd = datasets.load_dataset("csv", data_files=paths, sep="\t", header=None, names=columns, quoting=3,
                               features=features)
    return dict(dd), files_fingerprint(paths.values(), "lra_retrieval")


def lra_pathfinder(spec):
    import datasets

    root = _root(spec)
    difficulty = spec.config_name or "curv_contour_length_14"
    meta_dir = os.path.join(root, difficulty, "metadata")
    if not os.path.isdir(meta_dir):
        fail(f"data.dataset: reader 'lra_pathfinder' expects {difficulty}/metadata/ in {spec.dataset!r} "
             f"(data.config_name picks the difficulty folder)")
    metas = sorted((f for f in os.listdir(meta_dir) if f.endswith(".npy")), key=lambda f: int(f.split(".")[0]))
    images, labels = [], []
    for name in metas:
        with open(os.path.join(meta_dir, name)) as f:
            for line in f.read().splitlines():
                fields = line.split()
                if len(fields) < 4:
                    continue
                path = os.path.join(root, difficulty, fields[0], fields[1])
                if os.path.isfile(path) and os.path.getsize(path) > 0:  # the release has empty images
                    images.append(path)
                    labels.append(int(fields[3]))
    if not images:
        fail(f"data.dataset: no images listed in {meta_dir!r}")
    order = np.random.default_rng(42).permutation(len(images))
    n_val = n_test = len(images) // 10
    parts = {"validation": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    features = datasets.Features({"image": datasets.Value("string"), "label": datasets.ClassLabel(num_classes=2)})
    splits = {s: datasets.Dataset.from_dict({"image": [images[i] for i in idx], "label": [labels[i] for i in idx]},
                                            features=features) for s, idx in parts.items()}
    return splits, files_fingerprint([os.path.join(meta_dir, m) for m in metas], f"lra_pathfinder/{len(images)}")


def speech_commands(spec):
    import datasets

    root = _root(spec)
    lists = _require(root, {"validation": "validation_list.txt", "test": "testing_list.txt"}, "speech_commands")
    role_of = {}
    for role, path in lists.items():
        with open(path) as f:
            role_of.update({line.strip(): role for line in f if line.strip()})
    rows = {"train": [], "validation": [], "test": []}
    wavs = []
    for label, word in enumerate(SPEECH_COMMANDS_LABELS[:-1]):
        folder = os.path.join(root, word)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".wav"):
                wavs.append(os.path.join(folder, name))
                rows[role_of.get(f"{word}/{name}", "train")].append((wavs[-1], label))
    if not wavs:
        fail(f"data.dataset: no <word>/*.wav files of Speech Commands v0.02 in {spec.dataset!r}")
    features = datasets.Features({"audio": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(SPEECH_COMMANDS_LABELS))})
    splits = {}
    for role, items in rows.items():
        items = [items[i] for i in np.random.default_rng(0).permutation(len(items))]  # classes mixed: caps are fair
        splits[role] = datasets.Dataset.from_dict({"audio": [p for p, _ in items], "label": [y for _, y in items]},
                                                  features=features)
    return splits, files_fingerprint(wavs + list(lists.values()), "speech_commands")


def digits(spec):
    import datasets

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        fail("data.reader: 'digits' reads scikit-learn's copy of the UCI digits: pip install scikit-learn "
             "(it is in the 'dev' extra)")
    bunch = load_digits()
    images, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    n_test, n_val = DIGITS_SPLIT["test"], DIGITS_SPLIT["validation"]
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    features = datasets.Features({"image": datasets.Array2D((8, 8), "uint8"),
                                  "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})
    splits = {s: datasets.Dataset.from_dict({"image": images[idx], "label": labels[idx]}, features=features)
              for s, idx in parts.items()}
    return splits, "uci-digits-v1-seed0"


READERS = {"lra_listops": lra_listops, "lra_retrieval": lra_retrieval, "lra_pathfinder": lra_pathfinder,
           "speech_commands": speech_commands, "digits": digits}
