"""Layers shared by the models: time-valid 2-D convolutions, complex BatchNorm, PReLU, LSTMs, complex dense.

Every layer works on real (float32) or complex (complex64) arrays natively: parameters and activations of a complex
layer are complex64 (except where the mathematics is real: the 2x2 real whitening/scaling matrix of complex
BatchNorm, the PReLU slope). Feature maps are channels-last, ``[batch, time, freq, channels]``.

Convolutions never pad along time: the model pads (left for causal, right for look-ahead), so the same parameters
serve the offline pass and the frame-by-frame streaming pass, which feeds ``[previous frame, current frame]``.

Complex products can be lowered three ways (``impl``), all giving the same result:
  ``native``  XLA's complex convolution / matmul (4 real multiplications per complex MAC inside XLA);
  ``gauss``   three real products (Gauss/Karatsuba): k1 = (a+b)*c, k2 = a*(d-c), k3 = b*(c+d);
              re = k1 - k3, im = k1 + k2 for (a+ib)(c+id): 25 % fewer multiplications;
  ``real``    one real product on stacked ``[re, im]`` channels with the block kernel [[c, d], [-d, c]]
              (4 multiplications, one big kernel; what TensorFlow/TFLite export uses).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jnp.ndarray
IMPLS = ("native", "gauss", "real")
_DN = ("NHWC", "HWIO", "NHWC")


# ----------------------------------------------------------------------------------------------------------------
# Initialisers
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# Complex products with selectable lowering
# ----------------------------------------------------------------------------------------------------------------
def complex_bilinear(op: Callable[[Array, Array], Array], x: Array, w: Array, impl: str) -> Array:
    """Apply a bilinear real operation ``op`` (conv or matmul) to complex ``x`` and ``w`` with the chosen lowering.

    ``op`` must contract the last axis of ``x`` with the second-to-last axis of ``w`` (channels in, features out).
    """
    if not (is_complex(x.dtype) or is_complex(w.dtype)):
        return op(x, w)
    x = x.astype(jnp.complex64)
    w = w.astype(jnp.complex64)
    if impl == "native":
        return op(x, w)
    a, b, c, d = x.real, x.imag, w.real, w.imag
    if impl == "gauss":
        k1 = op(a + b, c)
        k2 = op(a, d - c)
        k3 = op(b, c + d)
        return lax.complex(k1 - k3, k1 + k2)
    if impl == "real":
        xs = jnp.concatenate([a, b], axis=-1)
        ws = jnp.concatenate([jnp.concatenate([c, d], -1), jnp.concatenate([-d, c], -1)], -2)
        y = op(xs, ws)
        n = w.shape[-1]
        return lax.complex(y[..., :n], y[..., n:])
    raise ValueError(f"unknown complex lowering impl={impl!r}; valid: {', '.join(IMPLS)}")


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
    """The convolution of ``Conv2D`` as patches-times-weights: returns a list of ``(patches, kernel_index, phase)``.

    Each ``patches: [batch, time_out, n, k * c_in]`` multiplies ``kernel[:, kernel_index].reshape(-1, c_out)``; the
    products of all phases, interleaved along frequency (``interleave_phases``), give the convolution. With
    ``dilate_f == 1`` there is one phase (a strided gather of frequency taps). With ``dilate_f = d > 1`` (transposed
    convolution) output ``o = d*m + r`` only meets the taps ``k`` with ``(r + k - pad_left) % d == 0``: the
    polyphase form skips the zeros the input dilation would insert, so no multiplication is wasted.
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
        raise NotImplementedError("input dilation with a frequency stride: use lowering='xla'")
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


def _planar_parts(x: Array, w: Array, impl: str):
    """Real operands of a complex product lowered by ``impl`` (``native`` keeps complex operands):
    ``(inputs, weights, combine)`` with ``combine(products) -> complex result``."""
    if not (is_complex(x.dtype) or is_complex(w.dtype)) or impl == "native":
        return [x], [w], lambda ys: ys[0]
    x = x.astype(jnp.complex64)
    w = w.astype(jnp.complex64)
    a, b, c, d = x.real, x.imag, w.real, w.imag
    if impl == "gauss":
        return [a + b, a, b], [c, d - c, c + d], lambda ys: lax.complex(ys[0] - ys[2], ys[0] + ys[1])
    if impl == "real":
        n = w.shape[-1]
        return ([jnp.concatenate([a, b], -1)],
                [jnp.concatenate([jnp.concatenate([c, d], -1), jnp.concatenate([-d, c], -1)], -2)],
                lambda ys: lax.complex(ys[0][..., :n], ys[0][..., n:]))
    raise ValueError(f"unknown complex lowering impl={impl!r}; valid: {', '.join(IMPLS)}")


