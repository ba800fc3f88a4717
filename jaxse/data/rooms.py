"""Synthetic room impulse responses (NumPy only) for users without an RIR set: ``synthetic_rir_prob``."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["synthetic_rir"]


def synthetic_rir(rng: np.random.Generator, *, sample_rate: int, t60_range) -> np.ndarray:
    """A float32 room response: direct path at tap 0, a few early reflections (2-30 ms), and a Gaussian tail decaying
    by 60 dB in ``t60 ~ U(t60_range)`` seconds at a direct-to-reverberant ratio ``~ U(0, 10)`` dB."""
    t60 = float(rng.uniform(*t60_range))
    taps = max(int(t60 * sample_rate), 16)
    t = np.arange(taps) / sample_rate
    tail = rng.standard_normal(taps) * np.exp(-3.0 * math.log(10.0) * t / t60)
    onset = int(0.0025 * sample_rate)
    tail[:onset] *= np.linspace(0.0, 1.0, onset, endpoint=False) if onset else 1.0
    drr = 10.0 ** (rng.uniform(0.0, 10.0) / 10.0)
    h = tail * math.sqrt(1.0 / (drr * max(float(np.sum(tail**2)), 1e-12)))
    for _ in range(int(rng.integers(3, 9))):
        k = int(rng.uniform(0.002, 0.03) * sample_rate)
        if k < taps:
            h[k] += rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.6) * math.exp(-3.0 * math.log(10.0) * t[k] / t60)
    h[0] = 1.0
    return h.astype(np.float32)
