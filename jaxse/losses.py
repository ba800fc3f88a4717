"""Training losses as pure functions of waveforms ``float32[batch, samples]``; each returns ``float32[batch]``.

Reduce with ``.mean()`` for a scalar loss. All are jit- and vmap-safe and finite (with finite gradients) on silent
or all-zero signals.
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse import signal

EPS = 1e-8


def si_snr(estimate: jnp.ndarray, target: jnp.ndarray, eps: float = EPS) -> jnp.ndarray:
    """Scale-invariant SNR in dB, per example.

    With zero-mean ``s`` (target) and ``s_hat`` (estimate):
    ``s_t = <s_hat, s> s / (||s||^2 + eps)``, ``e = s_hat - s_t``,
    ``SI-SNR = 10 log10((||s_t||^2 + eps) / (||e||^2 + eps))``.
    Invariant to rescaling the estimate; an all-zero target gives a finite value (about 0 dB for a zero estimate).
    Shapes: ``[batch, samples]`` -> ``[batch]``.
    """
    estimate = estimate - estimate.mean(-1, keepdims=True)
    target = target - target.mean(-1, keepdims=True)
    dot = jnp.sum(estimate * target, -1, keepdims=True)
    s_t = dot * target / (jnp.sum(target * target, -1, keepdims=True) + eps)
    e = estimate - s_t
    return 10.0 * (jnp.log10(jnp.sum(s_t * s_t, -1) + eps) - jnp.log10(jnp.sum(e * e, -1) + eps))


def neg_si_snr(estimate: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """``-SI-SNR`` (the DCCRN training loss), per example ``[batch]``."""
    return -si_snr(estimate, target)


def magnitude_mse(estimate: jnp.ndarray, target: jnp.ndarray, *, n_fft: int = 320, hop: int = 160,
                  win_length: int = 320) -> jnp.ndarray:
    """Mean squared error between STFT magnitudes (the CRN training target), per example ``[batch]``.

    ``mean_{t,f} (|STFT(estimate)| - |STFT(target)|)^2`` with the CRN's STFT settings by default. The magnitude is
    computed as ``sqrt(re^2 + im^2 + eps^2)`` so the gradient stays finite at zero.
    """
    mag = lambda x: _stft_magnitude(x, n_fft, hop, win_length, EPS * EPS)  # noqa: E731
    return jnp.mean((mag(estimate) - mag(target)) ** 2, axis=(-2, -1))


def _stft_magnitude(x: jnp.ndarray, n_fft: int, hop: int, win_length: int, floor: float) -> jnp.ndarray:
    """``sqrt(|STFT(x)|^2 + floor)``: ``[batch, frames, freqs]``, with a finite gradient at zero."""
    s = signal.stft(x, n_fft=n_fft, hop=hop, win_length=win_length)
    return jnp.sqrt(s.real * s.real + s.imag * s.imag + floor)


# (n_fft, hop, window) of the multi-resolution STFT loss: 16, 32 and 64 ms windows at 75 % overlap.
MRSTFT_RESOLUTIONS = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))


def multi_resolution_stft(estimate: jnp.ndarray, target: jnp.ndarray, *,
                          resolutions=MRSTFT_RESOLUTIONS) -> jnp.ndarray:
    """Multi-resolution STFT magnitude loss, per example ``[batch]``.

    For each resolution, the spectral convergence ``||S| - |S_hat||_F / ||S||_F`` plus the mean absolute difference
    of the log magnitudes ``mean |log |S| - log |S_hat||``; averaged over the resolutions. Unlike SI-SNR it looks at
    magnitudes only, band by band, which tracks perceptual measures (PESQ) more closely and punishes residual noise
    in quiet bands that a waveform loss barely sees. Shapes: ``[batch, samples]`` -> ``[batch]``.
    """
    total = 0.0
    for n_fft, hop, win in resolutions:
        m_hat, m = (_stft_magnitude(x, n_fft, hop, win, 1e-7) for x in (estimate, target))
        sc = jnp.sqrt(jnp.sum((m - m_hat) ** 2, axis=(-2, -1))) / (jnp.sqrt(jnp.sum(m * m, axis=(-2, -1))) + 1e-7)
        log_mag = jnp.mean(jnp.abs(jnp.log(m) - jnp.log(m_hat)), axis=(-2, -1))
        total = total + sc + log_mag
    return total / len(resolutions)


MRSTFT_WEIGHT = 10.0  # one unit of the STFT loss counts as much as 10 dB of SI-SNR


def si_snr_mrstft(estimate: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """``-SI-SNR + 10 * multi_resolution_stft`` per example ``[batch]``: the waveform loss of DCCRN plus a
    spectral magnitude term (the two are of similar size on speech: a few dB of SI-SNR per tenth of the STFT loss)."""
    return neg_si_snr(estimate, target) + MRSTFT_WEIGHT * multi_resolution_stft(estimate, target)


# The short-time objective intelligibility measure (STOI, Taal et al., IEEE TASLP 2011) at 16 kHz: 25 ms frames
# (400 samples, 512-point FFT) every 12.5 ms, 15 one-third-octave bands with centres 150 Hz * 2^(k/3), segments of
# 30 frames (384 ms) sliding frame by frame.
ENV_FFT, ENV_WIN, ENV_HOP, ENV_BANDS, ENV_SEGMENT = 512, 400, 200, 15, 30


@functools.lru_cache(maxsize=None)
def _third_octave_matrix(n_fft: int = ENV_FFT, rate: int = signal.SAMPLE_RATE, bands: int = ENV_BANDS):
    """``float32[n_fft // 2 + 1, bands]``: 1 where an FFT bin lies in a one-third-octave band (STOI's bands)."""
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    centres = 150.0 * 2.0 ** (np.arange(bands) / 3.0)
    lo, hi = centres * 2.0 ** (-1 / 6), centres * 2.0 ** (1 / 6)
    return ((freqs[:, None] >= lo[None]) & (freqs[:, None] < hi[None])).astype(np.float32)


def envelope_correlation(estimate: jnp.ndarray, target: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
    """A differentiable short-time intelligibility score in about [-1, 1], per example ``[batch]``; STOI without its
    clipping and silent-frame removal.

    Both signals' one-third-octave band envelopes (the magnitude of 15 bands, 150 Hz to 4.3 kHz) are cut into 384 ms
    segments; the score is the mean over bands and segments of the correlation coefficient between the target's
    and the estimate's envelope in the segment. Unlike SI-SNR it is not energy-weighted: the weak bands and quiet
    syllables count as much as the loud vowels, as they do for STOI. Shapes: ``[batch, samples]`` -> ``[batch]``
    (needs at least ``ENV_SEGMENT`` frames, about 0.4 s).
    """
    bands = jnp.asarray(_third_octave_matrix())

    def envelopes(x):  # [batch, frames, bands]
        s = signal.stft(x, n_fft=ENV_FFT, hop=ENV_HOP, win_length=ENV_WIN, window_kind="hann")
        return jnp.sqrt((s.real * s.real + s.imag * s.imag) @ bands + eps)

    e, t = envelopes(estimate), envelopes(target)
    frames = t.shape[-2]
    if frames < ENV_SEGMENT:
        raise ValueError(f"envelope_correlation needs at least {ENV_SEGMENT} frames ({ENV_SEGMENT * ENV_HOP} "
                         f"samples), got {frames}")
    idx = np.arange(frames - ENV_SEGMENT + 1)[:, None] + np.arange(ENV_SEGMENT)[None, :]  # [segments, 30]
    e, t = e[..., idx, :], t[..., idx, :]  # [batch, segments, 30, bands]
    e = e - e.mean(-2, keepdims=True)
    t = t - t.mean(-2, keepdims=True)
    corr = jnp.sum(e * t, -2) / jnp.sqrt((jnp.sum(e * e, -2) + eps) * (jnp.sum(t * t, -2) + eps))
    return corr.mean(axis=(-2, -1))


SD_WEIGHT = 0.5  # default dB of the speech part's SI-SNR counted per dB of the output's


def input_snr(target: jnp.ndarray, mixture: jnp.ndarray, eps: float = EPS) -> jnp.ndarray:
    """The mixture's SNR in dB, ``10 log10(||target||^2 / ||mixture - target||^2)``: ``[batch, samples]`` -> ``[batch]``."""
    noise = mixture - target
    return 10.0 * (jnp.log10(jnp.sum(target * target, -1) + eps) - jnp.log10(jnp.sum(noise * noise, -1) + eps))


def si_snr_sd(estimate: jnp.ndarray, target: jnp.ndarray, speech_part: jnp.ndarray, mixture=None, *,
              sd_weight: float = SD_WEIGHT, sd_mid_snr: float = 0.0, sd_ramp_db: float = 0.0,
              stoi_weight: float = 0.0, speech_stoi_weight: float = 0.0) -> jnp.ndarray:
    """``-SI-SNR(estimate) - w * SI-SNR(speech_part)`` per example ``[batch]``: the DCCRN loss plus a speech
    distortion term (after the weighted speech-distortion losses of Xia et al., ICASSP 2020).

    ``speech_part``: the model's mask, estimated from the mixture, applied to the clean speech alone
    (``SpectralUNet.with_speech_part``). The output's SI-SNR weighs removed speech and residual noise alike; the
    second term counts the speech the mask removes or distorts once more, so the model keeps speech it is unsure of
    (quiet onsets, unusual voices) rather than cutting it. ``w`` trades noise removed for speech kept: ``sd_weight``
    (0: plain SI-SNR), or, with ``sd_ramp_db > 0`` and the ``mixture``, ``sd_weight * sigmoid((SNR - sd_mid_snr) /
    sd_ramp_db)`` of the example's input SNR: at high SNR the speech is what matters (the noise is already low), at
    low SNR the noise. ``stoi_weight > 0`` adds ``stoi_weight * (1 - envelope_correlation(estimate, target))``, a
    short-time intelligibility term on the output (dB of SI-SNR per unit of the STOI-like score);
    ``speech_stoi_weight > 0`` the same on the speech part, ``speech_stoi_weight * ramp * (1 -
    envelope_correlation(speech_part, target))`` with the SNR ramp above (1 without one): a speech-distortion term
    that, unlike the speech part's SI-SNR, counts weak bands and quiet syllables as STOI does. The config's
    ``loss_options`` sets them. Shapes: ``[batch, samples]`` each -> ``[batch]``.
    """
    ramp = 1.0
    if sd_ramp_db > 0:
        if mixture is None:
            raise ValueError("si_snr_sd with sd_ramp_db > 0 needs the mixture (its input SNR sets the weight)")
        snr = lax.stop_gradient(input_snr(target, mixture))
        ramp = jax.nn.sigmoid((snr - sd_mid_snr) / sd_ramp_db)
    loss = -si_snr(estimate, target) - sd_weight * ramp * si_snr(speech_part, target)
    if stoi_weight:
        loss = loss + stoi_weight * (1.0 - envelope_correlation(estimate, target))
    if speech_stoi_weight:
        loss = loss + speech_stoi_weight * ramp * (1.0 - envelope_correlation(speech_part, target))
    return loss


si_snr_sd.needs_speech_part = True  # the training step passes the speech part (SpectralUNet.with_speech_part)

LOSSES = {"si_snr": neg_si_snr, "magnitude_mse": magnitude_mse, "si_snr_mrstft": si_snr_mrstft,
          "si_snr_sd": si_snr_sd}


def get_loss(name: str, **options):
    """The loss ``name`` of ``LOSSES``, with its keyword ``options`` bound (a ``ValueError`` names an option it does
    not take); the bound loss keeps the function's attributes (its ``needs_speech_part`` mark)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    fn = LOSSES[name]
    if not options:
        return fn
    takes = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for key, value in options.items():
        if key not in takes:
            raise ValueError(f"loss {name!r} has no option {key!r} (its options: {', '.join(takes) or 'none'})")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"loss {name!r} option {key!r} must be a number, got {value!r}")
    return functools.update_wrapper(functools.partial(fn, **options), fn)  # keeps marks such as needs_speech_part
