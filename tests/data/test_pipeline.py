import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jaxse.io.audio import AudioError
from jaxse.data.mixing import synthetic_noise
from jaxse.data.pipeline import DataWarning, batches, build_dataset

SR = 16000


def demo_corpus_or_fail(demo) -> None:
    """The shipped demo corpus is part of the package: broken or empty, it fails the test (never a skip)."""
    try:
        clean = list(demo.paths("clean", "train"))
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"the shipped demo corpus (jaxse.data.demo) is broken: {type(e).__name__}: {e}")
    if not clean:
        pytest.fail("the shipped demo corpus (jaxse.data.demo) has no clean training files")


def _speech(rng, n):
    t = np.arange(n) / SR
    f = rng.uniform(150, 400)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    return (0.2 * env * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _write(path, x, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT")


@pytest.fixture
def paired_dirs(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        c = _speech(rng, int(SR * rng.uniform(0.5, 0.8)))
        _write(tmp_path / "clean" / f"p{i:03d}.wav", c)
        _write(tmp_path / "noisy" / f"p{i:03d}.wav", c + 0.05 * rng.standard_normal(len(c)).astype(np.float32))
    return tmp_path


def _paired_cfg(root, **kw):
    cfg = dict(kind="paired", batch_size=4, segment_seconds=0.25, sample_rate=SR, resample=True,
               multichannel="downmix", skip_bad_files=False, prefetch=2,
               train_noisy_dir=str(root / "noisy"), train_clean_dir=str(root / "clean"),
               test_noisy_dir=str(root / "noisy"), test_clean_dir=str(root / "clean"),
               index_cache_dir=str(root / "index-cache"))
    cfg.update(kw)
    return cfg


@pytest.fixture
def mix_dirs(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(6):
        _write(tmp_path / "clean" / f"c{i}.wav", _speech(rng, int(SR * rng.uniform(0.4, 0.7))))
    for i in range(3):
        _write(tmp_path / "noise" / f"n{i}.wav", (0.1 * rng.standard_normal(int(SR * 0.1))).astype(np.float32))
    rir = np.zeros(800, np.float32)
    rir[40] = 1.0
    rir[41:] = 0.3 * np.exp(-np.arange(759) / 100) * rng.standard_normal(759)
    _write(tmp_path / "rir" / "r0.wav", rir)
    return tmp_path


def _mix_cfg(root, **kw):
    cfg = dict(kind="mix", batch_size=4, segment_seconds=0.25, sample_rate=SR, resample=True,
               multichannel="downmix", skip_bad_files=False, eval_examples=6, prefetch=2,
               clean_dirs=[str(root / "clean")], noise_dirs=[str(root / "noise")], rir_dirs=[],
               rir_target="dry", snr_range=[-5, 15], level_range=[-35, -15],
               synthetic_noise=["white", "pink", "brown"], synthetic_noise_prob=0.2,
               index_cache_dir=str(root / "index-cache"))
    cfg.update(kw)
    return cfg


def _take(cfg, n=1, **kw):
    kw.setdefault("split", "train")
    kw.setdefault("seed", 0)
    it = batches(cfg, **kw)
    return [next(it) for _ in range(n)]


def test_paired_shapes_and_eval(paired_dirs):
    cfg = _paired_cfg(paired_dirs)
    (b,) = _take(cfg)
    assert set(b) == {"noisy", "clean"}
    for k in b:
        assert b[k].shape == (4, 4000) and b[k].dtype == np.float32
    ev = list(build_dataset(cfg, split="test", seed=0).as_numpy_iterator())
    assert [e["clean"].shape for e in ev] == [(4, 4000), (2, 4000)]  # 6 files, no repeat
    ev2 = list(build_dataset(cfg, split="test", seed=99).as_numpy_iterator())
    np.testing.assert_array_equal(ev[0]["noisy"], ev2[0]["noisy"])  # crops from the start
    x, _ = sf.read(paired_dirs / "clean" / "p000.wav", dtype="float32")
    np.testing.assert_array_equal(ev[0]["clean"][0], x[:4000])


def test_paired_mismatch_lists_names(paired_dirs):
    os.remove(paired_dirs / "clean" / "p002.wav")
    _write(paired_dirs / "clean" / "extra.wav", np.ones(100, np.float32) * 0.1)
    with pytest.raises(ValueError, match=r"only in noisy.*p002.*only in clean.*extra"):
        build_dataset(_paired_cfg(paired_dirs), split="train", seed=0)


def test_corrupt_file_error_and_skip(paired_dirs):
    (paired_dirs / "noisy" / "p004.wav").write_bytes(b"not a wav file at all" * 10)
    with pytest.raises(AudioError, match=r"p004\.wav"):
        build_dataset(_paired_cfg(paired_dirs), split="train", seed=0)
    with pytest.warns(DataWarning, match=r"skipped 1 .*p004\.wav"):
        ev = list(build_dataset(_paired_cfg(paired_dirs, skip_bad_files=True), split="test", seed=0)
                  .as_numpy_iterator())
    assert sum(e["clean"].shape[0] for e in ev) == 5


def test_resample_multichannel_and_padding(paired_dirs):
    rng = np.random.default_rng(3)
    c48 = np.stack([_speech(rng, 4800)] * 2, axis=1)  # 0.1 s stereo at 48 kHz: short clip
    for d in ("clean", "noisy"):
        for f in os.listdir(paired_dirs / d):
            os.remove(paired_dirs / d / f)
        _write(paired_dirs / d / "s.wav", c48, 48000)
    cfg = _paired_cfg(paired_dirs, batch_size=1)
    (b,) = list(build_dataset(cfg, split="test", seed=0).as_numpy_iterator())
    assert b["clean"].shape == (1, 4000)
    assert np.abs(b["clean"][0, :1500]).max() > 0.01
    np.testing.assert_array_equal(b["clean"][0, 1700:], 0.0)  # 1600 samples, zero-padded
    with pytest.raises(AudioError, match=r"s\.wav.*channels"):
        build_dataset(_paired_cfg(paired_dirs, multichannel="reject"), split="test", seed=0)
    with pytest.raises(AudioError, match=r"s\.wav.*48000"):
        build_dataset(_paired_cfg(paired_dirs, resample=False), split="test", seed=0)


def test_silent_clean_left_out(mix_dirs):
    _write(mix_dirs / "clean" / "silent.wav", np.zeros(8000, np.float32))
    with pytest.warns(DataWarning, match=r"silent.*silent\.wav"):
        build_dataset(_mix_cfg(mix_dirs), split="train", seed=0)


def test_batch_must_divide_processes(paired_dirs):
    with pytest.raises(ValueError, match="multiple of process_count"):
        build_dataset(_paired_cfg(paired_dirs, batch_size=3), split="train", seed=0, process_count=2)


def _noise(kind, n, seed):
    return synthetic_noise(("white", "pink", "brown").index(kind), n, np.array([seed, 1], np.int64)).numpy()


def test_synthetic_noise():
    for k in ("white", "pink", "brown"):
        x = _noise(k, 16000, 0)
        assert x.dtype == np.float32 and x.shape == (16000,)
        assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 1) < 1e-4
    # spectral tilt: brown has more low-frequency energy than pink than white
    def tilt(x):
        X = np.abs(np.fft.rfft(x))
        return X[1:200].mean() / X[4000:].mean()

    tilts = [tilt(_noise(k, 16000, 3)) for k in ("white", "pink", "brown")]
    assert tilts[0] < 2 < tilts[1] < tilts[2]


def test_mix_snr_and_level(mix_dirs):
    cfg = _mix_cfg(mix_dirs, snr_range=[5, 5], level_range=[-25, -25], synthetic_noise_prob=0.5)
    (b,) = _take(cfg)
    for noisy, clean in zip(b["noisy"].astype(np.float64), b["clean"].astype(np.float64)):
        noise = noisy - clean
        snr = 10 * np.log10(np.sum(clean**2) / np.sum(noise**2))
        assert abs(snr - 5.0) < 0.1
        level = 20 * np.log10(np.sqrt(np.mean(noisy**2)))
        assert abs(level - (-25)) < 0.1 or np.abs(noisy).max() == pytest.approx(0.99, abs=1e-4)
    # clip safety
    (b,) = _take(_mix_cfg(mix_dirs, level_range=[0, 0]))
    assert np.abs(b["noisy"]).max() <= 0.99 + 1e-6


def test_mix_rir(mix_dirs):
    for tgt in ("dry", "reverberant"):
        cfg = _mix_cfg(mix_dirs, rir_dirs=[str(mix_dirs / "rir")], rir_target=tgt)
        (b,) = _take(cfg)
        assert b["noisy"].shape == (4, 4000) and np.all(np.isfinite(b["noisy"]))


def test_determinism_and_resume(mix_dirs):
    cfg = _mix_cfg(mix_dirs)
    a = _take(cfg, 4, seed=1)
    b = _take(cfg, 4, seed=1)
    c = _take(cfg, 1, seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["noisy"], y["noisy"])
        np.testing.assert_array_equal(x["clean"], y["clean"])
    assert not np.array_equal(a[0]["noisy"], c[0]["noisy"])
    (r,) = _take(cfg, 1, seed=1, start_step=3)
    np.testing.assert_array_equal(r["noisy"], a[3]["noisy"])
    np.testing.assert_array_equal(r["clean"], a[3]["clean"])
    # eval mixtures do not depend on the training seed
    e1 = list(build_dataset(cfg, split="valid", seed=1).as_numpy_iterator())
    e2 = list(build_dataset(cfg, split="valid", seed=7).as_numpy_iterator())
    assert sum(e["noisy"].shape[0] for e in e1) == 6
    for x, y in zip(e1, e2):
        np.testing.assert_array_equal(x["noisy"], y["noisy"])


def test_paired_resume(paired_dirs):
    cfg = _paired_cfg(paired_dirs)
    a = _take(cfg, 5, seed=3)  # crosses epoch boundaries (6 files, batch 4)
    (r,) = _take(cfg, 1, seed=3, start_step=4)
    np.testing.assert_array_equal(r["clean"], a[4]["clean"])


@pytest.mark.parametrize("mode", ["rows", "files"])
def test_process_sharding_disjoint(paired_dirs, mode):
    cfg = _paired_cfg(paired_dirs, batch_size=6, segment_seconds=2.0, host_sharding=mode)  # whole files, padded
    seen = []
    for pi in range(2):
        ds = build_dataset(cfg, split="train", seed=0, process_index=pi, process_count=2, repeat=False)
        got = {tuple(np.round(c[:50], 5)) for b in ds.as_numpy_iterator() for c in b["clean"]}
        assert all(len(b["clean"]) == 3 for b in ds.as_numpy_iterator())
        seen.append(got)
    assert seen[0] and seen[1] and not (seen[0] & seen[1])
    assert len(seen[0] | seen[1]) == 6


def test_rows_sharding_is_layout_invariant(paired_dirs):
    """With host_sharding=rows, 2 hosts x 2 rows see exactly the global batch that 1 host x 4 rows sees."""
    cfg = _paired_cfg(paired_dirs, batch_size=4, segment_seconds=0.5, host_sharding="rows")
    one = [b["noisy"] for _, b in zip(range(3), batches(cfg, seed=3))]
    parts = [[b["noisy"] for _, b in zip(range(3), batches(cfg, seed=3, process_index=i, process_count=2))]
             for i in range(2)]
    for k in range(3):
        np.testing.assert_array_equal(one[k], np.concatenate([parts[0][k], parts[1][k]]))
    resumed = next(batches(cfg, seed=3, process_index=1, process_count=2, start_step=2))["noisy"]
    np.testing.assert_array_equal(resumed, one[2][2:])


def test_demo_kind():
    from jaxse.data import demo

    demo_corpus_or_fail(demo)
    cfg = dict(kind="demo", batch_size=2, segment_seconds=0.5, sample_rate=SR, resample=True,
               multichannel="downmix", skip_bad_files=False, eval_examples=4, prefetch=2,
               snr_range=[-5, 15], level_range=[-35, -15], synthetic_noise=["white", "pink", "brown"],
               synthetic_noise_prob=0.2)
    (b,) = _take(cfg)
    assert b["noisy"].shape == (2, 8000)
    ev = list(build_dataset(cfg, split="valid", seed=0).as_numpy_iterator())
    assert sum(e["noisy"].shape[0] for e in ev) == 4


def test_tfds_voicebank(tmp_path):
    rng = np.random.default_rng(5)
    manual = tmp_path / "manual"
    for split, (nd, cd), count in (("train", ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"), 4),
                                   ("test", ("noisy_testset_wav", "clean_testset_wav"), 2)):
        for i in range(count):
            c = np.repeat(_speech(rng, int(SR * 0.3)), 3)  # 0.9 s at 48 kHz
            _write(manual / cd / f"p{i}_{split}.wav", c, 48000)
            _write(manual / nd / f"p{i}_{split}.wav", c + 0.01 * rng.standard_normal(len(c)).astype(np.float32), 48000)
    cfg = dict(kind="tfds", name="voicebank_demand", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual),
               batch_size=2, segment_seconds=0.25, sample_rate=SR,
               skip_bad_files=False, eval_examples=4, prefetch=2)
    a = _take(cfg, 3, seed=0)
    assert a[0]["noisy"].shape == (2, 4000) and a[0]["noisy"].dtype == np.float32
    assert np.abs(a[0]["clean"]).max() > 0.01
    (r,) = _take(cfg, 1, seed=0, start_step=2)
    np.testing.assert_array_equal(r["clean"], a[2]["clean"])
    ev = list(build_dataset(cfg, split="test", seed=0).as_numpy_iterator())
    assert [e["clean"].shape for e in ev] == [(2, 4000)]
    assert os.path.isdir(tmp_path / "tfds" / "voicebank_demand")


def test_an_iterator_left_open_does_not_hang_the_exit(tmp_path):
    """A script that reads one batch and exits with the iterator still referenced (a module global) while the input
    threads are still reading: tf.data, torn down with the interpreter, used to wait forever for reads that can no
    longer take the GIL. batches() closes what is open at exit; close() and ``with`` stop the threads at once."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    for folder, count in (("clean", 12), ("noise", 4)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            sf.write(tmp_path / folder / f"{i}.flac", (0.1 * rng.standard_normal(20 * SR)).astype(np.float32), SR)
    cfg = dict(kind="mix", batch_size=16, segment_seconds=4.0, clean_dirs=[str(tmp_path / "clean")],
               noise_dirs=[str(tmp_path / "noise")], speed_prob=1.0, synthetic_rir_prob=1.0, prefetch=4,
               index_cache_dir=str(tmp_path / "c"))
    script = (f"from jaxse.data.pipeline import batches\nit = batches({cfg!r}, seed=0)\n"
              "print(next(it)['noisy'].shape, flush=True)\n")
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                             cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the process did not exit within 90 s of its last line (stdout: {e.stdout!r})")
    assert out.returncode == 0 and "(16, 64000)" in out.stdout, out.stderr[-2000:]
    with batches(cfg, seed=0) as it:
        assert next(it)["clean"].shape == (16, 64000)
    with pytest.raises(StopIteration):
        next(it)
