"""Offline enhancement: buckets, level matching, and the jaxse.enhance command line."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from jaxse.io import checkpoints
from jaxse.enhance import main as enhance_main
from jaxse.inference import Enhancer, bucket_length, match_level
from jaxse.io.audio import AtomicAudioWriter, write_audio_atomic
from jaxse.models import get_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    model = get_model("dccrn-cl-tiny", decoder="causal")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    checkpoints.save_model(d, model_name="dccrn-cl-tiny", variables=variables, model_overrides={"decoder": "causal"})
    return d


def test_bucket_lengths_are_few_and_cover():
    lengths = [bucket_length(n) for n in range(1, 16000 * 30, 997)]
    assert all(b >= n for b, n in zip(lengths, range(1, 16000 * 30, 997)))
    assert len(set(lengths)) <= 12  # 1 s .. 30 s in a dozen shapes
    assert all(b % 1600 == 0 for b in lengths)
    assert max(b / n for b, n in zip(lengths, range(16000, 16000 * 30, 997))) <= 1.45


def test_match_level_restores_input_level_and_avoids_clipping():
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.1
    noisy = speech + 0.05 * rng.standard_normal(16000).astype(np.float32)
    out = match_level(noisy, speech * 0.01)  # a model output 40 dB too quiet
    np.testing.assert_allclose(np.std(out), np.std(speech), rtol=0.05)
    loud = match_level(noisy * 9, speech)  # input near full scale: the matched output would clip
    assert np.max(np.abs(loud)) <= 0.99 + 1e-6


def test_enhancer_batches_by_bucket_and_keeps_lengths(ckpt):
    enh = Enhancer.from_checkpoint(ckpt, level="none")
    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (12000, 16000, 15000, 23000, 800)]
    out = enh.enhance(waves)
    assert [len(o) for o in out] == [len(w) for w in waves]
    assert len(enh.compiled_shapes) == 2  # five signals, two bucket shapes
    # Causal model: the padding after a signal does not change its output.
    single = np.asarray(jax.jit(enh.model.apply)(enh.variables, jnp.asarray(waves[3])[None]))[0]
    np.testing.assert_allclose(out[3], single, atol=1e-5)


def _write(path, x, sr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)


def test_cli_folder_tree_rates_channels_and_failures(ckpt, tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    _write(src / "a.wav", 0.1 * rng.standard_normal(16000), 16000)
    _write(src / "sub" / "b.flac", 0.1 * rng.standard_normal(20000), 16000)
    _write(src / "sub" / "c44.wav", 0.1 * rng.standard_normal((44100, 2)), 44100)
    (src / "sub" / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "out"
    rc = enhance_main([f"checkpoint={ckpt}", f"input={src}", f"output={out}", "channels=each"])
    assert rc == 1  # broken.wav failed ...
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["a.wav", "sub/b.flac", "sub/c44.wav"]
    info = sf.info(str(out / "sub" / "c44.wav"))  # ... the others were written, at their own rate and length
    assert (info.samplerate, info.frames, info.channels) == (44100, 44100, 2)
    assert sf.info(str(out / "sub" / "b.flac")).frames == 20000
    assert not list(out.rglob(".*.tmp*"))  # no temporary files left behind
    # Multi-channel without channels=each is reported by name, the rest still succeeds.
    out2 = tmp_path / "out2"
    r = subprocess.run([sys.executable, "-m", "jaxse.enhance", f"checkpoint={ckpt}", f"input={src}",
                        f"output={out2}"], capture_output=True, text=True)
    assert r.returncode == 1 and "c44.wav: 2 channels" in r.stderr and (out2 / "a.wav").is_file()


def test_cli_never_overwrites_inputs_and_rejects_bad_keys(ckpt, tmp_path):
    src = tmp_path / "in"
    _write(src / "a.wav", np.zeros(1600), 16000)
    before = (src / "a.wav").read_bytes()
    assert enhance_main([f"checkpoint={ckpt}", f"input={src}", f"output={src}"]) == 2
    assert (src / "a.wav").read_bytes() == before
    assert enhance_main([f"checkpoint={ckpt}", f"input={src}", f"output={tmp_path}/o", "colour=red"]) == 2
    assert enhance_main([f"checkpoint={tmp_path}/nothing", f"input={src}", f"output={tmp_path}/o"]) == 2


# ---------------------------------------------------------------------------------------------- long files, strength
def test_strength_limits_and_attenuation_limit():
    from jaxse.inference import finish, strength_for

    rng = np.random.default_rng(6)
    x = (0.1 * rng.standard_normal(4000)).astype(np.float32)
    e = (0.05 * rng.standard_normal(4000)).astype(np.float32)
    np.testing.assert_array_equal(finish(x, e, level="none", strength=0.0), x)  # 0: the input
    np.testing.assert_array_equal(finish(x, e, level="none", strength=1.0), e)  # full: the model output
    np.testing.assert_allclose(finish(x, e, level="none", strength=0.25), 0.25 * e + 0.75 * x, atol=1e-7)
    assert strength_for() == 1.0 and strength_for(atten_lim_db=0.0) == 0.0
    np.testing.assert_allclose(1 - strength_for(atten_lim_db=20.0), 0.1)  # residual input 20 dB down
    with pytest.raises(ValueError):
        strength_for(0.5, 6.0)
    with pytest.raises(ValueError):
        strength_for(1.5)


@pytest.mark.parametrize("level", ["none", "match"])
def test_long_files_stream_exactly_like_the_offline_pass(ckpt, tmp_path, level):
    rng = np.random.default_rng(7)
    src = tmp_path / "in"
    x = (0.1 * rng.standard_normal((40000, 2))).astype(np.float32)
    _write(src / "long.wav", x, 16000)
    sf.write(str(src / "long.wav"), x, 16000, subtype="FLOAT")
    common = [f"checkpoint={ckpt}", f"input={src}", "channels=each", f"level={level}", "strength=0.8"]
    assert enhance_main(common + [f"output={tmp_path}/short", "long_seconds=100"]) == 0  # batched offline path
    assert enhance_main(common + [f"output={tmp_path}/long", "long_seconds=1"]) == 0  # chunked, block by block
    a, _ = sf.read(str(tmp_path / "short" / "long.wav"))
    b, _ = sf.read(str(tmp_path / "long" / "long.wav"))
    assert a.shape == b.shape == x.shape
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert not list((tmp_path / "long").glob(".*"))  # no temporary or scratch files left


def test_long_file_blocks_smaller_than_a_chunk_and_other_rate(ckpt, tmp_path):
    from jaxse.inference.files import enhance_long_file

    enh = Enhancer.from_checkpoint(ckpt, level="match", chunk_hops=7)
    rng = np.random.default_rng(8)
    x = (0.1 * rng.standard_normal(20011)).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), x, 16000, subtype="FLOAT")
    enhance_long_file(enh, tmp_path / "a.wav", tmp_path / "o" / "a.wav", block=333)
    y, _ = sf.read(str(tmp_path / "o" / "a.wav"), dtype="float32")
    ref = match_level(x, np.asarray(jax.jit(enh.model.apply)(enh.variables, jnp.asarray(x)[None]))[0])
    np.testing.assert_allclose(y, ref, atol=1e-5)
    # Another rate: resampled block by block to 16 kHz and back, equal to resampling the whole file in memory.
    from jaxse.io.audio import resample

    xb = x[:11025 * 2]
    sf.write(str(tmp_path / "b.wav"), xb, 11025, subtype="FLOAT")
    enhance_long_file(enh, tmp_path / "b.wav", tmp_path / "o" / "b.wav", block=1000)
    yb, rate = sf.read(str(tmp_path / "o" / "b.wav"), dtype="float32")
    x16 = resample(xb, 11025, 16000)
    ref16 = match_level(x16, np.asarray(jax.jit(enh.model.apply)(enh.variables, jnp.asarray(x16)[None]))[0])
    assert rate == 11025 and yb.shape == xb.shape
    np.testing.assert_allclose(yb, resample(ref16, 16000, 11025)[:len(xb)], atol=1e-5)


def test_a_failed_write_keeps_the_old_output(ckpt, tmp_path, monkeypatch):
    from jaxse.inference import files

    enh = Enhancer.from_checkpoint(ckpt, level="none")
    sf.write(str(tmp_path / "a.wav"), np.zeros(8000, np.float32), 16000)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "a.wav").write_bytes(b"old")

    def boom(blocks, samples):
        for b in blocks:
            yield np.zeros_like(b)
            raise RuntimeError("model failed half-way")

    monkeypatch.setattr(enh, "enhance_blocks", boom)
    with pytest.raises(RuntimeError):
        files.enhance_long_file(enh, tmp_path / "a.wav", tmp_path / "o" / "a.wav")
    assert (tmp_path / "o" / "a.wav").read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.wav"]


def test_cli_bad_strength_and_unwritable_output_exit_2(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    _write(src / "a.wav", np.zeros(1600), 16000)
    (tmp_path / "file").write_text("x")
    base = [f"checkpoint={ckpt}", f"input={src}"]
    assert enhance_main(base + [f"output={tmp_path}/o", "strength=2"]) == 2
    assert enhance_main(base + [f"output={tmp_path}/o", "strength=abc"]) == 2
    assert "bad value for strength: 'abc' (expected a number)" in capsys.readouterr().err
    assert enhance_main(base + [f"output={tmp_path}/o", "atten_lim_db=nan"]) == 2
    assert enhance_main(base + [f"output={tmp_path}/o", "atten_lim_db=-1"]) == 2
    assert "bad value for atten_lim_db: -1 (expected a finite number >= 0)" in capsys.readouterr().err.splitlines()[-1]
    assert enhance_main(base + [f"output={tmp_path}/o", "strength=0.5", "atten_lim_db=6"]) == 2
    assert enhance_main(base + [f"output={tmp_path}/file/o"]) == 2


def test_python_api_strength_controls(ckpt):
    x = (0.1 * np.random.default_rng(10).standard_normal(5000)).astype(np.float32)
    dry = Enhancer.from_checkpoint(ckpt, level="none", atten_lim_db=0.0).enhance([x])[0]
    np.testing.assert_array_equal(dry, x)  # 0 dB of attenuation allowed: the input
    wet = Enhancer.from_checkpoint(ckpt, level="none", strength=1.0)
    raw = np.asarray(jax.jit(wet.model.apply)(wet.variables, jnp.asarray(x)[None]))[0]
    np.testing.assert_allclose(wet.enhance([x])[0], raw, atol=1e-6)
    with pytest.raises(ValueError):
        Enhancer.from_checkpoint(ckpt, strength=0.5, atten_lim_db=3.0)


def test_sigterm_mid_file_exits_143_and_leaves_no_partial_output(ckpt, tmp_path):
    """SIGTERM while a long file is being enhanced: exit 143, one error line, no temporary or scratch file left
    beside the outputs (before, the default action killed the process and left ``.scratch.f32`` behind)."""
    import signal
    import time

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    sf.write(src / "a_short.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    sf.write(src / "b_long.wav", (0.1 * rng.standard_normal(16000 * 600)).astype(np.float32), 16000)  # 10 min
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "jaxse.enhance", f"checkpoint={ckpt}", f"input={src}",
                          f"output={out}", "long_seconds=5"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not list(out.glob(".b_long.wav.*scratch*")):
        time.sleep(0.05)
    assert p.poll() is None, p.stderr.read()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and len(err.strip().splitlines()) == 1, err
    left = os.listdir(out)
    assert "b_long.wav" not in left and not [n for n in left if n.startswith(".")], left  # no partial, no scratch


@pytest.mark.parametrize("precision, atol", [("bfloat16", 2e-3), ("int8", 2e-3)])
def test_precision_key_stores_weights_and_stays_close_to_float32(ckpt, tmp_path, precision, atol):
    """``precision=`` of jaxse.enhance: the batch path and the chunked path (long files) run the same stored weights
    (so they agree with each other as in float32), and both stay within ``atol`` of the float32 output."""
    x = (0.1 * np.random.default_rng(3).standard_normal(24000)).astype(np.float32)
    _write(tmp_path / "in" / "a.wav", x, 16000)
    sf.write(str(tmp_path / "in" / "a.wav"), x, 16000, subtype="FLOAT")
    common = [f"checkpoint={ckpt}", f"input={tmp_path / 'in'}", "level=none"]
    out = {}
    for name, extra in (("f32", []), ("batch", [f"precision={precision}", "long_seconds=100"]),
                        ("chunked", [f"precision={precision}", "long_seconds=1"])):
        assert enhance_main(common + extra + [f"output={tmp_path / name}"]) == 0
        out[name], _ = sf.read(str(tmp_path / name / "a.wav"))
    assert np.abs(out["batch"] - out["f32"]).max() > 0  # the weights really were rounded
    np.testing.assert_allclose(out["batch"], out["f32"], atol=atol)
    np.testing.assert_allclose(out["chunked"], out["batch"], atol=1e-4 if precision == "int8" else atol)
    enh = Enhancer.from_checkpoint(ckpt, precision=precision)
    assert enh.streamer.precision == ("int8" if precision == "int8" else "float32")  # bfloat16: the products only
    assert enh.model.compute_dtype == ("bfloat16" if precision == "bfloat16" else None)
    with pytest.raises(ValueError, match="unknown precision"):
        Enhancer.from_checkpoint(ckpt, precision="float16")
    assert enhance_main(common + ["precision=float16", f"output={tmp_path / 'bad'}"]) == 2


def test_stop_the_instant_a_temporary_file_exists_leaves_nothing(ckpt, tmp_path, monkeypatch):
    """A SIGTERM (raised as ``Terminated`` by jaxse.cli) can land right after a temporary or scratch file is created:
    each writer names the file first and creates it inside the ``try`` that removes it, so nothing is left behind
    and an existing output is untouched (with ``tempfile.mkstemp`` before the ``try``, the file stayed; a CI run of
    the SIGTERM test above caught it once)."""
    from jaxse import cli
    from jaxse.inference import files
    from jaxse.io import atomic, audio

    real = atomic.create_new

    def create_then_stop(name):
        os.close(real(name))
        raise cli.Terminated(15)

    for mod in (atomic, audio, files):
        monkeypatch.setattr(mod, "create_new", create_then_stop)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.wav").write_bytes(b"old")
    x = (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32)
    src = tmp_path / "in" / "a.wav"
    _write(src, x, 16000)
    with pytest.raises(cli.Terminated):
        write_audio_atomic(out / "keep.wav", x, 16000)  # atomic_write
    with pytest.raises(cli.Terminated):
        with AtomicAudioWriter(out / "b.wav", 16000, 1):
            pass
    with pytest.raises(cli.Terminated):  # the level-matching scratch file
        files.enhance_long_file(Enhancer.from_checkpoint(ckpt, level="match"), src, out / "a.wav")
    assert os.listdir(out) == ["keep.wav"] and (out / "keep.wav").read_bytes() == b"old"
