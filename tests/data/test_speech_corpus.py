"""Split logic and manifest I/O of experiments/build_speech_corpus.py (no apt, no packages)."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "build_speech_corpus", ROOT / "experiments" / "build_speech_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bsc = _load()


def _records():
    recs = []
    # a source with many speakers of unequal size
    for s in range(12):
        for k in range(3 + s % 4):
            recs.append({"kind": "speech", "source": "many", "speaker": f"s{s:02d}", "seconds": 1.0 + k})
    # two dominant speakers + small ones (fillets-like)
    for k in range(40):
        recs.append({"kind": "speech", "source": "fish", "speaker": "m", "seconds": 2.0})
        recs.append({"kind": "speech", "source": "fish", "speaker": "v", "seconds": 2.0})
    for s in "abcde":
        recs.append({"kind": "speech", "source": "fish", "speaker": s, "seconds": 1.5})
    # few speakers
    recs += [{"kind": "speech", "source": "three", "speaker": s, "seconds": 1.0} for s in "xyz"]
    recs += [{"kind": "speech", "source": "two", "speaker": s, "seconds": 1.0} for s in "pq"]
    recs += [{"kind": "speech", "source": "one", "speaker": "solo", "seconds": 1.0}]
    # noise: cut/looped recordings share an id
    for rid in ("wind", "fire", "rain", "hum", "fan", "drip"):
        recs += [{"kind": "noise", "source": "amb", "speaker": rid, "seconds": 3.0} for _ in range(2)]
    # preassigned (demo OpenSFX splits are kept)
    recs += [{"kind": "noise", "source": "pre", "speaker": "r1", "seconds": 1.0, "split": "test"},
             {"kind": "noise", "source": "pre", "speaker": "r2", "seconds": 1.0, "split": "train"}]
    return recs


def _split_sets(rows):
    out = {}
    for r in rows:
        out.setdefault(bsc.group_key(r), set()).add(r["split"])
    return out


def test_groups_never_cross_splits():
    rows = bsc.assign_splits(_records(), seed=1)
    assert all(len(s) == 1 for s in _split_sets(rows).values())
    assert {r["split"] for r in rows} <= set(bsc.SPLITS)


def test_every_split_non_empty_when_possible():
    rows = bsc.assign_splits(_records(), seed=3)
    per = {}
    for r in rows:
        per.setdefault((r["kind"], r["source"]), set()).add(r["split"])
    for src in ("many", "fish", "three", "amb"):
        assert per[next(k for k in per if k[1] == src)] == {"train", "valid", "test"}, src
    assert per[("speech", "two")] == {"train", "test"}
    assert per[("speech", "one")] == {"train"}


def test_proportions_and_dominant_speakers_stay_in_train():
    rows = bsc.assign_splits(_records(), seed=5)
    many = {r["speaker"]: r["split"] for r in rows if r["source"] == "many"}
    counts = {s: sum(v == s for v in many.values()) for s in bsc.SPLITS}
    assert counts == {"train": 10, "valid": 1, "test": 1}
    fish = {r["speaker"]: r["split"] for r in rows if r["source"] == "fish"}
    assert fish["m"] == fish["v"] == "train"  # each > MAX_HELDOUT_SHARE of the source


def test_preassigned_split_is_kept():
    rows = bsc.assign_splits(_records(), seed=2)
    pre = {r["speaker"]: r["split"] for r in rows if r["source"] == "pre"}
    assert pre == {"r1": "test", "r2": "train"}
    bad = [{"kind": "noise", "source": "pre", "speaker": "r", "seconds": 1, "split": "test"},
           {"kind": "noise", "source": "pre", "speaker": "r", "seconds": 1, "split": "train"}]
    with pytest.raises(ValueError):
        bsc.assign_splits(bad)


def test_deterministic_and_order_independent():
    recs = _records()
    a = bsc.assign_splits(recs, seed=7)
    shuffled = list(recs)
    random.Random(0).shuffle(shuffled)
    b = bsc.assign_splits(shuffled, seed=7)
    key = lambda rows: sorted((bsc.group_key(r), r["split"]) for r in rows)
    assert key(a) == key(b)
    assert key(a) == key(bsc.assign_splits(recs, seed=7))
    # another seed changes the draw somewhere
    assert any(key(bsc.assign_splits(recs, seed=s)) != key(a) for s in range(8, 12))


def test_merge_shared_drops_copies_and_merges_speakers():
    items = [{"kind": "speech", "source": "hw", "speaker": "Default", "original": "a/1", "sha256": "h1"},
             {"kind": "speech", "source": "hw", "speaker": "Classic", "original": "b/1", "sha256": "h1"},
             {"kind": "speech", "source": "hw", "speaker": "Classic", "original": "b/2", "sha256": "h2"},
             {"kind": "speech", "source": "hw", "speaker": "Pirate", "original": "c/1", "sha256": "h3"},
             {"kind": "speech", "source": "other", "speaker": "Pirate", "original": "d/1", "sha256": "h3"}]
    out = bsc.merge_shared(items)
    assert len(out) == 4
    spk = {(i["source"], i["original"]): i["speaker"] for i in out}
    assert spk[("hw", "a/1")] == spk[("hw", "b/2")] == "Classic+Default"
    assert spk[("hw", "c/1")] == "Pirate" and spk[("other", "d/1")] == "Pirate"


def test_fillets_speaker_names():
    f = bsc.fillets_speaker
    assert f("airplane", "let-m-divna") == "m"
    assert f("fdto", "hybeme-v") == "v"
    assert f("hanoi", "m-bude") == "m"
    assert f("share/border", "sp-shout_big_03") == "v"
    assert f("cabin1", "k1-pap-kruci") == "cabin1.pap"
    assert f("gods", "b1-10") == "gods.b1"
    assert f("briefcase", "help12") == "briefcase"


def test_recording_id():
    assert bsc.recording_id("fire1") == bsc.recording_id("fire2") == "fire"
    assert bsc.recording_id("1shot_greg_03") == "1shot_greg"
    assert bsc.recording_id("vinyl_hiss") == "vinyl_hiss"


def test_manifest_round_trip_and_check(tmp_path):
    rows = bsc.assign_splits(_records(), seed=4)
    rng = np.random.default_rng(0)
    tiny = [r for r in rows if r["source"] in ("three", "amb")]
    for i, r in enumerate(tiny):
        r.update(language="xx", band="wideband", original_rate=22050, licence="CC0-1.0",
                 package="pkg", original=f"orig/{i}", name=f"f{i:03d}")
        r["seconds"] = 0.5 + 0.01 * i
        r["path"] = bsc.out_path(r)
        p = tmp_path / r["path"]
        p.parent.mkdir(parents=True, exist_ok=True)
        pcm = (rng.standard_normal(round(r["seconds"] * bsc.SR)) * 3000).astype(np.int16)
        sf.write(str(p), pcm, bsc.SR, format="FLAC", subtype="PCM_16")
    bsc.write_manifest(tmp_path / "manifest.csv", tiny)
    back = bsc.read_manifest(tmp_path / "manifest.csv")
    assert list(back[0]) == bsc.FIELDS
    want = sorted(({k: r[k] for k in bsc.FIELDS} for r in tiny), key=lambda r: r["path"])
    for a, b in zip(back, want):
        assert a == {**b, "seconds": pytest.approx(b["seconds"], abs=5e-4)}
    assert bsc.check_corpus(tmp_path, back) == []
    # a file on disk that the manifest does not list, and a wrong duration, are reported
    sf.write(str(tmp_path / "noise/train/amb/stray.flac"), np.zeros(16000, np.int16), bsc.SR)
    back[0]["seconds"] += 0.1
    problems = bsc.check_corpus(tmp_path, back)
    assert any("unlisted" in p for p in problems) and any("manifest" in p for p in problems)
