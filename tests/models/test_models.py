import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import latency, losses, nn, optim
from jaxse.models import PAPER_PARAMS, count_params, get_model, init_shapes
from jaxse.signal import SAMPLE_RATE

TINY = ["crn-tiny", "dccrn-cl-tiny", "dccrn-e-tiny"]
KEY = jax.random.PRNGKey(0)


def _audio(n, batch=2, seed=0):
    return jnp.asarray(0.1 * np.random.default_rng(seed).standard_normal((batch, n)), jnp.float32)


def _complex_leaves(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if jnp.iscomplexobj(x)]


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("n", [1600, 3001])
def test_tiny_shapes_and_dtypes(name, n):
    model = get_model(name)
    x = _audio(n)
    variables = jax.jit(model.init)(KEY, x)
    y = jax.jit(model.apply)(variables, x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(y)))
    y_train, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert y_train.shape == x.shape
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(
        variables["batch_stats"])
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                                     variables["batch_stats"])
    assert any(jax.tree_util.tree_leaves(changed)), "train=True must update batch_stats"


def test_complex_stays_complex():
    model = get_model("dccrn-cl-tiny")
    x = _audio(2000)
    variables = jax.jit(model.init)(KEY, x)
    params = flax.traverse_util.flatten_dict(variables["params"], sep="/")
    for k, v in params.items():
        if k.split("/")[-1] in ("kernel", "bias", "w_i", "w_h", "b", "beta"):
            assert v.dtype == jnp.complex64, k
    spec = model.apply(variables, model.analysis(x), method="enhance_spectrum")
    assert spec.dtype == jnp.complex64

    def grab(mdl, method_name):
        return isinstance(mdl, (nn.Conv2D, nn.ComplexBatchNorm, nn.PReLU, nn.LSTM))

    _, inter = model.apply(variables, x, capture_intermediates=grab, mutable=["intermediates"])
    inter = inter["intermediates"]
    lstm_out = inter["lstm"]["layer0"]["__call__"][0][0]  # (y, carry) -> y
    assert lstm_out.dtype == jnp.complex64
    # The PReLUs run inside their BatchNorm's call (``activation=``): the BN outputs are the activated maps.
    outs = [v["__call__"][0] for k, v in inter.items() if k.startswith(("encoders", "enc_", "decoders", "dec_"))
            and "__call__" in v]
    assert len(outs) >= 4 * 2 and all(o.dtype == jnp.complex64 for o in outs)
    slopes = [v["slope"][0] for k, v in inter.items() if k.startswith(("enc_acts", "dec_acts"))]
    assert len(slopes) >= 4 and all(s.dtype == jnp.float32 for s in slopes)


@pytest.mark.parametrize("name", ["crn", "dccrn-r", "dccrn-c", "dccrn-e", "dccrn-cl"])
def test_paper_parameter_counts(name):
    n = count_params(init_shapes(get_model(name))["params"])
    tol = {"crn": 0.01, "dccrn-cl": 0.03}.get(name, 0.05)
    assert abs(n / PAPER_PARAMS[name] - 1) <= tol, (name, n)


@pytest.mark.parametrize("name", ["crn", "dccrn-r", "dccrn-c", "dccrn-e", "dccrn-cl"])
def test_full_size_forward(name):
    model = get_model(name)
    x = _audio(4000, batch=1)
    variables = jax.jit(model.init)(KEY, x)
    y = jax.jit(model.apply)(variables, x)
    assert y.shape == x.shape and np.all(np.isfinite(np.asarray(y)))


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="valid names: crn"):
        get_model("dccrn-x")
    with pytest.raises(ValueError, match="unknown option"):
        get_model("crn", lstm_unitz=3)
    with pytest.raises(ValueError, match="float32\\[batch, samples\\]"):
        m = get_model("crn-tiny")
        m.init(KEY, jnp.zeros((1600,)))


def test_signed_mask_can_close_a_loud_bin():
    """Mask ``S``: ``sigmoid(Re M) e^{i Im M} X``. When ``M`` grows with a bin's level (the layers are close to
    homogeneous), the paper's ``E`` gain ``tanh(|M|)`` tends to 1 whatever the direction of ``M``; ``S`` closes the
    bin when ``Re M`` is negative."""
    from jaxse.models.dccrn import apply_mask

    rng = np.random.default_rng(0)
    m = jnp.asarray(rng.standard_normal((2, 7, 9)) + 1j * rng.standard_normal((2, 7, 9)), jnp.complex64)
    x = jnp.asarray(rng.standard_normal((2, 7, 9)) + 1j * rng.standard_normal((2, 7, 9)), jnp.complex64)
    want = (1 / (1 + np.exp(-np.real(m)))) * np.exp(1j * np.imag(m)) * np.asarray(x)
    np.testing.assert_allclose(apply_mask(m, x, "S"), want, rtol=1e-5, atol=1e-6)
    loud = 100.0 * m
    gain_e = np.abs(apply_mask(loud, x, "E")) / np.abs(x)
    gain_s = np.abs(apply_mask(loud, x, "S")) / np.abs(x)
    np.testing.assert_allclose(gain_e, 1.0, atol=1e-3)  # E: every loud bin passes
    closing = np.real(m) < -0.05
    assert closing.sum() > 20 and gain_s[closing].max() < 0.01 and gain_s[np.real(m) > 0.05].min() > 0.99
    with pytest.raises(ValueError, match="valid: E, C, R, S"):
        apply_mask(m, x, "Q")
    model = get_model("dccrn-cl-tiny", mask="S")
    audio = _audio(1600)
    y = model.apply(model.init(KEY, audio), audio)
    assert y.shape == audio.shape and bool(jnp.isfinite(y).all())


