"""Pieces every spectral model shares: the waveform <-> spectrum wrapper, time padding, U-Net frequency geometry."""
from __future__ import annotations

import jax.numpy as jnp

from jaxse import signal

SAMPLE_RATE = 16000


def pad_time(x: jnp.ndarray, left: int, right: int) -> jnp.ndarray:
    """Zero-pad ``x: [batch, time, ...]`` along time."""
    return jnp.pad(x, [(0, 0), (left, right)] + [(0, 0)] * (x.ndim - 2))


def conv_out(f: int, k: int, s: int, p: int) -> int:
    """Output length of a strided convolution with symmetric padding ``p``."""
    return (f + 2 * p - k) // s + 1


def transposed_pad(f_in: int, f_out: int, k: int, s: int, p: int) -> tuple[int, int]:
    """Frequency padding that makes an input-dilated convolution the transposed convolution (kernel ``k``, stride
    ``s``, padding ``p``) mapping ``f_in`` bins back to ``f_out`` (the output padding is derived, as in PyTorch's
    ``output_padding``)."""
    extra = f_out - ((f_in - 1) * s - 2 * p + k)
    if not 0 <= extra < s:
        raise ValueError(f"cannot map {f_in} -> {f_out} bins with kernel {k}, stride {s}, padding {p}")
    return k - 1 - p, k - 1 - p + extra


class SpectralMixin:
    """Waveform interface for models that work on an STFT. Expects fields ``n_fft, hop, win_length, window``."""

    def analysis(self, noisy: jnp.ndarray) -> jnp.ndarray:
        """``float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]``."""
        return signal.stft(noisy, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                           window_kind=self.window)

    def synthesis(self, spec: jnp.ndarray, length: int) -> jnp.ndarray:
        """``complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``."""
        return signal.istft(spec, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length, length=length,
                            window_kind=self.window)

    @property
    def lookahead_frames(self) -> int:
        return 0

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: one analysis window plus the network's look-ahead frames."""
        return self.win_length + self.lookahead_frames * self.hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / SAMPLE_RATE


def check_waveform(noisy) -> None:
    if noisy.ndim != 2:
        raise ValueError(f"expected noisy audio float32[batch, samples], got shape {tuple(noisy.shape)}")
