"""method="pallas" (ssm/ops/delta_pallas.py, run with interpret=True on CPU) against the float64 NumPy loop:
values, gradients (vs autodiff of the recurrent method and vs finite differences of the NumPy loop), odd
lengths, β up to 2, gates, resets, DeltaProduct; and that the kernels lower to Triton for a GPU."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from ssm import delta_product, delta_rule
from ssm.checks import ConfigError
from ssm.ops.delta_pallas import pallas_delta_rule
from ssm.ops.reference import delta_product_ref, delta_rule_ref
from tests.utils import assert_trees_close


# Sizes the Triton path accepts too (powers of two >= 16), so the float32 tests also run the real kernels on
# a GPU; float64 (x64) tests are CPU-only (interpret mode): Triton has no float64 dot.
K = 16
SCALE = K ** -0.5
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="float64 runs in interpret mode only")


def make(rng, B=2, T=37, H=2, K=K, V=16, n=None, gated=True, resets=True):
    lead = (B, T) if n is None else (B, T, n)
    q = rng.standard_normal((B, T, H, K))
    k = rng.standard_normal(lead + (H, K))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal(lead + (H, V))
    beta = rng.uniform(0.0, 2.0, lead + (H,))
    beta[:, T // 2] = 2.0  # the Householder reflection itself
    h0 = rng.standard_normal((B, H, K, V))
    gate = -rng.uniform(0.0, 0.5, (B, T, H)) if gated else None
    reset = None
    if resets:
        reset = rng.uniform(size=(B, T)) < 0.1
        reset[:, min(16, T - 1)] = True  # on a chunk boundary (chunk 16)
    return q, k, v, beta, h0, gate, reset


@cpu_only
@pytest.mark.parametrize("T, chunk, gated, resets", [(37, 16, False, False), (37, 16, True, True), (1, 16, True, False),
                                                     (50, 32, False, True)])
def test_pallas_matches_numpy(x64, rng, T, chunk, gated, resets):
    q, k, v, beta, h0, gate, reset = make(rng, T=T, gated=gated, resets=resets)
    o, h = jax.jit(lambda *a: delta_rule(*a[:4], initial_state=a[4], gate=a[5], reset=a[6], method="pallas",
                                         chunk_size=chunk))(q, k, v, beta, h0, gate, reset)
    assert_trees_close((o, h), delta_rule_ref(q, k, v, beta, h0, SCALE, gate, reset), rtol=1e-10, atol=1e-10)


@cpu_only
@pytest.mark.parametrize("n", [2, 3])
def test_pallas_delta_product_matches_numpy(x64, rng, n):
    q, k, v, beta, h0, gate, reset = make(rng, T=13, n=n)
    o, h = jax.jit(lambda *a: delta_product(*a[:4], initial_state=a[4], gate=a[5], reset=a[6], method="pallas",
                                            chunk_size=16))(q, k, v, beta, h0, gate, reset)
    assert_trees_close((o, h), delta_product_ref(q, k, v, beta, h0, SCALE, gate, reset), rtol=1e-10, atol=1e-10)


def _loss(method, reset, w_o, w_h, product=False):
    fn = delta_product if product else delta_rule

    def loss(q, k, v, beta, h0, gate):
        o, h = fn(q, k, v, beta, initial_state=h0, gate=gate, reset=reset, method=method, chunk_size=16)
        return jnp.sum(o * w_o) + jnp.sum(h * w_h)  # through the outputs and the final state
    return loss


@cpu_only
@pytest.mark.parametrize("product", [False, True])
def test_pallas_gradients_match_recurrent_autodiff(x64, rng, product):
    q, k, v, beta, h0, gate, reset = make(rng, T=21, n=2 if product else None)
    w_o, w_h = rng.standard_normal(q.shape[:3] + (16,)), rng.standard_normal(h0.shape)
    args = (q, k, v, beta, h0, gate)
    grads = [jax.jit(jax.grad(_loss(m, reset, w_o, w_h, product), argnums=range(6)))(*args)
             for m in ("pallas", "recurrent")]
    assert_trees_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


@cpu_only
def test_pallas_gradient_matches_finite_differences_of_numpy_loop(x64, rng):
    """Directional derivative along a random direction: ⟨∇L, u⟩ vs (L(x + εu) − L(x − εu)) / 2ε of the loop."""
    q, k, v, beta, h0, gate, reset = make(rng, T=19)
    beta = np.clip(beta, 0.05, 1.95)  # keep β ± ε inside the range (nothing clips, but stay generic)
    w_o, w_h = rng.standard_normal(q.shape[:3] + (16,)), rng.standard_normal(h0.shape)
    args = (q, k, v, beta, h0, gate)
    grads = jax.jit(jax.grad(_loss("pallas", reset, w_o, w_h), argnums=range(6)))(*args)
    dirs = [rng.standard_normal(np.shape(x)) for x in args]

    def np_loss(x):
        o, h = delta_rule_ref(*x[:4], x[4], SCALE, x[5], reset)
        return np.sum(o * w_o) + np.sum(h * w_h)

    eps = 1e-6
    plus = np_loss([x + eps * u for x, u in zip(args, dirs)])
    minus = np_loss([x - eps * u for x, u in zip(args, dirs)])
    fd = (plus - minus) / (2 * eps)
    analytic = sum(float(np.sum(np.asarray(g) * u)) for g, u in zip(grads, dirs))
    assert abs(analytic - fd) <= 1e-6 * max(1.0, abs(fd))


def test_pallas_float32_and_value_blocks(rng):
    """float32 inputs (exact policy), d_v split over two programs (block_v): close to the float64 loop."""
    q, k, v, beta, h0, gate, reset = make(rng, T=40, V=32)
    f32 = [None if x is None else jnp.asarray(x, jnp.float32) for x in (q, k, v, beta, h0, gate)]
    o, h = jax.jit(lambda q, k, v, b, h0, g: pallas_delta_rule(q * SCALE, k, v, b, g, reset, h0, 16,
                                                               block_v=16))(*f32)  # 2 value blocks
    assert o.dtype == jnp.float32 and h.dtype == jnp.float32
    assert_trees_close((o, h), delta_rule_ref(q, k, v, beta, h0, SCALE, gate, reset), rtol=1e-4, atol=1e-4)


def test_pallas_bad_block_v_is_a_config_error(rng):
    q, k, v, beta, h0, _, _ = make(rng, T=8, V=16, gated=False, resets=False)
    with pytest.raises(ConfigError, match="block_v"):
        pallas_delta_rule(q, k, v, beta, None, None, h0, 8, block_v=5)


def _exported_custom_calls(fn, args):
    """Lower `fn` for CUDA on this GPU-less machine. jax >= 0.12 asks which GPU to lower for: an abstract
    H100 (older versions lower for a generic target without asking)."""
    checks = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]

    def lower():
        exported = export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=checks)(*args)
        return set(re.findall(r"custom_call @([\w$.]+)", exported.mlir_module()))

    if not hasattr(jax.sharding, "AbstractDevice"):
        return lower()
    sh = jax.sharding
    h100 = sh.AbstractDevice(device_kind="NVIDIA H100 80GB HBM3", num_cores=132, platform="gpu")
    mesh = sh.AbstractMesh((1,), ("x",), axis_types=(sh.AxisType.Auto,), abstract_device=h100)
    with sh.use_abstract_mesh(mesh):
        return lower()


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@cpu_only
def test_pallas_kernels_lower_to_triton_for_gpu(precision):
    """Cross-platform lowering (no GPU needed): forward, state recomputation and backward kernels all pass
    Pallas' Triton lowering at a DeltaNet shape with gates and resets and a length that is not a power of two."""
    B, T, H, K, V = 1, 192, 2, 64, 128
    s = jax.ShapeDtypeStruct

    def loss(q, k, v, b, g, h0, reset):
        o, h = pallas_delta_rule(q, k, v, b, g, reset, h0, 64, precision=precision, interpret=False)
        return jnp.sum(o) + jnp.sum(h)

    args = (s((B, T, H, K), jnp.float32), s((B, T, H, K), jnp.float32), s((B, T, H, V), jnp.float32),
            s((B, T, H), jnp.float32), s((B, T, H), jnp.float32), s((B, H, K, V), jnp.float32), s((B, T), jnp.bool_))
    assert _exported_custom_calls(jax.grad(loss, argnums=range(6)), args) == {"__gpu$xla.gpu.triton"}
