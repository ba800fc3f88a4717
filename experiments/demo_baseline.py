"""Noisy-mixture baseline on the embedded demo corpus's test split.

Every test utterance is mixed with a test noise clip (real or babble, chosen
by a seeded RNG, looped/cropped to the utterance length at a random offset)
at -5/0/5/10/15 dB SNR (the same noise segment for every SNR of an
utterance); prints mean PESQ-WB, PESQ-NB (P.862 narrowband mode on the 16 kHz
signals), STOI and SI-SNR of the noisy mixtures against the clean speech.
These are the "do nothing" figures an enhancement model has to beat.

    python experiments/demo_baseline.py [--seed 0]

Needs numpy, soundfile, pesq, pystoi (PyPI).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxse.data import demo  # noqa: E402

SNRS = (-5, 0, 5, 10, 15)


def fit_noise(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    reps = int(np.ceil((n + len(noise)) / len(noise)))
    tiled = np.tile(noise, reps)
    off = int(rng.integers(0, len(noise)))
    return tiled[off: off + n]


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    pc = np.mean(clean ** 2)
    pn = np.mean(noise ** 2) + 1e-12
    y = clean + noise * np.sqrt(pc / (pn * 10 ** (snr_db / 10)))
    peak = np.abs(y).max()
    return y / peak * 0.99 if peak > 0.99 else y


def si_snr(estimate: np.ndarray, target: np.ndarray) -> float:
    """Scale-invariant SNR in dB of ``estimate`` against ``target`` (both signals made zero-mean); the argument order
    of ``jaxse.losses.si_snr`` and ``jaxse.metrics.si_snr``."""
    ref = target - target.mean()
    est = estimate - estimate.mean()
    target = (est @ ref) / (ref @ ref + 1e-12) * ref
    err = est - target
    return float(10 * np.log10((target @ target + 1e-12) / (err @ err + 1e-12)))


def main(argv=None) -> int:
    from pesq import pesq
    from pystoi import stoi

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    clean_paths = demo.paths("clean", "test")
    noises = [sf.read(p, dtype="float32")[0].astype(np.float64)
              for p in demo.paths("noise", "test")]
    metrics = ("PESQ-WB", "PESQ-NB", "STOI", "SI-SNR")
    res = {s: {m: [] for m in metrics} for s in SNRS}
    for cp in clean_paths:
        c = sf.read(cp, dtype="float32")[0].astype(np.float64)
        nz = fit_noise(noises[int(rng.integers(len(noises)))], len(c), rng)
        for s in SNRS:
            y = mix(c, nz, s)
            res[s]["PESQ-WB"].append(pesq(16000, c, y, "wb"))
            res[s]["PESQ-NB"].append(pesq(16000, c, y, "nb"))
            res[s]["STOI"].append(stoi(c, y, 16000))
            res[s]["SI-SNR"].append(si_snr(y, c))
    print(f"test split: {len(clean_paths)} utterances, {len(noises)} noise clips, "
          f"seed {args.seed}")
    print("| SNR (dB) | " + " | ".join(metrics) + " |")
    print("| ---: | " + " | ".join("---:" for _ in metrics) + " |")
    for s in SNRS:
        m = res[s]
        print(f"| {s:+d} | {np.mean(m['PESQ-WB']):.3f} | {np.mean(m['PESQ-NB']):.3f} "
              f"| {np.mean(m['STOI']):.3f} | {round(np.mean(m['SI-SNR']), 2) + 0.0:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
