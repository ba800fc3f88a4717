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


def measure_lookahead(apply_fn, *, samples: int = 8000, start: int = 6000, sweep: int = 1, seed: int = 0,
                      tol: float = 0.0) -> int:
    """Samples of look-ahead of ``apply_fn: float32[batch, samples] -> float32[batch, samples]``.

    For each ``s`` in ``start .. start + sweep - 1`` the input is perturbed from ``s`` on; the look-ahead is the
    largest ``s - n`` over those starts, where ``n`` is the first output sample that changes by more than
    ``tol`` times the output's peak. Sweep one hop to find the worst case: a perturbation at the last sample of an
    analysis frame reaches furthest back. All variants run as one batch (the model must treat rows independently,
    as every model here does in eval mode). Raises if a perturbation changes nothing after its start.
    """
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((1, samples))).astype(np.float32)
    noise = (0.5 * rng.standard_normal((1, samples))).astype(np.float32)
    starts = np.arange(start, start + sweep)
    rows = [x[0]] + [np.where(np.arange(samples) >= s, x[0] + noise[0], x[0]) for s in starts]
    y = np.asarray(jax.jit(apply_fn)(jnp.asarray(np.stack(rows))))
    scale = np.abs(y[0]).max()
    ahead = []
    for k, s in enumerate(starts):
        changed = np.flatnonzero(np.abs(y[k + 1] - y[0]) > tol * scale)
        if changed.size == 0 or changed.max() < s:
            raise RuntimeError(f"the perturbation at sample {s} did not change the output; cannot measure look-ahead")
        ahead.append(int(s - changed[0]))
    return max(ahead)
