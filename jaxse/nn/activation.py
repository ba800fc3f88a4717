"""PReLU activations for real or complex feature maps (a complex value's real and imaginary parts separately)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxse.nn.products import is_complex
from jaxse.nn.remat import recompute_in_backward

Array = jnp.ndarray


def _prelu(x: Array, a: Array) -> Array:
    """PReLU of ``x`` (real and imaginary parts separately) with slope ``a: []`` or ``a: [2]`` (real, imaginary).
    The layers keep only ``x`` for the backward pass (``jaxse.nn.remat``)."""
    ar, ai = (a, a) if a.ndim == 0 else (a[0], a[1])
    if not is_complex(x.dtype):
        return jnp.where(x >= 0, x, ar * x)
    return lax.complex(jnp.where(x.real >= 0, x.real, ar * x.real), jnp.where(x.imag >= 0, x.imag, ai * x.imag))


class PReLU(nn.Module):
    """PReLU with one learned slope ``alpha: float32[]`` (init 0.25), applied to the real and imaginary parts
    separately. ``x: float32[...]`` or ``complex64[...]`` -> same.

    ``slope()`` and ``function(x, slope)`` let a BatchNorm apply it inside its own backward unit
    (``ComplexBatchNorm(..., activation=prelu)``)."""

    function = staticmethod(_prelu)

    def setup(self):
        self.alpha = self.param("alpha", nn.initializers.constant(0.25), (), jnp.float32)

    def slope(self) -> Array:
        return self.alpha

    def __call__(self, x: Array) -> Array:
        return recompute_in_backward(self.function)(x, self.alpha)


class ReImPReLU(nn.Module):
    """PReLU with its own slope for the real and the imaginary part (asteroid's ``OnReIm(nn.PReLU)``).

    ``x: complex64[...]`` -> same. Parameter ``alpha: float32[2]`` (real-part slope, imaginary-part slope), init 0.25.
    """

    function = staticmethod(_prelu)

    def setup(self):
        self.alpha = self.param("alpha", nn.initializers.constant(0.25), (2,), jnp.float32)

    def slope(self) -> Array:
        return self.alpha

    def __call__(self, x: Array) -> Array:
        return recompute_in_backward(self.function)(x, self.alpha)
