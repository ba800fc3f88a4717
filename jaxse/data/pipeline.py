"""tf.data input pipeline serving ``{"noisy": f32[b, samples], "clean": f32[b, samples]}`` batches.

Kinds (``data_cfg["kind"]``): ``paired``, ``mix``, ``demo``, ``tfds`` (see ``experiments/data/*.yaml``).

Design
------
* Audio is decoded in Python (soundfile, :mod:`jaxse.io.audio`); for ``paired``/``mix``/``demo``
  the (per-host) corpus is pre-loaded into memory once at build time (bad files skipped or
  rejected, silent clean clips left out, everything resampled/downmixed).  Very large corpora
  should go through the ``tfds`` kind, which streams TFRecord shards.
* Resumable data position: for the in-memory kinds the training stream is a *pure function of
  (seed, process_index, step)*.  Batch ``k`` element ``j`` is example ``g = k*B + j`` of the
  host's infinite stream; its file is ``perm_e[g % N]`` where ``perm_e`` is a permutation of the
  host's N files seeded by ``(seed, process_index, epoch=g // N)`` (so every epoch visits every
  file once, freshly shuffled), and its crop offset / noise / SNR / level / RIR are drawn from
  ``np.random.Generator(PCG64([seed, process_index, k, j]))``.  The dataset is
  ``Dataset.counter(start_step)`` mapped through that function, so ``start_step=k`` reproduces
  the k-th batch of an uninterrupted run exactly, in O(1).  ``shuffle_buffer`` is not needed
  there (the permutation is a full shuffle); it is used by the ``tfds`` kind.
* ``tfds`` kind: resumption replays the deterministic (seeded) stream and ``skip``s
  ``start_step`` batches (exact, but O(start_step) reading).
* Eval splits (``valid``/``test``): never shuffled or repeated.  ``paired``/``tfds``-VoiceBank:
  one fixed-length crop from the start of every file (zero-padded when short).  ``mix``/``demo``/
  ``tfds``-DNS: a fixed set of ``eval_examples`` mixtures drawn with a fixed eval seed
  (independent of the training seed).  The last batch may be smaller than the per-host batch.
* Multi-host: per-host batch = ``batch_size // process_count``; files (train) or examples
  (eval) are sharded round-robin by ``process_index`` (``ds.shard`` semantics) before shuffling.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

try:  # the pipeline runs on the host CPU; keep accelerators for JAX
    tf.config.set_visible_devices([], "GPU")
except Exception:  # pragma: no cover - already initialised / no GPU support
    pass

from jaxse.config import data_config
from jaxse.io.audio import AudioError, list_audio, match_pairs, read_audio

__all__ = [
    "DataWarning",
    "EVAL_SEED",
    "batches",
    "build_dataset",
    "synthetic_noise",
    "mix_example",
    "per_host_batch_size",
]

EVAL_SPLITS = ("valid", "test")
EVAL_SEED = 0x5EED  # fixed: eval mixtures do not depend on the training seed
SILENCE_RMS = 1e-5
NOISE_KINDS = ("white", "pink", "brown")
_MAX_LISTED = 10


class DataWarning(UserWarning):
    """Skipped/left-out data (bad files, silent clips)."""


# --------------------------------------------------------------------------------------- utils
def _list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, (str, os.PathLike)):
        return [v]
    return list(v)


def _shown(names: Sequence[str]) -> str:
    s = ", ".join(str(n) for n in names[:_MAX_LISTED])
    return s + (f", ... ({len(names)} in total)" if len(names) > _MAX_LISTED else "")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _split_id(split: str) -> int:
    return zlib.crc32(split.encode()) & 0x7FFFFFFF


def per_host_batch_size(data_cfg: Mapping, process_count: int = 1) -> int:
    """``batch_size // process_count``; the global batch must divide evenly."""
    b = int(data_cfg["batch_size"])
    if process_count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count}")
    if b < 1 or b % process_count:
        raise ValueError(
            f"global batch_size={b} must be a positive multiple of process_count={process_count}"
        )
    return b // process_count


