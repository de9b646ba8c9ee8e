"""The benchmark readers (LRA release files, Speech Commands, UCI digits) on fixtures in the real file
layouts and hub schemas, loaded through the same functions as the real data; expected arrays recomputed
from the raw fixture values. Also: training end to end on features (digits) and tokens (ListOps TSV)."""

import csv
import io
import sys

import datasets
import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from ssm.tasks import make_listops
from ssm.tasks.hf_dataset import load_arrays
from ssm.tasks.hf_dataset.benchmarks import BENCHMARKS, SC10, digits, lra_listops, speech_commands
from ssm.tasks.hf_dataset.readers import SPEECH_COMMANDS_LABELS
from tests.test_hf_dataset import ROOT, data_section, load_all

pytestmark = pytest.mark.usefixtures("hf_cache")


# -------------------------------------------------------------------------------------- LRA releases
def lra_listops_string(tokens):
    """LRA's writer (lra_benchmarks/data/listops.py): every operator application is a left-nested chain of
    pairs, each pair in parentheses: [MAX 2 9 ] -> ( ( ( [MAX 2 ) 9 ) ] )."""
    words = {**{d + 1: str(d) for d in range(10)}, 11: "[MAX", 12: "[MIN", 13: "[MED", 14: "[SM", 15: "]"}

    def tree(i):  # -> (string, next index)
        if tokens[i] <= 10:
            return words[tokens[i]], i + 1
        s, i = words[tokens[i]], i + 1
        while tokens[i] != 15:
            arg, i = tree(i)
            s = f"( {s} {arg} )"
        return f"( {s} ] )", i + 1

    return tree(0)[0]


