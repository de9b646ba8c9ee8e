"""ssm: linear RNNs and state-space models in JAX / Flax NNX over one scan core.

    ssm/ops       pure functions: scan core, delta rule (+ chunk algorithm), discretization, float64 references
    ssm/init      HiPPO, perturb-then-diagonalize, S4D / S5 initializers
    ssm/layers    NNX mixers (S4D, S5, DeltaNet / Gated DeltaNet / DeltaProduct, diagonal RNN), shared pieces
    ssm/blocks.py residual blocks (pre-norm + MLP, the S4/S5 recipe);  ssm/model.py  SequenceModel over any mixer
    ssm/registry.py names -> mixers, tasks
    ssm/tasks     NumPy data generators;  ssm/train  the training loop behind train.py
    ssm/analysis  transfer functions, plots, closed-form positive controls
"""

from ssm.init import hippo_legs, hippo_legs_low_rank, hippo_legs_normal, hippo_legs_normal_eig, \
    perturb_then_diagonalize
from ssm.layers import S4D, S5, DeltaNet, DeltaProduct, DiagonalRNN, GatedDeltaNet
from ssm.blocks import ResidualBlock, S5Block
from ssm.model import SequenceModel
from ssm.ops import affine_scan, delta_product, delta_rule, delta_step, discretize, linear_recurrence, s4d_kernel

__all__ = [
    "linear_recurrence", "affine_scan",
    "hippo_legs", "hippo_legs_low_rank", "hippo_legs_normal", "hippo_legs_normal_eig",
    "discretize", "s4d_kernel", "perturb_then_diagonalize", "S4D", "S5",
    "delta_rule", "delta_product", "delta_step", "DeltaNet", "GatedDeltaNet", "DeltaProduct",
    "SequenceModel", "ResidualBlock", "S5Block", "DiagonalRNN",
]
__version__ = "0.1.0"
