"""Live audio without a sound card: the callback driven directly, and the command line on a fake sounddevice."""
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from jaxse.inference import Streamer
from jaxse.io import checkpoints
from jaxse.live import LiveProcessor, main as live_main
from jaxse.models import get_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = get_model("dccrn-cl-tiny", decoder="causal")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    d = tmp_path_factory.mktemp("ckpt")
    checkpoints.save_model(d, model_name="dccrn-cl-tiny", variables=variables, model_overrides={"decoder": "causal"})
    return model, variables, d


def test_callback_output_is_the_stream_delayed_by_the_latency(setup):
    model, variables, _ = setup
    s = Streamer(model)
    proc = LiveProcessor(s, variables, block_hops=3)
    x = (0.1 * np.random.default_rng(0).standard_normal(40 * s.hop)).astype(np.float32)
    out, pos = [], 0
    for frames in [proc.block] * 4 + [2 * proc.block] + [proc.block] * 20:
        if pos + frames > len(x):
            break
        outdata = np.zeros((frames, 2), np.float32)
        proc.callback(x[pos:pos + frames, None], outdata, frames, None, None)
        assert np.array_equal(outdata[:, 0], outdata[:, 1])  # every output channel
        out.append(outdata[:, 0])
        pos += frames
    y = np.concatenate(out)
    offline = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x[:pos])[None]))[0]
    lag = s.delay  # sample for sample; in time the block of capture adds to it
    n = pos - lag - model.latency_samples
    np.testing.assert_allclose(y[lag:lag + n], offline[:n], atol=1e-5)
    assert proc.underruns == 0
    o = np.zeros((7, 1), np.float32)  # fewer frames than a block, then the rest: one gap of 7 samples
    proc.callback(np.zeros((7, 1), np.float32), o, 7, None, None)
    assert proc.underruns == 1 and not o.any()


def test_strength_zero_passes_the_input_through_and_statuses_are_counted(setup):
    model, variables, _ = setup
    s = Streamer(model)
    proc = LiveProcessor(s, variables, block_hops=2, strength=0.0)
    x = np.random.default_rng(1).standard_normal(10 * proc.block).astype(np.float32) * 0.1
    status = types.SimpleNamespace(input_overflow=True, output_underflow=False, __bool__=lambda self: True)
    out = []
    for k in range(10):
        o = np.zeros((proc.block, 1), np.float32)
        proc.callback(x[k * proc.block:(k + 1) * proc.block, None], o, proc.block, None, status if k == 3 else None)
        out.append(o[:, 0])
    lag = s.delay
    np.testing.assert_allclose(np.concatenate(out)[lag:], x[:len(x) - lag], atol=1e-7)
    assert proc.overruns == 1 and proc.blocks == 10


class _FakeSD(types.ModuleType):
    """sounddevice's surface that jaxse.live uses: an InputStream that delivers ``blocks`` at once, sleep that
    raises KeyboardInterrupt (Ctrl-C) on its second call."""

    class PortAudioError(Exception):
        pass

    def __init__(self, blocks):
        super().__init__("sounddevice")
        self.blocks, self.sleeps = blocks, 0
        fake = self

        class InputStream:
            def __init__(self, *, callback, blocksize, **kw):
                self.cb, self.n = callback, blocksize

            def __enter__(self):
                rng = np.random.default_rng(2)
                for _ in range(fake.blocks):
                    self.cb((0.1 * rng.standard_normal((self.n, 1))).astype(np.float32), self.n, None, None)
                return self

            def __exit__(self, *a):
                return False

        self.InputStream = InputStream

    def sleep(self, ms):
        self.sleeps += 1
        if self.sleeps == 2:
            raise KeyboardInterrupt

    def query_devices(self):
        return [{"name": "fake mic", "max_input_channels": 1, "max_output_channels": 0}]


def test_cli_to_a_file_stops_cleanly_on_ctrl_c(setup, tmp_path, monkeypatch, capsys):
    _, _, ckpt = setup
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSD(blocks=12))
    out = tmp_path / "rec.wav"
    rc = live_main([f"checkpoint={ckpt}", f"output={out}", "input=fake", "block_hops=2", "precision=bfloat16"])
    assert rc == 130
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.frames == 12 * 2 * Streamer(get_model("dccrn-cl-tiny")).hop
    assert "over-runs 0" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*"))


def test_cli_without_sounddevice_or_with_bad_keys_exits_2(setup, tmp_path, monkeypatch):
    _, _, ckpt = setup
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    assert live_main([f"checkpoint={ckpt}"]) == 2
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSD(blocks=0))
    assert live_main([f"checkpoint={ckpt}", "input=nothing-like-this"]) == 2
    assert live_main([f"checkpoint={ckpt}", "strength=3"]) == 2
    assert live_main([f"checkpoint={ckpt}", "precision=float16"]) == 2
    (tmp_path / "f").write_text("x")
    assert live_main([f"checkpoint={ckpt}", f"output={tmp_path}/f/x.wav"]) == 2


def test_cli_default_is_the_shipped_causal_model(tmp_path, monkeypatch, capsys):
    from jaxse import pretrained

    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSD(blocks=3))
    assert live_main([f"output={tmp_path / 'rec.wav'}", "input=fake"]) == 130
    said = capsys.readouterr().out
    assert f"dccrn-cl ({pretrained.REALTIME})" in said and "over-runs 0" in said
    model, _, _ = checkpoints.load_model(pretrained.REALTIME)
    assert model.decoder == "causal" and model.latency_samples == 400  # 25 ms at 16 kHz
    assert sf.info(str(tmp_path / "rec.wav")).frames > 0
