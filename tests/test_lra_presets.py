"""The authors' per-task presets (configs/lra.py, configs/scifar.py, configs/speech_commands.py over
configs/paper_recipes.py): each loads, passes the config checks, builds (abstractly: shapes only), and
carries the numbers of the run scripts it cites (spot checks against values quoted from them)."""

import importlib
import sys

import pytest
from flax import nnx

from ssm.train.build import build_model
from ssm.train.validate import validate_config
from tests.test_train import ROOT

# config module -> presets; each preset's model inputs: tokens (vocab) or features (input_dim), and classes
PRESETS = {"lra": {"listops": ("vocab", 10), "text": ("vocab", 2), "retrieval": ("vocab", 2), "image": (1, 10),
                   "pathfinder": (1, 2), "pathx": (1, 2), "s4d_listops": ("vocab", 10), "s4d_text": ("vocab", 2),
                   "s4d_retrieval": ("vocab", 2), "s4d_image": (1, 10), "s4d_pathfinder": (1, 2),
                   "s4d_pathx": (1, 2)},
           "scifar": {"paper": (3, 10), "s4d": (3, 10)},
           "speech_commands": {"paper": (1, 35), "zero_shot_8k": (1, 35), "s4d": (1, 35)}}
CASES = [(module, preset) for module, presets in PRESETS.items() for preset in presets]


def load(module: str, preset: str) -> dict:
    sys.path.insert(0, ROOT)
    try:
        return importlib.import_module(f"configs.{module}").get_config(preset).to_dict()
    finally:
        sys.path.remove(ROOT)


@pytest.mark.parametrize("module,preset", CASES, ids=[f"{m}:{p}" for m, p in CASES])
def test_preset_validates_and_builds(module, preset):
    config = load(module, preset)
    validate_config(config)
    inputs, classes = PRESETS[module][preset]
    io = {"vocab_size": 300} if inputs == "vocab" else {"input_dim": inputs}
    model = nnx.eval_shape(lambda: build_model(config, num_outputs=classes, pooling=config["model"]["pooling"], **io))
    assert len(model.blocks) == config["model"]["num_layers"]
    assert type(model.blocks[0]).__name__ == "S5Block"
    assert type(model.blocks[0].mixer).__name__ == config["model"]["mixer"].upper()


