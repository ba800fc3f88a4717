"""Weight storage precision for inference: the variables pytree with its weight matrices stored as int8 (one float32
scale per output channel) or bfloat16, and the dequantisation that turns them back into float32 / complex64 inside a
jitted step.

    q = quantize_variables(variables, "int8")  # stored weights int8 ("bfloat16": bfloat16; "float32": as is)
    variables_f = dequantize_variables(q)      # traceable: inside jit, the conversion runs per call

Which leaves: the weight matrices of the products, i.e. every leaf of the ``params`` collection with two or more
axes (``Conv2D`` and ``Dense`` ``kernel``, the LSTMs' ``w_i`` and ``w_h``); the output channel is the last axis in
all of them. Biases, BatchNorm parameters and statistics, PReLU slopes (all one axis or scalars) and every other
collection stay float32 / complex64. A complex weight is stored as its real and imaginary parts, each quantised per
output channel with its own scales.

int8: symmetric, ``w ~= q * scale`` with ``q`` in [-127, 127] and ``scale = max |w| / 127`` over all axes but the
last (a channel of zeros gets scale 1). The error of a weight is at most ``scale / 2``.
bfloat16: the float32 weight rounded to nearest even (8 bits of mantissa), no scale.

Why a pytree transformation and not a layer option: the layers, the offline pass and the streamer stay as they are;
``jaxse.inference.Streamer(model, precision=...)`` quantises the variables it is given once and passes the stored
weights into its jitted step as arguments (not as compile-time constants, which XLA would fold back to float32), so
the step reads int8 / bfloat16 weights from memory and converts them next to their use.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

#: Weight storage precisions (``quantize_variables``).
PRECISIONS = ("float32", "bfloat16", "int8")


@flax.struct.dataclass
class QuantizedWeight:
    """A stored weight: ``values`` int8 or bfloat16, shape ``[2, *shape]`` (real, imaginary) for a complex weight
    else ``shape``; ``scale`` float32 per output channel (``[2, 1, ..., 1, out]`` / ``[1, ..., 1, out]``) for int8,
    None for bfloat16; ``dtype`` the original dtype's name (``"float32"`` or ``"complex64"``)."""

    values: jnp.ndarray
    scale: Any
    dtype: str = flax.struct.field(pytree_node=False)

    def dequantize(self) -> jnp.ndarray:
        """The weight in its original dtype (float32 or complex64)."""
        w = self.values.astype(jnp.float32)
        if self.scale is not None:
            w = w * self.scale
        if self.dtype == "complex64":
            return jax.lax.complex(w[0], w[1])
        return w


def _quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (last axis) of a real float array: ``(q int8, scale float32)``."""
    axes = tuple(range(w.ndim - 1))
    peak = np.max(np.abs(w), axis=axes, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_weight(w, precision: str):
    """One weight array in ``precision`` (``PRECISIONS``): a ``QuantizedWeight``, or ``w`` itself for float32."""
    if precision == "float32":
        return w
    w = np.asarray(w)
    complex_ = np.iscomplexobj(w)
    dtype = "complex64" if complex_ else "float32"
    parts = np.stack([w.real, w.imag]).astype(np.float32) if complex_ else w.astype(np.float32)
    if precision == "bfloat16":
        return QuantizedWeight(jnp.asarray(parts, jnp.bfloat16), None, dtype)
    if precision == "int8":
        if complex_:  # each part per output channel: the scale's leading axis keeps the parts apart
            qs = [_quantize_int8(p) for p in parts]
            q, scale = np.stack([a for a, _ in qs]), np.stack([s for _, s in qs])
        else:
            q, scale = _quantize_int8(parts)
        return QuantizedWeight(jnp.asarray(q), jnp.asarray(scale), dtype)
    raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def _is_weight(path, leaf) -> bool:
    """A weight matrix: a leaf of the ``params`` collection with two or more axes."""
    top = getattr(path[0], "key", None) if path else None
    return top == "params" and getattr(leaf, "ndim", 0) >= 2


def quantize_variables(variables, precision: str):
    """``variables`` (a model's ``{"params": ..., "batch_stats": ...}``) with the weight matrices stored in
    ``precision``: ``"int8"`` or ``"bfloat16"`` (``QuantizedWeight`` leaves), ``"float32"`` (returned as is). A
    pytree of the same structure above the weights; ``dequantize_variables`` inverts it up to the rounding."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "float32":
        return variables
    return jax.tree_util.tree_map_with_path(
        lambda p, x: quantize_weight(x, precision) if _is_weight(p, x) else x, variables)


def _is_quantized(x) -> bool:
    return isinstance(x, QuantizedWeight)


def is_quantized(variables) -> bool:
    """Whether any leaf of ``variables`` is a stored ``QuantizedWeight``."""
    return any(_is_quantized(x) for x in jax.tree_util.tree_leaves(variables, is_leaf=_is_quantized))


def dequantize_variables(variables):
    """The float32 / complex64 variables of a ``quantize_variables`` tree (other trees unchanged); traceable."""
    if not is_quantized(variables):
        return variables
    return jax.tree_util.tree_map(lambda x: x.dequantize() if _is_quantized(x) else x, variables,
                                  is_leaf=_is_quantized)


def stored_bytes(variables) -> int:
    """Bytes of the arrays of ``variables`` as stored (int8 values and their scales, bfloat16, float32)."""
    return int(sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(variables)))
