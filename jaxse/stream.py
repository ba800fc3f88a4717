"""``python -m jaxse.stream input=FILE [output=FILE] [checkpoint=WORKDIR] [key=value]``: the streaming step
(``jaxse.inference.Streamer``) on a file. It runs the first ``latency_seconds`` hop by hop, as a real-time caller
would, and prints the per-hop latency distribution and the real-time factor; with ``output=``, it writes the
enhanced file through the exact chunked streaming pass (any length, read and written block by block, equal to the
offline model). A multi-channel input is downmixed to mono; the output is at the model's rate (16 kHz).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from jaxse import cli
from jaxse.errors import UsageError
from jaxse.signal import SAMPLE_RATE

KEYS = (
    cli.CHECKPOINT_KEY,
    cli.Key("input", required=True, help="an audio file"),
    cli.Key("output", help="where to write the enhanced audio (optional; its folder is checked before any work)"),
    cli.STEP_KEY,
    cli.Key("threads", int, 1, min=1, help="CPU threads (1: as on a small device)"),
    cli.Key("warmup", int, 20, min=0, help="hops of silence run first (compilation, caches)"),
    cli.Key("latency_seconds", int, 20, min=0, help="seconds of the input timed hop by hop (0: none)"),
    *cli.STRENGTH_KEYS,
    cli.PRECISION_KEY,
)


def _head(path, seconds: float) -> np.ndarray:
    """The first ``seconds`` of ``path``, mono at the model's rate."""
    from jaxse.io.audio import probe, read_frames, resample

    info = probe(path)
    x, rate = read_frames(path, stop=int(seconds * info.rate))
    return resample(x.mean(axis=1), rate, SAMPLE_RATE)


def _main(argv: list[str]) -> int:
    args = cli.parse(argv, KEYS)

    strength = cli.strength_arg(args)
    if args["threads"] == 1:  # one CPU thread (set before the backend starts)
        import os

        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    from pathlib import Path

    if not Path(args["input"]).exists():
        raise UsageError(f"input {args['input']!r} does not exist")
    if args["output"] is not None:
        from jaxse.io.atomic import check_writable_dir

        check_writable_dir(Path(args["output"]).absolute().parent, "output file's folder")
    import jax

    from jaxse.inference import Enhancer, Streamer
    from jaxse.inference.files import enhance_long_file
    from jaxse.inference.streamer import precision_options
    from jaxse.io import checkpoints
    from jaxse.io.audio import probe

    # Every argument (the checkpoint too) is checked before any input is read, as in jaxse.enhance.
    model, variables, meta = checkpoints.load_model(args["checkpoint"], args["step"])
    probe(args["input"])  # an unreadable input is reported before any work
    variables = jax.device_put(variables)
    streamer = Streamer(model, **precision_options(args["precision"]))  # the hop-by-hop step
    hop = streamer.hop
    hop_ms = 1e3 * hop / SAMPLE_RATE
    print(f"{meta['model']['name']} {meta['model'].get('overrides', {})}: hops of {hop} samples ({hop_ms:.2f} ms), "
          f"algorithmic latency {1e3 * streamer.latency_samples / SAMPLE_RATE:.2f} ms")
    if args["latency_seconds"]:
        audio = _head(args["input"], args["latency_seconds"])
        if args["warmup"]:
            streamer.run(variables, np.zeros((1, args["warmup"] * hop), np.float32), flush=False)
        times: list[float] = []
        t_start = time.perf_counter()
        streamer.run(variables, audio[None], hop_times=times)
        wall = time.perf_counter() - t_start
        t = np.array(times) * 1e3
        print(f"per-hop compute over {len(t)} hops: median {np.median(t):.3f} ms, p90 {np.percentile(t, 90):.3f} ms, "
              f"p99 {np.percentile(t, 99):.3f} ms, max {t.max():.3f} ms ({100 * np.percentile(t, 99) / hop_ms:.1f} % "
              f"of the hop at p99)")
        print(f"real-time factor hop by hop {wall / (len(t) * hop / SAMPLE_RATE):.3f}")
    if args["output"] is not None:
        enh = Enhancer(model, variables, sample_rate=SAMPLE_RATE, level="none", strength=strength, meta=meta,
                       precision=args["precision"])  # the written output at the same precision
        t0 = time.perf_counter()
        enhance_long_file(enh, args["input"], args["output"], channels="downmix", rate="model")
        rtf = (time.perf_counter() - t0) * SAMPLE_RATE / probe(args["output"]).frames
        print(f"wrote {args['output']} (chunked pass, real-time factor {rtf:.3f} with compilation)")
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.stream", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
