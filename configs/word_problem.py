"""Group word problems (DeltaProduct, Siems et al., 2025): token tagging of the running product in S3, S4,
A5, S5, cyclic Zm or dihedral Dm (`--config.data.group=S5`, `Z5`, `D4`); one layer as in the paper. Presets:
default (train length 64, test 256, 600 steps of 32: learns nothing, docs/results.md), `cpu` (below), smoke,
and `paper` (the authors' run: train 128, test 512). Test metrics: per-prefix-length accuracy
(test.accuracy_by_position), sequence accuracy and the cumulative-prefix sequence accuracy curve
(test.sequence_accuracy_by_prefix[t − 1] = fraction of sequences whose first t predictions are all right: the
paper's figure).

The `paper` preset follows the authors' code, automl/DeltaProduct (read at commit 38cd4e4): README.md
("Training on Sequences of S3": the `src/main.py train` commands), state_tracking/src/main.py (`train()`:
model config, AdamW, CosineAnnealingLR, early stop, metrics), state_tracking/src/utils.py
(`cumulative_sequence_accuracies`), jopetty/sfirah sfirah/metrics.py (`sequence_accuracy`: every token
right), state_tracking/src/generate_data.py (data), and the bundled
flash-linear-attention/fla/{layers/gated_deltaproduct.py, models/gated_deltaproduct/} (the model). Field by field:
  model     GatedDeltaProductForCausalLM, 1 layer, hidden 128, 8 heads × head_dim 32 (q/k/v 256 wide, expand_v 1),
            n_h = num_householder 2 (README: 1 or 2), allow_neg_eigval (README: True or False), no short conv
            (q, k, v = SiLU(W x)), no output gate, no forget gate, L2-normalized q/k, per-head output RMSNorm
            ε 1e-6, SwiGLU MLP 128 → 512 → 128 (fla GatedMLP), weights cast to bf16
  optim     AdamW lr 1e-3 (β 0.9, 0.999, ε 1e-8), weight decay 1e-6, no clipping (gradient_clip None),
            CosineAnnealingLR stepped per batch to 0 over epochs·len(loader), no warmup
  data      strict length 128: 100,000 sequences, 99 % train (99,000) and 1 % held out; evaluation on 1 % of a
            separate length-512 set (1,000 sequences) after every epoch; batch 2,048, 100 epochs
            (49 batches each: 4,900 steps, 1.27 B training tokens); the best checkpoint by validation sequence
            accuracy; training stops once it reaches 0.99 (max_val_acc)
Remaining differences of `paper` (ours vs theirs):
  - no early stop at validation sequence accuracy ≥ 0.99 (the loop has none); the best checkpoint by
    sequence accuracy is kept (`ckpt.best_metric`), as theirs saves it, but training runs all 4,900 steps;
  - bf16: their weights and AdamW states are bf16 (`model.to(torch.bfloat16)`); here only the compute is
    (model.dtype), over float32 weights and optimizer state;
  - epochs: our batches drop the last partial batch (48 full batches per epoch; theirs 48 and one of 696),
    so the 4,900 steps are ≈ 102 epochs; sequences are drawn with replacement (theirs: distinct within a file);
  - their tokenizer prepends BOS to the input and to the targets, so position 0 predicts BOS (always learned)
    and the vocabulary has 13 tokens (6 group elements, 7 specials); we have no BOS, 7 input tokens and a
    6-way head; their curve index t counts BOS, ours starts at the first element;
  - weight decay groups: theirs decays every parameter, ours skips norm scales and biases; our MLP and head
    have biases (fla: none); initializers are flax's (fla: normal(0.02), Xavier-uniform gain 2^−2.5 in
    the layer);
  - seeds: theirs 666 (README) for weights and a random one per data file; ours `seed`.

The `cpu` preset is the smallest setting found at which the paper's S3 ordering shows on the 2-core CPU
(docs/results.md, experiments/word_problem.py --preset cpu): words of 8 elements (test 32: 4×), one
DeltaProduct layer d_model 64 (4 heads × 16, no short conv), 2,000 steps of batch 128 (2.0 M training tokens
per seed, ≈ 1/630 of the paper's), lr 3e-3 (warmup 100, cosine), weight decay 1e-6, 8 seeds in one run;
a seed solves the task when its test sequence accuracy (all 32 tokens right) is ≥ 0.9. `cpu_1000`: the same
with 1,000 steps (fewer seeds solve).
"""

from configs.base import base_config, check_preset, paper_schedule, set_mixer_option, smoke

PRESETS = ("default", "smoke", "cpu", "cpu_1000", "paper")


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
    elif preset in ("cpu", "cpu_1000"):
        c.model.deltaproduct.conv_size = 0
        c.data.train_length, c.data.eval_length = 8, 32
        c.data.num_buckets = 4         # 8-token buckets: 1-8 is the training length, 9-32 extrapolation
        c.data.batch_size = 128
        c.optim.lr = 3e-3
        c.optim.weight_decay = 1e-6
        c.train.num_steps = 2000 if preset == "cpu" else 1000
        c.train.num_seeds = 8
        c.train.eval_every = c.ckpt.every = c.train.log_every = 250
        c.train.solved_metric = "sequence_accuracy"
        c.ckpt.best_metric = "sequence_accuracy"
    elif preset == "paper":
        c.model.d_model = 128
        c.model.mlp_ratio = 4.0        # fla GatedMLP: intermediate 256·⌈int(128·4·2/3) / 256⌉ = 512
        c.model.dtype = "bfloat16"
        dp = c.model.deltaproduct
        dp.num_heads, dp.head_dim, dp.expand_v = 8, 32, 1.0
        dp.conv_size = 0
        dp.use_output_gate = dp.use_forget_gate = False
        dp.norm_eps = 1e-6
        c.data.train_length, c.data.eval_length = 128, 512
        c.data.num_train = 99_000
        c.data.num_validation = c.data.num_test = 1_000
        c.data.batch_size = 2048
        c.data.num_buckets = 16        # 32-token buckets of accuracy_by_position
        c.optim.weight_decay = 1e-6
        c.optim.clip_norm = 0.0
        c.optim.min_lr_ratio = 0.0
        paper_schedule(c, num_steps=4_900, eval_every=49, warmup_steps=0)
        c.train.eval_batch_size = 500
        c.ckpt.best_metric = "sequence_accuracy"
    return c
