"""delta_rule / delta_product against a float64 NumPy per-token loop, gradients, and invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssm import delta_product, delta_rule
from ssm.ops.reference import delta_product_ref as np_delta_product, delta_rule_ref as np_delta_rule
from tests.utils import assert_trees_close


def make(rng, B=2, T=37, H=2, K=8, V=4, n=None, beta_max=2.0):
    lead = (B, T) if n is None else (B, T, n)
    q = rng.standard_normal((B, T, H, K))
    k = rng.standard_normal(lead + (H, K))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    v = rng.standard_normal(lead + (H, V))
    beta = rng.uniform(0.0, beta_max, lead + (H,))
    h0 = rng.standard_normal((B, H, K, V))
    return q, k, v, beta, h0


def run(fn, *args, **kw):
    return jax.jit(lambda *a: fn(*a, **kw))(*args)


@pytest.mark.parametrize("T", [1, 63, 100, 257])
def test_recurrent_matches_numpy(x64, rng, T):
    q, k, v, beta, h0 = make(rng, T=T)
    o, h = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], method="recurrent"), q, k, v, beta, h0)
    o_ref, h_ref = np_delta_rule(q, k, v, beta, h0, 8 ** -0.5)
    assert_trees_close((o, h), (o_ref, h_ref), rtol=1e-10, atol=1e-10)


FAST_GRID = [(1, 16), (63, 16), (100, 32), (257, 64), (63, 64)]
GRID = FAST_GRID + [pytest.param(T, c, marks=pytest.mark.slow) for T in (1, 63, 100, 257) for c in (16, 32, 64)
                    if (T, c) not in FAST_GRID]


@pytest.mark.parametrize("T, chunk", GRID)
def test_chunk_matches_numpy(x64, rng, T, chunk):
    q, k, v, beta, h0 = make(rng, T=T)
    o, h = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], method="chunk", chunk_size=chunk), q, k, v, beta, h0)
    o_ref, h_ref = np_delta_rule(q, k, v, beta, h0, 8 ** -0.5)
    assert_trees_close((o, h), (o_ref, h_ref), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_float32_close_to_float64_reference(rng, method):
    q, k, v, beta, h0 = make(rng, T=100)
    args = [jnp.asarray(x, jnp.float32) for x in (q, k, v, beta, h0)]
    o, h = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], method=method, chunk_size=32), *args)
    assert o.dtype == jnp.float32 and h.dtype == jnp.float32
    o_ref, h_ref = np_delta_rule(q, k, v, beta, h0, 8 ** -0.5)
    assert_trees_close((o, h), (o_ref, h_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk_scan", ["sequential", "associative"])
@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_gate_reset_and_scale_match_numpy(x64, rng, method, chunk_scan):
    q, k, v, beta, h0 = make(rng, T=45)
    gate = -rng.uniform(0.0, 0.5, beta.shape)
    reset = rng.uniform(size=beta.shape[:2]) < 0.1
    reset[:, 16] = True  # a reset exactly on a chunk boundary
    o, h = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], gate=a[5], reset=a[6], scale=0.7, method=method,
                                     chunk_size=16, chunk_scan=chunk_scan), q, k, v, beta, h0, gate, reset)
    o_ref, h_ref = np_delta_rule(q, k, v, beta, h0, 0.7, gate, reset)
    assert_trees_close((o, h), (o_ref, h_ref), rtol=1e-9, atol=1e-9)


PRODUCT_GRID = [(n, g, "chunk") for n in (1, 2, 3) for g in (False, True)] + [(2, True, "recurrent")] + [
    pytest.param(n, g, "recurrent", marks=pytest.mark.slow) for n in (1, 2, 3) for g in (False, True)
    if (n, g) != (2, True)]


@pytest.mark.parametrize("n, gated, method", PRODUCT_GRID)
def test_delta_product_matches_numpy(x64, rng, n, gated, method):
    q, k, v, beta, h0 = make(rng, T=29, n=n)
    gate = -rng.uniform(0.0, 0.5, (2, 29, 2)) if gated else None
    o, h = run(lambda *a: delta_product(*a[:4], initial_state=a[4], gate=a[5], method=method, chunk_size=16),
               q, k, v, beta, h0, gate)
    o_ref, h_ref = np_delta_product(q, k, v, beta, h0, 8 ** -0.5, gate)
    assert_trees_close((o, h), (o_ref, h_ref), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", [2, 3])
def test_delta_product_is_delta_rule_on_interleaved_sequence(x64, rng, n):
    B, T, H, K = 2, 21, 2, 8
    q, k, v, beta, h0 = make(rng, B=B, T=T, H=H, K=K, n=n)
    o, h = run(lambda *a: delta_product(*a[:4], initial_state=a[4], method="chunk", chunk_size=16), q, k, v, beta,
               h0)
    q_long = np.zeros((B, T, n, H, K))
    q_long[:, :, -1] = q  # queries only at every n-th (last) step of a token
    o_long, h_long = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], method="recurrent"),
                         q_long.reshape(B, T * n, H, K), k.reshape(B, T * n, H, K), v.reshape(B, T * n, H, -1),
                         beta.reshape(B, T * n, H), h0)
    assert_trees_close((o, h), (np.asarray(o_long).reshape(B, T, n, H, -1)[:, :, -1], h_long), rtol=1e-10,
                       atol=1e-10)


def test_delta_product_n1_equals_delta_rule(x64, rng):
    q, k, v, beta, h0 = make(rng, T=30)
    a = run(lambda *x: delta_product(x[0], x[1][:, :, None], x[2][:, :, None], x[3][:, :, None],
                                     initial_state=x[4]), q, k, v, beta, h0)
    b = run(lambda *x: delta_rule(*x[:4], initial_state=x[4]), q, k, v, beta, h0)
    assert_trees_close(a, b, rtol=1e-12, atol=1e-12)


def _loss(method, chunk_scan="sequential", product=False):
    def loss(q, k, v, beta, h0, gate, w_o, w_h):
        fn = delta_product if product else delta_rule
        o, h = fn(q, k, v, beta, initial_state=h0, gate=gate, method=method, chunk_size=8, chunk_scan=chunk_scan)
        return jnp.sum(o * w_o) + jnp.sum(h * w_h)  # through the outputs and the final state
    return loss


@pytest.mark.parametrize("chunk_scan, gated", [
    ("sequential", True), ("associative", False),
    pytest.param("sequential", False, marks=pytest.mark.slow), pytest.param("associative", True, marks=pytest.mark.slow)])
def test_chunk_gradients_match_recurrent(x64, rng, chunk_scan, gated):
    q, k, v, beta, h0 = make(rng, T=29)
    gate = -rng.uniform(0.0, 0.5, beta.shape) if gated else None
    w_o, w_h = rng.standard_normal(v.shape), rng.standard_normal(h0.shape)
    argnums = (0, 1, 2, 3, 4, 5) if gated else (0, 1, 2, 3, 4)
    g_chunk = jax.jit(jax.grad(_loss("chunk", chunk_scan), argnums))(q, k, v, beta, h0, gate, w_o, w_h)
    g_rec = jax.jit(jax.grad(_loss("recurrent"), argnums))(q, k, v, beta, h0, gate, w_o, w_h)
    assert_trees_close(g_chunk, g_rec, rtol=1e-9, atol=1e-9)


def test_delta_product_gradients_match_recurrent(x64, rng):
    q, k, v, beta, h0 = make(rng, T=13, n=2)
    gate = -rng.uniform(0.0, 0.5, (2, 13, 2))
    w_o, w_h = rng.standard_normal((2, 13, 2, 4)), rng.standard_normal(h0.shape)
    grad = lambda m: jax.jit(jax.grad(_loss(m, product=True), range(6)))(q, k, v, beta, h0, gate, w_o, w_h)  # noqa
    assert_trees_close(grad("chunk"), grad("recurrent"), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_gradients_numerically(x64, rng, method):
    q, k, v, beta, h0 = make(rng, B=1, T=11, H=1, K=4, V=3)
    w_o, w_h = rng.standard_normal(v.shape), rng.standard_normal(h0.shape)
    gate = -rng.uniform(0.0, 0.5, beta.shape)
    f = jax.jit(lambda q, k, v, beta, h0, gate: _loss(method)(q, k, v, beta, h0, gate, w_o, w_h))
    check_grads(f, (q, k, v, beta, h0, gate), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_recurrent_product_gradients_numerically_with_gate_and_reset(x64, rng):
    """The recurrent method's hand-written backward (ssm/ops/delta_recurrent.py) on its every branch: n = 2
    steps per token, a gate and resets (the decay), an initial state; against finite differences."""
    q, k, v, beta, h0 = make(rng, B=2, T=7, H=1, K=3, V=2, n=2)
    gate = -rng.uniform(0.0, 0.5, (2, 7, 1))
    reset = np.zeros((2, 7), bool)
    reset[0, 3] = reset[1, 5] = True
    w_o, w_h = rng.standard_normal((2, 7, 1, 2)), rng.standard_normal(h0.shape)

    def f(q, k, v, beta, h0, gate):
        o, h = delta_product(q, k, v, beta, initial_state=h0, gate=gate, reset=reset, method="recurrent")
        return jnp.sum(o * w_o) + jnp.sum(h * w_h)

    check_grads(jax.jit(f), (q, k, v, beta, h0, gate), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_householder_with_beta_2_preserves_state_norm(x64, rng, method):
    """β = 2 and unit keys: each factor I − 2kkᵀ is orthogonal, so with v = 0 ‖h‖_F never changes."""
    q, k, v, _, h0 = make(rng, T=40)
    beta = np.full(k.shape[:3], 2.0)
    _, h = run(lambda *a: delta_rule(*a[:4], initial_state=a[4], method=method, chunk_size=16), q, k, 0 * v,
               beta, h0)
    np.testing.assert_allclose(np.linalg.norm(h, axis=(-2, -1)), np.linalg.norm(h0, axis=(-2, -1)), rtol=1e-10)
    assert not np.allclose(h, h0)  # the state did rotate


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_causality(rng, method):
    q, k, v, beta, _ = make(rng, T=50)
    o = run(lambda *a: delta_rule(*a, method=method, chunk_size=16)[0], q, k, v, beta)
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    q2[:, 20:] += 1.0
    k2[:, 20:] = -k2[:, 20:]
    v2[:, 20:] += 3.0
    o2 = run(lambda *a: delta_rule(*a, method=method, chunk_size=16)[0], q2, k2, v2, beta)
    np.testing.assert_allclose(o2[:, :20], o[:, :20], rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(o2[:, 20:]) - np.asarray(o[:, 20:])).max() > 1e-2


@pytest.mark.parametrize("method", ["recurrent", "chunk"])
def test_bfloat16_inputs_keep_state_in_float32(rng, method):
    q, k, v, beta, h0 = make(rng, T=40)
    args = [jnp.asarray(x, jnp.bfloat16) for x in (q, k, v, beta)]
    o, h = run(lambda *a: delta_rule(*a, method=method, chunk_size=16), *args)
    assert o.dtype == jnp.bfloat16 and h.dtype == jnp.float32
    o_ref, h_ref = np_delta_rule(*[np.asarray(a, np.float64) for a in args], np.zeros_like(h0), 8 ** -0.5)
    np.testing.assert_allclose(np.asarray(h), h_ref, rtol=1e-4, atol=1e-4)  # exact up to f32 on bf16 inputs
    np.testing.assert_allclose(np.asarray(o, np.float32), o_ref, rtol=2e-2, atol=2e-2)  # bf16 output rounding


def test_zero_length_sequence(rng):
    q, k, v, beta, h0 = make(rng, T=0)
    o, h = delta_rule(q, k, v, beta, initial_state=h0)
    assert o.shape == (2, 0, 2, 4)
    np.testing.assert_allclose(h, h0.astype(np.float32))


def test_bad_inputs_raise_clear_errors(rng):
    q, k, v, beta, h0 = make(rng, T=5)
    with pytest.raises(ValueError, match=r"k: expected shape"):
        delta_rule(q, k[..., :3], v, beta)
    with pytest.raises(ValueError, match=r"beta: expected shape"):
        delta_rule(q, k, v, beta[:, :, :1])
    with pytest.raises(ValueError, match=r"q: expected a 4-D array"):
        delta_rule(q[0], k, v, beta)
    with pytest.raises(ValueError, match=r"initial_state: expected shape"):
        delta_rule(q, k, v, beta, initial_state=h0[..., :2])
    with pytest.raises(ValueError, match=r"method: expected one of"):
        delta_rule(q, k, v, beta, method="fast")
    with pytest.raises(ValueError, match=r"chunk_size: expected a positive integer"):
        delta_rule(q, k, v, beta, chunk_size=0)
    with pytest.raises(ValueError, match=r"chunk_scan: expected one of"):
        delta_rule(q, k, v, beta, chunk_scan="tree")
    with pytest.raises(ValueError, match=r"reset: expected a bool array"):
        delta_rule(q, k, v, beta, reset=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"k: expected a 5-D array"):
        delta_product(q, k, v, beta)
    with pytest.raises(ValueError, match=r"gate: expected shape"):
        delta_product(q, k[:, :, None], v[:, :, None], beta[:, :, None], gate=beta[:, :, :1])


@pytest.mark.parametrize("method", ["sequential", "associative"])
def test_affine_scan_readout_equals_reading_the_stacked_states(x64, rng, method):
    """The core's `readout` hook (used by the recurrent method) reads each state inside the scan."""
    from ssm.ops.scan import affine_scan

    a, b, c = rng.uniform(0.5, 1.0, (9, 3)), rng.standard_normal((9, 3)), rng.standard_normal((9, 3))
    apply = lambda e, h: e[0] * h + e[1]  # noqa: E731
    combine = lambda x, y: (y[0] * x[0], y[0] * x[1] + y[1], y[2])  # noqa: E731
    hs, h_final = affine_scan(apply, combine, (a, b, c), np.ones(3), method=method)
    outs, h_final2 = affine_scan(apply, combine, (a, b, c), np.ones(3), method=method,
                                 readout=lambda e, h: e[2] * h)
    h, ref = np.ones(3), []
    for t in range(9):
        h = a[t] * h + b[t]
        ref.append(c[t] * h)
    assert_trees_close((outs, h_final2, hs[-1]), (np.stack(ref), h, h_final), rtol=1e-12, atol=1e-12)
