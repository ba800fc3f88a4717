"""Corpus index (caching, invalidation, bad files) and segment reads; O(1) resume of every streaming kind."""
import os

import numpy as np
import pytest
import soundfile as sf

from jaxse.data import index
from jaxse.data.pipeline import DataWarning, batches
from jaxse.io.audio import AudioError, read_audio
from tests.data.test_pipeline import demo_corpus_or_fail

SR = 16000


def _tone(rng, n, channels=1):
    t = np.arange(n) / SR
    x = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)[:, None] + 0.02 * rng.standard_normal((n, channels))
    return x.astype(np.float32) if channels > 1 else x[:, 0].astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "corpus"
    d.mkdir()
    for i, (sr, ext, ch) in enumerate([(16000, "wav", 1), (16000, "flac", 1), (48000, "flac", 2), (44100, "wav", 1),
                                       (22050, "flac", 1), (8000, "wav", 2)]):
        sf.write(d / f"f{i}.{ext}", _tone(rng, int(sr * rng.uniform(0.6, 1.4)), ch), sr)
    return d


def _files(d):
    return sorted(str(p) for p in d.iterdir() if p.is_file())


def test_index_cache_reused_and_invalidated(corpus, tmp_path):
    cache = str(tmp_path / "cache")
    files = _files(corpus)
    first, measured = index.index_files(str(corpus), files, cache_dir=cache)
    assert measured == len(files) and all(not e.error for e in first)
    assert [e.frames for e in first] == [sf.info(f).frames for f in files]
    again, measured = index.index_files(str(corpus), files, cache_dir=cache)
    assert measured == 0 and again == first
    # one file rewritten (new size and mtime): only that one is measured again, and its new length is seen
    sf.write(files[1], np.zeros(100, np.float32) + 0.1, 16000)
    st = os.stat(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed, measured = index.index_files(str(corpus), files, cache_dir=cache)
    assert measured == 1 and changed[1].frames == 100 and changed[0] == first[0]
    # a damaged cache file is only a re-measure
    (next((tmp_path / "cache").iterdir())).write_text("{not json")
    assert index.index_files(str(corpus), files, cache_dir=cache)[1] == len(files)


def test_bad_files_found_at_indexing(corpus, tmp_path):
    (corpus / "broken.wav").write_bytes(b"RIFF but not really" * 20)
    good = sf.read(corpus / "f1.flac")[0]
    sf.write(corpus / "nan.wav", np.where(np.arange(len(good)) == 500, np.nan, good).astype(np.float32), SR,
             subtype="FLOAT")
    entries, _ = index.index_files(str(corpus), _files(corpus), cache_dir=str(tmp_path / "c"))
    errs = {os.path.basename(e.path): e.error for e in entries if e.error}
    assert set(errs) == {"broken.wav", "nan.wav"} and "NaN" in errs["nan.wav"]
    cfg = dict(kind="mix", clean_dirs=[str(corpus)], noise_dirs=[], batch_size=2, segment_seconds=0.25,
               index_cache_dir=str(tmp_path / "c"))
    with pytest.raises(AudioError, match=r"broken\.wav"):
        batches(cfg, seed=0)
    with pytest.warns(DataWarning, match=r"skipped 2 .*broken\.wav.*nan\.wav"):
        next(batches(dict(cfg, skip_bad_files=True), seed=0))


def test_header_only_index_then_decode_from_the_cache(corpus, tmp_path):
    """``check="header"`` reads headers only (frames/rate/channels exact, RMS unknown, NaN data not seen); a later
    ``check="decode"`` over the same cache decodes those files and finds the bad one."""
    good = sf.read(corpus / "f1.flac")[0]
    sf.write(corpus / "nan.wav", np.where(np.arange(len(good)) == 500, np.nan, good).astype(np.float32), SR,
             subtype="FLOAT")
    (corpus / "broken.wav").write_bytes(b"RIFF but not really" * 20)
    cache, files = str(tmp_path / "c"), _files(corpus)
    head, measured = index.index_files(str(corpus), files, cache_dir=cache, check="header")
    assert measured == len(files)
    by_name = {os.path.basename(e.path): e for e in head}
    assert by_name["broken.wav"].error and not by_name["nan.wav"].error  # a bad header is still found
    for f, e in zip(files, head):
        if not e.error:
            info = sf.info(f)
            assert (e.frames, e.sample_rate, e.channels, e.rms) == (info.frames, info.samplerate, info.channels, -1)
    assert index.index_files(str(corpus), files, cache_dir=cache, check="header")[1] == 0  # cached
    full, measured = index.index_files(str(corpus), files, cache_dir=cache, check="decode")
    assert measured == len(files) - 1  # all but the file whose header already failed
    assert "NaN" in {os.path.basename(e.path): e.error for e in full}["nan.wav"]
    assert all(e.rms > 0 for e in full if not e.error)
    assert index.index_files(str(corpus), files, cache_dir=cache, check="header")[1] == 0  # decoded entries serve
    with pytest.raises(ValueError, match="index check"):
        index.index_files(str(corpus), files, cache_dir=None, check="fast")


def test_segment_reads_equal_full_reads(corpus, tmp_path):
    entries, _ = index.index_files(str(corpus), _files(corpus), cache_dir=None)
    for e in entries:
        full = read_audio(e.path, sample_rate=SR)
        assert index.target_length(e, SR) == full.shape[0], e
        for start in (0, 1, 3, 777, full.shape[0] // 2, full.shape[0] - 2000, full.shape[0] - 5):
            ref = np.zeros(3000, np.float32)
            part = full[start : start + 3000]
            ref[: part.shape[0]] = part
            np.testing.assert_allclose(index.read_segment(e, start, 3000, sample_rate=SR), ref, atol=1e-6,
                                       err_msg=f"{e.path} @ {start}")
        np.testing.assert_allclose(index.read_whole(e, sample_rate=SR), full, atol=1e-6)


# ------------------------------------------------------------------------------------ O(1) resume, every kind
def _resumes(cfg, steps=5, at=(1, 4)):
    run = [b for _, b in zip(range(steps), batches(cfg, seed=11))]
    for k in at:
        r = next(batches(cfg, seed=11, start_step=k))
        np.testing.assert_array_equal(r["noisy"], run[k]["noisy"])
        np.testing.assert_array_equal(r["clean"], run[k]["clean"])
    return run


def test_resume_paired_from_disk(corpus, tmp_path):
    for d in ("noisy", "clean"):
        (tmp_path / d).mkdir()
        for f in _files(corpus):
            os.link(f, tmp_path / d / os.path.basename(f))
    cfg = dict(kind="paired", batch_size=4, segment_seconds=0.25, train_noisy_dir=str(tmp_path / "noisy"),
               train_clean_dir=str(tmp_path / "clean"), test_noisy_dir=str(tmp_path / "noisy"),
               test_clean_dir=str(tmp_path / "clean"), index_cache_dir=str(tmp_path / "c"))
    run = _resumes(cfg)
    np.testing.assert_array_equal(run[0]["noisy"], run[0]["clean"])  # the same files, the same crops


def test_resume_mix_with_rirs_and_synthetic_rooms(corpus, tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "noise").mkdir()
    (tmp_path / "rir").mkdir()
    for i in range(2):
        sf.write(tmp_path / "noise" / f"n{i}.flac", (0.1 * rng.standard_normal(SR * (1 + 2 * i))).astype(np.float32), SR)
    h = np.zeros(1200, np.float32)
    h[30] = 1.0
    h[31:] = 0.2 * np.exp(-np.arange(1169) / 200) * rng.standard_normal(1169)
    sf.write(tmp_path / "rir" / "r.wav", h, SR, subtype="FLOAT")
    cfg = dict(kind="mix", batch_size=4, segment_seconds=0.5, clean_dirs=[str(corpus)],
               noise_dirs=[str(tmp_path / "noise")], rir_dirs=[str(tmp_path / "rir")], rir_prob=0.5,
               synthetic_rir_prob=0.3, rir_target="reverberant", synthetic_noise_prob=0.3,
               index_cache_dir=str(tmp_path / "c"))
    run = _resumes(cfg)
    for b in run:
        assert np.all(np.isfinite(b["noisy"])) and np.abs(b["noisy"]).max() <= 0.99 + 1e-6
    # 1 host x 4 rows == 2 hosts x 2 rows, read from disk
    parts = [next(batches(cfg, seed=11, process_index=i, process_count=2, start_step=3)) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["noisy"] for p in parts]), run[3]["noisy"])


