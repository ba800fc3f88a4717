"""What each training lever costs per step: the shipped recipe's step (DCCRN-CL, batch 4 x 2 s) with one lever
changed at a time, all in one run on one machine (ratios against the float32 SI-SNR step of the same run).

    python experiments/bench/lever_steps.py [--steps 6] [--levers baseline,bf16,mrstft,bf16+mrstft,bf16+sd,narrow]

Levers: ``bf16`` bfloat16 products (``model.compute_dtype``), ``mrstft`` SI-SNR + multi-resolution STFT loss
(``loss=si_snr_mrstft``), ``bf16+sd`` bfloat16 products and the speech-distortion loss of ``dccrn-speech-sd``
(``loss=si_snr_sd``: the mask applied to the clean speech too), ``narrow`` DCCRN-CL at half the channels and LSTM
units (0.92 M parameters). Each lever runs in its own subprocess (its own compile, no shared caches); prints compile
seconds, the median seconds per step after two warm-up steps, the parameter count and the ratio to the baseline.
Quality per lever needs training time: see README "Pretrained model".
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LEVERS = {
    "baseline": dict(loss="si_snr", overrides={}),
    "bf16": dict(loss="si_snr", overrides={"compute_dtype": "bfloat16"}),
    "mrstft": dict(loss="si_snr_mrstft", overrides={}),
    "bf16+mrstft": dict(loss="si_snr_mrstft", overrides={"compute_dtype": "bfloat16"}),
    "narrow": dict(loss="si_snr", overrides={"channels": (8, 16, 32, 64, 64, 64), "rnn_units": 64}),
    "bf16+sd": dict(loss="si_snr_sd", overrides={"compute_dtype": "bfloat16"},
                    options={"sd_weight": 0.5, "sd_mid_snr": 0.0, "sd_ramp_db": 3.0}),
}


def _worker(name: str, steps: int, batch: int, seconds: float) -> dict:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from jaxse import losses, optim
    from jaxse.models import count_params, get_model
    from jaxse.train.distributed import AXIS, global_batch
    from jaxse.train.step import create_state, make_train_step

    lever = LEVERS[name]
    mesh = Mesh(np.array(jax.devices()), (AXIS,))
    model = get_model("dccrn-cl", decoder="paper", norm="complex", impl="gauss", axis_name=AXIS, **lever["overrides"])
    eval_model = get_model("dccrn-cl", decoder="paper", norm="complex", impl="gauss", **lever["overrides"])
    tx = optim.make_optimizer(lr=1e-3)
    state = create_state(eval_model, tx, jax.random.PRNGKey(0))
    step = make_train_step(model, tx, losses.get_loss(lever["loss"], **lever.get("options", {})), mesh)
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    clean = (0.05 * rng.standard_normal((batch, n))).astype(np.float32)
    b = global_batch({"noisy": clean + (0.02 * rng.standard_normal((batch, n))).astype(np.float32),
                      "clean": clean}, mesh)
    t0 = time.perf_counter()
    state, m = step(state, b)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        state, m = step(state, b)
        jax.block_until_ready(m)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return {"lever": name, "compile_s": compile_s, "median_s": float(np.median(times)),
            "params": count_params(state.params)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--levers", default=",".join(LEVERS))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.steps, args.batch, args.seconds)))
        return 0
    rows = []
    for name in args.levers.split(","):
        if name not in LEVERS:
            raise SystemExit(f"unknown lever {name!r}; valid: {', '.join(LEVERS)}")
        cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--batch", str(args.batch),
               "--seconds", str(args.seconds)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        if out.returncode:
            raise SystemExit(f"lever {name} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"[lever] {rows[-1]}", file=sys.stderr, flush=True)
    base = next((r["median_s"] for r in rows if r["lever"] == "baseline"), None)
    print(f"{'lever':<14}{'params':>12}{'compile s':>11}{'s/step':>9}{'vs baseline':>13}")
    for r in rows:
        ratio = f"{r['median_s'] / base:.2f}x" if base else "-"
        print(f"{r['lever']:<14}{r['params']:>12,}{r['compile_s']:>11.1f}{r['median_s']:>9.2f}{ratio:>13}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