def conv_matmul(x: Array, w: Array, stride_f: int, pad_f: Sequence[int], dilate_f: int, impl: str,
                time_shift: bool = True) -> Array:
    """``Conv2D``'s convolution as patches-times-weights matmuls (complex products lowered by ``impl``).

    The complex input is split into its real operands first (Gauss: ``re + im``, ``re``, ``im``), and frequency
    patches are gathered from each, so no complex patch matrix is ever formed. ``time_shift``: gather frequency
    taps only, multiply by all time taps' weights at once (``[k_f * c_in, k_t * c_out]``) and add the time-shifted
    products, instead of gathering time taps into the patches (k_t times smaller patch matrices).
    Same result as ``_conv_xla``.
    """
    kt, kf, cin, cout = w.shape
    t_out = x.shape[1] - kt + 1
    xs, ws, combine = _planar_parts(x, w, impl)
    mm = lambda a, b: jnp.matmul(a, b, precision=lax.Precision.HIGHEST)
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


#: How ``Conv2D`` lowers its convolution: ``matmul`` (``conv_matmul``) or ``xla`` (``lax.conv_general_dilated``).
#: XLA's CPU convolutions with input dilation, and the gradients of strided ones, run far below matmul speed
#: (DCCRN-CL training step about 3.6x faster with ``matmul``, see experiments/bench/RESULTS.md). Both agree to float
#: rounding but not bit for bit; the default stays ``xla`` until the exact-zero look-ahead test allows a tolerance.
#: Environment variable ``JAXSE_CONV_LOWERING`` sets the default.
CONV_LOWERINGS = ("matmul", "xla")
DEFAULT_CONV_LOWERING = os.environ.get("JAXSE_CONV_LOWERING", "xla")


def conv2d(x, w, stride_f=1, pad_f=(0, 0), dilate_f=1, impl="gauss", lowering=None) -> Array:
    """The convolution of ``Conv2D`` (no bias) with the chosen complex ``impl`` and ``lowering``."""
    lowering = lowering or DEFAULT_CONV_LOWERING
    if lowering == "matmul" and not (dilate_f > 1 and stride_f > 1):
        return conv_matmul(x, w, stride_f, pad_f, dilate_f, impl)
    if lowering not in CONV_LOWERINGS:
        raise ValueError(f"unknown conv lowering {lowering!r}; valid: {', '.join(CONV_LOWERINGS)}")
    return complex_bilinear(lambda a, b: _conv_xla(a, b, stride_f, pad_f, dilate_f), x, w, impl)


class Conv2D(nn.Module):
    """2-D convolution over ``[batch, time, freq, channels]``, valid along time, explicit geometry along frequency.

    ``dilate_f > 1`` dilates the *input* along frequency, which turns this into a transposed convolution:
    a PyTorch ``ConvTranspose2d`` with stride ``s``, padding ``p``, output padding ``o`` and kernel ``k`` along
    frequency equals ``dilate_f = s``, ``pad_f = (k - 1 - p, k - 1 - p + o)`` with the kernel flipped.

    Kernel ``[kt, kf, c_in, features]``; output ``[batch, time - kt + 1, freq_out, features]``.
    """

    features: int
    kernel: tuple[int, int]
    stride_f: int = 1
    pad_f: tuple[int, int] = (0, 0)
    dilate_f: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    impl: str = "gauss"
    lowering: str | None = None  # matmul | xla; None: DEFAULT_CONV_LOWERING

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kt, kf = self.kernel
        k = self.param("kernel", variance_init((0, 1, 2)), (kt, kf, x.shape[-1], self.features), self.dtype)
        y = conv2d(x, k, self.stride_f, self.pad_f, self.dilate_f, self.impl, self.lowering)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.dtype)
        return y.astype(self.dtype)


