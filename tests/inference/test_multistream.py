"""Many streams in one step: each stream's output equals its own single-stream run, whatever joins and leaves around
it; joins within a bucket compile nothing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse.inference.multistream import MultiStreamer, bucket_rows
from jaxse.inference.streamer import Streamer
from jaxse.models import get_model


def _trained_like(model, x):
    """Variables with non-trivial BatchNorm statistics (one training-mode pass)."""
    v = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    return {"params": v["params"], "batch_stats": upd["batch_stats"]}


def _single(streamer, variables, hops, samples):
    """The reference: one stream, hop by hop (``stream_step``)."""
    state = streamer.init_stream(variables, 1, samples)
    outs = []
    for h in hops:
        y, state = streamer.stream_step(variables, state, jnp.asarray(h[None]))
        outs.append(np.asarray(y)[0])
    return np.stack(outs)


def test_bucket_rows():
    assert [bucket_rows(n) for n in (0, 1, 2, 3, 4, 5, 8, 9)] == [1, 1, 2, 4, 4, 8, 8, 16]


@pytest.mark.parametrize("name, kw", [("dccrn-cl-tiny", {"decoder": "paper"}), ("crn-tiny", {})])
def test_streams_joining_and_leaving_equal_their_single_stream_runs(name, kw):
    model = get_model(name, **kw)
    rng = np.random.default_rng(11)
    variables = _trained_like(model, jnp.asarray(0.1 * rng.standard_normal((2, 3000)), jnp.float32))
    streamer = Streamer(model)
    hop = streamer.hop
    # 5 streams: lengths, start hops, finite or open, strength; each idles (takes no hop) at a few random hops.
    specs = []
    for i in range(5):
        n = int(rng.integers(6, 20)) * hop + int(rng.integers(0, hop))
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        finite = i != 2
        total = n + streamer.delay if finite else n
        hops = np.pad(x, (0, -(-total // hop) * hop - n)).reshape(-1, hop)
        specs.append(dict(x=x, hops=hops, samples=n if finite else None, start=int(rng.integers(0, 30)),
                          strength=0.6 if i == 3 else 1.0, idle=set(rng.integers(0, 30, size=3).tolist())))
    ms = MultiStreamer(streamer, variables)
    ids, fed, outs, sizes = {}, {}, {}, set()
    for t in range(200):
        for i, sp in enumerate(specs):
            if t == sp["start"]:
                ids[i] = ms.join(samples=sp["samples"], strength=sp["strength"])
                fed[i], outs[i] = 0, []
        step = {ids[i]: specs[i]["hops"][fed[i]] for i in ids if t not in specs[i]["idle"]}
        if step:
            sizes.add(ms.rows)
        for sid, y in ms.step(step).items():
            i = next(i for i in ids if ids[i] == sid)
            outs[i].append(y)
            fed[i] += 1
            if fed[i] == len(specs[i]["hops"]):
                ms.leave(sid)
                del ids[i]
        if len(outs) == len(specs) and not ids:
            break
    assert not ids and len(outs) == 5
    assert ms.traces == len(sizes) and ms.traces >= 3  # one compilation per bucket used
    for i, sp in enumerate(specs):
        ref = _single(streamer, variables, sp["hops"], sp["samples"])
        if sp["strength"] < 1.0:  # wet/dry mix with the input delayed by the stream's delay
            dry = np.concatenate([np.zeros(streamer.delay, np.float32), sp["hops"].reshape(-1)])
            ref = sp["strength"] * ref + (1 - sp["strength"]) * dry[: ref.size].reshape(ref.shape)
        np.testing.assert_allclose(np.stack(outs[i]), ref, atol=1e-5, rtol=0)
        assert np.abs(ref).max() > 1e-3
    # A finite stream flushed with `delay` zeros equals the offline model to the last sample.
    sp = specs[0]
    y = np.stack(outs[0]).reshape(-1)[streamer.delay: streamer.delay + sp["x"].size]
    offline = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(sp["x"])[None]))[0]
    np.testing.assert_allclose(y, offline, atol=1e-5, rtol=0)


def test_a_join_within_the_bucket_compiles_nothing():
    model = get_model("dccrn-cl-tiny", decoder="causal")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    ms = MultiStreamer(Streamer(model), variables)
    hop = np.full(ms.hop, 0.01, np.float32)
    a, b, c = ms.join(), ms.join(), ms.join()
    assert ms.rows == 4
    ms.step({a: hop, b: hop, c: hop})
    assert ms.traces == 1
    ms.leave(b)
    d = ms.join(samples=5000)  # takes b's row: same bucket, same program
    out = ms.step({a: hop, c: hop, d: hop})
    e = ms.join()
    ms.step({a: hop, e: hop})
    assert ms.traces == 1 and ms.rows == 4 and set(out) == {a, c, d}
    assert out[a].shape == (ms.hop,) and out[a].dtype == np.float32
    for s in (a, c, d):
        ms.leave(s)
    assert ms.rows == 1 and ms.streams == [e]  # moved down to the bucket that fits
    with pytest.raises(KeyError):
        ms.step({a: hop})
    with pytest.raises(ValueError, match="hop"):
        ms.step({e: hop[:-1]})
