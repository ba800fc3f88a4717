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


def match_level(noisy: np.ndarray, enhanced: np.ndarray, *, peak: float = PEAK) -> np.ndarray:
    """Scale ``enhanced: float32[samples]`` to the input's level (least-squares gain), then keep |y| <= ``peak``."""
    e = enhanced.astype(np.float64)
    den = float(np.dot(e, e))
    g = float(np.dot(noisy.astype(np.float64), e)) / den if den > 0 else 1.0
    if not np.isfinite(g) or g <= 0:  # enhanced output unrelated to the input: fall back to matching RMS
        rn, re = np.sqrt(np.mean(noisy.astype(np.float64) ** 2)), np.sqrt(den / max(len(e), 1))
        g = rn / re if re > 0 else 1.0
    y = e * g
    m = np.max(np.abs(y)) if y.size else 0.0
    if m > peak:
        y *= peak / m
    return y.astype(np.float32)


class Enhancer:
    """Batch enhancement with a model and its variables (see the module docstring)."""

    def __init__(self, model, variables, *, sample_rate: int = 16000, level: str = "match",
                 max_batch: int = 8, max_batch_seconds: float = 64.0, meta: dict | None = None):
        if level not in ("match", "none"):
            raise ValueError(f"level must be 'match' or 'none', got {level!r}")
        self.model = model
        self.variables = jax.device_put(variables)
        self.sample_rate = sample_rate
        self.level = level
        self.max_batch = max_batch
        self.max_batch_seconds = max_batch_seconds
        self.meta = meta or {}
        self._apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        self.compiled_shapes: set[tuple[int, int]] = set()

    @classmethod
    def from_checkpoint(cls, path, step: int | None = None, **kwargs) -> "Enhancer":
        """Load ``path`` (a training workdir, its checkpoints folder or one step folder; best checkpoint by default)."""
        from jaxse.io import checkpoints

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
                    e = y[r, : len(waves[i])]
                    out[i] = match_level(waves[i], e) if self.level == "match" else e
                if progress is not None:
                    progress(len(part))
        return out  # type: ignore[return-value]
