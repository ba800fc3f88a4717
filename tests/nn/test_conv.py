"""Every lowering of Conv2D's convolution (XLA convolution, patches-times-weights matmuls with or without the
time-shift form) and of the complex product (native, gauss, real) gives the same result and the same gradients;
``conv_lowering="auto"`` picks by phase and backend."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import nn
from jaxse.models import get_model

# (x shape, kernel shape, stride_f, pad_f, dilate_f): DCCRN encoder/decoder, CRN encoder/decoder, odd geometries.
CASES = [
    ((2, 5, 16, 1), (2, 5, 1, 4), 2, (2, 2), 1),
    ((2, 5, 9, 3), (2, 3, 3, 4), 2, (0, 0), 1),
    ((2, 6, 4, 6), (2, 5, 6, 3), 1, (2, 3), 2),
    ((1, 4, 7, 2), (2, 5, 2, 3), 1, (4, 5), 2),
    ((1, 4, 4, 2), (2, 3, 2, 3), 1, (2, 2), 2),
    ((1, 4, 9, 2), (2, 3, 2, 3), 1, (2, 3), 2),
    ((1, 3, 5, 2), (1, 4, 2, 2), 1, (1, 0), 3),
]


def _rand(rng, shape, cplx):
    a = rng.standard_normal(shape).astype(np.float32)
    if cplx:
        a = a + 1j * rng.standard_normal(shape).astype(np.float32)
    return jnp.asarray(a)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_conv_lowerings_agree(case, cplx):
    rng = np.random.default_rng(0)
    xs, ws, s, p, d = case
    x, w = _rand(rng, xs, cplx), _rand(rng, ws, cplx)
    conv2d = jax.jit(nn.conv2d, static_argnums=(2, 3, 4, 5, 6))  # one compile per variant, not per op
    matmul = jax.jit(nn.conv_matmul, static_argnums=(2, 3, 4, 5, 6))
    ref = conv2d(x, w, s, p, d, "native", "xla")
    for impl in nn.IMPLS:
        for shift in (True, False):
            y = matmul(x, w, s, p, d, impl, shift)
            assert y.shape == ref.shape and y.dtype == ref.dtype
            np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(np.asarray(conv2d(x, w, s, p, d, impl, "xla")), np.asarray(ref),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_conv_lowering_gradients_agree(case, cplx):
    """The matmul lowering's hand-written backward pass (adjoint convolution for the input, regathered patches for
    the kernel; strided, transposed, real and complex) gives XLA's gradients, and autodiff's of its own forward."""
    rng = np.random.default_rng(1)
    xs, ws, s, p, d = case
    x, w = _rand(rng, xs, cplx), _rand(rng, ws, cplx)

    def loss(x, w, impl, lowering, lean=True):
        y = nn.conv2d(x, w, s, p, d, impl, lowering) if lowering == "xla" else \
            nn.conv_matmul(x, w, s, p, d, impl, lean=lean)
        return jnp.sum(y.real ** 2 + 0.5 * y.imag) if cplx else jnp.sum(y ** 2 + 0.5 * y)

    grad = jax.jit(jax.grad(loss, (0, 1)), static_argnums=(2, 3, 4))  # one compile per variant, not per op
    ref = grad(x, w, "native", "xla")
    for impl in nn.IMPLS:
        for lean in (True, False):
            got = grad(x, w, impl, "matmul", lean)
            for g, r in zip(got, ref):
                assert g.dtype == r.dtype
                np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-4)
    got = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.abs(nn.conv2d(x, w, s, p, d, "gauss", "matmul")) ** 2),
                           (0, 1)))(x, w)
    ref = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.abs(nn.conv2d(x, w, s, p, d, "native", "xla")) ** 2),
                           (0, 1)))(x, w)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-3)


def test_model_gradients_same_under_every_lowering():
    x = jnp.asarray(0.1 * np.random.default_rng(3).standard_normal((2, 1200)), jnp.float32)
    model = get_model("dccrn-cl-tiny")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)

    def grads(lowering):
        m = get_model("dccrn-cl-tiny", conv_lowering=lowering)

        def loss(p):
            y, _ = m.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
            return jnp.mean((y - x) ** 2)
        return jax.jit(jax.grad(loss))(variables["params"])

    ref, got = grads("xla"), grads("matmul")
    for g, r in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-3, atol=1e-6 + 1e-3 * float(jnp.abs(r).max()))


def test_unknown_lowering():
    x = jnp.zeros((1, 2, 4, 1))
    with pytest.raises(ValueError, match="conv lowering"):
        nn.conv2d(x, jnp.zeros((2, 3, 1, 1)), lowering="fft")


@pytest.mark.parametrize("name", ["dccrn-cl-tiny", "crn-tiny"])
def test_models_same_under_every_lowering(name):
    x = jnp.asarray(0.1 * np.random.default_rng(2).standard_normal((2, 1200)), jnp.float32)
    model = get_model(name)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    outs = {}
    for lowering in nn.CONV_LOWERINGS:
        m = get_model(name, conv_lowering=lowering)
        outs[lowering] = np.asarray(jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"])[0])(
            variables, x))
    np.testing.assert_allclose(outs["matmul"], outs["xla"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs["auto"], outs["matmul"], rtol=1e-4, atol=1e-5)


def test_auto_lowering_by_phase_and_backend():
    on_cpu = jax.default_backend() == "cpu"
    assert nn.resolve_conv_lowering("auto", train=True) == ("matmul" if on_cpu else "xla")
    assert nn.resolve_conv_lowering("auto", train=False) == "xla"
    for lowering in ("matmul", "xla"):
        assert nn.resolve_conv_lowering(lowering, train=True) == lowering
    assert get_model("dccrn-cl-tiny").conv_lowering == "auto" == get_model("crn-tiny").conv_lowering


def test_conv_lowerings_agree_on_layer():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (2, 5, 16, 3)) + 1j * jax.random.normal(jax.random.PRNGKey(1), (2, 5, 16, 3))
    x = x.astype(jnp.complex64)
    conv = nn.Conv2D(4, (2, 5), stride_f=2, pad_f=(2, 2), dtype=jnp.complex64, impl="native")
    v = conv.init(key, x)
    ref = conv.apply(v, x)
    for impl in ("gauss", "real"):
        np.testing.assert_allclose(conv.clone(impl=impl).apply(v, x), ref, atol=1e-5)
    for lowering in ("matmul", "xla"):
        y = conv.clone(conv_lowering=lowering).apply(v, x)
        assert y.dtype == jnp.complex64
        np.testing.assert_allclose(y, ref, atol=1e-5)


def test_lean_backward_plans_less_memory_than_autodiff():
    """XLA's planned temporary memory for the gradient of a 3-layer strided complex conv stack: the lean backward
    (operands only, products one after the other, materialised outputs) needs clearly less than autodiff of the
    same forward pass (measured 106 vs 135 MiB; before the sequencing and materialisation both were 135)."""
    from jaxse.nn.conv import conv_matmul

    def stack(lean):
        def f(ws, x):
            for w in ws:
                x = conv_matmul(x, w, 2, (2, 2), 1, "gauss", lean=lean)
                x = jnp.tanh(x.real) + 1j * jnp.tanh(x.imag)
            return jnp.sum(jnp.abs(x) ** 2)
        return f

    rng = np.random.default_rng(0)
    c = [4, 16, 32, 64]
    ws = [jnp.asarray(0.1 * (rng.standard_normal((2, 5, a, b)) + 1j * rng.standard_normal((2, 5, a, b)))
                      .astype(np.complex64)) for a, b in zip(c[:-1], c[1:])]
    x = jnp.asarray((rng.standard_normal((4, 101, 256, 4)) + 1j * rng.standard_normal((4, 101, 256, 4)))
                    .astype(np.complex64))
    temp = {lean: jax.jit(jax.grad(stack(lean))).lower(ws, x).compile().memory_analysis().temp_size_in_bytes
            for lean in (True, False)}
    assert temp[True] < 0.85 * temp[False], temp


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_materialize_is_the_identity_with_identity_gradient(dtype):
    from jaxse.nn.remat import materialize

    rng = np.random.default_rng(1)
    y = rng.standard_normal((3, 7)).astype(np.float32) * 1e3
    y = jnp.asarray(y + 1j * y[::-1] if dtype == np.complex64 else y).astype(dtype)
    out = jax.jit(materialize)(y)
    assert out.dtype == y.dtype and np.array_equal(np.asarray(out), np.asarray(y))
    g = jax.grad(lambda v: jnp.sum(jnp.real(materialize(v) * jnp.conj(v))))(y)
    g_ref = jax.grad(lambda v: jnp.sum(jnp.real(v * jnp.conj(v))))(y)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-6)


@pytest.mark.parametrize("lowering", ["matmul", "xla"])
def test_channel_blocks_and_time_padding_inside_the_convolution(lowering):
    """``Conv2D(x=(a, b), time_pad=(l, r))`` equals the convolution of the padded concatenation, in values and in
    the gradients of both blocks."""
    rng = np.random.default_rng(4)
    a, b = _rand(rng, (2, 5, 8, 3), True), _rand(rng, (2, 5, 8, 2), True)
    layer = nn.Conv2D(4, (2, 3), stride_f=1, pad_f=(1, 1), dtype=jnp.complex64, conv_lowering=lowering)
    variables = layer.init(jax.random.PRNGKey(0), (a, b), time_pad=(1, 2))

    def blocks(a, b):
        return layer.apply(variables, (a, b), True, time_pad=(1, 2))

    def outside(a, b):
        x = jnp.pad(jnp.concatenate([a, b], -1), [(0, 0), (1, 2), (0, 0), (0, 0)])
        return layer.apply(variables, x, True)

    y = blocks(a, b)
    assert y.shape == (2, 7, 8, 4)
    np.testing.assert_allclose(np.asarray(y), np.asarray(outside(a, b)), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda a, b: jnp.sum(jnp.abs(f(a, b)) ** 2)  # noqa: E731
    for g, r in zip(jax.grad(loss(blocks), (0, 1))(a, b), jax.grad(loss(outside), (0, 1))(a, b)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]])
def test_matmul_lowering_in_batch_chunks(case, monkeypatch):
    """The matmul lowering gathers patches a batch chunk at a time (uneven chunks included) in the forward pass,
    the input gradient and the kernel gradient: the same values and gradients as XLA's convolution."""
    import jaxse.nn.conv as conv

    rng = np.random.default_rng(5)
    xs, ws, s, p, d = case
    x, w = _rand(rng, (3,) + xs[1:], True), _rand(rng, ws, True)
    monkeypatch.setattr(conv, "PATCH_BYTES", x.size * 4 * ws[1] // s // 2)  # float32 operands: chunks of 2 and 1
    seen = {"forward": set(), "kernel": set()}
    for name, kind in (("_matmul_conv_whole", "forward"), ("_kernel_grad_chunk", "kernel")):
        fn = getattr(conv, name)
        pos = 1 if kind == "kernel" else 0  # the chunk's input (``_kernel_grad_chunk`` takes the sum so far first)
        monkeypatch.setattr(conv, name,
                            lambda *a, _fn=fn, _k=kind, _i=pos, **k: seen[_k].add(a[_i].shape[0]) or _fn(*a, **k))
    loss = lambda lowering: lambda x, w: jnp.sum(jnp.abs(nn.conv2d(x, w, s, p, d, "gauss", lowering)) ** 2)  # noqa
    np.testing.assert_allclose(np.asarray(nn.conv2d(x, w, s, p, d, "gauss", "matmul", train=True)),
                               np.asarray(nn.conv2d(x, w, s, p, d, "gauss", "xla")), rtol=1e-5, atol=1e-4)
    got = jax.grad(loss("matmul"), (0, 1))(x, w)
    ref = jax.grad(loss("xla"), (0, 1))(x, w)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-3)
    assert seen["forward"] >= {1, 2} and seen["kernel"] == {1, 2}, seen  # whole batches (3) are never gathered
    assert 3 not in seen["forward"]


