"""Ops: pure JAX functions on arrays, no parameters. The scan core (`linear_recurrence`, `affine_scan`), the
delta rule and its chunkwise algorithm, discretization; `reference` holds the float64 NumPy loops they are
tested against."""

from ssm.ops.delta_rule import delta_product, delta_rule, delta_step
from ssm.ops.discretize import discretize, s4d_kernel
from ssm.ops.scan import affine_scan, linear_recurrence

__all__ = ["linear_recurrence", "affine_scan", "delta_rule", "delta_product", "delta_step", "discretize",
           "s4d_kernel"]
