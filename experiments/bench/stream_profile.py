"""Where a streaming hop's time goes, and how many streams one core can carry: arithmetic per hop against the
core's own measured rates, one run, one thread.

    taskset -c 0 python experiments/bench/stream_profile.py [--models dccrn-cl crn] [--streams 1 2 4 8]
        [--precisions float32 bfloat16] [--hops 200] [--json-out F]

For every model, precision (``float32``; ``bfloat16``: bfloat16 products, float32 constant weights) and number of
streams N: the ``MultiStreamer`` step of N streams (one call, N rows, random weights) timed over ``--hops`` hops
after warm-up (median and p99 per call), XLA's cost analysis of the compiled step (FLOP per call, bytes accessed),
the rate the call reaches (GFLOP/s) and the rate N real-time streams need (N x FLOP per hop / hop). Then the core's
own ceilings, measured in the same run: a large matrix product (1024^3, float32 and bfloat16 operands with float32
accumulation), the small-M products of one frame (M = 16 rows x 1024 x 1024) and the DRAM read bandwidth (a sum
over 256 MB). The ratio "needed / large-matmul rate" says whether any arrangement of the same arithmetic can carry
N streams on this core; "reached / needed" how far the step is from it.

XLA's single-thread flags are set here (before jax is imported); pin the process with ``taskset -c 0``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

SR = 16000
MODELS = {"dccrn-cl": {"decoder": "paper"}, "dccrn-cl-causal": {"decoder": "causal"}, "crn": {}}


def _timed(fn, n: int, warm: int = 5) -> np.ndarray:
    for _ in range(warm):
        fn()
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return np.asarray(t) * 1e3


def _cost(compiled) -> tuple[float, float]:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan"))), float(ca.get("bytes accessed", float("nan")))


def core_ceilings() -> dict:
    """GFLOP/s of a large and of a small-M matrix product (float32; bfloat16 operands, float32 accumulation) and the
    DRAM read bandwidth (GB/s), one thread."""
    import jax
    import jax.numpy as jnp

    out = {}
    rng = np.random.default_rng(0)
    for m, label in ((1024, "large 1024^3"), (16, "one frame 16x1024x1024")):
        a32 = jnp.asarray(rng.standard_normal((m, 1024)), jnp.float32)
        b32 = jnp.asarray(rng.standard_normal((1024, 1024)), jnp.float32)
        for dt in ("float32", "bfloat16"):
            a, b = a32.astype(dt), b32.astype(dt)
            f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
            jax.block_until_ready(f(a, b))
            t = _timed(lambda: jax.block_until_ready(f(a, b)), 50 if m > 16 else 500)
            out[f"{label} {dt} GFLOP/s"] = 2 * m * 1024 * 1024 / (np.median(t) * 1e-3) / 1e9
    x = jnp.ones((64 * 1024 * 1024,), jnp.float32)  # 256 MB, far above the L3
    s = jax.jit(jnp.sum)
    jax.block_until_ready(s(x))
    t = _timed(lambda: jax.block_until_ready(s(x)), 20)
    out["DRAM read GB/s"] = x.nbytes / (np.median(t) * 1e-3) / 1e9
    return out


def profile_model(name: str, precision: str, streams: list[int], hops: int) -> list[dict]:
    """One row per N: per-call median / p99 (ms), FLOP and bytes per call (XLA cost analysis), reached and needed
    GFLOP/s."""
    import jax
    import jax.numpy as jnp

    from jaxse.inference.multistream import MultiStreamer
    from jaxse.inference.streamer import Streamer, precision_options
    from jaxse.models import get_model

    model = get_model(name.replace("-causal", ""), **MODELS[name])
    hop = model.hop
    hop_s = hop / SR
    audio = np.random.default_rng(1).standard_normal(SR * 4).astype(np.float32) * 0.05
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(audio[None, : 4 * hop]))
    streamer = Streamer(model, **precision_options(precision))
    frames = [audio[i * hop:(i + 1) * hop] for i in range(len(audio) // hop)]
    rows = []
    for n in streams:
        ms = MultiStreamer(streamer, variables)
        ids = [ms.join() for _ in range(n)]
        ms.step({sid: frames[0] for sid in ids})
        k = iter(range(10 ** 9))
        t = _timed(lambda: ms.step({sid: frames[(next(k) + 7 * j) % len(frames)] for j, sid in enumerate(ids)}), hops)
        x = np.zeros((ms.rows, hop), np.float32)
        meta = (jnp.zeros(ms.rows, bool), jnp.asarray(ms._end), jnp.ones(ms.rows, jnp.float32))
        flops, nbytes = _cost(ms._step.lower(ms.state, x, np.ones(ms.rows, bool), *meta).compile())
        med = float(np.median(t))
        rows.append({"model": name, "precision": precision, "streams": n, "hop_ms": 1e3 * hop_s, "median_ms": med,
                     "p99_ms": float(np.percentile(t, 99)), "mflop_per_call": flops / 1e6,
                     "mb_accessed_per_call": nbytes / 1e6, "reached_gflops": flops / (med * 1e-3) / 1e9,
                     "needed_gflops": flops / hop_s / 1e9})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict], ceilings: dict) -> str:
    peak = {"float32": ceilings["large 1024^3 float32 GFLOP/s"], "bfloat16": ceilings["large 1024^3 bfloat16 GFLOP/s"]}
    lines = ["core ceilings (one thread): " + ", ".join(f"{k} {v:.1f}" for k, v in ceilings.items()), "",
             "| model | precision | N | median / p99 per call (ms) | hop (ms) | MFLOP per call | reached GFLOP/s | "
             "needed for N real-time streams | needed / large-matmul rate |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['streams']} | {r['median_ms']:.2f} / {r['p99_ms']:.2f} | "
                     f"{r['hop_ms']:.2f} | {r['mflop_per_call']:.0f} | {r['reached_gflops']:.1f} | "
                     f"{r['needed_gflops']:.1f} | {r['needed_gflops'] / peak[r['precision']]:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dccrn-cl", "crn"], choices=sorted(MODELS))
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--hops", type=int, default=200)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    ceilings = core_ceilings()
    rows = [r for m in args.models for p in args.precisions for r in profile_model(m, p, args.streams, args.hops)]
    print(report(rows, ceilings))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "ceilings": ceilings,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
