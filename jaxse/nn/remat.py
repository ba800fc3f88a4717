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
    zero = 0 * jnp.real(leaves[0].ravel()[0])
    tie = lambda a: a + zero.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.inexact) else a  # noqa: E731
    return jax.tree_util.tree_map(tie, args)


def recompute_in_backward(fn: Callable) -> Callable:
    """``fn(*arrays)`` (positional array pytrees, differentiable) with a backward pass that keeps only its inputs
    and recomputes the rest when the cotangent arrives. Values and gradients are those of ``fn``. Use it on cheap,
    memory-bound code (elementwise chains, patch gathers); parts of the recomputed forward that the backward pass
    does not read (e.g. the matmul outputs of a linear layer) are dead code that XLA removes."""

    @jax.custom_vjp
    def wrapped(*args):
        return fn(*args)

    def fwd(*args):
        return fn(*args), args

    def bwd(args, ct):
        args, ct = lax.optimization_barrier((args, ct))
        _, vjp = jax.vjp(fn, *_tie(args, ct))
        return vjp(ct)

    wrapped.defvjp(fwd, bwd)
    return functools.wraps(fn)(wrapped)
