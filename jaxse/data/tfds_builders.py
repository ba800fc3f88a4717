"""TFDS builders for the standard corpora (manual download), prepared into ArrayRecord files (random access by
record index: the pipeline reads example ``i`` without reading the ones before it).

* ``voicebank_demand`` (:class:`VoicebankDemand`): ``manual_dir`` holds the standard
  VoiceBank+DEMAND folders ``clean_trainset_28spk_wav``, ``noisy_trainset_28spk_wav``,
  ``clean_testset_wav``, ``noisy_testset_wav`` (48 kHz wav). Files are matched by name,
  resampled to 16 kHz, stored as int16 ``noisy``/``clean`` pairs. Splits: ``train``, ``test``.
* ``dns_challenge`` (:class:`DnsChallenge`): design = *on-the-fly mixing*. ``manual_dir`` holds
  the DNS-Challenge ``clean/`` and ``noise/`` folders (searched recursively); each clip is stored
  once (16 kHz int16 ``audio``) in split ``clean`` or ``noise``; the pipeline mixes them at
  random SNR/level on the fly (fresh mixtures every epoch, no pre-mixed copies on disk).
  The pipeline uses the first percent slices of ``clean``/``noise`` as fixed valid/test holdouts.

Silent clean clips (RMS < 1e-5) are left out with a warning; unreadable files are skipped with
a warning when the builder is created with ``skip_bad_files=True`` and raise
:class:`~jaxse.io.audio.AudioError` otherwise.
"""

from __future__ import annotations

import os
import warnings
from typing import Mapping

import numpy as np
import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except Exception:  # pragma: no cover
    pass

import tensorflow_datasets as tfds

from jaxse.errors import UsageError
from jaxse.io.audio import AudioError, list_audio, match_pairs, read_audio

from jaxse.signal import SAMPLE_RATE  # noqa: E402  (the one sample rate)
SILENCE_RMS = 1e-5

__all__ = ["SAMPLE_RATE", "VoicebankDemand", "DnsChallenge", "get_builder", "to_int16"]


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _audio_feature():
    return tfds.features.Audio(file_format=None, shape=(None,), dtype=np.int16, sample_rate=SAMPLE_RATE)


class _Base(tfds.core.GeneratorBasedBuilder):
    def __init__(self, *, skip_bad_files: bool = False, **kwargs):
        self._skip_bad_files = bool(skip_bad_files)
        super().__init__(**kwargs)

    def _read(self, path: str):
        try:
            return read_audio(path, sample_rate=SAMPLE_RATE, resample=True, multichannel="downmix")
        except AudioError as e:
            if not self._skip_bad_files:
                raise
            warnings.warn(f"skipped unreadable file {e.path}: {e.problem}", UserWarning, stacklevel=2)
            return None

    @staticmethod
    def _silent(x: np.ndarray, name: str) -> bool:
        if float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) < SILENCE_RMS:
            warnings.warn(f"left out silent clean clip {name} (RMS < {SILENCE_RMS:g})", UserWarning, stacklevel=2)
            return True
        return False


class VoicebankDemand(_Base):
    """VoiceBank+DEMAND (Valentini et al. 2016), 28-speaker set, resampled to 16 kHz."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (16 kHz int16 pairs).", "1.1.0": "ArrayRecord (random access)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download VoiceBank+DEMAND from https://datashare.ed.ac.uk/handle/10283/2791 and extract "
        "clean_trainset_28spk_wav/, noisy_trainset_28spk_wav/, clean_testset_wav/ and "
        "noisy_testset_wav/ into manual_dir."
    )
    FOLDERS = {
        "train": ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"),
        "test": ("noisy_testset_wav", "clean_testset_wav"),
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="VoiceBank+DEMAND noisy/clean speech pairs at 16 kHz.",
            features=tfds.features.FeaturesDict(
                {"noisy": _audio_feature(), "clean": _audio_feature(), "id": tfds.features.Text()}
            ),
            supervised_keys=("noisy", "clean"),
            homepage="https://datashare.ed.ac.uk/handle/10283/2791",
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        out = {}
        for split, (nd, cd) in self.FOLDERS.items():
            n, c = os.path.join(root, nd), os.path.join(root, cd)
            if not (os.path.isdir(n) and os.path.isdir(c)):
                raise UsageError(f"voicebank_demand: expected folders {nd}/ and {cd}/ in manual_dir {root}")
            out[split] = self._generate_examples(n, c)
        return out

    def _generate_examples(self, noisy_dir, clean_dir):
        for key, npath, cpath in match_pairs(os.fspath(noisy_dir), os.fspath(clean_dir)):
            nz, cl = self._read(npath), self._read(cpath)
            if nz is None or cl is None or self._silent(cl, cpath):
                continue
            m = min(nz.shape[0], cl.shape[0])
            yield key, {"noisy": to_int16(nz[:m]), "clean": to_int16(cl[:m]), "id": key}


class DnsChallenge(_Base):
    """DNS-Challenge clean speech and noise clips (mixed on the fly by the pipeline)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (clean/noise clips, 16 kHz int16).",
                     "1.1.0": "ArrayRecord (random access)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the DNS-Challenge data (https://github.com/microsoft/DNS-Challenge) and put the "
        "clean speech under manual_dir/clean/ and the noise clips under manual_dir/noise/."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="DNS-Challenge clean speech and noise clips at 16 kHz for on-the-fly mixing.",
            features=tfds.features.FeaturesDict({"audio": _audio_feature(), "id": tfds.features.Text()}),
            homepage="https://github.com/microsoft/DNS-Challenge",
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        out = {}
        for kind in ("clean", "noise"):
            d = os.path.join(root, kind)
            if not os.path.isdir(d):
                raise UsageError(f"dns_challenge: expected folder {kind}/ in manual_dir {root}")
            out[kind] = self._generate_examples(d, kind)
        return out

    def _generate_examples(self, directory, kind):
        directory = os.fspath(directory)
        for path in list_audio(directory):
            x = self._read(path)
            if x is None or x.shape[0] == 0 or (kind == "clean" and self._silent(x, path)):
                continue
            key = os.path.relpath(path, directory).replace(os.sep, "/")
            yield key, {"audio": to_int16(x), "id": key}


_NAMES = {"voicebank_demand": VoicebankDemand, "dns_challenge": DnsChallenge}


def get_builder(data_cfg: Mapping, *, prepare: bool = True) -> tfds.core.DatasetBuilder:
    """Builder for ``data_cfg["name"]`` in ``data_dir``, prepared once from ``manual_dir``."""
    for key in ("name", "data_dir"):
        if data_cfg.get(key) in (None, "???"):
            raise ValueError(f"data config key {key!r} is required for kind='tfds' (it is unset or '???')")
    name = str(data_cfg["name"])
    if name not in _NAMES:
        raise ValueError(f"tfds name must be one of {sorted(_NAMES)}, got {name!r}")
    builder = _NAMES[name](data_dir=os.fspath(data_cfg["data_dir"]), file_format="array_record",
                           skip_bad_files=bool(data_cfg.get("skip_bad_files", False)))
    if prepare:
        manual = data_cfg.get("manual_dir")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual) if manual else None)
        )
    return builder
