"""Modular arithmetic mod 5 (Deletang et al., 2023; Grazzi et al., 2025), with or without brackets
(`--config.data.brackets=True`): train on lengths 3–40, validate/test on 40–256, answer at the last token.
"""

from configs.base import base_config, check_preset, smoke

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "deltanet"
    c.model.allow_neg_eigval = True
    c.model.d_model = 64
    c.data.task = "mod_arithmetic"
    c.data.modulus = 5
    c.data.brackets = False
    c.data.mult = False               # brackets only: also use '*' (Deletang et al. default: + and - only)
    c.data.train_min_len, c.data.train_max_len = 3, 40
    c.data.eval_min_len, c.data.eval_max_len = 40, 256
    c.data.num_train = 16_384
    c.train.num_steps = 1000
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
