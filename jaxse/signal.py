"""Short-time Fourier transform with causal framing, as pure JAX functions.

Shape convention (the whole package uses it):
  waveforms  float32[batch, samples]
  spectra    complex64[batch, frames, freqs]     freqs = n_fft // 2 + 1

Framing is causal: frame ``t`` covers the samples ``[t*hop - (win - hop), t*hop + hop)``, i.e. it *ends* with the
hop that arrived last. A streaming implementation can therefore emit frame ``t`` as soon as hop ``t`` is in, and the
overlap-add output of hop ``t`` is complete at the same moment, delayed by ``win - hop`` samples.

``stft`` appends ``win // hop - 1`` extra frames at the end so that every input sample is covered by the full set of
overlapping windows; ``istft(stft(x), length=len(x))`` then reconstructs ``x`` exactly (weighted overlap-add with the
least-squares normalisation ``sum_t w[n - t*hop]**2``) for any window whose overlap-added square never vanishes.
"""
from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

WINDOWS = ("sqrt_hann", "hann", "hamming", "rect")


@functools.lru_cache(maxsize=None)
def window(kind: str, length: int) -> np.ndarray:
    """Periodic analysis/synthesis window ``float32[length]``.

    ``sqrt_hann`` (default for both models): its square is a periodic Hann window, which overlap-adds to a constant
    at hop = win/2 (CRN) and win/4 (DCCRN), so analysis and synthesis can share it and the synthesis adds no
    amplitude ripple. The DCCRN authors' code and asteroid use the same window.
    """
    n = np.arange(length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / length)
    if kind == "sqrt_hann":
        w = np.sqrt(hann)
    elif kind == "hann":
        w = hann
    elif kind == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * n / length)
    elif kind == "rect":
        w = np.ones(length)
    else:
        raise ValueError(f"unknown window {kind!r}; valid: {', '.join(WINDOWS)}")
    return w.astype(np.float32)


def num_frames(num_samples: int, *, hop: int, win_length: int) -> int:
    """Frames that ``stft`` returns for ``num_samples`` samples (full window coverage of every sample)."""
    return math.ceil(num_samples / hop) + math.ceil(win_length / hop) - 1


def _check(n_fft: int, hop: int, win_length: int) -> None:
    if not (0 < hop <= win_length <= n_fft):
        raise ValueError(f"need 0 < hop <= win_length <= n_fft, got hop={hop}, win_length={win_length}, n_fft={n_fft}")


def stft(x: jnp.ndarray, *, n_fft: int, hop: int, win_length: int, window_kind: str = "sqrt_hann") -> jnp.ndarray:
    """Causal STFT. ``x: float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]``.

    ``frames = num_frames(samples, hop=hop, win_length=win_length)``. The signal is padded with ``win - hop`` zeros
    on the left and zeros on the right up to the last frame. Unscaled: ``X[t, k] = sum_n w[n] x_t[n] e^{-2i pi kn/N}``.
    """
    _check(n_fft, hop, win_length)
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[-1]
    frames = num_frames(n, hop=hop, win_length=win_length)
    left = win_length - hop
    total = (frames - 1) * hop + win_length
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(left, total - left - n)])
    idx = np.arange(frames)[:, None] * hop + np.arange(win_length)[None, :]
    segments = xp[..., idx] * window(window_kind, win_length)
    return jnp.fft.rfft(segments, n=n_fft, axis=-1).astype(jnp.complex64)


def overlap_add(frames: jnp.ndarray, hop: int) -> jnp.ndarray:
    """Overlap-add ``float32[..., frames, win]`` with frame advance ``hop`` -> ``float32[..., (frames-1)*hop + win]``.

    Written as ``ceil(win / hop)`` shifted sums of hop-sized blocks (no scatter), which XLA fuses well on CPU.
    """
    t, win = frames.shape[-2:]
    k = math.ceil(win / hop)
    frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, k * hop - win)])
    blocks = frames.reshape(frames.shape[:-1] + (k, hop))
    lead = [(0, 0)] * (frames.ndim - 2)
    out = sum(jnp.pad(blocks[..., j, :], lead + [(j, k - 1 - j), (0, 0)]) for j in range(k))
    out = out.reshape(out.shape[:-2] + ((t + k - 1) * hop,))
    return out[..., : (t - 1) * hop + win]


@functools.lru_cache(maxsize=None)
def _envelope(frames: int, hop: int, win_length: int, window_kind: str) -> np.ndarray:
    w2 = np.tile(window(window_kind, win_length).astype(np.float64) ** 2, (frames, 1))
    env = np.zeros((frames - 1) * hop + win_length)
    for t in range(frames):
        env[t * hop : t * hop + win_length] += w2[t]
    return np.maximum(env, 1e-8).astype(np.float32)


def istft(
    spec: jnp.ndarray, *, n_fft: int, hop: int, win_length: int, length: int, window_kind: str = "sqrt_hann"
) -> jnp.ndarray:
    """Inverse of ``stft``. ``spec: complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``.

    Weighted overlap-add: ``y[n] = sum_t w[n - t*hop] x_t[n - t*hop] / sum_t w[n - t*hop]**2``.
    """
    _check(n_fft, hop, win_length)
    frames = spec.shape[-2]
    seg = jnp.fft.irfft(spec, n=n_fft, axis=-1)[..., :win_length] * window(window_kind, win_length)
    y = overlap_add(seg.astype(jnp.float32), hop) / _envelope(frames, hop, win_length, window_kind)
    left = win_length - hop
    if left + length > y.shape[-1]:
        raise ValueError(f"istft: {frames} frames cover {y.shape[-1] - left} samples, fewer than length={length}")
    return y[..., left : left + length]
