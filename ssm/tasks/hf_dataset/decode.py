"""One example's field value -> its sequence as a flat NumPy array (length L·F, row-major over time, the F
features of a step adjacent), in the compact dtype the on-disk cache keeps.

    bytes    str -> UTF-8 bytes (uint8), token = byte + 1 later
    chars    str -> Unicode code points (int32), mapped through the training split's characters later
    listops  LRA's ListOps source string -> our ListOps token ids (ssm/tasks/listops.py), parentheses dropped
    ids      list of ints -> int32
    pixels   image (datasets.Image storage, a path, or a numeric H×W[×C] array) -> uint8 pixels, row by row,
             gray (PIL's "L": ITU-R 601-2 luma) or RGB as 3 features
    audio    datasets.Audio storage {bytes, path}, a path, or {array, sampling_rate} -> float32 mono samples
             in [-1, 1) (16-bit PCM divided by 2**15); WAV via scipy, other formats via soundfile
"""

from __future__ import annotations

import io
import os

import numpy as np

from ssm.checks import fail
from ssm.tasks import listops

CACHE_DTYPES = {"bytes": "uint8", "chars": "int32", "listops": "uint8", "ids": "int32", "pixels": "uint8",
                "audio": "float32"}
LISTOPS_TOKENS = {**{str(d): d + 1 for d in range(10)}, **{op: 11 + i for i, op in enumerate(listops.OPERATORS)},
                  "]": listops.CLOSE}


def _text(value, field: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        fail(f"data.{field}: expected a text column, found a {type(value).__name__} value")
    return value


def encode_bytes(value, field="input_field") -> np.ndarray:
    return np.frombuffer(_text(value, field).encode("utf-8"), np.uint8)


def encode_chars(value, field="input_field") -> np.ndarray:
    return np.frombuffer(_text(value, field).encode("utf-32-le"), "<u4").astype(np.int32)


def encode_listops(value, field="input_field") -> np.ndarray:
    """LRA's raw ListOps source, e.g. '( ( [MAX 2 9 ) ] )' -> [MAX 2 9 ] as token ids (LRA's own tokenizer
    also drops the parentheses: they only mark the tree structure the brackets already give)."""
    words = _text(value, field).replace("(", " ").replace(")", " ").split()
    try:
        return np.array([LISTOPS_TOKENS[w] for w in words], np.uint8)
    except KeyError as e:
        fail(f"data.{field}: {e.args[0]!r} is not a ListOps token (expected digits, "
             f"{', '.join(listops.OPERATORS)}, ']', '(' or ')')")


def encode_ids(value, field="input_field") -> np.ndarray:
    ids = np.asarray(value)
    if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
        fail(f"data.{field}: preprocess='ids' expects a list of integers per example, got {np.asarray(value).dtype} "
             f"of shape {ids.shape}")
    return ids.astype(np.int32)


def _open_file(value):
    """A datasets Image/Audio storage dict, or a path: a readable binary file object."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        return io.BytesIO(value["bytes"])
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, str) or not os.path.isfile(path):
        fail(f"data.input_field: cannot find the file of an example (path {path!r}, no embedded bytes)")
    return open(path, "rb")


def encode_pixels(value, channels: str) -> np.ndarray:
    """(H·W·C,) uint8 pixels in raster order (row by row), C = 1 (gray) or 3 (rgb)."""
    from PIL import Image

    mode = "L" if channels == "gray" else "RGB"
    if isinstance(value, (dict, str)):
        with _open_file(value) as f:
            try:
                return np.asarray(Image.open(f).convert(mode), np.uint8).reshape(-1)
            except Exception as e:  # not an image file, or a truncated one
                fail(f"data.input_field: cannot decode an image example ({type(e).__name__}: {' '.join(str(e).split())})")
    array = np.asarray(value)
    if array.ndim not in (2, 3) or array.size == 0 or array.min() < 0 or array.max() > 255 or (
            not np.issubdtype(array.dtype, np.integer) and not np.all(array == np.round(array))):
        fail(f"data.input_field: expected an image or an H×W[×C] array of integer pixels in 0..255, got dtype "
             f"{array.dtype}, shape {array.shape}")
    array = array.astype(np.uint8)
    if (array.ndim == 2) == (channels == "gray"):
        return array.reshape(-1)
    return np.asarray(Image.fromarray(array).convert(mode), np.uint8).reshape(-1)


def _pcm_to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:  # 8-bit WAV is unsigned
        return (x.astype(np.float32) - 128) / 128
    if np.issubdtype(x.dtype, np.integer):
        return (x / float(2 ** (8 * x.dtype.itemsize - 1))).astype(np.float32)
    return x.astype(np.float32)


def encode_audio(value) -> tuple[np.ndarray, int]:
    """(samples (L,) float32 mono, sampling rate)."""
    if isinstance(value, dict) and value.get("array") is not None:
        x, rate = np.asarray(value["array"], np.float32), int(value["sampling_rate"])
    else:
        with _open_file(value) as f:
            data = f.read()
        try:
            import soundfile
        except (ImportError, OSError):  # soundfile, or its libsndfile, is missing: WAV through scipy
            soundfile = None
        try:
            if soundfile is not None:
                x, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=False)
            else:
                from scipy.io import wavfile

                rate, x = wavfile.read(io.BytesIO(data))
                x = _pcm_to_float(x)
        except Exception as e:  # a corrupt file, or not WAV without soundfile
            fail(f"data.input_field: cannot decode an audio example ({type(e).__name__}: {' '.join(str(e).split())})"
                 + ("; formats other than WAV need soundfile (pip install 'ssm[data]')" if soundfile is None else ""))
    if x.ndim == 2:
        x = x.mean(axis=1)
    return np.ascontiguousarray(x, np.float32), rate
