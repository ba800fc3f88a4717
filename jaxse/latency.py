"""Measure a model's look-ahead instead of assuming it.

Perturb the input from sample ``s`` on and find the earliest output sample that changes: the model looks
``s - earliest`` samples ahead. With a causal STFT (see ``jaxse.signal``) and no network look-ahead this is one
window minus 2 samples (the periodic sqrt-Hann window's first tap is 0, and the sample itself does not count);
each look-ahead frame of the network adds one hop.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def measure_lookahead(apply_fn, *, samples: int = 8000, start: int = 6000, seed: int = 0, tol: float = 0.0) -> int:
    """Samples of look-ahead of ``apply_fn: float32[1, samples] -> float32[1, samples]``.

    Returns ``start - n`` where ``n`` is the first output sample whose value differs (by more than ``tol``) when
    the input is perturbed from ``start`` on. Raises if the perturbation changes nothing after ``start``.
    """
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((1, samples))).astype(np.float32)
    x2 = x.copy()
    x2[:, start:] += (0.5 * rng.standard_normal((1, samples - start))).astype(np.float32)
    f = jax.jit(apply_fn)
    diff = np.abs(np.asarray(f(jnp.asarray(x))) - np.asarray(f(jnp.asarray(x2))))[0]
    changed = np.flatnonzero(diff > tol)
    if changed.size == 0 or changed.max() < start:
        raise RuntimeError("the perturbation did not change the output; cannot measure look-ahead")
    return int(start - changed[0])
