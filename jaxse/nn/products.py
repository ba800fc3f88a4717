"""Complex products: initialisers, the one complex decomposition (``impl``) and the complex ``Dense`` layer.

``complex_parts`` is the single place where a complex product is split into real products; the convolutions
(``jaxse.nn.conv``) and ``Dense`` both go through it. The three ``impl`` values are described in ``jaxse.nn``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jnp.ndarray
#: Lowerings of a complex product (``jaxse.nn`` docstring).
IMPLS = ("native", "gauss", "real")


def variance_init(fan_in_axes: Sequence[int], scale: float = 1.0) -> Callable:
    """Normal init with variance ``scale / fan_in``; complex dtypes split it equally between real and imag."""

    def init(key, shape, dtype=jnp.float32):
        fan_in = int(np.prod([shape[a] for a in fan_in_axes]))
        std = np.sqrt(scale / fan_in)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            kr, ki = jax.random.split(key)
            part = jnp.float32(std / np.sqrt(2.0))
            return (jax.random.normal(kr, shape) * part + 1j * jax.random.normal(ki, shape) * part).astype(dtype)
        return (jax.random.normal(key, shape) * std).astype(dtype)

    return init


def is_complex(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.complexfloating)


def complex_parts(x: Array, w: Array, impl: str):
    """Split the product of ``x`` (channels last) and ``w`` (``[..., c_in, c_out]``) into real products.

    Returns ``(inputs, weights, combine)``: the product is ``combine([op(a, b) for a, b in zip(inputs, weights)])``
    for any bilinear ``op`` that contracts the last axis of ``a`` with the second-to-last axis of ``b`` (a matmul or
    a channels-last convolution). Real operands give themselves; ``native`` gives the complex64 operands.
    """
    if not (is_complex(x.dtype) or is_complex(w.dtype)):
        return [x], [w], lambda ys: ys[0]
    x = x.astype(jnp.complex64)
    w = w.astype(jnp.complex64)
    if impl == "native":
        return [x], [w], lambda ys: ys[0]
    a, b, c, d = x.real, x.imag, w.real, w.imag
    if impl == "gauss":  # k1 = (a+b) c, k2 = a (d-c), k3 = b (c+d); re = k1 - k3, im = k1 + k2
        return [a + b, a, b], [c, d - c, c + d], lambda ys: lax.complex(ys[0] - ys[2], ys[0] + ys[1])
    if impl == "real":  # [a, b] times the block kernel [[c, d], [-d, c]]
        n = w.shape[-1]
        return ([jnp.concatenate([a, b], -1)],
                [jnp.concatenate([jnp.concatenate([c, d], -1), jnp.concatenate([-d, c], -1)], -2)],
                lambda ys: lax.complex(ys[0][..., :n], ys[0][..., n:]))
    raise ValueError(f"unknown complex lowering impl={impl!r}; valid: {', '.join(IMPLS)}")


def compute_cast(xs: Sequence[Array], ws: Sequence[Array], compute_dtype) -> tuple[list, list]:
    """The real operands of a product in ``compute_dtype`` (e.g. ``"bfloat16"``; None: unchanged). Products of
    cast operands accumulate in float32 (``preferred_element_type``); complex (``native``) operands stay complex."""
    if compute_dtype is None:
        return list(xs), list(ws)
    cast = lambda a: a if is_complex(a.dtype) else a.astype(compute_dtype)  # noqa: E731
    return [cast(a) for a in xs], [cast(b) for b in ws]


def accumulate_dtype(a: Array):
    """Result dtype of a product of ``a`` (float32 for any real compute dtype; complex stays complex64)."""
    return jnp.complex64 if is_complex(a.dtype) else jnp.float32


def complex_bilinear(op: Callable[[Array, Array], Array], x: Array, w: Array, impl: str,
                     compute_dtype=None) -> Array:
    """``op(x, w)`` for a bilinear real ``op`` (contracting as in ``complex_parts``), complex products per ``impl``,
    real products on operands in ``compute_dtype`` (``compute_cast``; ``op`` must accumulate in float32)."""
    xs, ws, combine = complex_parts(x, w, impl)
    xs, ws = compute_cast(xs, ws, compute_dtype)
    return combine([op(a, b) for a, b in zip(xs, ws)])


class Dense(nn.Module):
    """Dense layer ``[..., features_in] -> [..., features]``, real or complex (``dtype``; params and output).

    ``impl``: complex product lowering (``jaxse.nn``). Parameters ``kernel [features_in, features]``, ``bias``.
    """

    features: int
    dtype: Any = jnp.float32
    impl: str = "gauss"
    compute_dtype: Any = None  # dtype of the real products' operands (``jaxse.nn``: mixed precision); None: dtype

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.param("kernel", variance_init((0,)), (x.shape[-1], self.features), self.dtype)
        b = self.param("bias", nn.initializers.zeros, (self.features,), self.dtype)
        mm = lambda a, w: jnp.matmul(a, w, precision=lax.Precision.HIGHEST,  # noqa: E731
                                     preferred_element_type=accumulate_dtype(a))
        return (complex_bilinear(mm, x, k, self.impl, self.compute_dtype) + b).astype(self.dtype)
