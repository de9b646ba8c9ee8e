"""Matmul precision policy of the matmul-heavy ops (the delta rule's chunk and Pallas paths).

    "float32"   every matmul at full float32 (`Precision.HIGHEST`): exact float32 on every backend.
    "bfloat16"  matmul inputs rounded to bfloat16, products accumulated in float32 (`preferred_element_type`):
                tensor cores on GPUs, the native MXU pass on TPUs. This is flash-linear-attention's choice
                (its Triton kernels take bf16 q/k/v and run `tl.dot` on bf16 tiles with fp32 accumulators),
                and the arithmetic is the same on every backend (a bf16×bf16 product is exact in float32),
                so the CPU runs of the tests measure the error a GPU run has, up to summation order.
    "auto"      "float32" on CPU, "bfloat16" on GPU / TPU (`AUTO_PRECISION`).

Under either policy the recurrent state, the decay products and the C×C triangular inverse stay in float32
(flash-linear-attention also inverts in fp32), and the outputs come back in the inputs' dtype. The measured
error of each policy against the float64 reference is in docs/accelerators.md and tests/test_precision.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ssm.checks import check_choice

PRECISIONS = ("auto", "float32", "bfloat16")
AUTO_PRECISION = {"cpu": "float32", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16", "tpu": "bfloat16"}


def resolve_precision(precision: str, backend: str | None = None) -> str:
    """"auto" -> the backend's default ("float32" on CPU, "bfloat16" elsewhere); other names pass through."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    backend = jax.default_backend() if backend is None else backend
    return AUTO_PRECISION.get(backend, "bfloat16")


def matmul_dtype(precision: str, compute_dtype):
    """The dtype matmul inputs are rounded to: bfloat16 under "bfloat16", else the compute dtype."""
    return jnp.bfloat16 if precision == "bfloat16" else compute_dtype


def einsum(spec: str, *operands, precision: str = "float32"):
    """`jnp.einsum` under a resolved policy; the result has the operands' (promoted) dtype."""
    out = jnp.result_type(*operands)
    if precision == "bfloat16":
        operands = [x.astype(jnp.bfloat16) for x in operands]
        return jnp.einsum(spec, *operands, preferred_element_type=out)
    return jnp.einsum(spec, *operands, precision=lax.Precision.HIGHEST)
