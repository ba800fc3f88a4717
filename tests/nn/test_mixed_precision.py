"""``compute_dtype="bfloat16"``: the complex layers' real products in bfloat16 with float32 accumulation, parameters
and optimiser state complex64; the model stays close to float32 and trains."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import losses, nn, optim
from jaxse.models import get_model


@pytest.mark.parametrize("lowering", ["matmul", "xla"])
def test_bfloat16_products_close_and_complex_params(lowering):
    rng = np.random.default_rng(0)
    clean = jnp.asarray(0.3 * np.sin(np.arange(2400) * 0.05)[None].repeat(2, 0), jnp.float32)
    noisy = clean + jnp.asarray(0.1 * rng.standard_normal(clean.shape), jnp.float32)
    ref_model = get_model("dccrn-cl-tiny", conv_lowering=lowering)
    model = get_model("dccrn-cl-tiny", conv_lowering=lowering, compute_dtype="bfloat16")
    variables = jax.jit(ref_model.init)(jax.random.PRNGKey(0), noisy)
    assert jax.tree_util.tree_structure(jax.jit(model.init)(jax.random.PRNGKey(0), noisy)) == \
        jax.tree_util.tree_structure(variables)
    y_ref = ref_model.apply(variables, noisy, train=True, mutable=["batch_stats"])[0]
    y = model.apply(variables, noisy, train=True, mutable=["batch_stats"])[0]
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=0.05 * float(jnp.abs(y_ref).max()))

    tx = optim.make_optimizer(lr=3e-3)
    params, stats, opt = variables["params"], variables["batch_stats"], None
    opt = tx.init(params)

    @jax.jit
    def step(params, stats, opt):
        def f(p):
            out, upd = model.apply({"params": p, "batch_stats": stats}, noisy, train=True, mutable=["batch_stats"])
            return losses.neg_si_snr(out, clean).mean(), upd["batch_stats"]
        (val, stats), g = jax.value_and_grad(f, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return jax.tree_util.tree_map(lambda a, b: a + b, params, upd), stats, opt, val, g

    first = None
    for _ in range(8):
        params, stats, opt, val, grads = step(params, stats, opt)
        first = val if first is None else first
    assert np.isfinite(float(val)) and float(val) < float(first)
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    for k, v in flat.items():
        if k.split("/")[-1] in ("kernel", "bias", "w_i", "w_h", "b", "beta"):
            assert v.dtype == jnp.complex64, k
    for leaf in jax.tree_util.tree_leaves(opt):
        assert leaf.dtype != jnp.bfloat16
    assert all(g.dtype in (jnp.complex64, jnp.float32) for g in jax.tree_util.tree_leaves(grads))


def test_bfloat16_conv_close():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 5, 16, 3)) + 1j * rng.standard_normal((2, 5, 16, 3)), jnp.complex64)
    w = jnp.asarray(rng.standard_normal((2, 5, 3, 4)) + 1j * rng.standard_normal((2, 5, 3, 4)), jnp.complex64)
    ref = nn.conv2d(x, w, 2, (2, 2), 1, "gauss", "xla")
    for lowering in ("matmul", "xla"):
        y = nn.conv2d(x, w, 2, (2, 2), 1, "gauss", lowering, compute_dtype="bfloat16")
        assert y.dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(y), np.asarray(ref), atol=0.05 * float(jnp.abs(ref).max()))
