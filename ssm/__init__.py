"""ssm: linear RNNs and state-space models in JAX / Flax NNX over one scan core."""

from ssm.diag import DiagonalRNN
from ssm.model import ResidualBlock, SequenceModel
from ssm.scan import affine_scan, linear_recurrence

__all__ = ["linear_recurrence", "affine_scan", "SequenceModel", "ResidualBlock", "DiagonalRNN"]
__version__ = "0.1.0"
