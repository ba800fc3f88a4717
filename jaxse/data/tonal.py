"""Synthetic tonal interferers (NumPy only) for training: ``data.tonal_prob``.

The test split's -5 dB misses are sounds that look like voices to the network: a whistling wind (a tone gliding at
250-1,000 Hz), animal calls (pitched bursts at 500-2,000 Hz), a ferry horn (a steady harmonic tone). At -5 dB such
a sound is louder than the voice and pitched like one, and the network passes the whole mixture. Our noise
recordings (game sound effects) have few sustained tones, so, as with the white, pink and brown noise kinds, these
are generated: each is 1-3 sources, every source a harmonic tone (fundamental 80-2,000 Hz, log-uniform) with a
glide of up to an octave, vibrato, a random harmonic roll-off (a pure whistle to a buzzy horn, odd harmonics only
at times), either steady or cut into calls of 0.08-0.6 s with their own pitches. No voices and no recordings.
"""
from __future__ import annotations

import numpy as np

__all__ = ["random_tonal"]

_TOP_HZ = 7600.0  # no harmonic above this (below the Nyquist frequency of 16 kHz audio)


def _source(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """``f64[n]``: one harmonic source, unit RMS where it sounds (steady, or calls with gaps)."""
    t = np.arange(n) / sr
    f0 = np.exp(rng.uniform(np.log(80.0), np.log(2000.0)))
    glide = 2.0 ** (rng.uniform(-1.0, 1.0) * t / max(t[-1], 1e-9))  # up to an octave over the crop
    vibrato = 1.0 + rng.uniform(0.0, 0.06) * np.sin(2 * np.pi * rng.uniform(0.0, 8.0) * t + rng.uniform(0, 6.3))
    gate = np.ones(n)
    if rng.random() < 0.5:  # calls: bursts with their own pitch, gaps between
        gate[:], i = 0.0, int(rng.integers(0, max(n // 4, 1)))
        while i < n:
            m = int(rng.uniform(0.08, 0.6) * sr)
            gate[i : i + m] = np.hanning(m + 2)[1:-1][: n - i] ** 0.5
            glide[i : i + m] *= 2.0 ** rng.uniform(-0.5, 0.5)
            i += m + int(rng.uniform(0.05, 0.5) * sr)
    freq = f0 * glide * vibrato  # Hz per sample
    phase = 2 * np.pi * np.cumsum(freq) / sr
    roll, step = rng.uniform(0.3, 3.0), (2 if rng.random() < 0.3 else 1)
    x = np.zeros(n)
    for k in range(1, int(_TOP_HZ // (f0 * 0.5)) + 1, step):
        audible = k * freq < _TOP_HZ
        if not audible.any():
            break
        x += np.where(audible, np.sin(k * phase + rng.uniform(0, 2 * np.pi)), 0.0) * k**-roll
    x *= gate
    r = np.sqrt(np.mean(x**2))
    return x / r if r > 0 else x


def random_tonal(rng: np.random.Generator, n: int, *, sample_rate: int) -> np.ndarray:
    """``f32[n]``: the sum of 1-3 random harmonic sources (:func:`_source`) at -6..0 dB from each other, RMS 1."""
    x = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        x += _source(rng, n, sample_rate) * 10 ** (rng.uniform(-6.0, 0.0) / 20)
    r = np.sqrt(np.mean(x**2))
    return (x / r if r > 0 else x).astype(np.float32)
