"""Speech Commands SC35 (raw 16 kHz audio, 16,000 steps, 35 classes; the official validation / testing lists
of the extracted speech_commands_v0.02 folder: docs/datasets.md) with the authors' models and schedules
(configs/paper_recipes.py).

    python train.py --config=configs/speech_commands.py --workdir=runs/sc35 \
        --config.data.dataset=/data/speech_commands_v0.02
    # S5's zero-shot 8 kHz test of the trained model: evaluate a copy of the finished run at half the rate
    cp -r runs/sc35 runs/sc35-8k
    python train.py --config=configs/speech_commands.py:zero_shot_8k --workdir=runs/sc35-8k \
        --config.data.dataset=/data/speech_commands_v0.02

Presets:
  paper         (default) S5 (lindermanlab/S5 run_speech35.sh): 6 layers, H 96, P 128, J 16, bidirectional,
                batchnorm, lr 0.008, SSM lr 0.002, wd 0.04, dropout 0.1, batch 16, 40 epochs
  zero_shot_8k  the same model, validation / test at 8 kHz (every 2nd sample) with every Δ doubled
                (model.eval_step_rescale = 2, S5's step_rescale); train.allow_config_change lets it reopen a
                finished 16 kHz run: no step is trained, the final and the best (selected at 16 kHz)
                checkpoints are evaluated at 8 kHz, as S5 reports it
  s4d           S4D-Inv with the S4 repository's SC config (configs/experiment/sc/s4-sc.yaml + model/layer=s4d)
Differences from the authors' setups: docs/datasets.md ("Paper presets").
"""

from configs.base import check_preset
from configs.paper_recipes import s4d_config, s5_config

PRESETS = ("paper", "zero_shot_8k", "s4d")


def get_config(preset: str = ""):
    preset = check_preset(preset or "paper", PRESETS)
    if preset == "s4d":
        return s4d_config("speech35")
    c = s5_config("speech35")
    if preset == "zero_shot_8k":
        c.data.eval_resample = 2
        c.model.eval_step_rescale = 2.0
        c.train.allow_config_change = True
    return c
