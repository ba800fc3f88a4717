"""Throughput of the demo input pipeline (batch 8 x 4 s) on this machine's CPU.

Prints one JSON line: batches/s and audio-seconds/s served (noisy+clean pairs count once).
If the embedded demo corpus is not available, a temporary synthetic corpus of the same kind
(16 kHz clean-like clips + noise clips, mixed on the fly with the demo settings) is used and
``"corpus": "synthetic"`` is reported.

    python -m experiments.bench.pipeline_throughput [--batches 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _demo_cfg() -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "experiments" / "data" / "demo.yaml"), resolve=True)
    cfg.update(batch_size=8, segment_seconds=4.0)
    return cfg


def _demo_available() -> bool:
    try:
        from jaxse.data import demo

        return bool(list(demo.paths("clean", "train")))
    except Exception:
        return False


def _synthetic_corpus(root: Path) -> tuple[list[str], list[str]]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 16000
    clean, noise = root / "clean", root / "noise"
    clean.mkdir()
    noise.mkdir()
    for i in range(40):
        n = int(sr * rng.uniform(3.0, 8.0))
        t = np.arange(n) / sr
        x = 0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * rng.uniform(100, 300) * t)
        sf.write(clean / f"c{i:02d}.flac", x.astype(np.float32), sr)
    for i in range(10):
        sf.write(noise / f"n{i:02d}.flac", (0.05 * rng.standard_normal(sr * 10)).astype(np.float32), sr)
    return [str(clean)], [str(noise)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from jaxse.data.pipeline import build_dataset

    cfg = _demo_cfg()
    corpus = "demo"
    tmp = None
    if not _demo_available():
        tmp = tempfile.TemporaryDirectory()
        cdirs, ndirs = _synthetic_corpus(Path(tmp.name))
        cfg.update(kind="mix", clean_dirs=cdirs, noise_dirs=ndirs)
        corpus = "synthetic"

    t0 = time.perf_counter()
    ds = build_dataset(cfg, split="train", seed=args.seed)
    it = ds.as_numpy_iterator()
    build_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        b = next(it)
    dt = time.perf_counter() - t0
    sr = int(cfg["sample_rate"])
    audio_s = args.batches * b["noisy"].shape[0] * b["noisy"].shape[1] / sr
    res = {
        "bench": "pipeline_throughput",
        "corpus": corpus,
        "batch_size": int(b["noisy"].shape[0]),
        "segment_seconds": b["noisy"].shape[1] / sr,
        "batches": args.batches,
        "batches_per_s": round(args.batches / dt, 2),
        "audio_seconds_per_s": round(audio_s / dt, 1),
        "build_s": round(build_s, 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(res))
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
