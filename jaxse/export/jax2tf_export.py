"""Export the streaming step (``jaxse.stream.Streamer.stream_step``) as a TensorFlow SavedModel or a TFLite model.

    python -m jaxse.export checkpoint=WORKDIR format=saved_model|tflite [output=DIR] [batch=1] [step=N] [force=true]

(default output ``WORKDIR/export/<format>``; bad arguments, a missing checkpoint or an existing output print one
``jaxse.export: error: ...`` line and exit with status 2.)

    from jaxse.export import export
    path = export("runs/dccrn", "export/dccrn_tflite", format="tflite")

The exported function is one hop of the stream with the checkpoint's variables baked in as constants::

    step(in_hop: float32[batch, hop], **state) -> {"out_hop": float32[batch, hop], **new_state}

The state crosses the boundary as a flat list of named tensors: every complex64 entry of the Streamer's state pytree
becomes two float32 tensors ``<name>_re`` / ``<name>_im``, ``None`` entries are dropped, float32 entries stay as
they are and integer entries (the Streamer's frame counter ``t``, if present) keep their dtype, int32. Names are the
pytree paths joined with ``_`` (``net_enc_prev_0_re``, ``analysis``, ...). A device-side caller feeds the returned
state back in on the next hop, starting from ``initial_state``.

Output folder (written into a temporary sibling folder and renamed when complete, so a failed export never leaves a
half-written one; an existing output is refused unless ``force=true``)::

    DIR/signature.json      format, model name/overrides, checkpoint step, batch, hop, win_length, n_fft,
                            sample_rate, delay_samples / latency_samples (and ms), the input/output names, and
                            "state": [{"name", "shape", "dtype", "init"}] in the order of the flat list ("init": the
                            value every element of the initial state holds: 0 except the frame counter)
    DIR/saved_model/        format=saved_model: signatures "serving_default" (the step) and "initial_state"
                            (no inputs -> the initial state tensors)
    DIR/model.tflite        format=tflite: signature "serving_default" (the step)

Route (jax 0.10.2, TensorFlow 2.21), found by trying:
  * ``jax2tf.convert`` only does native serialization now: ``native_serialization=False`` / ``enable_xla=False``
    are accepted with a DeprecationWarning and ignored. The SavedModel holds one ``XlaCallModule`` op (StableHLO);
    TensorFlow runs it on CPU.
  * ``tf.lite.TFLiteConverter.from_saved_model`` legalizes that StableHLO to TFLite builtins (no ``SELECT_TF_OPS``
    needed) for plain real ops, but the step as traced fails: a convolution with input (``lhs_``) dilation, i.e. a
    transposed decoder convolution, gives "failed to legalize operation 'mhlo.convolution' that was explicitly
    marked illegal", and a slice of a complex64 tensor gives "failed to legalize operation 'tfl.strided_slice'"
    (TFLite kernels barely support complex64).
  * ``TFLiteConverter.experimental_from_jax`` still exists (deprecated; it converts an HLO proto); not used.

So before ``jax2tf`` the step's jaxpr is re-evaluated by ``lower_for_tflite`` (export only; the models and the
Streamer stay native-complex), which
  * carries every complex value as a (re, im) pair of float32 arrays (``Pair``): data movement and linear
    primitives act on both parts, ``mul``/``div``/``abs``/``dot_general``/``conv`` expand into real arithmetic;
  * computes ``fft`` (rfft/irfft of the STFT frame) as matmuls with fixed DFT matrices;
  * writes input-dilated convolutions in polyphase form (each output phase a plain convolution with every d-th tap;
    no inserted zeros);
  * inlines nested ``jit`` calls and custom-derivative wrappers, unrolls short ``scan`` loops (the LSTMs scan one
    frame), and folds everything that depends only on constants (complex weight splitting, the [[c, d], [-d, c]]
    block kernels of ``impl="real"``, kernel gathers and transposes) into constants.
Complex products are lowered with ``impl="real"`` for models that have the field (DCCRN); the exported graph is all
float32 (plus the int32 frame counter). Hop outputs match ``Streamer.stream_step`` to ~1e-7 (TF and TFLite, CPU).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

FORMATS = ("saved_model", "tflite")
SIGNATURE_FILE = "signature.json"


# ====================================================================================================================
# Flat, real state at the boundary
# ====================================================================================================================
def _leaf_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "_".join(parts)


class FlatState:
    """Bijection between the Streamer's state pytree and a flat list of real tensors.

    ``specs``: list of ``(name, shape, dtype)`` of the flat tensors (complex leaves give ``<name>_re``,
    ``<name>_im`` float32; ``None`` leaves are absent from the tree's leaves and so from the list).
    """

    def __init__(self, state):
        paths_leaves, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        self.complex = []
        self.specs: list[tuple[str, tuple[int, ...], np.dtype]] = []
        self.init: list[float] = []
        for path, leaf in paths_leaves:
            name = _leaf_name(path)
            leaf = np.asarray(leaf)
            fill = leaf.reshape(-1)[0] if leaf.size else 0
            if leaf.size and not np.all(leaf == fill):
                raise ValueError(f"initial state entry {name!r} is not constant; cannot describe it by one value")
            c = np.iscomplexobj(leaf)
            self.complex.append(c)
            if c:
                self.specs += [(name + "_re", leaf.shape, np.dtype(np.float32)),
                               (name + "_im", leaf.shape, np.dtype(np.float32))]
                self.init += [float(np.real(fill)), float(np.imag(fill))]
            else:
                self.specs.append((name, leaf.shape, leaf.dtype))
                self.init.append(fill.item() if hasattr(fill, "item") else fill)
        names = [n for n, _, _ in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"state names collide: {names}")

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.specs]

    def flatten(self, state) -> list:
        """State pytree -> flat list of real arrays (inside or outside a trace)."""
        out = []
        for leaf, c in zip(jax.tree.leaves(state), self.complex):
            out += [jnp.real(leaf).astype(jnp.float32), jnp.imag(leaf).astype(jnp.float32)] if c else [leaf]
        return out

    def unflatten(self, flat) -> Any:
        it = iter(flat)
        leaves = [lax.complex(next(it), next(it)) if c else next(it) for c in self.complex]
        return jax.tree.unflatten(self.treedef, leaves)

    def initial(self) -> list[np.ndarray]:
        return [np.full(shape, v, dtype) for (_, shape, dtype), v in zip(self.specs, self.init)]


# ====================================================================================================================
# TFLite-safe re-evaluation of a jaxpr: complex values as (re, im) pairs, FFTs as DFT matmuls, no input dilation
# ====================================================================================================================
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


def _pad_or_crop(x, axis: int, lo: int, hi: int):
    n = x.shape[axis]
    x = lax.slice_in_dim(x, max(0, -lo), n - max(0, -hi), axis=axis)
    if lo > 0 or hi > 0:
        cfg = [(0, 0)] * x.ndim
        cfg[axis] = (max(0, lo), max(0, hi))
        x = jnp.pad(x, cfg)
    return x


def _conv_polyphase(lhs, rhs, *, lhs_dilation, padding, dimension_numbers, window_strides, rhs_dilation,
                    **params):
    """Input-dilated (transposed) convolution without the inserted zeros: along the dilated axis (factor ``d``),
    output ``o = d*m + r`` only meets the kernel taps ``k`` with ``(r + k - pad_lo) % d == 0``, so each phase ``r``
    is a plain convolution of the undilated input with every ``d``-th tap; the phases are interleaved. Half the
    multiplications of zero insertion for ``d = 2``. Falls back to zero insertion unless exactly one spatial axis
    is dilated, with unit window stride and kernel dilation on it."""
    spatial = list(dimension_numbers.lhs_spec[2:])
    dil = [i for i, d in enumerate(lhs_dilation) if d != 1]
    if len(dil) != 1 or window_strides[dil[0]] != 1 or rhs_dilation[dil[0]] != 1:
        return _conv_explicit_dilation(lhs, rhs, lhs_dilation=lhs_dilation, padding=padding,
                                       dimension_numbers=dimension_numbers, window_strides=window_strides,
                                       rhs_dilation=rhs_dilation, **params)
    i = dil[0]
    d, (lo, hi) = lhs_dilation[i], padding[i]
    ax, kax = spatial[i], dimension_numbers.rhs_spec[2 + i]
    n, kk = lhs.shape[ax], rhs.shape[kax]
    out = (n - 1) * d + 1 + lo + hi - kk + 1
    per = -(-out // d)
    conv = dict(params, window_strides=window_strides, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                lhs_dilation=(1,) * len(spatial))
    ys = []
    for r in range(d):
        taps = [k for k in range(kk) if (r + k - lo) % d == 0]
        if not taps or r >= out:
            ys.append(None)
            continue
        first = (r + taps[0] - lo) // d  # input index that output m = 0 meets with the first tap
        x = _pad_or_crop(lhs, ax, -first, per - 1 + len(taps) + first - n)
        w = lax.slice_in_dim(rhs, taps[0], taps[-1] + 1, stride=d, axis=kax)
        pads = tuple((0, 0) if j == i else tuple(p) for j, p in enumerate(padding))
        ys.append(lax.conv_general_dilated_p.bind(x, w, padding=pads, **conv))
    ref = next(y for y in ys if y is not None)
    ys = [jnp.zeros_like(ref) if y is None else y for y in ys]
    y = jnp.stack(ys, axis=ax + 1)
    y = y.reshape(ref.shape[:ax] + (per * d,) + ref.shape[ax + 1:])
    return lax.slice_in_dim(y, 0, out, axis=ax)


#: Primitives that act on complex arrays element-position-wise (linear in the data, or pure data movement):
#: applied to the real and the imaginary parts separately. Real operands of them (predicates, indices) pass as is.
_STRUCTURAL = {"reshape", "broadcast_in_dim", "slice", "concatenate", "pad", "transpose", "squeeze",
               "expand_dims", "select_n", "rev", "copy", "copy_p", "reduce_sum", "split", "stack", "gather",
               "dynamic_slice", "dynamic_update_slice", "add", "sub", "neg", "cumsum", "optimization_barrier"}
_MAX_UNROLL = 16


def _real_eqn(prim, invals, params):
    """Bind one primitive on real operands, with the TFLite rewrites that need no complex numbers."""
    if prim.name == "conv_general_dilated" and any(d != 1 for d in params["lhs_dilation"]):
        return [_conv_polyphase(*invals, **params)]
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


# ====================================================================================================================
# Export
# ====================================================================================================================
class ExportError(RuntimeError):
    """An export that cannot be done as asked (message names the problem)."""


def _load(checkpoint, step):
    from jaxse.io import checkpoints
    from jaxse.models import get_model

    meta = checkpoints.read_meta(checkpoint, step)
    name = meta.get("model", {}).get("name")
    overrides = {}
    if name is not None:
        fields = set(type(get_model(name)).__dataclass_fields__)
        if "impl" in fields:  # complex products as one real conv/matmul on [re, im]
            overrides["impl"] = "real"
    return checkpoints.load_model(checkpoint, step, **overrides)


def build_step(model, variables, batch: int):
    """``(streamer, flat, step_fn)``: ``step_fn(in_hop, *flat_state) -> [out_hop, *flat_new_state]`` (pure JAX,
    variables closed over, TFLite-safe primitives); ``flat``: the ``FlatState`` of the boundary."""
    from jaxse.inference.streamer import Streamer

    streamer = Streamer(model)
    variables = jax.tree.map(jnp.asarray, variables)
    flat = FlatState(streamer.init_stream(variables, batch))

    def step(in_hop, *state):
        out, new = streamer._step(variables, flat.unflatten(state), in_hop)
        return [out.astype(jnp.float32), *flat.flatten(new)]

    example = [jax.ShapeDtypeStruct((batch, streamer.hop), jnp.float32)] + [
        jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in flat.specs]
    return streamer, flat, lower_for_tflite(step, *example)


def _tf_functions(streamer, flat: FlatState, step_fn, batch: int):
    import tensorflow as tf
    from jax.experimental import jax2tf

    converted = jax2tf.convert(step_fn, with_gradient=False)
    specs = [tf.TensorSpec((batch, streamer.hop), tf.float32, name="in_hop")] + [
        tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for name, shape, dtype in flat.specs]

    @tf.function(autograph=False, input_signature=specs)
    def step(in_hop, *state):
        outs = converted(in_hop, *state)
        return {"out_hop": outs[0], **{n: o for n, o in zip(flat.names, outs[1:])}}

    init_values = flat.initial()

    @tf.function(autograph=False, input_signature=[])
    def initial_state():
        return {n: tf.constant(v) for n, v in zip(flat.names, init_values)}

    return step, initial_state


def _describe(fmt, model, meta, streamer, flat: FlatState, batch: int) -> dict:
    sr = int(meta.get("sample_rate", 16000))
    return {
        "format": fmt,
        "model": meta.get("model", {}),
        "checkpoint_step": meta.get("step"),
        "batch": batch,
        "hop": streamer.hop,
        "win_length": streamer.win,
        "n_fft": streamer.n_fft,
        "sample_rate": sr,
        "delay_samples": int(streamer.delay),
        "delay_ms": 1000.0 * streamer.delay / sr,
        "latency_samples": int(streamer.latency_samples),
        "latency_ms": 1000.0 * streamer.latency_samples / sr,
        "signature": "serving_default",
        "inputs": ["in_hop"] + flat.names,
        "outputs": ["out_hop"] + flat.names,
        "in_hop": {"shape": [batch, streamer.hop], "dtype": "float32"},
        "state": [{"name": n, "shape": list(s), "dtype": np.dtype(d).name, "init": v}
                  for (n, s, d), v in zip(flat.specs, flat.init)],
        "usage": "out = step(in_hop=x, **state); feed every state output back under the same name on the next hop; "
                 "start from initial_state (each tensor filled with its 'init'). Output hop k is the input delayed "
                 "by delay_samples.",
    }


def export(checkpoint, out_dir, *, format: str = "saved_model", batch: int = 1, step: int | None = None,
           force: bool = False) -> Path:
    """Export the streaming step of ``checkpoint`` into ``out_dir`` (layout in the module docstring); returns the
    path of the model (``out_dir/saved_model`` or ``out_dir/model.tflite``).

    ``batch``: number of parallel streams, fixed in the exported shapes. ``step``: checkpoint step (default: best,
    else latest). Raises ``ExportError`` (bad arguments, existing output) or ``checkpoints.CheckpointError``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    if int(batch) < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    batch = int(batch)
    out = Path(out_dir).absolute()
    if out.exists() and not force:
        raise ExportError(f"output {str(out_dir)!r} exists; pass force=true to overwrite it")
    model, variables, meta = _load(checkpoint, step)
    streamer, flat, step_fn = build_step(model, variables, batch)
    tf_step, tf_init = _tf_functions(streamer, flat, step_fn, batch)

    import tensorflow as tf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        module = tf.Module()
        module.step, module.initial_state = tf_step, tf_init
        sm_dir = tmp / "saved_model"
        tf.saved_model.save(module, str(sm_dir), signatures={"serving_default": tf_step.get_concrete_function(),
                                                             "initial_state": tf_init.get_concrete_function()})
        if format == "tflite":
            conv = tf.lite.TFLiteConverter.from_saved_model(str(sm_dir), signature_keys=["serving_default"])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            (tmp / "model.tflite").write_bytes(conv.convert())
            shutil.rmtree(sm_dir)
        (tmp / SIGNATURE_FILE).write_text(json.dumps(_describe(format, model, meta, streamer, flat, batch),
                                                     indent=1) + "\n")
        if out.exists():  # force
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / ("model.tflite" if format == "tflite" else "saved_model")
