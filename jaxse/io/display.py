"""Pictures of audio for people (numpy only): the log spectrogram that evaluation plots and TensorBoard show."""
from __future__ import annotations

import numpy as np


def log_spectrogram(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Log-magnitude spectrogram in dB ``[n_fft // 2 + 1, frames]`` of ``x: float[samples]`` (Hann window)."""
    x = np.asarray(x, np.float64)
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    count = 1 + (x.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1)).T
    return 20.0 * np.log10(spec + 1e-8)


def spectrogram_image(x: np.ndarray, n_fft: int = 512, hop: int = 128, range_db: float = 80.0) -> np.ndarray:
    """``float[samples]`` -> image ``float32[freq (low at the bottom), frames]`` in [0, 1] (the top ``range_db``)."""
    db = log_spectrogram(x, n_fft, hop)
    db = np.clip(db - db.max() + range_db, 0.0, range_db) / range_db
    return db[::-1].astype(np.float32)
