"""Peer half of the benchmark: asteroid 0.7.0 DCCRNet("DCCRN-CL") on CPU (run with the peer venv).

    $PEER_VENV/bin/python experiments/bench/peer_bench.py train [--steps N | --quick] [--threads 1|2]
    $PEER_VENV/bin/python experiments/bench/peer_bench.py infer [--steps N | --quick] [--threads 1|2]
    $PEER_VENV/bin/python experiments/bench/peer_bench.py stream

Run each subcommand in its own process (peak RSS is per process).  Each prints exactly one
final JSON line on stdout:

- train: global batch 8 x 4 s at 16 kHz, model.train(), forward + negative SI-SDR
  (asteroid.losses.singlesrc_neg_sisdr, mean over batch) + backward + Adam(lr 1e-3) step;
  median seconds/step over N timed steps after 2 warm-up steps.
- infer: batch 1 x 4 s, model.eval(), torch.no_grad(); median seconds over N runs after 2
  warm-ups; rtf = seconds / 4.
- stream: asteroid has no streaming mode for DCCRNet -> {"skipped": true}.

Peak RSS is resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) / 1024.  The glibc malloc
environment variables in effect (MALLOC_*) are echoed in the JSON because they change the
training figure a lot on the 2-core machines of experiments/bench/RESULTS.md (default and tuned malloc rows there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SR = 16000
SECONDS = 4.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def neg_sisdr_fallback(est, target, eps=1e-8):
    """Own scale-invariant SDR loss (zero-mean), used only if asteroid.losses fails to import."""
    import torch

    target = target - target.mean(dim=-1, keepdim=True)
    est = est - est.mean(dim=-1, keepdim=True)
    dot = torch.sum(est * target, dim=-1, keepdim=True)
    proj = dot * target / (torch.sum(target ** 2, dim=-1, keepdim=True) + eps)
    noise = est - proj
    sdr = torch.sum(proj ** 2, dim=-1) / (torch.sum(noise ** 2, dim=-1) + eps)
    return -10 * torch.log10(sdr + eps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["train", "infer", "stream"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 timed steps")
    ap.add_argument("--threads", type=int, default=2, choices=[1, 2])
    ap.add_argument("--batch", type=int, default=None, help="default 8 (train) / 1 (infer)")
    ap.add_argument("--seconds", type=float, default=SECONDS, help="audio length per example (default 4)")
    args = ap.parse_args(argv)

    base = {"peer": "asteroid DCCRNet DCCRN-CL", "mode": args.mode}
    if args.mode == "stream":
        print("asteroid DCCRNet has no streaming/stateful inference mode; stream benchmark skipped",
              file=sys.stderr)
        print(json.dumps({**base, "skipped": True, "reason": "asteroid has no streaming mode",
                          "peak_rss_mib": round(peak_rss_mib(), 1)}))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, HERE)
    from make_asteroid_vectors import build_dccrnet

    steps = 2 if args.quick else args.steps
    model, _ = build_dccrnet("DCCRN-CL", seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    n = int(SR * args.seconds)
    g = torch.Generator().manual_seed(0)
    times = []

    if args.mode == "infer":
        batch = args.batch or 1
        wav = 0.1 * torch.randn(batch, n, generator=g)
        model.eval()
        with torch.no_grad():
            for i in range(args.warmup + steps):
                t0 = time.perf_counter()
                out = model(wav)
                dt = time.perf_counter() - t0
                if i >= args.warmup:
                    times.append(dt)
        assert out.shape == (batch, 1, n)
        med = statistics.median(times)
        figures = {"batch": batch, "audio_s": args.seconds, "median_s": med, "rtf": med / args.seconds}
    else:
        batch = args.batch or 8
        try:
            from asteroid.losses import singlesrc_neg_sisdr as loss_fn
            loss_name = "asteroid.losses.singlesrc_neg_sisdr"
        except Exception:          # pragma: no cover - asteroid.losses import problems
            loss_fn, loss_name = neg_sisdr_fallback, "own neg SI-SDR"
        clean = 0.1 * torch.randn(batch, n, generator=g)
        noisy = clean + 0.05 * torch.randn(batch, n, generator=g)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for i in range(args.warmup + steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            est = model(noisy)[:, 0]
            loss = loss_fn(est, clean).mean()
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t0
            losses.append(float(loss))
            if i >= args.warmup:
                times.append(dt)
        med = statistics.median(times)
        figures = {"batch": batch, "audio_s": args.seconds, "median_s_per_step": med, "loss": loss_name,
                   "optimizer": "Adam lr 1e-3", "first_loss": losses[0], "last_loss": losses[-1]}

    print(json.dumps({
        **base, **figures, "steps": steps, "warmup": args.warmup, "all_s": [round(t, 4) for t in times],
        "threads": args.threads, "params": n_params, "peak_rss_mib": round(peak_rss_mib(), 1),
        "torch": torch.__version__, "python": platform.python_version(),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
