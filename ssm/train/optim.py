"""Optimizer: optax AdamW with warmup + cosine, gradient clipping and parameter groups by type/path.

Groups (computed once, up front, as a label tree matching the parameter tree):
  * "ssm":      parameters marked `ssm.layers.params.ssm_param` (Λ / A, B, Δ): own learning rate `ssm_lr`,
                no weight decay;
  * "no_decay": parameters marked `no_decay_param` and every parameter with ndim <= 1 (norm scales, biases);
  * "decay":    everything else (weight matrices, embeddings): main lr with weight decay.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx

from ssm.checks import fail
from ssm.layers.params import marked_group

GROUPS = ("decay", "no_decay", "ssm")


def param_group(variable: nnx.Variable) -> str:
    """The optimizer group of one parameter (by its `optim_group` metadata, then its shape)."""
    marked = marked_group(variable)
    if marked == "ssm":
        return "ssm"
    if marked == "no_decay" or len(variable.shape) <= 1:
        return "no_decay"
    return "decay"


def param_labels(model: nnx.Module) -> nnx.State:
    """A tree with the same structure as `nnx.state(model, nnx.Param)` holding each parameter's group."""
    return jax.tree.map(param_group, nnx.state(model, nnx.Param),
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def describe_groups(model: nnx.Module) -> str:
    """One line per parameter: path, shape, group (printed once at start-up)."""
    lines, counts = [], dict.fromkeys(GROUPS, 0)
    for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        group = param_group(v)
        counts[group] += int(np.prod(v.shape))
        lines.append(f"  {'.'.join(map(str, path)):<48} {str(tuple(v.shape)):<16} {group}")
    total = ", ".join(f"{g}: {n:,}" for g, n in counts.items())
    return "parameter groups (" + total + ")\n" + "\n".join(lines)


def schedule(lr: float, *, num_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0, kind: str = "cosine"):
    """Linear warmup from 0 to `lr` over warmup_steps, then cosine decay to lr·min_lr_ratio at num_steps
    (kind="cosine") or constant (kind="constant")."""
    if kind not in ("cosine", "constant"):
        fail(f"optim.schedule: expected one of 'cosine', 'constant', got {kind!r}")
    decay_steps = max(num_steps - warmup_steps, 1)
    after = (optax.cosine_decay_schedule(lr, decay_steps, alpha=min_lr_ratio) if kind == "cosine"
             else optax.constant_schedule(lr))
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), after], [warmup_steps])


def make_optimizer(model: nnx.Module, *, num_steps: int, lr: float = 1e-3, ssm_lr: float | None = None,
                   weight_decay: float = 0.1, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   clip_norm: float | None = 1.0, warmup_steps: int = 0, min_lr_ratio: float = 0.0,
                   schedule_kind: str = "cosine") -> tuple[optax.GradientTransformation, dict]:
    """The optax transformation for `model` and the schedules {'lr': ..., 'ssm_lr': ...} (for logging)."""
    if warmup_steps < 0 or warmup_steps > num_steps:
        fail(f"optim.warmup_steps: expected 0 <= warmup_steps <= train.num_steps = {num_steps}, got {warmup_steps}")
    main = schedule(lr, num_steps=num_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio, kind=schedule_kind)
    ssm = schedule(lr if ssm_lr is None else ssm_lr, num_steps=num_steps, warmup_steps=warmup_steps,
                   min_lr_ratio=min_lr_ratio, kind=schedule_kind)
    adamw = lambda s, wd: optax.adamw(s, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    groups = optax.partition({"decay": adamw(main, weight_decay), "no_decay": adamw(main, 0.0),
                              "ssm": adamw(ssm, 0.0)}, param_labels(model))
    tx = groups if not clip_norm else optax.chain(optax.clip_by_global_norm(clip_norm), groups)
    return tx, {"lr": main, "ssm_lr": ssm}
