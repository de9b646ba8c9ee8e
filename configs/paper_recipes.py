"""The authors' per-task hyperparameters (S5, and S4D through the S4 repository) and the builder that turns
them into a training config. Used by configs/lra.py, configs/scifar.py, configs/speech_commands.py; the
remaining differences from the authors' setups are listed in docs/datasets.md ("Paper presets").

Sources (read with the search tool; the numbers below are copied from them, not from memory):
  S5   lindermanlab/S5 @ d133f4d, bin/run_experiments/run_lra_{listops,imdb,aan,cifar,pathfinder,pathx}.sh and
       run_speech35.sh, with run_train.py's defaults (prenorm=True, batchnorm=True, bn_momentum=0.95,
       activation half_glu1, conj_sym=True, discretization zoh, dt 0.001–0.1, lr_min 0, cosine per step after
       a linear warmup of `warmup_end` epochs, no gradient clipping) and s5/train.py (lr = lr_factor ·
       ssm_lr_base; the SSM group B, Λ, log Δ under Adam with ssm_lr and no weight decay, and its variants:
       S5_OPT_CONFIGS).
  S4D  state-spaces/s4 @ 62a14bb, configs/experiment/lra/s4-{listops,imdb,aan,cifar,pathfinder,pathx}.yaml
       (the repository runs S4D with any of its experiment configs plus `model/layer=s4d`); block: S4's
       (GELU → Linear(H, 2H) → GLU, i.e. our "full_glu"), AdamW lr / weight decay, SSM lr for A, B (and Δ
       where given) with no weight decay, cosine schedule with linear warmup in steps; sCIFAR and Speech
       Commands from configs/experiment/cifar/s4-cifar.yaml and sc/s4-sc.yaml with the repository's defaults.
S5 has no run script for sequential CIFAR (sCIFAR): configs/scifar.py uses its LRA-Image script's model and
optimizer on the RGB sequence (see there).
"""

from configs.base import base_config
from configs.real_data import dataset_section
from ssm.tasks.hf_dataset.benchmarks import BENCHMARKS

# Training examples per epoch, to turn the authors' epochs into steps (steps/epoch = ⌊n / batch⌋, as S5's
# train.py): the LRA releases' sizes and our splits of CIFAR (45,000 train) and Speech Commands (the release
# folder's training list). With another copy of a dataset, set train.num_steps yourself.
TRAIN_SIZES = {"listops": 96_000, "text": 25_000, "retrieval": 147_086, "image": 45_000, "pathfinder": 160_000,
               "pathx": 160_000, "scifar": 45_000, "speech35": 84_843}

# which data benchmark (ssm/tasks/hf_dataset/benchmarks.py) each task reads, and its arguments
DATA = {"listops": ("lra_listops", {}), "text": ("lra_text", {}), "retrieval": ("lra_retrieval", {}),
        "image": ("lra_image", {}), "pathfinder": ("lra_pathfinder", {}), "pathx": ("lra_pathx", {}),
        "scifar": ("scifar", {}), "speech35": ("speech_commands", {"classes": "sc35", "release": True,
                                                                    "dataset": "speech_commands_v0.02"})}

# S5: the run scripts' flags (run_train.py names); flags a script does not set take run_train.py's defaults.
S5_DEFAULTS = dict(prenorm=True, batchnorm=True, bn_momentum=0.95, activation_fn="half_glu1", bidirectional=False,
                   C_init="trunc_standard_normal", clip_eigs=False, discretization="zoh", dt_min=0.001, dt_max=0.1,
                   p_dropout=0.0, warmup_end=1, opt_config="standard", dt_global=False, mode="pool")
