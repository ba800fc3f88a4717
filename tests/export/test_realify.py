"""``lower_for_tflite`` computes the same as the traced function, in real arithmetic without input dilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxse import nn
from jaxse.export.realify import Pair, lower_for_tflite


@pytest.mark.parametrize("stride_f, pad_f, dilate_f", [(1, (4, 5), 2), (1, (2, 3), 2), (2, (2, 2), 1)])
def test_complex_conv_becomes_real_and_undilated(stride_f, pad_f, dilate_f):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((2, 5, 2, 3)) + 1j * rng.standard_normal((2, 5, 2, 3))).astype(np.complex64)
    x_re, x_im = (rng.standard_normal((1, 3, 6, 2)).astype(np.float32) for _ in range(2))

    def f(a, b):
        return nn.conv2d(lax.complex(a, b), jnp.asarray(w), stride_f, pad_f, dilate_f, "native", "xla")

    ref = np.asarray(f(x_re, x_im))
    lowered = lower_for_tflite(f, x_re, x_im)
    (y,) = lowered(x_re, x_im)
    assert isinstance(y, Pair)
    np.testing.assert_allclose(np.asarray(y.re) + 1j * np.asarray(y.im), ref, rtol=1e-5, atol=1e-4)

    def real_out(a, b):
        z = lowered(a, b)[0]
        return z.re, z.im

    eqns = jax.make_jaxpr(real_out)(x_re, x_im).jaxpr.eqns
    assert all(not jnp.issubdtype(v.aval.dtype, jnp.complexfloating) for e in eqns for v in e.outvars)
    dilated = [e for e in eqns if e.primitive.name == "conv_general_dilated" and max(e.params["lhs_dilation"]) > 1]
    assert not dilated
