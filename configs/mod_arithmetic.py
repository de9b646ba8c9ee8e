"""Modular arithmetic mod 5 (Deletang et al., 2023; Grazzi et al., 2025), with or without brackets
(`--config.data.brackets=True`): train on lengths 3–40, validate/test on 40–256, answer at the last token.
Presets: smoke (seconds), default (1000 steps, minutes on CPU), seeds4 (default at lr 3e-3, the learning rate
of configs/parity.py:seeds8; docs/results.md runs it with 4 seeds in one run), seeds4_long (seeds4 with 5× the
steps and 4× the training set), paper (the authors' run).

The `paper` preset follows the authors' code, automl/unlocking_state_tracking (read at commit df8f840):
xlstm/experiments/mod_arithmetic_delta_net_2.yaml (DeltaNet [−1, 1], no brackets; mod_arithmetic_delta_net.yaml
is [0, 1]: `--config.model.deltanet.allow_neg_eigval=False`; the *_with_brackets_* files train the same way),
xlstm/experiments/main.py, xlstm/experiments/lr_scheduler.py, xlstm/experiments/data/formal_language/tasks/
{modular_arithmetic.py, modular_arithmetic_with_brackets.py}; the model as in configs/parity.py. Field by field:
  model     DeltaNet, 2 layers, d_model 128, 4 heads × 32, short conv 4, β = 2σ(·), output RMSNorm ε 1e-6 without
            gate, SwiGLU MLP 128 → 512 → 128, bf16 autocast (configs/base.py: formal_language_config)
  optim     AdamW lr 1e-3, weight decay 0.1, no clipping, linear warmup 10,000 steps then cosine to 1e-3·lr at
            step 100,000 (their `min_lr: 1e-6` key is not read by main.py; 1e-3·lr is the same 1e-6)
  data      batch 256; validation and test 8,192; evaluated every 200 steps; no brackets: d op d … d with
            + − * (* binds tighter), digits 0–4; their lengths 3–40 / 40–256 count '=' and the answer token,
            so the expressions have 1–37 / 37–253 tokens (odd) — what data.train_min_len … count here
Remaining differences (ours vs theirs):
  - they generate every training sequence fresh (102.4 M listed, 25.6 M used in 100k steps of 256); here
    2.56 M sequences are generated once and seen 10 times;
  - their input ends with '=' and the answer is predicted there; ours has no '=' token and reads the answer
    at the expression's last token; our head scores the 5 residues, theirs the 10-token vocabulary;
  - brackets=True: their expression lengths are max(U[3, 40], 5) − 3, i.e. 2–37 with length 2 three times as
    likely; ours are uniform on data.train_min_len … (1–37 with this preset's lengths);
  - weight decay 0.1 also decays norm scales there (every parameter); here norm scales and biases are not
    decayed; our MLP and head have biases; flax initializers (configs/parity.py lists fla's);
  - seeds: theirs 42 for data and weights; ours `seed`. They keep the final model; we also report the best
    validation checkpoint.
"""

from configs.base import check_preset, formal_language_config, paper_schedule

PRESETS = ("default", "seeds4", "seeds4_long", "smoke", "paper")


def get_config(preset: str = ""):
    preset = check_preset(preset, PRESETS)
    c = formal_language_config("mod_arithmetic", preset, num_steps=1000)
    c.data.modulus = 5
    c.data.brackets = False
    c.data.mult = False               # brackets only: also use '*' (Deletang et al. default: + and - only)
    if preset in ("seeds4", "seeds4_long"):  # the 4-seed comparison of docs/results.md: lr 3e-3 as parity's seeds8
        c.optim.lr = 3e-3
    if preset == "seeds4_long":  # 5,000 steps of 64 over 65,536 sequences (≈ 5 epochs)
        c.train.num_steps, c.train.eval_every, c.ckpt.every = 5000, 1000, 1000
        c.data.num_train = 65_536
    if preset == "paper":
        paper_schedule(c, num_steps=100_000, eval_every=200, warmup_steps=10_000)
        c.optim.weight_decay = 0.1
        c.data.num_train = 2_560_000
        c.data.train_min_len, c.data.train_max_len = 1, 37
        c.data.eval_min_len, c.data.eval_max_len = 37, 253
    return c
