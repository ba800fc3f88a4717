"""Enhance files and folders: ``python -m jaxse.enhance input=FILE_OR_DIR output=DIR [checkpoint=RUN] [key=value]``.

Files are read one at a time; short ones wait in a queue of at most ``batch`` signals, enhanced in padded batches
(``jaxse.inference.Enhancer``), long ones are streamed (``jaxse.inference.files``). Outputs are written as they
finish, atomically (temporary file + rename), never over an input. A file that fails is reported with its name and
the reason; the others are still written. Exit status: 0 all written, 1 some failed, 2 bad command line, checkpoint
or an output folder that cannot be written (found before any work).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jaxse import cli
from jaxse.errors import UsageError

KEYS = (
    cli.CHECKPOINT_KEY,
    cli.Key("input", required=True, help="an audio file (.wav/.flac/.ogg) or a folder, searched recursively"),
    cli.Key("output", required=True, help="output folder; the input's relative tree and file names are kept"),
    cli.STEP_KEY,
    cli.Key("rate", ("input", "model"), "input",
            help="input: write at the input's sample rate (resampled to the model's and back); model: write at the "
                 "model's rate (16 kHz)"),
    cli.Key("channels", ("reject", "each", "downmix"), "reject",
            help="reject: a multi-channel file is an error; each: enhance every channel; downmix: average them"),
    cli.Key("level", ("match", "none"), "match",
            help="match: output at the input's speech level, clipping avoided; none: the raw model output"),
    *cli.STRENGTH_KEYS,
    cli.PRECISION_KEY,
    cli.Key("batch", int, 8, min=1, help="files per batch; files are grouped by length buckets"),
    cli.Key("long_seconds", int, 30, min=1,
            help="files longer than this many seconds run through the exact chunked streaming pass one at a time, "
                 "read and written block by block: memory does not grow with their length"),
)


def parse_args(argv: list[str]) -> dict:
    return cli.parse(argv, KEYS)


def plan(input_path: str, output_dir: str) -> list[tuple[Path, Path]]:
    """``[(input file, output file)]`` for a file or a folder (recursive, tree kept). Refuses to overwrite inputs."""
    from jaxse.io.atomic import check_writable_dir
    from jaxse.io.audio import list_audio

    src = Path(input_path)
    out = Path(output_dir)
    if not src.exists():
        raise UsageError(f"input {input_path!r} does not exist")
    if src.is_file():
        pairs = [(src, out / src.name)]
    else:
        out_abs = out.resolve()
        files = [Path(f) for f in list_audio(src)]
        files = [f for f in files if out_abs not in f.resolve().parents]  # output folder inside the input folder
        if not files:
            raise UsageError(f"no audio files (.wav/.flac/.ogg) under {input_path!r}")
        pairs = [(f, out / f.relative_to(src)) for f in files]
    for i, o in pairs:
        if o.resolve() == i.resolve():
            raise UsageError(f"output {str(o)!r} would overwrite the input; choose another output folder")
    check_writable_dir(out)
    return pairs


def _read(path: Path, sr: int, channels: str) -> tuple[np.ndarray, int, str, int]:
    """-> (audio float32[channels, samples] at ``sr``, original rate, soundfile subtype, original length)."""
    from jaxse.io.audio import MIN_SECONDS, AudioError, apply_channels, header, read_frames, resample

    info = header(path)
    data, rate = read_frames(path)
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio file (0 samples)")
    if data.shape[0] < MIN_SECONDS * rate:
        raise AudioError(path, f"too short: {data.shape[0]} samples at {rate} Hz, less than one analysis frame "
                               f"({1000 * MIN_SECONDS:.0f} ms)")
    data = apply_channels(data, channels, path)  # the one channel policy, shared with the long-file reader
    n = data.shape[1]
    if rate != sr:
        data = np.stack([resample(c, rate, sr) for c in data])
    return np.ascontiguousarray(data, np.float32), rate, info.subtype, n


def _write(dst: Path, chans: list[np.ndarray], rate: int, sr: int, n: int, subtype: str) -> None:
    from jaxse.io.audio import resample, write_audio_atomic

    if rate != sr:  # back to the input's rate and exact length
        chans = [np.pad(r[:n], (0, max(0, n - len(r)))) for r in (resample(c, sr, rate) for c in chans)]
    y = np.stack(chans, axis=1) if len(chans) > 1 else chans[0]
    write_audio_atomic(dst, np.clip(y, -1.0, 1.0), rate, subtype=subtype if dst.suffix.lower() != ".ogg" else None)


def _main(argv: list[str]) -> int:
    # Longer than a screen: the file loop's queue, batches, long files and failures share their counters here.
    args = parse_args(argv)
    strength = cli.strength_arg(args)
    pairs = plan(args["input"], args["output"])
    from tqdm import tqdm

    from jaxse.inference import Enhancer
    from jaxse.inference.files import enhance_long_file
    from jaxse.io.audio import AudioError, probe

    enhancer = Enhancer.from_checkpoint(args["checkpoint"], args["step"], level=args["level"],
                                        max_batch=args["batch"], strength=strength,
                                        long_seconds=args["long_seconds"], precision=args["precision"])
    sr = enhancer.sample_rate
    failed: list[tuple[Path, str]] = []
    written = 0
    queue: list[tuple] = []  # short files read, waiting for a batch: (input, output, audio, rate, subtype, length)

    def flush(bar) -> bool:
        nonlocal written
        waves = [c for _, _, audio, _, _, _ in queue for c in audio]
        try:
            enhanced = enhancer.enhance(waves)
        except Exception as e:  # a model failure affects the batch; report it instead of a traceback
            cli.error("jaxse.enhance", f"enhancement failed: {e}")
            return False
        k = 0
        for src, dst, audio, rate, subtype, n in queue:
            chans = enhanced[k:k + audio.shape[0]]
            k += audio.shape[0]
            try:
                _write(dst, chans, rate if args["rate"] == "input" else sr, sr, n, subtype)
                written += 1
            except Exception as e:
                failed.append((src, f"cannot write {dst}: {e}"))
            bar.update(1)
        queue.clear()
        return True

    with tqdm(total=len(pairs), desc="enhance", unit="file", disable=None) as bar:
        for src, dst in pairs:
            try:
                info = probe(src)
                if info.frames > args["long_seconds"] * info.rate:
                    try:
                        enhance_long_file(enhancer, src, dst, channels=args["channels"], rate=args["rate"])
                        written += 1
                    except AudioError:
                        raise
                    except OSError as e:
                        failed.append((src, f"cannot write {dst}: {cli.describe_os_error(e)}"))
                    bar.update(1)
                    continue
                queue.append((src, dst, *_read(src, sr, args["channels"])))
            except AudioError as e:
                failed.append((src, e.problem))
                bar.update(1)
                continue
            if sum(q[2].shape[0] for q in queue) >= args["batch"] and not flush(bar):
                return cli.EXIT_FAILED
        if queue and not flush(bar):
            return cli.EXIT_FAILED
    print(f"jaxse.enhance: wrote {written} file(s) to {args['output']}"
          + (f"; {len(failed)} failed:" if failed else ""))
    for src, why in failed:
        print(f"  {src}: {why}", file=sys.stderr)
    return cli.EXIT_FAILED if failed else cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.enhance", _main, argv, doc=__doc__, keys=KEYS)


if __name__ == "__main__":
    sys.exit(main())
