"""Sequential UCI handwritten digits (scikit-learn's copy: 1,797 8×8 images, 64 steps of one gray
feature, 10 classes; fixed split 1,257 / 180 / 360). Presets: default, permuted (one fixed permutation of
the 64 positions), smoke (seconds, for tests). Needs scikit-learn (the 'dev' extra)."""

from configs.base import base_config, check_preset, smoke
from configs.real_data import dataset_section

PRESETS = ("default", "permuted", "smoke")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    dataset_section(c, "digits", permute=preset == "permuted")
    c.model.mixer = "s5"
    c.model.d_model = 64
    c.model.s5.state_size = 32
    c.model.pooling = "mean"
    c.model.dropout = 0.1
    c.data.batch_size = 64
    c.optim.lr = 3e-3
    c.optim.weight_decay = 0.05
    c.train.num_steps = 1000
    c.train.eval_every = c.ckpt.every = 200
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    c.train.solved_metric, c.train.solved_threshold = "accuracy", 0.95  # issue 16's target (test accuracy)
    if preset == "smoke":
        smoke(c)
        c.data.num_train, c.data.num_validation, c.data.num_test = 64, 16, 16
    return c
