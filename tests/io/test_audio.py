import os

import numpy as np
import pytest
import soundfile as sf

from jaxse.io.audio import AudioError, list_audio, match_pairs, read_audio, write_audio_atomic


def _tone(sr, seconds, f=440.0, ch=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * f * t).astype(np.float32)
    return np.stack([x] * ch, axis=1) if ch > 1 else x


def test_read_wav_flac_ogg(tmp_path):
    x = _tone(16000, 0.5)
    for ext in ("wav", "flac", "ogg"):
        p = tmp_path / f"a.{ext}"
        write_audio_atomic(p, x, 16000)
        y = read_audio(p, sample_rate=16000)
        assert y.dtype == np.float32 and y.ndim == 1
        assert abs(len(y) - len(x)) < 1000
    assert list_audio(tmp_path) == sorted(str(tmp_path / f"a.{e}") for e in ("flac", "ogg", "wav"))


def test_resample_48k_to_16k(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _tone(48000, 1.0, f=1000.0), 48000)
    y = read_audio(p, sample_rate=16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 1000) <= 1  # 1 Hz bins
    with pytest.raises(AudioError, match=r"a\.wav.*48000.*16000"):
        read_audio(p, sample_rate=16000, resample=False)


def test_multichannel_downmix_and_reject(tmp_path):
    p = tmp_path / "st.wav"
    x = np.stack([np.full(800, 0.2, np.float32), np.full(800, 0.4, np.float32)], axis=1)
    sf.write(p, x, 16000, subtype="FLOAT")
    y = read_audio(p, sample_rate=16000, multichannel="downmix")
    np.testing.assert_allclose(y, 0.3, atol=1e-6)
    with pytest.raises(AudioError, match=r"st\.wav.*2 channels"):
        read_audio(p, sample_rate=16000, multichannel="reject")


def test_corrupt_and_empty(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x01garbage" * 20)
    with pytest.raises(AudioError, match=r"bad\.wav.*unreadable or corrupt"):
        read_audio(bad, sample_rate=16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        read_audio(empty, sample_rate=16000)
    assert issubclass(AudioError, ValueError)


def test_write_atomic_leaves_no_partial(tmp_path):
    p = tmp_path / "out.wav"
    write_audio_atomic(p, _tone(16000, 0.1), 16000)
    before = p.read_bytes()
    with pytest.raises(Exception):
        write_audio_atomic(p, np.array(["x"]), 16000)  # invalid data fails mid-write
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.wav"]


def test_match_pairs_mismatch(tmp_path):
    for d, names in (("noisy", ["a", "b", "x"]), ("clean", ["a", "b", "y", "z"])):
        (tmp_path / d).mkdir()
        for n in names:
            sf.write(tmp_path / d / f"{n}.wav", _tone(16000, 0.1), 16000)
    with pytest.raises(ValueError, match=r"1 file\(s\) only in noisy.*x.*2 file\(s\) only in clean.*y, z"):
        match_pairs(tmp_path / "noisy", tmp_path / "clean")


def test_audio_module_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, jaxse.io.audio; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("orig, target", [(44100, 16000), (16000, 44100), (11025, 16000), (48000, 16000),
                                          (16000, 8000)])
def test_block_resampler_equals_whole_signal_resampling(orig, target):
    from jaxse.io.audio import BlockResampler, resample

    rng = np.random.default_rng(orig + target)
    for n in (1, 999, orig + 13):
        x = rng.standard_normal((2, n)).astype(np.float32)
        ref = np.stack([resample(c, orig, target) for c in x])
        for block in (1, 97, 4096):
            if block == 1 and n > 1000:
                continue
            r = BlockResampler(orig, target, n)
            parts = [r.push(x[:, s:s + block]) for s in range(0, n, block)] + [r.finish()]
            assert max(p.shape[1] for p in parts) <= block * target // orig + 2 * len(r.h)  # bounded by the block
            y = np.concatenate(parts, axis=1)
            assert y.shape == ref.shape == (2, r.n_out)
            np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)
    r = BlockResampler(orig, target, 10)
    with pytest.raises(ValueError, match="announced"):
        r.push(np.zeros((1, 11), np.float32))
