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

#: The sample rate of every model and pipeline (Hz).
SAMPLE_RATE = 16000

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


# ----------------------------------------------------------------------------------------------------------------
# asteroid's STFT (asteroid_filterbanks ``STFTFB``): the framing and scaling of converted asteroid models
# ----------------------------------------------------------------------------------------------------------------
def asteroid_num_frames(num_samples: int, *, hop: int, win_length: int) -> int:
    """Frames that ``asteroid_stft`` returns: ``(samples - win) // hop + 1`` (no padding; 0 if shorter than a window)."""
    return max(0, (num_samples - win_length) // hop + 1)


def _asteroid_scale(n_fft: int, hop: int, win_length: int) -> np.ndarray:
    """Per-bin analysis scale ``float32[n_fft // 2 + 1]``: ``1 / s`` with ``s = sqrt(win * n_fft / hop) / 2``, and an
    extra ``1 / sqrt(2)`` on the DC and Nyquist bins (asteroid_filterbanks' normalisation, which makes its
    analysis/synthesis pair an identity where ``win / hop`` frames overlap)."""
    scale = np.full(n_fft // 2 + 1, 1.0 / (0.5 * math.sqrt(win_length * n_fft / hop)))
    scale[0] /= math.sqrt(2.0)
    scale[n_fft // 2] /= math.sqrt(2.0)
    return scale.astype(np.float32)


def asteroid_stft(x: jnp.ndarray, *, n_fft: int, hop: int, win_length: int,
                  window_kind: str = "sqrt_hann") -> jnp.ndarray:
    """asteroid's STFT. ``x: float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]``.

    ``frames = asteroid_num_frames(samples)``: frame ``t`` covers samples ``[t*hop, t*hop + win)``, no padding on
    either side (so frames look ahead of the causal framing above by ``win - hop`` samples). The windowed frame sits
    in the middle of the ``n_fft``-point DFT (``(n_fft - win) // 2`` zeros before it), so the phase is referenced to
    that centred origin, and bins are scaled by ``_asteroid_scale``:
    ``X[t, k] = scale[k] * sum_j w[j] x[t*hop + j] e^{-2i pi k (j + lpad) / n_fft}``.
    """
    _check(n_fft, hop, win_length)
    x = jnp.asarray(x, jnp.float32)
    frames = asteroid_num_frames(x.shape[-1], hop=hop, win_length=win_length)
    if frames < 1:
        raise ValueError(f"asteroid_stft: {x.shape[-1]} samples are fewer than one window ({win_length})")
    idx = np.arange(frames)[:, None] * hop + np.arange(win_length)[None, :]
    segments = x[..., idx] * window(window_kind, win_length)
    lpad = (n_fft - win_length) // 2
    segments = jnp.pad(segments, [(0, 0)] * (segments.ndim - 1) + [(lpad, n_fft - win_length - lpad)])
    spec = jnp.fft.rfft(segments, n=n_fft, axis=-1) * _asteroid_scale(n_fft, hop, win_length)
    return spec.astype(jnp.complex64)


def asteroid_istft(spec: jnp.ndarray, *, n_fft: int, hop: int, win_length: int, length: int,
                   window_kind: str = "sqrt_hann") -> jnp.ndarray:
    """asteroid's inverse STFT (a transposed 1-D convolution with the analysis filters, no window-sum division).

    ``spec: complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``: overlap-add of
    ``frame_t[j] = w[j] * sum_k Re(spec[t, k] e^{2i pi k (j + lpad) / n_fft}) * scale[k] * c_k`` (``c_k = 2`` except
    1 on DC and Nyquist; their imaginary parts are ignored) at offset ``t * hop``, which is
    ``(frames - 1) * hop + win`` samples long, then zero-padded or cut on the right to ``length`` (asteroid's
    ``pad_x_to_y``).
    """
    _check(n_fft, hop, win_length)
    # irfft weighs interior bins 2 / n_fft and DC/Nyquist 1 / n_fft; asteroid weighs them all scale[k].
    gain = _asteroid_scale(n_fft, hop, win_length) * (n_fft / 2.0)
    gain[0] *= 2.0
    gain[n_fft // 2] *= 2.0
    lpad = (n_fft - win_length) // 2
    seg = jnp.fft.irfft(spec * gain, n=n_fft, axis=-1)[..., lpad : lpad + win_length]
    y = overlap_add((seg * window(window_kind, win_length)).astype(jnp.float32), hop)
    if y.shape[-1] >= length:
        return y[..., :length]
    return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
