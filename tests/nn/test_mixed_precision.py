"""``compute_dtype="bfloat16"``: the complex layers' and LSTMs' real products in bfloat16 with float32 accumulation,
parameters and optimiser state complex64; the model stays close to float32, trains, and streams."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import losses, nn, optim
from jaxse.models import get_model


def _signals():
    rng = np.random.default_rng(0)
    clean = jnp.asarray(0.3 * np.sin(np.arange(2400) * 0.05)[None].repeat(2, 0), jnp.float32)
    return clean + jnp.asarray(0.1 * rng.standard_normal(clean.shape), jnp.float32), clean


@pytest.mark.parametrize("lowering", ["matmul", "xla"])
def test_bfloat16_products_close_same_parameters(lowering):
    noisy, _ = _signals()
    ref_model = get_model("dccrn-cl-tiny", conv_lowering=lowering)
    model = get_model("dccrn-cl-tiny", conv_lowering=lowering, compute_dtype="bfloat16")
    variables = jax.jit(ref_model.init)(jax.random.PRNGKey(0), noisy)
    assert jax.tree_util.tree_structure(jax.jit(model.init)(jax.random.PRNGKey(0), noisy)) == \
        jax.tree_util.tree_structure(variables)
    y_ref = ref_model.apply(variables, noisy, train=True, mutable=["batch_stats"])[0]
    y = model.apply(variables, noisy, train=True, mutable=["batch_stats"])[0]
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=0.05 * float(jnp.abs(y_ref).max()))


def test_bfloat16_training_keeps_complex_params_and_float_state():
    noisy, clean = _signals()
    model = get_model("dccrn-cl-tiny", conv_lowering="matmul", compute_dtype="bfloat16")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), noisy)
    tx = optim.make_optimizer(lr=3e-3)
    params, stats = variables["params"], variables["batch_stats"]
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


def _dot_operand_dtypes(fn, *args) -> set:
    """dtypes of the operands of every ``dot_general`` in ``fn``'s jaxpr (scans and calls included)."""
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.update(str(v.aval.dtype) for v in eqn.invars)
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (list, tuple)) else [p]):
                    if hasattr(sub, "jaxpr"):
                        walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_bfloat16_lstm_products_close_and_state_float32(dtype):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 30, 12)) + (1j * rng.standard_normal((2, 30, 12)) if dtype ==
                    jnp.complex64 else 0), dtype)
    ref = nn.LSTMStack(16, 2, dtype)
    lp = nn.LSTMStack(16, 2, dtype, compute_dtype="bfloat16")
    variables = ref.init(jax.random.PRNGKey(0), x)
    y_ref, c_ref = ref.apply(variables, x)
    y, carries = lp.apply(variables, x)
    assert y.dtype == y_ref.dtype and all(c.dtype == jnp.float32 for c in jax.tree_util.tree_leaves(carries))
    err = float(jnp.abs(y - y_ref).max())
    assert 0 < err < 0.03 * float(jnp.abs(y_ref).max())  # moved (bfloat16 is in effect), but only by rounding
    assert _dot_operand_dtypes(lambda v, x: lp.apply(v, x)[0], variables, x) == {"bfloat16"}
    assert _dot_operand_dtypes(lambda v, x: ref.apply(v, x)[0], variables, x) == {"float32"}


@pytest.mark.parametrize("name", ["crn-tiny", "dccrn-cl-tiny"])
def test_bfloat16_streaming_step_close_to_float32(name):
    from jaxse.inference.streamer import Streamer

    model = get_model(name)
    x = (0.1 * np.random.default_rng(3).standard_normal((1, 2400))).astype(np.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(x))
    y_ref = Streamer(model).run(variables, x)
    fast = Streamer(model, compute_dtype="bfloat16")
    assert fast.model.compute_dtype == "bfloat16"
    y = fast.run(variables, x)
    diff_db = 10 * np.log10(np.sum(y_ref ** 2) / np.sum((y - y_ref) ** 2))
    assert 25 < diff_db < 120, diff_db  # different arithmetic, the same enhancement
    assert Streamer(model, compute_dtype="float32").model.compute_dtype is None
    with pytest.raises(ValueError, match="compute_dtype"):
        Streamer(model, compute_dtype="float16")
