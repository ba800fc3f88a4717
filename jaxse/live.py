"""Live enhancement: ``python -m jaxse.live [checkpoint=RUN] [input=DEVICE] [output=DEVICE|FILE] [key=value]``:
microphone to speaker, or to a file, through the streaming step (``jaxse.inference.Streamer``) inside the
PortAudio callback (``sounddevice``: ``pip install 'jaxse[live]'``; PortAudio itself may need
``apt-get install libportaudio2``).

Audio runs at the model's rate (16 kHz), mono in (channels averaged), the enhanced signal on every output channel.
The output lags the input by the stream's delay (``Streamer.delay``) plus one block of capture, plus the devices'
buffers. Over- and under-runs (PortAudio's flags, and blocks whose compute took longer than the block lasts) are
counted and printed every few seconds and at the end. Ctrl-C stops cleanly: the stream is closed, a file output is
completed, exit status 130.
"""
from __future__ import annotations

import queue
import sys
import time
from pathlib import Path

import numpy as np

from jaxse import cli
from jaxse.errors import UsageError
from jaxse.signal import SAMPLE_RATE

KEYS = (
    cli.REALTIME_CHECKPOINT_KEY,
    cli.STEP_KEY,
    cli.Key("input", help="input device, an index or a part of its name (unset: the system's)"),
    cli.Key("output", help="output device (index or name part), or a file (.wav/.flac/.ogg) to record the enhanced "
                           "audio to (unset: the system's device)"),
    cli.Key("block_hops", int, min=1,
            help="hops per audio block (unset: about 20 ms); the block adds its length to the latency"),
    *cli.STRENGTH_KEYS,
    cli.Key("seconds", int, min=1, help="stop after this many seconds (unset: run until Ctrl-C)"),
    cli.Key("threads", int, 1, min=1, help="CPU threads for the model"),
    cli.PRECISION_KEY,
    cli.Key("devices", bool, False, help="true: list the audio devices and exit"),
)


def sounddevice():
    """The ``sounddevice`` module, imported on first use (``UsageError`` saying what to install otherwise)."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the module is there, the PortAudio library is not
        raise UsageError(f"live audio needs the sounddevice package and PortAudio: pip install 'jaxse[live]' "
                         f"(and apt-get install libportaudio2) ({type(e).__name__}: {e})") from None
    return sd


class LiveProcessor:
    """Blocks of whole hops in, enhanced blocks out, with the stream state carried between calls.

    ``process(block: float32[frames]) -> float32[frames]``: any number of frames; whole hops go through the model
    (``block_hops`` at a time, one compiled chunk), the rest waits for the next call; when fewer enhanced samples
    than asked for are ready the output is padded with zeros (an under-run). ``callback`` has PortAudio's signature.
    """

    def __init__(self, streamer, variables, *, block_hops: int = 1, strength: float = 1.0):
        import jax.numpy as jnp

        self.streamer, self.variables = streamer, variables
        self.hop = streamer.hop
        self.block = block_hops * self.hop
        self.strength = float(strength)
        self._jnp = jnp
        self.state = streamer.init_stream(variables, 1)
        self._run(np.zeros(self.block, np.float32))  # compile before the first callback
        self.state = streamer.init_stream(variables, 1)
        self._dry = np.zeros(streamer.delay, np.float32)  # the input delayed to align with the output (mix)
        self._in = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)
        self.blocks = self.overruns = self.underruns = self.late = 0

    @property
    def block_seconds(self) -> float:
        return self.block / SAMPLE_RATE

    def _run(self, x: np.ndarray) -> np.ndarray:
        y, self.state = self.streamer.stream_chunk(self.variables, self.state, self._jnp.asarray(x[None]))
        return np.asarray(y)[0]

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32).reshape(-1)
        frames = block.shape[0]
        self._in = np.concatenate([self._in, block])
        outs = [self._out]
        while self._in.shape[0] >= self.block:
            x, self._in = self._in[: self.block], self._in[self.block:]
            t0 = time.perf_counter()
            y = self._run(x)
            if time.perf_counter() - t0 > self.block_seconds:
                self.late += 1
            if self.strength < 1.0:
                dry = np.concatenate([self._dry, x])
                self._dry = dry[self.block:]
                y = self.strength * y + (1.0 - self.strength) * dry[: self.block]
            outs.append(y.astype(np.float32))
            self.blocks += 1
        out = np.concatenate(outs)
        if out.shape[0] < frames:
            if self.blocks:  # the start of the stream fills the first block: not an under-run
                self.underruns += 1
            out = np.concatenate([np.zeros(frames - out.shape[0], np.float32), out])
        self._out = out[frames:]
        return out[:frames]

    def callback(self, indata, outdata, frames, time_info, status) -> None:
        """PortAudio's callback (``sounddevice.Stream``): ``indata [frames, channels]`` -> ``outdata``."""
        if status:
            self.overruns += int(bool(getattr(status, "input_overflow", False)))
            self.underruns += int(bool(getattr(status, "output_underflow", False)))
        y = self.process(np.asarray(indata, np.float32).mean(axis=1))
        outdata[:] = y[:, None]

    def input_callback(self, sink):
        """A callback for an input-only stream that hands each enhanced block to ``sink(float32[frames])``."""
        def cb(indata, frames, time_info, status):
            if status:
                self.overruns += int(bool(getattr(status, "input_overflow", False)))
            sink(self.process(np.asarray(indata, np.float32).mean(axis=1)))
        return cb

    def report(self) -> str:
        return (f"{self.blocks} blocks of {1e3 * self.block_seconds:.1f} ms; over-runs {self.overruns}, "
                f"under-runs {self.underruns}, late blocks {self.late}")