def _segment_samples(cfg: Mapping) -> int:
    n = int(round(float(cfg["segment_seconds"]) * int(cfg.sample_rate)))
    if n < 1:
        raise ValueError(f"segment_seconds={cfg['segment_seconds']} gives an empty segment")
    return n


def _fit(x: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``x[offset:offset+n]`` zero-padded at the end to ``n`` samples."""
    y = x[offset : offset + n]
    if y.shape[0] < n:
        y = np.pad(y, (0, n - y.shape[0]))
    return y


def synthetic_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS float32 ``white``, ``pink`` (1/f power) or ``brown`` (1/f^2 power) noise."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown synthetic noise kind {kind!r}; expected one of {NOISE_KINDS}")
    if n <= 0:
        return np.zeros((0,), np.float32)
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        spec = spec / (np.sqrt(f) if kind == "pink" else f)
        spec[0] = 0.0
        x = np.fft.irfft(spec, n)
    x = x - x.mean()
    r = _rms(x)
    return (x / r if r > 0 else x).astype(np.float32)


# ------------------------------------------------------------------------------ clip loading
def _read_many(paths: Sequence[str], cfg: Mapping, *, what: str) -> list[np.ndarray | None]:
    """Read ``paths`` (threaded); ``None`` for bad files when ``skip_bad_files`` else raise."""
    sr = int(cfg.sample_rate)
    kw = dict(sample_rate=sr, resample=bool(cfg.resample),
              multichannel=str(cfg.multichannel))
    skip = bool(cfg.skip_bad_files)

    def one(p: str) -> np.ndarray | AudioError:
        try:
            return read_audio(p, **kw)
        except AudioError as e:
            return e

    workers = max(1, min(8, os.cpu_count() or 1))
    if len(paths) > 4 and workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            res = list(ex.map(one, paths))
    else:
        res = [one(p) for p in paths]
    bad = [r for r in res if isinstance(r, AudioError)]
    if bad:
        if not skip:
            raise bad[0]
        warnings.warn(
            f"skipped {len(bad)} unreadable/invalid {what} file(s) (skip_bad_files=true): "
            + _shown([f"{e.path} ({e.problem})" for e in bad]),
            DataWarning,
            stacklevel=3,
        )
    return [None if isinstance(r, AudioError) else r for r in res]


def _drop_silent(names: Sequence[str], clips: Sequence[np.ndarray], what: str) -> list[bool]:
    keep = [_rms(c) >= SILENCE_RMS for c in clips]
    silent = [n for n, k in zip(names, keep) if not k]
    if silent:
        warnings.warn(
            f"left out {len(silent)} silent {what} clip(s) (RMS < {SILENCE_RMS:g}): " + _shown(silent),
            DataWarning,
            stacklevel=3,
        )
    return keep


def _load_clips(paths: Sequence[str], cfg: Mapping, *, what: str, drop_silent: bool) -> list[np.ndarray]:
    clips = _read_many(paths, cfg, what=what)
    pairs = [(p, c) for p, c in zip(paths, clips) if c is not None]
    if drop_silent and pairs:
        keep = _drop_silent([p for p, _ in pairs], [c for _, c in pairs], what)
        pairs = [pc for pc, k in zip(pairs, keep) if k]
    return [c for _, c in pairs]


def _files_in(dirs: Sequence[str], what: str) -> list[str]:
    out: list[str] = []
    for d in dirs:
        out.extend(list_audio(d))
    return out


# ------------------------------------------------------------------------------ mixing
def mix_example(
    rng: np.random.Generator,
    clean: np.ndarray,
    cfg: Mapping,
    *,
    noises: Sequence[np.ndarray] = (),
    rirs: Sequence[np.ndarray] = (),
    segment: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One on-the-fly mixture ``(noisy, clean_target)`` of ``segment`` samples from a clean clip.

    Random clean crop (zero-padded when short); optional random RIR (``fftconvolve``, aligned on
    the direct path, target ``rir_target`` dry|reverberant); noise = a random (looped) segment of
    a random noise clip, or with probability ``synthetic_noise_prob`` (always when there are no
    noise clips) a synthetic kind from ``synthetic_noise``; noise scaled so that the SNR w.r.t.
    the speech in the mixture is ``U(snr_range)`` dB; both signals scaled so that the mixture RMS
    is ``U(level_range)`` dBFS; both scaled down together if ``max|noisy| > 0.99``.
    """
    n = segment if segment is not None else _segment_samples(cfg)
    # clean crop; re-draw a few times when the crop happens to be silent (leading silence)
    for _ in range(8):
        off = int(rng.integers(0, max(clean.shape[0] - n, 0) + 1))
        speech = _fit(clean, n, off).astype(np.float64)
        if _rms(speech) >= SILENCE_RMS:
            break
    target = speech
    if len(rirs) and rng.random() < float(cfg.rir_prob):
        from scipy.signal import fftconvolve

        rir = np.asarray(rirs[int(rng.integers(len(rirs)))], np.float64)
        d = int(np.argmax(np.abs(rir)))
        rev = fftconvolve(speech, rir)[d : d + n]
        rev = _fit(rev, n)
        target = speech if str(cfg.rir_target) == "dry" else rev
        speech = rev
    kinds = [k for k in _list(cfg.synthetic_noise) if k]
    p_syn = float(cfg.synthetic_noise_prob)
    use_syn = kinds and (not len(noises) or rng.random() < p_syn)
    if use_syn:
        noise = synthetic_noise(str(kinds[int(rng.integers(len(kinds)))]), n, rng).astype(np.float64)
    elif len(noises):
        src = noises[int(rng.integers(len(noises)))]
        L = src.shape[0]
        start = int(rng.integers(0, L))
        reps = int(math.ceil((start + n) / L))
        noise = np.tile(src, reps)[start : start + n].astype(np.float64) if reps > 1 else src[start : start + n].astype(np.float64)
    else:
        raise ValueError("mix: no noise clips (noise_dirs) and no synthetic_noise kinds configured")
    if _rms(noise) < 1e-8:  # silent noise clip: fall back to white noise
        noise = synthetic_noise("white", n, rng).astype(np.float64)
    lo, hi = (float(v) for v in cfg.snr_range)
    snr = rng.uniform(lo, hi)
    s_rms = _rms(speech)
    if s_rms > 0:
        noise *= s_rms / (_rms(noise) * 10.0 ** (snr / 20.0))
    else:  # fully silent speech crop: keep noise at the target level anyway
        noise /= _rms(noise)
    noisy = speech + noise
    llo, lhi = (float(v) for v in cfg.level_range)
    gain = 10.0 ** (rng.uniform(llo, lhi) / 20.0) / max(_rms(noisy), 1e-12)
    noisy *= gain
    target = target * gain
    peak = float(np.max(np.abs(noisy))) if n else 0.0
    if peak > 0.99:
        noisy *= 0.99 / peak
        target = target * (0.99 / peak)
    return noisy.astype(np.float32), target.astype(np.float32)


# ------------------------------------------------------------------------------ dataset helpers
def _finish(ds: tf.data.Dataset, cfg: Mapping) -> tf.data.Dataset:
    pf = cfg.prefetch
    if pf in (None, "auto", "AUTOTUNE") or int(pf) < 0:
        pf = tf.data.AUTOTUNE
    opts = tf.data.Options()
    opts.deterministic = True
    return ds.with_options(opts).prefetch(int(pf) if pf != tf.data.AUTOTUNE else pf)


def _to_dict(noisy, clean):
    return {"noisy": noisy, "clean": clean}


def _indexed_batches(
    batch_fn: Callable[[int], tuple[np.ndarray, np.ndarray]],
    *,
    b: int,
    n: int,
    start_step: int,
    stop: int | None,
) -> tf.data.Dataset:
    """Dataset of batches ``batch_fn(k)`` for ``k = start_step, start_step+1, ...`` (< stop)."""
    if stop is None:
        idx = tf.data.Dataset.counter(start_step, dtype=tf.int64)
    else:
        idx = tf.data.Dataset.range(start_step, max(stop, start_step), dtype=tf.int64)

    def py(k):
        noisy, clean = batch_fn(int(k))
        return noisy, clean

    def tf_fn(k):
        noisy, clean = tf.numpy_function(py, [k], [tf.float32, tf.float32], stateful=False)
        noisy.set_shape([b, n])
        clean.set_shape([b, n])
        return _to_dict(noisy, clean)

    return idx.map(tf_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _eval_dataset(noisy: np.ndarray, clean: np.ndarray, b: int, start_step: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(_to_dict(noisy.astype(np.float32), clean.astype(np.float32)))
    ds = ds.batch(b, drop_remainder=False)
    return ds.skip(start_step) if start_step else ds


def _epoch_index(seed: int, pi: int, N: int) -> Callable[[int], int]:
    @functools.lru_cache(maxsize=4)
    def perm(epoch: int) -> np.ndarray:
        return np.random.Generator(np.random.PCG64([seed, pi, epoch, 0xE90C])).permutation(N)

    return lambda g: int(perm(g // N)[g % N])


def _host_sharding(cfg: Mapping) -> str:
    mode = str(cfg.host_sharding)
    if mode not in ("rows", "files"):
        raise ValueError(f"data.host_sharding must be 'rows' or 'files', got {mode!r}")
    return mode


def _rows(b: int, pi: int, pc: int, by_files: bool) -> tuple[int, int, int]:
    """``(rows per step, first row of this host, stream key)`` of the training stream.

    ``rows`` sharding: example ``(step k, global row g)`` is a function of ``(seed, k, g)`` only, and host ``pi``
    makes rows ``pi*b .. pi*b+b-1`` of the global batch: the stream does not depend on how the global batch is
    split over hosts (1 host x 4 devices and 2 hosts x 2 devices train on identical batches). ``files``: each
    host samples its own file shard with its own key (less to load per host; the stream depends on the layout).
    """
    if by_files:
        return b, 0, pi
    return b * pc, pi * b, 0


def _check_split(split: str) -> None:
    if split != "train" and split not in EVAL_SPLITS:
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")


# ------------------------------------------------------------------------------ paired
def _build_paired(cfg, split, seed, pi, pc, repeat, start_step) -> tf.data.Dataset:
    b = per_host_batch_size(cfg, pc)
    n = _segment_samples(cfg)
    noisy_dir, clean_dir = getattr(cfg, f"{split}_noisy_dir"), getattr(cfg, f"{split}_clean_dir")
    pairs = match_pairs(noisy_dir, clean_dir)
    by_files = _host_sharding(cfg) == "files" and split not in EVAL_SPLITS
    if by_files or split in EVAL_SPLITS:
        pairs = pairs[pi::pc]  # ds.shard(process_count, process_index) on the file list
    if not pairs:
        raise ValueError(f"paired/{split}: no files for process {pi} of {pc} in {noisy_dir}")
    noisy_c = _read_many([p[1] for p in pairs], cfg, what=f"{split} noisy")
    clean_c = _read_many([p[2] for p in pairs], cfg, what=f"{split} clean")
    items = [(k, nz, cl) for (k, _, _), nz, cl in zip(pairs, noisy_c, clean_c) if nz is not None and cl is not None]
    keep = _drop_silent([k for k, _, _ in items], [cl for _, _, cl in items], f"{split} clean")
    items = [it for it, kp in zip(items, keep) if kp]
    if not items:
        raise ValueError(f"paired/{split}: no usable pairs left for process {pi} (all bad or silent)")
    for k, nz, cl in items:
        if nz.shape[0] != cl.shape[0]:
            m = min(nz.shape[0], cl.shape[0])
            warnings.warn(f"paired: {k}: noisy/clean lengths differ ({nz.shape[0]} vs {cl.shape[0]}); "
                          f"truncated to {m}", DataWarning, stacklevel=2)
    items = [(k, nz[: min(len(nz), len(cl))], cl[: min(len(nz), len(cl))]) for k, nz, cl in items]
    N = len(items)

    if split in EVAL_SPLITS:
        noisy = np.stack([_fit(nz, n) for _, nz, _ in items])
        clean = np.stack([_fit(cl, n) for _, _, cl in items])
        ds = _eval_dataset(noisy, clean, b, start_step)
        return ds.repeat() if repeat else ds

    B, row0, key = _rows(b, pi, pc, by_files)
    file_of = _epoch_index(seed, key, N)

    def batch_fn(k: int):
        noisy = np.empty((b, n), np.float32)
        clean = np.empty((b, n), np.float32)
        for j in range(b):
            _, nz, cl = items[file_of(k * B + row0 + j)]
            rng = np.random.Generator(np.random.PCG64([seed, key, k, row0 + j]))
            off = int(rng.integers(0, max(cl.shape[0] - n, 0) + 1))
            noisy[j], clean[j] = _fit(nz, n, off), _fit(cl, n, off)
        return noisy, clean

    stop = None if repeat in (None, True) else N // B
    return _indexed_batches(batch_fn, b=b, n=n, start_step=start_step, stop=stop)


# ------------------------------------------------------------------------------ mix / demo
def _mix_sources(cfg: Mapping, split: str) -> tuple[list[str], list[str], list[str]]:
    def dirs(key):
        v = getattr(cfg, f"{split}_{key}", None) if split in EVAL_SPLITS else None
        return _list(v if v is not None else getattr(cfg, key))

    clean = _files_in(dirs("clean_dirs"), "clean")
    noise = _files_in(dirs("noise_dirs"), "noise")
    rir = _files_in(dirs("rir_dirs"), "rir")
    return clean, noise, rir


def _build_mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, clean_files, noise_files, rir_files):
    b = per_host_batch_size(cfg, pc)
    n = _segment_samples(cfg)
    if not clean_files:
        raise ValueError(f"{cfg.get('kind', 'mix')}/{split}: no clean audio files found")
    train = split not in EVAL_SPLITS
    by_files = train and _host_sharding(cfg) == "files"
    if by_files:
        clean_files = list(clean_files)[pi::pc]  # per-host file shard (before shuffling)
        if not clean_files:
            raise ValueError(f"mix/{split}: no clean files for process {pi} of {pc}")
    cleans = _load_clips(clean_files, cfg, what=f"{split} clean", drop_silent=True)
    if not cleans:
        raise ValueError(f"mix/{split}: no usable clean clips (all bad or silent)")
    noises = _load_clips(noise_files, cfg, what=f"{split} noise", drop_silent=False)
    noises = [x for x in noises if x.shape[0] > 0]
    rirs = _load_clips(rir_files, cfg, what=f"{split} rir", drop_silent=True)

    if not train:
        total = int(cfg.eval_examples)
        mine = list(range(pi, total, pc))
        noisy = np.zeros((len(mine), n), np.float32)
        clean = np.zeros((len(mine), n), np.float32)
        sid = _split_id(split)
        for r, i in enumerate(mine):
            rng = np.random.Generator(np.random.PCG64([EVAL_SEED, sid, i]))
            c = cleans[int(rng.integers(len(cleans)))]
            noisy[r], clean[r] = mix_example(rng, c, cfg, noises=noises, rirs=rirs, segment=n)
        ds = _eval_dataset(noisy, clean, b, start_step)
        return ds.repeat() if repeat else ds

    B, row0, key = _rows(b, pi, pc, by_files)
    file_of = _epoch_index(seed, key, len(cleans))

    def batch_fn(k: int):
        noisy = np.empty((b, n), np.float32)
        clean = np.empty((b, n), np.float32)
        for j in range(b):
            rng = np.random.Generator(np.random.PCG64([seed, key, k, row0 + j]))
            c = cleans[file_of(k * B + row0 + j)]
            noisy[j], clean[j] = mix_example(rng, c, cfg, noises=noises, rirs=rirs, segment=n)
        return noisy, clean

    stop = None if repeat in (None, True) else len(cleans) // B
    return _indexed_batches(batch_fn, b=b, n=n, start_step=start_step, stop=stop)


def _build_mix(cfg, split, seed, pi, pc, repeat, start_step):
    clean, noise, rir = _mix_sources(cfg, split)
    return _build_mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, clean, noise, rir)


def _build_demo(cfg, split, seed, pi, pc, repeat, start_step):
    from jaxse.data import demo

    clean = [str(p) for p in demo.paths("clean", split)]
    noise = [str(p) for p in demo.paths("noise", split)]
    rir = [str(p) for p in _files_in(_list(cfg.rir_dirs), "rir")]
    if not clean:
        raise ValueError(f"demo/{split}: the embedded demo corpus has no clean files for this split")
    return _build_mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, clean, noise, rir)


# ------------------------------------------------------------------------------ tfds
def _build_tfds(cfg, split, seed, pi, pc, repeat, start_step):
    import tensorflow_datasets as tfds

    from jaxse.data import tfds_builders

    b = per_host_batch_size(cfg, pc)
    n = _segment_samples(cfg)
    sr = int(cfg.sample_rate)
    if sr != tfds_builders.SAMPLE_RATE:
        raise ValueError(f"tfds datasets are prepared at {tfds_builders.SAMPLE_RATE} Hz; sample_rate={sr}")
    builder = tfds_builders.get_builder(cfg)
    train = split not in EVAL_SPLITS
    scale = 1.0 / 32768.0

    if builder.name == "voicebank_demand":
        tsplit = str(getattr(cfg, f"{split}_split"))
        host_split = tfds.even_splits(tsplit, n=pc)[pi] if pc > 1 else tsplit
        ds = builder.as_dataset(split=host_split, shuffle_files=False)
        ds = ds.map(lambda ex: (tf.cast(ex["noisy"], tf.float32) * scale, tf.cast(ex["clean"], tf.float32) * scale))
        if not train:
            def crop0(nz, cl):
                return _to_dict(_tf_fit(nz, n, 0), _tf_fit(cl, n, 0))

            ds = ds.map(crop0).batch(b, drop_remainder=False)
            ds = ds.skip(start_step) if start_step else ds
            return ds.repeat() if repeat else ds
        if repeat in (None, True):
            ds = ds.repeat()
        ds = ds.shuffle(int(cfg.shuffle_buffer), seed=int(seed) + 7919 * pi,
                        reshuffle_each_iteration=True).enumerate()

        def rcrop(i, pair):
            nz, cl = pair
            length = tf.shape(cl, out_type=tf.int64)[0]
            hi = tf.maximum(length - n, 0) + 1
            off = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed * 65537 + pi, tf.int64), i]),
                                              maxval=hi, dtype=tf.int64)
            return _to_dict(_tf_fit(nz, n, off), _tf_fit(cl, n, off))

        ds = ds.map(rcrop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(b, drop_remainder=True)
        return ds.skip(start_step) if start_step else ds

    # dns_challenge: splits "clean" / "noise"; eval = fixed holdout slices mixed in memory
    hp = float(cfg.eval_holdout_percent)
    slices = {"valid": f"[:{hp:g}%]", "test": f"[{hp:g}%:{2 * hp:g}%]", "train": f"[{2 * hp:g}%:]"}
    sl = slices[split]
    if not train:
        def load(kind):
            out = []
            for ex in builder.as_dataset(split=f"{kind}{sl}", shuffle_files=False).as_numpy_iterator():
                out.append(ex["audio"].astype(np.float32) * scale)
            return out

        cleans, noises = load("clean"), load("noise")
        if not cleans:
            raise ValueError(f"dns_challenge/{split}: the holdout slice clean{sl} is empty")
        total = int(cfg.eval_examples)
        mine = list(range(pi, total, pc))
        noisy = np.zeros((len(mine), n), np.float32)
        clean = np.zeros((len(mine), n), np.float32)
        for r, i in enumerate(mine):
            rng = np.random.Generator(np.random.PCG64([EVAL_SEED, _split_id(split), i]))
            noisy[r], clean[r] = mix_example(rng, cleans[int(rng.integers(len(cleans)))], cfg,
                                             noises=noises, segment=n)
        ds = _eval_dataset(noisy, clean, b, start_step)
        return ds.repeat() if repeat else ds

    def stream(kind, salt):
        s = f"{kind}{sl}"
        s = tfds.even_splits(s, n=pc)[pi] if pc > 1 else s
        d = builder.as_dataset(split=s, shuffle_files=False).map(lambda ex: ex["audio"])
        d = d.repeat() if repeat in (None, True) else d
        return d.shuffle(int(cfg.shuffle_buffer), seed=int(seed) * 31 + salt + 7919 * pi,
                         reshuffle_each_iteration=True)

    ds = tf.data.Dataset.zip((stream("clean", 1), stream("noise", 2).repeat())).enumerate()
    mix_cfg = dict(cfg)

    def py_mix(i, c, z):
        rng = np.random.Generator(np.random.PCG64([seed, pi, int(i), 0xD45]))
        return mix_example(rng, c.astype(np.float32) * scale, mix_cfg,
                           noises=[z.astype(np.float32) * scale], segment=n)

    def tf_mix(i, cz):
        nz, cl = tf.numpy_function(py_mix, [i, cz[0], cz[1]], [tf.float32, tf.float32], stateful=False)
        nz.set_shape([n])
        cl.set_shape([n])
        return _to_dict(nz, cl)

    ds = ds.map(tf_mix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(b, drop_remainder=True)
    return ds.skip(start_step) if start_step else ds


def _tf_fit(x, n: int, off):
    off = tf.cast(off, tf.int64)
    y = x[off : off + n]
    pad = n - tf.shape(y)[0]
    y = tf.pad(y, [[0, pad]])
    y.set_shape([n])
    return y


# ------------------------------------------------------------------------------ public API
_BUILDERS = {"paired": _build_paired, "mix": _build_mix, "demo": _build_demo, "tfds": _build_tfds}


def build_dataset(
    data_cfg: Mapping,
    *,
    split: str,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    repeat: bool | None = None,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Per-host ``tf.data.Dataset`` of ``{"noisy", "clean"}`` float32 ``[batch, samples]`` batches.

    ``batch = data_cfg["batch_size"] // process_count``. ``repeat=None``: train repeats forever,
    eval splits (``valid``/``test``) run once. ``start_step``: first batch index (resume).
    """
    _check_split(split)
    data_cfg = data_config(data_cfg)
    kind = data_cfg.kind
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    per_host_batch_size(data_cfg, process_count)
    if split in EVAL_SPLITS and repeat is None:
        repeat = False
    ds = _BUILDERS[kind](data_cfg, split, int(seed), int(process_index), int(process_count), repeat, int(start_step))
    return _finish(ds, data_cfg)


def batches(
    data_cfg: Mapping,
    *,
    split: str = "train",
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
    repeat: bool | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches starting at batch ``start_step``; identical to batches ``start_step, ...`` of
    an uninterrupted run with the same arguments (O(1) for paired/mix/demo, replay for tfds)."""
    ds = build_dataset(data_cfg, split=split, seed=seed, process_index=process_index,
                       process_count=process_count, repeat=repeat, start_step=start_step)
    return ds.as_numpy_iterator()
