"""PReLU activations for real or complex feature maps (a complex value's real and imaginary parts separately)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxse.nn.products import is_complex

Array = jnp.ndarray


class PReLU(nn.Module):
    """PReLU with one learned slope ``alpha: float32[]`` (init 0.25), applied to the real and imaginary parts
    separately. ``x: float32[...]`` or ``complex64[...]`` -> same."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        a = self.param("alpha", nn.initializers.constant(0.25), (), jnp.float32)
        f = lambda v: jnp.where(v >= 0, v, a * v)  # noqa: E731
        return lax.complex(f(x.real), f(x.imag)) if is_complex(x.dtype) else f(x)


class ReImPReLU(nn.Module):
    """PReLU with its own slope for the real and the imaginary part (asteroid's ``OnReIm(nn.PReLU)``).

    ``x: complex64[...]`` -> same. Parameter ``alpha: float32[2]`` (real-part slope, imaginary-part slope), init 0.25.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        a = self.param("alpha", nn.initializers.constant(0.25), (2,), jnp.float32)
        return lax.complex(jnp.where(x.real >= 0, x.real, a[0] * x.real),
                           jnp.where(x.imag >= 0, x.imag, a[1] * x.imag))
