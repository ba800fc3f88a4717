"""Re-evaluate a jaxpr in real arithmetic that the TFLite converter legalizes (``lower_for_tflite``).

Used by the export (``jaxse.export.jax2tf_export``) only; the models and the Streamer stay native-complex. It
  * carries every complex value as a (re, im) pair of float32 arrays (``Pair``): data movement and linear
    primitives act on both parts, ``mul``/``div``/``abs``/``dot_general``/``conv`` expand into real arithmetic;
  * computes ``fft`` (rfft/irfft of the STFT frame) as matmuls with fixed DFT matrices;
  * writes input-dilated convolutions without input dilation (the polyphase form of ``jaxse.nn.conv_matmul``);
  * inlines nested ``jit`` calls and custom-derivative wrappers, unrolls short ``scan`` loops (the LSTMs scan one
    frame), and folds everything that depends only on constants (complex weight splitting, the [[c, d], [-d, c]]
    block kernels of ``impl="real"``, kernel gathers and transposes) into constants.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse.nn import conv_matmul

__all__ = ["Pair", "lower_for_tflite"]


class Pair:
    """A complex array carried as two float32 arrays of the same shape (only inside ``lower_for_tflite``)."""

    __slots__ = ("re", "im")

    def __init__(self, re, im):
        self.re, self.im = re, im

    @property
    def shape(self):
        return self.re.shape


def _as_pair(x):
    if isinstance(x, Pair):
        return x
    xp = jnp
    if _is_const(x):  # constants stay constants (numpy), not staged ops
        xp, x = np, np.asarray(x)
    if np.iscomplexobj(x):
        return Pair(xp.real(x).astype(np.float32), xp.imag(x).astype(np.float32))
    x = xp.asarray(x, np.float32)
    return Pair(x, xp.zeros_like(x))


def _cmul(a, b):
    if not isinstance(a, Pair):
        return Pair(a * b.re, a * b.im)
    if not isinstance(b, Pair):
        return Pair(a.re * b, a.im * b)
    return Pair(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re)


def _bilinear(prim, a, b, params):
    """A bilinear primitive (``dot_general``, ``conv_general_dilated``) on complex operands with real products."""
    params = dict(params)
    if params.get("preferred_element_type") is not None:
        params["preferred_element_type"] = np.dtype(np.float32)
    op = lambda x, y: _real_eqn(prim, [x, y], params)[0]  # noqa: E731
    if not isinstance(a, Pair):
        return Pair(op(a, b.re), op(a, b.im))
    if not isinstance(b, Pair):
        return Pair(op(a.re, b), op(a.im, b))
    return Pair(op(a.re, b.re) - op(a.im, b.im), op(a.re, b.im) + op(a.im, b.re))


def _dft(n: int):
    """``(cos, sin)`` of ``2 pi j k / n``, ``float64[n, n]`` (the product reduced mod ``n`` for exact angles)."""
    k = np.arange(n)
    ang = 2 * np.pi * (np.outer(k, k) % n) / n
    return np.cos(ang), np.sin(ang)


def _mm(x, m):
    return jnp.matmul(x, jnp.asarray(m, jnp.float32), precision=lax.Precision.HIGHEST)


def _fft(x, fft_type, fft_lengths):
    """``lax.fft`` over the last axis as matmuls with fixed DFT matrices (1-D transforms only)."""
    if len(fft_lengths) != 1:
        raise NotImplementedError(f"export: {len(fft_lengths)}-D FFT is not supported, only 1-D")
    n = int(fft_lengths[0])
    kind = getattr(fft_type, "name", str(fft_type)).split(".")[-1].upper()
    if kind in ("2", "RFFT"):  # real [.., n] -> complex [.., n//2 + 1]: X = sum x (cos - i sin)
        c, s = _dft(n)
        m = n // 2 + 1
        return Pair(_mm(x, c[:, :m]), _mm(x, -s[:, :m]))
    if kind in ("3", "IRFFT"):  # complex [.., n//2 + 1] -> real [.., n]
        m = n // 2 + 1
        c, s = _dft(n)
        w = np.full(m, 2.0)
        w[0] = 1.0
        if n % 2 == 0:
            w[-1] = 1.0
        x = _as_pair(x)
        return _mm(x.re, (w[:, None] * c[:m]) / n) - _mm(x.im, (w[:, None] * s[:m]) / n)
    if kind in ("0", "1", "FFT", "IFFT"):
        c, s = _dft(n)
        x = _as_pair(x)
        if kind in ("1", "IFFT"):  # sum X (cos + i sin) / n
            return Pair((_mm(x.re, c) - _mm(x.im, s)) / n, (_mm(x.re, s) + _mm(x.im, c)) / n)
        return Pair(_mm(x.re, c) + _mm(x.im, s), _mm(x.im, c) - _mm(x.re, s))
    raise NotImplementedError(f"export: unknown FFT type {fft_type!r}")


def _dilate(x, axis: int, d: int):
    """Insert ``d - 1`` zeros between neighbours along ``axis``: length ``n`` -> ``(n - 1) * d + 1``."""
    n = x.shape[axis]
    z = jnp.zeros_like(x)
    y = jnp.stack([x] + [z] * (d - 1), axis=axis + 1)
    y = y.reshape(x.shape[:axis] + (n * d,) + x.shape[axis + 1:])
    return lax.slice_in_dim(y, 0, (n - 1) * d + 1, axis=axis)


def _conv_explicit_dilation(lhs, rhs, *, lhs_dilation, padding, dimension_numbers, **params):
    """``conv_general_dilated`` with input dilation -> zero insertion + a convolution without input dilation.
    Negative padding (cropping) is applied as a slice first."""
    spatial = dimension_numbers.lhs_spec[2:]
    pads = []
    for ax, d, (lo, hi) in zip(spatial, lhs_dilation, padding):
        if d > 1:
            lhs = _dilate(lhs, ax, d)
        n = lhs.shape[ax]
        if lo < 0 or hi < 0:  # crop
            lhs = lax.slice_in_dim(lhs, max(0, -lo), n - max(0, -hi), axis=ax)
            lo, hi = max(0, lo), max(0, hi)
        pads.append((lo, hi))
    return lax.conv_general_dilated_p.bind(lhs, rhs, lhs_dilation=(1,) * len(spatial), padding=tuple(pads),
                                           dimension_numbers=dimension_numbers, **params)


def _conv_input_dilated(lhs, rhs, **params):
    """A convolution with input (``lhs_``) dilation, which TFLite cannot legalize. In the layout of
    ``jaxse.nn.Conv2D`` (NHWC / HWIO, dilated along frequency only, no time padding, unit strides) it is the
    polyphase form of ``jaxse.nn.conv_matmul`` (no multiplication by an inserted zero); otherwise zeros are inserted
    explicitly."""
    dn, (dt, d), pads = params["dimension_numbers"], params["lhs_dilation"], params["padding"]
    conv2d_layout = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if (dn == conv2d_layout and dt == 1 and tuple(pads[0]) == (0, 0) and tuple(params["window_strides"]) == (1, 1)
            and tuple(params["rhs_dilation"]) == (1, 1) and params.get("feature_group_count", 1) == 1
            and params.get("batch_group_count", 1) == 1):
        return conv_matmul(lhs, rhs, 1, tuple(pads[1]), d, "native")
    return _conv_explicit_dilation(lhs, rhs, **params)


#: Primitives that act on complex arrays element-position-wise (linear in the data, or pure data movement):
#: applied to the real and the imaginary parts separately. Real operands of them (predicates, indices) pass as is.
_STRUCTURAL = {"reshape", "broadcast_in_dim", "slice", "concatenate", "pad", "transpose", "squeeze",
               "expand_dims", "select_n", "rev", "copy", "copy_p", "reduce_sum", "split", "stack", "gather",
               "dynamic_slice", "dynamic_update_slice", "add", "sub", "neg", "cumsum", "optimization_barrier"}
_MAX_UNROLL = 16


def _real_eqn(prim, invals, params):
    """Bind one primitive on real operands, with the TFLite rewrites that need no complex numbers."""
    if prim.name == "conv_general_dilated" and any(d != 1 for d in params["lhs_dilation"]):
        return [_conv_input_dilated(*invals, **params)]
    ans = prim.bind(*invals, **params)
    return list(ans) if prim.multiple_results else [ans]


def _complex_eqn(eqn, invals, params):
    """One primitive with a complex operand or result, on ``Pair``s. Returns the list of outputs."""
    name = eqn.primitive.name
    out_complex = [np.issubdtype(v.aval.dtype, np.complexfloating) for v in eqn.outvars]
    if name == "complex":
        return [Pair(jnp.asarray(invals[0], jnp.float32), jnp.asarray(invals[1], jnp.float32))]
    if name == "real":
        return [_as_pair(invals[0]).re]
    if name == "imag":
        return [_as_pair(invals[0]).im]
    if name == "conj":
        z = _as_pair(invals[0])
        return [Pair(z.re, -z.im)]
    if name == "convert_element_type":
        x = invals[0]
        if out_complex[0]:
            return [_as_pair(x if isinstance(x, Pair) else jnp.asarray(x).astype(jnp.float32))]
        return [_as_pair(x).re.astype(params["new_dtype"])]
    if name == "abs":
        z = _as_pair(invals[0])
        return [jnp.sqrt(z.re * z.re + z.im * z.im)]
    if name == "mul":
        return [_cmul(*invals)]
    if name == "div":
        a, b = invals
        if not isinstance(b, Pair):
            a = _as_pair(a)
            return [Pair(a.re / b, a.im / b)]
        den = b.re * b.re + b.im * b.im
        num = _cmul(a, Pair(b.re, -b.im))
        return [Pair(num.re / den, num.im / den)]
    if name == "integer_pow" and params["y"] >= 1:
        z = _as_pair(invals[0])
        out = z
        for _ in range(params["y"] - 1):
            out = _cmul(out, z)
        return [out]
    if name in ("dot_general", "conv_general_dilated"):
        return [_bilinear(eqn.primitive, invals[0], invals[1], params)]
    if name == "fft":
        return [_fft(invals[0], params["fft_type"], params["fft_lengths"])]
    if name in _STRUCTURAL:
        parts = []
        for take in ("re", "im"):
            ops = []
            for v, x in zip(eqn.invars, invals):
                if np.issubdtype(v.aval.dtype, np.complexfloating):
                    ops.append(getattr(_as_pair(x), take))
                elif isinstance(x, Pair):
                    ops.append(getattr(x, take))
                else:
                    ops.append(x if name not in ("add", "sub") or take == "re" else jnp.zeros_like(x))
            p = dict(params)
            parts.append(_real_eqn(eqn.primitive, ops, p))
        return [Pair(r, i) if c else r for r, i, c in zip(parts[0], parts[1], out_complex)]
    raise NotImplementedError(f"export: primitive {name!r} on complex values has no real lowering")


_NO_FOLD = {"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call", "custom_vjp_call",
            "custom_vjp_call_jaxpr", "scan", "while", "cond", "rng_bit_generator", "random_bits"}


def _is_const(x) -> bool:
    if isinstance(x, Pair):
        return _is_const(x.re) and _is_const(x.im)
    return not isinstance(x, jax.core.Tracer)


def _eval_lowered(jaxpr, consts, *args):
    """Evaluate ``jaxpr`` with the TFLite rewrites; complex values travel as ``Pair``s (also across nested calls)."""
    from jax.extend.core import Literal

    env: dict = {}

    def read(v):
        x = v.val if isinstance(v, Literal) else env[v]
        return _as_pair(x) if not isinstance(x, Pair) and np.iscomplexobj(x) else x

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = np.asarray(x) if _is_const(x) else x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        params = eqn.primitive.get_bind_params(eqn.params) if hasattr(eqn.primitive, "get_bind_params") else \
            eqn.params
        has_c = any(isinstance(x, Pair) for x in invals) or any(
            np.issubdtype(v.aval.dtype, np.complexfloating) for v in eqn.outvars)
        if name not in _NO_FOLD and all(_is_const(x) for x in invals):
            # Constant folding: weight preprocessing (complex split, the [[c, d], [-d, c]] block kernels, kernel
            # gathers and transposes) becomes constants instead of per-hop work in the exported graph.
            with jax.ensure_compile_time_eval():
                outs = _complex_eqn(eqn, invals, params) if has_c else _real_eqn(eqn.primitive, invals, params)
            outs = [Pair(np.asarray(o.re), np.asarray(o.im)) if isinstance(o, Pair) else np.asarray(o)
                    for o in outs]
        elif name in ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"):  # inline
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            inner_jaxpr, inner_consts = (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, ())
            outs = _eval_lowered(inner_jaxpr, inner_consts, *invals)
        elif name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):  # inference: the primal
            inner = eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))
            outs = _eval_lowered(inner.jaxpr, inner.consts, *invals)
        elif name == "scan" and eqn.params["length"] <= _MAX_UNROLL:  # unrolled (the step's LSTM scans 1 frame)
            outs = _unroll_scan(eqn.params, invals)
        elif has_c:
            outs = _complex_eqn(eqn, invals, params)
        else:
            outs = _real_eqn(eqn.primitive, invals, params)
        for v, x in zip(eqn.outvars, outs):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def _unroll_scan(params, invals):
    body, n_c, n_carry, length = params["jaxpr"], params["num_consts"], params["num_carry"], params["length"]
    consts, carry, xs = invals[:n_c], list(invals[n_c:n_c + n_carry]), invals[n_c + n_carry:]
    ys = []
    order = range(length - 1, -1, -1) if params.get("reverse") else range(length)
    for i in order:
        x_i = [Pair(x.re[i], x.im[i]) if isinstance(x, Pair) else x[i] for x in xs]
        outs = _eval_lowered(body.jaxpr, body.consts, *consts, *carry, *x_i)
        carry, y = outs[:n_carry], outs[n_carry:]
        ys.append(y)
    if params.get("reverse"):
        ys = ys[::-1]
    stacked = []
    for j in range(len(ys[0]) if ys else 0):
        col = [y[j] for y in ys]
        if isinstance(col[0], Pair):
            stacked.append(Pair(jnp.stack([c.re for c in col]), jnp.stack([c.im for c in col])))
        else:
            stacked.append(jnp.stack(col))
    return carry + stacked


def lower_for_tflite(fn: Callable, *example_args) -> Callable:
    """``fn`` re-expressed with real-valued primitives that the TFLite converter legalizes (module docstring).

    Traces ``fn(*example_args)`` (arrays or ``jax.ShapeDtypeStruct``, all real) once; the returned function takes
    flat positional arrays of the same shapes and returns the flat list of outputs. A complex output comes back as
    a ``Pair`` (``.re``, ``.im``); ``build_step`` keeps the boundary real so that none does.
    """
    closed = jax.make_jaxpr(fn)(*example_args)
    return lambda *args: _eval_lowered(closed.jaxpr, closed.consts, *args)
