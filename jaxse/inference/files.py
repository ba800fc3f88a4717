"""Audio files of any length through the chunked streaming pass: read block by block, written as they finish.

    enhance_long_file(enhancer, src, dst, channels="each", rate="input")

Memory does not grow with the length when the file is at the model's sample rate: blocks of ``BLOCK`` samples
are read, the model runs in chunks (``Enhancer.enhance_blocks``), and the output goes to a temporary file beside
the destination that replaces it only when complete (a half-written output never replaces a good one).

Level matching (``level="match"``) needs the gain of the whole signal before the first sample is written. The
first pass streams the raw output and the aligned input, two float32 columns per channel, to a scratch file
beside the destination (plain sequential writes, not a memory map, so its pages do not count as the process's) and accumulates ``<noisy, enhanced>``, ``<enhanced, enhanced>``
(``LevelStats``); a second pass over the scratch file finds the peak of the level-matched mix, a third writes it
scaled block by block. The scratch file is removed in every case.

Files are read and written with ``jaxse.io.audio`` (``read_blocks``, ``AtomicAudioWriter``). A file at another rate
is resampled block by block on the way in and on the way out (``jaxse.io.audio.BlockResampler``, equal to
``scipy.signal.resample_poly`` of the whole signal), so its memory is bounded too.
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from jaxse.inference.enhancer import LevelStats, mix, peak_scale
from jaxse.io.audio import (BLOCK, AtomicAudioWriter, BlockResampler, check_channels, probe, read_blocks,
                            resampled_length)
from jaxse.io.atomic import create_new, remove_if_there, temp_name


def _aligned(blocks: Iterator[np.ndarray], outputs) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pair each enhanced block with the input samples at the same positions (a bounded FIFO of input blocks)."""
    fifo: deque = deque()

    def tee():
        for b in blocks:
            fifo.append(b)
            yield b

    have = 0
    for y in outputs(tee()):
        need = y.shape[1]
        parts = []
        while need:
            b = fifo[0]
            take = min(need, b.shape[1] - have)
            parts.append(b[:, have:have + take])
            have += take
            need -= take
            if have == b.shape[1]:
                fifo.popleft()
                have = 0
        yield (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)), y


def _resampled(blocks: Iterator[np.ndarray], orig_sr: int, target_sr: int, total: int, length: int | None = None
               ) -> Iterator[np.ndarray]:
    """``blocks`` (``total`` samples at ``orig_sr``) at ``target_sr`` (``BlockResampler``), cut or zero-padded to
    ``length`` samples when given."""
    if orig_sr == target_sr and length in (None, total):
        yield from blocks
        return
    r = BlockResampler(orig_sr, target_sr, total) if orig_sr != target_sr else None
    left = r.n_out if length is None and r is not None else (total if length is None else length)
    ch = 1
    for b in blocks:
        ch = b.shape[0]
        y = r.push(b) if r is not None else b
        y = y[:, :left]
        left -= y.shape[1]
        if y.shape[1]:
            yield y
    if r is not None:
        y = r.finish()[:, :left]
        left -= y.shape[1]
        if y.shape[1]:
            yield y
    if left > 0:
        yield np.zeros((ch, left), np.float32)


def enhance_long_file(enhancer, src, dst, *, channels: str = "reject", rate: str = "input",
                      block: int = BLOCK) -> None:
    """Enhance one file of any length with ``enhancer`` (its ``level`` and ``strength``) into ``dst`` (module
    docstring). ``channels``: reject | each | downmix; ``rate``: input (write at the file's rate) | model."""
    info = probe(src)
    sr = enhancer.sample_rate
    n_ch = 1 if channels == "downmix" or info.channels == 1 else info.channels
    check_channels(src, info.channels, channels)
    out_rate = info.rate if rate == "input" else sr
    level, strength = enhancer.level, enhancer.strength
    # At the model's rate: the input resampled block by block, the model's output, then back to the output rate.
    n_model = resampled_length(info.frames, info.rate, sr)
    n_final = info.frames if rate == "input" else n_model
    x_blocks = _resampled(read_blocks(src, channels, block), info.rate, sr, info.frames)

    def to_output(blocks):  # float32[channels, m] at the model's rate -> at the output rate, n_final samples
        return _resampled(blocks, sr, out_rate, n_model, n_final)

    pairs = _aligned(x_blocks, lambda b: enhancer.enhance_blocks(b, n_model))
    if level != "match":  # one pass, straight to the output
        with AtomicAudioWriter(dst, out_rate, n_ch, info.subtype) as w:
            for y in to_output(mix(x, e, strength) for x, e in pairs):
                w.write(np.clip(y.T, -1.0, 1.0))
        return
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    scratch = temp_name(dst, ".scratch.f32")  # named before it exists, created inside the try: see temp_name
    try:
        st = LevelStats(n_ch)
        # pass 1: rows [enhanced channels..., input channels...] to the scratch file, sums for the gain
        with os.fdopen(create_new(scratch), "wb") as f:
            for x, e in pairs:
                np.ascontiguousarray(np.concatenate([e, x]).T, np.float32).tofile(f)
                st.add(x, e)
        g = st.gains()

        def scratch_blocks():  # float32[channels, samples] of the level-matched mix, at the model's rate
            with open(scratch, "rb") as f:
                while True:
                    rows = np.fromfile(f, np.float32, count=block * 2 * n_ch)
                    if not rows.size:
                        return
                    rows = rows.reshape(-1, 2 * n_ch).T
                    yield mix(rows[n_ch:], rows[:n_ch] * g[:, None], strength)

        peaks = np.zeros(n_ch)
        for y in scratch_blocks():  # pass 2: the peak of the level-matched mix
            peaks = np.maximum(peaks, np.abs(y).max(axis=1))
        scale = np.array([peak_scale(float(p)) for p in peaks])[:, None]
        with AtomicAudioWriter(dst, out_rate, n_ch, info.subtype) as w:  # pass 3: scaled, block by block
            for y in to_output(y * scale for y in scratch_blocks()):
                w.write(np.clip(y.T, -1.0, 1.0))
    finally:
        remove_if_there(scratch)
