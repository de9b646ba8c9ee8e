"""Train on a real dataset (the hf_dataset task, docs/datasets.md): a named benchmark as the preset, or
any dataset given by --config.data.* fields.

    python train.py --config=configs/hf_dataset.py:scifar --workdir=runs/scifar
    python train.py --config=configs/hf_dataset.py:lra_listops --workdir=runs/listops \
        --config.data.dataset=/data/lra_release/listops-1000
    python train.py --config=configs/hf_dataset.py --workdir=runs/sst2 --config.data.dataset=stanfordnlp/sst2 \
        --config.data.input_field=sentence --config.data.max_length=512

The model is the base config's with an S5 mixer and mean pooling; the papers' per-benchmark models and
schedules are not set here yet.
"""

from configs.base import base_config, check_preset
from configs.real_data import dataset_section
from ssm.tasks.hf_dataset.benchmarks import BENCHMARKS

PRESETS = ("default",) + tuple(BENCHMARKS)


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = base_config()
    dataset_section(c, "" if preset == "default" else preset)
    c.model.mixer = "s5"
    c.model.pooling = "mean"
    if c.data.target == "label":
        c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    return c
