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

The asteroid 0.7.0 ``DCCRNet`` variant, for imported weights (``dccrn-cl-asteroid``), is ``DCCRNAsteroid`` in
``jaxse.models.dccrn_asteroid``: this class with a few hooks overridden.

References:
  Y. Hu, Y. Liu, S. Lv, M. Xing, S. Zhang, Y. Fu, J. Wu, B. Zhang, L. Xie, "DCCRN: Deep Complex Convolution Recurrent
  Network for Phase-Aware Speech Enhancement", Interspeech 2020, arXiv:2008.00264.
  C. Trabelsi et al., "Deep Complex Networks", ICLR 2018 (complex BatchNorm).
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxse.models.base import SpectralUNet, TimePadding, conv_out, transposed_pad
from jaxse.nn import Conv2D, Dense, LSTMStack, PReLU, norm_layer

C64 = jnp.complex64

#: Layer tables of the paper's variants (Table 1 of the paper; channels in complex units, see module docstring).
VARIANTS: dict[str, dict[str, Any]] = {
    "dccrn-r": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="R"),
    "dccrn-c": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="C"),
    "dccrn-e": dict(channels=(8, 16, 32, 64, 128, 128), rnn="real", rnn_units=256, mask="E"),
    "dccrn-cl": dict(channels=(16, 32, 64, 128, 128, 128), rnn="complex", rnn_units=128, mask="E"),
    # Small variants for tests and quick experiments (not from the paper).
    "dccrn-cl-tiny": dict(channels=(4, 8, 8), rnn="complex", rnn_units=16, rnn_layers=1, mask="E"),
    "dccrn-e-tiny": dict(channels=(4, 8, 8), rnn="real", rnn_units=32, rnn_layers=1, mask="E"),
}
PAPER_PARAMS = {"dccrn-r": 3.7e6, "dccrn-c": 3.7e6, "dccrn-e": 3.7e6, "dccrn-cl": 3.67e6}


