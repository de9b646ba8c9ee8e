"""Parity (Grazzi et al., 2025): train on lengths 3–40, validate/test on 40–256, answer at the last token.

Presets: smoke (seconds), default (minutes on CPU), paper (the paper's model and batch sizes).
    python train.py --config=configs/parity.py --workdir=runs/parity
"""

from configs.base import base_config, check_preset, smoke

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "deltanet"
    c.model.allow_neg_eigval = True   # parity needs a negative eigenvalue (Grazzi et al., 2025)
    c.model.d_model = 64
    c.data.task = "parity"
    c.data.train_min_len, c.data.train_max_len = 3, 40
    c.data.eval_min_len, c.data.eval_max_len = 40, 256
    c.data.num_train = 16_384
    c.train.num_steps = 600
    c.train.eval_every = 200
    c.ckpt.every = 200
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    if preset == "smoke":
        smoke(c)
        c.data.eval_max_len = 64
    elif preset == "paper":
        c.model.d_model = 128
        c.data.batch_size = 256
        c.data.num_train = 1_000_000
        c.train.num_steps = 100_000
        c.train.eval_every = 5_000
        c.ckpt.every = 5_000
        c.optim.warmup_steps = 1_000
    return c
