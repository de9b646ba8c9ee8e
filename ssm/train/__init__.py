"""Training machinery behind train.py: data, optimizer groups, train step, checkpoints, metrics, loop."""

from ssm.train.build import Built, build, build_model
from ssm.train.loop import train

__all__ = ["train", "build", "build_model", "Built"]
