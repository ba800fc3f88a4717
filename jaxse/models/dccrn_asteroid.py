"""DCCRN as asteroid 0.7.0's ``DCCRNet`` computes it, so that its pretrained weights can be imported exactly
(``python -m jaxse.convert asteroid-dccrnet``; registry name ``dccrn-cl-asteroid``).

``DCCRNAsteroid`` is ``jaxse.models.dccrn.DCCRN`` with these hooks overridden (the parameter tree keeps DCCRN's
names; ``jaxse.convert.asteroid`` maps asteroid's tensors onto it):
  STFT   asteroid_filterbanks framing: frame t covers samples [t*hop, t*hop + win), no padding, so
         (samples - win) // hop + 1 frames; scaled by 1 / (sqrt(win * n_fft / hop) / 2), DC and Nyquist by a further
         1/sqrt(2); phase of the centred 512-point DFT (``signal.asteroid_stft`` / ``asteroid_istft``). The output is
         the overlap-add cut or zero-padded on the right to the input length; it is not normalised by the window sum.
  bins   the *Nyquist* bin is dropped (not DC); the enhanced spectrum gets a zero Nyquist bin.
  time   encoders are not padded in time: each eats one frame (output frame t uses frames t, t+1), the bottleneck
         sees frames - 6; each decoder pads one frame on both sides (a transposed convolution, output frame t uses
         t-1, t) and grows it back. Look-ahead 6 frames, like the paper decoder, but in the encoder; the input needs
         at least ``win + len(channels) * hop`` samples.
  layers ``norm="real"`` (BN on re/im parts) and a PReLU with separate real/imaginary slopes (``ReImPReLU``);
         convolutions followed by BN have no bias; mask E with asteroid's bound
         ``tanh(sqrt(|Z|^2 + 1e-8)) Z / |Z|`` (``asteroid_bound_mask``).
Fields as ``DCCRN``; it needs ``rnn="complex"``, ``mask="E"``, ``norm="real"``, ``kernel=(2, 5)`` and the default
``decoder``.
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse import signal
from jaxse.models.base import TimePadding
from jaxse.models.dccrn import DCCRN
from jaxse.nn import ReImPReLU

#: asteroid 0.7.0 ``DCCRNet("DCCRN-CL")``, the target of jaxse.convert (not trained from the paper).
VARIANTS: dict[str, dict[str, Any]] = {
    "dccrn-cl-asteroid": dict(channels=(16, 32, 64, 128, 128, 128), rnn="complex", rnn_units=128, rnn_layers=2,
                              mask="E", norm="real"),
}
_REQUIRED = dict(rnn="complex", mask="E", norm="real", kernel=(2, 5), decoder="paper")


def asteroid_bound_mask(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """asteroid's "tanh" mask bound (BDT): ``tanh(sqrt(|z|^2 + eps)) e^{i atan2(Im z, Re z)}``, ``complex64[...]``.

    Differs from mask ``E`` of ``jaxse.models.dccrn.apply_mask`` only in where the epsilon goes (here it bounds the
    magnitude, not the phase); at ``z = 0`` the phase is 0 (as ``atan2(0, 0)``), with a zero gradient there.
    """
    r2 = z.real * z.real + z.imag * z.imag
    nz = r2 > 0
    inv = jnp.where(nz, lax.rsqrt(jnp.where(nz, r2, 1.0)), 0.0)
    mag = jnp.tanh(jnp.sqrt(r2 + eps))
    return lax.complex(mag * jnp.where(nz, z.real * inv, 1.0), mag * z.imag * inv)


class DCCRNAsteroid(DCCRN):
    """asteroid's DCCRNet (module docstring). ``__call__(noisy: float32[batch, samples], train)`` ->
    ``float32[batch, samples]``; ``noisy`` has at least ``min_samples`` samples."""

    activation: ClassVar[type[nn.Module]] = ReImPReLU
    bias_before_norm: ClassVar[bool] = False

    norm: str = "real"

    def check_fields(self) -> None:
        super().check_fields()
        bad = {k: getattr(self, k) for k, v in _REQUIRED.items()
               if (tuple(getattr(self, k)) if k == "kernel" else getattr(self, k)) != v}
        if bad:
            raise ValueError(f"{type(self).__name__} (asteroid's DCCRNet) needs {_REQUIRED}; got {bad}")

    # -- framing ----------------------------------------------------------------------------------------------
    def analysis(self, noisy: jnp.ndarray) -> jnp.ndarray:
        """``float32[batch, samples]`` -> ``complex64[batch, frames, n_fft // 2 + 1]`` (asteroid's framing)."""
        return signal.asteroid_stft(noisy, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                                    window_kind=self.window)

    def synthesis(self, spec: jnp.ndarray, length: int) -> jnp.ndarray:
        """``complex64[batch, frames, n_fft // 2 + 1]`` -> ``float32[batch, length]``."""
        return signal.asteroid_istft(spec, n_fft=self.n_fft, hop=self.hop, win_length=self.win_length,
                                     length=length, window_kind=self.window)

    @property
    def frame_start(self) -> int:
        return 0  # frames are not left-padded: frame 0 is the first window

    def analyse_frame(self, buf: jnp.ndarray) -> jnp.ndarray:
        return self.analysis(buf)

    def synthesise_frame(self, spec: jnp.ndarray) -> jnp.ndarray:
        return self.synthesis(spec, self.win_length)

    def overlap_add_gain(self) -> np.ndarray:
        return np.ones(self.hop, np.float32)  # asteroid's synthesis is not normalised by the window sum

    # -- time alignment and bins --------------------------------------------------------------------------------
    def time_padding(self) -> TimePadding:
        n = len(self.channels)
        return TimePadding(((0, 0),) * n, ((1, 1),) * n)

    @property
    def min_samples(self) -> int:
        return self.win_length + len(self.channels) * self.hop

    def to_features(self, spec: jnp.ndarray) -> jnp.ndarray:
        """Noisy spectrum ``[batch, time, 257]`` -> network input ``[batch, time, 256, 1]`` (Nyquist bin dropped;
        magnitudes compressed by ``compress``)."""
        return self.compressed(spec[..., :-1, None])

    def from_mask(self, mask: jnp.ndarray, spec: jnp.ndarray) -> jnp.ndarray:
        """Bounded mask times the 256 kept bins, then a zero Nyquist bin -> ``complex64[batch, time, 257]``."""
        y = asteroid_bound_mask(mask[..., 0]) * spec[..., :-1]
        return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, 1)])
