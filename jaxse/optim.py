"""Optimisers, and the one place where complex gradients are turned into descent directions.

``jax.grad`` of a real loss ``L`` with respect to a complex parameter ``z = x + iy`` returns
``dL/dx - i dL/dy``, the *conjugate* of the steepest-ascent direction ``dL/dx + i dL/dy``. optax transformations
expect the ascent direction (they subtract it), so a raw complex gradient walks the imaginary parts uphill.
``conjugate_complex_grads`` fixes this; every optimiser built here starts with it, so code that uses
``make_optimizer`` never sees the raw convention.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def conjugate_complex_grads() -> optax.GradientTransformation:
    """Conjugate complex leaves of the gradient (real leaves pass through)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, updates), state

    return optax.GradientTransformation(init, update)


SCHEDULES = ("plateau", "cosine")


def make_optimizer(*, lr: float = 1e-3, clip_norm: float | None = 5.0, warmup_steps: int = 0,
                   b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0, schedule: str = "plateau",
                   total_steps: int | None = None, min_lr: float = 0.0) -> optax.GradientTransformation:
    """Adam (the paper's optimiser) with global-norm clipping, an optional linear warm-up and a rate schedule.

    ``schedule="plateau"``: a constant rate that a host-side rule ("halve on validation plateau") changes between
    steps without recompiling (the rate is an injected hyper-parameter held in ``opt_state``: ``set_learning_rate``).
    ``schedule="cosine"``: optax's warm-up + cosine decay from ``lr`` to ``min_lr`` at ``total_steps`` (the
    optimiser's own update count drives it, so a resume from ``opt_state`` continues it exactly).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule == "cosine" and not total_steps:
        raise ValueError("schedule='cosine' needs total_steps")

    def adam(learning_rate):
        inner = optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay) if weight_decay else \
            optax.adam(learning_rate, b1=b1, b2=b2)
        if warmup_steps > 0 and schedule == "plateau":
            inner = optax.chain(inner, optax.scale_by_schedule(
                lambda step: jnp.minimum(1.0, (step + 1) / warmup_steps)))
        return inner

    parts = [conjugate_complex_grads()]
    if clip_norm:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if schedule == "cosine":
        rate = optax.warmup_cosine_decay_schedule(
            init_value=lr / max(warmup_steps, 1), peak_value=lr, warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1), end_value=min_lr)
    else:
        rate = lr
    parts.append(optax.inject_hyperparams(adam, hyperparam_dtype=jnp.float32)(learning_rate=rate))
    return optax.chain(*parts)


def _hyperparams(opt_state):
    for s in opt_state:
        if hasattr(s, "hyperparams"):
            return s.hyperparams
    raise ValueError("optimizer state has no injected hyper-parameters (build it with make_optimizer)")


def get_learning_rate(opt_state) -> float:
    return float(_hyperparams(opt_state)["learning_rate"])


def set_learning_rate(opt_state, lr: float):
    """Return ``opt_state`` with a new learning rate (same structure and dtypes, so no recompilation)."""
    hp = _hyperparams(opt_state)
    hp["learning_rate"] = np.asarray(lr, dtype=np.asarray(hp["learning_rate"]).dtype)
    return opt_state
