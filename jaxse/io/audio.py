"""Audio file I/O, the one module of the package that calls soundfile: reading (whole, by frames, block by block),
headers, resampling, writing (atomically, whole or block by block), listing and pairing folders.

``read_audio`` returns mono float32 audio at the requested sample rate and raises
:class:`AudioError` (an ``InputError``) naming the file and the problem for
unreadable/corrupt files, wrong sample rates (when ``resample=False``),
multi-channel audio (when ``multichannel="reject"``) and empty files. Every reader here reports a file that
soundfile cannot open or decode with the same error (``unreadable``).

    info = probe(path)                                        # rate, frames, channels, subtype, without reading
    for block in read_blocks(path, "each"):                   # float32[channels, <= BLOCK] at the file's rate
        ...
    with AtomicAudioWriter(dst, rate, channels, subtype) as w:
        w.write(block)                                        # float32[samples, channels]
"""

from __future__ import annotations

from jaxse.errors import InputError, UsageError

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import soundfile as sf

from jaxse.io.atomic import atomic_write, create_new, remove_if_there, temp_name

PathLike = Union[str, os.PathLike]

#: The formats read and written, by file extension (soundfile's format names).
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
AUDIO_EXTENSIONS = tuple(FORMATS)
BLOCK = 65536  # samples read or written at a time by the block readers

#: Audio shorter than one analysis window of the models (DCCRN: 400 samples at 16 kHz) is bad input.
MIN_SECONDS = 0.025

__all__ = ["AudioError", "AUDIO_EXTENSIONS", "FORMATS", "FileInfo", "probe", "header", "read_audio", "read_frames",
           "read_raw_blocks", "read_blocks", "apply_channels", "check_channels", "write_audio_atomic",
           "AtomicAudioWriter", "list_audio", "match_pairs", "resample", "resampled_length", "BlockResampler"]


class PairingError(UsageError):
    """Noisy and clean folders whose files do not pair up (the message lists the unmatched names)."""


