"""ssm: linear RNNs and state-space models in JAX / Flax NNX over one scan core.

    ssm/ops       pure functions: scan core, delta rule (+ chunk algorithm), discretization, float64 references
    ssm/init      HiPPO, perturb-then-diagonalize, S4D / S5 initializers
    ssm/layers    NNX mixers (S4D, S5, DeltaNet / Gated DeltaNet / DeltaProduct, diagonal RNN), shared pieces
    ssm/blocks.py residual blocks (pre-norm + MLP, the S4/S5 recipe);  ssm/model.py  SequenceModel over any mixer
    ssm/registry.py names -> mixers, tasks
    ssm/tasks     NumPy data generators;  ssm/train  the training loop behind train.py
    ssm/analysis  transfer functions, plots, closed-form positive controls

    ssm.load_run(workdir, step="best")  -> (model, config) of a train.py run (ssm/train/load.py; imported on
                                           first use, so `import ssm` needs only the layers' dependencies)
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
]  # and ssm.load_run (below; not in __all__, so that `from ssm import *` stays free of the training stack)
__version__ = "0.1.0"


def __getattr__(name):
    if name == "load_run":  # the training stack (orbax, optax) only when a run is loaded
        from ssm.train.load import load_run

        return load_run
    raise AttributeError(f"module 'ssm' has no attribute {name!r}")
