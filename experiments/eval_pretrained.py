"""Score models on the real-speech corpus's test split by input SNR (the figures of README "Pretrained model").

    python experiments/eval_pretrained.py --model pretrained=pretrained:dccrn-cl --model demo=runs/dccrn \\
        [--corpus data/speech_corpus] [--snrs -5 0 5 10 15 20] [--per-snr 12] [--seconds 4] [--dnsmos] [--json-out F]

Test mixtures: clean utterances of the test speakers (``CORPUS/clean/test``, never in training) and segments of the
test noise recordings (``CORPUS/noise/test``, never in training), drawn with a fixed seed, the speech at -25 dBFS RMS
and the noise scaled to each input SNR. Every model enhances the same mixtures (``jaxse.inference.Enhancer``, the
level matching of ``jaxse.enhance``); ``jaxse.evaluate.score_pairs`` scores noisy and enhanced (PESQ-WB, PESQ-NB,
STOI, SI-SNR, and DNSMOS P.835 with ``--dnsmos``). Prints one table per metric: rows input SNR, columns noisy and
each model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

COLUMNS = ("pesq_wb", "pesq_nb", "stoi", "si_snr")
DNSMOS_COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".flac", ".wav"))


def make_mixtures(corpus: Path, snrs, per_snr: int, seconds: float, seed: int = 0, sr: int = 16000):
    """``[(name, snr, clean, noisy)]``: float32 ``[samples]`` arrays, ``seconds`` long, ``per_snr`` per SNR."""
    from jaxse.io.audio import read_audio

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    clean_files = _files(corpus / "clean" / "test")
    noise_files = _files(corpus / "noise" / "test")
    if not clean_files or not noise_files:
        raise SystemExit(f"no test audio under {corpus}/clean/test or {corpus}/noise/test: build the corpus first "
                         "(experiments/build_speech_corpus.py)")
    long_enough = []
    for p in clean_files:  # utterances of at least half the segment: short words would be mostly silence
        x = read_audio(p, sample_rate=sr)
        if len(x) >= n // 2:
            long_enough.append((p, x))
    noises = [(p, read_audio(p, sample_rate=sr)) for p in noise_files]
    items = []
    for snr in snrs:
        for i in range(per_snr):
            cp, c = long_enough[rng.integers(len(long_enough))]
            if len(c) >= n:
                s = rng.integers(len(c) - n + 1)
                c = c[s:s + n]
            else:
                c = np.pad(c, (0, n - len(c)))
            npth, v = noises[rng.integers(len(noises))]
            if len(v) < n:
                v = np.tile(v, -(-n // len(v)))
            s = rng.integers(len(v) - n + 1)
            v = v[s:s + n]
            c = c * (10 ** (-25 / 20) / (np.sqrt(np.mean(c ** 2)) + 1e-9))
            g = np.sqrt(np.mean(c ** 2)) / (np.sqrt(np.mean(v ** 2)) + 1e-9) / 10 ** (snr / 20)
            noisy = c + g * v
            peak = np.max(np.abs(noisy))
            if peak > 0.99:  # keep the mixture unclipped (scales clean and noisy alike)
                c, noisy = c * 0.99 / peak, noisy * 0.99 / peak
            items.append((f"snr{snr:+g}_{i:02d}_{cp.stem}+{npth.stem}", float(snr), c.astype(np.float32),
                          noisy.astype(np.float32)))
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="LABEL=CHECKPOINT (repeat)")
    ap.add_argument("--corpus", default="data/speech_corpus")
    ap.add_argument("--snrs", type=float, nargs="+", default=[-5, 0, 5, 10, 15, 20])
    ap.add_argument("--per-snr", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--dnsmos", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    from jaxse.evaluate import score_pairs
    from jaxse.inference import Enhancer

    items = make_mixtures(Path(args.corpus), args.snrs, args.per_snr, args.seconds)
    cols = COLUMNS + (DNSMOS_COLUMNS if args.dnsmos else ())
    table: dict = {}  # table[label][snr][metric] = mean
    for spec in args.model:
        label, _, ckpt = spec.partition("=")
        enh = Enhancer.from_checkpoint(ckpt)
        outs = enh.enhance([noisy for _, _, _, noisy in items])
        rows = score_pairs([(name, clean, noisy, out) for (name, _, clean, noisy), out in zip(items, outs)],
                           workers=args.workers, with_dnsmos=args.dnsmos)
        for (_, snr, _, _), row in zip(items, rows):
            for which, key in (("noisy", "noisy"), (label, "enhanced")):
                for m in cols:
                    table.setdefault(which, {}).setdefault(snr, {}).setdefault(m, []).append(row.get(f"{key}_{m}"))
        print(f"scored {label} ({ckpt}) on {len(items)} mixtures", file=sys.stderr)
    labels = ["noisy"] + [s.partition("=")[0] for s in args.model]

    def mean(v):
        v = [x for x in v if x is not None and np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    summary = {lab: {str(snr): {m: mean(v) for m, v in per.items()} for snr, per in table[lab].items()}
               for lab in labels}
    for m in cols:
        print(f"\n{m}  (mean over {args.per_snr} mixtures per SNR; {args.seconds:g} s each)")
        print(f"{'input SNR':>10}" + "".join(f"{lab:>14}" for lab in labels))
        for snr in args.snrs:
            print(f"{snr:>10g}" + "".join(f"{summary[lab][str(float(snr))][m]:>14.3f}" for lab in labels))
        allv = {lab: mean([x for snr in args.snrs for x in table[lab][float(snr)][m]]) for lab in labels}
        print(f"{'all':>10}" + "".join(f"{allv[lab]:>14.3f}" for lab in labels))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"snrs": args.snrs, "per_snr": args.per_snr,
                                                   "seconds": args.seconds, "models": args.model,
                                                   "mean": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