S5_RUNS = {
    "listops": dict(C_init="lecun_normal", activation_fn="half_glu2", batchnorm=True, bidirectional=True, blocks=8,
                    bsz=50, d_model=128, epochs=40, jax_seed=6554595, lr_factor=3, n_layers=8,
                    opt_config="BfastandCdecay", p_dropout=0.0, ssm_lr_base=0.001, ssm_size_base=16, warmup_end=1,
                    weight_decay=0.04),
    "text": dict(C_init="lecun_normal", activation_fn="half_glu2", batchnorm=True, bidirectional=True, blocks=12,
                 bsz=50, d_model=256, dt_global=True, epochs=35, jax_seed=8825365, lr_factor=4, n_layers=6,
                 opt_config="standard", p_dropout=0.1, ssm_lr_base=0.001, ssm_size_base=192, warmup_end=0,
                 weight_decay=0.07),
    "retrieval": dict(C_init="trunc_standard_normal", batchnorm=True, bidirectional=True, blocks=16, bsz=32,
                      d_model=128, dt_global=True, epochs=20, jax_seed=5464368, lr_factor=2, n_layers=6,
                      opt_config="standard", p_dropout=0.0, ssm_lr_base=0.001, ssm_size_base=256, warmup_end=1,
                      weight_decay=0.05),
    "image": dict(C_init="lecun_normal", batchnorm=True, bidirectional=True, blocks=3, bsz=50, clip_eigs=True,
                  d_model=512, epochs=250, jax_seed=16416, lr_factor=4.5, n_layers=6, opt_config="BfastandCdecay",
                  p_dropout=0.1, ssm_lr_base=0.001, ssm_size_base=384, warmup_end=1, weight_decay=0.07),
    "pathfinder": dict(C_init="trunc_standard_normal", batchnorm=True, bidirectional=True, blocks=8, bn_momentum=0.9,
                       bsz=64, d_model=192, epochs=200, jax_seed=8180844, lr_factor=5, n_layers=6,
                       opt_config="standard", p_dropout=0.05, ssm_lr_base=0.0009, ssm_size_base=256, warmup_end=1,
                       weight_decay=0.03),
    "pathx": dict(C_init="complex_normal", batchnorm=True, bidirectional=True, blocks=16, bn_momentum=0.9, bsz=32,
                  d_model=128, dt_min=0.0001, epochs=75, jax_seed=6429262, lr_factor=3, n_layers=6,
                  opt_config="BandCdecay", p_dropout=0.0, ssm_lr_base=0.0006, ssm_size_base=256, warmup_end=1,
                  weight_decay=0.06),
    "speech35": dict(C_init="lecun_normal", batchnorm=True, bidirectional=True, blocks=16, bsz=16, d_model=96,
                     epochs=40, jax_seed=4062966, lr_factor=4, n_layers=6, opt_config="noBCdecay", p_dropout=0.1,
                     ssm_lr_base=0.002, ssm_size_base=128, warmup_end=1, weight_decay=0.04),
}
S5_RUNS["scifar"] = S5_RUNS["image"]  # no sCIFAR script: the LRA-Image one (configs/scifar.py)

