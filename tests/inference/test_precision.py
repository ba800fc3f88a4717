"""Weight storage precision of the streamer (``jaxse.nn.quant``): the stored weights are int8 / bfloat16, the step
reads them as such, and the output stays within a stated distance of the float32 stream."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse.inference.multistream import MultiStreamer
from jaxse.inference.streamer import Streamer
from jaxse.models import get_model
from jaxse.nn.quant import QuantizedWeight, dequantize_variables, is_quantized, quantize_variables


def _trained_like(model, x):
    """Variables with non-trivial BatchNorm statistics (one training-mode pass)."""
    v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    return {"params": v["params"], "batch_stats": upd["batch_stats"]}


def _signal(n=6000):
    """A fixed test signal: a 440 Hz tone in white noise, float32[1, n]."""
    t = np.arange(n) / 16000
    noise = 0.05 * np.random.default_rng(7).standard_normal(n)
    return (0.1 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)[None]


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, QuantizedWeight))[0]


@pytest.mark.parametrize("precision, dtype", [("int8", jnp.int8), ("bfloat16", jnp.bfloat16)])
def test_weights_are_stored_in_the_precision_and_the_rest_stays(precision, dtype):
    model = get_model("dccrn-cl-tiny")
    variables = _trained_like(model, jnp.asarray(_signal(3200)))
    q = quantize_variables(variables, precision)
    assert is_quantized(q) and not is_quantized(variables)
    kinds = set()
    for (path, leaf), (_, orig) in zip(_leaves(q), _leaves(variables)):
        if isinstance(leaf, QuantizedWeight):
            assert path[0].key == "params" and orig.ndim >= 2
            assert leaf.values.dtype == dtype
            complex_ = jnp.iscomplexobj(orig)
            kinds.add(complex_)
            assert leaf.values.shape == ((2,) if complex_ else ()) + orig.shape
            w = np.asarray(leaf.dequantize())
            assert w.dtype == orig.dtype and w.shape == orig.shape
            if precision == "int8":  # error at most half a step of the output channel's scale
                step = np.asarray(leaf.scale)
                err = [np.abs(w.real - orig.real), np.abs(w.imag - orig.imag)] if complex_ else [np.abs(w - orig)]
                for e, s in zip(err, step if complex_ else [step]):
                    assert (e <= s / 2 + 1e-7).all()
            else:
                np.testing.assert_allclose(w, orig, rtol=2 ** -8, atol=0)
        else:  # biases, BN parameters and statistics, PReLU slopes: untouched
            assert orig.ndim < 2 or path[0].key != "params"
            assert leaf is orig
    assert kinds == {True}  # DCCRN-CL's weights are all complex
    assert quantize_variables(variables, "float32") is variables
    deq = dequantize_variables(q)
    assert jax.tree.structure(deq) == jax.tree.structure(variables)
    with pytest.raises(ValueError, match="precision"):
        quantize_variables(variables, "int4")
    with pytest.raises(ValueError, match="precision"):
        Streamer(model, precision="float16")


# Bounds on the distance to the float32 stream over _signal() (peak output 0.06 to 0.26). Measured when written:
# max |diff| 2.3e-4 to 5.2e-4 and SNR 43 to 57 dB for both precisions and the three models.
MAX_DIFF, MIN_SNR_DB = 1.5e-3, 35.0


@pytest.mark.parametrize("name, kw", [
    ("crn-tiny", {}),
    ("dccrn-cl-tiny", {"decoder": "paper"}),
    ("dccrn-e-tiny", {"decoder": "causal", "norm": "real"}),
])
def test_low_precision_stream_is_close_to_float32(name, kw):
    model = get_model(name, **kw)
    x = _signal()
    variables = _trained_like(model, jnp.asarray(x))
    ref = Streamer(model).run(variables, x, chunk_hops=16)
    for precision in ("bfloat16", "int8"):
        s = Streamer(model, precision=precision)
        y = s.run(variables, x, chunk_hops=16)
        d = y - ref
        snr = 10 * np.log10((ref ** 2).sum() / (d ** 2).sum())
        assert np.abs(d).max() < MAX_DIFF and snr > MIN_SNR_DB, (precision, np.abs(d).max(), snr)
        assert np.abs(d).max() > 0  # the weights really changed
        # The compiled step takes the stored weights as arguments (not float32 constants).
        stored = s._bound[1].args[0]
        assert is_quantized(stored)
        # Hop by hop (the same traversal, K = 1) gives what the chunks give.
        y1 = s.run(variables, x[:, :3000], flush=False, hop_times=[])
        np.testing.assert_allclose(y1[:, :1000], y[:, :1000], atol=1e-5, rtol=0)


def test_int8_step_reads_int8_and_many_streams_match_one():
    model = get_model("crn-tiny")
    x = _signal(3200)
    variables = _trained_like(model, jnp.asarray(x))
    s = Streamer(model, precision="int8")
    state = s.init_stream(variables, 1)
    hop = jnp.asarray(x[:, : s.hop])
    s.stream_step(variables, state, hop)
    fn, (stored,) = s._bound[1].func, s._bound[1].args
    hlo = fn.lower(stored, state, hop).as_text()
    assert "xi8>" in hlo  # int8 weights enter the program
    ms = MultiStreamer(s, variables)
    a, b = ms.join(), ms.join()
    hops = x[0, : 8 * s.hop].reshape(8, s.hop)
    outs, st = [], state
    for h in hops:
        y = ms.step({a: h, b: h[::-1]})
        ref, st = s.stream_step(variables, st, jnp.asarray(h[None]))
        outs.append((y[a], np.asarray(ref)[0]))
    np.testing.assert_allclose(np.stack([o for o, _ in outs]), np.stack([r for _, r in outs]), atol=1e-5, rtol=0)