def test_convolution_keeps_its_input_blocks_not_a_padded_concatenation(capsys):
    """For the backward pass a decoder convolution on ``(previous, skip)`` with ``time_pad`` keeps the two blocks
    (which the training step holds anyway) and its kernel, not a padded copy of their concatenation (which padding
    outside the layer makes it keep: 0.3 GB of a DCCRN-CL step at batch 8 x 4 s)."""
    from jax.ad_checkpoint import print_saved_residuals

    a, b = jnp.ones((2, 5, 8, 3), jnp.complex64), jnp.ones((2, 5, 8, 2), jnp.complex64)
    layer = nn.Conv2D(4, (2, 3), pad_f=(1, 1), dtype=jnp.complex64, conv_lowering="matmul")
    variables = layer.init(jax.random.PRNGKey(0), (a, b), time_pad=(1, 0))

    def kept(f):
        capsys.readouterr()
        print_saved_residuals(lambda a, b: jnp.sum(jnp.abs(f(a, b)) ** 2), a, b)
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()]

    inside = kept(lambda a, b: layer.apply(variables, (a, b), True, time_pad=(1, 0)))
    outside = kept(lambda a, b: layer.apply(
        variables, jnp.pad(jnp.concatenate([a, b], -1), [(0, 0), (1, 0), (0, 0), (0, 0)]), True))
    assert "c64[2,5,8,3]" in inside and "c64[2,5,8,2]" in inside and "c64[2,3,5,4]" in inside
    assert "c64[2,6,8,5]" not in inside and "c64[2,6,8,5]" in outside