class AudioError(InputError):
    """A problem with one audio file; the message names the file and the problem."""

    def __init__(self, path: PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def unreadable(path: PathLike, e: Exception) -> AudioError:
    """The error for a file that soundfile cannot open or decode (it raises RuntimeError, LibsndfileError,
    TypeError...): the file and soundfile's reason."""
    return AudioError(path, f"unreadable or corrupt audio file ({type(e).__name__}: {e})")


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported audio extension {path.suffix.lower()!r} (use one of {AUDIO_EXTENSIONS})")
    return fmt


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class FileInfo:
    """The header of an audio file: sample rate (Hz), frames (samples per channel), channels, soundfile subtype."""

    rate: int
    frames: int
    channels: int
    subtype: str


def header(path: PathLike) -> FileInfo:
    """The header of ``path`` without decoding the audio (``frames`` may be 0); ``AudioError`` when unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise unreadable(path, e) from e
    return FileInfo(int(info.samplerate), int(info.frames), int(info.channels), str(info.subtype))


def probe(path: PathLike) -> FileInfo:
    """The header of an audio file; ``AudioError`` when it cannot be read or holds no samples."""
    info = header(path)
    if info.frames <= 0:
        raise AudioError(path, "empty audio file (0 samples)")
    return info


def read_frames(path: PathLike, *, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int]:
    """Frames ``start .. stop-1`` of ``path`` (all by default) as ``(float32[samples, channels], sample rate)``, as
    stored (no resampling, no downmix); ``AudioError`` when unreadable."""
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:
        raise unreadable(path, e) from e
    return data, int(sr)


def read_raw_blocks(path: PathLike, block: int = BLOCK) -> Iterator[np.ndarray]:
    """The file as ``float32[<= block, channels]`` blocks, as stored; ``AudioError`` when unreadable (also midway)."""
    try:
        for b in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            yield b
    except Exception as e:
        raise unreadable(path, e) from e


def apply_channels(block: np.ndarray, channels: str, path: PathLike) -> np.ndarray:
    """``float32[samples, file channels]`` -> ``float32[channels, samples]`` per the ``channels`` policy of the
    commands: ``reject`` (a multi-channel file is an ``AudioError``), ``each`` (every channel) or ``downmix``
    (their mean); NaN/Inf samples are an ``AudioError``."""
    if not np.all(np.isfinite(block)):
        raise AudioError(path, "audio contains NaN/Inf samples")
    check_channels(path, block.shape[1], channels)
    if block.shape[1] > 1 and channels == "downmix":
        block = block.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(block.T, np.float32)


def check_channels(path: PathLike, n_channels: int, channels: str) -> None:
    """``AudioError`` for a file of ``n_channels`` channels that the ``channels`` policy (``apply_channels``)
    rejects."""
    if n_channels > 1 and channels == "reject":
        raise AudioError(path, f"{n_channels} channels; the models are mono (channels=each or channels=downmix to "
                               f"process it)")


def read_blocks(path: PathLike, channels: str, block: int = BLOCK) -> Iterator[np.ndarray]:
    """The file as ``float32[channels, <= block]`` blocks at its own rate (``apply_channels``'s policy)."""
    for b in read_raw_blocks(path, block):
        yield apply_channels(b, channels, path)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the first axis (``scipy.signal.resample_poly``)."""
    if orig_sr == target_sr:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    return resample_poly(audio, up, down, axis=0).astype(np.float32)


def resampled_length(samples: int, orig_sr: int, target_sr: int) -> int:
    """Samples of ``resample(x, orig_sr, target_sr)`` for ``samples`` input samples (``resample_poly``'s length)."""
    g = math.gcd(int(orig_sr), int(target_sr))
    return -(-int(samples) * (int(target_sr) // g) // (int(orig_sr) // g))


class BlockResampler:
    """``resample(x, orig_sr, target_sr)`` (``scipy.signal.resample_poly``: Kaiser-windowed FIR, beta 5, zero
    padding) of a signal of ``total`` samples that arrives in blocks, with memory bounded by the block and the filter.

        r = BlockResampler(44100, 16000, total)
        for block in blocks:                   # float32[channels, any], in order, ``total`` samples in all
            yield r.push(block)                # float32[channels, m]: the output samples now complete
        yield r.finish()                       # the rest; ``r.n_out`` samples in all

    The concatenated output equals the whole-signal ``resample`` to float rounding: output ``k`` is
    ``sum_i x[i] h[(k + pre) * down - i * up]`` over the same filter ``h``, computed for a range of outputs at a
    time from the input samples it needs (an input start that is a multiple of ``down`` keeps the polyphase phase).
    """

    def __init__(self, orig_sr: int, target_sr: int, total: int):
        from scipy.signal import firwin

        g = math.gcd(int(orig_sr), int(target_sr))
        self.up, self.down = int(target_sr) // g, int(orig_sr) // g
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate  # scipy.signal.resample_poly's filter and padding
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        pre_pad = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre_pad), h])
        self.pre = (half_len + pre_pad) // self.down
        self.total = int(total)
        self.n_out = resampled_length(self.total, orig_sr, target_sr)
        self.buf: np.ndarray | None = None  # input samples from global index self.start
        self.start = 0
        self.seen = 0
        self.k = 0  # outputs emitted

    def _first_input(self, k: int) -> int:
        """The first input index output ``k`` needs, rounded down to a multiple of ``down``."""
        i = -(-((k + self.pre) * self.down - (len(self.h) - 1)) // self.up)
        return max(0, i) // self.down * self.down

    def _outputs(self, k1: int) -> np.ndarray:
        from scipy.signal import upfirdn

        k0 = self.k
        ia = self._first_input(k0)
        xs = self.buf[:, ia - self.start:]
        z = upfirdn(self.h, xs.astype(np.float64), self.up, self.down, axis=-1) if xs.shape[1] else \
            np.zeros((self.buf.shape[0], 0))
        q0 = k0 + self.pre - (ia // self.down) * self.up
        y = z[:, q0:q0 + (k1 - k0)]
        if y.shape[1] < k1 - k0:  # outputs whose inputs all lie past the end
            y = np.pad(y, [(0, 0), (0, k1 - k0 - y.shape[1])])
        self.k = k1
        keep = min(self._first_input(k1), self.seen)
        self.buf, self.start = self.buf[:, keep - self.start:], keep
        return y.astype(np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32)
        if self.buf is None:
            self.buf = np.zeros((block.shape[0], 0), np.float32)
        self.buf = np.concatenate([self.buf, block], axis=1)
        self.seen += block.shape[1]
        if self.seen > self.total:
            raise ValueError(f"the blocks held more than the {self.total} samples announced")
        # Output k is complete once the input index floor((k + pre) * down / up) has arrived.
        k1 = min(self.n_out, max(self.k, (self.seen * self.up - 1) // self.down - self.pre + 1)) \
            if self.seen < self.total else self.n_out
        return self._outputs(k1) if k1 > self.k else np.zeros((block.shape[0], 0), np.float32)

    def finish(self) -> np.ndarray:
        if self.seen != self.total:
            raise ValueError(f"the blocks held {self.seen} samples, not the {self.total} announced")
        if self.buf is None:
            return np.zeros((1, 0), np.float32)
        return self._outputs(self.n_out) if self.n_out > self.k else np.zeros((self.buf.shape[0], 0), np.float32)


def read_audio(
    path: PathLike,
    *,
    sample_rate: int,
    resample: bool = True,  # noqa: A002 - keyword mirrors the config key
    multichannel: str = "downmix",
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Read ``path`` (wav/flac/ogg) as mono float32 ``[samples]`` at ``sample_rate``.

    Args:
      sample_rate: required output rate; other rates are resampled with
        ``scipy.signal.resample_poly`` or rejected when ``resample=False``.
      multichannel: ``"downmix"`` (average the channels) or ``"reject"``.
      min_seconds: shorter audio is bad input (default: one analysis window of the models, 25 ms).
    Raises:
      AudioError: unreadable/corrupt file, wrong rate, multi-channel, empty or shorter than ``min_seconds``.
    """
    if multichannel not in ("downmix", "reject"):
        raise ValueError(f"multichannel must be 'downmix' or 'reject', got {multichannel!r}")
    data, sr = read_frames(path)
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio file (0 samples)")
    if data.shape[1] > 1:
        if multichannel == "reject":
            raise AudioError(path, f"multi-channel audio ({data.shape[1]} channels) but multichannel='reject'")
        data = data.mean(axis=1, dtype=np.float32)
    else:
        data = data[:, 0]
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "audio contains NaN/Inf samples")
    if sr != sample_rate:
        if not resample:
            raise AudioError(path, f"sample rate {sr} Hz != expected {sample_rate} Hz and resample=False")
        data = _resample(data, sr, sample_rate)
    if data.shape[0] < min_seconds * sample_rate:
        raise AudioError(path, f"too short: {data.shape[0]} samples at {sample_rate} Hz "
                               f"({1000 * data.shape[0] / sample_rate:.1f} ms), less than one analysis frame "
                               f"({1000 * min_seconds:.0f} ms)")
    return np.ascontiguousarray(data, dtype=np.float32)


_resample = resample


def write_audio_atomic(path: PathLike, audio: np.ndarray, sample_rate: int, *, subtype: str | None = None) -> None:
    """Write ``audio`` to ``path`` atomically (temp file in the same dir + ``os.replace``).

    The format is taken from the extension (.wav/.flac/.ogg). On any error the
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fmt = _format(path)
    if subtype is None and fmt == "OGG":
        subtype = "VORBIS"
    audio = np.asarray(audio, dtype=np.float32)
    atomic_write(path, lambda f: sf.write(f, audio, int(sample_rate), format=fmt, subtype=subtype),
                 suffix=".tmp" + path.suffix.lower())


class AtomicAudioWriter:
    """A ``soundfile.SoundFile`` in write mode on a temporary path beside ``path``; on a clean exit it is flushed,
    fsynced and renamed onto ``path`` (``os.replace``), on an error removed. ``write(float32[samples, channels])``."""

    def __init__(self, path: PathLike, rate: int, channels: int, subtype: str | None = None):
        self.path = Path(path)
        self.fmt = _format(self.path)
        self.subtype = "VORBIS" if self.fmt == "OGG" else subtype
        self.rate, self.channels = int(rate), int(channels)
        self._tmp: str | None = None
        self._f = None

    def __enter__(self) -> "AtomicAudioWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = str(temp_name(self.path, ".tmp" + self.path.suffix))  # named before it exists: see temp_name
        try:
            os.close(create_new(self._tmp))
            self._f = sf.SoundFile(self._tmp, "w", samplerate=self.rate, channels=self.channels, format=self.fmt,
                                   subtype=self.subtype if self.subtype and sf.check_format(
                                       self.fmt, self.subtype) else None)
        except BaseException:
            remove_if_there(self._tmp)
            raise
        return self

    def write(self, block: np.ndarray) -> None:
        self._f.write(np.asarray(block, np.float32))

    def __exit__(self, kind, value, tb) -> None:
        try:
            self._f.close()
            if kind is None:
                fd = os.open(self._tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(self._tmp, self.path)
                self._tmp = None
        finally:
            remove_if_there(self._tmp)


def list_audio(directory: PathLike) -> list[str]:
    """Sorted list of all .wav/.flac/.ogg files under ``directory`` (recursive)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"audio folder {str(directory)!r} does not exist" if not directory.exists()
                         else f"audio folder {str(directory)!r} is not a folder")
    out = [
        str(p)
        for p in directory.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    ]
    return sorted(out)


def _pair_key(rel: str) -> str:
    return os.path.splitext(rel.replace(os.sep, "/"))[0]


def match_pairs(noisy_dir: PathLike, clean_dir: PathLike, *, max_listed: int = 10) -> list[tuple[str, str, str]]:
    """Match audio files of ``noisy_dir`` and ``clean_dir`` by relative path (extension ignored).

    Returns a sorted list of ``(key, noisy_path, clean_path)``. Raises ``ValueError`` listing
    (the first ``max_listed`` of) the unmatched names and their counts when the trees differ.
    """
    noisy = {_pair_key(os.path.relpath(p, noisy_dir)): p for p in list_audio(noisy_dir)}
    clean = {_pair_key(os.path.relpath(p, clean_dir)): p for p in list_audio(clean_dir)}
    only_noisy = sorted(set(noisy) - set(clean))
    only_clean = sorted(set(clean) - set(noisy))
    if only_noisy or only_clean:
        parts = []
        for what, names, d in (("noisy", only_noisy, noisy_dir), ("clean", only_clean, clean_dir)):
            if names:
                shown = ", ".join(names[:max_listed]) + (", ..." if len(names) > max_listed else "")
                parts.append(f"{len(names)} file(s) only in {what} dir {d}: {shown}")
        raise PairingError("unmatched noisy/clean pairs: " + "; ".join(parts))
    if not noisy:
        raise PairingError(f"no audio files (.wav/.flac/.ogg) found in {noisy_dir} and {clean_dir}")
    return [(k, noisy[k], clean[k]) for k in sorted(noisy)]
