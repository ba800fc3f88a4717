"""Dilated causal convolutions over time and the residual TCN stack built from them, real or complex.

Sequences are ``[batch, time, channels]`` (channels last, like every layer of ``jaxse.nn``). A causal convolution
with kernel size ``k`` and dilation ``d`` computes

    y[t] = b + sum_{j=0}^{k-1} w[j] x[t - (k-1-j) d]

so output frame ``t`` sees the input frames ``t - (k-1) d, ..., t - d, t`` and nothing later: causal by
construction, because the only padding is ``(k-1) d`` frames on the left. Stacking layers with dilations
``1, 2, 4, ...`` widens the receptive field exponentially at a linear cost: ``receptive_field(k, dilations) =
1 + sum_i (k-1) d_i`` frames.

Streaming. The left padding is the layer's *state*: the last ``(k-1) d`` input frames. Offline, the state is zeros;
a streaming caller passes the buffer back in, one frame (or a chunk) at a time, and gets the same output as the
offline pass (tests/nn/test_tcn.py): ``__call__(x, state) -> (y, new_state)``, ``step(x_t, state) -> (y_t,
new_state)`` for ``x_t: [batch, channels]``.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxse.nn.activation import PReLU
from jaxse.nn.products import complex_bilinear, variance_init

Array = jnp.ndarray


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Input frames that one output frame of a stack of causal convolutions sees: ``1 + sum_i (k-1) d_i``."""
    return 1 + sum((kernel_size - 1) * int(d) for d in dilations)


def causal_conv1d(x: Array, w: Array, dilation: int = 1, state: Array | None = None, impl: str = "gauss"):
    """Dilated causal convolution ``y[t] = sum_j w[j] x[t - (k-1-j) d]`` (no bias).

    ``x: [batch, time, c_in]``, ``w: [k, c_in, c_out]``, ``state: [batch, (k-1) d, c_in]`` (the frames before
    ``x``; None: zeros) -> ``(y: [batch, time, c_out], new_state: [batch, (k-1) d, c_in])``. Real or complex
    (``impl``: how a complex product is split into real ones, ``jaxse.nn``).
    """
    k, c_in = w.shape[0], w.shape[1]
    past = (k - 1) * dilation
    if state is None:
        state = jnp.zeros((x.shape[0], past, c_in), x.dtype)
    elif state.shape[1:] != (past, c_in):
        raise ValueError(f"state must be [batch, {past}, {c_in}] ((k-1) d frames of the input), got {state.shape}")
    xp = jnp.concatenate([state.astype(x.dtype), x], axis=1)  # the state is the causal left padding
    conv = lambda a, b: lax.conv_general_dilated(  # noqa: E731  (valid convolution, dilated kernel)
        a, b, window_strides=(1,), padding="VALID", rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"), precision=lax.Precision.HIGHEST)
    y = complex_bilinear(conv, xp, w, impl)
    return y, xp[:, xp.shape[1] - past:]


class CausalConv1D(nn.Module):
    """Dilated causal 1-D convolution over time (module docstring): ``[batch, time, c_in] -> [batch, time, features]``.

    Parameters ``kernel: param_dtype[kernel_size, c_in, features]``, ``bias: param_dtype[features]``; output in
    ``dtype`` (complex64 for a complex layer). ``__call__(x, state=None) -> (y, new_state)`` with ``state:
    [batch, (kernel_size-1) dilation, c_in]`` (None: zeros, the offline pass); ``step(x_t: [batch, c_in], state)``
    is one streaming frame.
    """

    features: int
    kernel_size: int
    dilation: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    impl: str = "gauss"

    def initial_state(self, batch: int, c_in: int) -> Array:
        """Zeros ``[batch, (kernel_size-1) dilation, c_in]``: the state before the first frame."""
        return jnp.zeros((batch, (self.kernel_size - 1) * self.dilation, c_in), self.dtype)

    @nn.compact
    def __call__(self, x: Array, state: Array | None = None):
        w = self.param("kernel", variance_init((0, 1)), (self.kernel_size, x.shape[-1], self.features),
                       self.param_dtype)
        y, state = causal_conv1d(x.astype(self.dtype), w.astype(self.dtype), self.dilation, state, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return y.astype(self.dtype), state

    def step(self, x_t: Array, state: Array):
        """One frame: ``x_t: [batch, c_in]`` -> ``(y_t: [batch, features], new_state)``."""
        y, state = self(x_t[:, None], state)
        return y[:, 0], state


class TCNBlock(nn.Module):
    """Residual TCN block: ``x + pointwise(PReLU(dilated causal conv(x)))``, ``[batch, time, features]`` -> same.

    The residual path keeps the block close to the identity at initialisation, so a deep stack trains; the PReLU
    acts on the real and imaginary parts separately for a complex block. State: the dilated convolution's buffer
    ``[batch, (kernel_size-1) dilation, features]`` (the pointwise convolution has none).
    """

    features: int
    kernel_size: int = 3
    dilation: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    impl: str = "gauss"

    @nn.compact
    def __call__(self, x: Array, state: Array | None = None):
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, impl=self.impl)
        h, state = CausalConv1D(self.features, self.kernel_size, self.dilation, name="dilated", **conv)(x, state)
        h, _ = CausalConv1D(self.features, 1, name="pointwise", **conv)(PReLU(name="act")(h))
        return x.astype(self.dtype) + h, state


class TCN(nn.Module):
    """A stack of residual ``TCNBlock`` s with ``dilations`` (default 1, 2, 4, 8) after a pointwise input projection.

    ``x: [batch, time, c_in]`` -> ``y: [batch, time, features]``; receptive field
    ``receptive_field(kernel_size, dilations)`` frames. ``__call__(x, state=None) -> (y, state)`` with ``state`` a
    tuple of per-block buffers ``[batch, (kernel_size-1) d_i, features]`` (None: zeros, the offline pass);
    ``step(x_t: [batch, c_in], state) -> (y_t: [batch, features], state)`` is one streaming frame, equal to the
    offline output at that frame.
    """

    features: int
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    impl: str = "gauss"

    def initial_state(self, batch: int) -> tuple[Array, ...]:
        """Zero buffers, one ``[batch, (kernel_size-1) d_i, features]`` per block."""
        return tuple(jnp.zeros((batch, (self.kernel_size - 1) * d, self.features), self.dtype)
                     for d in self.dilations)

    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, self.dilations)

    @nn.compact
    def __call__(self, x: Array, state: tuple[Array, ...] | None = None):
        conv = dict(dtype=self.dtype, param_dtype=self.param_dtype, impl=self.impl)
        if state is None:
            state = (None,) * len(self.dilations)
        x, _ = CausalConv1D(self.features, 1, name="input", **conv)(x)
        out = []
        for i, d in enumerate(self.dilations):
            x, s = TCNBlock(self.features, self.kernel_size, d, name=f"block{i}", **conv)(x, state[i])
            out.append(s)
        return x, tuple(out)

    def step(self, x_t: Array, state: tuple[Array, ...]):
        """One frame: ``x_t: [batch, c_in]`` -> ``(y_t: [batch, features], new_state)``."""
        y, state = self(x_t[:, None], state)
        return y[:, 0], state
