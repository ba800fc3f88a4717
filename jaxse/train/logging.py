"""What a run records: ``metrics.jsonl`` (one JSON object per step and kind) and TensorBoard scalars, audio and
spectrograms (process 0 only)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxse.io.atomic import write_bytes
from jaxse.io.display import spectrogram_image
from jaxse.signal import SAMPLE_RATE


class MetricLog:
    """metrics.jsonl + TensorBoard (process 0 only), one row per (step, kind).

    ``resume_step``: a run resumed from the checkpoint of that step re-runs the steps after it, so the rows (and
    TensorBoard events) logged after it by the interrupted run are dropped first: the log reads as one run.
    """

    def __init__(self, workdir: Path, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self.writer = None
        if enabled:
            path = Path(workdir) / "metrics.jsonl"
            if resume_step and path.is_file():
                keep = [line for line in path.read_text().splitlines(keepends=True)
                        if line.strip() and _step_of(line) <= resume_step]
                write_bytes(path, "".join(keep).encode("utf-8"))
            self.f = open(path, "a")
            try:
                from tensorboardX import SummaryWriter

                self.writer = SummaryWriter(str(Path(workdir) / "tb"),
                                            purge_step=resume_step + 1 if resume_step else None)
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

    def examples(self, step: int, audio: dict, n: int = 2, sample_rate: int = SAMPLE_RATE) -> None:
        """Audio and log-spectrogram images of the first ``n`` validation examples (noisy / enhanced / clean)."""
        if not self.enabled or self.writer is None:
            return
        for i in range(min(n, len(audio["clean"]))):
            for kind in ("noisy", "enhanced", "clean"):
                x = np.clip(np.asarray(audio[kind][i], np.float32), -1, 1)
                self.writer.add_audio(f"valid_{i}/{kind}", x, step, sample_rate=sample_rate)
                self.writer.add_image(f"valid_{i}/{kind}_spectrogram", spectrogram_image(x), step,
                                      dataformats="HW")

    def close(self):
        if self.enabled:
            self.f.close()
            if self.writer is not None:
                self.writer.close()


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except ValueError:  # a line cut by a kill: dropped
        return float("inf")
