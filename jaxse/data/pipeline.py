"""tf.data input pipeline serving ``{"noisy": f32[b, samples], "clean": f32[b, samples]}`` batches.

Kinds (``data_cfg.kind``): ``paired``, ``mix``, ``demo``, ``tfds`` (see ``experiments/data/*.yaml``).

Design
------
* Streaming: nothing of the corpus is held in memory. ``paired``/``mix``/``demo`` index their folders once
  (:mod:`jaxse.data.index`: frames, rate, channels, RMS per file, measured in parallel and cached in
  ``index_cache_dir`` while the files keep their sizes and mtimes; unreadable files are found there: an
  ``AudioError`` naming them, or counted skips with ``skip_bad_files``; silent clean clips are left out). Each
  example then reads just its segment (a seek into the WAV/FLAC, resampling only that segment). ``tfds`` datasets
  are prepared as ArrayRecord and read by record index (``as_data_source``). Host memory is
  O(batch x (prefetch + workers)), not O(corpus).
* Determinism: an example is a pure function of ``(seed, step k, global row g)``. Its file is ``perm_e[i % N]``
  with ``i = k*B + g`` (``B`` rows per step) and ``perm_e`` a permutation of the N files seeded by
  ``(seed, epoch = i // N)``; its crop offset, noise, SNR, level and room are drawn from
  ``np.random.Generator(PCG64([seed, key, k, g]))``. Host ``pi`` of ``pc`` serves rows ``pi*b .. pi*b+b-1``
  (``host_sharding=rows``), so 1 host x 4 devices and 2 hosts x 2 devices get identical global batches, and the
  dataset is a counter of example numbers mapped through that function: ``start_step=k`` costs O(1), every kind.
* Parallelism: the per-example read (and the NumPy draws) runs in ``tf.numpy_function`` under a parallel,
  deterministic ``map`` (soundfile/libsndfile, scipy's resampler and NumPy release the GIL while they work); the
  mixing itself (RIR convolution by FFT, synthetic noise, SNR, level, clipping: :mod:`jaxse.data.mixing`) is
  TensorFlow ops in a second parallel map. ``workers`` caps both (null: all cores, AUTOTUNE).
* Eval splits (``valid``/``test``): never shuffled or repeated. ``paired``/``tfds``-VoiceBank: one crop from the
  start of every file (zero-padded when short). ``mix``/``demo``/``tfds``-DNS: ``eval_examples`` fixed mixtures
  drawn with ``EVAL_SEED`` (independent of the training seed). The last batch may be smaller.
* ``host_sharding=files`` (file kinds): each host samples its own round-robin file shard with its own key (the
  stream then depends on the host layout). Eval examples are split round-robin over hosts.
"""

from __future__ import annotations

import atexit
import functools
import os
import warnings
import weakref
import zlib
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

try:  # the pipeline runs on the host CPU; keep accelerators for JAX
    tf.config.set_visible_devices([], "GPU")
except Exception:  # pragma: no cover - already initialised / no GPU support
    pass

from jaxse.config import data_config
from jaxse.data import equalizer, mixing, tonal
from jaxse.data.index import Entry, check_entry, index_files, read_segment, read_whole, target_length
from jaxse.io.audio import list_audio, match_pairs

__all__ = ["Batches", "DataWarning", "EVAL_SEED", "batches", "build_dataset", "per_host_batch_size"]

EVAL_SPLITS = ("valid", "test")
EVAL_SEED = 0x5EED  # fixed: eval mixtures do not depend on the training seed
SILENCE_RMS = 1e-5
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


def _segment_samples(cfg) -> int:
    n = int(round(float(cfg.segment_seconds) * int(cfg.sample_rate)))
    if n < 1:
        raise ValueError(f"segment_seconds={cfg.segment_seconds} gives an empty segment")
    return n


def _check_split(split: str) -> None:
    if split != "train" and split not in EVAL_SPLITS:
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")