def write_listops_release(folder, rng):
    folder.mkdir()
    expected = {}
    for split, name in (("train", "basic_train"), ("validation", "basic_val"), ("test", "basic_test")):
        g = make_listops(rng, 6, min_len=4, max_len=40, max_depth=4, max_args=4)
        rows = [g["inputs"][i, :g["lengths"][i]].tolist() for i in range(6)]
        with open(folder / f"{name}.tsv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["Source", "Target"])
            w.writerows([lra_listops_string(r), int(t)] for r, t in zip(rows, g["targets"]))
        expected[split] = (rows, g["targets"])
    return expected


def test_lra_listops_tsv_reads_back_the_generator_tokens(tmp_path, rng):
    assert lra_listops_string([11, 3, 10, 15]) == "( ( ( [MAX 2 ) 9 ) ] )"
    expected = write_listops_release(tmp_path / "listops-1000", rng)
    data = data_section(**lra_listops(str(tmp_path / "listops-1000")))
    out = load_all(data, tmp_path / "cache")
    for split, (rows, targets) in expected.items():
        for row, length, tokens in zip(out[split]["inputs"], out[split]["lengths"], rows):
            assert length == len(tokens)
            np.testing.assert_array_equal(row[:length], tokens)
        np.testing.assert_array_equal(out[split]["targets"], targets)


def test_lra_retrieval_pairs_are_joined_with_a_separator(tmp_path):
    folder = tmp_path / "tsv_data"
    folder.mkdir()
    pairs = {"train": [("1.0", 'a "quoted" paper', "other\tnone"), ("0.0", "x", "yz")],
             "eval": [("0.0", "é", "b")], "test": [("1.0", "cd", "ef")]}
    for name, rows in pairs.items():
        with open(folder / f"new_aan_pairs.{name}.tsv", "w") as f:
            for label, t1, t2 in rows:
                f.write("\t".join([label, "id1", "id2", t1, t2.replace("\t", " ")]) + "\n")
    data = data_section(**{**BENCHMARKS["lra_retrieval"](str(folder)), "max_length": 16})
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    assert a["inputs"].shape == (2, 33)  # 16 + separator + 16
    first = list(b'a "quoted" paper'[:16])
    np.testing.assert_array_equal(a["inputs"][0, :16], np.array(first) + 1)
    assert a["inputs"][0, 16] == 257  # the separator: the id after the 256 byte tokens
    np.testing.assert_array_equal(a["inputs"][0, 17:27], np.frombuffer(b"other none", np.uint8) + 1)
    np.testing.assert_array_equal(a["lengths"], [27, 4])  # 16 + 1 + 10, 1 + 1 + 2
    np.testing.assert_array_equal(a["targets"], [1, 0])


def test_lra_pathfinder_folder(tmp_path, rng):
    root = tmp_path / "pathfinder32"
    images = root / "curv_contour_length_14" / "imgs" / "0"
    images.mkdir(parents=True)
    (root / "curv_contour_length_14" / "metadata").mkdir()
    pixels, lines = {}, []
    for i in range(20):
        p = rng.integers(0, 256, (4, 4), dtype=np.uint8)
        Image.fromarray(p).save(images / f"sample_{i}.png")
        pixels[f"sample_{i}.png"] = p
        lines.append(f"imgs/0 sample_{i}.png 0 {i % 2} 1 2")
    (images / "sample_20.png").write_bytes(b"")  # the release lists empty images: skipped
    lines.append("imgs/0 sample_20.png 0 1 1 2")
    (root / "curv_contour_length_14" / "metadata" / "0.npy").write_text("\n".join(lines) + "\n")
    data = data_section(**{**BENCHMARKS["lra_pathfinder"](str(root)), "max_length": 16})
    out = load_all(data, tmp_path / "cache")
    assert [len(out[s]["targets"]) for s in ("train", "validation", "test")] == [16, 2, 2]
    seen = np.concatenate([out[s]["inputs"][..., 0] for s in ("train", "validation", "test")])
    seen = np.round((seen.astype(np.float64) * 0.5 + 0.5) * 255).astype(np.uint8)  # (x / 255 - 0.5) / 0.5 inverted
    label_of = {p.tobytes(): int(name.split("_")[1][:-4]) % 2 for name, p in pixels.items()}
    labels = np.concatenate([out[s]["targets"] for s in ("train", "validation", "test")])
    assert sorted(x.tobytes() for x in seen) == sorted(p.tobytes() for p in pixels.values())  # each image once
    assert [label_of[x.tobytes()] for x in seen] == labels.tolist()


# ---------------------------------------------------------------------------------------------- audio
def wav_bytes(samples, rate=16000):
    buf = io.BytesIO()
    wavfile.write(buf, rate, samples)
    return buf.getvalue()


def speech_commands_hub_like(folder, rng):
    """google/speech_commands v0.02's schema (file, audio Audio(16 kHz), label ClassLabel(36), is_unknown,
    speaker_id, utterance_id), written as parquet files (audio bytes embedded, as on the hub)."""
    features = datasets.Features({
        "file": datasets.Value("string"), "audio": datasets.Audio(sampling_rate=16000),
        "label": datasets.ClassLabel(names=list(SPEECH_COMMANDS_LABELS)), "is_unknown": datasets.Value("bool"),
        "speaker_id": datasets.Value("string"), "utterance_id": datasets.Value("int8")})
    storage = datasets.Features({**features, "audio": {"bytes": datasets.Value("binary"),
                                                       "path": datasets.Value("string")}})
    folder.mkdir()
    raw = {}
    for split, n in (("train", 8), ("validation", 4), ("test", 4)):
        labels = rng.choice([0, 1, 2, 20, 30, 35], n)  # yes, no, up, bed, backward, _silence_
        clips = [rng.integers(-2 ** 15, 2 ** 15, int(rng.integers(300, 401)), dtype=np.int16) for _ in range(n)]
        ds = datasets.Dataset.from_dict({
            "file": [f"{SPEECH_COMMANDS_LABELS[y]}/{i}.wav" for i, y in enumerate(labels)],
            "audio": [{"bytes": wav_bytes(c), "path": f"{i}.wav"} for i, c in enumerate(clips)],
            "label": labels, "is_unknown": [bool(y >= 10) for y in labels], "speaker_id": ["abc"] * n,
            "utterance_id": [0] * n}, features=storage).cast_column("audio", datasets.Audio(sampling_rate=16000))
        assert ds.features == features
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        raw[split] = (clips, labels)
    return raw


def test_speech_commands_sc10_hub_schema_standardized_and_8khz(tmp_path, rng):
    raw = speech_commands_hub_like(tmp_path / "sc", rng)
    data = data_section(**{**speech_commands("sc10", str(tmp_path / "sc"), eval_hz=8000), "max_length": 400})
    assert data["classes"] == SC10
    out = load_all(data, tmp_path / "cache")
    keep = {0: 0, 1: 1, 2: 2}  # yes, no, up are SC10 classes 0, 1, 2; bed, backward, _silence_ are dropped
    train = [c.astype(np.float64) / 2 ** 15 for c, y in zip(*raw["train"]) if y in keep]
    mean, std = np.concatenate(train).mean(), np.concatenate(train).std()
    for split, stride in (("train", 1), ("validation", 2), ("test", 2)):
        clips = [(c.astype(np.float64) / 2 ** 15)[::stride] for c, y in zip(*raw[split]) if y in keep]
        a = out[split]
        np.testing.assert_array_equal(a["targets"], [keep[y] for y in raw[split][1] if y in keep])
        np.testing.assert_array_equal(a["lengths"], [len(c) for c in clips])
        for row, c in zip(a["inputs"][..., 0], clips):
            np.testing.assert_allclose(row[:len(c)], (c - mean) / std, rtol=0, atol=1e-5)
            assert (row[len(c):] == 0).all()


def test_speech_commands_release_folder_uses_the_official_lists(tmp_path, rng):
    root = tmp_path / "speech_commands_v0.02"
    files = {}
    for word in ("yes", "no", "visual", "_background_noise_"):
        (root / word).mkdir(parents=True)
        for i in range(3):
            clip = rng.integers(-2 ** 15, 2 ** 15, 50, dtype=np.int16)
            wavfile.write(root / word / f"s{i}_nohash_0.wav", 16000, clip)
            files[f"{word}/s{i}_nohash_0.wav"] = clip
    (root / "validation_list.txt").write_text("yes/s0_nohash_0.wav\nvisual/s1_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/s2_nohash_0.wav\n")
    data = data_section(**{**speech_commands("sc35", str(root), release=True), "max_length": 50, "standardize": False})
    out = load_all(data, tmp_path / "cache")
    assert [len(out[s]["targets"]) for s in ("train", "validation", "test")] == [6, 2, 1]
    sc35 = list(SPEECH_COMMANDS_LABELS[:35])
    np.testing.assert_array_equal(out["test"]["targets"], [sc35.index("no")])
    np.testing.assert_allclose(out["test"]["inputs"][0, :, 0], files["no/s2_nohash_0.wav"] / 2 ** 15, atol=1e-7)
    assert sorted(out["validation"]["targets"]) == sorted([sc35.index("yes"), sc35.index("visual")])


# ---------------------------------------------------------------------------------------------- digits
def test_digits_splits_are_fixed_disjoint_and_standardized(tmp_path):
    """The documented split: permutation of the 1,797 digits by default_rng(0); test = first 360, validation =
    next 180, train = the rest; pixels / 16 standardized with the train split's mean and std (float64)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    out = load_all(data_section(**digits()), tmp_path / "cache")
    order = np.random.default_rng(0).permutation(1797)
    rows = {"test": order[:360], "validation": order[360:540], "train": order[540:]}
    raw = bunch.images.reshape(-1, 64).astype(np.float64) / 16
    mean, std = raw[rows["train"]].mean(), raw[rows["train"]].std()
    for split, idx in rows.items():
        np.testing.assert_allclose(out[split]["inputs"][..., 0], (raw[idx] - mean) / std, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(out[split]["targets"], bunch.target[idx])
        np.testing.assert_array_equal(out[split]["lengths"], 64)
    assert sorted(np.concatenate(list(rows.values()))) == list(range(1797))
    permuted = load_arrays(data_section(**digits(permuted=True)), "test", 0, str(tmp_path / "cache"))
    x, xp = out["test"]["inputs"][..., 0], permuted["inputs"][..., 0]
    assert sorted(map(tuple, np.sort(xp, axis=1))) == sorted(map(tuple, np.sort(x, axis=1)))
    assert not np.array_equal(x, xp)


def smoke_config(data_options):
    sys.path.insert(0, ROOT)
    try:
        from configs.base import base_config, smoke
        from configs.real_data import dataset_section
    finally:
        sys.path.remove(ROOT)
    c = base_config()
    dataset_section(c, **data_options)
    smoke(c)
    c.model.mixer = "diag"
    c.train.num_steps = 2
    return c.to_dict()


def test_train_on_features_and_on_tokens(tmp_path, rng):
    from ssm.train import train

    write_listops_release(tmp_path / "listops", rng)
    runs = {"digits (features)": {**digits(), "max_length": 64},
            "listops tsv (tokens)": lra_listops(str(tmp_path / "listops"))}
    for name, options in runs.items():
        config = smoke_config(options)
        config["data"]["data_dir"] = str(tmp_path / "data")
        config["data"]["batch_size"] = 4
        summary = train(config, str(tmp_path / name.split()[0]))
        assert np.isfinite(summary["test"]["loss"]) and 0 <= summary["test"]["accuracy"] <= 1, name
