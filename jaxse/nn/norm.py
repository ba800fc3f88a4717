"""BatchNorms for complex feature maps ``complex64[..., channels]`` (real ones too): complex and split (re/im)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse.nn.products import is_complex
from jaxse.nn.remat import recompute_in_backward

Array = jnp.ndarray


class ComplexBatchNorm(nn.Module):
    """Complex BatchNorm (Trabelsi et al., 2018): whiten (re, im) with the inverse square root of their 2x2
    covariance, then scale by a learned symmetric 2x2 matrix and shift by a complex bias.

    ``x: complex64[..., channels]`` -> same. Parameters: ``gamma_rr, gamma_ri, gamma_ii`` (float32, the 2x2 matrix),
    ``beta`` (complex64). Running statistics in ``batch_stats``: ``mean`` (complex64), ``var_rr, var_ri, var_ii``.
    Statistics over every axis but the last. ``axis_name``: statistics are averaged across devices with
    ``lax.pmean`` (data-parallel training).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, activation: nn.Module | None = None) -> Array:
        """``activation``: a PReLU module (``jaxse.nn.activation``) applied to the output inside the same backward
        unit, so that the training step keeps only ``x`` for both (not also the normalised map)."""
        c = x.shape[-1]
        gamma_rr = self.param("gamma_rr", nn.initializers.constant(1 / np.sqrt(2)), (c,), jnp.float32)
        gamma_ri = self.param("gamma_ri", nn.initializers.zeros, (c,), jnp.float32)
        gamma_ii = self.param("gamma_ii", nn.initializers.constant(1 / np.sqrt(2)), (c,), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (c,), jnp.complex64)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.complex64))
        ra_rr = self.variable("batch_stats", "var_rr", lambda: jnp.ones((c,), jnp.float32))
        ra_ri = self.variable("batch_stats", "var_ri", lambda: jnp.zeros((c,), jnp.float32))
        ra_ii = self.variable("batch_stats", "var_ii", lambda: jnp.ones((c,), jnp.float32))
        if train:
            moments = recompute_in_backward(_complex_moments)(x)  # keeps x, not its real and imaginary parts
            if self.axis_name is not None and not self.is_initializing():
                moments = lax.pmean(moments, self.axis_name)
            mr, mi, err, eri, eii = moments
            vrr, vri, vii = err - mr * mr, eri - mr * mi, eii - mi * mi
            mean = lax.complex(mr, mi)
            if not self.is_initializing():
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_rr.value = m * ra_rr.value + (1 - m) * vrr
                ra_ri.value = m * ra_ri.value + (1 - m) * vri
                ra_ii.value = m * ra_ii.value + (1 - m) * vii
        else:
            mean, vrr, vri, vii = ra_mean.value, ra_rr.value, ra_ri.value, ra_ii.value
        args = (x, mean, vrr + self.epsilon, vri, vii + self.epsilon, gamma_rr, gamma_ri, gamma_ii, beta)
        return _then(_complex_whiten, args, activation)


def _then(normalise, args, activation):
    """``normalise(*args)``, followed by ``activation``'s function, as one unit that keeps only its inputs."""
    if activation is None:
        return recompute_in_backward(normalise)(*args)
    fn = activation.function
    return recompute_in_backward(lambda *a: fn(normalise(*a[:-1]), a[-1]))(*args, activation.slope())


def _complex_moments(x):
    """``[5, c]``: the means of re, im, re*re, re*im, im*im of ``x: complex64[..., c]`` over all axes but the last."""
    re, im = x.real, x.imag
    ax = tuple(range(x.ndim - 1))
    return jnp.stack([re.mean(ax), im.mean(ax), (re * re).mean(ax), (re * im).mean(ax), (im * im).mean(ax)])


def _split_moments(x):
    """``[2, parts, c]``: mean and mean square of the real and imaginary parts (or of real ``x``) per channel."""
    parts = jnp.stack([x.real, x.imag]) if is_complex(x.dtype) else x[None]
    ax = tuple(range(1, parts.ndim - 1))
    return jnp.stack([parts.mean(ax), (parts * parts).mean(ax)])


def _complex_whiten(x, mean, vrr, vri, vii, gamma_rr, gamma_ri, gamma_ii, beta):
    """``ComplexBatchNorm``'s normalisation of ``x: complex64[..., c]`` (statistics and parameters ``[c]``); the layer
    keeps only its inputs for the backward pass (``jaxse.nn.remat``)."""
    s = jnp.sqrt(vrr * vii - vri * vri)
    t = jnp.sqrt(vrr + vii + 2 * s)
    inv = 1.0 / (s * t)
    wrr, wri, wii = (vii + s) * inv, -vri * inv, (vrr + s) * inv
    cr, ci = x.real - mean.real, x.imag - mean.imag
    xr, xi = wrr * cr + wri * ci, wri * cr + wii * ci
    return lax.complex(gamma_rr * xr + gamma_ri * xi + beta.real, gamma_ri * xr + gamma_ii * xi + beta.imag)


def _split_normalise(x, mean, var, scale, bias, epsilon):
    """``SplitBatchNorm``'s normalisation of ``x`` (``[parts, c]`` statistics and parameters; module docstring)."""
    cplx = is_complex(x.dtype)
    parts = jnp.stack([x.real, x.imag]) if cplx else x[None]
    bshape = (parts.shape[0],) + (1,) * (x.ndim - 1) + (parts.shape[-1],)
    y = (parts - mean.reshape(bshape)) * lax.rsqrt(var.reshape(bshape) + epsilon)
    y = y * scale.reshape(bshape) + bias.reshape(bshape)
    return lax.complex(y[0], y[1]) if cplx else y[0]


class SplitBatchNorm(nn.Module):
    """The "real BN" option: ordinary BatchNorm applied separately to the real and the imaginary parts (what the
    DCCRN authors' default and asteroid use). For real input it is plain BatchNorm.

    ``x: complex64[..., channels]`` or ``float32[..., channels]`` -> same. Parameters
    ``scale: float32[parts, channels]`` and ``bias: float32[parts, channels]`` with parts = 2 for complex input
    (row 0 real, row 1 imaginary) and 1 for real input; running ``mean``/``var`` of the same shape.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, activation: nn.Module | None = None) -> Array:
        """``activation``: as for ``ComplexBatchNorm``."""
        shape = (2 if is_complex(x.dtype) else 1, x.shape[-1])
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        if train:
            moments = recompute_in_backward(_split_moments)(x)
            if self.axis_name is not None and not self.is_initializing():
                moments = lax.pmean(moments, self.axis_name)
            mean, var = moments[0], moments[1] - moments[0] ** 2
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        eps = self.epsilon
        return _then(lambda *a: _split_normalise(*a, eps), (x, mean, var, scale, bias), activation)


def norm_layer(kind: str, axis_name: str | None) -> nn.Module:
    """``complex``: ``ComplexBatchNorm``; ``real``: ``SplitBatchNorm``."""
    if kind == "complex":
        return ComplexBatchNorm(axis_name=axis_name)
    if kind == "real":
        return SplitBatchNorm(axis_name=axis_name)
    raise ValueError(f"unknown norm {kind!r}; valid: complex, real")