def test_synthetic_rir_reverberates(corpus, tmp_path):
    base = dict(kind="mix", batch_size=4, segment_seconds=0.5, clean_dirs=[str(corpus)], noise_dirs=[],
                synthetic_noise=["white"], snr_range=[40, 40], index_cache_dir=str(tmp_path / "c"))
    dry = next(batches(base, seed=0))
    wet = next(batches(dict(base, synthetic_rir_prob=1.0, rir_target="reverberant"), seed=0))
    keep = next(batches(dict(base, synthetic_rir_prob=1.0, rir_target="dry"), seed=0))
    for d, w, k in zip(dry["clean"], wet["clean"], keep["clean"]):
        cos = np.dot(d, w) / np.linalg.norm(d) / np.linalg.norm(w)
        assert cos < 0.999  # the reverberant target is not the dry one
        cos_k = np.dot(d, k) / np.linalg.norm(d) / np.linalg.norm(k)
        assert cos_k > 0.9999  # rir_target=dry: the target is the dry crop (up to the level)
    assert not np.allclose(wet["noisy"], dry["noisy"])


def test_resume_demo():
    from jaxse.data import demo

    demo_corpus_or_fail(demo)
    _resumes(dict(kind="demo", batch_size=2, segment_seconds=0.5, index_cache_dir=None), steps=4, at=(3,))