def _rows(b: int, pi: int, pc: int, by_files: bool) -> tuple[int, int, int]:
    """``(rows per step B, first row of this host, stream key)``: ``rows`` sharding makes example ``(k, g)`` a
    function of ``(seed, k, g)`` only (layout-invariant); ``files``: each host its own shard and key."""
    if by_files:
        return b, 0, pi
    return b * pc, pi * b, 0


def _epoch_index(seed: int, key: int, N: int) -> Callable[[int], int]:
    @functools.lru_cache(maxsize=4)
    def perm(epoch: int) -> np.ndarray:
        return np.random.Generator(np.random.PCG64([seed, key, epoch, 0xE90C])).permutation(N)

    return lambda i: int(perm(i // N)[i % N])


def _train_draws(seed: int, b: int, pi: int, pc: int, by_files: bool, N: int):
    """``(rows per step B, pick)``: ``pick(e)`` is ``(rng, file)`` of this host's training example ``e`` (step
    ``e // b``, local row ``e % b``): a per-epoch permutation of the ``N`` files and a generator seeded by
    ``(seed, key, step, global row)``, so an example depends on the host layout only through ``_rows``."""
    B, row0, key = _rows(b, pi, pc, by_files)
    file_of = _epoch_index(seed, key, N)

    def pick(e: int):
        k, row = divmod(e, b)
        row += row0
        return np.random.Generator(np.random.PCG64([seed, key, k, row])), file_of(k * B + row)

    return B, pick


# ------------------------------------------------------------------------------ sources
class _Files:
    """Clips ``0..N-1`` of an indexed file list, read by segment at the pipeline's rate."""

    def __init__(self, entries: Sequence[Entry], sample_rate: int):
        self.entries, self.sr = list(entries), int(sample_rate)

    def __len__(self) -> int:
        return len(self.entries)

    def length(self, i: int) -> int:
        return target_length(self.entries[i], self.sr)

    def segment(self, i: int, start: int, n: int) -> np.ndarray:
        return read_segment(self.entries[i], start, n, sample_rate=self.sr)

    def whole(self, i: int) -> np.ndarray:
        return read_whole(self.entries[i], sample_rate=self.sr)


class _Records:
    """Clips ``lo..hi-1`` of a TFDS random-access source (int16 ``key`` feature), read by record."""

    def __init__(self, source, key: str, lo: int = 0, hi: int | None = None):
        self.source, self.key, self.lo = source, key, lo
        self.hi = len(source) if hi is None else hi
        self._get = functools.lru_cache(maxsize=64)(lambda i: self.source[self.lo + i])

    def __len__(self) -> int:
        return max(0, self.hi - self.lo)

    def whole(self, i: int) -> np.ndarray:
        return np.asarray(self._get(i)[self.key], np.float32).reshape(-1) * np.float32(1.0 / 32768.0)

    def length(self, i: int) -> int:
        return int(np.asarray(self._get(i)[self.key]).size)

    def segment(self, i: int, start: int, n: int) -> np.ndarray:
        x = self.whole(i)[start : start + n]
        return np.pad(x, (0, n - x.shape[0])) if x.shape[0] < n else x


def _indexed(cfg, groups: Sequence[tuple[str, Sequence[str]]], what: str, *, drop_silent: bool) -> list[Entry]:
    """Index entries of ``groups`` = ``[(root folder, files)]``: bad files raise (or are skipped with a warning under
    ``skip_bad_files``); silent ones are left out with a warning when ``drop_silent``."""
    entries: list[Entry] = []
    for root, files in groups:
        if files:
            entries += index_files(root, files, cache_dir=cfg.index_cache_dir, workers=cfg.workers,
                                   check=cfg.index_check)[0]
    sr = int(cfg.sample_rate)
    kw = dict(sample_rate=sr, resample=bool(getattr(cfg, "resample", True)),
              multichannel=str(getattr(cfg, "multichannel", "downmix")))
    bad = [(e, err) for e in entries for err in [check_entry(e, **kw)] if err is not None]
    if bad:
        if not cfg.skip_bad_files:
            raise bad[0][1]
        warnings.warn(f"skipped {len(bad)} unreadable/invalid {what} file(s) (skip_bad_files=true): "
                      + _shown([f"{err.path} ({err.problem})" for _, err in bad]), DataWarning, stacklevel=3)
        dropped = {e.path for e, _ in bad}
        entries = [e for e in entries if e.path not in dropped]
    if drop_silent:
        silent = [e.path for e in entries if 0 <= e.rms < SILENCE_RMS]  # rms < 0: header-only index, not known
        if silent:
            warnings.warn(f"left out {len(silent)} silent {what} clip(s) (RMS < {SILENCE_RMS:g}): " + _shown(silent),
                          DataWarning, stacklevel=3)
            entries = [e for e in entries if not 0 <= e.rms < SILENCE_RMS]
    return entries


def _folder_files(dirs: Sequence[str]) -> list[tuple[str, list[str]]]:
    return [(str(d), list_audio(d)) for d in dirs]


def _by_parent(files: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Files grouped under their common folder (one index cache for an explicit file list)."""
    if not files:
        return []
    return [(os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]), list(files))]


# ------------------------------------------------------------------------------ the dataset
def _examples(start: int, stop: int | None) -> tf.data.Dataset:
    if stop is None:
        return tf.data.Dataset.counter(start, dtype=tf.int64)
    return tf.data.Dataset.range(start, max(stop, start), dtype=tf.int64)


def _serve(cfg, examples: tf.data.Dataset, read: Callable, out: Sequence[tuple[tf.DType, list]], *,
           b: int, post: Callable | None, drop_remainder: bool) -> tf.data.Dataset:
    """``examples`` (example numbers) -> ``read(e)`` in parallel NumPy -> ``post`` (TF ops) in parallel -> batches."""
    par = cfg.workers or tf.data.AUTOTUNE
    types = [t for t, _ in out]

    def tf_read(e):
        xs = tf.numpy_function(lambda v: read(int(v)), [e], types, stateful=False)
        for x, (_, shape) in zip(xs, out):
            x.set_shape(shape)
        return tuple(xs)

    ds = examples.map(tf_read, num_parallel_calls=par, deterministic=True)
    if post is not None:
        ds = ds.map(post, num_parallel_calls=par, deterministic=True)
    else:
        ds = ds.map(lambda nz, cl: {"noisy": nz, "clean": cl})
    return ds.batch(b, drop_remainder=drop_remainder)


def _finish(ds: tf.data.Dataset, cfg) -> tf.data.Dataset:
    pf = cfg.prefetch
    pf = tf.data.AUTOTUNE if pf is None or int(pf) < 0 else int(pf)
    opts = tf.data.Options()
    opts.deterministic = True
    if cfg.workers:
        opts.threading.private_threadpool_size = int(cfg.workers)
    return ds.with_options(opts).prefetch(pf)


# ------------------------------------------------------------------------------ pairs (paired, tfds voicebank)
def _pairs_dataset(cfg, split, seed, pi, pc, repeat, start_step, noisy, clean, *, by_files: bool):
    """Batches of crops of the pairs ``(noisy[i], clean[i])``; ``noisy``/``clean`` are this host's clips."""
    b, n = per_host_batch_size(cfg, pc), _segment_samples(cfg)
    N = len(clean)

    def crop(i: int, off: int):
        length = min(noisy.length(i), clean.length(i))
        nz, cl = noisy.segment(i, off, n), clean.segment(i, off, n)
        if length < off + n:  # a pair's longer side is cut to the shorter one
            nz[max(0, length - off):] = 0.0
            cl[max(0, length - off):] = 0.0
        return nz, cl

    out = [(tf.float32, [n]), (tf.float32, [n])]
    if split in EVAL_SPLITS:
        ds = _serve(cfg, _examples(start_step * b, N), lambda e: crop(e, 0), out, b=b, post=None,
                    drop_remainder=False)
        return ds.repeat() if repeat else ds

    B, pick = _train_draws(seed, b, pi, pc, by_files, N)

    def read(e: int):
        rng, i = pick(e)
        length = min(noisy.length(i), clean.length(i))
        return crop(i, int(rng.integers(0, max(length - n, 0) + 1)))

    stop = None if repeat in (None, True) else (N // B) * b
    return _serve(cfg, _examples(start_step * b, stop), read, out, b=b, post=None, drop_remainder=True)


def _build_paired(cfg, split, seed, pi, pc, repeat, start_step) -> tf.data.Dataset:
    noisy_dir, clean_dir = getattr(cfg, f"{split}_noisy_dir"), getattr(cfg, f"{split}_clean_dir")
    pairs = match_pairs(noisy_dir, clean_dir)
    by_files = cfg.host_sharding == "files" and split not in EVAL_SPLITS
    if by_files or split in EVAL_SPLITS:
        pairs = pairs[pi::pc]  # ds.shard(process_count, process_index) on the file list
    if not pairs:
        raise ValueError(f"paired/{split}: no files for process {pi} of {pc} in {noisy_dir}")
    nz = _indexed(cfg, [(noisy_dir, [p[1] for p in pairs])], f"{split} noisy", drop_silent=False)
    cl = _indexed(cfg, [(clean_dir, [p[2] for p in pairs])], f"{split} clean", drop_silent=True)
    nz_of, cl_of = {e.path: e for e in nz}, {e.path: e for e in cl}
    items = [(k, nz_of[a], cl_of[c]) for k, a, c in pairs if a in nz_of and c in cl_of]
    if not items:
        raise ValueError(f"paired/{split}: no usable pairs left for process {pi} (all bad or silent)")
    sr = int(cfg.sample_rate)
    uneven = [k for k, a, c in items if target_length(a, sr) != target_length(c, sr)]
    if uneven:
        warnings.warn(f"paired: {len(uneven)} pair(s) of noisy/clean lengths differ, cut to the shorter: "
                      + _shown(uneven), DataWarning, stacklevel=2)
    return _pairs_dataset(cfg, split, seed, pi, pc, repeat, start_step, _Files([a for _, a, _ in items], sr),
                          _Files([c for _, _, c in items], sr), by_files=by_files)


# ------------------------------------------------------------------------------ mixtures (mix, demo, tfds dns)
def _resample_to(x: np.ndarray, ratio: Fraction, n: int) -> np.ndarray:
    """``f32[n]``: ``x`` (about ``n * ratio`` samples) resampled by ``1 / ratio`` with band-limited polyphase
    filtering (``ratio`` > 1 raises pitch and formants, < 1 lowers them), cut or zero-padded to ``n``."""
    from scipy.signal import resample_poly

    y = resample_poly(x, ratio.denominator, ratio.numerator)
    return np.pad(y, (0, max(n - len(y), 0)))[:n].astype(np.float32)


def _speed_ratio(rng: np.random.Generator, p: float, lo: float, hi: float) -> Fraction:
    """Samples read per sample served: ``f ~ U(lo, hi)`` as a small fraction with probability ``p``, else 1 (no
    draw at all when ``p`` is 0, so that the random stream is the one of a run without the option)."""
    if p and rng.random() < p:
        return Fraction(float(rng.uniform(lo, hi))).limit_denominator(20)
    return Fraction(1)


def _read_length(n: int, ratio: Fraction) -> int:
    return -(-n * ratio.numerator // ratio.denominator)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# the probabilities of the perturbations that _mix_read draws for the training split only
_PERTURBATIONS = ("speed_prob", "noise_speed_prob", "noise_add_prob", "noise_eq_prob", "speech_eq_prob",
                  "babble_prob", "tonal_prob")


def _looped_crop(source, j: int, rng: np.random.Generator, n: int, ratio: Fraction) -> np.ndarray:
    """``f32[n]``: a crop of clip ``j`` from a random start, looped when the clip is short, read at ``ratio``
    samples per sample served (see ``_speed_ratio``)."""
    m, L = _read_length(n, ratio), source.length(j)
    start = int(rng.integers(0, L))
    if L < 2 * m:  # short clip: loop it
        x = np.resize(np.roll(source.whole(j), -start), m).astype(np.float32)
    elif start + m <= L:
        x = source.segment(j, start, m)
    else:
        x = np.concatenate([source.segment(j, start, L - start), source.segment(j, 0, m - (L - start))])
    return _resample_to(x, ratio, n) if m != n else x


def _babble(cfg, n: int, cleans) -> Callable[[np.random.Generator, int], np.ndarray]:
    """``babble(rng, clean_index)`` -> ``f32[n]``: ``k ~ U{babble_talkers}`` crops of clips from other talkers than
    the target's (another folder; any other clip where the source has no folders, e.g. TFDS records), each
    resampled by ``~ U(babble_speed_range)`` and scaled to unit RMS, summed."""
    talker = [os.path.dirname(e.path) for e in cleans.entries] if hasattr(cleans, "entries") else None
    (klo, khi), (vlo, vhi) = cfg.babble_talkers, cfg.babble_speed_range
    p_speed = 0.0 if vlo == vhi == 1 else 1.0  # no speed draw at all for a babble at the recorded speed

    def babble(rng: np.random.Generator, ci: int) -> np.ndarray:
        out = np.zeros((n,), np.float32)
        for _ in range(int(rng.integers(int(klo), int(khi) + 1))):
            for _ in range(16):  # another talker's clip (a one-talker corpus: any clip)
                j = int(rng.integers(len(cleans)))
                if (talker[j] != talker[ci]) if talker else j != ci:
                    break
            x = _looped_crop(cleans, j, rng, n, _speed_ratio(rng, p_speed, vlo, vhi))
            out += x / max(_rms(x), 1e-12)
        return out

    return babble


def _maybe_eq(rng: np.random.Generator, x: np.ndarray, p: float, *, sample_rate: int, db_range) -> np.ndarray:
    """``x`` through a random equaliser with probability ``p`` (no draw at all when ``p`` is 0)."""
    if p and rng.random() < p:
        return equalizer.random_eq(rng, x, sample_rate=sample_rate, db_range=db_range)
    return x


def _mix_read(cfg, n: int, cleans, noises, rirs, *, train: bool = True) -> Callable[[np.random.Generator, int], tuple]:
    """``draw(rng, clean_index)`` -> ``(speech f32[n], noise f32[n], rir f32[taps], [snr, level], [kind, seed2])``:
    every random choice of one mixture and the reads it needs (``kind`` -1: the noise crop, else synthetic).
    ``train``: draw the perturbations (``speed_prob``, ``noise_speed_prob``, ``noise_add_prob``, ``noise_eq_prob``,
    ``speech_eq_prob``, ``babble_prob``, ``tonal_prob``; valid/test mixtures are never perturbed)."""
    kinds = [mixing.NOISE_KINDS.index(k) for k in _list(cfg.synthetic_noise) if k]
    if not kinds and not len(noises):
        raise ValueError("mix: no noise clips (noise_dirs) and no synthetic_noise kinds configured")
    p_syn, p_rir, p_srir = float(cfg.synthetic_noise_prob), float(cfg.rir_prob), float(cfg.synthetic_rir_prob)
    (slo, shi), (llo, lhi) = cfg.snr_range, cfg.level_range
    sr = int(cfg.sample_rate)
    p_speed, p_nspeed, p_nadd, p_neq, p_seq, p_bab, p_ton = (float(getattr(cfg, k)) if train else 0.0
                                                             for k in _PERTURBATIONS)
    speed_range, noise_speed_range, (alo, ahi) = cfg.speed_range, cfg.noise_speed_range, cfg.noise_add_db
    maybe_eq = functools.partial(_maybe_eq, sample_rate=sr, db_range=tuple(cfg.eq_db))

    babble = _babble(cfg, n, cleans) if p_bab else None

    def noise_crop(rng: np.random.Generator) -> np.ndarray:  # f32[n] of a random clip (looped when short)
        j = int(rng.integers(len(noises)))
        return _looped_crop(noises, j, rng, n, _speed_ratio(rng, p_nspeed, *noise_speed_range))

    def draw(rng: np.random.Generator, ci: int):
        length = cleans.length(ci)
        ratio = _speed_ratio(rng, p_speed, *speed_range)
        m = _read_length(n, ratio)
        for _ in range(8):  # re-draw a crop that happens to be silent (leading silence)
            speech = cleans.segment(ci, int(rng.integers(0, max(length - m, 0) + 1)), m)  # zero-padded past the end
            if m != n:
                speech = _resample_to(speech, ratio, n)
            if _rms(speech) >= SILENCE_RMS:
                break
        speech = maybe_eq(rng, speech, p_seq)
        rir = np.zeros((0,), np.float32)
        if p_srir and rng.random() < p_srir:
            rir = mixing.synthetic_rir(rng, sample_rate=sr, t60_range=cfg.synthetic_rir_t60)
        elif len(rirs) and rng.random() < p_rir:
            rir = rirs.whole(int(rng.integers(len(rirs))))
        kind, noise = -1, np.zeros((n,), np.float32)
        if p_bab and rng.random() < p_bab:
            kind = -2  # babble, served as a noise crop (kind -1)
        elif p_ton and rng.random() < p_ton:
            kind = -3  # synthetic tones, likewise
        elif kinds and (not len(noises) or rng.random() < p_syn):
            kind = kinds[int(rng.integers(len(kinds)))]
        if kind < 0:
            noise = {-2: babble, -3: lambda r, _: tonal.random_tonal(r, n, sample_rate=sr)}.get(
                kind, lambda r, _: noise_crop(r))(rng, ci)
            kind = -1
            if p_nadd and len(noises) and rng.random() < p_nadd:
                other, rel_db = noise_crop(rng), rng.uniform(alo, ahi)
                r1, r2 = max(_rms(noise), 1e-12), max(_rms(other), 1e-12)
                noise = (noise / r1 + other * (10 ** (rel_db / 20) / r2)).astype(np.float32)
            noise = maybe_eq(rng, noise, p_neq)
        snr, level = rng.uniform(slo, shi), rng.uniform(llo, lhi)
        ints = np.array([kind, *rng.integers(0, 2**31 - 1, size=2)], np.int64)
        return speech, noise, rir, np.array([snr, level], np.float32), ints

    return draw


def _mix_post(cfg, n: int) -> Callable:
    reverberant = str(cfg.rir_target) == "reverberant"

    def post(speech, noise, rir, f, ints):
        rev = tf.cond(tf.size(rir) > 0, lambda: mixing.convolve_aligned(speech, rir), lambda: speech)
        target = rev if reverberant else speech
        seed = ints[1:3]
        noise = tf.cond(ints[0] >= 0, lambda: mixing.synthetic_noise(tf.maximum(ints[0], 0), n, seed),
                        lambda: noise)
        silent = tf.reduce_max(tf.abs(noise)) < 1e-8  # a silent noise clip: white noise instead
        noise = tf.cond(silent, lambda: mixing.synthetic_noise(0, n, seed), lambda: noise)
        noisy, target = mixing.mix(rev, noise, target, f[0], f[1])
        noisy.set_shape([n])
        target.set_shape([n])
        return {"noisy": noisy, "clean": target}

    return post


def _mix_dataset(cfg, split, seed, pi, pc, repeat, start_step, cleans, noises, rirs, *, by_files: bool):
    b, n = per_host_batch_size(cfg, pc), _segment_samples(cfg)
    draw = _mix_read(cfg, n, cleans, noises, rirs, train=split not in EVAL_SPLITS)
    out = [(tf.float32, [n]), (tf.float32, [n]), (tf.float32, [None]), (tf.float32, [2]), (tf.int64, [3])]
    post = _mix_post(cfg, n)
    N = len(cleans)
    if split in EVAL_SPLITS:
        mine = list(range(pi, int(cfg.eval_examples), pc))
        sid = _split_id(split)

        def read_eval(e: int):
            rng = np.random.Generator(np.random.PCG64([EVAL_SEED, sid, mine[e]]))
            return draw(rng, int(rng.integers(N)))

        ds = _serve(cfg, _examples(start_step * b, len(mine)), read_eval, out, b=b, post=post,
                    drop_remainder=False)
        return ds.repeat() if repeat else ds

    B, pick = _train_draws(seed, b, pi, pc, by_files, N)

    def read(e: int):
        return draw(*pick(e))

    stop = None if repeat in (None, True) else (N // B) * b
    return _serve(cfg, _examples(start_step * b, stop), read, out, b=b, post=post, drop_remainder=True)


def _rir_source(cfg, rir_dirs) -> _Files:
    return _Files(_indexed(cfg, _folder_files(_list(rir_dirs)), "rir", drop_silent=True), int(cfg.sample_rate))


def _mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, clean_groups, noise_groups, rir_dirs):
    train = split not in EVAL_SPLITS
    by_files = train and cfg.host_sharding == "files"
    if by_files:  # per-host file shard (before shuffling)
        clean_groups = [(r, list(fs)) for r, fs in clean_groups]
        flat = [(r, f) for r, fs in clean_groups for f in fs][pi::pc]
        clean_groups = [(r, [f for rr, f in flat if rr == r]) for r, _ in clean_groups]
    if not any(fs for _, fs in clean_groups):
        raise ValueError(f"{cfg.kind}/{split}: no clean audio files found" + (f" for process {pi}" if by_files else ""))
    sr = int(cfg.sample_rate)
    cleans = _Files(_indexed(cfg, clean_groups, f"{split} clean", drop_silent=True), sr)
    if not len(cleans):
        raise ValueError(f"{cfg.kind}/{split}: no usable clean clips (all bad or silent)")
    noises = _Files(_indexed(cfg, noise_groups, f"{split} noise", drop_silent=False), sr)
    return _mix_dataset(cfg, split, seed, pi, pc, repeat, start_step, cleans, noises, _rir_source(cfg, rir_dirs),
                        by_files=by_files)


def _build_mix(cfg, split, seed, pi, pc, repeat, start_step):
    def dirs(key):
        v = getattr(cfg, f"{split}_{key}", None) if split in EVAL_SPLITS else None
        return _list(v if v is not None else getattr(cfg, key))

    return _mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, _folder_files(dirs("clean_dirs")),
                           _folder_files(dirs("noise_dirs")), cfg.rir_dirs)


def _build_demo(cfg, split, seed, pi, pc, repeat, start_step):
    from jaxse.data import demo

    clean = [str(p) for p in demo.paths("clean", split)]
    noise = [str(p) for p in demo.paths("noise", split)]
    if not clean:
        raise ValueError(f"demo/{split}: the embedded demo corpus has no clean files for this split")
    return _mix_from_files(cfg, split, seed, pi, pc, repeat, start_step, _by_parent(clean), _by_parent(noise),
                           cfg.rir_dirs)


# ------------------------------------------------------------------------------ tfds
def _build_tfds(cfg, split, seed, pi, pc, repeat, start_step):
    from jaxse.data import tfds_builders

    sr = int(cfg.sample_rate)
    if sr != tfds_builders.SAMPLE_RATE:
        raise ValueError(f"tfds datasets are prepared at {tfds_builders.SAMPLE_RATE} Hz; sample_rate={sr}")
    builder = tfds_builders.get_builder(cfg)
    if builder.name == "voicebank_demand":
        src = builder.as_data_source(split=str(getattr(cfg, f"{split}_split")))
        if split in EVAL_SPLITS and pc > 1:  # eval: every host its round-robin share of the records
            src = _Subset(src, range(pi, len(src), pc))
        return _pairs_dataset(cfg, split, seed, pi, pc, repeat, start_step, _Records(src, "noisy"),
                              _Records(src, "clean"), by_files=False)

    # dns_challenge: record slices [0, h) valid, [h, 2h) test, [2h, N) train of "clean" and of "noise"
    def part(kind: str) -> _Records:
        s = builder.as_data_source(split=kind)
        h = int(len(s) * float(cfg.eval_holdout_percent) / 100.0)
        lo, hi = {"valid": (0, h), "test": (h, 2 * h), "train": (2 * h, len(s))}[split]
        return _Records(s, "audio", lo, hi)

    cleans, noises = part("clean"), part("noise")
    if not len(cleans):
        raise ValueError(f"dns_challenge/{split}: its slice of the clean records is empty "
                         f"(eval_holdout_percent={cfg.eval_holdout_percent})")
    return _mix_dataset(cfg, split, seed, pi, pc, repeat, start_step, cleans, noises, _rir_source(cfg, cfg.rir_dirs),
                        by_files=False)


class _Subset:
    """Records ``indices`` of a random-access source."""

    def __init__(self, source, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.source[self.indices[i]]


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

    ``batch = data_cfg.batch_size // process_count``. ``repeat=None``: train repeats forever, eval splits
    (``valid``/``test``) run once. ``start_step``: first batch index (resume, O(1)).
    """
    _check_split(split)
    data_cfg = data_config(data_cfg)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    per_host_batch_size(data_cfg, process_count)
    if split in EVAL_SPLITS and repeat is None:
        repeat = False
    ds = _BUILDERS[data_cfg.kind](data_cfg, split, int(seed), int(process_index), int(process_count), repeat,
                                  int(start_step))
    return _finish(ds, data_cfg)


class Batches:
    """The NumPy batches of a built dataset (an iterator; also a context manager). ``close()`` stops its input
    threads now; :func:`batches` closes every one still open when the interpreter exits.

    Why: tf.data's iterator, when destroyed, waits for its in-flight ``numpy_function`` reads, and those need the
    GIL. Destroyed while Python runs (``del``, ``close()``), that takes milliseconds; destroyed during the
    interpreter's own teardown (an iterator still referenced at exit: a module global, a frame kept by a
    traceback), the reads can no longer take the GIL and the process hangs, idle, after its last line ran."""

    def __init__(self, ds: tf.data.Dataset):
        self._it = ds.as_numpy_iterator()
        _OPEN.add(self)

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._it is None:
            raise StopIteration
        return next(self._it)

    def close(self) -> None:
        """Stop the input threads (dropping the only reference to tf.data's iterator); ``next`` then stops."""
        self._it = None
        _OPEN.discard(self)

    def __enter__(self) -> "Batches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OPEN: "weakref.WeakSet[Batches]" = weakref.WeakSet()


@atexit.register
def _close_open_batches() -> None:
    for it in list(_OPEN):
        it.close()


def batches(
    data_cfg: Mapping,
    *,
    split: str = "train",
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
    repeat: bool | None = None,
) -> Batches:
    """Numpy batches starting at batch ``start_step``; identical to batches ``start_step, ...`` of an
    uninterrupted run with the same arguments (O(1) for every kind). A :class:`Batches`: ``close()`` (or ``with``)
    stops its input threads; one left open is closed at interpreter exit."""
    ds = build_dataset(data_cfg, split=split, seed=seed, process_index=process_index,
                       process_count=process_count, repeat=repeat, start_step=start_step)
    return Batches(ds)
