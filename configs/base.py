"""The shared base config: every task config starts from `base_config()` and sets its data fields.

Sections: model / data / optim / train / ckpt / mesh (multi-device layout). Defaults follow the
papers (2 layers, d_model 128, AdamW lr 1e-3, warmup + cosine, clipping 1.0) — see docs/training.md.
"""

from ml_collections import ConfigDict, config_dict

from ssm.registry import MIXERS, mixer_options


def mixer_section(name: str) -> ConfigDict:
    """The config section of mixer `name`: every constructor option with its default (a None default
    becomes a typed placeholder, so `--config.model.<name>.<option>=value` parses to the right type)."""
    section = ConfigDict()
    for option in mixer_options(name).values():
        section[option.name] = config_dict.placeholder(option.kind) if option.default is None else option.default
    return section


def set_mixer_option(c: ConfigDict, option: str, value) -> None:
    """Set `option` in the section of every mixer that has it (e.g. allow_neg_eigval for a protocol)."""
    for name in MIXERS:
        if option in c.model[name]:
            c.model[name][option] = value


def base_config() -> ConfigDict:
    c = ConfigDict()
    c.seed = 0

    c.model = ConfigDict()
    c.model.mixer = "deltanet"         # a name in ssm.registry.MIXERS; its options: c.model.<mixer>.<option>
    c.model.d_model = 128
    c.model.num_layers = 2
    c.model.block = "prenorm_mlp"      # prenorm_mlp | s5 (the S4/S5 recipe: mixer -> GELU/GLU; ssm/blocks.py)
    c.model.mlp = "glu"                # prenorm_mlp: glu | gelu | none
    c.model.mlp_ratio = 2.0
    c.model.s5_activation = "half_glu1"  # s5 block: full_glu | half_glu1 | half_glu2 | gelu
    c.model.s5_prenorm = True          # s5 block: norm before the mixer (True) or after the residual sum
    c.model.norm = "rmsnorm"           # rmsnorm | layernorm | batchnorm (statistics over real tokens)
    c.model.bn_momentum = 0.95         # batchnorm: running average <- m * running + (1 - m) * batch
    c.model.final_norm = True          # a norm after the last block
    c.model.dropout = 0.0
    c.model.pooling = "mean"           # sequence classification tasks only: mean | last | pair (two documents)
    c.model.eval_step_rescale = 1.0    # evaluation multiplies every mixer's step size by this (S5's 8 kHz test: 2)
    c.model.dtype = "float32"          # compute dtype: float32 | bfloat16 (params and recurrence state stay fp32)
    c.model.remat = False              # rematerialize each block in the backward pass (long sequences)
    c.model.remat_policy = "nothing_saveable"  # a jax.checkpoint_policies name (with remat=True)
    for name in MIXERS:                # one section per mixer: its constructor's options and defaults
        c.model[name] = mixer_section(name)
    # where the training script departs from a layer's default
    c.model.s5.clip_eigs = True        # clamp Re Λ <= -1e-4 in the forward pass: stable while training
    c.model.diag.state_size = 64       # the layer's default is d_model

    c.data = ConfigDict()
    c.data.task = ""
    c.data.seed = 0                    # the generated data set (shared by every replica; see train.num_seeds)
    c.data.data_dir = ""               # generated-dataset cache; "" = $SSM_DATA_DIR or ~/.cache/ssm/data
    c.data.batch_size = 64
    c.data.num_train = 20_000
    c.data.num_validation = 512
    c.data.num_test = 1024
    c.data.num_buckets = 4             # test accuracy per length / position bucket (tasks that report it)
    c.data.pack = False                # pack variable-length examples into rows with resets (per-token tasks)
    c.data.pack_len = 0                # tokens per packed row; 0 = the split's padded length

    c.optim = ConfigDict()
    c.optim.lr = 1e-3
    c.optim.ssm_lr = 1e-3              # learning rate of SSM dynamics params (Λ / A, B, Δ); no weight decay
    c.optim.mixer_param_groups = ""    # move mixer params by name: "B:decay,log_dt:no_decay" (ssm/train/optim.py)
    c.optim.weight_decay = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.clip_norm = 1.0
    c.optim.warmup_steps = 100
    c.optim.min_lr_ratio = 0.0
    c.optim.schedule = "cosine"        # cosine | constant (after warmup)

    c.train = ConfigDict()
    c.train.num_steps = 1000
    c.train.num_seeds = 1              # S replicas in one jitted step: replica k uses seed + k (docs/training.md)
    c.train.solved_metric = "scaled_accuracy"  # a test metric ("" = off); loss / bits_per_char: lower is better
    c.train.solved_threshold = 0.9     # a replica "solved" the task when its final test metric reaches this
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.eval_batch_size = 256
    c.train.progress_bar = True        # on a terminal; otherwise (or False) one plain line per log_every
    c.train.tensorboard = True         # event files in the workdir (tensorboard --logdir DIR)
    c.train.wandb = False              # Weights & Biases (needs `pip install wandb`)
    c.train.wandb_project = "ssm"
    c.train.wandb_mode = ""            # "" = wandb's default ($WANDB_MODE or online) | online | offline | disabled
    c.train.nonfinite_policy = "skip"  # skip | stop: a non-finite loss/grad never updates the state
    c.train.max_nonfinite_in_a_row = 10  # skip: stop after this many skipped steps in a row (0 = never)
    c.train.pack_eval = True           # validation / test examples packed into fewer rows: same metrics
    c.train.pack_batches = True        # each step's examples packed into fewer rows: same loss (ssm/train/packing.py)
    c.train.pack_row_multiple = 1      # pack_batches: a packed row holds this many padded lengths (more: less padding)
    c.train.keep_freed_memory = True   # glibc keeps freed memory: no page faults per step (ssm/train/host_memory.py)
    c.train.allow_config_change = False  # resume into a workdir whose run had another seed/model/data

    c.ckpt = ConfigDict()
    c.ckpt.every = 250                 # also saved at every evaluation and at the end
    c.ckpt.keep_last = 2
    c.ckpt.keep_best = 1
    c.ckpt.best_metric = "loss"        # a validation metric
    c.ckpt.best_mode = "min"           # min | max
    c.ckpt.async_save = True

    c.mesh = ConfigDict()              # device layout (docs/scaling.md)
    c.mesh.data = -1                   # data-parallel devices; -1 = all devices (of all processes)
    c.mesh.model = 1                   # reserved for sharding heads / channels (must be 1 for now)
    c.mesh.distributed = False         # call jax.distributed.initialize() (or set SSM_DISTRIBUTED=1)
    return c