def test_resume_tfds_dns_with_rirs(tmp_path):
    rng = np.random.default_rng(4)
    manual = tmp_path / "manual"
    for kind, count in (("clean", 12), ("noise", 4)):
        (manual / kind).mkdir(parents=True)
        for i in range(count):
            x = _tone(rng, int(SR * 0.6)) if kind == "clean" else (0.1 * rng.standard_normal(SR)).astype(np.float32)
            sf.write(manual / kind / f"{kind}{i}.wav", x, SR)
    (tmp_path / "rir").mkdir()
    h = np.zeros(400, np.float32)
    h[0], h[1:] = 1.0, 0.1 * rng.standard_normal(399)
    sf.write(tmp_path / "rir" / "r.wav", h, SR, subtype="FLOAT")
    cfg = dict(kind="tfds", name="dns_challenge", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual),
               batch_size=2, segment_seconds=0.25, eval_holdout_percent=10.0, eval_examples=4,
               rir_dirs=[str(tmp_path / "rir")], rir_prob=0.5, synthetic_rir_prob=0.25,
               index_cache_dir=str(tmp_path / "c"))
    _resumes(cfg)
    ev = list(batches(cfg, split="valid", seed=0))
    assert sum(e["noisy"].shape[0] for e in ev) == 4


def test_speed_perturbation_moves_pitch_in_training_only(tmp_path):
    """speed_prob=1 with a fixed factor: a 500 Hz tone is served at 500 * factor Hz in the training split, at 500 Hz
    in the valid split and with the option off; the crop keeps its length and level range."""
    (tmp_path / "clean").mkdir()
    t = np.arange(3 * SR) / SR
    for i in range(3):
        sf.write(tmp_path / "clean" / f"t{i}.wav", (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), SR)
    base = dict(kind="mix", batch_size=4, segment_seconds=0.5, clean_dirs=[str(tmp_path / "clean")],
                noise_dirs=[], synthetic_noise=["white"], snr_range=[40, 40], eval_examples=4,
                index_cache_dir=str(tmp_path / "c"))

    def peak_hz(batch):
        spec = np.abs(np.fft.rfft(batch["clean"], axis=-1))
        return np.fft.rfftfreq(batch["clean"].shape[-1], 1 / SR)[spec.argmax(-1)]

    np.testing.assert_allclose(peak_hz(next(batches(base, seed=0))), 500, atol=4)
    for factor in (1.3, 0.8):
        fast = dict(base, speed_prob=1.0, speed_range=[factor, factor])
        b = next(batches(fast, seed=0))
        assert b["clean"].shape == (4, SR // 2) and np.all(np.isfinite(b["noisy"]))
        np.testing.assert_allclose(peak_hz(b), 500 * factor, atol=4)
        np.testing.assert_allclose(peak_hz(next(batches(fast, split="valid", seed=0))), 500, atol=4)


def test_noise_speed_and_second_noise_in_training_only(tmp_path):
    """noise_speed_prob=1 with a fixed factor serves a 500 Hz noise tone at 500 * factor Hz; noise_add_prob=1 adds a
    second crop at noise_add_db below the first (two tones in one example), the sum still at the drawn SNR; valid
    mixtures are never perturbed, and with the options off the noise is the clip as it is."""
    t = np.arange(3 * SR) / SR
    for folder, hz in (("clean", [3000]), ("noise", [500, 1200])):
        (tmp_path / folder).mkdir()
        for f in hz:
            sf.write(tmp_path / folder / f"t{f}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), SR)
    base = dict(kind="mix", batch_size=8, segment_seconds=0.5, clean_dirs=[str(tmp_path / "clean")],
                noise_dirs=[str(tmp_path / "noise")], synthetic_noise=[], snr_range=[0, 0], eval_examples=8,
                index_cache_dir=str(tmp_path / "c"))
    freqs = np.fft.rfftfreq(SR // 2, 1 / SR)

    def noise_spectra(batch):
        return np.abs(np.fft.rfft(batch["noisy"] - batch["clean"], axis=-1))

    def tones(spec):  # frequencies (Hz) within 20 dB of the strongest below 2 kHz
        low = np.where(freqs < 2000, spec, 0)
        return {int(round(freqs[k])) for k in np.flatnonzero(low > 0.1 * low.max())}

    for cfg, want in ((base, {500, 1200}), (dict(base, noise_speed_prob=1.0, noise_speed_range=[1.3, 1.3]), {650, 1560})):
        for split in ("train", "valid"):
            b = next(batches(cfg, split=split, seed=0))
            got = set().union(*(tones(s) for s in noise_spectra(b)))
            expect = want if split == "train" else {500, 1200}
            assert all(min(abs(g - w) for w in expect) <= 6 for g in got) and got, (split, got)
    two = dict(base, noise_add_prob=1.0, noise_add_db=[-6.0, -6.0])
    b = next(batches(two, seed=0))
    both = 0
    for spec, x, c in zip(noise_spectra(b), b["noisy"], b["clean"]):
        np.testing.assert_allclose(np.std(x - c) / np.std(c), 1.0, rtol=0.05)  # the sum at 0 dB SNR
        a, z = spec[np.abs(freqs - 500) <= 6].max(), spec[np.abs(freqs - 1200) <= 6].max()
        if min(a, z) > 0.05 * max(a, z):  # both tones in this example: one 6 dB below the other
            both += 1
            np.testing.assert_allclose(abs(20 * np.log10(a / z)), 6.0, atol=1.0)
    assert both >= 1
    for spec in noise_spectra(next(batches(two, split="valid", seed=0))):
        a, z = spec[np.abs(freqs - 500) <= 6].max(), spec[np.abs(freqs - 1200) <= 6].max()
        assert min(a, z) < 0.05 * max(a, z)  # one clip only


def _white_mix(tmp_path, **options) -> dict:
    """A ``kind=mix`` data config over one 3 s white-noise clip as clean speech and one as noise (0 dB SNR, batches
    of 8 x 0.5 s, no synthetic noise), with ``options`` on top."""
    rng = np.random.default_rng(0)
    for folder in ("clean", "noise"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "w.wav", (0.1 * rng.standard_normal(3 * SR)).astype(np.float32), SR)
    return dict(kind="mix", batch_size=8, segment_seconds=0.5, clean_dirs=[str(tmp_path / "clean")],
                noise_dirs=[str(tmp_path / "noise")], synthetic_noise=[], snr_range=[0, 0], eval_examples=8,
                index_cache_dir=str(tmp_path / "c"), **options)


def test_random_equalisation_of_noise_and_speech_in_training_only(tmp_path):
    """noise_eq_prob=1 tilts the white noise's spectrum (low band against high band) by several dB, differently per
    example, its level still set by the drawn SNR; speech_eq_prob=1 does the same to the clean speech, which stays
    the target; valid mixtures and runs with the options off keep both flat."""
    from jaxse.data.equalizer import random_eq

    base = _white_mix(tmp_path)
    freqs = np.fft.rfftfreq(SR // 2, 1 / SR)

    def tilt_db(x):  # [batch] mean power 100-1000 Hz over mean power 2-7 kHz, dB (0 for white noise)
        p = np.abs(np.fft.rfft(x, axis=-1)) ** 2
        low, high = p[:, (freqs >= 100) & (freqs < 1000)], p[:, (freqs >= 2000) & (freqs < 7000)]
        return 10 * np.log10(low.mean(-1) / high.mean(-1))

    def parts(cfg, split="train"):
        b = next(batches(cfg, split=split, seed=0))
        return b["noisy"] - b["clean"], b["clean"]

    both = dict(base, noise_eq_prob=1.0, speech_eq_prob=1.0)
    for cfg, split in ((base, "train"), (base, "valid"), (both, "valid")):
        noise, clean = parts(cfg, split)
        assert np.abs(tilt_db(noise)).max() < 2.0 and np.abs(tilt_db(clean)).max() < 2.0, split
    noise, clean = parts(dict(base, noise_eq_prob=1.0))
    assert np.abs(tilt_db(noise)).max() > 6.0 and np.ptp(tilt_db(noise)) > 6.0
    assert np.abs(tilt_db(clean)).max() < 2.0
    np.testing.assert_allclose(np.std(noise, -1) / np.std(clean, -1), 1.0, rtol=0.05)  # still at 0 dB SNR
    noise, clean = parts(dict(base, speech_eq_prob=1.0))
    assert np.abs(tilt_db(clean)).max() > 6.0 and np.abs(tilt_db(noise)).max() < 2.0
    x = (0.1 * np.random.default_rng(2).standard_normal(4000)).astype(np.float32)
    y = random_eq(np.random.default_rng(1), x, sample_rate=SR, db_range=(-15, 15))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(np.mean(y**2)), np.sqrt(np.mean(x**2)), rtol=1e-5)  # RMS kept
    assert not np.any(random_eq(np.random.default_rng(1), np.zeros(100, np.float32), sample_rate=SR,
                                db_range=(-15, 15)))


def test_babble_of_other_talkers_replaces_the_noise_in_training_only(tmp_path):
    """babble_prob=1: the noise is the sum of other talkers' clips (talker A's examples get B's tone and B's get A's,
    never their own), at the drawn SNR; babble_speed_range moves it by the factor; valid mixtures keep the noise
    folder's white noise, as do runs with the option off."""
    t = np.arange(3 * SR) / SR
    for talker, hz in (("a", 300.0), ("b", 1200.0)):
        (tmp_path / "clean" / talker).mkdir(parents=True)
        sf.write(tmp_path / "clean" / talker / "x.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR)
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "w.wav", (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(
        np.float32), SR)
    base = dict(kind="mix", batch_size=8, segment_seconds=0.5, clean_dirs=[str(tmp_path / "clean")],
                noise_dirs=[str(tmp_path / "noise")], synthetic_noise=[], snr_range=[0, 0], eval_examples=8,
                index_cache_dir=str(tmp_path / "c"), babble_talkers=[1, 2])
    freqs = np.fft.rfftfreq(SR // 2, 1 / SR)

    def peak_and_flatness(x):  # [batch] strongest frequency (Hz), spectral flatness (1: white, ~0: tonal)
        p = np.abs(np.fft.rfft(x, axis=-1)) ** 2 + 1e-20
        return freqs[p.argmax(-1)], np.exp(np.log(p).mean(-1)) / p.mean(-1)

    def parts(cfg, split="train"):
        with batches(cfg, split=split, seed=0) as it:
            b = next(it)
        return b["noisy"] - b["clean"], b["clean"]

    for cfg, split in ((base, "train"), (dict(base, babble_prob=1.0), "valid")):
        noise, _ = parts(cfg, split)
        assert peak_and_flatness(noise)[1].min() > 0.3, split  # white
    for speed, tones in ((1.0, (300.0, 1200.0)), (2.0, (600.0, 2400.0))):
        noise, clean = parts(dict(base, babble_prob=1.0, babble_speed_range=[speed, speed]))
        (heard, flat), (own, _) = peak_and_flatness(noise), peak_and_flatness(clean)
        assert flat.max() < 0.05  # tonal: a talker's clip, not the white noise
        np.testing.assert_allclose(heard, np.where(own == 300.0, tones[1], tones[0]), atol=4.0)
        np.testing.assert_allclose(np.std(noise, -1) / np.std(clean, -1), 1.0, rtol=0.05)  # at 0 dB SNR


def test_synthetic_tonal_interferers_in_training_only(tmp_path):
    """tonal_prob=1: the noise is harmonic tones (spectral flatness near 0, peaks that differ from example to
    example) at the drawn SNR in place of the noise folder's white noise; valid mixtures keep the white noise."""
    from jaxse.data.tonal import random_tonal

    base = _white_mix(tmp_path, tonal_prob=1.0)
    freqs = np.fft.rfftfreq(SR // 2, 1 / SR)

    def noise_of(split):
        with batches(base, split=split, seed=0) as it:
            b = next(it)
        p = np.abs(np.fft.rfft(b["noisy"] - b["clean"], axis=-1)) ** 2 + 1e-20
        flat = np.exp(np.log(p).mean(-1)) / p.mean(-1)
        return flat, freqs[p.argmax(-1)], np.std(b["noisy"] - b["clean"], -1) / np.std(b["clean"], -1)

    flat, _, _ = noise_of("valid")
    assert flat.min() > 0.3
    flat, peak, ratio = noise_of("train")
    assert flat.max() < 0.2 and len(set(peak.round())) > 4  # white noise: about 0.56
    np.testing.assert_allclose(ratio, 1.0, rtol=0.05)  # still at 0 dB SNR
    x = random_tonal(np.random.default_rng(1), 4 * SR, sample_rate=SR)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert x.dtype == np.float32 and abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 1) < 1e-4
    assert p[(f < 60) | (f > 7700)].sum() < 1e-3 * p.sum()  # harmonics kept in 80 Hz..7.6 kHz
