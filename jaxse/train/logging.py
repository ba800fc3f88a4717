"""What a run records: ``metrics.jsonl`` (one JSON object per step and kind) and TensorBoard scalars, audio and
spectrograms (process 0 only)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class MetricLog:
    """metrics.jsonl + TensorBoard (process 0 only)."""

    def __init__(self, workdir: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            self.f = open(workdir / "metrics.jsonl", "a")
            try:
                from tensorboardX import SummaryWriter

                self.writer = SummaryWriter(str(workdir / "tb"))
            except ImportError:  # pragma: no cover
                self.writer = None

    def write(self, step: int, kind: str, metrics: dict) -> None:
        if not self.enabled:
            return
        rec = {"step": step, "kind": kind, **{k: float(v) for k, v in metrics.items()}}
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"{kind}/{k}", float(v), step)

    def examples(self, step: int, audio: dict, n: int = 2, sample_rate: int = 16000) -> None:
        """Audio and log-spectrogram images of the first ``n`` validation examples (noisy / enhanced / clean)."""
        if not self.enabled or self.writer is None:
            return
        for i in range(min(n, len(audio["clean"]))):
            for kind in ("noisy", "enhanced", "clean"):
                x = np.clip(np.asarray(audio[kind][i], np.float32), -1, 1)
                self.writer.add_audio(f"valid_{i}/{kind}", x, step, sample_rate=sample_rate)
                self.writer.add_image(f"valid_{i}/{kind}_spectrogram", _spectrogram_image(x), step,
                                      dataformats="HW")

    def close(self):
        if self.enabled:
            self.f.close()
            if self.writer is not None:
                self.writer.close()


def _spectrogram_image(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """``float32[samples]`` -> log-magnitude spectrogram ``[freq (low at the bottom), frames]`` in [0, 1]."""
    frames = 1 + max(0, len(x) - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    seg = np.pad(x, (0, max(0, n_fft - len(x))))[idx] * np.hanning(n_fft)
    db = 20 * np.log10(np.abs(np.fft.rfft(seg, axis=-1)).T + 1e-6)
    db = np.clip(db - db.max() + 80.0, 0.0, 80.0) / 80.0
    return db[::-1].astype(np.float32)
