"""The matmul precision policy (ssm/ops/precision.py) and `method="auto"`: names resolve per backend, and the
measured error of each policy against the float64 NumPy loop stays inside the bound docs/accelerators.md
states (the "bfloat16" policy is CPU-emulated: bf16-rounded matmul inputs, float32 accumulation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm import DeltaNet, delta_rule
from ssm.checks import ConfigError
from ssm.ops.delta_rule import AUTO_METHOD, resolve_method
from ssm.ops.precision import resolve_precision
from ssm.ops.reference import delta_rule_ref


def test_auto_precision_and_method_per_backend():
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("auto", "gpu") == resolve_precision("auto", "tpu") == "bfloat16"
    assert resolve_precision("float32", "gpu") == "float32"
    assert resolve_method("auto", "cpu") == "chunk"
    # CPU: the per-token scan for small heads (SCAN_ON_CPU), the chunk algorithm for large ones
    assert resolve_method("auto", "cpu", head_size=16 * 16, steps=10_000) == "recurrent"
    assert resolve_method("auto", "cpu", head_size=32 * 32, steps=512) == "recurrent"
    assert resolve_method("auto", "cpu", head_size=32 * 32, steps=513) == "chunk"
    assert resolve_method("auto", "cpu", head_size=64 * 64, steps=40) == "chunk"
    assert resolve_method("auto", "gpu", head_size=16 * 16, steps=40) == AUTO_METHOD["gpu"]
    assert resolve_method("pallas", "cpu") == "pallas"
    assert set(AUTO_METHOD) >= {"cpu", "gpu", "tpu"}
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("tf32")
    with pytest.raises(ConfigError, match="precision"):
        delta_rule(*(jnp.ones((1, 2, 1, 4)),) * 3, jnp.ones((1, 2, 1)), precision="fp16")


def _relative_error(x, ref):
    return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref))


# Measured on CPU at this shape (docs/accelerators.md): float32 ≈ 2e-7, bfloat16 ≈ 4e-3 relative (outputs
# and final state, chunk and pallas alike). The bounds are loose (5× / 50×) but catch a policy that is
# not applied (bf16 error would be ~1e-7) or a broken one (errors of order 1).
BOUND = {"float32": 1e-5, "bfloat16": 2e-2}


@pytest.mark.parametrize("method", ["chunk", "pallas"])
def test_precision_policy_error_against_float64_reference(rng, method):
    B, T, H, d = 1, 128, 2, 32
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731  (as the layers feed it)
    q, k = unit(rng.standard_normal((B, T, H, d))), unit(rng.standard_normal((B, T, H, d)))
    v, beta = rng.standard_normal((B, T, H, d)), rng.uniform(0.0, 2.0, (B, T, H))
    gate = -rng.uniform(0.0, 0.1, (B, T, H))
    o_ref, h_ref = delta_rule_ref(q, k, v, beta, np.zeros((B, H, d, d)), d ** -0.5, gate)
    args = [jnp.asarray(x, jnp.float32) for x in (q, k, v, beta, gate)]
    errors = {}
    for precision in ("float32", "bfloat16"):
        o, h = jax.jit(lambda q, k, v, b, g: delta_rule(q, k, v, b, gate=g, method=method, chunk_size=32,
                                                         precision=precision))(*args)
        errors[precision] = max(_relative_error(o, o_ref), _relative_error(h, h_ref))
        print(f"{method} {precision}: relative error {errors[precision]:.2e}")
        assert errors[precision] < BOUND[precision], (precision, errors[precision])
    assert errors["bfloat16"] > 100 * errors["float32"], errors  # the policy really rounds the matmul inputs


def test_layer_passes_precision_through(rng):
    x = jnp.asarray(rng.standard_normal((2, 40, 32)), jnp.float32)
    call = nnx.jit(lambda layer, x: layer(x))
    ys = {p: call(DeltaNet(32, num_heads=2, allow_neg_eigval=True, method="chunk", precision=p,
                           rngs=nnx.Rngs(0)), x)
          for p in ("float32", "bfloat16")}
    diff = float(jnp.abs(ys["bfloat16"] - ys["float32"]).max() / jnp.abs(ys["float32"]).max())
    assert 1e-5 < diff < 5e-2, diff
    with pytest.raises(ConfigError, match="precision"):
        DeltaNet(32, precision="half", rngs=nnx.Rngs(0))
