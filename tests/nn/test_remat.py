"""``recompute_in_backward`` keeps values and gradients; the complex layers built on it stay exact."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxse.nn.remat import recompute_in_backward


def _f(x, w, a):
    h = jnp.tanh(x @ w) * a
    return jnp.where(h > 0, h, 0.3 * h), jnp.sum(h ** 2)


def test_values_and_gradients_unchanged():
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.standard_normal((5, 4)), jnp.float32), jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    a = jnp.float32(0.7)
    g = recompute_in_backward(_f)
    for got, ref in zip(g(x, w, a), _f(x, w, a)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))

    def loss(fn):
        return lambda x, w, a: jnp.sum(fn(x, w, a)[0] ** 3) + fn(x, w, a)[1]

    got = jax.jit(jax.grad(loss(g), (0, 1, 2)))(x, w, a)
    ref = jax.grad(loss(_f), (0, 1, 2))(x, w, a)
    for gg, rr in zip(got, ref):
        np.testing.assert_allclose(np.asarray(gg), np.asarray(rr), rtol=1e-5, atol=1e-6)


def test_complex_inputs():
    z = jnp.asarray([1 + 2j, -0.5 + 0.1j, 0.3 - 1j], jnp.complex64)
    fn = lambda z, s: jnp.sum(jnp.abs(z * s) ** 2 + (z * s).real)  # noqa: E731
    s = jnp.complex64(0.5 - 0.25j)
    got = jax.grad(recompute_in_backward(fn), (0, 1))(z, s)
    ref = jax.grad(fn, (0, 1))(z, s)
    for gg, rr in zip(got, ref):
        assert gg.dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(gg), np.asarray(rr), rtol=1e-6)