def safe_abs(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """``|z|`` with a finite gradient at 0."""
    return jnp.sqrt(z.real * z.real + z.imag * z.imag + eps * eps)


def apply_mask(mask: jnp.ndarray, spec: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Apply a complex mask to a spectrum, both ``complex64[batch, frames, freqs]``.

    ``E``: ``tanh(|M|) e^{i angle M} X`` (bounded magnitude, phase rotation);
    ``C``: ``M X`` (complex ratio mask); ``R``: ``Re M Re X + i Im M Im X`` (real and imaginary masked separately);
    ``S`` (jaxse's, not the paper's): ``sigmoid(Re M) e^{i Im M} X``, a gain from a signed logit. The network's
    layers are close to homogeneous (convolutions, PReLU, affine BN at inference), so on a bin far louder than
    its neighbours ``M`` tends to grow with the bin's level: ``tanh(|M|)`` then tends to 1 (the bin passes), while
    ``sigmoid(Re M)`` goes to 0 or 1 by the sign the network learns (measured: README, eighth round).
    """
    if kind == "E":
        mag = safe_abs(mask)
        return (jnp.tanh(mag) / mag) * mask * spec
    if kind == "C":
        return mask * spec
    if kind == "R":
        return lax.complex(mask.real * spec.real, mask.imag * spec.imag)
    if kind == "S":
        return lax.logistic(mask.real) * lax.complex(jnp.cos(mask.imag), jnp.sin(mask.imag)) * spec
    raise ValueError(f"unknown mask {kind!r}; valid: E, C, R, S")


class DCCRN(SpectralUNet):
    """DCCRN speech enhancer. ``__call__(noisy: float32[batch, samples], train) -> float32[batch, samples]``.

    ``impl`` and ``conv_lowering``: how complex products and convolutions are computed (``jaxse.nn``); they never
    change the result or the parameters. ``compute_dtype="bfloat16"``: the complex layers' and LSTMs' real products on
    bfloat16 operands with float32 accumulation (mixed precision for accelerators and for CPU streaming; parameters
    stay complex64; ``jaxse.nn``).
    """

    #: Hooks of the layer stack (class attributes, not fields): the activation after each BN, and whether the
    #: convolutions followed by BN have a bias.
    activation: ClassVar[type[nn.Module]] = PReLU
    bias_before_norm: ClassVar[bool] = True

    channels: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    kernel: tuple[int, int] = (2, 5)  # (time, freq)
    rnn: str = "complex"  # complex | real
    rnn_units: int = 128
    rnn_layers: int = 2
    mask: str = "E"  # E | C | R (the paper's) | S (apply_mask)
    masks_spectrum: ClassVar[bool] = True  # every mask kind (E, C, R, S) is linear in the spectrum
    norm: str = "complex"  # complex | real
    decoder: str = "paper"  # paper (1 frame look-ahead per layer) | causal
    n_fft: int = 512
    win_length: int = 400
    hop: int = 100
    window: str = "sqrt_hann"
    compress: float = 1.0  # the network sees |X|^compress e^{i angle X} (1.0: the paper's linear spectrum)
    impl: str = "gauss"  # complex product lowering: native | gauss | real (jaxse.nn)
    conv_lowering: str = "auto"  # matmul | xla | auto (jaxse.nn)
    compute_dtype: str | None = None  # None (float32) | "bfloat16": mixed precision of the complex layers (jaxse.nn)
    axis_name: str | None = None  # device axis for BatchNorm statistics in data-parallel training

    def check_fields(self) -> None:
        """Raise ``ValueError`` for an unknown option value (called by ``setup``)."""
        if self.decoder not in ("paper", "causal"):
            raise ValueError(f"unknown decoder {self.decoder!r}; valid: paper, causal")
        if self.rnn not in ("complex", "real"):
            raise ValueError(f"unknown rnn {self.rnn!r}; valid: complex, real")
        if not 0.0 < self.compress <= 1.0:
            raise ValueError(f"compress must be in (0, 1], got {self.compress!r}")

    def _freqs(self) -> list[int]:
        f = [self.n_fft // 2]
        for _ in self.channels:
            f.append(conv_out(f[-1], self.kernel[1], 2, 2))
        return f

    def setup(self):
        self.check_fields()
        normed = {} if self.bias_before_norm else dict(use_bias=False)
        freqs = self._freqs()
        conv = dict(kernel=self.kernel, dtype=C64, impl=self.impl, conv_lowering=self.conv_lowering,
                    compute_dtype=self.compute_dtype)
        self.encoders = [Conv2D(c, stride_f=2, pad_f=(2, 2), **conv, **normed) for c in self.channels]
        self.enc_norms = [norm_layer(self.norm, self.axis_name) for _ in self.channels]
        self.enc_acts = [self.activation() for _ in self.channels]
        width = freqs[-1] * self.channels[-1]
        if self.rnn == "complex":
            self.lstm = LSTMStack(self.rnn_units, self.rnn_layers, C64, self.compute_dtype)
            self.proj = Dense(width, C64, self.impl, self.compute_dtype)
        else:
            self.lstm = LSTMStack(self.rnn_units, self.rnn_layers, jnp.float32, self.compute_dtype)
            self.proj = Dense(2 * width, jnp.float32, compute_dtype=self.compute_dtype)
        outs = list(reversed(self.channels[:-1])) + [1]
        n = len(self.channels)
        self.decoders = [
            Conv2D(o, stride_f=1, dilate_f=2,
                   pad_f=transposed_pad(freqs[n - i], freqs[n - i - 1], self.kernel[1], 2, 2), **conv,
                   **(normed if i < len(outs) - 1 else {}))
            for i, o in enumerate(outs)
        ]
        self.dec_norms = [norm_layer(self.norm, self.axis_name) for _ in outs[:-1]]
        self.dec_acts = [self.activation() for _ in outs[:-1]]

    # -- hooks of SpectralUNet, shared by the offline pass and the streaming step -------------------------------
    def time_padding(self) -> TimePadding:
        """Causal encoders; decoders per ``decoder`` (module docstring)."""
        n = len(self.channels)
        return TimePadding(((1, 0),) * n, (((1, 0) if self.decoder == "causal" else (0, 1)),) * n)

    def encode_layer(self, i: int, x: jnp.ndarray, train: bool, time_pad=(0, 0)) -> jnp.ndarray:
        """Encoder block ``i``: ``complex64[batch, T, F, C]`` padded by ``time_pad`` frames (one in all) ->
        ``complex64[batch, T, F / 2, C']``."""
        return self.enc_norms[i](self.encoders[i](x, train, time_pad), train, activation=self.enc_acts[i])

    def decode_layer(self, i: int, x, train: bool, time_pad=(0, 0)) -> jnp.ndarray:
        """Decoder block ``i`` on ``(previous, skip)`` (or their concatenation), padded by ``time_pad`` frames; the
        last block has no BN/PReLU."""
        y = self.decoders[i](x, train, time_pad)
        if i < len(self.dec_norms):
            y = self.dec_norms[i](y, train, activation=self.dec_acts[i])
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
        """Noisy spectrum ``complex64[batch, time, 257]`` -> network input ``[batch, time, 256, 1]`` (DC bin
        dropped; magnitudes compressed by ``compress``, phases kept). The mask still multiplies the linear spectrum.
        Why the option exists, and what it measured (no gain): README "Quality levers per CPU-hour", eighth round."""
        return self.compressed(spec[..., 1:, None])

    def compressed(self, x: jnp.ndarray) -> jnp.ndarray:
        """``|x|^compress e^{i angle x}`` of a complex array (``x`` itself when ``compress`` is 1)."""
        if self.compress == 1.0:
            return x
        return x * (safe_abs(x) ** (self.compress - 1.0)).astype(x.real.dtype)

    def from_mask(self, mask: jnp.ndarray, spec: jnp.ndarray) -> jnp.ndarray:
        """Network output ``complex64[batch, time, 256, 1]`` -> enhanced spectrum ``complex64[batch, time, 257]``."""
        m = jnp.pad(mask[..., 0], [(0, 0), (0, 0), (1, 0)])
        return apply_mask(m, spec, self.mask)
