"""LSTMs over ``[batch, time, features]``, real or complex (the DCCRN complex LSTM), with explicit carries."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxse.nn.products import is_complex, variance_init

Array = jnp.ndarray


def _product(spec: str, a: Array, w: Array, compute_dtype) -> Array:
    """``einsum(spec, a, w)`` accumulated in float32, the operands in ``compute_dtype`` (None: as given)."""
    if compute_dtype is not None:
        a, w = a.astype(compute_dtype), w.astype(compute_dtype)
    return jnp.einsum(spec, a, w, precision=lax.Precision.HIGHEST, preferred_element_type=jnp.float32)


def _lstm_scan(gates_in: Array, w_h: Array, carry: tuple[Array, Array], compute_dtype=None):
    """Run LSTM recurrences given precomputed input gates.

    ``gates_in: [L, S, batch, time, 4H]`` for L independent weight sets (``w_h: [L, H, 4H]``) each applied to S
    input sequences; ``carry = (h, c)`` each ``[L, S, batch, H]``. Gate order i, f, g, o (as PyTorch).
    ``compute_dtype``: dtype of the recurrent product's operands (gates, cells and carries stay float32).
    Returns ``h_seq: [L, S, batch, time, H]`` and the final carry.
    """
    if compute_dtype is not None:
        w_h = w_h.astype(compute_dtype)  # once, outside the recurrence

    def step(carry, g_t):
        h, c = carry
        g = g_t + _product("lsbh,lhg->lsbg", h, w_h, compute_dtype)
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
    ``compute_dtype``: dtype of the input and recurrent products' operands (e.g. ``"bfloat16"``, accumulated in
    float32; ``jaxse.nn``: mixed precision); None: the parameters' precision.
    Returns ``(y: [batch, time, H], carry)``.
    """

    hidden: int
    dtype: Any = jnp.float32
    compute_dtype: Any = None

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
        mm = lambda a, w: _product("...i,lig->l...g", a, w, self.compute_dtype)  # noqa: E731
        if is_complex(self.dtype):
            xs = jnp.stack([x.real, x.imag])  # [S=2, batch, time, in]
            ws_i = jnp.stack([w_i.real, w_i.imag])
            ws_h = jnp.stack([w_h.real, w_h.imag])
            bs = jnp.stack([b.real, b.imag])[:, None, None, None, :]
            hs, carry = _lstm_scan(mm(xs, ws_i) + bs, ws_h, carry, self.compute_dtype)
            y = lax.complex(hs[0, 0] - hs[1, 1], hs[0, 1] + hs[1, 0])
        else:
            hs, carry = _lstm_scan(mm(x[None], w_i[None]) + b, w_h[None], carry, self.compute_dtype)
            y = hs[0, 0]
        return y, carry


class LSTMStack(nn.Module):
    """``num_layers`` stacked ``LSTM`` layers: ``(x: [batch, time, features], carries) -> (y: [batch, time, hidden],
    carries)``; ``carries``: tuple of per-layer carries (``LSTM``) or None (zeros)."""

    hidden: int
    num_layers: int
    dtype: Any = jnp.float32
    compute_dtype: Any = None  # the LSTMs' product operands (``LSTM``)

    def initial_carry(self, batch: int):
        return tuple(LSTM(self.hidden, self.dtype).initial_carry(batch) for _ in range(self.num_layers))

    @nn.compact
    def __call__(self, x: Array, carries=None):
        if carries is None:
            carries = self.initial_carry(x.shape[0])
        out = []
        for i in range(self.num_layers):
            x, c = LSTM(self.hidden, self.dtype, self.compute_dtype, name=f"layer{i}")(x, carries[i])
            out.append(c)
        return x, tuple(out)