# S4D through the S4 repository's LRA configs (model.* / optimizer.* / scheduler.* / loader.*; `ssm_lr` is
# the layer's lr for A, B (and Δ where `dt_lr` is not null); n_ssm: copies of (A, B) shared by the channels)
S4D_RUNS = {
    "listops": dict(n_layers=6, d_model=256, prenorm=False, norm="batch", d_state=4, ssm_lr=0.001, dt_lr=None,
                    dt_min=0.001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.0, n_ssm=1, batch_size=32,
                    lr=0.01, weight_decay=0.05, num_training_steps=120_000, num_warmup_steps=12_000, max_epochs=40),
    "text": dict(n_layers=6, d_model=256, prenorm=True, norm="batch", d_state=4, ssm_lr=0.001, dt_lr=None,
                 dt_min=0.001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.0, n_ssm=1, batch_size=16,
                 lr=0.01, weight_decay=0.05, num_training_steps=50_000, num_warmup_steps=5_000, max_epochs=32),
    "retrieval": dict(n_layers=6, d_model=256, prenorm=True, norm="batch", d_state=4, ssm_lr=0.001, dt_lr=None,
                      dt_min=0.001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.0, n_ssm=1, batch_size=64,
                      lr=0.01, weight_decay=0.05, num_training_steps=50_000, num_warmup_steps=5_000, max_epochs=20),
    "image": dict(n_layers=6, d_model=512, prenorm=False, norm="batch", d_state=64, ssm_lr=0.001, dt_lr=0.001,
                  dt_min=0.001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.1, n_ssm=1, batch_size=50,
                  lr=0.01, weight_decay=0.05, num_training_steps=180_000, num_warmup_steps=18_000, max_epochs=200),
    "pathfinder": dict(n_layers=6, d_model=256, prenorm=True, norm="batch", d_state=64, ssm_lr=0.001, dt_lr=0.001,
                       dt_min=0.001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.0, n_ssm=None,
                       batch_size=64, lr=0.004, weight_decay=0.05, num_training_steps=500_000,
                       num_warmup_steps=50_000, max_epochs=200),
    "pathx": dict(n_layers=6, d_model=256, prenorm=True, norm="batch", d_state=64, ssm_lr=0.001, dt_lr=0.001,
                  dt_min=0.0001, dt_max=0.1, init="legs", bidirectional=True, dropout=0.0, n_ssm=None, batch_size=16,
                  lr=0.002, weight_decay=0.05, num_training_steps=500_000, num_warmup_steps=50_000, max_epochs=50),
}
# configs/experiment/cifar/s4-cifar.yaml and sc/s4-sc.yaml set fewer fields: the rest are the defaults of
# configs/model/s4.yaml (norm: layer), configs/model/layer/s4d.yaml (d_state 64, scaling "inverse" = S4D-Inv,
# lr 0.001 for A, B, Δ, dt 0.001–0.1) and configs/scheduler/cosine_warmup.yaml (1,000 warmup steps)
S4D_RUNS["scifar"] = dict(n_layers=6, d_model=512, prenorm=False, norm="layer", d_state=64, ssm_lr=0.001,
                          dt_lr=0.001, dt_min=0.001, dt_max=0.1, init="inv", bidirectional=True, dropout=0.1,
                          n_ssm=2, batch_size=50, lr=0.01, weight_decay=0.05, num_training_steps=200_000,
                          num_warmup_steps=1_000, max_epochs=200)
S4D_RUNS["speech35"] = dict(n_layers=6, d_model=128, prenorm=True, norm="batch", d_state=64, ssm_lr=0.001,
                            dt_lr=0.001, dt_min=0.001, dt_max=0.1, init="inv", bidirectional=True, dropout=0.0,
                            n_ssm=2, batch_size=16, lr=0.01, weight_decay=0.05, num_training_steps=200_000,
                            num_warmup_steps=1_000, max_epochs=40)


# S5's opt_config variants (s5/train_helpers.py create_train_state) as moves of our mixer parameters: its SSM
# group (Adam, ssm_lr, no weight decay) is B, Lambda_re / Lambda_im, log_step (our log_dt) for "standard";
# the variants move B (and C, D); dt_global=True moves log Δ to the global-lr, weight-decayed group.
S5_OPT_CONFIGS = {"standard": "", "BfastandCdecay": "B:decay", "BandCdecay": "B:ssm_decay", "noBCdecay": "C:ssm,D:ssm"}


def s5_param_groups(opt_config: str, dt_global: bool) -> str:
    return ",".join(filter(None, [S5_OPT_CONFIGS[opt_config], "log_dt:decay" if dt_global else ""]))


def steps_per_epoch(task: str, batch: int) -> int:
    return TRAIN_SIZES[task] // batch


def _data(c, task: str):
    benchmark, kwargs = DATA[task]
    dataset_section(c, **BENCHMARKS[benchmark](**kwargs))
    c.model.pooling = "pair" if task == "retrieval" else "mean"  # S5 / S4: the retrieval two-tower head
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"  # test accuracy at the best validation epoch


