"""Consistency of the embedded demo corpus (jaxse/data/demo) with its manifest."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import soundfile as sf

from jaxse.data import demo

FIELDS = ["path", "kind", "split", "duration_s", "sample_rate", "channels",
          "engine", "source", "sentence_id", "text", "bandwidth", "licence",
          "attribution"]
SPLITS = ("train", "valid", "test")
MAX_BYTES = 12 * 1000 * 1000


@pytest.fixture(scope="module")
def rows():
    return demo.manifest()


def test_manifest_columns():
    with open(demo.DEMO_DIR / "manifest.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == FIELDS


def test_rows_match_files(rows):
    assert len(rows) > 300
    for r in rows:
        p = Path(r["abs_path"])
        assert p.is_file(), r["path"]
        info = sf.info(str(p))
        assert info.format == "FLAC", r["path"]
        assert info.subtype == "PCM_16", r["path"]
        assert info.samplerate == 16000 == r["sample_rate"], r["path"]
        assert info.channels == 1 == r["channels"], r["path"]
        assert abs(info.frames / info.samplerate - r["duration_s"]) <= 0.010, r["path"]
        assert r["kind"] in ("clean", "noise")
        assert r["split"] in SPLITS
        assert r["bandwidth"] in ("wideband", "narrowband")
        assert r["licence"] and r["attribution"] and r["engine"] and r["source"]
        if r["kind"] == "clean":
            assert r["sentence_id"] and r["text"]
            assert r["path"].startswith(f"clean/{r['split']}/")
        else:
            assert not r["sentence_id"] and not r["text"]
            assert r["path"].startswith(f"noise/{r['split']}/")


def test_every_flac_is_in_manifest(rows):
    on_disk = {p.relative_to(demo.DEMO_DIR).as_posix()
               for p in demo.DEMO_DIR.rglob("*.flac")}
    assert on_disk == {r["path"] for r in rows}
    assert len({r["path"] for r in rows}) == len(rows)


def test_reads_as_float32(rows):
    first = demo.paths("clean", "test")[0]
    x, sr = sf.read(first, dtype="float32")
    assert sr == 16000 and x.ndim == 1 and x.dtype.name == "float32"
    assert 0.3 < abs(x).max() <= 1.0


@pytest.mark.parametrize("key,kind", [("source", "clean"),
                                      ("sentence_id", "clean"),
                                      ("text", "clean"),
                                      ("source", "noise")])
def test_splits_disjoint(rows, key, kind):
    sets = {s: {r[key] for r in rows if r["kind"] == kind and r["split"] == s}
            for s in SPLITS}
    assert sets["train"].isdisjoint(sets["valid"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["valid"].isdisjoint(sets["test"])


def _speaker(voice: str) -> str:
    """Voice id -> underlying speaker: CMU's slt and kal recordings back
    voices of several engines (flite:slt, festival:cmu_us_slt_arctic_hts;
    flite:kal, flite:kal16, festival:kal_diphone)."""
    for spk in ("slt", "kal"):
        if spk in voice.split(":", 1)[1]:
            return spk
    return voice


def test_speakers_disjoint_across_engines(rows):
    sets = {s: {_speaker(r["source"]) for r in rows
                if r["kind"] == "clean" and r["split"] == s} for s in SPLITS}
    assert sets["train"].isdisjoint(sets["valid"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["valid"].isdisjoint(sets["test"])


def test_sentences_unique(rows):
    clean = [r for r in rows if r["kind"] == "clean"]
    assert len({r["sentence_id"] for r in clean}) == len(clean)
    assert len({r["text"] for r in clean}) == len(clean)


def test_noise_originals_disjoint(rows):
    """Original recordings named in the OpenSFX descriptions
    ('Original "x.wav" by "author" and "y.wav" by ...') never occur in two
    splits, independently of the ``source`` grouping of the build script."""
    seen: dict[str, str] = {}
    n = 0
    for r in rows:
        if r["engine"] != "opensfx":
            continue
        desc = r["attribution"].split(": ", 1)[1]
        for orig in re.findall(r'"([^"]+)" by ', desc):
            n += 1
            assert seen.setdefault(orig, r["split"]) == r["split"], orig
    assert n > 40


def test_voice_bandwidth_consistent(rows):
    bw: dict[str, set] = {}
    for r in rows:
        if r["kind"] == "clean":
            bw.setdefault(r["source"], set()).add(r["bandwidth"])
    assert all(len(v) == 1 for v in bw.values()), bw
    narrow = {v for v, b in bw.items() if b == {"narrowband"}}
    assert "flite:kal" in narrow


def test_babble_from_own_split_with_combined_licence(rows):
    voices = {}
    for r in rows:
        if r["kind"] == "clean":
            voices[r["source"]] = (r["split"], r["licence"])
    babble = [r for r in rows if r["engine"] == "babble"]
    assert babble
    for r in babble:
        talkers = r["attribution"].split("talkers: ", 1)[1].split(", ")
        assert all(voices[t][0] == r["split"] for t in talkers), r["path"]
        want = " AND ".join(sorted({voices[t][1] for t in talkers}))
        assert r["licence"] == want, r["path"]


def test_each_split_has_clean_and_noise(rows):
    for s in SPLITS:
        for kind in ("clean", "noise"):
            assert demo.paths(kind, s), (kind, s)
        voices = {r["source"] for r in rows if r["kind"] == "clean" and r["split"] == s}
        assert len(voices) >= 3, s
        real = [r for r in rows if r["kind"] == "noise" and r["split"] == s
                and r["engine"] != "babble"]
        assert real, s


def test_clean_durations(rows):
    for r in rows:
        if r["kind"] == "clean":
            assert 1.5 <= r["duration_s"] <= 4.5, r["path"]


def test_total_size():
    total = sum(p.stat().st_size for p in demo.DEMO_DIR.rglob("*"))
    assert total <= MAX_BYTES, total


def test_attribution_lists_every_noise_clip(rows):
    text = (demo.DEMO_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for r in rows:
        if r["engine"] == "opensfx":
            assert r["path"] in text


def test_paths_api():
    p = demo.paths("noise", "train")
    assert p == sorted(p) and all(Path(x).is_absolute() for x in p)
    with pytest.raises(ValueError, match="kind"):
        demo.paths("speech", "train")
    with pytest.raises(ValueError, match="split"):
        demo.paths("clean", "dev")