class Dense(nn.Module):
    """Dense layer on the last axis, real or complex (``dtype``), with the same complex lowerings as ``Conv2D``."""

    features: int
    dtype: Any = jnp.float32
    impl: str = "gauss"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.param("kernel", variance_init((0,)), (x.shape[-1], self.features), self.dtype)
        b = self.param("bias", nn.initializers.zeros, (self.features,), self.dtype)
        mm = lambda a, w: jnp.matmul(a, w, precision=lax.Precision.HIGHEST)
        return (complex_bilinear(mm, x, k, self.impl) + b).astype(self.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Normalisation and activations
# ----------------------------------------------------------------------------------------------------------------
def _reduce_axes(x):
    return tuple(range(x.ndim - 1))


class ComplexBatchNorm(nn.Module):
    """Complex BatchNorm (Trabelsi et al., 2018): whiten (re, im) with the inverse square root of their 2x2
    covariance, then scale by a learned symmetric 2x2 matrix and shift by a complex bias.

    ``x: complex64[..., channels]``. Parameters: ``gamma_rr, gamma_ri, gamma_ii`` (real, the 2x2 matrix),
    ``beta`` (complex64). Running statistics in ``batch_stats``: ``mean`` (complex64), ``var_rr, var_ri, var_ii``.
    ``axis_name``: statistics are averaged across devices with ``lax.pmean`` (data-parallel training).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        c = x.shape[-1]
        gamma_rr = self.param("gamma_rr", nn.initializers.constant(1 / np.sqrt(2)), (c,), jnp.float32)
        gamma_ri = self.param("gamma_ri", nn.initializers.zeros, (c,), jnp.float32)
        gamma_ii = self.param("gamma_ii", nn.initializers.constant(1 / np.sqrt(2)), (c,), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (c,), jnp.complex64)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.complex64))
        ra_rr = self.variable("batch_stats", "var_rr", lambda: jnp.ones((c,), jnp.float32))
        ra_ri = self.variable("batch_stats", "var_ri", lambda: jnp.zeros((c,), jnp.float32))
        ra_ii = self.variable("batch_stats", "var_ii", lambda: jnp.ones((c,), jnp.float32))
        re, im = x.real, x.imag
        if train:
            ax = _reduce_axes(x)
            moments = jnp.stack([re.mean(ax), im.mean(ax), (re * re).mean(ax), (re * im).mean(ax), (im * im).mean(ax)])
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
        vrr = vrr + self.epsilon
        vii = vii + self.epsilon
        s = jnp.sqrt(vrr * vii - vri * vri)
        t = jnp.sqrt(vrr + vii + 2 * s)
        inv = 1.0 / (s * t)
        wrr, wri, wii = (vii + s) * inv, -vri * inv, (vrr + s) * inv
        cr, ci = re - mean.real, im - mean.imag
        xr, xi = wrr * cr + wri * ci, wri * cr + wii * ci
        return lax.complex(gamma_rr * xr + gamma_ri * xi + beta.real, gamma_ri * xr + gamma_ii * xi + beta.imag)


class SplitBatchNorm(nn.Module):
    """The "real BN" option: ordinary BatchNorm applied separately to the real and the imaginary parts (what the
    DCCRN authors' default and asteroid use). For real input it is plain BatchNorm.

    Parameters ``scale: float32[parts, channels]`` and ``bias: float32[parts, channels]`` with parts = 2 for complex
    input (row 0 real, row 1 imaginary) and 1 for real input; running ``mean``/``var`` of the same shape.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        cplx = is_complex(x.dtype)
        parts = jnp.stack([x.real, x.imag]) if cplx else x[None]
        shape = (parts.shape[0], x.shape[-1])
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        bshape = (shape[0],) + (1,) * (x.ndim - 1) + (shape[1],)
        if train:
            ax = tuple(range(1, parts.ndim - 1))
            moments = jnp.stack([parts.mean(ax), (parts * parts).mean(ax)])
            if self.axis_name is not None and not self.is_initializing():
                moments = lax.pmean(moments, self.axis_name)
            mean, var = moments[0], moments[1] - moments[0] ** 2
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (parts - mean.reshape(bshape)) * lax.rsqrt(var.reshape(bshape) + self.epsilon)
        y = y * scale.reshape(bshape) + bias.reshape(bshape)
        return lax.complex(y[0], y[1]) if cplx else y[0]


def norm_layer(kind: str, axis_name: str | None) -> nn.Module:
    if kind == "complex":
        return ComplexBatchNorm(axis_name=axis_name)
    if kind == "real":
        return SplitBatchNorm(axis_name=axis_name)
    raise ValueError(f"unknown norm {kind!r}; valid: complex, real")


class PReLU(nn.Module):
    """PReLU with one learned slope (init 0.25), applied to the real and imaginary parts separately."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        a = self.param("alpha", nn.initializers.constant(0.25), (), jnp.float32)
        f = lambda v: jnp.where(v >= 0, v, a * v)
        return lax.complex(f(x.real), f(x.imag)) if is_complex(x.dtype) else f(x)


# ----------------------------------------------------------------------------------------------------------------
# Recurrent layers
# ----------------------------------------------------------------------------------------------------------------
def _lstm_scan(gates_in: Array, w_h: Array, carry: tuple[Array, Array]):
    """Run LSTM recurrences given precomputed input gates.

    ``gates_in: [L, S, batch, time, 4H]`` for L independent weight sets (``w_h: [L, H, 4H]``) each applied to S
    input sequences; ``carry = (h, c)`` each ``[L, S, batch, H]``. Gate order i, f, g, o (as PyTorch).
    Returns ``h_seq: [L, S, batch, time, H]`` and the final carry.
    """

    def step(carry, g_t):
        h, c = carry
        g = g_t + jnp.einsum("lsbh,lhg->lsbg", h, w_h, precision=lax.Precision.HIGHEST)
        i, f, gg, o = jnp.split(g, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    carry, hs = lax.scan(step, carry, jnp.moveaxis(gates_in, 3, 0))
    return jnp.moveaxis(hs, 0, 3), carry


class LSTM(nn.Module):
    """One unidirectional LSTM layer over ``[batch, time, features]``, real or complex.

    Real (``dtype=float32``): the usual LSTM, ``w_i [in, 4H]``, ``w_h [H, 4H]``, ``b [4H]``, gate order i, f, g, o.

    Complex (``dtype=complex64``): the DCCRN complex LSTM. Its parameters are complex, ``W = W_r + i W_i``, and it
    acts on ``X = X_r + i X_i`` like a complex product of operators:
    ``F(X) = (L_r(X_r) - L_i(X_i)) + i (L_r(X_i) + L_i(X_r))`` where ``L_r`` / ``L_i`` are real LSTMs with the real /
    imaginary parts of the parameters (Hu et al. 2020, eq. 4). All four recurrences run as one batched scan.

    ``carry``: ``(h, c)``; real: each ``[batch, H]``; complex: each ``[2, 2, batch, H]`` (weight part x input part).
    Returns ``(y: [batch, time, H], carry)``.
    """

    hidden: int
    dtype: Any = jnp.float32

    def initial_carry(self, batch: int):
        shape = (2, 2, batch, self.hidden) if is_complex(self.dtype) else (1, 1, batch, self.hidden)
        return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)

    @nn.compact
    def __call__(self, x: Array, carry=None):
        h4 = 4 * self.hidden
        w_i = self.param("w_i", variance_init((0,)), (x.shape[-1], h4), self.dtype)
        w_h = self.param("w_h", variance_init((0,)), (self.hidden, h4), self.dtype)
        b = self.param("b", nn.initializers.zeros, (h4,), self.dtype)
        if carry is None:
            carry = self.initial_carry(x.shape[0])
        mm = lambda a, w: jnp.einsum("...i,lig->l...g", a, w, precision=lax.Precision.HIGHEST)
        if is_complex(self.dtype):
            xs = jnp.stack([x.real, x.imag])  # [S=2, batch, time, in]
            ws_i = jnp.stack([w_i.real, w_i.imag])
            ws_h = jnp.stack([w_h.real, w_h.imag])
            bs = jnp.stack([b.real, b.imag])[:, None, None, None, :]
            hs, carry = _lstm_scan(mm(xs, ws_i) + bs, ws_h, carry)
            y = lax.complex(hs[0, 0] - hs[1, 1], hs[0, 1] + hs[1, 0])
        else:
            hs, carry = _lstm_scan(mm(x[None], w_i[None]) + b, w_h[None], carry)
            y = hs[0, 0]
        return y, carry


class LSTMStack(nn.Module):
    """``num_layers`` stacked ``LSTM`` layers. ``carries``: tuple of per-layer carries or None."""

    hidden: int
    num_layers: int
    dtype: Any = jnp.float32

    def initial_carry(self, batch: int):
        return tuple(LSTM(self.hidden, self.dtype).initial_carry(batch) for _ in range(self.num_layers))

    @nn.compact
    def __call__(self, x: Array, carries=None):
        if carries is None:
            carries = self.initial_carry(x.shape[0])
        out = []
        for i in range(self.num_layers):
            x, c = LSTM(self.hidden, self.dtype, name=f"layer{i}")(x, carries[i])
            out.append(c)
        return x, tuple(out)
