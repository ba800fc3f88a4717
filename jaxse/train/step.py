"""The update step: a pure per-device ``train_step(state, batch) -> (state, metrics)``, mapped over a device mesh.

The update is written for ONE device (the pmap programming model: forward, loss, gradient, ``lax.pmean`` of the
gradients over the ``"data"`` axis, BatchNorm statistics averaged over the same axis inside the model, optimiser
update) and mapped over a ``Mesh`` of every device of every host with ``jax.shard_map`` under ``jax.jit``. A
non-finite loss or gradient never reaches the parameters: the update is skipped inside the step and counted.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxse import losses
from jaxse.train.distributed import AXIS


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; replicated on every device.

    ``params``/``batch_stats``: model variables; ``opt_state``: optax state (holds the learning rate);
    ``step``: int32 number of steps taken; ``rng``: PRNG key (per-step keys are ``fold_in(rng, step)``);
    ``nonfinite``: consecutive skipped updates; ``skipped``: skipped updates in total.
    """

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jnp.ndarray
    rng: jnp.ndarray
    nonfinite: jnp.ndarray
    skipped: jnp.ndarray


def create_state(model, tx, rng, samples: int = 1600) -> TrainState:
    """Fresh ``TrainState`` (parameters from ``model.init`` on a ``[1, samples]`` dummy input)."""
    init_rng, rng = jax.random.split(rng)
    variables = model.init(init_rng, jnp.zeros((1, samples), jnp.float32))
    params = variables["params"]
    return TrainState(params=params, batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), rng=rng, nonfinite=jnp.zeros((), jnp.int32),
                      skipped=jnp.zeros((), jnp.int32))


def _all_finite(tree) -> jnp.ndarray:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _device_step(state: TrainState, batch: dict, *, model, tx, loss_fn, axis_name: str | None):
    """One update on one device's rows ``batch["noisy"|"clean"]: float32[rows, samples]``.

    Gradients and the loss are averaged over ``axis_name`` (all devices), so every device applies the same update
    and the state stays replicated. Returns ``(new_state, metrics)`` with device-invariant metrics.
    """

    variables = lambda params: {"params": params, "batch_stats": state.batch_stats}  # noqa: E731

    def loss_of(params):
        if getattr(loss_fn, "needs_speech_part", False):  # the mask applied to the clean speech too
            (enhanced, part), updates = model.apply(variables(params), batch["noisy"], batch["clean"], train=True,
                                                    mutable=["batch_stats"], method="with_speech_part")
            per_example = loss_fn(enhanced, batch["clean"], part, batch["noisy"])
        else:
            enhanced, updates = model.apply(variables(params), batch["noisy"], train=True, mutable=["batch_stats"])
            per_example = loss_fn(enhanced, batch["clean"])
        return jnp.mean(per_example), (updates.get("batch_stats", {}), losses.si_snr(enhanced, batch["clean"]))

    (loss, (batch_stats, sisnr)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    sisnr = jnp.mean(sisnr)
    if axis_name is not None:
        grads, loss, sisnr = lax.pmean((grads, loss, sisnr), axis_name)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    def pick(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    new_state = state.replace(
        params=pick(params, state.params), opt_state=pick(opt_state, state.opt_state),
        batch_stats=pick(batch_stats, state.batch_stats), step=state.step + 1,
        nonfinite=jnp.where(finite, 0, state.nonfinite + 1), skipped=state.skipped + jnp.where(finite, 0, 1))
    metrics = {"loss": loss, "si_snr": sisnr, "grad_norm": optax.global_norm(grads),
               "finite": finite.astype(jnp.int32)}
    return new_state, metrics


def make_train_step(model, tx, loss_fn, mesh: Mesh):
    """Pure ``train_step(state, batch) -> (state, metrics)`` over every device of ``mesh``, jitted, state donated.

    ``model`` must have been built with ``axis_name="data"`` so that BatchNorm averages statistics over devices.
    """
    step = partial(_device_step, model=model, tx=tx, loss_fn=loss_fn, axis_name=AXIS)
    mapped = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=0)


def make_eval_step(model, mesh: Mesh):
    """``eval_step(variables, noisy, clean) -> (enhanced, si_snr_enhanced, si_snr_noisy)``, rows split over devices."""

    def fn(variables, noisy, clean):
        enhanced = model.apply(variables, noisy, train=False)
        return enhanced, losses.si_snr(enhanced, clean), losses.si_snr(noisy, clean)

    rows = NamedSharding(mesh, P(AXIS))
    return jax.jit(fn, out_shardings=(rows, rows, rows))
