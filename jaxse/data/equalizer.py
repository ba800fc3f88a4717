"""Random equalisation (NumPy only) of training audio: ``noise_eq_prob`` / ``speech_eq_prob``.

A recording's spectral balance depends on the source, the microphone and the room; a network that has heard our
noise recordings only with their own balance can miss the same kind of sound tilted another way (wind: almost all of
its energy below 500 Hz). Each draw is a smooth gain curve over log-frequency, the sum of a low shelf, a high shelf
and one bell, each with a gain ``~ U(db_range)`` dB (the kinds of filter DeepFilterNet's training draws, as
described in its papers), applied in the frequency domain (zero phase).
"""
from __future__ import annotations

import numpy as np

__all__ = ["random_eq_db", "random_eq"]


def random_eq_db(rng: np.random.Generator, freqs: np.ndarray, db_range) -> np.ndarray:
    """``f64[len(freqs)]``: a random gain curve in dB at ``freqs`` (Hz). Low shelf at 80-1,000 Hz, high shelf at
    1-6 kHz, a bell at 150 Hz-6 kHz 0.3-1.5 octaves wide (log-uniform corners), each gain ``~ U(db_range)``."""
    lo, hi = float(db_range[0]), float(db_range[1])
    f = np.maximum(np.asarray(freqs, np.float64), 1.0)
    low_fc, high_fc, bell_fc = np.exp(rng.uniform(np.log([80.0, 1000.0, 150.0]), np.log([1000.0, 6000.0, 6000.0])))
    bell_width = rng.uniform(0.3, 1.5)
    g_low, g_high, g_bell = rng.uniform(lo, hi, size=3)
    low = 1.0 / (1.0 + (f / low_fc) ** 2)
    high = 1.0 - 1.0 / (1.0 + (f / high_fc) ** 2)
    bell = np.exp(-0.5 * (np.log2(f / bell_fc) / bell_width) ** 2)
    return g_low * low + g_high * high + g_bell * bell


def random_eq(rng: np.random.Generator, x: np.ndarray, *, sample_rate: int, db_range) -> np.ndarray:
    """``f32[samples]``: ``x`` (``[samples]``) through a random curve of :func:`random_eq_db`, RMS kept (the mix
    sets the levels afterwards; a silent ``x`` stays silent)."""
    n = len(x)
    if n == 0:
        return x.astype(np.float32)
    spec = np.fft.rfft(x.astype(np.float64))
    gain = 10.0 ** (random_eq_db(rng, np.fft.rfftfreq(n, 1.0 / sample_rate), db_range) / 20.0)
    y = np.fft.irfft(spec * gain, n)
    r_in, r_out = np.sqrt(np.mean(np.square(x, dtype=np.float64))), np.sqrt(np.mean(y**2))
    return (y * (r_in / r_out if r_out > 0 else 0.0)).astype(np.float32)
