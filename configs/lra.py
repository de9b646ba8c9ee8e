"""The Long Range Arena with the authors' models and schedules (`paper` presets; configs/paper_recipes.py).

    python train.py --config=configs/lra.py:listops --workdir=runs/lra-listops \
        --config.data.dataset=/data/lra_release/listops-1000

Presets (data: docs/datasets.md, "Benchmarks"; point --config.data.dataset at your copy):
  listops, text, retrieval, image, pathfinder, pathx    S5 (lindermanlab/S5 run_lra_*.sh): S5 block, S5 init
                                                        (--config.model.s5.init=s5-ptd for S5-PTD)
  s4d_listops, ..., s4d_pathx                           S4D-LegS with the S4 repository's LRA configs

Every remaining difference from the authors' setups is listed in docs/datasets.md ("Paper presets"); the
main ones: parameter groups (S5's opt_config / dt_global variants put B or Δ elsewhere; biases, D and norm
parameters get no weight decay here), padding is masked everywhere here, S4's n_ssm (shared A, B), and
the training set sizes used to turn epochs into steps (configs/paper_recipes.py: TRAIN_SIZES).
"""

from configs.base import check_preset
from configs.paper_recipes import S4D_RUNS, s4d_config, s5_config

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
PRESETS = TASKS + tuple(f"s4d_{t}" for t in TASKS)


def get_config(preset: str = ""):
    preset = check_preset(preset or "listops", PRESETS)
    if preset.startswith("s4d_"):
        assert preset[4:] in S4D_RUNS
        return s4d_config(preset[4:])
    return s5_config(preset)
