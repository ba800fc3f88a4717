"""``recompute_in_backward`` keeps values and gradients; the complex layers built on it stay exact."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxse.nn.remat import recompute_in_backward


def _f(x, w, a):
    h = jnp.tanh(x @ w) * a
    return jnp.where(h > 0, h, 0.3 * h), jnp.sum(h ** 2)


def test_values_and_gradients_unchanged():
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.standard_normal((5, 4)), jnp.float32), jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    a = jnp.float32(0.7)
    g = recompute_in_backward(_f)
    for got, ref in zip(g(x, w, a), _f(x, w, a)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))

    def loss(fn):
        return lambda x, w, a: jnp.sum(fn(x, w, a)[0] ** 3) + fn(x, w, a)[1]

    got = jax.jit(jax.grad(loss(g), (0, 1, 2)))(x, w, a)
    ref = jax.grad(loss(_f), (0, 1, 2))(x, w, a)
    for gg, rr in zip(got, ref):
        np.testing.assert_allclose(np.asarray(gg), np.asarray(rr), rtol=1e-5, atol=1e-6)


def test_complex_inputs():
    z = jnp.asarray([1 + 2j, -0.5 + 0.1j, 0.3 - 1j], jnp.complex64)
    fn = lambda z, s: jnp.sum(jnp.abs(z * s) ** 2 + (z * s).real)  # noqa: E731
    s = jnp.complex64(0.5 - 0.25j)
    got = jax.grad(recompute_in_backward(fn), (0, 1))(z, s)
    ref = jax.grad(fn, (0, 1))(z, s)
    for gg, rr in zip(got, ref):
        assert gg.dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(gg), np.asarray(rr), rtol=1e-6)


def _bn_then_prelu(norm_cls, act_cls, fused):
    import flax.linen as fnn

    class Block(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            bn, act = norm_cls(name="bn"), act_cls(name="act")
            return bn(x, True, activation=act) if fused else act(bn(x, True))

    return Block()


def test_batchnorm_with_activation_equals_activation_of_batchnorm():
    """``ComplexBatchNorm``/``SplitBatchNorm`` with ``activation=`` (one backward unit that keeps only the BN input):
    same parameters, outputs, running statistics and gradients as the PReLU applied after the BN."""
    from jaxse.nn import PReLU
    from jaxse.nn.activation import ReImPReLU
    from jaxse.nn.norm import ComplexBatchNorm, SplitBatchNorm

    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.standard_normal((2, 9, 6, 4)) + 1j * rng.standard_normal((2, 9, 6, 4)) + 0.3)
                    .astype(np.complex64))
    for norm_cls, act_cls in [(ComplexBatchNorm, PReLU), (SplitBatchNorm, ReImPReLU)]:
        ref, fused = _bn_then_prelu(norm_cls, act_cls, False), _bn_then_prelu(norm_cls, act_cls, True)
        v = ref.init(jax.random.PRNGKey(0), x)
        assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(fused.init(jax.random.PRNGKey(0), x))
        v = {"params": jax.tree_util.tree_map(lambda p: p + 0.1, v["params"]), "batch_stats": v["batch_stats"]}

        def loss(params, model, x):
            y, st = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, mutable=["batch_stats"])
            return jnp.sum(jnp.abs(y - 0.5) ** 2), (y, st)

        (l_ref, (y_ref, st_ref)), g_ref = jax.value_and_grad(loss, argnums=(0, 2), has_aux=True)(v["params"], ref, x)
        (l_f, (y_f, st_f)), g_f = jax.value_and_grad(loss, argnums=(0, 2), has_aux=True)(v["params"], fused, x)
        np.testing.assert_allclose(np.asarray(y_f), np.asarray(y_ref), rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves((st_f, g_f)), jax.tree_util.tree_leaves((st_ref, g_ref))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_integer_inputs_pass_through():
    """An integer argument (here an index) reaches the recomputation as the integer it was, not materialised into
    a float, and gets a ``float0`` cotangent."""
    f = recompute_in_backward(lambda x, idx: jnp.sin(x[idx]))
    x, idx = jnp.linspace(0.0, 1.0, 5), jnp.array([4, 0, 2])
    g = jax.grad(lambda x: jnp.sum(f(x, idx)))(x)
    want = np.zeros(5, np.float32)
    want[[4, 0, 2]] = np.cos(np.asarray(x)[[4, 0, 2]])
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6)
