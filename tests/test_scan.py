"""The scan core against float64 NumPy loops: values, gradients, edge cases, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssm import affine_scan, linear_recurrence
from ssm.ops.reference import linear_recurrence_ref as reference

METHODS = ["sequential", "associative", "chunked"]


def loop_jax(a, b, h0, reverse, reset):
    """The same loop in JAX (for jax.vjp reference gradients)."""
    T = b.shape[1]
    h, outs = h0, [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        at = a[:, t] if a.ndim == b.ndim else a
        if reset is not None:
            h = jnp.where(reset[:, t].reshape((-1,) + (1,) * (b.ndim - 2)), 0, h)
        h = at * h + b[:, t]
        outs[t] = h
    return jnp.stack(outs, 1)


def random_problem(rng, B, T, feat, complex_, time_varying, with_h0, with_reset):
    shape = (B, T) + feat
    a_shape = shape if time_varying else feat
    a = rng.uniform(0.6, 1.0, a_shape)
    b = rng.normal(size=shape)
    h0 = rng.normal(size=(B,) + feat) if with_h0 else None
    if complex_:
        a = a * np.exp(1j * rng.uniform(-1, 1, a_shape))
        b = b + 1j * rng.normal(size=shape)
        h0 = None if h0 is None else h0 + 1j * rng.normal(size=h0.shape)
    reset = rng.uniform(size=(B, T)) < 0.15 if with_reset else None
    return a, b, h0, reset


def _cases(method_combos, heavy_default):
    """(method, *combo) params; the associative scan (10-15 s to compile per case on CPU) runs its
    `heavy_default` combos by default and the others under -m slow."""
    return [pytest.param(m, *c, marks=pytest.mark.slow if m == "associative" and c not in heavy_default else ())
            for m in METHODS for c in method_combos]


ALL_COMBOS = [(c, t, r) for c in (False, True) for t in (False, True) for r in (False, True)]


@pytest.mark.parametrize("method, complex_, time_varying, reverse",
                         _cases(ALL_COMBOS, [(False, False, False), (True, True, True)]))
def test_values_match_float64_loop(rng, method, complex_, time_varying, reverse):
    a, b, h0, reset = random_problem(rng, 3, 77, (5,), complex_, time_varying, True, True)
    for r in (None, reset):
        want = reference(a, b, h0, reverse, r)
        dt = np.complex64 if complex_ else np.float32
        h = linear_recurrence(jnp.asarray(a, dt), jnp.asarray(b, dt), jnp.asarray(h0, dt), reverse=reverse,
                              reset=r, method=method)
        assert h.dtype == dt
        np.testing.assert_allclose(np.asarray(h), want if complex_ else want.real, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method", METHODS)
def test_multi_feature_dims_and_broadcast_a(rng, method):
    """b (B, T, H, N) with a time-invariant a of shape (N,) broadcast over H; T not a chunk multiple."""
    a = rng.uniform(0.5, 1.0, (4,)) * np.exp(1j * rng.uniform(-1, 1, (4,)))
    b = rng.normal(size=(2, 131, 3, 4)) + 1j * rng.normal(size=(2, 131, 3, 4))
    h = linear_recurrence(jnp.asarray(a, jnp.complex64), jnp.asarray(b, jnp.complex64), method=method)
    np.testing.assert_allclose(np.asarray(h), reference(a, b), rtol=2e-5, atol=2e-5)


def test_real_a_complex_b_promotes(rng):
    a = rng.uniform(0.5, 1.0, (2, 9, 3)).astype(np.float32)
    b = (rng.normal(size=(2, 9, 3)) + 1j * rng.normal(size=(2, 9, 3))).astype(np.complex64)
    h = linear_recurrence(a, b)
    assert h.dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(h), reference(a, b), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method, complex_, time_varying, reverse",
                         _cases([(False, False, False), (False, True, True), (True, False, True), (True, True, False)],
                                [(True, True, False)]))
def test_gradients_match_autodiff_of_loop(x64, rng, method, complex_, time_varying, reverse):
    """VJP w.r.t. a, b, h0 equals jax.vjp of a plain loop (float64; unconjugated complex convention)."""
    a, b, h0, reset = random_problem(rng, 2, 13, (3,), complex_, time_varying, True, True)
    a, b, h0 = map(jnp.asarray, (a, b, h0))
    for r in (None, reset):
        ours, vjp_ours = jax.vjp(lambda *x: linear_recurrence(*x, reverse=reverse, reset=r, method=method),
                                 a, b, h0)
        ref, vjp_ref = jax.vjp(lambda *x: loop_jax(*x, reverse, r), a, b, h0)
        g = jnp.asarray(rng.normal(size=ours.shape) + (1j * rng.normal(size=ours.shape) if complex_ else 0))
        for got, want in zip(vjp_ours(g.astype(ours.dtype)), vjp_ref(g.astype(ref.dtype))):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_check_grads(x64, rng, method):
    """Numerical (finite-difference) gradient check in float64, forward and reverse mode order 1."""
    a, b, h0, reset = random_problem(rng, 2, 7, (2,), True, True, True, True)
    f = lambda a, b, h0: linear_recurrence(a, b, h0, reset=reset, method=method)  # noqa: E731
    check_grads(f, (jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0)), order=1, modes=["rev"])
    a_inv = jnp.asarray(rng.uniform(0.5, 0.9, (2,)))
    g = lambda a, b: linear_recurrence(a, b, reverse=True, method=method)  # noqa: E731
    check_grads(g, (a_inv, jnp.asarray(b.real)), order=1, modes=["rev"])


def test_grad_of_real_a_with_complex_b_is_real(x64, rng):
    a = jnp.asarray(rng.uniform(0.5, 0.9, (3,)))
    b = jnp.asarray(rng.normal(size=(2, 8, 3)) + 1j * rng.normal(size=(2, 8, 3)))
    loss = lambda a: jnp.sum(jnp.abs(linear_recurrence(a, b)) ** 2)  # noqa: E731
    loss_ref = lambda a: jnp.sum(jnp.abs(loop_jax(a, b, jnp.zeros((2, 3), b.dtype), False, None)) ** 2)  # noqa
    got, want = jax.grad(loss)(a), jax.grad(loss_ref)(a)
    assert got.dtype == a.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)


# Relative error against a float64 loop on the same (float32-rounded) inputs. The associative scan composes
# products of a through log2(T) levels of a parallel prefix, so its rounding grows faster than the others'.
LONG_TOLERANCE = {"sequential": 2e-5, "chunked": 1e-4, "associative": 5e-4}


@pytest.mark.parametrize("method", ["sequential", "chunked",
                                    pytest.param("associative", marks=pytest.mark.slow)])
def test_long_sequence_float32_stays_accurate(rng, method):
    """T = 65536 with |a| = 1 − 1e-4 (slow decay): finite and close to a float64 loop."""
    T, N = 65536, 4
    a = ((1 - 1e-4) * np.exp(1j * np.linspace(0.001, 3.0, N))).astype(np.complex64)
    b = (rng.normal(size=(1, T, N)) + 1j * rng.normal(size=(1, T, N))).astype(np.complex64)
    h = np.asarray(linear_recurrence(a, b, method=method))
    want = reference(a.astype(np.complex128), b)
    assert np.isfinite(h).all()
    assert np.abs(h - want).max() / np.abs(want).max() < LONG_TOLERANCE[method]


def test_reset_zeroes_carried_state():
    """With reset at t the output at t is exactly b_t, whatever came before."""
    b = jnp.ones((1, 6, 1))
    reset = jnp.array([[False, False, False, True, False, False]])
    h = linear_recurrence(jnp.array([1.0]), b, jnp.full((1, 1), 10.0), reset=reset)
    np.testing.assert_array_equal(np.asarray(h[0, :, 0]), [11, 12, 13, 1, 2, 3])


def test_auto_is_sequential_on_cpu_associative_elsewhere_and_jit_works(rng):
    from ssm.ops.scan import auto_method

    assert auto_method() == ("sequential" if jax.default_backend() == "cpu" else "associative")
    a, b, _, _ = random_problem(rng, 2, 10, (3,), False, False, False, False)
    h = jax.jit(lambda a, b: linear_recurrence(a, b))(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    np.testing.assert_allclose(np.asarray(h), reference(a, b).real, rtol=1e-5, atol=1e-5)


def test_length_one_and_zero():
    h = linear_recurrence(jnp.array([0.5]), jnp.ones((2, 1, 1)), jnp.ones((2, 1)))
    np.testing.assert_allclose(np.asarray(h), 1.5)
    assert linear_recurrence(jnp.array([0.5]), jnp.ones((2, 0, 1))).shape == (2, 0, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(a=np.ones(3), b=np.ones((2, 4, 3)), method="fast"), "method"),
        (dict(a=np.ones(5), b=np.ones((2, 4, 3))), "a: expected shape"),
        (dict(a=np.ones((2, 5, 3)), b=np.ones((2, 4, 3))), "a: expected shape"),
        (dict(a=np.ones(3), b=np.ones((2, 4, 3)), h0=np.ones((3,))), "h0: expected shape"),
        (dict(a=np.ones(3), b=np.ones((2, 4, 3)), reset=np.ones((2, 5), bool)), "reset: expected shape"),
        (dict(a=np.ones(3), b=np.ones(3)), "b: expected"),
        (dict(a=np.ones(3), b=np.ones((2, 4, 3), np.int32)), "b: expected a floating"),
    ],
)
def test_bad_input_gives_one_line_error(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        linear_recurrence(**kwargs)
    assert "\n" not in str(e.value)


# ---- the generic element/combine machinery (matrix-valued states, as the delta rule uses) ----------


def _matrix_elements(rng, T, d, e):
    P = 0.5 * rng.normal(size=(T, d, d)) / np.sqrt(d)
    H = rng.normal(size=(T, d, e))
    return P, H


def _mm(x, y):  # full float32 matmul (GPUs default to TF32)
    return jnp.einsum("...ij,...jk->...ik", x, y, precision=jax.lax.Precision.HIGHEST)


def _apply(el, h):
    P, H = el
    return _mm(P, h) + H


def _combine(earlier, later):
    (P1, H1), (P2, H2) = earlier, later
    return _mm(P2, P1), _mm(P2, H1) + H2


@pytest.mark.parametrize("method", ["sequential", "associative"])
@pytest.mark.parametrize("reverse", [False, True])
def test_affine_scan_matrix_elements(rng, method, reverse):
    T, d, e = 13, 4, 3
    P, H = _matrix_elements(rng, T, d, e)
    h0 = rng.normal(size=(d, e))
    want, h = np.zeros((T, d, e)), h0.copy()
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h = P[t] @ h + H[t]
        want[t] = h
    hs, h_final = affine_scan(_apply, _combine, (jnp.asarray(P, jnp.float32), jnp.asarray(H, jnp.float32)),
                              jnp.asarray(h0, jnp.float32), method=method, reverse=reverse)
    np.testing.assert_allclose(np.asarray(hs), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(h_final), want[0] if reverse else want[-1], rtol=1e-4, atol=1e-4)


def test_affine_scan_diagonal_equals_linear_recurrence(rng):
    """The generic machinery with the diagonal element reproduces linear_recurrence (time-major)."""
    a, b, h0, _ = random_problem(rng, 1, 40, (3,), True, True, True, False)
    a32, b32, h032 = (jnp.asarray(x, jnp.complex64) for x in (a, b, h0))
    want = linear_recurrence(a32, b32, h032)
    for method in ("sequential", "associative"):
        hs, _ = affine_scan(lambda e, h: e[0] * h + e[1], lambda x, y: (y[0] * x[0], y[0] * x[1] + y[1]),
                            (a32[0], b32[0]), h032[0], method=method)
        np.testing.assert_allclose(np.asarray(hs), np.asarray(want[0]), rtol=1e-5, atol=1e-5)
