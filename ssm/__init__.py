"""ssm: linear RNNs and state-space models in JAX / Flax NNX over one scan core."""

from ssm.delta_rule import delta_product, delta_rule, delta_step
from ssm.deltanet import DeltaNet, DeltaProduct
from ssm.diag import DiagonalRNN
from ssm.discretize import discretize, s4d_kernel
from ssm.hippo import hippo_legs, hippo_legs_low_rank, hippo_legs_normal, hippo_legs_normal_eig
from ssm.model import ResidualBlock, SequenceModel
from ssm.ptd import perturb_then_diagonalize
from ssm.s4d import S4D
from ssm.s5 import S5
from ssm.scan import affine_scan, linear_recurrence

__all__ = [
    "linear_recurrence", "affine_scan",
    "hippo_legs", "hippo_legs_low_rank", "hippo_legs_normal", "hippo_legs_normal_eig",
    "discretize", "s4d_kernel", "perturb_then_diagonalize", "S4D", "S5",
    "delta_rule", "delta_product", "delta_step", "DeltaNet", "DeltaProduct",
    "SequenceModel", "ResidualBlock", "DiagonalRNN",
]
__version__ = "0.1.0"
