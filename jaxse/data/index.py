"""Corpus index and segment reads: what the streaming pipeline knows about a folder of audio without holding it.

An index entry is ``(path, frames, sample_rate, channels, rms, error)`` per file, measured once by decoding the file in
blocks (so corrupt FLAC frames, NaN samples and silent clips are found at indexing time, not at step 40,000). With
``check="header"`` only the headers are read (``rms = -1``: not measured): the first start of a large corpus costs
one header read per file instead of one decode, and a file whose audio data is corrupt is found when a batch reads
it (the run stops naming it) instead of at indexing; silent clips are not left out. A cached header-only entry is
decoded again when ``check="decode"`` asks for it. The
index of a folder is cached as JSON in ``cache_dir`` (one file per folder, named by a hash of its absolute path);
an entry is reused while its file keeps its size and modification time and measured again when either changes, so
an unchanged corpus costs one ``stat`` per file at start-up. Files are measured in parallel threads (libsndfile and
numpy release the GIL).

``read_segment(entry, start, n, sample_rate=...)`` returns samples ``start .. start+n-1`` of the file *at the target
rate*, zero-padded past the end, decoding only the part of the file it needs (libsndfile seeks in WAV/FLAC/OGG) and
resampling only that part plus the polyphase filter's support, so it equals the same slice of ``read_audio`` of the
whole file (to float32 round-off when resampled, exactly otherwise).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from jaxse.io.atomic import write_bytes
from jaxse.io.audio import MIN_SECONDS, AudioError, header, read_frames, read_raw_blocks, resample

__all__ = ["Entry", "index_files", "check_entry", "target_length", "read_segment", "read_whole"]

_VERSION = 1
_BLOCK = 1 << 18  # frames decoded at a time while measuring


class Entry(NamedTuple):
    """One audio file as the index knows it (``error`` is ``""`` for a readable file)."""

    path: str
    frames: int
    sample_rate: int
    channels: int
    rms: float
    error: str = ""


def _measure(path: str) -> Entry:
    """Decode ``path`` in blocks: its header facts, the RMS of its mono downmix, or the problem that stops it."""
    try:
        info = header(path)
        sr, ch = info.rate, info.channels
        frames, sumsq = 0, 0.0
        for block in read_raw_blocks(path, _BLOCK):
            x = block.mean(axis=1) if ch > 1 else block[:, 0]
            if not np.all(np.isfinite(x)):
                return Entry(path, 0, sr, ch, 0.0, "audio contains NaN/Inf samples")
            sumsq += float(np.dot(x.astype(np.float64), x))
            frames += x.shape[0]
    except AudioError as e:  # unreadable or corrupt
        return Entry(path, 0, 0, 0, 0.0, e.problem)
    if frames == 0:
        return Entry(path, 0, sr, ch, 0.0, "empty audio file (0 samples)")
    return Entry(path, frames, sr, ch, math.sqrt(sumsq / frames))


def _header(path: str) -> Entry:
    """Header facts only (``rms = -1``: not measured), or the problem that stops reading the header."""
    try:
        info = header(path)
    except AudioError as e:  # unreadable or corrupt
        return Entry(path, 0, 0, 0, 0.0, e.problem)
    if info.frames <= 0:
        return Entry(path, 0, info.rate, info.channels, 0.0, "empty audio file (0 samples)")
    return Entry(path, info.frames, info.rate, info.channels, -1.0)


CHECKS = ("decode", "header")


def _cache_file(cache_dir: str, root: str) -> Path:
    h = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]
    return Path(os.path.expanduser(cache_dir)) / f"{h}.json"


def _load(path: Path, root: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != _VERSION or data.get("root") != os.path.abspath(root):
        return {}
    return data.get("files", {})


def index_files(
    root: str, files: Sequence[str], *, cache_dir: str | None, workers: int | None = None, check: str = "decode"
) -> tuple[list[Entry], int]:
    """Index entries of ``files`` (all under folder ``root``), in the order given, and how many were measured anew.

    ``cache_dir=None`` measures every file and caches nothing. An unreadable file is an entry with ``error`` set;
    the caller decides whether that is fatal (``skip_bad_files``). ``check``: ``decode`` (every sample read once:
    corrupt data, NaNs and RMS known) or ``header`` (module docstring).
    """
    if check not in CHECKS:
        raise ValueError(f"unknown index check {check!r}; valid: {', '.join(CHECKS)}")
    measure = _measure if check == "decode" else _header
    root = os.path.abspath(root)
    cache = _cache_file(cache_dir, root) if cache_dir else None
    known = _load(cache, root) if cache else {}
    stats: list[tuple[int, int]] = []
    out: list[Entry | None] = []
    todo: list[int] = []
    for i, p in enumerate(files):
        try:
            st = os.stat(p)
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError as e:
            stats.append((-1, -1))
            out.append(Entry(p, 0, 0, 0, 0.0, f"cannot stat ({e.strerror})"))
            continue
        rec = known.get(os.path.relpath(p, root))
        if rec and rec["size"] == stats[-1][0] and rec["mtime_ns"] == stats[-1][1] and (
                check == "header" or rec["entry"][3] >= 0 or rec["entry"][4]):  # decode: a measured entry
            out.append(Entry(p, *rec["entry"]))
        else:
            out.append(None)
            todo.append(i)
    if todo:
        workers = max(1, workers or os.cpu_count() or 1)
        with ThreadPoolExecutor(min(workers, len(todo))) as ex:
            for i, e in zip(todo, ex.map(measure, [files[i] for i in todo])):
                out[i] = e
        if cache:
            for i in todo:
                if stats[i][0] >= 0:
                    known[os.path.relpath(files[i], root)] = {
                        "size": stats[i][0], "mtime_ns": stats[i][1], "entry": list(out[i][1:])}
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_bytes(cache, json.dumps({"version": _VERSION, "root": root, "files": known}).encode())
            except OSError:  # a read-only cache folder costs the next start-up a re-measure, nothing else
                pass
    return out, len(todo)  # type: ignore[return-value]


def check_entry(e: Entry, *, sample_rate: int, resample: bool, multichannel: str) -> AudioError | None:
    """The problem that makes ``e`` unusable under these settings (the checks ``read_audio`` applies), or None."""
    if e.error:
        return AudioError(e.path, e.error)
    if e.channels > 1 and multichannel == "reject":
        return AudioError(e.path, f"multi-channel audio ({e.channels} channels) but multichannel='reject'")
    if e.sample_rate != sample_rate and not resample:
        return AudioError(e.path, f"sample rate {e.sample_rate} Hz != expected {sample_rate} Hz and resample=False")
    n = target_length(e, sample_rate)
    if n < MIN_SECONDS * sample_rate:
        return AudioError(e.path, f"too short: {n} samples at {sample_rate} Hz ({1000 * n / sample_rate:.1f} ms), "
                                  f"less than one analysis frame ({1000 * MIN_SECONDS:.0f} ms)")
    return None


def _ratio(file_sr: int, sample_rate: int) -> tuple[int, int]:
    g = math.gcd(int(file_sr), int(sample_rate))
    return int(sample_rate) // g, int(file_sr) // g


def target_length(e: Entry, sample_rate: int) -> int:
    """Samples of the file at ``sample_rate`` (the length ``resample_poly`` gives)."""
    up, down = _ratio(e.sample_rate, sample_rate)
    return -(-e.frames * up // down)


def _read(path: str, start: int, stop: int) -> np.ndarray:
    x, _ = read_frames(path, start=start, stop=stop)
    return x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]


def read_segment(e: Entry, start: int, n: int, *, sample_rate: int) -> np.ndarray:
    """float32 ``[n]``: samples ``start .. start+n-1`` of ``e`` at ``sample_rate`` (mono), zero-padded past the end."""
    total = target_length(e, sample_rate)
    start = max(0, int(start))
    stop = min(total, start + int(n))
    out = np.zeros((int(n),), np.float32)
    if stop <= start:
        return out
    if e.sample_rate == sample_rate:
        out[: stop - start] = _read(e.path, start, stop)
        return out
    up, down = _ratio(e.sample_rate, sample_rate)
    margin = (10 * max(up, down)) // up + 2  # resample_poly's filter half-length, in input samples
    s0 = max(0, start * down // up - margin) // down * down  # a multiple of down: output s0*up/down is a sample
    s1 = min(e.frames, -(-stop * down // up) + margin)
    y = resample(_read(e.path, s0, s1), e.sample_rate, sample_rate)
    o = s0 * up // down
    seg = y[start - o : stop - o]
    out[: seg.shape[0]] = seg
    return out


def read_whole(e: Entry, *, sample_rate: int) -> np.ndarray:
    """The whole file at ``sample_rate`` (short files: RIRs, noise loops)."""
    return read_segment(e, 0, target_length(e, sample_rate), sample_rate=sample_rate)