def s5_config(task: str):
    """The S5 run script of `task` as a config: model.block = "s5", S5 mixer with the paper's init ("s5";
    --config.model.s5.init=s5-ptd for S5-PTD), per-epoch evaluation, schedule in steps."""
    r = {**S5_DEFAULTS, **S5_RUNS[task]}
    c = base_config()
    _data(c, task)
    m = c.model
    m.mixer, m.block, m.final_norm = "s5", "s5", False  # S5's model: encoder, layers, pooling, decoder
    m.d_model, m.num_layers, m.dropout = r["d_model"], r["n_layers"], r["p_dropout"]
    m.s5_activation, m.s5_prenorm = r["activation_fn"], r["prenorm"]
    m.norm, m.bn_momentum = ("batchnorm" if r["batchnorm"] else "layernorm"), r["bn_momentum"]
    s5 = m.s5
    s5.state_size, s5.blocks, s5.init, s5.conj_sym = r["ssm_size_base"], r["blocks"], "s5", True
    s5.C_init, s5.bidirectional, s5.clip_eigs = r["C_init"], r["bidirectional"], r["clip_eigs"]
    s5.discretization, s5.dt_min, s5.dt_max = r["discretization"], r["dt_min"], r["dt_max"]
    c.data.batch_size = r["bsz"]
    c.optim.ssm_lr, c.optim.lr = r["ssm_lr_base"], round(r["lr_factor"] * r["ssm_lr_base"], 12)
    c.optim.weight_decay, c.optim.clip_norm, c.optim.min_lr_ratio = r["weight_decay"], 0.0, 0.0
    c.optim.mixer_param_groups = s5_param_groups(r["opt_config"], r["dt_global"])
    spe = steps_per_epoch(task, r["bsz"])
    c.train.num_steps, c.optim.warmup_steps = r["epochs"] * spe, r["warmup_end"] * spe
    c.train.eval_every = c.ckpt.every = spe
    c.train.log_every, c.train.eval_batch_size = 100, r["bsz"]
    return c


def s4d_config(task: str):
    """The S4 repository's config of `task` run with S4D (`model/layer=s4d`): model.block = "s5" with
    activation "full_glu" (S4's GELU → Linear(H, 2H) → GLU), S4D-LegS, the configs' step counts."""
    r = S4D_RUNS[task]
    c = base_config()
    _data(c, task)
    m = c.model
    m.mixer, m.block, m.s5_activation = "s4d", "s5", "full_glu"
    m.d_model, m.num_layers, m.dropout = r["d_model"], r["n_layers"], r["dropout"]
    m.s5_prenorm = m.final_norm = r["prenorm"]  # S4's SequenceModel adds a final norm to prenorm models
    m.norm = "batchnorm" if r["norm"] == "batch" else "layernorm"
    m.bn_momentum = 0.9  # PyTorch BatchNorm1d's momentum 0.1 in flax's convention
    s4d = m.s4d
    s4d.state_size, s4d.init, s4d.bidirectional = r["d_state"], r["init"], r["bidirectional"]
    s4d.dt_min, s4d.dt_max = r["dt_min"], r["dt_max"]
    c.data.batch_size = r["batch_size"]
    c.optim.lr, c.optim.ssm_lr, c.optim.weight_decay = r["lr"], r["ssm_lr"], r["weight_decay"]
    c.optim.clip_norm, c.optim.min_lr_ratio = 0.0, 0.0
    # S4's register(): a tensor without its own lr (dt: null) gets the global lr and weight decay 0
    c.optim.mixer_param_groups = "log_dt:no_decay" if r["dt_lr"] is None else ""
    c.train.num_steps, c.optim.warmup_steps = r["num_training_steps"], r["num_warmup_steps"]
    c.train.eval_every = c.ckpt.every = steps_per_epoch(task, r["batch_size"])
    c.train.log_every, c.train.eval_batch_size = 100, r["batch_size"]
    return c
