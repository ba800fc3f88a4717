import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxse import optim

TARGET = 3 + 4j


def _loss(z):
    return jnp.abs(z - TARGET) ** 2


def _run(tx, steps=300):
    z = jnp.asarray(0j, jnp.complex64)
    state = tx.init(z)
    for _ in range(steps):
        g = jax.grad(_loss)(z)
        upd, state = tx.update(g, state, z)
        z = optax.apply_updates(z, upd)
    return complex(z)


def test_raw_grad_of_complex_param_is_conjugate_direction():
    g = complex(jax.grad(_loss)(jnp.asarray(0j, jnp.complex64)))
    # Steepest ascent of |z - t|^2 at 0 is 2 (0 - t) = -6 - 8j; JAX returns its conjugate.
    np.testing.assert_allclose(g, np.conj(-6 - 8j), atol=1e-5)


def test_plain_adam_on_raw_gradient_fails_and_ours_converges():
    bad = _run(optax.adam(0.1))
    good = _run(optim.make_optimizer(lr=0.1, clip_norm=None))
    assert abs(good - TARGET) < 1e-2, good
    assert abs(bad - TARGET) > 1.0, bad  # the imaginary part walks away from 4


def test_clipping_and_warmup_keep_direction():
    z = _run(optim.make_optimizer(lr=0.1, clip_norm=1.0, warmup_steps=10))
    assert abs(z - TARGET) < 1e-2


def test_learning_rate_can_be_changed_on_host():
    tx = optim.make_optimizer(lr=1e-3)
    state = tx.init({"w": jnp.zeros(3)})
    assert abs(optim.get_learning_rate(state) - 1e-3) < 1e-9
    state = optim.set_learning_rate(state, 5e-4)
    assert abs(optim.get_learning_rate(state) - 5e-4) < 1e-9


def test_cosine_schedule_warms_up_decays_and_converges():
    tx = optim.make_optimizer(lr=0.1, clip_norm=None, warmup_steps=10, schedule="cosine", total_steps=300,
                              min_lr=1e-3)
    z = jnp.asarray(0j, jnp.complex64)
    state = tx.init(z)
    rates = []
    for _ in range(300):
        upd, state = tx.update(jax.grad(_loss)(z), state, z)
        z = optax.apply_updates(z, upd)
        rates.append(optim.get_learning_rate(state))
    assert rates[0] < rates[9] and abs(max(rates) - 0.1) < 1e-6  # warm-up to the peak
    assert abs(rates[-1] - 1e-3) < 1e-4 and all(a >= b - 1e-9 for a, b in zip(rates[10:], rates[11:]))  # decay
    assert abs(complex(z) - TARGET) < 1e-2  # the complex-gradient convention holds under the schedule too


def test_cosine_schedule_needs_its_length():
    import pytest

    with pytest.raises(ValueError, match="total_steps"):
        optim.make_optimizer(schedule="cosine")
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.make_optimizer(schedule="step")
