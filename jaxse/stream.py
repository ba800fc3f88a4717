"""``python -m jaxse.stream checkpoint=WORKDIR input=FILE [output=FILE] [threads=1]``: run a file through the
streaming step (``jaxse.inference.streamer.Streamer``) hop by hop; print the per-hop latency distribution and the
real-time factor.
"""
from __future__ import annotations

import sys
import time

import jax
import numpy as np

from jaxse.inference.streamer import Streamer


# ==================================================================================================== CLI
def _parse(argv: list[str]) -> dict:
    from jaxse.config import ConfigError, parse_key_values

    try:
        return parse_key_values(argv, ("checkpoint", "input", "output", "step", "threads", "warmup"),
                                required=("checkpoint", "input"))
    except ConfigError as e:
        raise SystemExit(f"jaxse.stream: error: {e}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.get("threads", "1") == "1":  # one CPU thread, as on a small device (set before the backend starts)
        import os

        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    from jaxse.io import checkpoints
    from jaxse.io.audio import AudioError, read_audio, write_audio_atomic

    try:
        model, variables, meta = checkpoints.load_model(args["checkpoint"],
                                                        int(args["step"]) if "step" in args else None)
        audio = read_audio(args["input"], sample_rate=16000, resample=True, multichannel="reject")
    except (checkpoints.CheckpointError, AudioError) as e:
        print(f"jaxse.stream: error: {e}", file=sys.stderr)
        return 1
    streamer = Streamer(model)
    variables = jax.device_put(variables)
    state = streamer.init_stream(variables, 1)
    hop = streamer.hop
    n = audio.shape[-1]
    x = np.zeros((1, -(-(n + streamer.delay) // hop) * hop), np.float32)
    x[0, :n] = audio
    for _ in range(int(args.get("warmup", 20))):  # compile and warm up on silence
        y, _ = streamer.stream_step(variables, state, x[:, :hop] * 0)
        y.block_until_ready()
    times, outs = [], []
    t_start = time.perf_counter()
    for k in range(x.shape[1] // hop):
        t0 = time.perf_counter()
        y, state = streamer.stream_step(variables, state, x[:, k * hop:(k + 1) * hop])
        y = np.asarray(y)  # waits for the result: what a real-time caller does
        times.append(time.perf_counter() - t0)
        outs.append(y)
    wall = time.perf_counter() - t_start
    t = np.array(times) * 1e3
    hop_ms = 1e3 * hop / 16000
    print(f"{meta['model']['name']} {meta['model'].get('overrides', {})}: {len(t)} hops of {hop} samples "
          f"({hop_ms:.2f} ms), algorithmic latency {streamer.latency_samples / 16:.2f} ms")
    print(f"per-hop compute: median {np.median(t):.3f} ms, p90 {np.percentile(t, 90):.3f} ms, "
          f"p99 {np.percentile(t, 99):.3f} ms, max {t.max():.3f} ms ({100 * np.percentile(t, 99) / hop_ms:.1f} % "
          f"of the hop at p99)")
    print(f"real-time factor {wall / (len(t) * hop / 16000):.3f}")
    if "output" in args:
        y = np.concatenate(outs, axis=1)[0, streamer.delay: streamer.delay + n]
        write_audio_atomic(args["output"], y, 16000)
        print(f"wrote {args['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
