"""Group word problems (DeltaProduct, Siems et al., 2025): token tagging of the running product in S3, S4,
A5, S5, cyclic Zm or dihedral Dm (`--config.data.group=S5`, `Z5`, `D4`); one layer as in the paper. The default
preset is CPU-sized (train length 64, test 256, 600 steps); the paper preset uses the paper's lengths (train 128,
test 512).
Per-prefix-length accuracy is reported under test.accuracy_by_position.
"""

from configs.base import base_config, check_preset, paper_schedule, set_mixer_option, smoke

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "deltaproduct"
    set_mixer_option(c, "allow_neg_eigval", True)
    c.model.deltaproduct.num_householder = 2
    c.model.num_layers = 1
    c.model.d_model = 64
    c.data.task = "word_problem"
    c.data.group = "S3"
    c.data.train_length = 64
    c.data.eval_length = 256
    c.data.num_buckets = 8             # per-prefix-length accuracy in 32-token buckets
    c.data.num_train = 8192
    c.data.num_validation = 256
    c.data.num_test = 512
    c.data.batch_size = 32
    c.train.num_steps = 600
    c.train.eval_every = c.ckpt.every = 200
    c.train.eval_batch_size = 64
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    if preset == "smoke":
        smoke(c)
        c.data.train_length, c.data.eval_length = 16, 32
    elif preset == "paper":
        c.model.d_model = 128
        c.data.train_length, c.data.eval_length = 128, 512
        c.data.num_train = 100_000
        c.data.batch_size = 256
        paper_schedule(c, num_steps=50_000, eval_every=2_500, warmup_steps=1_000)
    return c
