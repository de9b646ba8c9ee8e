"""Multi-query associative recall (Zoology, Arora et al., 2023): key-value pairs then queries; accuracy on
the query positions."""

from configs.base import base_config, check_preset, paper_schedule, smoke

PRESETS = ("default", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    c.model.mixer = "deltanet"
    c.model.d_model = 64
    c.data.task = "mqar"
    c.data.vocab_size = 256
    c.data.num_kv_pairs = 8
    c.data.train_length = 64
    c.data.eval_length = 64
    c.data.num_train = 16_384
    c.train.num_steps = 1000
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    if preset == "smoke":
        smoke(c)
        c.data.vocab_size, c.data.num_kv_pairs = 32, 2
        c.data.train_length = c.data.eval_length = 16
    elif preset == "paper":  # Zoology's sweep: vocab 8192, seq len 64..512, kv pairs 4..64
        c.model.d_model = 128
        c.data.vocab_size = 8192
        c.data.train_length = c.data.eval_length = 256
        c.data.num_kv_pairs = 16
        c.data.num_train = 100_000
        c.data.num_test = 3_000
        c.data.batch_size = 256
        paper_schedule(c, num_steps=20_000, eval_every=1_000)
    return c
