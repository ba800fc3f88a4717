"""Build a real-human-speech training corpus from Debian 12 game/data packages.

One command (as root; installs the Debian packages with apt, then extracts,
resamples to 16 kHz mono 16-bit FLAC, trims leading/trailing silence, drops
clips shorter than 0.5 s and splits train/valid/test by speaker or noise
recording)::

    python experiments/build_speech_corpus.py                  # -> data/speech_corpus
    python experiments/build_speech_corpus.py --out /tmp/sc    # elsewhere
    python experiments/build_speech_corpus.py --no-install     # packages already there
    python experiments/build_speech_corpus.py --no-install --out /tmp/sc2 \
        --debs data/speech_corpus/.debs --manifest-copy ''     # rebuild check

Requirements
------------
Debian packages (installed by the script unless ``--no-install``)::

    apt-get install -y --no-install-recommends sox libsox-fmt-base \
        fillets-ng-data-cs fillets-ng-data-nl ktuberling-data hedgewars-data \
        warzone2100-data wesnoth-1.16-data sonic-pi-samples

``openarena-data`` is fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into ``<out>/.debs`` instead of being installed: its
``Depends`` would pull in six more OpenArena packages (player voices, maps),
whose audio is kept out of this corpus.  PyPI: numpy, soundfile (the jaxse
venv has both).

Sources (these and no others; see experiments/SPEECH_CORPUS.md)
----------------------------------------------------------------
speech: fillets-ng-data-cs, fillets-ng-data-nl (voice actors; speaker =
character code in the file name), ktuberling-data (speaker = language
folder), hedgewars-data (speaker = voice pack; "Robot" left out),
warzone2100-data (radio clips inside base.wz; narrowband).
noise: openarena-data (sound/world of pak0.pk3), wesnoth-1.16-data (ambient
sounds), sonic-pi-samples (noise-like CC0 samples), and the OpenSFX clips of
the demo corpus (jaxse/data/demo/noise, split kept as in the demo corpus).

Identical audio files (same bytes) are kept once, and speakers that share
an identical file are merged into one speaker (e.g. Hedgewars "Classic" and
"Default" share 20 files), so that the same recording never lands in two
splits.  Splits are assigned by :func:`assign_splits` (pure, seeded).

Output (``--out``, default ``data/speech_corpus``)::

    clean/<split>/<source>/<speaker>/<file>.flac
    noise/<split>/<source>/<file>.flac
    manifest.csv
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_corpus import SR, hf_fraction, sox_to_16k, trim_silence, write_flac

SEED = 20261201
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "data" / "speech_corpus"
MANIFEST_COPY = ROOT / "experiments" / "speech_corpus_manifest.csv"
DEMO = ROOT / "jaxse" / "data" / "demo"
MIN_SECONDS = 0.5
SPLITS = ("train", "valid", "test")
FRACTIONS = (0.8, 0.1, 0.1)
# A speaker/recording holding more than this share of its source's seconds is
# kept in train (unless no smaller one exists), so that held-out splits are
# made of whole speakers without emptying train (fillets: the two fish hold
# ~90 % of the dialog).
MAX_HELDOUT_SHARE = 0.2
# Narrowband: < 0.2 % of a speaker's energy above 4 kHz (as in the demo corpus).
NARROWBAND_HF = 0.002
WORKERS = 2

APT_PACKAGES = ["sox", "libsox-fmt-base", "fillets-ng-data-cs", "fillets-ng-data-nl",
                "ktuberling-data", "hedgewars-data", "warzone2100-data",
                "wesnoth-1.16-data", "sonic-pi-samples"]
EXTRACT_PACKAGES = ["openarena-data"]

FILLETS = Path("/usr/share/games/fillets-ng/sound")
KTUBERLING = Path("/usr/share/ktuberling/sounds")
HEDGEWARS = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
WARZONE_WZ = Path("/usr/share/games/warzone2100/base.wz")
WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/sounds")
SONIC_PI = Path("/usr/share/sonic-pi/samples")
OPENARENA_PK3 = Path("usr/share/games/openarena/baseoa/pak0.pk3")  # inside the unpacked .deb

LICENCE = {
    "fillets-ng-cs": "GPL-2.0-only", "fillets-ng-nl": "GPL-2.0-only",
    "ktuberling": "GPL-2.0-or-later", "hedgewars": "GFDL-1.3",
    "warzone2100": "GPL-2.0-or-later", "openarena": "GPL-2.0-or-later",
    "wesnoth": "GPL-2.0-or-later", "sonic-pi": "CC0-1.0",
}
PACKAGE = {
    "fillets-ng-cs": "fillets-ng-data-cs", "fillets-ng-nl": "fillets-ng-data-nl",
    "ktuberling": "ktuberling-data", "hedgewars": "hedgewars-data",
    "warzone2100": "warzone2100-data", "openarena": "openarena-data",
    "wesnoth": "wesnoth-1.16-data", "sonic-pi": "sonic-pi-samples",
    "opensfx": "openttd-opensfx (via jaxse/data/demo)",
}

# Hedgewars: "Robot" is a processed (vocoded) voice.
HEDGEWARS_LEFT_OUT = {"Robot"}
HEDGEWARS_LANGUAGE = {"Default_es": "es", "Default_pl": "pl", "Russian_pl": "pl",
                      "Default_ru": "ru"}
# Warzone 2100 (base.wz): folders -> speaker.  The numbered "pcv" announcer
# messages and the countdown/colony/proximity/multiplayer/extra folders are
# taken to be one announcer voice (one speaker, so no split can separate it);
# audio/nexus is the processed NEXUS AI voice and is left out, as are
# audio/sfx and audio/radclick (no speech).
WARZONE_SPEAKER = {
    "audio/coltive": "announcer", "audio/countdown": "announcer",
    "audio/extra": "announcer", "audio/multi": "announcer",
    "audio/proxmessages": "announcer", "audio/memressp": "announcer",
    "audio/memressp/cmndrvoc": "commander", "audio/tutorial": "tutorial",
    "audio/trnsppil": "transport-pilot", "audio/vtoltalk": "vtol-pilot",
    "audio/taunts/taunt1": "taunt1", "audio/taunts/taunt2": "taunt2",
    "audio/taunts/taunt3": "taunt3", "sequenceaudio": "narrator",
}
WARZONE_LEFT_OUT = ("audio/nexus", "audio/sfx", "audio/radclick")
# OpenArena sound/world: everything except creature growls and moans (voice-like).
OPENARENA_LEFT_OUT = re.compile(r"(growl|moan)\d*\.wav$")
# Wesnoth ambience: core/sounds/ambient (minus the musical war drums) and two
# noise-like effects.
WESNOTH_KEEP = ["ambient/birds1.ogg", "ambient/birds2.ogg", "ambient/birds3.ogg",
                "ambient/campfire.ogg", "ambient/morning.ogg", "ambient/night.ogg",
                "ambient/ship.ogg", "fire.wav", "rumble.ogg"]
# Sonic Pi: noise-like / ambient samples only (no pitched drones, instruments,
# beats, choirs, phones or robot voices).
SONIC_PI_KEEP = ["ambi_dark_woosh", "ambi_glass_rub", "ambi_lunar_land", "ambi_sauna",
                 "ambi_soft_buzz", "ambi_swoosh", "loop_3d_printer", "misc_cineboom",
                 "misc_crow", "perc_door", "perc_impact1", "perc_impact2", "perc_swash",
                 "perc_swoosh", "perc_till", "vinyl_backspin", "vinyl_hiss",
                 "vinyl_rewind", "vinyl_scratch"]

FIELDS = ["path", "kind", "split", "source", "speaker", "language", "band", "seconds",
          "original_rate", "licence", "package", "original"]


# --------------------------------------------------------------------------
# Pure parts: split assignment, manifest I/O (tested in tests/data/)
# --------------------------------------------------------------------------
def group_key(r: Mapping) -> tuple[str, str, str]:
    """Unit that is never split: (kind, source, speaker or recording id)."""
    return (str(r["kind"]), str(r["source"]), str(r["speaker"]))


def _held_out_counts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """(n_valid, n_test) speakers for n speakers: ~fractions, >= 1 each when n >= 3,
    train keeps at least one; n == 2 gives train + test, n == 1 train only."""
    if n <= 1:
        return 0, 0
    if n == 2:
        return 0, 1
    nv = max(1, round(fractions[1] * n))
    nt = max(1, round(fractions[2] * n))
    while nv + nt > n - 1:
        if nv >= nt:
            nv -= 1
        else:
            nt -= 1
    return nv, nt


def assign_splits(records: Iterable[Mapping], seed: int = SEED,
                  fractions: Sequence[float] = FRACTIONS,
                  max_heldout_share: float = MAX_HELDOUT_SHARE) -> list[dict]:
    """Copies of ``records`` with ``split`` set, by whole (kind, source, speaker) groups.

    Records need ``kind``, ``source``, ``speaker`` and ``seconds``.  Per
    (kind, source), about ``fractions`` (train, valid, test) of the groups
    (counted in groups, not hours) are drawn for each split with
    ``numpy.random.default_rng([seed, crc32(kind/source)])``; every split gets
    at least one group when the source has three or more.  Groups with more
    than ``max_heldout_share`` of the source's seconds are only held out when
    there are not enough smaller ones.  A record that already carries a
    non-empty ``split`` fixes its whole group to it (all its records must
    agree).  The result depends only on the records' content, not their order.
    """
    rows = [dict(r) for r in records]
    fixed: dict[tuple, str] = {}
    for r in rows:
        s = r.get("split") or ""
        if s:
            if s not in SPLITS:
                raise ValueError(f"unknown split {s!r} in {r}")
            k = group_key(r)
            if fixed.setdefault(k, s) != s:
                raise ValueError(f"group {k} is preassigned to two splits")
    secs: dict[tuple, float] = {}
    for r in rows:
        k = group_key(r)
        secs[k] = secs.get(k, 0.0) + float(r["seconds"])
    split_of = dict(fixed)
    by_source: dict[tuple[str, str], list[tuple]] = {}
    for k in sorted(secs):
        if k not in fixed:
            by_source.setdefault(k[:2], []).append(k)
    for (kind, source), groups in sorted(by_source.items()):
        total = sum(secs[g] for g in groups) or 1.0
        rng = np.random.default_rng([seed, zlib.crc32(f"{kind}/{source}".encode())])
        order = [groups[i] for i in rng.permutation(len(groups))]
        small = [g for g in order if secs[g] / total <= max_heldout_share]
        large = [g for g in order if secs[g] / total > max_heldout_share]
        cand = small + large
        nv, nt = _held_out_counts(len(groups), fractions)
        for g in groups:
            split_of[g] = "train"
        for g in cand[:nt]:
            split_of[g] = "test"
        for g in cand[nt: nt + nv]:
            split_of[g] = "valid"
    for r in rows:
        r["split"] = split_of[group_key(r)]
    return rows


def merge_shared(items: Sequence[Mapping]) -> list[dict]:
    """Drop byte-identical duplicates (key ``sha256``; first by ``original`` kept) and
    merge the speakers/recordings of a source that share an identical file
    (union-find; merged name = the sorted names joined by ``+``)."""
    items = sorted((dict(i) for i in items), key=lambda i: (i["kind"], i["source"], i["original"]))
    parent: dict[tuple, tuple] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    first: dict[tuple, tuple] = {}
    keep = []
    for it in items:
        g = group_key(it)
        find(g)
        h = (it["kind"], it["source"], it["sha256"])
        if h in first:
            a, b = find(first[h]), find(g)
            if a != b:
                parent[max(a, b)] = min(a, b)
            continue
        first[h] = g
        keep.append(it)
    members: dict[tuple, list[str]] = {}
    for g in list(parent):
        members.setdefault(find(g), []).append(g[2])
    name = {root: "+".join(sorted(set(m))) for root, m in members.items()}
    for it in keep:
        it["speaker"] = name[find(group_key(it))]
    return keep


def write_manifest(path: Path, rows: Iterable[Mapping]) -> None:
    rows = sorted(rows, key=lambda r: r["path"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "seconds": f"{float(r['seconds']):.3f}",
                    "original_rate": int(r["original_rate"])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seconds"] = float(r["seconds"])
        r["original_rate"] = int(r["original_rate"])
    return rows


def check_corpus(out: Path, rows: Sequence[Mapping], tol: float = 0.002) -> list[str]:
    """Problems found: missing files, wrong rate/channels, durations off, clips
    shorter than MIN_SECONDS, speakers/recordings in two splits, files on disk
    that the manifest does not list."""
    problems = []
    seen: dict[tuple, str] = {}
    for r in rows:
        p = out / r["path"]
        if not p.is_file():
            problems.append(f"missing {r['path']}")
            continue
        info = sf.info(str(p))
        if info.samplerate != SR or info.channels != 1:
            problems.append(f"{r['path']}: {info.samplerate} Hz, {info.channels} ch")
        if abs(info.frames / SR - float(r["seconds"])) > tol:
            problems.append(f"{r['path']}: {info.frames / SR:.3f} s, manifest {r['seconds']}")
        if float(r["seconds"]) < MIN_SECONDS:
            problems.append(f"{r['path']}: shorter than {MIN_SECONDS} s")
        parts = Path(r["path"]).parts
        if parts[0] != {"speech": "clean", "noise": "noise"}[r["kind"]] or parts[1] != r["split"]:
            problems.append(f"{r['path']}: folder does not match kind/split")
        if seen.setdefault(group_key(r), r["split"]) != r["split"]:
            problems.append(f"{group_key(r)} in two splits")
    listed = {r["path"] for r in rows}
    for sub in ("clean", "noise"):
        for p in sorted((out / sub).rglob("*.flac")) if (out / sub).is_dir() else []:
            rel = p.relative_to(out).as_posix()
            if rel not in listed:
                problems.append(f"unlisted {rel}")
    return problems


def summary(rows: Sequence[Mapping]) -> list[dict]:
    """Per (kind, source, split): files, groups, hours."""
    acc: dict[tuple, dict] = {}
    for r in rows:
        k = (r["kind"], r["source"], r["split"])
        a = acc.setdefault(k, {"kind": k[0], "source": k[1], "split": k[2], "files": 0,
                               "groups": set(), "seconds": 0.0})
        a["files"] += 1
        a["groups"].add(r["speaker"])
        a["seconds"] += float(r["seconds"])
    return [{**a, "groups": len(a["groups"])} for _, a in sorted(acc.items())]


# --------------------------------------------------------------------------
# Package installation and listing
# --------------------------------------------------------------------------
def install(debs: Path) -> Path:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
                   check=True, env=env)
    return extract_debs(debs, download=True)


def extract_debs(root: Path, download: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for pkg in EXTRACT_PACKAGES:
        tree = root / pkg
        if tree.is_dir():
            continue
        debs = sorted(root.glob(f"{pkg}_*.deb"))
        if not debs:
            if not download:
                raise SystemExit(f"{pkg}: no .deb in {root}; run without --no-install")
            subprocess.run(["apt-get", "download", pkg], check=True, cwd=root)
            debs = sorted(root.glob(f"{pkg}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], check=True)
    return root


def _item(kind, source, speaker, language, original, spec, name, band="wideband", licence=None):
    return {"kind": kind, "source": source, "speaker": speaker, "language": language, "band": band,
                "licence": licence or LICENCE[source], "package": PACKAGE[source],
                "original": original, "spec": spec, "name": name}


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._+-]+", "-", s).strip("-")


def fillets_speaker(level: str, stem: str) -> str:
    """Character of a Fish Fillets dialog file ``sound/<level>/<lang>/<stem>.ogg``.

    Names are ``<prefix>-<code>-<word>``, ``<code>-<word>``, ``<word>-<code>``
    or ``<word>``; ``m``/``v`` are the small/big fish in every level (also
    ``share/border`` ``sp-shout_small``/``_big``); other codes are level
    characters, named ``<level>.<code>`` (``<level>.<first token>`` for
    two-token names, ``<level>`` for one-token names)."""
    t = stem.split("-")
    if level == "share/border":
        return "v" if "big" in stem else "m" if "small" in stem else "share-border"
    for code in ("m", "v"):
        if code in t:
            return code
    if len(t) >= 3:
        return f"{level}.{t[1]}"
    if len(t) == 2:
        return f"{level}.{t[0]}"
    return level


def list_fillets(lang: str) -> list[dict]:
    out = []
    for p in sorted(FILLETS.rglob(f"{lang}/*.ogg")):
        rel = p.relative_to(FILLETS)
        level = rel.parent.parent.as_posix()
        spk = fillets_speaker(level, p.stem)
        lang_name = {"cs": "cs", "nl": "nl"}[lang]
        out.append(_item("speech", f"fillets-ng-{lang}", spk, lang_name, str(p), ("file", str(p)),
                         f"{_slug(level)}_{_slug(p.stem)}"))
    return out


def list_ktuberling() -> list[dict]:
    out = []
    for d in sorted(p for p in KTUBERLING.iterdir() if p.is_dir()):
        lang = d.name
        for p in sorted(q for q in d.iterdir() if q.suffix in (".ogg", ".wav", ".opus")):
            out.append(_item("speech", "ktuberling", lang, lang.split("@")[0], str(p),
                             ("file", str(p)), _slug(f"{lang}_{p.stem}")))
    return out


def list_hedgewars() -> list[dict]:
    out = []
    for d in sorted(p for p in HEDGEWARS.iterdir() if p.is_dir()):
        if d.name in HEDGEWARS_LEFT_OUT:
            continue
        for p in sorted(d.glob("*.ogg")):
            out.append(_item("speech", "hedgewars", d.name, HEDGEWARS_LANGUAGE.get(d.name, "en"),
                             str(p), ("file", str(p)), _slug(f"{d.name}_{p.stem}")))
    return out


def list_warzone() -> list[dict]:
    out = []
    with zipfile.ZipFile(WARZONE_WZ) as z:
        for n in sorted(z.namelist()):
            if not n.lower().endswith((".ogg", ".wav")) or n.startswith(WARZONE_LEFT_OUT):
                continue
            folder = n.rsplit("/", 1)[0]
            spk = WARZONE_SPEAKER.get(folder)
            if spk is None and folder.startswith("audio/memressp/"):
                spk = WARZONE_SPEAKER["audio/memressp"]
            if spk is None:
                raise ValueError(f"warzone2100: no speaker for {n}")
            out.append(_item("speech", "warzone2100", spk, "en", f"{WARZONE_WZ}:{n}",
                             ("zip", str(WARZONE_WZ), n),
                             _slug(n.replace("audio/", "").rsplit(".", 1)[0].replace("/", "_")),
                             band="narrowband"))
    return out


def recording_id(stem: str) -> str:
    """Noise recording id: file stem without trailing digits/underscores
    (``fire1``/``fire2`` -> ``fire``; cut or looped parts stay one recording)."""
    return re.sub(r"[\d_]+$", "", stem) or stem


def list_openarena(debs: Path) -> list[dict]:
    pk3 = debs / "openarena-data" / OPENARENA_PK3
    out = []
    with zipfile.ZipFile(pk3) as z:
        for n in sorted(z.namelist()):
            if not (n.startswith("sound/world/") and n.lower().endswith(".wav")):
                continue
            if OPENARENA_LEFT_OUT.search(n):
                continue
            stem = n.rsplit("/", 1)[1].rsplit(".", 1)[0]
            out.append(_item("noise", "openarena", recording_id(stem), "", f"{pk3.name}:{n}",
                             ("zip", str(pk3), n), _slug(stem)))
    return out


def list_wesnoth() -> list[dict]:
    out = []
    for rel in WESNOTH_KEEP:
        p = WESNOTH / rel
        out.append(_item("noise", "wesnoth", recording_id(p.stem), "", str(p), ("file", str(p)),
                         _slug(p.stem)))
    return out


def sonic_pi_licences() -> dict[str, str]:
    """Per-sample licence from /usr/share/doc/sonic-pi-samples/copyright."""
    lic, files = {}, []
    for line in Path("/usr/share/doc/sonic-pi-samples/copyright").read_text().splitlines():
        if line.startswith("Files:"):
            files = line.split()[1:]
        elif line.startswith("License:"):
            for f in files:
                lic["*" if f == "*" else Path(f).stem] = line.split(None, 1)[1].strip()
            files = []
    return lic


def list_sonic_pi() -> list[dict]:
    lic = sonic_pi_licences()
    out = []
    for stem in SONIC_PI_KEEP:
        p = SONIC_PI / f"{stem}.flac"
        # samples without their own stanza fall under the package's "Files: *" (MIT)
        got = lic.get(stem, lic["*"])
        name = {"CC0": "CC0-1.0", "MIT": "MIT"}.get(got, got)
        out.append(_item("noise", "sonic-pi", stem, "", str(p), ("file", str(p)), stem,
                         licence=name))
    return out


def list_opensfx() -> list[dict]:
    """The demo corpus's OpenSFX noise clips, copied as they are (already 16 kHz,
    trimmed); recording = the demo manifest's source, split kept."""
    out = []
    with open(DEMO / "manifest.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["engine"] != "opensfx":
                continue
            p = DEMO / r["path"]
            it = _item("noise", "opensfx", r["source"].replace(":", "-"), "",
                       f"jaxse/data/demo/{r['path']}", ("copy", str(p)), p.stem,
                       licence=r["licence"])
            it["split"] = r["split"]
            out.append(it)
    return out


def read_bytes(spec: tuple) -> bytes:
    if spec[0] == "zip":
        with zipfile.ZipFile(spec[1]) as z:
            return z.read(spec[2])
    return Path(spec[1]).read_bytes()


# --------------------------------------------------------------------------
# Audio processing (2 processes)
# --------------------------------------------------------------------------
def process(job: tuple[dict, str]) -> dict:
    """Decode, 16 kHz mono (sox VHQ), peak -3 dBFS, trim, 16-bit FLAC at ``dst``."""
    it, dst = job
    raw = read_bytes(it["spec"])
    with tempfile.TemporaryDirectory() as td:
        ext = Path(it["spec"][-1]).suffix.lower() or ".ogg"
        src = Path(td) / f"in{ext}"
        src.write_bytes(raw)
        # libsndfile decodes every input here (wav, ogg vorbis, ogg opus, flac);
        # sox then does downmix, VHQ resampling and peak normalisation
        x, sr = sf.read(str(src), dtype="float32", always_2d=True)
        info = sf.info(str(src))
        if it["spec"][0] == "copy":
            assert sr == SR and x.shape[1] == 1
            x = x[:, 0].astype(np.float64)
        else:
            wav = Path(td) / "in_f32.wav"
            sf.write(str(wav), x, sr, subtype="FLOAT")
            x = sox_to_16k(wav, Path(td) / "f32.wav")
            if it["kind"] == "speech":
                x = trim_silence(x)
            else:
                x = trim_silence(x, -50.0, 0.02)
    res = {"seconds": len(x) / SR, "original_rate": int(info.samplerate), "hf": 0.0, "tot": 0.0}
    if res["seconds"] < MIN_SECONDS:
        return res
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    write_flac(Path(dst), pcm)
    res["hf"], res["tot"] = hf_fraction(pcm)
    return res


def out_path(it: Mapping) -> str:
    if it["kind"] == "speech":
        return f"clean/{it['split']}/{it['source']}/{_slug(it['speaker'])}/{it['name']}.flac"
    rec, name = _slug(it["speaker"]), it["name"]
    return f"noise/{it['split']}/{it['source']}/{name if name == rec else rec + '_' + name}.flac"


def build(out: Path, debs: Path, workers: int = WORKERS) -> list[dict]:
    items = (list_fillets("cs") + list_fillets("nl") + list_ktuberling() + list_hedgewars()
             + list_warzone() + list_openarena(debs) + list_wesnoth() + list_sonic_pi()
             + list_opensfx())
    for it in items:
        it["sha256"] = hashlib.sha256(read_bytes(it["spec"])).hexdigest()
    n_all = len(items)
    items = merge_shared(items)
    print(f"{n_all} files listed, {len(items)} after dropping identical copies", file=sys.stderr)
    stage = out / ".stage"
    if stage.exists():
        shutil.rmtree(stage)
    jobs = [(it, str(stage / f"{i:05d}.flac")) for i, it in enumerate(items)]
    with Pool(workers) as pool:
        results = pool.map(process, jobs, chunksize=8)
    kept, dropped = [], {}
    for (it, st), res in zip(jobs, results):
        if res["seconds"] < MIN_SECONDS:
            dropped[it["source"]] = dropped.get(it["source"], 0) + 1
            continue
        kept.append({**it, **res, "stage": st})
    print(f"dropped as shorter than {MIN_SECONDS} s after trimming: {dropped}", file=sys.stderr)
    # speaker bandwidth from the measured spectrum (warzone2100 is narrowband anyway)
    hf: dict[tuple, list[float]] = {}
    for r in kept:
        a = hf.setdefault(group_key(r), [0.0, 0.0])
        a[0] += r["hf"]
        a[1] += r["tot"]
    for r in kept:
        a = hf[group_key(r)]
        if r["kind"] == "speech" and a[0] / max(a[1], 1e-30) < NARROWBAND_HF:
            r["band"] = "narrowband"
    rows = assign_splits(kept, SEED)
    for r in rows:
        r["path"] = out_path(r)
    dup = [p for p, n in Counter(r["path"] for r in rows).items() if n > 1]
    if dup:
        raise RuntimeError(f"{len(dup)} output paths used twice, e.g. {dup[:3]}")
    for r in rows:
        dst = out / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(r["stage"], dst)
    shutil.rmtree(stage)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-install", action="store_true",
                    help="do not run apt (packages installed, openarena .deb in <out>/.debs)")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--debs", type=Path, default=None,
                    help="folder for the downloaded/unpacked openarena-data .deb (default <out>/.debs)")
    ap.add_argument("--manifest-copy", default=str(MANIFEST_COPY),
                    help="second copy of manifest.csv ('' for none; default the committed one)")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    debs = (args.debs or out / ".debs").resolve()
    debs = extract_debs(debs, download=False) if args.no_install else install(debs)
    for sub in ("clean", "noise"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    rows = build(out, debs, max(1, min(args.workers, 2)))
    write_manifest(out / "manifest.csv", rows)
    if args.manifest_copy:
        write_manifest(Path(args.manifest_copy), rows)
    problems = check_corpus(out, read_manifest(out / "manifest.csv"))
    for s in summary(rows):
        print(f"{s['kind']:6s} {s['source']:14s} {s['split']:5s} {s['files']:5d} files "
              f"{s['groups']:3d} speakers/recordings {s['seconds'] / 3600:7.3f} h", file=sys.stderr)
    for split in SPLITS:
        for kind in ("speech", "noise"):
            h = sum(r["seconds"] for r in rows if r["split"] == split and r["kind"] == kind) / 3600
            print(f"total {split:5s} {kind:6s} {h:.3f} h", file=sys.stderr)
    for p in problems[:20]:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
