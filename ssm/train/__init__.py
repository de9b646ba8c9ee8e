"""Training machinery behind train.py: data, optimizer groups, train step, checkpoints, metrics, loop."""

from ssm.train.loop import build_model, train

__all__ = ["train", "build_model"]
