"""Inference at any length: peak memory and real-time factor of ``python -m jaxse.enhance`` on long files, and the
per-hop latency of the streaming step on one thread.

    python experiments/bench/long_inference.py                       # 4 s clips, 1, 10 and 60-minute files
    python experiments/bench/long_inference.py minutes=1,10 models=dccrn-cl

Each case runs in a fresh subprocess (``ru_maxrss`` is the peak of that process alone) on a freshly initialised
checkpoint (weights do not change the cost). Inputs are noise-like signals (pink-ish noise under a syllable-rate
envelope, 16 kHz mono FLOAT wav) generated block by block, so the parent's memory stays small. Rows:
  clips   32 files of 4 s through the batched offline path: the reference offline real-time factor
  N min   one file of N minutes through the chunked streaming pass (files longer than ``long_seconds``)
RTF = wall time of ``jaxse.enhance``'s main (checkpoint load and compilation included) / audio duration; the
``steady`` column (files up to 10 minutes) times ``jaxse.inference.files.enhance_long_file`` alone, after a first run
on a 4 s file (compilation). Per-hop: ``python -m jaxse.stream threads=1``.
Run it on a quiet machine; it writes a few GB of temporary audio (60 minutes: 230 MB input, 230 MB output).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def noise_like(path: Path, seconds: float, seed: int = 0, block: int = 1 << 20) -> None:
    """Write a speech-like noise signal of ``seconds`` to ``path`` block by block."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    state = 0.0
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="FLOAT") as f:
        for s in range(0, n, block):
            m = min(block, n - s)
            w = rng.standard_normal(m)
            pink = np.empty(m)
            for i in range(0, m, 4096):  # a one-pole low-pass, vectorised per segment via lfilter
                from scipy.signal import lfilter

                seg, zf = lfilter([0.2], [1, -0.8], w[i:i + 4096], zi=[state])
                pink[i:i + 4096] = seg
                state = zf[0]
            t = (s + np.arange(m)) / SR
            env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
            f.write((0.1 * pink * env).astype(np.float32))


def child(argv: list[str]) -> None:
    """``child CKPT INPUT OUTPUT [WARM_FILE]``: run jaxse.enhance in this process; print JSON."""
    import resource

    from jaxse import enhance

    ckpt, inp, out = argv[:3]
    steady = len(argv) > 3
    if steady:  # through the API: compile on a 4 s file first, then time the long one alone
        from jaxse.inference import Enhancer
        from jaxse.inference.files import enhance_long_file

        enh = Enhancer.from_checkpoint(ckpt)
        enhance_long_file(enh, argv[3], Path(out) / "warm.wav")
        t0 = time.perf_counter()
        enhance_long_file(enh, inp, Path(out) / Path(inp).name)
        rc = 0
    else:
        t0 = time.perf_counter()
        rc = enhance.main([f"checkpoint={ckpt}", f"input={inp}", f"output={out}"])
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    print("RESULT " + json.dumps({"rc": rc, "wall": wall, "rss_mib": rss, "steady": steady}))


def _run_child(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "child", *map(str, args)], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def make_ckpt(root: Path, name: str) -> Path:
    import jax
    import jax.numpy as jnp

    from jaxse.io import checkpoints
    from jaxse.models import get_model

    model = get_model(name)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SR), jnp.float32))
    d = root / f"ckpt-{name}"
    checkpoints.save_model(d, model_name=name, variables=variables)
    return d


def per_hop(ckpt: Path, clip: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "jaxse.stream", f"checkpoint={ckpt}", f"input={clip}", "threads=1"],
                       capture_output=True, text=True)
    return " | ".join(line for line in r.stdout.splitlines() if "per-hop" in line or "real-time" in line) or \
        r.stderr[-500:]


def main(argv: list[str]) -> None:
    opts = dict(a.split("=", 1) for a in argv)
    minutes = [float(m) for m in opts.get("minutes", "1,10,60").split(",") if m]
    models = opts.get("models", "dccrn-cl,crn").split(",")
    with tempfile.TemporaryDirectory(prefix="long_inference.") as tmp:
        root = Path(tmp)
        clips = root / "clips"
        clips.mkdir()
        for i in range(32):
            noise_like(clips / f"c{i:02d}.wav", 4.0, seed=i)
        warm = root / "warm"
        warm.mkdir()
        noise_like(warm / "w.wav", 4.0, seed=99)
        for name in models:
            ckpt = make_ckpt(root, name)
            print(f"== {name}")
            print(f"  per-hop (one thread): {per_hop(ckpt, clips / 'c00.wav')}")
            r = _run_child(ckpt, clips, root / f"out-{name}-clips")
            print(f"  clips 32 x 4 s   rc {r['rc']}  peak RSS {r['rss_mib']:7.0f} MiB  RTF {r['wall'] / 128:.4f}")
            for m in minutes:
                f = root / f"long-{m:g}min.wav"
                if not f.exists():
                    noise_like(f, 60 * m, seed=1)
                r = _run_child(ckpt, f, root / f"out-{name}-{m:g}")
                rs = _run_child(ckpt, f, root / f"out-{name}-{m:g}-s", warm / "w.wav") if m <= 10 else None
                steady = f"  steady RTF {rs['wall'] / (60 * m):.4f}" if rs else ""
                print(f"  {m:5g} min        rc {r['rc']}  peak RSS {r['rss_mib']:7.0f} MiB  "
                      f"RTF {r['wall'] / (60 * m):.4f}{steady}", flush=True)
                for p in (root / f"out-{name}-{m:g}").glob("*"):
                    p.unlink()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2:])
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        main(sys.argv[1:])
