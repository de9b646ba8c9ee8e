"""The standard benchmarks' data sections (plain dicts of `hf_dataset` options; configs/real_data.py puts
them into a config). Each function says where its data comes from; `root` / `dataset` arguments point at
local copies. Lengths, class counts and preprocessing follow the S4 / S5 code (lindermanlab/S5,
s5/dataloaders); docs/datasets.md lists the schemas and every known difference.
"""

from __future__ import annotations

from ssm.tasks.hf_dataset.readers import SPEECH_COMMANDS_LABELS

SC10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SC35 = SPEECH_COMMANDS_LABELS[:35]  # every word, hub order; _silence_ is not a class in S4 / S5
CIFAR_RGB_MEAN, CIFAR_RGB_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)  # S4 / S5 sCIFAR
CIFAR_GRAY_MEAN, CIFAR_GRAY_STD = (122.6 / 255,), (61.0 / 255,)                 # S5 LRA Image


def _cifar10(dataset: str) -> dict:
    # uoft-cs/cifar10 (config plain_text): img Image (32×32 RGB PNG), label ClassLabel(10); train 50,000,
    # test 10,000. Validation: the last 5,000 training images (S4 / S5: a seeded random 10 %).
    return dict(dataset=dataset, config_name="plain_text" if dataset == "uoft-cs/cifar10" else "",
                train_split="train[:45000]", validation_split="train[45000:]", test_split="test",
                input_field="img", label_field="label", preprocess="pixels", max_length=1024)


def lra_listops(root: str = "lra_release/listops-1000") -> dict:
    """LRA ListOps: the release's basic_{train,val,test}.tsv (96k / 2k / 2k; `Source` string like
    '( ( [MAX 2 9 ) ] )', `Target` int 0-9); 10 classes, up to 2,000 tokens (S5: l_max 2048, truncates)."""
    return dict(dataset=root, reader="lra_listops", input_field="Source", label_field="Target",
                preprocess="listops", max_length=2048, truncate=True)


def lra_text(dataset: str = "stanfordnlp/imdb") -> dict:
    """LRA Text: IMDB reviews as bytes, 4,096 long (longer reviews cut, as LRA and S5 do); hub
    stanfordnlp/imdb (plain_text): text string, label ClassLabel(neg, pos); 25k train / 25k test, the test
    split doubles as validation (LRA, S5)."""
    return dict(dataset=dataset, config_name="plain_text" if dataset == "stanfordnlp/imdb" else "",
                train_split="train", validation_split="test", test_split="test", input_field="text",
                label_field="label", preprocess="bytes", max_length=4096, truncate=True)


def lra_retrieval(root: str = "lra_release/tsv_data") -> dict:
    """LRA Retrieval (ACL Anthology Network): new_aan_pairs.{train,eval,test}.tsv (label, id1, id2, text1,
    text2); bytes, each document cut to 4,000. Fed as one sequence
    text1 ⊕ separator ⊕ text2 (8,001 steps); S5 instead encodes the two documents separately with one
    encoder and classifies [h1, h2, h1 − h2, h1 · h2] of their mean-pooled states (a model-side head)."""
    return dict(dataset=root, reader="lra_retrieval", input_field="text1", second_field="text2",
                label_field="label", preprocess="bytes", max_length=4000, truncate=True)


def lra_image(dataset: str = "uoft-cs/cifar10") -> dict:
    """LRA Image: CIFAR-10 in grayscale (PIL's luma), 1,024 pixels of 1 feature, normalized as S5 does."""
    return dict(_cifar10(dataset), channels="gray", mean=CIFAR_GRAY_MEAN, std=CIFAR_GRAY_STD)


def lra_pathfinder(root: str = "lra_release/pathfinder32", difficulty: str = "curv_contour_length_14") -> dict:
    """LRA Pathfinder: 32×32 grayscale PNGs from the release (hardest difficulty, as S4 / S5), 2 classes,
    1,024 steps; pixels scaled to [-1, 1] (S5: mean 0.5, std 0.5); 80/10/10 split (fixed permutation)."""
    return dict(dataset=root, reader="lra_pathfinder", config_name=difficulty, input_field="image",
                label_field="label", preprocess="pixels", channels="gray", max_length=1024, mean=(0.5,), std=(0.5,))


def lra_pathx(root: str = "lra_release/pathfinder128", difficulty: str = "curv_contour_length_14") -> dict:
    """LRA Path-X: the 128×128 Pathfinder images, 16,384 steps."""
    return dict(lra_pathfinder(root, difficulty), max_length=16384)


def scifar(dataset: str = "uoft-cs/cifar10") -> dict:
    """Sequential CIFAR-10: 1,024 steps of the RGB channels as 3 features, per-channel normalized (S4 / S5)."""
    return dict(_cifar10(dataset), channels="rgb", mean=CIFAR_RGB_MEAN, std=CIFAR_RGB_STD)


def speech_commands(classes: str = "sc35", dataset: str = "google/speech_commands", eval_hz: int = 16000,
                    release: bool = False) -> dict:
    """Speech Commands v0.02, raw 16 kHz waveforms (1 s clips, 16,000 steps), standardized with the
    training split's mean / std (S4 / S5). classes: "sc35" (the 35 words) or "sc10" (yes .. go).
    release=False: `dataset` is the hub's google/speech_commands (config v0.02: file, audio Audio(16 kHz),
    label ClassLabel(36 incl. _silence_), is_unknown, speaker_id, utterance_id; its test split is the separate
    v0.02 test archive) or a local copy in that schema. release=True: `dataset` is the extracted
    speech_commands_v0.02 folder (reader speech_commands: the official validation_list / testing_list split
    that S4 / S5 report SC35 on).
    eval_hz=8000: validation / test keep every 2nd sample (8 kHz), S5's zero-shot resolution change that
    the model's `step_rescale` compensates."""
    if eval_hz not in (16000, 8000):
        raise ValueError(f"eval_hz: expected 16000 or 8000, got {eval_hz}")
    return dict(dataset=dataset, reader="speech_commands" if release else "auto",
                config_name="v0.02" if dataset == "google/speech_commands" else "", input_field="audio",
                label_field="label", preprocess="audio", max_length=16000, standardize=True,
                classes=SC35 if classes == "sc35" else SC10, eval_resample=16000 // eval_hz)


def byte_lm(dataset: str = "Salesforce/wikitext", config_name: str = "wikitext-103-raw-v1",
            max_length: int = 2048) -> dict:
    """Byte-level language modeling (next byte, bits per byte): the text rows of each split joined in
    order and cut into windows of max_length + 1 bytes. Hub Salesforce/wikitext (wikitext-103-raw-v1:
    text string; train / validation / test)."""
    return dict(dataset=dataset, config_name=config_name, input_field="text", preprocess="bytes",
                target="next", max_length=max_length)


def digits(permuted: bool = False) -> dict:
    """Sequential UCI digits (scikit-learn's copy): 64 steps of one standardized gray feature (pixels 0..16),
    10 classes; permuted=True applies one fixed permutation of the 64 positions (seed 0)."""
    return dict(reader="digits", dataset="", input_field="image", label_field="label", preprocess="pixels",
                channels="gray", scale=16.0, standardize=True, max_length=64, permute=permuted)


BENCHMARKS = {"lra_listops": lra_listops, "lra_text": lra_text, "lra_retrieval": lra_retrieval,
              "lra_image": lra_image, "lra_pathfinder": lra_pathfinder, "lra_pathx": lra_pathx, "scifar": scifar,
              "speech_commands": speech_commands, "byte_lm": byte_lm, "digits": digits}
