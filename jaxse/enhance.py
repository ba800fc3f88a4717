"""Enhance files and folders: ``python -m jaxse.enhance checkpoint=RUN input=FILE_OR_DIR output=DIR [key=value]``.

Keys:
  checkpoint   training workdir, its checkpoints/ folder or one step folder (best checkpoint by default)
  step         a checkpoint step (default: best by validation SI-SNR, else latest)
  input        an audio file (.wav/.flac/.ogg) or a folder, searched recursively
  output       output folder; the input's relative tree and file names are kept
  rate         input (default): write at the input's sample rate (resampled to the model's and back);
               model: write at the model's rate (16 kHz)
  channels     reject (default): a multi-channel file is an error; each: enhance every channel; downmix: average
  level        match (default): output at the input's speech level, clipping avoided; none: raw model output
  batch        files per batch (default 8); files are grouped by length buckets

Outputs are written atomically (temporary file + rename) and never over an input. A file that fails is reported
with its name and the reason; the others are still written. Exit status: 0 all written, 1 some failed, 2 bad
command line or checkpoint.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jaxse import cli
from jaxse.errors import UsageError

KEYS = (
    cli.Key("checkpoint", required=True, help="training workdir, its checkpoints/ folder or a step folder"),
    cli.Key("input", required=True, help="an audio file or a folder"),
    cli.Key("output", required=True, help="output folder"),
    cli.Key("step", int, min=0),
    cli.Key("rate", ("input", "model"), "input"),
    cli.Key("channels", ("reject", "each", "downmix"), "reject"),
    cli.Key("level", ("match", "none"), "match"),
    cli.Key("batch", int, 8, min=1),
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
    import soundfile as sf

    from jaxse.io.audio import AudioError, resample

    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(path, f"unreadable or corrupt audio file ({type(e).__name__}: {e})") from e
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio file (0 samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "audio contains NaN/Inf samples")
    if data.shape[1] > 1:
        if channels == "reject":
            raise AudioError(path, f"{data.shape[1]} channels; the models are mono (channels=each or "
                                   f"channels=downmix to process it)")
        if channels == "downmix":
            data = data.mean(axis=1, keepdims=True)
    data = data.T
    n = data.shape[1]
    if rate != sr:
        data = np.stack([resample(c, rate, sr) for c in data])
    return np.ascontiguousarray(data, np.float32), rate, info.subtype, n


def _main(argv: list[str]) -> int:
    args = parse_args(argv)
    pairs = plan(args["input"], args["output"])
    from tqdm import tqdm

    from jaxse.io.audio import AudioError, resample, write_audio_atomic
    from jaxse.inference import Enhancer

    enhancer = Enhancer.from_checkpoint(args["checkpoint"], args["step"], level=args["level"],
                                        max_batch=args["batch"])
    sr = enhancer.sample_rate
    failed: list[tuple[Path, str]] = []
    loaded = []  # (input, output, audio [channels, samples], rate, subtype, original length)
    for src, dst in pairs:
        try:
            loaded.append((src, dst, *_read(src, sr, args["channels"])))
        except AudioError as e:
            failed.append((src, e.problem))
    waves = [c for _, _, audio, _, _, _ in loaded for c in audio]
    with tqdm(total=len(waves), desc="enhance", unit="signal", disable=None) as bar:
        try:
            enhanced = enhancer.enhance(waves, progress=bar.update)
        except Exception as e:  # a model failure affects the batch; report it instead of a traceback
            cli.error("jaxse.enhance", f"enhancement failed: {e}")
            return cli.EXIT_FAILED
    k = 0
    written = 0
    for src, dst, audio, rate, subtype, n in loaded:
        chans = enhanced[k:k + audio.shape[0]]
        k += audio.shape[0]
        out_rate = rate if args["rate"] == "input" else sr
        if out_rate != sr:  # back to the input's rate and exact length
            chans = [np.pad(r[:n], (0, max(0, n - len(r)))) for r in (resample(c, sr, out_rate) for c in chans)]
        y = np.stack(chans, axis=1) if len(chans) > 1 else chans[0]
        y = np.clip(y, -1.0, 1.0)
        try:
            write_audio_atomic(dst, y, out_rate, subtype=subtype if dst.suffix.lower() != ".ogg" else None)
            written += 1
        except Exception as e:
            failed.append((src, f"cannot write {dst}: {e}"))
    print(f"jaxse.enhance: wrote {written} file(s) to {args['output']}"
          + (f"; {len(failed)} failed:" if failed else ""))
    for src, why in failed:
        print(f"  {src}: {why}", file=sys.stderr)
    return cli.EXIT_FAILED if failed else cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return cli.run("jaxse.enhance", _main, argv, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
