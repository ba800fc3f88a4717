"""Time-valid 2-D convolutions over ``[batch, time, freq, channels]`` and their two lowerings (``conv_lowering``).

Convolutions never pad along time: the model pads (left for causal, right for look-ahead), so the same parameters
serve the offline pass and the frame-by-frame streaming pass, which feeds ``[previous frame, current frame]``.
``conv_lowering`` (``matmul`` | ``xla`` | ``auto``) and the complex product ``impl`` are described in ``jaxse.nn``.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse.nn.products import complex_bilinear, complex_parts, variance_init

Array = jnp.ndarray
#: Values of ``conv_lowering`` (``jaxse.nn`` docstring).
CONV_LOWERINGS = ("matmul", "xla", "auto")
_DN = ("NHWC", "HWIO", "NHWC")


def resolve_conv_lowering(lowering: str, train: bool) -> str:
    """``matmul`` or ``xla`` for ``lowering``; ``auto`` picks by phase and backend (``jaxse.nn`` docstring)."""
    if lowering == "auto":
        return "matmul" if train and jax.default_backend() == "cpu" else "xla"
    if lowering not in CONV_LOWERINGS:
        raise ValueError(f"unknown conv lowering {lowering!r}; valid: {', '.join(CONV_LOWERINGS)}")
    return lowering


def _conv_xla(x, w, stride_f, pad_f, dilate_f):
    return lax.conv_general_dilated(
        x, w, window_strides=(1, stride_f), padding=((0, 0), tuple(pad_f)), lhs_dilation=(1, dilate_f),
        dimension_numbers=_DN, precision=lax.Precision.HIGHEST)


def _tap_slices(x: Array, kt: int, taps: Sequence[tuple[int, int]], start: int, count: int, step: int) -> Array:
    """Patches ``[batch, time - kt + 1, count, len(taps) * kt * c]`` (time tap major, then the given frequency taps,
    then channels): for time tap ``dt`` and ``(k, off)`` in ``taps``, frequency positions ``start + off + step*m``."""
    t_out = x.shape[1] - kt + 1
    cols = []
    for dt in range(kt):
        xt = lax.slice_in_dim(x, dt, dt + t_out, axis=1)
        for _, off in taps:
            lo = start + off
            cols.append(lax.slice_in_dim(xt, lo, lo + step * (count - 1) + 1, stride=step, axis=2))
    return jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]


def conv_patches(x: Array, kernel_shape: Sequence[int], stride_f: int, pad_f: Sequence[int], dilate_f: int):
    """The convolution of ``Conv2D`` as patches-times-weights: returns ``(phases, freq_out)``, ``phases`` a list of
    ``(patches, kernel_index, phase)``.

    ``x: [batch, time, freq, c_in]``. Each ``patches: [batch, time - kt + 1, n, k * c_in]`` multiplies
    ``kernel[:, kernel_index].reshape(-1, c_out)``; the products of all phases, interleaved along frequency
    (``interleave_phases``), give the convolution. With ``dilate_f == 1`` there is one phase (a strided gather of
    frequency taps). With ``dilate_f = d > 1`` (transposed convolution) output ``o = d*m + r`` only meets the taps
    ``k`` with ``(r + k - pad_left) % d == 0``: this polyphase form skips the zeros the input dilation would insert,
    so no multiplication is wasted.
    """
    kt, kf = kernel_shape[:2]
    pl, pr = pad_f
    f = x.shape[2]
    if dilate_f == 1:
        out = (f + pl + pr - kf) // stride_f + 1
        lo, hi = max(0, pl), max(0, pr)
        xp = jnp.pad(x, [(0, 0), (0, 0), (lo, hi), (0, 0)]) if lo or hi else x
        taps = [(k, k) for k in range(kf)]
        return [(_tap_slices(xp, kt, taps, lo - pl, out, stride_f), list(range(kf)), 0)], out
    if stride_f != 1:
        raise NotImplementedError("input dilation with a frequency stride: use conv_lowering='xla'")
    d = dilate_f
    out = (f - 1) * d + 1 + pl + pr - kf + 1
    per_phase = -(-out // d)
    phases = []
    for r in range(min(d, out)):
        taps = [(k, (r + k - pl) // d) for k in range(kf) if (r + k - pl) % d == 0]
        if not taps:
            phases.append((None, [], r))
            continue
        lo = max(0, -min(o for _, o in taps))
        hi = max(0, per_phase - 1 + max(o for _, o in taps) - (f - 1))
        xp = jnp.pad(x, [(0, 0), (0, 0), (lo, hi), (0, 0)]) if lo or hi else x
        phases.append((_tap_slices(xp, kt, taps, lo, per_phase, 1), [k for k, _ in taps], r))
    return phases, out


def interleave_phases(ys: Sequence[Array | None], out: int) -> Array:
    """``d`` phase outputs ``[batch, time, ceil(out / d), c]`` (None: all zero) -> ``[batch, time, out, c]``."""
    if len(ys) == 1:
        return ys[0][:, :, :out]
    ref = next(y for y in ys if y is not None)
    ys = [jnp.zeros_like(ref) if y is None else y for y in ys]
    y = jnp.stack(ys, axis=3)
    b, t, m, d, c = y.shape
    return y.reshape(b, t, m * d, c)[:, :, :out]


def conv_matmul(x: Array, w: Array, stride_f: int, pad_f: Sequence[int], dilate_f: int, impl: str,
                time_shift: bool = True) -> Array:
    """``Conv2D``'s convolution as patches-times-weights matmuls (complex products lowered by ``impl``).

    ``x: [batch, time, freq, c_in]``, ``w: [kt, kf, c_in, c_out]`` -> ``[batch, time - kt + 1, freq_out, c_out]``.
    The complex input is split into its real operands first (``complex_parts``), and frequency patches are gathered
    from each, so no complex patch matrix is ever formed. ``time_shift``: gather frequency taps only, multiply by all
    time taps' weights at once (``[k_f * c_in, k_t * c_out]``) and add the time-shifted products, instead of
    gathering time taps into the patches (k_t times smaller patch matrices). Same result as the ``xla`` lowering.
    """
    kt, kf, cin, cout = w.shape
    t_out = x.shape[1] - kt + 1
    xs, ws, combine = complex_parts(x, w, impl)
    mm = lambda a, b: jnp.matmul(a, b, precision=lax.Precision.HIGHEST)  # noqa: E731
    ys = []
    for xo, wo in zip(xs, ws):
        phases, out = conv_patches(xo, (1 if time_shift else kt, kf), stride_f, pad_f, dilate_f)
        yo = []
        for p, ks, _ in phases:
            if p is None:
                yo.append(None)
                continue
            wk = wo[:, np.asarray(ks)] if len(ks) != kf else wo  # [kt, n_k, c_in', c_out']
            if not time_shift:
                yo.append(mm(p, wk.reshape(-1, wk.shape[-1])))
                continue
            co = wk.shape[-1]
            z = mm(p, jnp.transpose(wk, (1, 2, 0, 3)).reshape(-1, kt * co))  # [b, t, n, kt * c_out']
            yo.append(sum(lax.slice_in_dim(z[..., dt * co:(dt + 1) * co], dt, dt + t_out, axis=1)
                          for dt in range(kt)))
        ys.append(interleave_phases(yo, out))
    return combine(ys)


def conv2d(x, w, stride_f=1, pad_f=(0, 0), dilate_f=1, impl="gauss", lowering="auto", train=False) -> Array:
    """The convolution of ``Conv2D`` (no bias): ``x: [batch, time, freq, c_in]``, ``w: [kt, kf, c_in, c_out]`` ->
    ``[batch, time - kt + 1, freq_out, c_out]``, with the complex product ``impl`` and the conv ``lowering``
    (``train`` only steers ``lowering="auto"``)."""
    lowering = resolve_conv_lowering(lowering, train)
    if lowering == "matmul" and not (dilate_f > 1 and stride_f > 1):
        return conv_matmul(x, w, stride_f, pad_f, dilate_f, impl)
    return complex_bilinear(lambda a, b: _conv_xla(a, b, stride_f, pad_f, dilate_f), x, w, impl)


class Conv2D(nn.Module):
    """2-D convolution over ``[batch, time, freq, channels]``, valid along time, explicit geometry along frequency.

    ``dilate_f > 1`` dilates the *input* along frequency, which turns this into a transposed convolution:
    a PyTorch ``ConvTranspose2d`` with stride ``s``, padding ``p``, output padding ``o`` and kernel ``k`` along
    frequency equals ``dilate_f = s``, ``pad_f = (k - 1 - p, k - 1 - p + o)`` with the kernel flipped.

    Kernel ``[kt, kf, c_in, features]``; ``__call__(x: [batch, time, freq, c_in], train=False)`` ->
    ``[batch, time - kt + 1, freq_out, features]``. ``impl`` and ``conv_lowering``: ``jaxse.nn``; ``train`` only
    steers ``conv_lowering="auto"``.
    """

    features: int
    kernel: tuple[int, int]
    stride_f: int = 1
    pad_f: tuple[int, int] = (0, 0)
    dilate_f: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    impl: str = "gauss"
    conv_lowering: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        kt, kf = self.kernel
        k = self.param("kernel", variance_init((0, 1, 2)), (kt, kf, x.shape[-1], self.features), self.dtype)
        y = conv2d(x, k, self.stride_f, self.pad_f, self.dilate_f, self.impl, self.conv_lowering, train)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.dtype)
        return y.astype(self.dtype)
