"""Dilated causal convolutions and the TCN stack: the receptive field measured by gradients equals the formula, no
output depends on a future frame, frame-by-frame streaming equals the offline pass, complex stays complex."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse.nn import TCN, CausalConv1D, causal_conv1d, receptive_field


def _input(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if dtype == jnp.complex64:
        x = x + 1j * rng.standard_normal(shape)
    return jnp.asarray(x, dtype)


def _dependence(fn, x, t0):
    """``float64[time]``: how much output frame ``t0`` of ``fn(x)`` moves with each input frame (|gradient|)."""
    g = jax.grad(lambda x: jnp.sum(jnp.abs(fn(x)[0, t0]) ** 2))(x)
    return np.abs(np.asarray(g[0])).sum(-1)


def _seen(dep):
    """The input frames with a non-zero gradient."""
    return np.flatnonzero(dep > 0)


@pytest.mark.parametrize("k,d", [(2, 1), (3, 1), (2, 3), (3, 2), (5, 4)])
def test_conv_receptive_field_is_the_formula_and_causal(k, d):
    """Output frame t0 of one causal convolution sees exactly the frames t0 - (k-1-j) d, j = 0 .. k-1."""
    t, t0, c = 40, 30, 2
    x = _input((1, t, c), jnp.float32)
    w = _input((k, c, 3), jnp.float32, seed=1)
    seen = _seen(_dependence(lambda x: causal_conv1d(x, w, d)[0], x, t0))
    np.testing.assert_array_equal(seen, t0 - (k - 1 - np.arange(k)) * d)
    assert seen.max() - seen.min() + 1 == receptive_field(k, [d])


def test_conv_matches_the_definition():
    """``y[t] = b + sum_j w[j] x[t - (k-1-j) d]`` with zeros before the first frame, real and complex."""
    k, d, t = 3, 2, 11
    for dtype in (jnp.float32, jnp.complex64):
        x = _input((2, t, 3), dtype)
        layer = CausalConv1D(4, k, d, dtype=dtype, param_dtype=dtype)
        v = layer.init(jax.random.PRNGKey(0), x)
        y, _ = layer.apply(v, x)
        w, b = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])
        xn = np.asarray(x)
        ref = np.zeros((2, t, 4), xn.dtype) + b
        for tt in range(t):
            for j in range(k):
                src = tt - (k - 1 - j) * d
                if src >= 0:
                    ref[:, tt] += xn[:, src] @ w[j]
        assert y.dtype == dtype and v["params"]["kernel"].dtype == dtype
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,dilations", [(2, (1, 2, 4)), (3, (1, 2, 4, 8)), (3, (1, 3))])
def test_stack_receptive_field_is_the_formula_and_causal(k, dilations):
    """A TCN's output frame t0 depends on input frames t0 - R + 1 .. t0 (R = 1 + sum (k-1) d_i), none later."""
    r = receptive_field(k, dilations)
    t0 = r + 3
    x = _input((1, t0 + 6, 2), jnp.float32)
    model = TCN(4, k, dilations)
    v = model.init(jax.random.PRNGKey(1), x)
    seen = _seen(_dependence(lambda x: model.apply(v, x)[0], x, t0))
    assert seen.max() == t0, "output depends on a future frame" if seen.max() > t0 else "misses the current frame"
    assert t0 - seen.min() + 1 == r == model.receptive_field()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_streaming_equals_offline(dtype):
    """Frame by frame (state = the last (k-1) d frames per block) and in chunks: the offline output to 1e-5."""
    model = TCN(6, 3, (1, 2, 4), dtype=dtype, param_dtype=dtype)
    t = 24
    x = _input((2, t, 3), dtype)
    v = model.init(jax.random.PRNGKey(2), x)
    assert all(p.dtype == dtype for p in jax.tree_util.tree_leaves(v["params"]) if p.ndim > 0)
    offline, _ = model.apply(v, x)
    assert offline.dtype == dtype

    step = jax.jit(lambda v, x_t, s: model.apply(v, x_t, s, method=TCN.step))
    state = model.initial_state(2)
    assert [s.shape for s in state] == [(2, 2, 6), (2, 4, 6), (2, 8, 6)]
    frames = []
    for i in range(t):
        y_t, state = step(v, x[:, i], state)
        frames.append(y_t)
    np.testing.assert_allclose(np.asarray(jnp.stack(frames, 1)), np.asarray(offline), rtol=1e-5, atol=1e-5)

    state, chunks = model.initial_state(2), []
    for lo in range(0, t, 8):
        y, state = model.apply(v, x[:, lo:lo + 8], state)
        chunks.append(y)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(chunks, 1)), np.asarray(offline), rtol=1e-5, atol=1e-5)


def test_complex_layer_uses_every_lowering_alike():
    """The complex product lowerings (``impl``) give the same convolution."""
    x = _input((1, 9, 3), jnp.complex64)
    w = _input((3, 3, 2), jnp.complex64, seed=3)
    ref, _ = causal_conv1d(x, w, 2, impl="native")
    for impl in ("gauss", "real"):
        y, _ = causal_conv1d(x, w, 2, impl=impl)
        assert y.dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_wrong_state_shape_is_refused():
    x = _input((1, 4, 3), jnp.float32)
    w = _input((3, 3, 2), jnp.float32)
    with pytest.raises(ValueError, match="state must be"):
        causal_conv1d(x, w, 2, state=jnp.zeros((1, 3, 3)))
