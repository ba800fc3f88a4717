"""DCCRN: deep complex convolution recurrent network (Hu et al., Interspeech 2020).

Signal path for ``noisy: float32[batch, samples]``:

  STFT (win 400 = 25 ms, hop 100 = 6.25 ms, FFT 512, sqrt-Hann)   -> complex64[batch, frames, 257]
  drop the DC bin (as the authors do)                             -> complex64[batch, frames, 256, 1]
  encoder: 6 x [complex Conv2D kernel (time 2, freq 5), stride 2 in frequency, complex BN, PReLU]
                                                                  -> complex64[batch, frames, 4, C6]
  bottleneck: complex LSTM (DCCRN-CL) or real LSTM on [re, im] (DCCRN-R/C/E), then a dense layer
  decoder: 6 x [concat(previous, encoder skip) on channels, complex transposed Conv2D stride 2 in frequency,
           BN + PReLU except on the last layer]                   -> complex64[batch, frames, 256] mask
  mask (E, C or R) applied to the noisy spectrum, DC bin restored as zero, iSTFT -> float32[batch, samples]

Channel counting: the paper counts a complex channel as two (real + imaginary), so its DCCRN-CL plan
"32-64-128-256-256-256" is ``channels=(16, 32, 64, 128, 128, 128)`` complex channels here, and the DCCRN-R/C/E plan
"16-32-64-128-256-256" is ``(8, 16, 32, 64, 128, 128)``. Parameter counts count a complex parameter as two reals.

Time alignment. Encoder convolutions are causal (one frame of left padding). The authors' decoder keeps the last of
the two frames each transposed convolution produces, i.e. looks one frame ahead per layer: ``decoder="paper"``
has 6 frames = 37.5 ms of look-ahead, 62.5 ms algorithmic latency with the window. ``decoder="causal"`` keeps the
first frame instead: zero look-ahead, 25 ms latency, 31.25 ms window + hop (fits the DNS Challenge 40 ms rule).

Conventions (field ``convention``). ``"paper"`` (default) is the network described above. ``"asteroid"`` computes
exactly what asteroid 0.7.0's ``DCCRNet`` computes, so its pretrained weights can be imported
(``python -m jaxse.convert asteroid-dccrnet``; model name ``dccrn-cl-asteroid``):
  STFT   asteroid_filterbanks framing: frame t covers samples [t*hop, t*hop + win), no padding, so
         (samples - win) // hop + 1 frames; scaled by 1 / (sqrt(win * n_fft / hop) / 2), DC and Nyquist by a further
         1/sqrt(2); phase of the centred 512-point DFT (``signal.asteroid_stft`` / ``asteroid_istft``). The output is
         the overlap-add cut or zero-padded on the right to the input length.
  bins   the *Nyquist* bin is dropped (not DC); the enhanced spectrum gets a zero Nyquist bin.
  time   encoders are not padded in time: each eats one frame (output frame t uses frames t, t+1), the bottleneck
         sees frames - 6; each decoder pads one frame on both sides (a transposed convolution, output frame t uses
         t-1, t) and grows it back. Look-ahead 6 frames, like the paper decoder, but in the encoder.
  layers ``norm="real"`` (BN on re/im parts) and a PReLU with separate real/imaginary slopes (``ReImPReLU``);
         convolutions followed by BN have no bias; mask E with asteroid's bound
         ``tanh(sqrt(|Z|^2 + 1e-8)) Z / |Z|`` (``asteroid_bound_mask``).
It needs ``rnn="complex"``, ``mask="E"``, ``norm="real"``, ``kernel=(2, 5)`` and the default ``decoder``, and at
least ``win + len(channels) * hop`` input samples.

References:
  Y. Hu, Y. Liu, S. Lv, M. Xing, S. Zhang, Y. Fu, J. Wu, B. Zhang, L. Xie, "DCCRN: Deep Complex Convolution Recurrent
  Network for Phase-Aware Speech Enhancement", Interspeech 2020, arXiv:2008.00264.
  C. Trabelsi et al., "Deep Complex Networks", ICLR 2018 (complex BatchNorm).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxse import layers, signal
from jaxse.models.base import SpectralMixin, check_waveform, conv_out, pad_time, transposed_pad

C64 = jnp.complex64

#: Layer tables of the paper's variants (Table 1 of the paper; channels in complex units, see module docstring).
VARIANTS: dict[str, dict[str, Any]] = {
    "dccrn-r": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="R"),
    "dccrn-c": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="C"),
    "dccrn-e": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="E"),
    "dccrn-cl": dict(channels=(16, 32, 64, 128, 128, 128), rnn="complex", rnn_units=128, mask="E"),
    # asteroid 0.7.0 DCCRNet("DCCRN-CL") conventions, the target of jaxse.convert (not trained from the paper).
    "dccrn-cl-asteroid": dict(channels=(16, 32, 64, 128, 128, 128), rnn="complex", rnn_units=128, rnn_layers=2,
                              mask="E", norm="real", convention="asteroid"),
    # Small variants for tests and quick experiments (not from the paper).
    "dccrn-cl-tiny": dict(channels=(4, 8, 8), rnn="complex", rnn_units=16, rnn_layers=1, mask="E"),
    "dccrn-e-tiny": dict(channels=(4, 8, 8), rnn="real", rnn_units=32, rnn_layers=1, mask="E"),
}
PAPER_PARAMS = {"dccrn-r": 3.7e6, "dccrn-c": 3.7e6, "dccrn-e": 3.7e6, "dccrn-cl": 3.67e6}
CONVENTIONS = ("paper", "asteroid")


def safe_abs(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """``|z|`` with a finite gradient at 0."""
    return jnp.sqrt(z.real * z.real + z.imag * z.imag + eps * eps)


def apply_mask(mask: jnp.ndarray, spec: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Apply a complex mask to a spectrum, both ``complex64[batch, frames, freqs]``.

    ``E``: ``tanh(|M|) e^{i angle M} X`` (bounded magnitude, phase rotation);
    ``C``: ``M X`` (complex ratio mask); ``R``: ``Re M Re X + i Im M Im X`` (real and imaginary masked separately).
    """
    if kind == "E":
        mag = safe_abs(mask)
        return (jnp.tanh(mag) / mag) * mask * spec
    if kind == "C":
        return mask * spec
    if kind == "R":
        return lax.complex(mask.real * spec.real, mask.imag * spec.imag)
    raise ValueError(f"unknown mask {kind!r}; valid: E, C, R")


