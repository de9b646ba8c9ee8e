"""Optimizer: optax AdamW with warmup + cosine, gradient clipping and parameter groups by type/path.

Groups (computed once, up front, as a label tree matching the parameter tree):
  * "ssm":      parameters marked `ssm.layers.params.ssm_param` (Λ / A, B, Δ): own learning rate `ssm_lr`,
                no weight decay;
  * "no_decay": parameters marked `no_decay_param` and every parameter with ndim <= 1 (norm scales, biases);
  * "decay":    everything else (weight matrices, embeddings): main lr with weight decay;
  * "ssm_decay": `ssm_lr` with weight decay (only through the overrides below).
A mixer parameter can be moved to another group by its name inside the mixer (`optim.mixer_param_groups`,
e.g. "B:decay,log_dt:decay"), as the S5 / S4 authors' optimizer variants do (configs/paper_recipes.py); a
name that matches no parameter of the mixer is an error, not a silent no-op.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx

from ssm.checks import fail
from ssm.layers.params import marked_group

GROUPS = ("decay", "no_decay", "ssm", "ssm_decay")


def param_group(variable: nnx.Variable) -> str:
    """The optimizer group of one parameter (by its `optim_group` metadata, then its shape)."""
    marked = marked_group(variable)
    if marked == "ssm":
        return "ssm"
    if marked == "no_decay" or len(variable.shape) <= 1:
        return "no_decay"
    return "decay"


def parse_group_overrides(text: str) -> dict[str, str]:
    """'B:decay, log_dt:decay' -> {'B': 'decay', 'log_dt': 'decay'} ('' -> {}); a one-line error names
    optim.mixer_param_groups on a malformed entry or an unknown group."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, group = (x.strip() for x in item.partition(":"))
        if not sep or not name or group not in GROUPS:
            fail(f"optim.mixer_param_groups: expected 'name:group' entries separated by commas with group one "
                 f"of {', '.join(GROUPS)}, got {item!r}")
        out[name] = group
    return out


def _mixer_param_name(path) -> str | None:
    """The parameter's name inside its mixer (the last path element after 'mixer'), or None."""
    keys = [getattr(k, "key", getattr(k, "idx", k)) for k in path]
    return str(keys[-1]) if "mixer" in keys[:-1] else None


def mixer_param_names(model: nnx.Module) -> set[str]:
    """The names of the mixers' parameters in a SequenceModel (every parameter name of a bare mixer)."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    inside = [p for p, _ in flat if "mixer" in p[:-1]]
    return {str(p[-1]) for p in (inside if inside else [p for p, _ in flat])}


def check_group_overrides(names: set, overrides: dict) -> None:
    """Every overridden name is one of `names` (the mixers' parameter names)."""
    unknown = sorted(set(overrides) - names)
    if unknown:
        fail(f"optim.mixer_param_groups: {', '.join(map(repr, unknown))} names no parameter of the mixer "
             f"(its parameters: {', '.join(sorted(names))})")


def param_labels(model: nnx.Module, overrides: dict | None = None) -> nnx.State:
    """A tree with the same structure as `nnx.state(model, nnx.Param)` holding each parameter's group
    (`overrides`: mixer parameter name -> group, see the module docstring)."""
    overrides = overrides or {}

    def label(path, variable):
        name = _mixer_param_name(path)
        return overrides[name] if name in overrides else param_group(variable)

    return jax.tree_util.tree_map_with_path(label, nnx.state(model, nnx.Param),
                                            is_leaf=lambda x: isinstance(x, nnx.Variable))


def describe_groups(model: nnx.Module, overrides: dict | None = None) -> str:
    """One line per parameter: path, shape, group (printed once at start-up)."""
    lines, counts = [], dict.fromkeys(GROUPS, 0)
    labels = dict(nnx.to_flat_state(param_labels(model, overrides)))
    for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        group = labels[path]
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
                   schedule_kind: str = "cosine", group_overrides: dict | None = None,
                   ) -> tuple[optax.GradientTransformation, dict]:
    """The optax transformation for `model` and the schedules {'lr': ..., 'ssm_lr': ...} (for logging);
    `group_overrides`: mixer parameter name -> group (module docstring)."""
    if warmup_steps < 0 or warmup_steps > num_steps:
        fail(f"optim.warmup_steps: expected 0 <= warmup_steps <= train.num_steps = {num_steps}, got {warmup_steps}")
    main = schedule(lr, num_steps=num_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio, kind=schedule_kind)
    ssm = schedule(lr if ssm_lr is None else ssm_lr, num_steps=num_steps, warmup_steps=warmup_steps,
                   min_lr_ratio=min_lr_ratio, kind=schedule_kind)
    adamw = lambda s, wd: optax.adamw(s, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    check_group_overrides(mixer_param_names(model), group_overrides or {})
    labels = param_labels(model, group_overrides)
    transforms = {"decay": adamw(main, weight_decay), "no_decay": adamw(main, 0.0), "ssm": adamw(ssm, 0.0)}
    if "ssm_decay" in jax.tree.leaves(labels):  # only when used: the optimizer state of runs without it
        transforms["ssm_decay"] = adamw(ssm, weight_decay)  # keeps its structure (old checkpoints restore)
    groups = optax.partition(transforms, labels)
    tx = groups if not clip_norm else optax.chain(optax.clip_by_global_norm(clip_norm), groups)
    return tx, {"lr": main, "ssm_lr": ssm}
