"""Initializers (float64 NumPy, run once on the host): HiPPO-LegS, perturb-then-diagonalize and its cached
table, the S4D / S5 eigenvalue and eigenbasis inits."""

from ssm.init.diagonal import S4D_INITS, S5_INITS, s4d_init, s5_eigenbasis
from ssm.init.hippo import hippo_legs, hippo_legs_low_rank, hippo_legs_normal, hippo_legs_normal_eig
from ssm.init.ptd import perturb_then_diagonalize

__all__ = ["hippo_legs", "hippo_legs_low_rank", "hippo_legs_normal", "hippo_legs_normal_eig",
           "perturb_then_diagonalize", "s4d_init", "s5_eigenbasis", "S4D_INITS", "S5_INITS"]