def asteroid_bound_mask(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """asteroid's "tanh" mask bound (BDT): ``tanh(sqrt(|z|^2 + eps)) e^{i atan2(Im z, Re z)}``, ``complex64[...]``.

    Differs from mask ``E`` of ``apply_mask`` only in where the epsilon goes (here it bounds the magnitude, not the
    phase); at ``z = 0`` the phase is 0 (as ``atan2(0, 0)``), with a zero gradient there.
    """
    r2 = z.real * z.real + z.imag * z.imag
    nz = r2 > 0
    inv = jnp.where(nz, lax.rsqrt(jnp.where(nz, r2, 1.0)), 0.0)
    mag = jnp.tanh(jnp.sqrt(r2 + eps))
    return lax.complex(mag * jnp.where(nz, z.real * inv, 1.0), mag * z.imag * inv)


class ReImPReLU(nn.Module):
    """PReLU with its own slope for the real and the imaginary part (asteroid's ``OnReIm(nn.PReLU)``).

    ``x: complex64[...]`` -> same. Parameter ``alpha: float32[2]`` (real-part slope, imaginary-part slope), init 0.25.
    """

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        a = self.param("alpha", nn.initializers.constant(0.25), (2,), jnp.float32)
        return lax.complex(jnp.where(x.real >= 0, x.real, a[0] * x.real),
                           jnp.where(x.imag >= 0, x.imag, a[1] * x.imag))


class DCCRN(nn.Module, SpectralMixin):
    """DCCRN speech enhancer. ``__call__(noisy: float32[batch, samples], train) -> float32[batch, samples]``.

    ``convention="asteroid"`` switches STFT framing/scaling, the dropped bin, the time alignment, the PReLU and the
    mask bound to asteroid 0.7.0 ``DCCRNet``'s (module docstring) so that ``jaxse.convert`` imports its weights
    exactly; the default ``"paper"`` keeps the network and parameter tree described above.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    kernel: tuple[int, int] = (2, 5)  # (time, freq)
    rnn: str = "complex"  # complex | real
    rnn_units: int = 128
    rnn_layers: int = 2
    mask: str = "E"  # E | C | R
    norm: str = "complex"  # complex | real
    decoder: str = "paper"  # paper (1 frame look-ahead per layer) | causal
    n_fft: int = 512
    win_length: int = 400
    hop: int = 100
    window: str = "sqrt_hann"
    impl: str = "gauss"  # complex product lowering: native | gauss | real
    convention: str = "paper"  # paper | asteroid (asteroid 0.7.0 DCCRNet, for imported weights; module docstring)
    axis_name: str | None = None  # device axis for BatchNorm statistics in data-parallel training

    @property
    def lookahead_frames(self) -> int:
        # asteroid: the encoders look one frame ahead each; paper: the decoders do.
        return len(self.channels) if self.decoder == "paper" else 0

    @property
    def min_samples(self) -> int:
        """Shortest input the offline pass accepts (asteroid convention: the encoders eat one frame each)."""
        if self.convention == "asteroid":
            return self.win_length + len(self.channels) * self.hop
        return 1

    def analysis(self, noisy: jnp.ndarray) -> jnp.ndarray:
        """``float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]`` (framing per ``convention``)."""
        if self.convention == "asteroid":
            return signal.asteroid_stft(noisy, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                                        window_kind=self.window)
        return SpectralMixin.analysis(self, noisy)

    def synthesis(self, spec: jnp.ndarray, length: int) -> jnp.ndarray:
        """``complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``."""
        if self.convention == "asteroid":
            return signal.asteroid_istft(spec, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                                         length=length, window_kind=self.window)
        return SpectralMixin.synthesis(self, spec, length)

    def _check_convention(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {self.convention!r}; valid: {', '.join(CONVENTIONS)}")
        if self.convention == "asteroid":
            need = dict(rnn="complex", mask="E", norm="real", kernel=(2, 5), decoder="paper")
            bad = {k: getattr(self, k) for k, v in need.items()
                   if (tuple(getattr(self, k)) if k == "kernel" else getattr(self, k)) != v}
            if bad:
                raise ValueError(f"convention='asteroid' needs {need}; got {bad}")

    def _freqs(self) -> list[int]:
        f = [self.n_fft // 2]
        for _ in self.channels:
            f.append(conv_out(f[-1], self.kernel[1], 2, 2))
        return f

    def setup(self):
        if self.decoder not in ("paper", "causal"):
            raise ValueError(f"unknown decoder {self.decoder!r}; valid: paper, causal")
        if self.rnn not in ("complex", "real"):
            raise ValueError(f"unknown rnn {self.rnn!r}; valid: complex, real")
        self._check_convention()
        ast = self.convention == "asteroid"
        act = ReImPReLU if ast else layers.PReLU
        normed = dict(use_bias=False) if ast else {}  # asteroid: no bias before BN
        freqs = self._freqs()
        conv = dict(kernel=self.kernel, dtype=C64, impl=self.impl)
        self.encoders = [layers.Conv2D(c, stride_f=2, pad_f=(2, 2), **conv, **normed) for c in self.channels]
        self.enc_norms = [layers.norm_layer(self.norm, self.axis_name) for _ in self.channels]
        self.enc_acts = [act() for _ in self.channels]
        width = freqs[-1] * self.channels[-1]
        if self.rnn == "complex":
            self.lstm = layers.LSTMStack(self.rnn_units, self.rnn_layers, C64)
            self.proj = layers.Dense(width, C64, self.impl)
        else:
            self.lstm = layers.LSTMStack(self.rnn_units, self.rnn_layers, jnp.float32)
            self.proj = layers.Dense(2 * width, jnp.float32)
        outs = list(reversed(self.channels[:-1])) + [1]
        n = len(self.channels)
        self.decoders = [
            layers.Conv2D(o, stride_f=1, dilate_f=2,
                          pad_f=transposed_pad(freqs[n - i], freqs[n - i - 1], self.kernel[1], 2, 2), **conv,
                          **(normed if i < len(outs) - 1 else {}))
            for i, o in enumerate(outs)
        ]
        self.dec_norms = [layers.norm_layer(self.norm, self.axis_name) for _ in outs[:-1]]
        self.dec_acts = [act() for _ in outs[:-1]]

    # -- pieces, shared by the offline pass and the streaming step ---------------------------------------------
    def encode_layer(self, i: int, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        """Encoder block ``i`` on time-padded input ``[batch, time + 1, freq, c]`` -> ``[batch, time, freq/2, c']``.

        (Asteroid convention: the input is not padded, so a block maps ``time + 1`` frames to ``time``.)"""
        return self.enc_acts[i](self.enc_norms[i](self.encoders[i](x), train))

    def decode_layer(self, i: int, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        """Decoder block ``i`` on time-padded ``concat(previous, skip)``; the last block has no BN/PReLU."""
        y = self.decoders[i](x)
        if i < len(self.dec_norms):
            y = self.dec_acts[i](self.dec_norms[i](y, train))
        return y

    def bottleneck(self, x: jnp.ndarray, carries=None):
        """``complex64[batch, time, freq, c]`` -> same shape, through the LSTM stack and the dense projection."""
        b, t, f, c = x.shape
        if self.rnn == "complex":
            h, carries = self.lstm(x.reshape(b, t, f * c), carries)
            return self.proj(h).reshape(b, t, f, c), carries
        feats = jnp.concatenate([x.real.reshape(b, t, f * c), x.imag.reshape(b, t, f * c)], -1)
        h, carries = self.lstm(feats, carries)
        y = self.proj(h)
        return lax.complex(y[..., : f * c], y[..., f * c :]).reshape(b, t, f, c), carries

    def to_features(self, spec: jnp.ndarray) -> jnp.ndarray:
        """Noisy spectrum ``[batch, time, 257]`` -> network input ``[batch, time, 256, 1]`` (DC bin dropped;
        Nyquist bin in the asteroid convention)."""
        if self.convention == "asteroid":
            return spec[..., :-1, None]
        return spec[..., 1:, None]

    def from_mask(self, mask: jnp.ndarray, spec: jnp.ndarray) -> jnp.ndarray:
        """Network output ``[batch, time, 256, 1]`` -> enhanced spectrum ``[batch, time, 257]``."""
        if self.convention == "asteroid":  # bounded mask times the 256 kept bins, then a zero Nyquist bin
            y = asteroid_bound_mask(mask[..., 0]) * spec[..., :-1]
            return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, 1)])
        m = jnp.pad(mask[..., 0], [(0, 0), (0, 0), (1, 0)])
        return apply_mask(m, spec, self.mask)

    # -- offline pass ------------------------------------------------------------------------------------------
    def enhance_spectrum(self, spec: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """``complex64[batch, frames, 257]`` -> enhanced ``complex64[batch, frames, 257]``."""
        ast = self.convention == "asteroid"
        if ast and spec.shape[-2] < len(self.encoders) + 1:
            raise ValueError(f"convention='asteroid' needs at least {len(self.encoders) + 1} STFT frames "
                             f"({self.min_samples} samples), got {spec.shape[-2]}")
        x = self.to_features(spec)
        skips = []
        for i in range(len(self.encoders)):
            x = self.encode_layer(i, x if ast else pad_time(x, 1, 0), train)
            skips.append(x)
        x, _ = self.bottleneck(x)
        left, right = (1, 1) if ast else (1, 0) if self.decoder == "causal" else (0, 1)
        for i in range(len(self.decoders)):
            x = jnp.concatenate([x, skips[-1 - i]], axis=-1)
            x = self.decode_layer(i, pad_time(x, left, right), train)
        return self.from_mask(x, spec)

    def __call__(self, noisy: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        check_waveform(noisy)
        if self.convention == "asteroid" and noisy.shape[-1] < self.min_samples:
            raise ValueError(f"convention={self.convention!r} needs at least {self.min_samples} samples, "
                             f"got {noisy.shape[-1]}")
        spec = self.analysis(noisy)
        return self.synthesis(self.enhance_spectrum(spec, train), noisy.shape[-1])
