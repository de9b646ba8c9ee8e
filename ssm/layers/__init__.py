"""Layers: Flax NNX sequence mixers implementing the `Mixer` contract (ssm/layers/mixer.py), one file per
family, plus the pieces they share (short convolution, head norms, complex parameters, parameter groups)."""

from ssm.layers.deltanet import DeltaNet, DeltaProduct, GatedDeltaNet
from ssm.layers.diag import DiagonalRNN
from ssm.layers.mixer import Mixer
from ssm.layers.s4d import S4D
from ssm.layers.s5 import S5

__all__ = ["Mixer", "S4D", "S5", "DeltaNet", "GatedDeltaNet", "DeltaProduct", "DiagonalRNN"]
