"""Write a synthetic corpus of a chosen size for the input-pipeline benchmarks (not used in CI).

    python -m experiments.bench.make_corpus data/bench_1h --hours 1
    python -m experiments.bench.make_corpus data/bench_20h --hours 20 [--workers 16]

Layout under OUT: ``speech/sNN/*.flac`` (noise-like "speech": shaped noise with formant-like resonances under a
syllable-rate envelope with pauses, 2-12 s utterances), ``noise/*.flac`` (``--noise-hours``, default a quarter of
``--hours``; white/pink/brown and babble-like, 10-60 s clips), ``rir/*.wav`` (``--rirs`` synthetic rooms from
``jaxse.data.mixing.synthetic_rir``) and ``paired/{noisy,clean}/`` (``--paired``: clean = hard links to the speech
files, noisy = speech + noise at 0-15 dB SNR). 16-bit FLAC at ``--rate`` Hz; a 20-hour corpus is about 4.5 GB with
pairs. Files are written by a process pool; every file is a function of ``(--seed, its number)``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    from scipy.signal import lfilter

    x = rng.standard_normal(n)
    for f in rng.uniform([250, 900, 2200], [800, 2000, 3400]):  # three resonances ("formants")
        r = 0.97
        x = lfilter([1.0 - r], [1.0, -2 * r * np.cos(2 * np.pi * f / sr), r * r], x)
    t = np.arange(n) / sr
    syll = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3))) ** 2
    words = (np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.3)) > -0.3).astype(float)
    y = x * syll * words
    return (y * (10 ** (rng.uniform(-28, -18) / 20) / max(np.sqrt(np.mean(y**2)), 1e-9))).astype(np.float32)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(4)
    w = rng.standard_normal(n)
    if kind in (1, 2):
        spec = np.fft.rfft(w)
        f = np.arange(spec.shape[0], dtype=float)
        f[0] = 1.0
        w = np.fft.irfft(spec / (np.sqrt(f) if kind == 1 else f), n)
    elif kind == 3:  # babble-like: several modulated "speakers"
        w = sum(_speech(rng, n, 16000) for _ in range(4)).astype(float)
    return (w * (10 ** (rng.uniform(-35, -20) / 20) / max(np.sqrt(np.mean(w**2)), 1e-9))).astype(np.float32)


def _write_one(job: tuple) -> int:
    import soundfile as sf

    what, i, out, seed, sr, seconds, paired = job
    rng = np.random.Generator(np.random.PCG64([seed, {"speech": 1, "noise": 2, "rir": 3}[what], i]))
    n = int(seconds * sr)
    if what == "rir":
        from jaxse.data.rooms import synthetic_rir

        sf.write(out / "rir" / f"r{i:05d}.wav", synthetic_rir(rng, sample_rate=sr, t60_range=(0.2, 0.9)), sr,
                 subtype="FLOAT")
        return 0
    x = _speech(rng, n, sr) if what == "speech" else _noise(rng, n)
    rel = Path(f"s{i % 50:02d}") / f"u{i:06d}.flac" if what == "speech" else Path(f"n{i:05d}.flac")
    path = out / what / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")
    if what == "speech" and paired:
        clean = out / "paired" / "clean" / rel
        clean.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, clean)
        except OSError:
            sf.write(clean, x, sr, subtype="PCM_16")
        z = _noise(rng, n)
        z *= np.sqrt(np.mean(x**2)) / max(np.sqrt(np.mean(z**2)), 1e-9) / 10 ** (rng.uniform(0, 15) / 20)
        noisy = out / "paired" / "noisy" / rel
        noisy.parent.mkdir(parents=True, exist_ok=True)
        sf.write(noisy, np.clip(x + z, -1, 1), sr, subtype="PCM_16")
    return n


def _lengths(rng: np.random.Generator, total_s: float, lo: float, hi: float) -> list[float]:
    out, acc = [], 0.0
    while acc < total_s:
        d = float(min(rng.uniform(lo, hi), total_s - acc)) if total_s - acc > lo else float(total_s - acc)
        out.append(max(d, 0.5))
        acc += out[-1]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--hours", type=float, required=True, help="hours of speech")
    ap.add_argument("--noise-hours", type=float, default=None, help="hours of noise (default: hours / 4)")
    ap.add_argument("--rirs", type=int, default=200)
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    noise_h = args.hours / 4 if args.noise_hours is None else args.noise_hours
    jobs = [("speech", i, args.out, args.seed, args.rate, s, args.paired)
            for i, s in enumerate(_lengths(rng, args.hours * 3600, 2.0, 12.0))]
    jobs += [("noise", i, args.out, args.seed, args.rate, s, False)
             for i, s in enumerate(_lengths(rng, noise_h * 3600, 10.0, 60.0))]
    jobs += [("rir", i, args.out, args.seed, args.rate, 0.0, False) for i in range(args.rirs)]
    for d in ("speech", "noise", "rir"):
        (args.out / d).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.workers)) as ex:
        samples = sum(ex.map(_write_one, jobs, chunksize=16))
    res = {"corpus": str(args.out), "speech_files": sum(j[0] == "speech" for j in jobs),
           "noise_files": sum(j[0] == "noise" for j in jobs), "rirs": args.rirs,
           "audio_hours_written": round(samples / args.rate / 3600, 2), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
