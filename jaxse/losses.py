"""Training losses as pure functions of waveforms ``float32[batch, samples]``; each returns ``float32[batch]``.

Reduce with ``.mean()`` for a scalar loss. All are jit- and vmap-safe and finite (with finite gradients) on silent
or all-zero signals.
"""
from __future__ import annotations

import jax.numpy as jnp

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
    def mag(x):
        s = signal.stft(x, n_fft=n_fft, hop=hop, win_length=win_length)
        return jnp.sqrt(s.real * s.real + s.imag * s.imag + EPS * EPS)

    return jnp.mean((mag(estimate) - mag(target)) ** 2, axis=(-2, -1))


LOSSES = {"si_snr": neg_si_snr, "magnitude_mse": magnitude_mse}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name]