def smoke(c: ConfigDict) -> ConfigDict:
    """Shrink a config to run in seconds on CPU (tests, CI)."""
    c.model.d_model = 16
    c.model.num_layers = 1
    set_mixer_option(c, "state_size", 8)
    set_mixer_option(c, "num_heads", 2)
    c.data.batch_size = 8
    c.data.num_train = 64
    c.data.num_validation = 16
    c.data.num_test = 16
    c.optim.warmup_steps = 1
    c.train.num_steps = 3
    c.train.log_every = 1
    c.train.eval_every = 2
    c.train.eval_batch_size = 16
    c.train.progress_bar = False
    c.ckpt.every = 2
    return c


def check_preset(preset: str, presets) -> str:
    preset = preset or "default"
    if preset not in presets:
        raise ValueError(f"config preset: expected one of {', '.join(presets)}, got {preset!r}")
    return preset


def paper_schedule(c: ConfigDict, *, num_steps: int, eval_every: int, warmup_steps: int | None = None) -> None:
    """A paper-size run's length; it evaluates and checkpoints every `eval_every` steps."""
    c.train.num_steps = num_steps
    c.train.eval_every = c.ckpt.every = eval_every
    if warmup_steps is not None:
        c.optim.warmup_steps = warmup_steps


def formal_language_config(task: str, preset: str, *, num_steps: int) -> ConfigDict:
    """Grazzi et al. (2025)'s protocol for parity and modular arithmetic: DeltaNet with eigenvalues in
    (−1, 1), train lengths 3–40, validate/test on 40–256, answer at the last token, best = max accuracy.
    Presets: smoke (seconds), default (minutes on CPU), paper (the paper's model and batch sizes)."""
    c = base_config()
    c.model.mixer = "deltanet"
    set_mixer_option(c, "allow_neg_eigval", True)  # every mixer that offers (−1, 1)
    c.model.d_model = 64
    c.data.task = task
    c.data.train_min_len, c.data.train_max_len = 3, 40
    c.data.eval_min_len, c.data.eval_max_len = 40, 256
    c.data.num_train = 16_384
    c.train.num_steps = num_steps
    c.ckpt.best_metric, c.ckpt.best_mode = "accuracy", "max"
    c.train.pack_row_multiple = 2      # rows of 80: fewer padding slots than rows of 40 (bench/small_models.py)
    if preset == "smoke":
        smoke(c)
        c.data.eval_max_len = 64
    elif preset == "paper":  # the authors' code (configs/parity.py lists the files read and what still differs)
        c.train.pack_row_multiple = 1  # rows of the padded length: longer rows not measured on an accelerator
        c.model.d_model = 128
        c.model.mlp_ratio = 4.0        # fla DeltaNetMLP: intermediate 256·⌈int(128·4·2/3) / 256⌉ = 512
        c.model.dtype = "bfloat16"     # torch.autocast(bfloat16) over float32 weights
        c.model.deltanet.norm_eps = 1e-6   # DeltaNetConfig.norm_eps (the output RMSNorm)
        c.data.batch_size = 256
        c.data.num_validation = c.data.num_test = 8192
        c.optim.clip_norm = 0.0        # grad_clip_norm: None (main.py never clips)
        c.optim.min_lr_ratio = 1e-3    # lr_decay_factor: cosine to 1e-3·lr at the last step
    return c