def test_compressed_features_bound_the_range_the_network_sees():
    """``compress=c``: the network's input is ``|X|^c e^{i angle X}`` (a bin 40 dB louder is 12 dB louder to the network
    at c = 0.3), the phase and the parameters unchanged; the mask still multiplies the linear spectrum."""
    spec = jnp.asarray(np.random.default_rng(0).standard_normal((1, 5, 257, 2)).astype(np.float32) @ np.array([1, 1j]))
    spec = spec.astype(jnp.complex64)
    plain, comp = get_model("dccrn-cl-tiny"), get_model("dccrn-cl-tiny", compress=0.3)
    f1 = plain.apply({}, spec, method=plain.to_features)
    f3 = comp.apply({}, spec, method=comp.to_features)
    np.testing.assert_allclose(np.abs(f3), np.abs(f1) ** 0.3, rtol=1e-4)
    np.testing.assert_allclose(np.angle(f3), np.angle(f1), atol=1e-4)
    loud = comp.apply({}, 100.0 * spec, method=comp.to_features)
    np.testing.assert_allclose(np.abs(loud), 100.0 ** 0.3 * np.abs(f3), rtol=1e-4)
    x = _audio(1600)
    v = plain.init(KEY, x)
    assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(comp.init(KEY, x))
    assert not np.allclose(plain.apply(v, x), comp.apply(v, x), atol=1e-3)  # the option reaches the network
    with pytest.raises(ValueError, match="compress must be in"):
        get_model("dccrn-cl-tiny", compress=0.0).init(KEY, x)


@pytest.mark.parametrize("name,kw,lookahead_frames", [
    ("crn-tiny", {}, 0),
    ("dccrn-cl-tiny", {"decoder": "causal"}, 0),
    ("dccrn-cl-tiny", {"decoder": "paper"}, 3),
    ("dccrn-e-tiny", {"decoder": "causal"}, 0),
])
def test_measured_latency(name, kw, lookahead_frames):
    model = get_model(name, **kw)
    assert model.lookahead_frames == lookahead_frames
    variables = jax.jit(model.init)(KEY, _audio(1600))
    measured = latency.measure_lookahead(lambda a: model.apply(variables, a), samples=4000, start=3000,
                                         sweep=model.hop)
    # window - 2 (zero first tap of the periodic window; the sample itself) + network look-ahead. Through several
    # look-ahead layers the first few samples of the reach (window taps ~1e-4) can round to no change at all.
    bound = model.win_length - 2 + lookahead_frames * model.hop
    assert bound - 8 <= measured <= bound
    assert measured <= model.latency_samples


def test_full_dccrn_latency_figures():
    paper, causal = get_model("dccrn-cl", decoder="paper"), get_model("dccrn-cl", decoder="causal")
    assert paper.latency_ms == 62.5 and causal.latency_ms == 25.0
    # DNS Challenge real-time rule: frame + hop + look-ahead <= 40 ms.
    assert causal.latency_ms + 1000 * causal.hop / SAMPLE_RATE <= 40
    assert get_model("crn").latency_ms == 20.0


def test_full_dccrn_causal_measured():
    model = get_model("dccrn-cl", decoder="causal")
    variables = jax.jit(model.init)(KEY, _audio(1600, batch=1))
    measured = latency.measure_lookahead(jax.jit(lambda a: model.apply(variables, a)), samples=3200, start=2400,
                                         sweep=100)
    assert measured == 398  # window - 2 samples: 24.9 ms, under the 25 ms algorithmic latency


@pytest.mark.parametrize("name", TINY)
def test_jit_matches_eager(name):
    model = get_model(name)
    x = _audio(2400)
    variables = jax.jit(model.init)(KEY, x)
    np.testing.assert_allclose(jax.jit(model.apply)(variables, x), model.apply(variables, x), atol=1e-5)


def test_complex_lowerings_agree():
    x = _audio(2400)
    base = get_model("dccrn-cl-tiny", impl="native")
    variables = jax.jit(base.init)(KEY, x)
    ref = jax.jit(base.apply)(variables, x)
    for impl in ("gauss", "real"):
        np.testing.assert_allclose(jax.jit(get_model("dccrn-cl-tiny", impl=impl).apply)(variables, x), ref,
                                   atol=1e-5)


@pytest.mark.parametrize("name,loss", [("crn-tiny", "magnitude_mse"), ("dccrn-cl-tiny", "si_snr"),
                                       ("dccrn-e-tiny", "si_snr")])
def test_few_adam_steps_lower_the_loss(name, loss):
    model = get_model(name)
    rng = np.random.default_rng(0)
    clean = jnp.asarray(np.sin(np.arange(4000) * 0.05)[None].repeat(2, 0) * 0.3, jnp.float32)
    noisy = clean + jnp.asarray(0.1 * rng.standard_normal(clean.shape), jnp.float32)
    variables = jax.jit(model.init)(KEY, noisy)
    params, stats = variables["params"], variables["batch_stats"]
    tx = optim.make_optimizer(lr=3e-3)
    opt = tx.init(params)
    loss_fn = losses.get_loss(loss)

    @jax.jit
    def step(params, stats, opt):
        def f(p):
            y, upd = model.apply({"params": p, "batch_stats": stats}, noisy, train=True, mutable=["batch_stats"])
            return loss_fn(y, clean).mean(), upd["batch_stats"]
        (val, stats), g = jax.value_and_grad(f, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return jax.tree_util.tree_map(lambda a, b: a + b, params, upd), stats, opt, val

    first = None
    for _ in range(15):
        params, stats, opt, val = step(params, stats, opt)
        first = val if first is None else first
    assert float(val) < float(first), (float(first), float(val))
