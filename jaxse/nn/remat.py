"""``recompute_in_backward``: keep a function's inputs, not its intermediates, for the backward pass.

``jax.checkpoint`` does not do this on XLA's CPU backend: XLA drops optimisation barriers before it schedules, so
the recomputation is merged with the forward pass (common-subexpression elimination) or scheduled early, and the
intermediates live as long as before (measured in experiments/bench/RESULTS.md). Here the backward pass recomputes
from inputs that depend by data on the incoming cotangent (``x + 0 * dy[0]``), which XLA can neither merge nor
hoist; the same value whenever the cotangent is finite.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax


def _tie(args, ct):
    """``args`` made to depend by data on the cotangent ``ct`` (same values when ``ct`` is finite)."""
    leaves = [c for c in jax.tree_util.tree_leaves(ct) if c.size]
    if not leaves:
        return args
    # tanh: an op XLA counts as expensive, so it does not copy it (and the chain of elementwise ops that produced
    # the cotangent) into every element of each fusion that adds ``zero``; the scalar is computed once.
    zero = 0 * jnp.tanh(jnp.real(leaves[0].ravel()[0]))
    tie = lambda a: a + zero.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.inexact) else a  # noqa: E731
    return jax.tree_util.tree_map(tie, args)


def materialize(y):
    """``y``, computed where it stands and kept as one buffer (the same values wherever ``y`` is finite).

    XLA fuses cheap elementwise epilogues (the sum of a matmul's time-shifted slices, the Gauss combination) into
    every consumer, so a layer output that the backward pass reads again is recomputed there from the matmul's
    wider products, and those stay alive from the forward pass to the backward pass (``k_t`` x 3 times the layer
    output, among the largest buffers at the peak of a training step; figures: experiments/bench/RESULTS.md).
    ``y / (1 + 0 * y)`` is a division by a full array, an op XLA counts as expensive: computed once, not copied
    into each consumer.
    """
    if jnp.iscomplexobj(y):
        re, im = jnp.real(y), jnp.imag(y)
        return lax.complex(re / (1 + 0 * re), im / (1 + 0 * im))
    return y / (1 + 0 * y)


def _materialize_inexact(a):
    """``materialize`` for float and complex arrays; integer inputs (and their ``float0`` cotangents) as they are."""
    return materialize(a) if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else a


def recompute_in_backward(fn: Callable) -> Callable:
    """``fn(*arrays)`` (positional array pytrees, differentiable) with a backward pass that keeps only its inputs
    and recomputes the rest when the cotangent arrives; the kept inputs and the returned input cotangents are
    materialised (``materialize``). Values and gradients are those of ``fn``. Use it on cheap,
    memory-bound code (elementwise chains, patch gathers); parts of the recomputed forward that the backward pass
    does not read (e.g. the matmul outputs of a linear layer) are dead code that XLA removes."""

    @jax.custom_vjp
    def wrapped(*args):
        return fn(*args)

    def fwd(*args):
        # The kept inputs are materialised: otherwise XLA may keep the wider buffers an input was computed from
        # (e.g. a convolution's matmul products, for the BatchNorm after it) and recompute it in the backward pass.
        return fn(*args), jax.tree_util.tree_map(_materialize_inexact, args)

    def bwd(args, ct):
        args, ct = lax.optimization_barrier((args, ct))
        _, vjp = jax.vjp(fn, *_tie(args, ct))
        # Materialised too: a cotangent kept for later (a skip connection's) is then one buffer of its own size,
        # not a slice of the wider one it was cut from.
        return jax.tree_util.tree_map(_materialize_inexact, vjp(ct))

    wrapped.defvjp(fwd, bwd)
    return functools.wraps(fn)(wrapped)
