"""Offline enhancement of many signals of any length: length buckets, batching, level matching.

    enhancer = Enhancer.from_checkpoint("runs/dccrn")       # or Enhancer(model, variables)
    outputs = enhancer.enhance([wave1, wave2, ...])          # each float32[samples] at enhancer.sample_rate

Signals are zero-padded up to a few bucket lengths (geometric, ratio sqrt(2), multiples of 0.1 s) and batched, so
XLA compiles one program per bucket, not one per file. A causal model's output over the real samples does not
depend on the padding after them; for DCCRN's paper decoder only the last look-ahead (37.5 ms) can, slightly.

Level. Models trained with a scale-invariant loss (SI-SNR) fix no output level, and every model can come out
quieter or louder than its input. With ``level="match"`` the output is scaled by the least-squares gain that best
explains the input (``g = <noisy, enhanced> / <enhanced, enhanced>``), which puts the enhanced speech at the level
the speech has in the input; then, if a sample would clip (|y| > 0.99), the whole signal is scaled down.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

PEAK = 0.99


def bucket_length(n: int, *, sample_rate: int = 16000, ratio: float = math.sqrt(2.0)) -> int:
    """Padded length for a signal of ``n`` samples: the smallest of ``1 s * ratio**k`` (rounded up to 0.1 s) >= n."""
    step = sample_rate // 10
    k = 0
    while True:
        b = int(math.ceil(sample_rate * ratio ** k / step)) * step
        if b >= n:
            return b
        k += 1


def strength_for(strength: float | None = None, atten_lim_db: float | None = None) -> float:
    """The wet/dry mix ``s`` in [0, 1] from either control (module docstring); neither: 1 (the model output)."""
    if strength is not None and atten_lim_db is not None:
        raise ValueError("give strength or atten_lim_db, not both")
    if atten_lim_db is not None:
        if not atten_lim_db >= 0:
            raise ValueError(f"atten_lim_db must be >= 0 dB, got {atten_lim_db}")
        return 1.0 - 10.0 ** (-atten_lim_db / 20.0)
    if strength is None:
        return 1.0
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    return float(strength)


def mix(noisy: np.ndarray, enhanced: np.ndarray, strength: float) -> np.ndarray:
    """``strength * enhanced + (1 - strength) * noisy`` (the same shapes; exact at 0 and 1)."""
    if strength >= 1.0:
        return enhanced
    if strength <= 0.0:
        return np.asarray(noisy, enhanced.dtype)
    return (strength * enhanced + (1.0 - strength) * noisy).astype(enhanced.dtype)


class LevelStats:
    """Running sums for the least-squares level gain of ``channels`` signals, block by block."""

    def __init__(self, channels: int = 1):
        self.xe = np.zeros(channels)
        self.ee = np.zeros(channels)
        self.xx = np.zeros(channels)
        self.n = 0

    def add(self, noisy: np.ndarray, enhanced: np.ndarray) -> None:
        """``noisy, enhanced: float32[channels, samples]`` (aligned)."""
        x, e = np.asarray(noisy, np.float64), np.asarray(enhanced, np.float64)
        self.xe += np.einsum("cn,cn->c", x, e)
        self.ee += np.einsum("cn,cn->c", e, e)
        self.xx += np.einsum("cn,cn->c", x, x)
        self.n += x.shape[1]

    def gains(self) -> np.ndarray:
        """``float64[channels]``: ``<x, e> / <e, e>``; RMS matching where that is not positive (output unrelated to
        the input); 1 for a silent output."""
        out = np.ones_like(self.ee)
        for c in range(len(out)):
            g = self.xe[c] / self.ee[c] if self.ee[c] > 0 else 1.0
            if not np.isfinite(g) or g <= 0:
                rn, re = np.sqrt(self.xx[c] / max(self.n, 1)), np.sqrt(self.ee[c] / max(self.n, 1))
                g = rn / re if re > 0 else 1.0
            out[c] = g
        return out


def peak_scale(peak_value: float, *, peak: float = PEAK) -> float:
    """The factor that brings a signal whose largest |sample| is ``peak_value`` down to ``peak`` (1 if below)."""
    return peak / peak_value if peak_value > peak else 1.0


def finish(noisy: np.ndarray, enhanced: np.ndarray, *, level: str = "match", strength: float = 1.0,
           peak: float = PEAK) -> np.ndarray:
    """One signal ``float32[samples]``: level match (``level="match"``), mix with the input, keep |y| <= ``peak``
    (with level matching)."""
    if level == "match":
        st = LevelStats(1)
        st.add(noisy[None], enhanced[None])
        e = enhanced.astype(np.float64) * st.gains()[0]
    else:
        e = enhanced.astype(np.float64)
    y = mix(noisy.astype(np.float64), e, strength)
    if level == "match" and y.size:
        y = y * peak_scale(float(np.max(np.abs(y))), peak=peak)
    return y.astype(np.float32)


def match_level(noisy: np.ndarray, enhanced: np.ndarray, *, peak: float = PEAK) -> np.ndarray:
    """Scale ``enhanced: float32[samples]`` to the input's level (least-squares gain), then keep |y| <= ``peak``."""
    return finish(noisy, enhanced, level="match", peak=peak)


