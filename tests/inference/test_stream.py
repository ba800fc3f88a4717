"""Streaming equals the offline model, shifted by the documented delay, for CRN, both DCCRN decoders and asteroid's
DCCRN; a stream that knows where the signal ends (chunked or hop by hop) equals it to the last sample."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse.models import get_model
from jaxse.inference.streamer import Streamer


def _trained_like(model, x):
    """Variables with non-trivial BatchNorm statistics (one training-mode pass)."""
    v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    return {"params": v["params"], "batch_stats": upd["batch_stats"]}


@pytest.mark.parametrize("name, kw", [
    ("crn-tiny", {}),
    ("dccrn-cl-tiny", {"decoder": "causal", "compress": 0.3}),  # compressed input features stream too
    ("dccrn-cl-tiny", {"decoder": "paper"}),
    ("dccrn-e-tiny", {"decoder": "paper", "norm": "real"}),
    ("dccrn-cl-asteroid", {"channels": (4, 8, 8), "rnn_units": 16, "rnn_layers": 1}),  # imported weights stream too
])
def test_stream_matches_offline(name, kw):
    model = get_model(name, **kw)
    x = (0.1 * np.random.default_rng(1).standard_normal((2, 3000))).astype(np.float32)
    variables = _trained_like(model, jnp.asarray(x))
    offline = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
    streamer = Streamer(model)
    assert streamer.delay + streamer.hop == model.latency_samples
    y = streamer.run(variables, x)
    # The last samples differ by construction (offline, the look-ahead at the very end sees zero padding).
    n = x.shape[1] - model.latency_samples
    np.testing.assert_allclose(y[:, :n], offline[:, :n], atol=1e-4)
    assert np.abs(offline[:, :n]).max() > 1e-3  # not trivially zero


MODELS = [
    ("crn-tiny", {}),
    ("dccrn-cl-tiny", {"decoder": "causal"}),
    ("dccrn-cl-tiny", {"decoder": "paper"}),
    ("dccrn-cl-asteroid", {"channels": (4, 8, 8), "rnn_units": 16, "rnn_layers": 1}),
]


@pytest.mark.parametrize("name, kw", MODELS)
def test_chunked_stream_is_exact_for_any_chunk_and_length(name, kw):
    model = get_model(name, **kw)
    rng = np.random.default_rng(3)
    streamer = Streamer(model)
    for n, chunk_hops in ((3001, 1), (2 * 2000 + 37, 7), (1999, 200)):  # odd lengths; the last shorter than a chunk
        x = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
        variables = _trained_like(model, jnp.asarray(x)) if n == 3001 else variables
        offline = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
        y = streamer.run(variables, x, chunk_hops=chunk_hops)
        assert y.shape == x.shape
        np.testing.assert_allclose(y, offline, atol=1e-5, rtol=0)
    # Hop by hop with a known end: exact too.
    np.testing.assert_allclose(streamer.run(variables, x, hop_times=[]), offline, atol=1e-5, rtol=0)


def test_blocks_of_any_size_give_the_same_output():
    model = get_model("dccrn-cl-tiny", decoder="paper")
    x = (0.1 * np.random.default_rng(4).standard_normal((1, 4321))).astype(np.float32)
    variables = _trained_like(model, jnp.asarray(x))
    offline = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
    s = Streamer(model)
    blocks = np.split(x, [5, 1000, 1001, 3000], axis=1)
    outs = list(s.enhance_blocks(variables, blocks, x.shape[1], chunk_hops=9))
    np.testing.assert_allclose(np.concatenate(outs, axis=1), offline, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="announced"):
        list(s.enhance_blocks(variables, blocks, x.shape[1] + 1, chunk_hops=9))


def test_chunk_equals_steps():
    model = get_model("crn-tiny")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    s = Streamer(model)
    x = (0.1 * np.random.default_rng(5).standard_normal((2, 6 * s.hop))).astype(np.float32)
    st = s.init_stream(variables, 2)
    steps = []
    for k in range(6):
        y, st = s.stream_step(variables, st, x[:, k * s.hop:(k + 1) * s.hop])
        steps.append(np.asarray(y))
    y, st2 = s.stream_chunk(variables, s.init_stream(variables, 2), x)
    np.testing.assert_allclose(np.asarray(y), np.concatenate(steps, axis=1), atol=1e-6)
    assert jax.tree.structure(st2) == jax.tree.structure(st)


def test_step_and_chunk_are_one_traversal_in_one_compiled_cache():
    """The per-hop step is the chunk of one hop: one jitted function, one program per chunk shape."""
    model = get_model("crn-tiny")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    s = Streamer(model)
    state = s.init_stream(variables, 1)
    s.stream_step(variables, state, jnp.zeros((1, s.hop)))
    fn = s._bound[1]
    s.stream_chunk(variables, state, jnp.zeros((1, 3 * s.hop)))
    s.stream_chunk(variables, state, jnp.zeros((1, s.hop)))  # the per-hop program again
    assert s._bound[1] is fn and fn._cache_size() == 2
    with pytest.raises(ValueError, match="one hop"):
        s.stream_step(variables, state, jnp.zeros((1, 2 * s.hop)))


def test_stream_step_is_a_pure_jitted_function():
    model = get_model("dccrn-cl-tiny", decoder="causal")
    x = jnp.zeros((1, 1600))
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    s = Streamer(model)
    state = s.init_stream(variables, 3)
    hop = jnp.ones((3, s.hop), jnp.float32) * 0.01
    y1, st1 = s.stream_step(variables, state, hop)
    y2, st2 = s.stream_step(variables, state, hop)  # same state in, same result out
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (3, s.hop) and y1.dtype == jnp.float32
    assert jax.tree.structure(st1) == jax.tree.structure(state)
    assert st1["net"]["enc_prev"][0].dtype == jnp.complex64  # complex state stays complex


def test_stream_cli_downmixes_stereo_writes_exact_output_and_strength(tmp_path):
    import soundfile as sf

    from jaxse.io import checkpoints
    from jaxse.stream import main as stream_main

    model = get_model("dccrn-cl-tiny", decoder="paper")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    checkpoints.save_model(tmp_path / "ck", model_name="dccrn-cl-tiny", variables=variables,
                           model_overrides={"decoder": "paper"})
    x = (0.1 * np.random.default_rng(9).standard_normal((7001, 2))).astype(np.float32)
    sf.write(str(tmp_path / "st.wav"), x, 16000, subtype="FLOAT")
    base = [f"checkpoint={tmp_path / 'ck'}", f"input={tmp_path / 'st.wav'}", "warmup=0"]
    assert stream_main(base + [f"output={tmp_path / 'o.wav'}", "latency_seconds=0"]) == 0
    assert stream_main(base + [f"output={tmp_path / 'q.wav'}", "latency_seconds=0", "precision=int8"]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "q.wav"))[0], sf.read(str(tmp_path / "o.wav"))[0], atol=2e-3)
    y, _ = sf.read(str(tmp_path / "o.wav"), dtype="float32")
    mono = x.mean(axis=1)
    np.testing.assert_allclose(y, np.asarray(jax.jit(model.apply)(variables, jnp.asarray(mono)[None]))[0], atol=1e-5)
    assert stream_main(base + [f"output={tmp_path / 'dry.wav'}", "strength=0", "latency_seconds=1"]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "dry.wav"), dtype="float32")[0], mono, atol=1e-7)
    (tmp_path / "file").write_text("x")
    assert stream_main(base + [f"output={tmp_path / 'file' / 'o.wav'}"]) == 2  # found before any work
    assert stream_main(base + ["atten_lim_db=-3"]) == 2


def test_stream_cli_checks_the_checkpoint_before_reading_the_input(tmp_path, capsys):
    """A missing checkpoint is the error (exit 2), not the input that is no audio (exit 1), as in jaxse.enhance."""
    from jaxse.stream import main as stream_main

    (tmp_path / "notes.txt").write_text("not audio")
    assert stream_main([f"checkpoint={tmp_path / 'MISSING'}", f"input={tmp_path / 'notes.txt'}"]) == 2
    err = capsys.readouterr().err
    assert "MISSING" in err and "does not exist" in err and "notes.txt" not in err
    assert stream_main([f"input={tmp_path / 'nothing.wav'}"]) == 2  # a missing input: named before any work
    assert "nothing.wav' does not exist" in capsys.readouterr().err
