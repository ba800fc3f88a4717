"""Score models on the real-speech corpus's test split by input SNR (the figures of README "Pretrained model").

    python experiments/eval_pretrained.py --model pretrained=pretrained:dccrn-cl --model int8=pretrained:dccrn-cl#int8 \\
        [--anchors rnnoise dfn3] [--corpus data/speech_corpus] [--split test|valid] [--snrs -5 0 5 10 15 20]
        [--per-snr 40] [--seconds 4] [--dnsmos] [--json-out F] [--cache DIR]

Test mixtures: clean utterances of the test speakers (``CORPUS/clean/test``, never in training) and segments of the
test noise recordings (``CORPUS/noise/test``, never in training), drawn with a fixed seed, the speech at -25 dBFS RMS
and the noise scaled to each input SNR (``inf``: no noise, the clean speech alone, which shows how much of the
speech itself a system keeps; the "all" mean leaves it out). Every model enhances the same mixtures (``jaxse.inference.Enhancer``, the
level matching of ``jaxse.enhance``); ``jaxse.scoring.score_signals`` scores noisy and enhanced (PESQ-WB, PESQ-NB,
STOI, SI-SNR, and DNSMOS P.835 with ``--dnsmos``). The anchors RNNoise and DeepFilterNet 3 (``experiments/anchors.py``,
``pip install 'jaxse[anchors]'``) enhance the very same mixtures when their packages are installed. Prints one table
per metric: rows input SNR (mean ± 95 % confidence interval), then the mean over 0..15 dB and over all; columns
noisy, each anchor and each model; then STOI minus the noisy input's, paired mixture by mixture (mean ± 95 % CI of
the difference: whether "STOI not below noisy" holds). ``--json-out`` keeps the means, the paired differences of
every metric (``minus_noisy``) and every per-mixture score (``scores``). The noisy side is scored once for all
systems; with ``--cache DIR`` the noisy and the anchors' per-mixture scores are kept in ``DIR`` (keyed by split,
SNRs, count, length, DNSMOS, the corpus folder's name and the anchor package's version; the mixtures' seed is
fixed), so that a new model is scored against them without running the anchors again. A rebuilt corpus needs a
fresh ``DIR``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

COLUMNS = ("pesq_wb", "pesq_nb", "stoi", "si_snr")
DNSMOS_COLUMNS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".flac", ".wav"))


def make_mixtures(corpus: Path, snrs, per_snr: int, seconds: float, seed: int = 0, sr: int = 16000,
                  split: str = "test"):
    """``[(name, snr, clean, noisy)]``: float32 ``[samples]`` arrays, ``seconds`` long, ``per_snr`` per SNR, from
    the speakers and noise recordings of ``split`` (``test``: the figures we report; ``valid``: choosing between
    training recipes without looking at the test split)."""
    from jaxse.io.audio import read_audio

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    clean_files = _files(corpus / "clean" / split)
    noise_files = _files(corpus / "noise" / split)
    if not clean_files or not noise_files:
        raise SystemExit(f"no {split} audio under {corpus}/clean/{split} or {corpus}/noise/{split}: build the corpus "
                         "first (experiments/build_speech_corpus.py)")
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


def _value(res, metric: str):
    v = res.get(metric)
    return None if v is None else float(v)


def _finite(v) -> list[float]:
    return [x for x in v if x is not None and np.isfinite(x)]


def _mean(v) -> float:
    """Mean of the finite values of ``v`` (NaN where there are none)."""
    v = _finite(v)
    return float(np.mean(v)) if v else float("nan")


def _spread(v) -> float:
    """Half-width of the 95 % confidence interval of that mean (NaN with fewer than two values)."""
    v = _finite(v)
    return float(1.96 * np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def _paired(values, noisy) -> list[float]:
    """``[mean, half-width of its 95 % CI]`` of ``values[i] - noisy[i]`` over the mixtures where both are finite."""
    d = [a - b for a, b in zip(values, noisy) if _finite([a]) and _finite([b])]
    return [_mean(d), _spread(d)]


def parse_model_spec(spec: str) -> tuple[str, str, str, float]:
    """``LABEL=CHECKPOINT[#PRECISION][@STRENGTH]`` -> ``(label, checkpoint, precision, strength)``: the weights
    stored in ``PRECISION`` (default float32), the output mixed ``STRENGTH * enhanced + (1 - STRENGTH) * noisy``
    (default 1: the model's output)."""
    label, eq, rest = spec.partition("=")
    if not eq or not label or not rest:
        raise SystemExit(f"--model {spec!r}: expected LABEL=CHECKPOINT[#PRECISION][@STRENGTH]")
    strength = 1.0
    head, at, tail = rest.rpartition("@")
    if at:
        try:
            strength = float(tail)
        except ValueError:
            raise SystemExit(f"--model {spec!r}: the strength after '@' must be a number in [0, 1], got {tail!r}")
        if not 0.0 <= strength <= 1.0:
            raise SystemExit(f"--model {spec!r}: the strength after '@' must be in [0, 1], got {strength}")
        rest = head
    ckpt, _, precision = rest.partition("#")  # CHECKPOINT#int8: the weights stored in that precision
    return label, ckpt, precision or "float32", strength


def _systems(args) -> list:
    """``[(label, spec, run, is_anchor)]``: the anchors asked for (or installed), then the ``--model`` checkpoints;
    ``run`` maps a list of noisy ``[samples]`` arrays to enhanced ones."""
    from jaxse.inference import Enhancer

    try:  # the package experiments when importable (one module object, whatever else is on sys.path), else the
        from experiments import anchors  # script's folder (run as python experiments/eval_pretrained.py)
    except ModuleNotFoundError:
        import anchors

    names = anchors.available() if args.anchors is None else args.anchors
    unknown = [a for a in names if a not in anchors.ANCHORS]
    if unknown:
        raise SystemExit(f"unknown anchor(s) {', '.join(unknown)}; valid: {', '.join(anchors.ANCHORS)}")
    systems = [(a, anchors.version(a), lambda xs, fn=anchors.ANCHORS[a]: [fn(x) for x in xs], True) for a in names]
    for spec in args.model:
        label, ckpt, precision, strength = parse_model_spec(spec)
        systems.append((label, spec.partition("=")[2], lambda xs, c=ckpt, p=precision, g=strength:
                        Enhancer.from_checkpoint(c, precision=p, strength=g).enhance(xs), False))
    if not systems:
        raise SystemExit("nothing to score: give --model LABEL=CHECKPOINT or install an anchor")
    return systems


class _Cache:
    """Per-mixture scores of the noisy input and of the anchors in ``--cache DIR``, one JSON per system, valid only
    for the same mixtures and metrics (the key) and the same anchor version (the file's ``spec``)."""

    def __init__(self, args):
        self.dir = Path(args.cache)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = hashlib.sha256(json.dumps([args.split, args.snrs, args.per_snr, args.seconds, args.dnsmos,
                                              Path(args.corpus).name], sort_keys=True).encode()).hexdigest()[:16]

    def _path(self, label: str) -> Path:
        return self.dir / f"{label}-{self.key}.json"

    def get(self, label: str, spec: str = ""):
        p = self._path(label)
        if not p.exists():
            return None
        kept = json.loads(p.read_text())
        if kept.get("spec") != spec:
            return None
        return [dict(res, errors=res.get("errors") or {}) for res in kept["scores"]]

    def put(self, label: str, scores, spec: str = "") -> None:
        clean = [dict({m: (None if v is None or not np.isfinite(float(v)) else float(v)) for m, v in res.items()
                       if m != "errors" and isinstance(v, (int, float, np.floating))},
                      errors={str(k): str(e) for k, e in (res.get("errors") or {}).items()}) for res in scores]
        tmp = self._path(label).with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": spec, "scores": clean}) + "\n")
        tmp.replace(self._path(label))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[],
                    help="LABEL=CHECKPOINT[#PRECISION][@STRENGTH] (repeat); PRECISION: float32 (default), bfloat16, "
                         "int8; STRENGTH: the wet/dry mix in [0, 1] (default 1)")
    ap.add_argument("--anchors", nargs="*", default=None,
                    help="other enhancers scored on the same mixtures (experiments/anchors.py): rnnoise, dfn3; "
                         "default: those whose packages are installed (pip install 'jaxse[anchors]'); none: --anchors")
    ap.add_argument("--corpus", default="data/speech_corpus")
    ap.add_argument("--split", default="test", choices=["test", "valid"])
    ap.add_argument("--snrs", type=float, nargs="+", default=[-5, 0, 5, 10, 15, 20],
                    help="input SNRs in dB; inf: the clean speech alone (how much of the speech a system keeps)")
    ap.add_argument("--per-snr", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--dnsmos", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--cache", default=None, help="folder that keeps the noisy and anchor scores between runs")
    args = ap.parse_args(argv)

    from jaxse.scoring import score_signals

    systems = _systems(args)
    items = make_mixtures(Path(args.corpus), args.snrs, args.per_snr, args.seconds, split=args.split)
    cols = COLUMNS + (DNSMOS_COLUMNS if args.dnsmos else ())
    cache = _Cache(args) if args.cache else None
    noisy = cache.get("noisy") if cache else None
    if noisy is None:
        noisy = score_signals([(clean, x) for _, _, clean, x in items], workers=args.workers,
                              with_dnsmos=args.dnsmos)
        if cache:
            cache.put("noisy", noisy)
    table: dict = {}  # table[label][snr][metric] = list of per-mixture values

    def add(label, scores):
        for (_, snr, _, _), res in zip(items, scores):
            for m in cols:
                table.setdefault(label, {}).setdefault(snr, {}).setdefault(m, []).append(_value(res, m))

    add("noisy", noisy)
    for label, spec, run, anchor in systems:
        enhanced = cache.get(label, spec) if cache and anchor else None
        if enhanced is None:
            outs = run([x for _, _, _, x in items])
            enhanced = score_signals([(clean, out) for (_, _, clean, _), out in zip(items, outs)],
                                     workers=args.workers, with_dnsmos=args.dnsmos)
            if cache and anchor:
                cache.put(label, enhanced, spec)
        add(label, enhanced)
        print(f"scored {label} ({spec}) on {len(items)} mixtures", file=sys.stderr)
    labels = ["noisy"] + [label for label, _, _, _ in systems]

    summary = {lab: {str(snr): {m: _mean(v) for m, v in per.items()} for snr, per in table[lab].items()}
               for lab in labels}
    mid = [snr for snr in args.snrs if 0 <= snr <= 15]
    for m in cols:
        print(f"\n{m}  (mean ± 95 % CI over {args.per_snr} mixtures per SNR; {args.seconds:g} s each)")
        print(f"{'input SNR':>10}" + "".join(f"{lab:>17}" for lab in labels))
        for snr in args.snrs:
            cells = [(summary[lab][str(float(snr))][m], _spread(table[lab][float(snr)][m])) for lab in labels]
            print(f"{snr:>10g}" + "".join(f"{v:>10.3f} ±{ci:5.3f}" for v, ci in cells))
        for name, group in (("0..15", mid), ("all", [snr for snr in args.snrs if np.isfinite(snr)])):
            if group:
                print(f"{name:>10}" + "".join(f"{_mean([x for snr in group for x in table[lab][float(snr)][m]]):>17.3f}"
                                              for lab in labels))
    # Paired on the same mixtures: a system's score minus the noisy input's, mixture by mixture. Its interval is
    # much narrower than the two unpaired ones side by side, so it is what says whether "STOI not below noisy" holds.
    paired = {lab: {str(snr): {m: _paired(table[lab][snr][m], table["noisy"][snr][m]) for m in cols}
                    for snr in table[lab]} for lab in labels[1:]}
    if len(labels) > 1:
        print("\nstoi minus noisy, paired (mean ± 95 % CI of the per-mixture difference)")
        print(f"{'input SNR':>10}" + "".join(f"{lab:>17}" for lab in labels[1:]))
        for snr in args.snrs:
            print(f"{snr:>10g}" + "".join("{:>+10.4f} ±{:5.4f}".format(*paired[lab][str(float(snr))]["stoi"])
                                          for lab in labels[1:]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"snrs": args.snrs, "per_snr": args.per_snr,
                                                   "seconds": args.seconds, "models": args.model,
                                                   "mean": summary, "minus_noisy": paired,
                                                   "scores": {lab: {str(snr): per for snr, per in table[lab].items()}
                                                              for lab in labels}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
