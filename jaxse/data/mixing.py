"""On-the-fly mixing as TensorFlow ops (run by tf.data's parallel map, off the Python GIL), and synthetic rooms.

Per example: ``speech f32[n]`` (a clean crop), ``noise f32[n]`` (a noise crop, or unused when synthetic), ``rir
f32[taps]`` (``taps == 0``: dry), ``snr_db``, ``level_db``. ``synthetic_rir`` (:mod:`jaxse.data.rooms`) is NumPy,
drawn with the example's Generator like every other random choice of the pipeline.
"""
from __future__ import annotations

import tensorflow as tf

from jaxse.data.rooms import synthetic_rir

__all__ = ["NOISE_KINDS", "synthetic_noise", "convolve_aligned", "mix", "synthetic_rir"]

NOISE_KINDS = ("white", "pink", "brown")  # power spectra 1, 1/f, 1/f^2


def _rms(x: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


def synthetic_noise(kind: tf.Tensor, n: int, seed: tf.Tensor) -> tf.Tensor:
    """Unit-RMS float32 ``[n]`` noise of ``NOISE_KINDS[kind]`` from the stateless seed ``int64[2]`` (no DC)."""
    white = tf.random.stateless_normal([n], seed=seed, dtype=tf.float32)
    alpha = tf.gather(tf.constant([0.0, 0.5, 1.0]), kind)  # amplitude slope: f^-alpha
    f = tf.range(n // 2 + 1, dtype=tf.float32)
    scale = tf.where(f > 0, tf.pow(tf.maximum(f, 1.0), -alpha), 0.0)
    x = tf.signal.irfft(tf.signal.rfft(white) * tf.cast(scale, tf.complex64), [n])
    return x / tf.maximum(_rms(x), 1e-12)


def convolve_aligned(x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    """``(x * h)[d : d + n]`` by FFT, ``d = argmax |h|`` (the direct path), ``n = len(x)``: reverberant speech that
    stays time-aligned with the dry speech."""
    n = tf.shape(x)[0]
    m = n + tf.shape(h)[0] - 1
    nfft = (m + 4095) // 4096 * 4096
    y = tf.signal.irfft(tf.signal.rfft(x, [nfft]) * tf.signal.rfft(h, [nfft]), [nfft])
    d = tf.argmax(tf.abs(h), output_type=tf.int32)
    return y[d : d + n]


def mix(speech: tf.Tensor, noise: tf.Tensor, target: tf.Tensor, snr_db: tf.Tensor, level_db: tf.Tensor):
    """``(noisy, target)`` float32 ``[n]``: noise scaled to ``snr_db`` w.r.t. ``speech`` (kept at unit RMS when the
    speech is silent), both scaled so the mixture RMS is ``level_db`` dBFS, then down together if ``|noisy| > 0.99``."""
    s_rms, n_rms = _rms(speech), tf.maximum(_rms(noise), 1e-12)
    noise = tf.where(s_rms > 0, noise * (s_rms / (n_rms * tf.pow(10.0, snr_db / 20.0))), noise / n_rms)
    noisy = speech + noise
    gain = tf.pow(10.0, level_db / 20.0) / tf.maximum(_rms(noisy), 1e-12)
    peak = tf.reduce_max(tf.abs(noisy)) * gain
    gain = tf.where(peak > 0.99, gain * 0.99 / tf.maximum(peak, 1e-12), gain)
    return noisy * gain, target * gain
