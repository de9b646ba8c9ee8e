"""ssm: linear RNNs and state-space models in JAX / Flax NNX over one scan core."""

from ssm.scan import affine_scan, linear_recurrence
from ssm.delta_rule import delta_product, delta_rule, delta_step
from ssm.deltanet import DeltaNet, DeltaProduct

__all__ = ["linear_recurrence", "affine_scan", "delta_rule", "delta_product", "delta_step", "DeltaNet",
           "DeltaProduct"]
__version__ = "0.1.0"
