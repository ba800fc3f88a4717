"""What every spectral model shares: the U-Net loop over an STFT (``SpectralUNet``), its time padding plan, and the
frequency geometry of strided and transposed convolutions.

Shapes: waveforms ``float32[batch, samples]``, spectra ``complex64[batch, frames, bins]`` (``bins = n_fft // 2 + 1``),
feature maps ``[batch, frames, freq, channels]``.
"""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxse import signal
from jaxse.signal import SAMPLE_RATE  # noqa: F401  (the models' sample rate; ``jaxse.models.__main__`` reads it here)


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


def check_waveform(noisy) -> None:
    if noisy.ndim != 2:
        raise ValueError(f"expected noisy audio float32[batch, samples], got shape {tuple(noisy.shape)}")


class TimePadding(NamedTuple):
    """Frames of zeros ``(left, right)`` padded along time before each encoder / decoder layer (offline pass).

    A layer whose kernel spans ``kt`` frames then looks ``kt - 1 - left`` frames ahead: output frame ``j`` uses the
    input frames ``j - left .. j - left + kt - 1``.
    """

    encoders: tuple[tuple[int, int], ...]
    decoders: tuple[tuple[int, int], ...]


class SpectralUNet(nn.Module):
    """Base of the spectral U-Nets (CRN, DCCRN): STFT, encoder, bottleneck, decoder with skip connections, mask,
    inverse STFT. ``__call__(noisy: float32[batch, samples], train=False) -> float32[batch, samples]``.

    A subclass has the fields ``n_fft, hop, win_length, window, kernel`` (time, freq), sets up the layer lists
    ``encoders`` and ``decoders`` (same length) and defines the hooks
      ``to_features(spec) -> x``               ``complex64[batch, frames, bins]`` -> ``[batch, frames, freq, 1]``
      ``encode_layer(i, x, train, time_pad)``  encoder block ``i``; its convolution pads ``time_pad`` frames
      ``bottleneck(x, carries) -> (x, carries)`` ``[batch, frames, freq, c]`` -> same, through the recurrent layers
      ``decode_layer(i, x, train, time_pad)``  decoder block ``i`` on ``x = (previous, skip)`` (concatenated along
                                               channels and padded by its convolution) or on one array
      ``from_mask(y, spec) -> spec``           network output ``[batch, frames, freq, 1]`` -> enhanced spectrum
      ``time_padding() -> TimePadding``        the time alignment of every layer (offline and streaming)
    and may override the framing (``analysis``/``synthesis`` offline; ``frame_start``, ``analyse_frame``,
    ``synthesise_frame``, ``overlap_add_gain`` for the streamer) and ``min_samples``. The offline pass
    (``enhance_spectrum``) and the streamer (``jaxse.inference.streamer``) both run on these hooks.
    """

    # -- framing (offline) ---------------------------------------------------------------------------------------
    def analysis(self, noisy: jnp.ndarray) -> jnp.ndarray:
        """``float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]`` (causal STFT)."""
        return signal.stft(noisy, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                           window_kind=self.window)

    def synthesis(self, spec: jnp.ndarray, length: int) -> jnp.ndarray:
        """``complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``."""
        return signal.istft(spec, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length, length=length,
                            window_kind=self.window)

    # -- framing (one frame at a time, for the streamer) ---------------------------------------------------------
    @property
    def frame_start(self) -> int:
        """First input sample of STFT frame 0 (causal framing: ``hop - win``, the frame ends with the first hop)."""
        return self.hop - self.win_length

    def analyse_frame(self, buf: jnp.ndarray) -> jnp.ndarray:
        """The last ``win`` samples ``float32[batch, win]`` -> their spectrum ``complex64[batch, 1, bins]``."""
        w = jnp.asarray(signal.window(self.window, self.win_length))
        return jnp.fft.rfft(buf * w, n=self.n_fft, axis=-1).astype(jnp.complex64)[:, None]

    def synthesise_frame(self, spec: jnp.ndarray) -> jnp.ndarray:
        """One enhanced frame ``complex64[batch, 1, bins]`` -> its overlap-add contribution ``float32[batch, win]``."""
        w = jnp.asarray(signal.window(self.window, self.win_length))
        return jnp.fft.irfft(spec[:, 0], n=self.n_fft, axis=-1)[:, : self.win_length] * w

    def overlap_add_gain(self) -> np.ndarray:
        """``float32[hop]``: factor of a finished overlap-add hop (the inverse window-square sum of ``istft``)."""
        w = signal.window(self.window, self.win_length).astype(np.float64)
        env = (w ** 2).reshape(self.win_length // self.hop, self.hop).sum(0)
        return (1.0 / env).astype(np.float32)

    # -- time alignment -------------------------------------------------------------------------------------------
    def time_padding(self) -> TimePadding:
        raise NotImplementedError

    @property
    def lookahead_frames(self) -> int:
        """Frames of input the network looks ahead (sum over its layers, ``TimePadding``)."""
        pads = self.time_padding()
        return sum(self.kernel[0] - 1 - left for left, _ in pads.encoders + pads.decoders)

    @property
    def min_frames(self) -> int:
        """Fewest STFT frames the offline pass accepts (layers without enough padding shrink the time axis)."""
        return 1 + sum(max(0, self.kernel[0] - 1 - left - right) for left, right in self.time_padding().encoders)

    @property
    def min_samples(self) -> int:
        """Fewest input samples the offline pass accepts."""
        return 1

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: one analysis window plus the network's look-ahead frames."""
        return self.win_length + self.lookahead_frames * self.hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / SAMPLE_RATE

    # -- offline pass ---------------------------------------------------------------------------------------------
    #: Whether ``from_mask`` multiplies the spectrum it is given bin by bin (a mask, linear in the spectrum: the
    #: DCCRNs), so that the mask estimated from the mixture can be applied to the clean speech alone
    #: (``with_speech_part``); the CRN maps magnitudes and is not a mask.
    masks_spectrum: ClassVar[bool] = False

    def enhance_spectrum(self, spec: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """``complex64[batch, frames, bins]`` -> enhanced ``complex64[batch, frames, bins]``."""
        return self.from_mask(self.network(spec, train), spec)

    def network(self, spec: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """``complex64[batch, frames, bins]`` -> the network's output ``[batch, frames, freq, 1]`` (the mask)."""
        if spec.shape[-2] < self.min_frames:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_frames} STFT frames "
                             f"({self.min_samples} samples), got {spec.shape[-2]}")
        pads = self.time_padding()
        x = self.to_features(spec)
        skips = []
        for i, (left, right) in enumerate(pads.encoders):
            x = self.encode_layer(i, x, train, (left, right))
            skips.append(x)
        x, _ = self.bottleneck(x)
        for i, pad in enumerate(pads.decoders):
            # The convolution concatenates and pads inside its backward unit: the training step keeps ``x`` and the
            # skip (which it holds anyway), not a padded copy of their concatenation.
            x = self.decode_layer(i, (x, skips[-1 - i]), train, pad)
        return x

    def __call__(self, noisy: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        check_waveform(noisy)
        if noisy.shape[-1] < self.min_samples:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_samples} samples, "
                             f"got {noisy.shape[-1]}")
        spec = self.analysis(noisy)
        return self.synthesis(self.enhance_spectrum(spec, train), noisy.shape[-1])

    def with_speech_part(self, noisy: jnp.ndarray, clean: jnp.ndarray, train: bool = False):
        """``(enhanced, speech_part)``, both ``float32[batch, samples]``: the enhanced mixture and the mask that the
        network estimated from ``noisy`` applied to ``clean`` alone, i.e. what the model lets through of the speech
        (``enhanced = speech_part + noise_part`` by linearity). For speech-distortion losses
        (``jaxse.losses.si_snr_sd``); only for models whose ``masks_spectrum`` is true."""
        if not self.masks_spectrum:
            raise ValueError(f"{type(self).__name__} does not mask the spectrum (it maps magnitudes): a loss on its "
                             "speech part (si_snr_sd) needs a DCCRN")
        check_waveform(noisy)
        if clean.shape != noisy.shape:
            raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} must have the same shape")
        spec = self.analysis(noisy)
        mask = self.network(spec, train)
        n = noisy.shape[-1]
        return (self.synthesis(self.from_mask(mask, spec), n),
                self.synthesis(self.from_mask(mask, self.analysis(clean)), n))
