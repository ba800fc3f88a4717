"""CRN: convolutional recurrent network for real-time speech enhancement (Tan & Wang, Interspeech 2018).

Signal path for ``noisy: float32[batch, samples]``:

  STFT (20 ms = 320-sample frames, 10 ms = 160-sample hop, 320-point FFT, sqrt-Hann) -> complex64[batch, T, 161]
  magnitude                                                                      -> float32[batch, T, 161, 1]
  encoder: 5 x [causal Conv2D kernel (time 2, freq 3), stride 2 in frequency, BN, ELU], channels 16-32-64-128-256
           frequencies 161 -> 80 -> 39 -> 19 -> 9 -> 4                          -> float32[batch, T, 4, 256]
  2-layer LSTM, 1024 units, over the flattened 4 x 256 bottleneck                -> float32[batch, T, 4, 256]
  decoder: 5 x [concat(previous, encoder skip) on channels, transposed Conv2D stride 2 in frequency, BN, ELU],
           channels 128-64-32-16-1, Softplus (instead of ELU) on the last layer -> float32[batch, T, 161] magnitude
  enhanced magnitude with the noisy phase, iSTFT                                  -> float32[batch, samples]

Strictly causal (time padding on the left only; the transposed convolutions keep the first of their two frames):
algorithmic latency = one 20 ms frame. Trained with the magnitude MSE (``jaxse.losses.magnitude_mse``).

References:
  K. Tan, D. L. Wang, "A Convolutional Recurrent Neural Network for Real-Time Speech Enhancement",
  Interspeech 2018, pp. 3229-3233.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxse.nn import Conv2D, Dense, LSTMStack, SplitBatchNorm
from jaxse.models.base import SpectralUNet, TimePadding, conv_out, transposed_pad

VARIANTS = {
    "crn": dict(channels=(16, 32, 64, 128, 256), lstm_units=1024, lstm_layers=2),
    "crn-tiny": dict(channels=(4, 8, 8), lstm_units=32, lstm_layers=1),
}
PAPER_PARAMS = {"crn": 17_579_459}


class CRN(SpectralUNet):
    """CRN speech enhancer. ``__call__(noisy: float32[batch, samples], train) -> float32[batch, samples]``.

    ``conv_lowering``: how the convolutions are computed (``jaxse.nn``); it never changes the result.
    ``compute_dtype="bfloat16"``: the convolutions' and LSTMs' products on bfloat16 operands, accumulated in float32
    (mixed precision, ``jaxse.nn``; parameters stay float32).
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    kernel: tuple[int, int] = (2, 3)  # (time, freq)
    lstm_units: int = 1024
    lstm_layers: int = 2
    n_fft: int = 320
    win_length: int = 320
    hop: int = 160
    window: str = "sqrt_hann"
    conv_lowering: str = "auto"  # matmul | xla | auto (jaxse.nn)
    compute_dtype: str | None = None  # None (float32) | "bfloat16": mixed precision of the products (jaxse.nn)
    axis_name: str | None = None  # device axis for BatchNorm statistics in data-parallel training

    def _freqs(self) -> list[int]:
        f = [self.n_fft // 2 + 1]
        for _ in self.channels:
            f.append(conv_out(f[-1], self.kernel[1], 2, 0))
        return f

    def setup(self):
        freqs = self._freqs()
        self.encoders = [Conv2D(c, self.kernel, stride_f=2, conv_lowering=self.conv_lowering,
                                compute_dtype=self.compute_dtype) for c in self.channels]
        self.enc_norms = [SplitBatchNorm(axis_name=self.axis_name) for _ in self.channels]
        self.lstm = LSTMStack(self.lstm_units, self.lstm_layers, compute_dtype=self.compute_dtype)
        width = freqs[-1] * self.channels[-1]
        # The paper's LSTM width equals the bottleneck (4 x 256 = 1024); smaller variants project back.
        self.proj = None if self.lstm_units == width else Dense(width, compute_dtype=self.compute_dtype)
        outs = list(reversed(self.channels[:-1])) + [1]
        n = len(self.channels)
        self.decoders = [
            Conv2D(o, self.kernel, dilate_f=2,
                   pad_f=transposed_pad(freqs[n - i], freqs[n - i - 1], self.kernel[1], 2, 0),
                   conv_lowering=self.conv_lowering, compute_dtype=self.compute_dtype)
            for i, o in enumerate(outs)
        ]
        self.dec_norms = [SplitBatchNorm(axis_name=self.axis_name) for _ in outs]

    def time_padding(self) -> TimePadding:
        """Causal everywhere: one frame of left padding per layer (the transposed convolutions keep the first of
        their two frames)."""
        n = len(self.channels)
        return TimePadding(((1, 0),) * n, ((1, 0),) * n)

    def to_features(self, spec: jnp.ndarray) -> jnp.ndarray:
        """Noisy spectrum ``complex64[batch, T, 161]`` -> magnitude ``float32[batch, T, 161, 1]``."""
        return jnp.abs(spec)[..., None]

    def from_mask(self, mag: jnp.ndarray, spec: jnp.ndarray) -> jnp.ndarray:
        """Enhanced magnitude ``[batch, T, 161, 1]`` with the noisy phase -> ``complex64[batch, T, 161]``."""
        mag_noisy = jnp.abs(spec)
        phase = jnp.where(mag_noisy > 1e-8, spec / jnp.maximum(mag_noisy, 1e-8), 1.0)
        return mag[..., 0] * phase

    def encode_layer(self, i, x, train, time_pad=(0, 0)):
        """Encoder block ``i``: ``[batch, T, F, C]`` padded by ``time_pad`` frames (one in all) ->
        ``[batch, T, F', C']``."""
        return jax.nn.elu(self.enc_norms[i](self.encoders[i](x, train, time_pad), train))

    def decode_layer(self, i, x, train, time_pad=(0, 0)):
        """Decoder block ``i`` on ``(previous, skip)`` (or their concatenation), padded by ``time_pad`` frames;
        Softplus on the last block."""
        y = self.dec_norms[i](self.decoders[i](x, train, time_pad), train)
        return jax.nn.softplus(y) if i == len(self.decoders) - 1 else jax.nn.elu(y)

    def bottleneck(self, x, carries=None):
        """``float32[batch, T, F, C]`` -> same shape, through the LSTM stack (and the projection, if any)."""
        b, t, f, c = x.shape
        h, carries = self.lstm(x.reshape(b, t, f * c), carries)
        if self.proj is not None:
            h = self.proj(h)
        return h.reshape(b, t, f, c), carries
