"""Embedded demo speech-enhancement corpus (no downloads needed).

The corpus lives in ``jaxse/data/demo/`` and is installed as package data.
It is rebuilt bit for bit by ``experiments/build_demo_corpus.py``.

Contents (all FLAC, 16-bit, mono, 16 kHz; about 11.6 MB):

* ``clean/{train,valid,test}/*.flac``: 305 synthetic utterances of 1.7-3.2 s
  (12.5 min), one distinct self-written sentence each, from 28 voices of
  four engines: espeak-ng (20 voice variants), flite (kal, kal16, awb, rms,
  slt), festival (kal_diphone, cmu_us_slt_arctic_hts) and piper
  (en_US-joe-medium).

  ====== ============ ======= ==========================================
  split  utterances   minutes voices
  ====== ============ ======= ==========================================
  train  222          9.0     piper joe, flite kal/kal16, festival kal,
                              14 espeak-ng variants
  valid  34           1.4     flite awb, 3 espeak-ng variants
  test   49           2.1     flite slt, festival slt (HTS), flite rms,
                              3 espeak-ng variants
  ====== ============ ======= ==========================================

  ``flite:kal`` (8 kHz source) and ``flite:awb`` (band-limited near 5 kHz)
  are marked ``narrowband`` in the manifest; all other voices ``wideband``.
* ``noise/{train,valid,test}/*.flac``: 54 real recordings (OpenSFX sound
  effects from freesound.org etc.; machines, vehicles, wind, crowd,
  animals, tools; up to 3 s each) from 45 source recordings, plus 8 babble
  clips of 4 s, each a sum of 5 utterances of the same split's voices.
  train: 39 real + 4 babble, valid: 6 + 2, test: 9 + 2.  White/pink/brown
  noise is not stored (the pipeline generates it).

Splits are disjoint in voice (the ``source`` of clean rows), sentence
(``sentence_id``) and noise source recording (``source`` of noise rows).
Samples are stored at 12-bit resolution inside 16-bit FLAC (noise floor
about -77 dBFS) to fit the size budget; clean and real-noise files are
peak-normalised to -3 dBFS.  Licences and attribution per file are in
``manifest.csv`` and ``ATTRIBUTION.md``.

Array convention: read a file with ``soundfile.read(path, dtype="float32")``
to get a 1-D float32 array in [-1, 1] at 16 kHz (mono).

This module imports neither TensorFlow nor JAX.
"""
from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["DEMO_DIR", "SAMPLE_RATE", "KINDS", "SPLITS", "manifest", "paths"]

DEMO_DIR: Path = Path(__file__).resolve().parent / "demo"
from jaxse.signal import SAMPLE_RATE  # noqa: E402  (the one sample rate)
KINDS = ("clean", "noise")
SPLITS = ("train", "valid", "test")

_MANIFEST_CACHE: list[dict] | None = None


def manifest() -> list[dict]:
    """Rows of ``manifest.csv`` as dicts, sorted by ``path``.

    Columns: ``path`` (relative to :data:`DEMO_DIR`), ``kind``, ``split``,
    ``duration_s`` (float), ``sample_rate`` (int), ``channels`` (int),
    ``engine``, ``source``, ``sentence_id``, ``text``, ``bandwidth``,
    ``licence``, ``attribution``, plus ``abs_path`` (absolute path, str).
    A fresh list of fresh dicts is returned on every call.
    """
    global _MANIFEST_CACHE
    if _MANIFEST_CACHE is None:
        with open(DEMO_DIR / "manifest.csv", newline="", encoding="utf-8") as f:
            rows = []
            for r in csv.DictReader(f):
                r["duration_s"] = float(r["duration_s"])
                r["sample_rate"] = int(r["sample_rate"])
                r["channels"] = int(r["channels"])
                r["abs_path"] = str(DEMO_DIR / r["path"])
                rows.append(r)
        rows.sort(key=lambda r: r["path"])
        _MANIFEST_CACHE = rows
    return [dict(r) for r in _MANIFEST_CACHE]


def paths(kind: str, split: str) -> list[str]:
    """Sorted absolute paths of the ``kind`` (``"clean"``/``"noise"``) files
    of ``split`` (``"train"``/``"valid"``/``"test"``).

    Raises ValueError naming the bad argument otherwise.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return sorted(r["abs_path"] for r in manifest()
                  if r["kind"] == kind and r["split"] == split)
