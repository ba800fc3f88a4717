"""The training curve of a run as a Markdown table, from its ``metrics.jsonl``:

    python experiments/training_curve.py runs/dccrn-speech [--every 100]

One row per validation step: the mean training SI-SNR of the logged steps since the previous row, and the
validation SI-SNR, its improvement over the noisy input, PESQ-WB and STOI.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(workdir: str | Path) -> list[dict]:
    rows = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out, train = [], []
    quality = {r["step"]: r for r in rows if r["kind"] == "valid_quality"}
    for r in rows:
        if r["kind"] == "train" and "si_snr" in r:
            train.append(r["si_snr"])
        elif r["kind"] == "valid":
            q = quality.get(r["step"], {})
            out.append({"step": r["step"], "train_si_snr": sum(train) / len(train) if train else float("nan"),
                        "valid_si_snr": r["si_snr"], "valid_si_snr_improvement": r.get("si_snr_improvement"),
                        "valid_pesq_wb": q.get("pesq_wb"), "valid_stoi": q.get("stoi")})
            train = []
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    args = ap.parse_args(argv)
    f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    print("| step | train SI-SNR (dB) | valid SI-SNR (dB) | valid SI-SNR improvement (dB) | valid PESQ-WB | valid STOI |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in curve(args.workdir):
        print(f"| {r['step']} | {f(r['train_si_snr'])} | {f(r['valid_si_snr'])} | "
              f"{f(r['valid_si_snr_improvement'])} | {f(r['valid_pesq_wb'], 3)} | {f(r['valid_stoi'], 3)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
