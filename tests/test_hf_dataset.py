"""The hf_dataset task on small fixtures written in the real schemas of the hub datasets and release files
(same column names and feature types), loaded through the same code path as the real ones. Expected
arrays are recomputed independently from the fixture's raw values (float64 NumPy, stated tolerances)."""

import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

from ssm.checks import ConfigError
from ssm.tasks.hf_dataset import load_arrays, spec_from_data
from ssm.tasks.hf_dataset.benchmarks import scifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


pytestmark = pytest.mark.usefixtures("hf_cache")


def data_section(**options):
    return {"task": "hf_dataset", "data_dir": "", **options}


def load_all(data, cache_dir, limit=0):
    return {s: load_arrays(data, s, limit, str(cache_dir)) for s in ("train", "validation", "test")}


# --------------------------------------------------------------------------------------------- images
def cifar_like(rng, n, size=4):
    """uoft-cs/cifar10's schema: img Image (RGB PNG), label ClassLabel(10)."""
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR_NAMES)})
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(p) for p in pixels], "label": labels}, features=features)
    return ds, pixels, labels


@pytest.fixture
def cifar(tmp_path, rng):
    train, px_train, y_train = cifar_like(rng, 10)
    test, px_test, y_test = cifar_like(rng, 4)
    folder = tmp_path / "cifar_disk"
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    parquet = tmp_path / "cifar_parquet"
    parquet.mkdir()
    train.to_parquet(str(parquet / "train-00000-of-00001.parquet"))
    test.to_parquet(str(parquet / "test-00000-of-00001.parquet"))
    return {"disk": str(folder), "parquet": str(parquet), "train": (px_train, y_train), "test": (px_test, y_test)}


