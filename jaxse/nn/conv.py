"""Time-valid 2-D convolutions over ``[batch, time, freq, channels]`` and their two lowerings (``conv_lowering``).

Convolutions are valid along time: the model says how many zero frames to pad (``time_pad``: left for causal, right
for look-ahead), so the same parameters serve the offline pass and the frame-by-frame streaming pass, which feeds
``[previous frame, current frame]`` with no padding. The input may come in channel blocks (a decoder's ``(previous,
skip)``): the blocks are concatenated and padded inside the convolution, so the training step keeps the blocks
(which it keeps anyway) for the backward pass and not also a padded, concatenated copy.
``conv_lowering`` (``matmul`` | ``xla`` | ``auto``) and the complex product ``impl`` are described in ``jaxse.nn``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse.nn.products import accumulate_dtype, complex_bilinear, complex_parts, compute_cast, variance_init
from jaxse.nn.remat import _tie, materialize, recompute_in_backward

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
        dimension_numbers=_DN, precision=lax.Precision.HIGHEST, preferred_element_type=accumulate_dtype(x))


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


def _mm(a, b):
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST, preferred_element_type=accumulate_dtype(a))


#: Bytes of patches gathered at a time: a convolution (and its kernel gradient) works through the batch in chunks.
PATCH_BYTES = 128 * 2 ** 20


def _batch_chunks(batch: int, patch_bytes: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of near-equal batch chunks whose patches take at most about ``PATCH_BYTES`` each."""
    chunks = int(min(batch, max(1, -(-patch_bytes // PATCH_BYTES))))
    bounds = np.linspace(0, batch, chunks + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _matmul_conv(x: Array, w: Array, stride_f: int, pad_f: Sequence[int], dilate_f: int,
                 time_shift: bool = True) -> Array:
    """One real (or complex ``native``) product of ``conv_matmul``: ``x: [batch, time, freq, c_in]``,
    ``w: [kt, kf, c_in, c_out]`` -> ``[batch, time - kt + 1, freq_out, c_out]``, as patches-times-weights, a batch
    chunk after the other when the patches (``k_f / stride`` times ``x``) would exceed ``PATCH_BYTES``."""
    kt, kf = w.shape[:2]
    chunks = _batch_chunks(x.shape[0], x.size * x.dtype.itemsize * kf * (1 if time_shift else kt) // stride_f)
    ys = []
    for lo, hi in chunks:
        # Each chunk's input depends by data on the previous chunk's output: one chunk's patches at a time.
        xc = _tie(x[lo:hi], ys[-1]) if ys else x[lo:hi]
        ys.append(_matmul_conv_whole(xc, w, stride_f, pad_f, dilate_f, time_shift))
    return ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=0)


def _matmul_conv_whole(x: Array, w: Array, stride_f: int, pad_f: Sequence[int], dilate_f: int,
                       time_shift: bool = True) -> Array:
    """``_matmul_conv`` of the whole batch at once."""
    kt, kf = w.shape[:2]
    t_out = x.shape[1] - kt + 1
    phases, out = conv_patches(x, (1 if time_shift else kt, kf), stride_f, pad_f, dilate_f)
    yo = []
    for p, ks, _ in phases:
        if p is None:
            yo.append(None)
            continue
        wk = w[:, np.asarray(ks)] if len(ks) != kf else w  # [kt, n_k, c_in, c_out]
        if not time_shift:
            yo.append(_mm(p, wk.reshape(-1, wk.shape[-1])))
            continue
        co = wk.shape[-1]
        z = _mm(p, jnp.transpose(wk, (1, 2, 0, 3)).reshape(-1, kt * co))  # [b, t, n, kt * c_out]
        yo.append(sum(lax.slice_in_dim(z[..., dt * co:(dt + 1) * co], dt, dt + t_out, axis=1) for dt in range(kt)))
    return interleave_phases(yo, out)


def _adjoint_geometry(f_in: int, f_out: int, kf: int, stride_f: int, pad_f: Sequence[int], dilate_f: int):
    """``(stride, pad, dilate)`` of the convolution that maps an output gradient to the input gradient (the
    adjoint, with the kernel flipped): a strided convolution's adjoint is an input-dilated one, and vice versa."""
    plt = kf - 1 - pad_f[0]
    if dilate_f == 1:  # y[o] = sum_k x[s o + k - pl] w[k]: dx = dilate_s(dy) (*) flip(w)
        return 1, (plt, f_in - (f_out - 1) * stride_f - 1 - plt + kf - 1), stride_f
    # y[o] = sum over d i = o + k - pl of x[i] w[k]: dx[i] = sum_k' dy[d i - plt + k'] flip(w)[k'] (stride d)
    return dilate_f, (plt, dilate_f * (f_in - 1) - plt + kf - f_out), 1


def _kernel_grad(x: Array, dy: Array, kt: int, kf: int, stride_f: int, pad_f: Sequence[int], dilate_f: int) -> Array:
    """Kernel gradient ``[kt, kf, c_in, c_out]`` of ``_matmul_conv`` for the output gradient ``dy``: per phase one
    matmul of the transposed frequency patches of ``x`` (all its frames) and ``dy`` shifted by each time tap (the
    time-shift form of the forward pass, mirrored). The patches (``k_f / stride`` times ``x``) are gathered for a
    chunk of the batch at a time (``PATCH_BYTES``), one chunk after the other."""
    g = jnp.zeros((kf, x.shape[-1], kt, dy.shape[-1]), accumulate_dtype(x))
    for lo, hi in _batch_chunks(x.shape[0], x.size * x.dtype.itemsize * kf // stride_f):
        # Each chunk's inputs depend by data on the gradient so far: one chunk's patches are alive at a time.
        xc, dyc = _tie((x[lo:hi], dy[lo:hi]), g) if lo else (x[lo:hi], dy[lo:hi])
        g = _kernel_grad_chunk(g, xc, dyc, kt, kf, stride_f, pad_f, dilate_f)
    return jnp.transpose(g, (2, 0, 1, 3))


def _kernel_grad_chunk(g, x, dy, kt, kf, stride_f, pad_f, dilate_f):
    """``g: [kf, c_in, kt, c_out]`` plus the kernel gradient of one batch chunk ``x``, ``dy``."""
    ci, co = x.shape[-1], dy.shape[-1]
    phases, _ = conv_patches(x, (1, kf), stride_f, pad_f, dilate_f)
    d = len(phases)
    for p, ks, r in phases:
        if p is None:
            continue
        dyr = dy[:, :, r::d] if d > 1 else dy
        dyr = jnp.pad(dyr, [(0, 0), (0, 0), (0, p.shape[2] - dyr.shape[2]), (0, 0)])
        dyk = jnp.concatenate([jnp.pad(dyr, [(0, 0), (dt, kt - 1 - dt), (0, 0), (0, 0)]) for dt in range(kt)], -1)
        # A contraction over the leading (frame) axes: XLA's CPU dot transposes its left operand into a
        # contraction-minor copy, an untiled transpose that costs more than the matmul when the operand is large.
        # The left operand is the smaller one (the patches of a wide input, or the gradient of a narrow output).
        # (float32 only: the CPU's fallback dot for such shapes has no bfloat16 x bfloat16 -> float32.)
        def frames_contracted(a, b):  # [b, t, n, i], [b, t, n, j] -> [i, j]
            return jnp.einsum("btni,btnj->ij", a, b, precision=lax.Precision.HIGHEST,
                              preferred_element_type=accumulate_dtype(p))

        swap = dyk.shape[-1] < p.shape[-1] and p.dtype == jnp.float32
        gp = frames_contracted(dyk, p).T if swap else frames_contracted(p, dyk)  # [n_k * c_in, kt * c_out]
        g = g.at[np.asarray(ks)].add(gp.reshape(len(ks), ci, kt, co))
    return g


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul_convs_lean(xs, ws, stride_f, pad_f, dilate_f):
    """The real products ``_matmul_conv(xs[k], ws[k])`` of one convolution (time-shift form) with a backward pass
    that needs only the ``xs`` and ``ws`` (``conv_matmul``). The products are computed one after the other (each
    one's input depends by data on the previous one's output), so that one product's patches are alive at a time."""
    ys = []
    for x, w in zip(xs, ws):
        ys.append(_matmul_conv(_tie(x, ys[-1]) if ys else x, w, stride_f, pad_f, dilate_f))
    return tuple(ys)


def _lean_fwd(xs, ws, stride_f, pad_f, dilate_f):
    # Only under differentiation: the outputs are materialised for the backward pass (inference needs no copy).
    ys = _matmul_convs_lean(xs, ws, stride_f, pad_f, dilate_f)
    return tuple(materialize(y) for y in ys), (xs, ws)


def _lean_bwd(stride_f, pad_f, dilate_f, res, dys):
    # The patches gathered here must not be computed before the backward pass reaches this layer, nor merged with
    # the forward pass's identical ones: either would keep them alive as long as saving them (``jaxse.nn.remat``).
    # The products are differentiated one after the other: each one's inputs depend by data on the previous one's
    # kernel gradient, so that only one product's patch matrices are alive at a time (not three).
    xs, ws, dys = lax.optimization_barrier((*res, dys))
    dxs, dws, after = [], [], dys
    for x, w, dy in zip(xs, ws, dys):
        x, w = _tie((x, w), after)
        dy = dy.astype(x.dtype)  # products in the forward pass's compute dtype (float32 accumulation)
        kt, kf = w.shape[:2]
        s, pad, dil = _adjoint_geometry(x.shape[2], dy.shape[2], kf, stride_f, pad_f, dilate_f)
        w_adj = jnp.swapaxes(w[::-1, ::-1], 2, 3)  # [kt, kf, c_out, c_in], flipped in time and frequency
        dx = materialize(_matmul_conv(jnp.pad(dy, [(0, 0), (kt - 1, kt - 1), (0, 0), (0, 0)]), w_adj, s, pad, dil))
        dw = _kernel_grad(x, dy, kt, kf, stride_f, pad_f, dilate_f)
        dxs.append(dx.astype(x.dtype))
        dws.append(dw.astype(w.dtype))
        after = dw
    # The input gradients (the path to the next layer's backward pass) wait for the kernel gradients, so that XLA
    # does not put this layer's kernel-gradient work off and keep its operands alive into the next layers'.
    return _tie(tuple(dxs), after), tuple(dws)


_matmul_convs_lean.defvjp(_lean_fwd, _lean_bwd)


def conv_matmul(x: Array, w: Array, stride_f: int, pad_f: Sequence[int], dilate_f: int, impl: str,
                time_shift: bool = True, lean: bool = True, compute_dtype=None) -> Array:
    """``Conv2D``'s convolution as patches-times-weights matmuls (complex products lowered by ``impl``).

    ``x: [batch, time, freq, c_in]``, ``w: [kt, kf, c_in, c_out]`` -> ``[batch, time - kt + 1, freq_out, c_out]``.
    The complex input is split into its real operands first (``complex_parts``), and frequency patches are gathered
    from each, so no complex patch matrix is ever formed. ``time_shift``: gather frequency taps only, multiply by all
    time taps' weights at once (``[k_f * c_in, k_t * c_out]``) and add the time-shifted products, instead of
    gathering time taps into the patches (k_t times smaller patch matrices). Same result as the ``xla`` lowering.

    ``lean`` (with ``time_shift``, default): a hand-written backward pass (``jax.custom_vjp``) that keeps only each
    real product's operands from the forward pass, not its patch matrix (``k_f / stride`` times the operand, for
    each of the three Gauss operands). The input gradient is the adjoint convolution in the same matmul form (the
    adjoint of a strided convolution is an input-dilated one, in polyphase form, and vice versa), the kernel
    gradient one matmul of regathered patches per phase (a batch chunk at a time: ``PATCH_BYTES``); nothing
    patch-sized is kept or scattered back; the real products are computed, and differentiated, one after the other,
    so one product's patches are alive at a time. Same values and gradients as autodiff of the forward pass, to
    float rounding (tests/nn/test_conv.py). Each product's output is materialised (``jaxse.nn.remat.materialize``),
    so XLA keeps it, not the wider matmul result.

    ``compute_dtype``: dtype of the real products' operands (e.g. ``"bfloat16"``), accumulated in float32.
    """
    xs, ws, combine = complex_parts(x, w, impl)
    xs, ws = compute_cast(xs, ws, compute_dtype)
    pad_f = tuple(int(p) for p in pad_f)
    if time_shift and lean:
        ys = _matmul_convs_lean(tuple(xs), tuple(ws), stride_f, pad_f, dilate_f)
    else:
        ys = [_matmul_conv(xo, wo, stride_f, pad_f, dilate_f, time_shift) for xo, wo in zip(xs, ws)]
    return combine(ys)


def assemble_input(x, time_pad: Sequence[int] = (0, 0)) -> Array:
    """``x`` (one array, or channel blocks ``[batch, time, freq, c_k]`` concatenated along channels) zero-padded by
    ``time_pad = (left, right)`` frames along time."""
    x = jnp.concatenate(x, axis=-1) if isinstance(x, (tuple, list)) else x
    left, right = time_pad
    return jnp.pad(x, [(0, 0), (left, right), (0, 0), (0, 0)]) if left or right else x


def conv2d(x, w, stride_f=1, pad_f=(0, 0), dilate_f=1, impl="gauss", lowering="auto", train=False,
           compute_dtype=None, time_pad=(0, 0)) -> Array:
    """The convolution of ``Conv2D`` (no bias): ``x: [batch, time, freq, c_in]`` (or channel blocks that add up to
    ``c_in``), ``w: [kt, kf, c_in, c_out]`` -> ``[batch, time + left + right - kt + 1, freq_out, c_out]``, with
    ``time_pad = (left, right)`` zero frames, the complex product ``impl``, the conv ``lowering`` (``train`` only
    steers ``lowering="auto"``) and the real products' operands in ``compute_dtype`` (None: as given;
    ``"bfloat16"``: mixed precision, float32 accumulation)."""
    lowering = resolve_conv_lowering(lowering, train)
    blocks = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    time_pad = tuple(int(p) for p in time_pad)
    if lowering == "matmul" and not (dilate_f > 1 and stride_f > 1):
        # Only the input blocks and ``w`` are kept for the backward pass: not the padded, concatenated input, nor
        # the real operands ``complex_parts`` makes.
        conv = partial(conv_matmul, stride_f=stride_f, pad_f=tuple(pad_f), dilate_f=dilate_f, impl=impl,
                       compute_dtype=compute_dtype)
        return recompute_in_backward(lambda w, *b: conv(assemble_input(b, time_pad), w))(w, *blocks)
    return complex_bilinear(lambda a, b: _conv_xla(a, b, stride_f, pad_f, dilate_f),
                            assemble_input(blocks, time_pad), w, impl, compute_dtype)


class Conv2D(nn.Module):
    """2-D convolution over ``[batch, time, freq, channels]``, valid along time, explicit geometry along frequency.

    ``dilate_f > 1`` dilates the *input* along frequency, which turns this into a transposed convolution:
    a PyTorch ``ConvTranspose2d`` with stride ``s``, padding ``p``, output padding ``o`` and kernel ``k`` along
    frequency equals ``dilate_f = s``, ``pad_f = (k - 1 - p, k - 1 - p + o)`` with the kernel flipped.

    Kernel ``[kt, kf, c_in, features]``; ``__call__(x: [batch, time, freq, c_in], train=False, time_pad=(0, 0))`` ->
    ``[batch, time + left + right - kt + 1, freq_out, features]``; ``x`` may be a tuple of channel blocks (e.g.
    ``(previous, skip)``) and ``time_pad = (left, right)`` zero frames are padded along time (``conv2d``). ``impl``
    and ``conv_lowering``: ``jaxse.nn``; ``train`` only steers ``conv_lowering="auto"``.
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
    compute_dtype: Any = None  # dtype of the real products' operands (``jaxse.nn``: mixed precision); None: dtype

    @nn.compact
    def __call__(self, x, train: bool = False, time_pad: Sequence[int] = (0, 0)) -> Array:
        kt, kf = self.kernel
        c_in = sum(b.shape[-1] for b in x) if isinstance(x, (tuple, list)) else x.shape[-1]
        k = self.param("kernel", variance_init((0, 1, 2)), (kt, kf, c_in, self.features), self.dtype)
        y = conv2d(x, k, self.stride_f, self.pad_f, self.dilate_f, self.impl, self.conv_lowering, train,
                   self.compute_dtype, time_pad)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.dtype)
        return y.astype(self.dtype)
