"""Every lowering of Conv2D's convolution (XLA convolution, patches-times-weights matmuls with or without the
time-shift form) and of the complex product (native, gauss, real) gives the same result and the same gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import layers
from jaxse.models import get_model

# (x shape, kernel shape, stride_f, pad_f, dilate_f): DCCRN encoder/decoder, CRN encoder/decoder, odd geometries.
CASES = [
    ((2, 5, 16, 1), (2, 5, 1, 4), 2, (2, 2), 1),
    ((2, 5, 9, 3), (2, 3, 3, 4), 2, (0, 0), 1),
    ((2, 6, 4, 6), (2, 5, 6, 3), 1, (2, 3), 2),
    ((1, 4, 7, 2), (2, 5, 2, 3), 1, (4, 5), 2),
    ((1, 4, 4, 2), (2, 3, 2, 3), 1, (2, 2), 2),
    ((1, 4, 9, 2), (2, 3, 2, 3), 1, (2, 3), 2),
    ((1, 3, 5, 2), (1, 4, 2, 2), 1, (1, 0), 3),
]


def _rand(rng, shape, cplx):
    a = rng.standard_normal(shape).astype(np.float32)
    if cplx:
        a = a + 1j * rng.standard_normal(shape).astype(np.float32)
    return jnp.asarray(a)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_conv_lowerings_agree(case, cplx):
    rng = np.random.default_rng(0)
    xs, ws, s, p, d = case
    x, w = _rand(rng, xs, cplx), _rand(rng, ws, cplx)
    ref = layers.conv2d(x, w, s, p, d, "native", "xla")
    for impl in layers.IMPLS:
        for shift in (True, False):
            y = layers.conv_matmul(x, w, s, p, d, impl, time_shift=shift)
            assert y.shape == ref.shape and y.dtype == ref.dtype
            np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(np.asarray(layers.conv2d(x, w, s, p, d, impl, "xla")), np.asarray(ref),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[0], CASES[2]])
def test_conv_lowering_gradients_agree(case):
    rng = np.random.default_rng(1)
    xs, ws, s, p, d = case
    x, w = _rand(rng, xs, True), _rand(rng, ws, True)

    def loss(x, w, impl, lowering):
        y = layers.conv2d(x, w, s, p, d, impl, lowering)
        return jnp.sum(y.real ** 2 + 0.5 * y.imag)

    ref = jax.grad(loss, (0, 1))(x, w, "native", "xla")
    for impl in layers.IMPLS:
        got = jax.grad(loss, (0, 1))(x, w, impl, "matmul")
        for g, r in zip(got, ref):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-3)


def test_unknown_lowering():
    x = jnp.zeros((1, 2, 4, 1))
    with pytest.raises(ValueError, match="conv lowering"):
        layers.conv2d(x, jnp.zeros((2, 3, 1, 1)), lowering="fft")


@pytest.mark.parametrize("name", ["dccrn-cl-tiny", "crn-tiny"])
def test_models_same_under_every_lowering(name, monkeypatch):
    x = jnp.asarray(0.1 * np.random.default_rng(2).standard_normal((2, 1200)), jnp.float32)
    model = get_model(name)
    variables = model.init(jax.random.PRNGKey(0), x)
    outs = {}
    for lowering in layers.CONV_LOWERINGS:
        monkeypatch.setattr(layers, "DEFAULT_CONV_LOWERING", lowering)
        outs[lowering] = np.asarray(model.apply(variables, x, train=True, mutable=["batch_stats"])[0])
    np.testing.assert_allclose(outs["matmul"], outs["xla"], rtol=1e-4, atol=1e-5)