def _device(sd, spec: str | None, kind: str):
    """A device index from an index or a part of a name (``UsageError`` naming the key otherwise)."""
    if spec is None:
        return None
    if spec.isdigit():
        return int(spec)
    names = [(i, d["name"]) for i, d in enumerate(sd.query_devices())
             if d[f"max_{kind}_channels"] > 0 and spec.lower() in d["name"].lower()]
    if len(names) != 1:
        raise UsageError(f"{kind} device {spec!r}: " + ("no such device" if not names else
                         "several match: " + ", ".join(n for _, n in names)) + " (devices=true lists them)")
    return names[0][0]


def _main(argv: list[str]) -> int:
    # Longer than a screen: device set-up, the callback's stream and its report share the open devices.
    args = cli.parse(argv, KEYS)
    sd = sounddevice()
    if args["devices"]:
        print(sd.query_devices())
        return cli.EXIT_OK

    strength = cli.strength_arg(args)
    out = args["output"]
    from jaxse.io.audio import AUDIO_EXTENSIONS

    to_file = out is not None and Path(out).suffix.lower() in AUDIO_EXTENSIONS
    if to_file:
        from jaxse.io.atomic import check_writable_dir

        check_writable_dir(Path(out).absolute().parent, "output file's folder")
    in_dev = _device(sd, args["input"], "input")
    out_dev = None if to_file else _device(sd, out, "output")
    if args["threads"] == 1:
        import os

        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax

    from jaxse.inference import Streamer
    from jaxse.inference.streamer import precision_options
    from jaxse.io import checkpoints

    model, variables, meta = checkpoints.load_model(args["checkpoint"], args["step"])
    streamer = Streamer(model, **precision_options(args["precision"]))
    block_hops = args["block_hops"] or max(1, round(0.02 * SAMPLE_RATE / streamer.hop))
    proc = LiveProcessor(streamer, jax.device_put(variables), block_hops=block_hops, strength=strength)
    print(f"jaxse.live: {meta['model']['name']} ({args['checkpoint']}), blocks of {block_hops} hop(s) "
          f"({1e3 * proc.block_seconds:.1f} ms), "
          f"latency {1e3 * (streamer.delay + proc.block) / SAMPLE_RATE:.1f} ms + the devices'; Ctrl-C stops", flush=True)
    t_end = None if args["seconds"] is None else time.monotonic() + args["seconds"]
    interrupted = False
    last_report = time.monotonic()

    def running() -> bool:
        nonlocal last_report
        if time.monotonic() - last_report > 5.0:
            print(f"jaxse.live: {proc.report()}", flush=True)
            last_report = time.monotonic()
        return t_end is None or time.monotonic() < t_end

    try:
        if to_file:
            from jaxse.io.audio import AtomicAudioWriter

            q: queue.Queue = queue.Queue()
            with AtomicAudioWriter(out, SAMPLE_RATE, 1, "PCM_16") as w:
                try:
                    with sd.InputStream(samplerate=SAMPLE_RATE, blocksize=proc.block, device=in_dev, channels=1,
                                        dtype="float32", callback=proc.input_callback(q.put)):
                        while running():
                            sd.sleep(100)
                            while not q.empty():
                                w.write(np.clip(q.get_nowait(), -1.0, 1.0))
                except KeyboardInterrupt:
                    interrupted = True
                while not q.empty():  # what was recorded before the stop
                    w.write(np.clip(q.get_nowait(), -1.0, 1.0))
            print(f"jaxse.live: wrote {out}")
        else:
            try:
                with sd.Stream(samplerate=SAMPLE_RATE, blocksize=proc.block, device=(in_dev, out_dev),
                               channels=1, dtype="float32", callback=proc.callback):
                    while running():
                        sd.sleep(100)
            except KeyboardInterrupt:
                interrupted = True
    except sd.PortAudioError as e:
        raise UsageError(f"audio device: {e}") from None
    finally:
        print(f"jaxse.live: {proc.report()}", flush=True)
    if interrupted:
        raise KeyboardInterrupt  # exit status 130 (jaxse.cli)
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.live", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