@pytest.mark.parametrize("layout", ["disk", "parquet"])
def test_scifar_rgb_pixels_are_raster_order_features(cifar, tmp_path, layout):
    data = data_section(**{**scifar(cifar[layout]), "train_split": "train[:7]", "validation_split": "train[7:]",
                           "max_length": 16})
    out = load_all(data, tmp_path / "cache")
    mean, std = np.array(scifar()["mean"]), np.array(scifar()["std"])
    px, y = cifar["train"]
    for split, rows in (("train", slice(0, 7)), ("validation", slice(7, 10))):
        a = out[split]
        assert a["inputs"].shape == (rows.stop - rows.start, 16, 3) and a["inputs"].dtype == np.float32
        expected = (px[rows].reshape(-1, 16, 3).astype(np.float64) / 255 - mean) / std  # t = row * W + col
        np.testing.assert_allclose(a["inputs"], expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(a["targets"], y[rows])
        np.testing.assert_array_equal(a["lengths"], 16)
    np.testing.assert_array_equal(out["test"]["targets"], cifar["test"][1])


def test_gray_pixels_follow_the_luma_formula_and_permutation_is_fixed(cifar, tmp_path):
    base = data_section(dataset=cifar["disk"], validation_split="test", input_field="img", preprocess="pixels",
                        channels="gray", max_length=16)
    plain = load_arrays(base, "train", 0, str(tmp_path / "cache"))
    px = cifar["train"][0].astype(np.float64)
    luma = px[..., 0] * 0.299 + px[..., 1] * 0.587 + px[..., 2] * 0.114  # ITU-R 601-2, PIL's "L"
    np.testing.assert_allclose(plain["inputs"][..., 0] * 255, luma.reshape(-1, 16), atol=0.51)
    permuted = {s: load_arrays({**base, "permute": True, "permute_seed": 3}, s, 0, str(tmp_path / "cache"))
                for s in ("train", "test")}
    assert len(os.listdir(tmp_path / "cache" / "hf_dataset")) == 1  # permutation is applied after the cache
    x, xp = plain["inputs"][..., 0], permuted["train"]["inputs"][..., 0]
    # one permutation π of the 16 positions, the same for every image: xp[:, t] = x[:, π(t)]
    pi = np.array([np.flatnonzero((x == xp[:, [t]]).all(axis=0))[0] for t in range(16)])
    assert sorted(pi) == list(range(16)) and (pi != np.arange(16)).any()
    np.testing.assert_array_equal(xp, x[:, pi])
    test_plain = load_arrays(base, "test", 0, str(tmp_path / "cache"))["inputs"][..., 0]
    np.testing.assert_array_equal(permuted["test"]["inputs"][..., 0], test_plain[:, pi])
    np.testing.assert_array_equal(permuted["train"]["targets"], plain["targets"])


def test_pixel_tokens(cifar, tmp_path):
    data = data_section(dataset=cifar["disk"], validation_split="test", input_field="img", preprocess="pixels",
                        pixel_tokens=True, max_length=20)
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    assert a["inputs"].shape == (10, 20) and a["inputs"].dtype == np.int32
    gray = np.stack([np.asarray(Image.fromarray(p).convert("L")) for p in cifar["train"][0]]).reshape(10, 16)
    np.testing.assert_array_equal(a["inputs"][:, :16], gray.astype(np.int32) + 1)
    np.testing.assert_array_equal(a["inputs"][:, 16:], 0)  # padding
    np.testing.assert_array_equal(a["lengths"], 16)


# ----------------------------------------------------------------------------------------------- text
TEXTS = ["a great film", "terrible.", "naïve — but fun 🎬", "ok", "bof", "superb!"]


@pytest.fixture
def imdb(tmp_path):
    """stanfordnlp/imdb's schema: text string, label ClassLabel(neg, pos); as one parquet file per split."""
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    folder = tmp_path / "imdb"
    folder.mkdir()
    for split, rows in (("train", TEXTS[:4]), ("test", TEXTS[4:])):
        datasets.Dataset.from_dict({"text": rows, "label": [i % 2 for i in range(len(rows))]}, features=features) \
            .to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return str(folder)


def test_bytes_of_text_and_the_length_limit(imdb, tmp_path):
    data = data_section(dataset=imdb, validation_split="test", preprocess="bytes", max_length=24)
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    for row, text, length in zip(a["inputs"], TEXTS[:4], a["lengths"]):
        raw = list(text.encode("utf-8"))
        assert length == len(raw)
        np.testing.assert_array_equal(row, np.array(raw + [-1] * (24 - len(raw))) + 1)
    np.testing.assert_array_equal(a["targets"], [0, 1, 0, 1])
    with pytest.raises(ConfigError, match=r"data.max_length: example 2 of the train split has 23 steps"):
        load_arrays({**data, "max_length": 12}, "train", 0, str(tmp_path / "cache"))
    cut = load_arrays({**data, "max_length": 12, "truncate": True}, "train", 0, str(tmp_path / "cache"))
    np.testing.assert_array_equal(cut["inputs"][2], np.frombuffer(TEXTS[2].encode(), np.uint8)[:12] + 1)


def test_chars_use_the_training_characters(imdb, tmp_path):
    data = data_section(dataset=imdb, validation_split="test", preprocess="chars", max_length=24)
    train, test = (load_arrays(data, s, 0, str(tmp_path / "cache")) for s in ("train", "test"))
    chars = sorted(set("".join(TEXTS[:4])))
    ids = {c: i + 1 for i, c in enumerate(chars)}
    unknown = len(chars) + 1
    for row, text in zip(test["inputs"], TEXTS[4:]):
        np.testing.assert_array_equal(row[:len(text)], [ids.get(c, unknown) for c in text])
    np.testing.assert_array_equal(train["lengths"], [len(t) for t in TEXTS[:4]])
    from ssm.registry import get_task
    assert get_task("hf_dataset", {**data, "data_dir": str(tmp_path / "cache")}).vocab_size(
        {**data, "data_dir": str(tmp_path / "cache")}) == len(chars) + 2


def test_byte_lm_windows(imdb, tmp_path):
    data = data_section(dataset=imdb, validation_split="test", preprocess="bytes", target="next", max_length=5)
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    stream = np.frombuffer("".join(TEXTS[:4]).encode(), np.uint8).astype(np.int32) + 1
    m = (len(stream) - 1) // 5
    assert a["inputs"].shape == (m, 5)
    for i in range(m):
        np.testing.assert_array_equal(a["inputs"][i], stream[5 * i:5 * i + 5])
        np.testing.assert_array_equal(a["targets"][i], stream[5 * i + 1:5 * i + 6])
    assert a["weights"].shape == (m, 5) and (a["weights"] == 1).all()


def test_pretokenized_ids_from_json_lines(tmp_path):
    path = tmp_path / "tokens.jsonl"
    rows = [{"input_ids": [5, 0, 7], "label": 1}, {"input_ids": [9], "label": 0}, {"input_ids": [3, 3], "label": 1}]
    datasets.Dataset.from_list(rows).to_json(str(path))
    data = data_section(dataset=str(path), validation_split="train[1:]", test_split="train[:1]",
                        input_field="input_ids", preprocess="ids", id_vocab_size=10, max_length=4)
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    np.testing.assert_array_equal(a["inputs"], [[6, 1, 8, 0], [10, 0, 0, 0], [4, 4, 0, 0]])
    np.testing.assert_array_equal(a["lengths"], [3, 1, 2])
    with pytest.raises(ConfigError, match=r"data.id_vocab_size: ids must lie in \[0, 8\)"):
        load_arrays({**data, "id_vocab_size": 8}, "train", 0, str(tmp_path / "cache"))


# ------------------------------------------------------------------------------- cache, errors, training
def test_cache_is_reused_and_follows_the_source_files(imdb, tmp_path):
    data = data_section(dataset=imdb, validation_split="test", preprocess="bytes", max_length=24)
    cache = tmp_path / "cache" / "hf_dataset"
    load_arrays(data, "train", 0, str(tmp_path / "cache"))
    (entry,) = os.listdir(cache)
    stamp = os.stat(cache / entry / "info.json").st_mtime_ns
    load_arrays({**data, "max_length": 30, "truncate": True}, "test", 0, str(tmp_path / "cache"))  # load-time option
    assert os.listdir(cache) == [entry] and os.stat(cache / entry / "info.json").st_mtime_ns == stamp
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.Dataset.from_dict({"text": ["changed"], "label": [1]}, features=features).to_parquet(
        os.path.join(imdb, "train-00000-of-00001.parquet"))
    from ssm.tasks.hf_dataset.cache import prepare
    prepare.cache_clear()  # a new process: the source is opened again
    a = load_arrays(data, "train", 0, str(tmp_path / "cache"))
    assert len(os.listdir(cache)) == 2
    np.testing.assert_array_equal(a["inputs"][0, :7], np.frombuffer(b"changed", np.uint8) + 1)


def test_one_line_errors(cifar, tmp_path):
    def error(**options):
        with pytest.raises(ConfigError) as e:
            load_arrays(data_section(**options), "train", 0, str(tmp_path / "cache"))
        assert "\n" not in str(e.value)
        return str(e.value)

    base = dict(dataset=cifar["disk"], validation_split="test", input_field="img", preprocess="pixels", max_length=16)
    assert error(**{**base, "input_field": "image"}).startswith(
        "data.input_field: 'image' is not a column of the train split")
    assert "(splits: test, train)" in error(**{**base, "validation_split": "valid"})
    assert error(**{**base, "max_length": 15}).startswith("data.max_length: example 0 of the train split has 16 steps")
    assert "no such file" in error(**{**base, "dataset": str(tmp_path / "missing")})
    assert error(**{**base, "classes": ("cat", "unicorn")}).startswith("data.classes: ['unicorn'] are not labels")
    assert error(**{**base, "preprocess": "pixel"}).startswith("data.preprocess: expected one of")
    assert error(**{**base, "mean": (0.5, 0.5)}).startswith("data.mean: expected 1 number(s)")


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_undecodable_example_is_one_line(tmp_path, kind):
    feature = datasets.Image() if kind == "image" else datasets.Audio(sampling_rate=16000)
    storage = datasets.Features({"x": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                 "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"x": [{"bytes": b"not a file", "path": "a.bin"}], "label": [0]}, features=storage) \
        .cast_column("x", feature).save_to_disk(str(tmp_path / "bad"))
    data = data_section(dataset=str(tmp_path / "bad"), validation_split="train", test_split="train", input_field="x",
                        preprocess="pixels" if kind == "image" else "audio")
    with pytest.raises(ConfigError, match=f"^data.input_field: cannot decode an {kind} example") as e:
        load_arrays(data, "train", 0, str(tmp_path / "cache"))
    assert "\n" not in str(e.value)


def test_unreachable_hub_dataset_is_one_line(tmp_path):
    """Offline (HF_DATASETS_OFFLINE=1, as in this test session) a dataset missing from the local cache fails
    at once with one line naming data.dataset."""
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"
    with pytest.raises(ConfigError, match=r"^data.dataset: cannot load 'ssm-tests/no-such-dataset' \(config 'v1'\) "
                                          r"from the Hugging Face hub: .*offline") as e:
        load_arrays(data_section(dataset="ssm-tests/no-such-dataset", config_name="v1"), "train", 0,
                    str(tmp_path / "cache"))
    assert "\n" not in str(e.value)


def test_cli_reports_an_unreachable_dataset_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "train.py", "--config=configs/digits.py:smoke", f"--workdir={tmp_path / 'run'}",
                        "--config.data.reader=auto", "--config.data.dataset=ssm-tests/no-such-dataset",
                        f"--config.data.data_dir={tmp_path / 'data'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("train.py: error: data.dataset: cannot load 'ssm-tests/no-such-dataset'"), r.stderr
    assert "Traceback" not in r.stderr


def test_spec_checks_name_the_field():
    with pytest.raises(ConfigError, match="^data.target: 'next' .* needs token inputs"):
        spec_from_data(data_section(dataset="x", preprocess="audio", target="next"))
    with pytest.raises(ConfigError, match=r"^data.train_split: expected a split name"):
        spec_from_data(data_section(dataset="x", train_split="train[:a]"))
    with pytest.raises(ConfigError, match="^data.max_length: expected int"):
        spec_from_data(data_section(dataset="x", max_length="10"))
