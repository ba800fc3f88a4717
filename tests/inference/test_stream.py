"""Streaming equals the offline model, shifted by the documented delay, for CRN and both DCCRN decoders."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse.models import get_model
from jaxse.inference.streamer import Streamer


def _trained_like(model, x):
    """Variables with non-trivial BatchNorm statistics (one training-mode pass)."""
    v = model.init(jax.random.PRNGKey(0), x)
    _, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
    return {"params": v["params"], "batch_stats": upd["batch_stats"]}


@pytest.mark.parametrize("name, kw", [
    ("crn-tiny", {}),
    ("dccrn-cl-tiny", {"decoder": "causal"}),
    ("dccrn-cl-tiny", {"decoder": "paper"}),
    ("dccrn-e-tiny", {"decoder": "paper", "norm": "real"}),
    ("dccrn-cl-asteroid", {"channels": (4, 8, 8), "rnn_units": 16, "rnn_layers": 1}),  # imported weights stream too
])
def test_stream_matches_offline(name, kw):
    model = get_model(name, **kw)
    x = (0.1 * np.random.default_rng(1).standard_normal((2, 3000))).astype(np.float32)
    variables = _trained_like(model, jnp.asarray(x))
    offline = np.asarray(model.apply(variables, jnp.asarray(x)))
    streamer = Streamer(model)
    assert streamer.delay + streamer.hop == model.latency_samples
    y = streamer.run(variables, x)
    # The last samples differ by construction (offline, the look-ahead at the very end sees zero padding).
    n = x.shape[1] - model.latency_samples
    np.testing.assert_allclose(y[:, :n], offline[:, :n], atol=1e-4)
    assert np.abs(offline[:, :n]).max() > 1e-3  # not trivially zero


def test_stream_step_is_a_pure_jitted_function():
    model = get_model("dccrn-cl-tiny", decoder="causal")
    x = jnp.zeros((1, 1600))
    variables = model.init(jax.random.PRNGKey(0), x)
    s = Streamer(model)
    state = s.init_stream(variables, 3)
    hop = jnp.ones((3, s.hop), jnp.float32) * 0.01
    y1, st1 = s.stream_step(variables, state, hop)
    y2, st2 = s.stream_step(variables, state, hop)  # same state in, same result out
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (3, s.hop) and y1.dtype == jnp.float32
    assert jax.tree.structure(st1) == jax.tree.structure(state)
    assert st1["net"]["enc_prev"][0].dtype == jnp.complex64  # complex state stays complex
