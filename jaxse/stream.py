"""``python -m jaxse.stream checkpoint=WORKDIR input=FILE [output=FILE] [step=N] [threads=1] [warmup=20]``: run a file
through the streaming step (``jaxse.inference.Streamer``) hop by hop; print the per-hop latency distribution and the
real-time factor. ``threads=1`` (default) runs on one CPU thread, as on a small device.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from jaxse import cli
from jaxse.signal import SAMPLE_RATE

KEYS = (
    cli.Key("checkpoint", required=True, help="training workdir, its checkpoints/ folder or a step folder"),
    cli.Key("input", required=True, help="an audio file"),
    cli.Key("output", help="where to write the enhanced audio (optional)"),
    cli.Key("step", int, min=0),
    cli.Key("threads", int, 1, min=1),
    cli.Key("warmup", int, 20, min=0, help="hops of silence run first (compilation, caches)"),
)


def _main(argv: list[str]) -> int:
    args = cli.parse(argv, KEYS)
    if args["threads"] == 1:  # one CPU thread (set before the backend starts)
        import os

        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    if args["output"] is not None:
        from jaxse.io.atomic import check_writable_dir
        from pathlib import Path

        check_writable_dir(Path(args["output"]).parent, "output file's folder")
    import jax

    from jaxse.inference.streamer import Streamer
    from jaxse.io import checkpoints
    from jaxse.io.audio import read_audio, write_audio_atomic

    model, variables, meta = checkpoints.load_model(args["checkpoint"], args["step"])
    audio = read_audio(args["input"], sample_rate=SAMPLE_RATE, resample=True, multichannel="downmix")
    streamer = Streamer(model)
    variables = jax.device_put(variables)
    hop = streamer.hop
    if args["warmup"]:
        streamer.run(variables, np.zeros((1, args["warmup"] * hop), np.float32), flush=False)
    times: list[float] = []
    t_start = time.perf_counter()
    y = streamer.run(variables, audio[None], hop_times=times)
    wall = time.perf_counter() - t_start
    t = np.array(times) * 1e3
    hop_ms = 1e3 * hop / SAMPLE_RATE
    print(f"{meta['model']['name']} {meta['model'].get('overrides', {})}: {len(t)} hops of {hop} samples "
          f"({hop_ms:.2f} ms), algorithmic latency {1e3 * streamer.latency_samples / SAMPLE_RATE:.2f} ms")
    print(f"per-hop compute: median {np.median(t):.3f} ms, p90 {np.percentile(t, 90):.3f} ms, "
          f"p99 {np.percentile(t, 99):.3f} ms, max {t.max():.3f} ms ({100 * np.percentile(t, 99) / hop_ms:.1f} % "
          f"of the hop at p99)")
    print(f"real-time factor {wall / (len(t) * hop / SAMPLE_RATE):.3f}")
    if args["output"] is not None:
        write_audio_atomic(args["output"], y[0], SAMPLE_RATE)
        print(f"wrote {args['output']}")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.stream", _main, argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