class Enhancer:
    """Batch enhancement with a model and its variables (see the module docstring)."""

    def __init__(self, model, variables, *, sample_rate: int = 16000, level: str = "match",
                 max_batch: int = 8, max_batch_seconds: float = 64.0, meta: dict | None = None,
                 strength: float | None = None, atten_lim_db: float | None = None, long_seconds: float = 30.0,
                 chunk_hops: int | None = None, precision: str = "float32"):
        """``strength`` or ``atten_lim_db``: the wet/dry mix (``strength_for``); ``long_seconds``: signals longer than
        this go through the chunked streaming pass (``chunk_hops`` hops per call, default about 4 s) instead of the
        padded batch. ``precision``: ``float32`` (exact), ``bfloat16`` or ``int8`` weights (``precision_options``):
        the chunked pass stores them so; the padded batch runs the same rounded weights."""
        if level not in ("match", "none"):
            raise ValueError(f"level must be 'match' or 'none', got {level!r}")
        from jaxse.inference.streamer import Streamer, precision_options, with_compute_dtype
        from jaxse.nn.quant import dequantize_variables, quantize_variables

        opts = precision_options(precision)
        model = with_compute_dtype(model, opts["compute_dtype"])
        self.precision = precision
        self.strength = strength_for(strength, atten_lim_db)
        self.long_seconds = long_seconds
        self.chunk_hops = chunk_hops
        self.streamer = Streamer(model, conv_lowering=getattr(model, "conv_lowering", "matmul"),
                                 precision=opts["precision"])
        self.model = model
        if opts["precision"] != "float32":  # the batch path: the stored weights' values, in float32 / complex64
            variables = jax.device_get(jax.jit(dequantize_variables)(quantize_variables(variables, opts["precision"])))
        self.variables = jax.device_put(variables)
        self.sample_rate = sample_rate
        self.level = level
        self.max_batch = max_batch
        self.max_batch_seconds = max_batch_seconds
        self.meta = meta or {}
        self._apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        self.compiled_shapes: set[tuple[int, int]] = set()

    @classmethod
    def from_checkpoint(cls, path=None, step: int | None = None, **kwargs) -> "Enhancer":
        """Load ``path``: a training workdir, its checkpoints folder, one step folder (best checkpoint by default) or
        ``pretrained:NAME``; ``None`` is the shipped default model (``jaxse.pretrained.DEFAULT``)."""
        from jaxse.io import checkpoints, pretrained

        if path is None:
            path = pretrained.DEFAULT

        model, variables, meta = checkpoints.load_model(path, step)
        return cls(model, variables, sample_rate=int(meta.get("sample_rate", 16000)), meta=meta, **kwargs)

    def _batch_size(self, length: int) -> int:
        return max(1, min(self.max_batch, int(self.max_batch_seconds * self.sample_rate) // length))

    def enhance(self, waves: Sequence[np.ndarray], progress=None) -> list[np.ndarray]:
        """Enhance mono signals ``float32[samples]`` (any lengths, at ``sample_rate``); same lengths out.

        ``progress``: optional callable invoked with the number of signals finished after each batch.
        """
        waves = [np.asarray(w, np.float32) for w in waves]
        for i, w in enumerate(waves):
            if w.ndim != 1:
                raise ValueError(f"signal {i}: expected mono float32[samples], got shape {w.shape}")
            if w.size == 0:
                raise ValueError(f"signal {i}: empty")
        out: list[np.ndarray | None] = [None] * len(waves)
        buckets: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            if len(w) > self.long_seconds * self.sample_rate:
                e = self.enhance_raw_long(w[None])[0]
                out[i] = finish(w, e, level=self.level, strength=self.strength)
                if progress is not None:
                    progress(1)
                continue
            buckets.setdefault(bucket_length(len(w), sample_rate=self.sample_rate), []).append(i)
        for length in sorted(buckets):
            idx = buckets[length]
            bs = self._batch_size(length)
            for s in range(0, len(idx), bs):
                part = idx[s:s + bs]
                x = np.zeros((bs, length), np.float32)  # fixed batch size per bucket: one compiled shape
                for r, i in enumerate(part):
                    x[r, : len(waves[i])] = waves[i]
                self.compiled_shapes.add((bs, length))
                y = np.asarray(self._apply(self.variables, jnp.asarray(x)))
                for r, i in enumerate(part):
                    out[i] = finish(waves[i], y[r, : len(waves[i])], level=self.level, strength=self.strength)
                if progress is not None:
                    progress(len(part))
        return out  # type: ignore[return-value]

    def enhance_blocks(self, blocks, samples: int):
        """Raw model output (no level matching, no mix) of one signal ``float32[channels, samples]`` arriving as
        ``blocks``; yields ``float32[channels, m]`` blocks, exact (``Streamer.enhance_blocks``)."""
        return self.streamer.enhance_blocks(self.variables, blocks, samples, chunk_hops=self.chunk_hops)

    def enhance_raw_long(self, x: np.ndarray) -> np.ndarray:
        """Raw model output of ``x: float32[channels, samples]`` through the chunked pass."""
        return np.concatenate(list(self.enhance_blocks([x], x.shape[1])), axis=1)
