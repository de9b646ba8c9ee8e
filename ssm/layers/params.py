"""Optimizer groups marked on the parameters themselves, as `nnx.Param` metadata.

    ssm_param(x)       SSM dynamics (Λ / A, B, Δ, decay biases): own learning rate `ssm_lr`, no weight decay
    no_decay_param(x)  main learning rate, no weight decay (norm scales, gate biases)

Both return a plain `nnx.Param` carrying `optim_group` metadata, not a `Param` subclass: through
`nnx.bridge.to_linen` a subclass becomes its own Linen collection, so a Linen loop that trains `params`
silently never trained Λ, B or Δ. With metadata every trainable leaf stays in Linen's `params` (wrapped in
`NNXMeta`, which keeps the metadata), and ssm/train/optim.py reads the group with `marked_group`.
Marking by metadata rather than by leaf name keeps norms and biases from being mis-grouped.
"""

from __future__ import annotations

from flax import nnx

GROUP_KEY = "optim_group"
MARKED_GROUPS = ("ssm", "no_decay")


def ssm_param(value) -> nnx.Param:
    """An SSM dynamics parameter: trained with `ssm_lr` (the S4D / S5 papers: lr ≈ 1e-3), no weight decay."""
    return nnx.Param(value, **{GROUP_KEY: "ssm"})


def no_decay_param(value) -> nnx.Param:
    """A parameter trained with the main learning rate but without weight decay."""
    return nnx.Param(value, **{GROUP_KEY: "no_decay"})


def marked_group(variable: nnx.Variable) -> str | None:
    """The group a parameter was marked with ("ssm", "no_decay"), or None if unmarked."""
    return variable.get_metadata().get(GROUP_KEY)


def in_group(group: str):
    """An NNX filter selecting the parameters marked `group`, e.g. `nnx.state(model, in_group("ssm"))`."""
    def select(path, variable) -> bool:
        return isinstance(variable, nnx.Param) and marked_group(variable) == group

    return select