def test_s5_lra_presets_carry_the_run_scripts_numbers():
    """Values quoted from lindermanlab/S5 bin/run_experiments/run_lra_*.sh (and run_train.py's defaults)."""
    listops = load("lra", "listops")
    m, s5, o = listops["model"], listops["model"]["s5"], listops["optim"]
    # --n_layers=8 --d_model=128 --ssm_size_base=16 --blocks=8 --C_init=lecun_normal --activation_fn=half_glu2
    assert (m["num_layers"], m["d_model"], s5["state_size"], s5["blocks"]) == (8, 128, 16, 8)
    assert (s5["C_init"], m["s5_activation"], s5["bidirectional"], m["norm"]) == (
        "lecun_normal", "half_glu2", True, "batchnorm")
    # --ssm_lr_base=0.001 --lr_factor=3 --weight_decay=0.04 --bsz=50 --epochs=40 --warmup_end=1 (96,000 examples)
    assert (o["ssm_lr"], o["lr"], o["weight_decay"], listops["data"]["batch_size"]) == (0.001, 0.003, 0.04, 50)
    assert (listops["train"]["num_steps"], o["warmup_steps"]) == (40 * 1920, 1920)
    assert (o["clip_norm"], m["bn_momentum"], m["s5_prenorm"], s5["init"], s5["clip_eigs"]) == (
        0.0, 0.95, True, "s5", False)
    assert o["mixer_param_groups"] == "B:decay"  # --opt_config=BfastandCdecay
    text = load("lra", "text")  # --d_model=256 --ssm_size_base=192 --blocks=12 --p_dropout=0.1 --warmup_end=0
    assert (text["model"]["d_model"], text["model"]["s5"]["state_size"], text["model"]["s5"]["blocks"]) == (256, 192, 12)
    assert (text["model"]["dropout"], text["optim"]["warmup_steps"], text["optim"]["lr"]) == (0.1, 0, 0.004)
    assert text["optim"]["mixer_param_groups"] == "log_dt:decay"  # --dt_global=True --opt_config=standard
    retrieval = load("lra", "retrieval")  # the two-tower head; --bsz=32 --lr_factor=2
    assert (retrieval["model"]["pooling"], retrieval["data"]["batch_size"], retrieval["optim"]["lr"]) == ("pair", 32, 0.002)
    image = load("lra", "image")  # --d_model=512 --ssm_size_base=384 --blocks=3 --clip_eigs=True --lr_factor=4.5
    assert (image["model"]["d_model"], image["model"]["s5"]["state_size"], image["model"]["s5"]["blocks"]) == (512, 384, 3)
    assert image["model"]["s5"]["clip_eigs"] and image["optim"]["lr"] == 0.0045 and image["train"]["num_steps"] == 250 * 900
    pathfinder = load("lra", "pathfinder")  # --bn_momentum=0.9 --ssm_lr_base=0.0009 --lr_factor=5 --p_dropout=0.05
    assert (pathfinder["model"]["bn_momentum"], pathfinder["optim"]["ssm_lr"], pathfinder["optim"]["lr"],
            pathfinder["model"]["dropout"]) == (0.9, 0.0009, 0.0045, 0.05)
    pathx = load("lra", "pathx")  # --C_init=complex_normal --dt_min=0.0001 --ssm_lr_base=0.0006 --epochs=75
    assert (pathx["model"]["s5"]["C_init"], pathx["model"]["s5"]["dt_min"], pathx["optim"]["ssm_lr"]) == (
        "complex_normal", 0.0001, 0.0006)
    assert pathx["train"]["num_steps"] == 75 * 5000 and pathx["data"]["max_length"] == 16384
    assert pathx["optim"]["mixer_param_groups"] == "B:ssm_decay"  # --opt_config=BandCdecay


def test_s4d_and_speech_presets_carry_their_sources_numbers():
    """state-spaces/s4 configs/experiment/lra/s4-listops.yaml (d_state 4, lr 0.01, 120,000 steps, 12,000
    warmup, postnorm) and pathx.yaml (dt_min 0.0001, lr 0.002, batch 16); S5's run_speech35.sh (H 96,
    P 128, J 16, bsz 16, ssm_lr_base 0.002, lr_factor 4) and its 8 kHz protocol."""
    listops = load("lra", "s4d_listops")
    m, o = listops["model"], listops["optim"]
    assert (m["mixer"], m["s4d"]["state_size"], m["s4d"]["init"], m["s5_activation"], m["s5_prenorm"]) == (
        "s4d", 4, "legs", "full_glu", False)
    assert (o["lr"], o["ssm_lr"], o["weight_decay"], listops["train"]["num_steps"], o["warmup_steps"]) == (
        0.01, 0.001, 0.05, 120_000, 12_000)
    pathx = load("lra", "s4d_pathx")
    assert (pathx["model"]["s4d"]["dt_min"], pathx["optim"]["lr"], pathx["data"]["batch_size"]) == (0.0001, 0.002, 16)
    sc = load("speech_commands", "paper")
    assert (sc["model"]["d_model"], sc["model"]["s5"]["state_size"], sc["model"]["s5"]["blocks"]) == (96, 128, 16)
    assert (sc["data"]["batch_size"], sc["optim"]["ssm_lr"], sc["optim"]["lr"]) == (16, 0.002, 0.008)
    assert sc["optim"]["mixer_param_groups"] == "C:ssm,D:ssm"  # --opt_config=noBCdecay
    assert listops["optim"]["mixer_param_groups"] == "log_dt:no_decay"  # dt: null (global lr, wd 0)
    assert sc["data"]["classes"] == load("speech_commands", "zero_shot_8k")["data"]["classes"]
    zero = load("speech_commands", "zero_shot_8k")
    assert (zero["data"]["eval_resample"], zero["model"]["eval_step_rescale"]) == (2, 2.0)
    assert {k: v for k, v in zero["model"].items() if k != "eval_step_rescale"} == \
        {k: v for k, v in sc["model"].items() if k != "eval_step_rescale"}
