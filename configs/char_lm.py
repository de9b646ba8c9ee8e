"""Character-level language modeling on a local text (`--config.data.path=FILE_OR_DATASET_DIR`); reports
bits per character. The shipped demo text is data/tiny.txt."""

import os

from configs.base import base_config, check_preset, paper_schedule, smoke

PRESETS = ("default", "smoke", "paper", "ptd_noise")
DEMO_TEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tiny.txt")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "deltanet"
    c.data.task = "char_lm"
    c.data.path = DEMO_TEXT
    c.data.seq_len = 128
    c.data.doc_sep = ""                # e.g. "\n\n": examples are windows of documents (with data.pack: packed)
    c.data.num_train = 8192
    c.data.num_validation = 64
    c.data.num_test = 64
    c.data.batch_size = 32
    c.train.num_steps = 1000
    if preset == "smoke":
        smoke(c)
        c.data.seq_len = 16
    elif preset == "ptd_noise":  # experiments/ptd_noise.py: small S5, ≈ 2–3 min on one CPU core
        c.model.mixer = "s5"
        c.model.d_model = 64
        c.model.s5.state_size = 64
        c.train.num_steps = 400
        c.train.eval_every = 200
        c.ckpt.every = 200
    elif preset == "paper":
        c.model.d_model = 256
        c.model.num_layers = 4
        c.data.seq_len = 512
        c.data.num_train = 200_000
        c.data.num_validation = c.data.num_test = 1_000
        paper_schedule(c, num_steps=50_000, eval_every=2_500)
    return c
