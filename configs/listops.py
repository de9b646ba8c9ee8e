"""ListOps (Nangia & Bowman, 2018) from its grammar; sequence classification (10 classes) with pooling.
The paper preset uses Long Range Arena's generator settings (max depth 10, max args 10, lengths 500–2000)."""

from configs.base import base_config, check_preset, paper_schedule, smoke

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "s5"
    c.model.d_model = 64
    c.model.pooling = "mean"
    c.data.task = "listops"
    c.data.max_depth = 5
    c.data.max_args = 5
    c.data.train_min_len, c.data.train_max_len = 10, 128
    c.data.eval_min_len, c.data.eval_max_len = 10, 128
    c.data.num_train = 16_384
    c.train.num_steps = 1000
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    if preset == "smoke":
        smoke(c)
        c.data.max_depth, c.data.max_args = 3, 3
        c.data.train_min_len = c.data.eval_min_len = 4
        c.data.train_max_len = c.data.eval_max_len = 32
    elif preset == "paper":  # LRA: 96k train / 2k val / 2k test, batch 32 (S5), 6 layers of width 128
        c.model.d_model = 128
        c.model.num_layers = 6
        c.data.max_depth, c.data.max_args = 10, 10
        c.data.train_min_len = c.data.eval_min_len = 500
        c.data.train_max_len = c.data.eval_max_len = 2000
        c.data.num_train, c.data.num_validation, c.data.num_test = 96_000, 2_000, 2_000
        c.data.batch_size = 32
        paper_schedule(c, num_steps=120_000, eval_every=3_000)
    return c
