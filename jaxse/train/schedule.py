"""The host-side learning-rate rule of ``optim.schedule=plateau`` (the cosine schedule is optax's, inside the
optimiser: ``jaxse.optim.make_optimizer``)."""
from __future__ import annotations


class Plateau:
    """After ``patience`` validations without a ``value`` better by more than 1e-3 than the best so far, the rate
    is multiplied by ``factor`` (not below ``min_lr``) and the count starts again.

    ``state()`` -> ``{"best", "bad_evals"}``, JSON, stored in every checkpoint's meta as ``schedule``; a resume
    passes it back as ``saved``.
    """

    def __init__(self, *, patience: int, factor: float, min_lr: float, saved: dict | None = None):
        self.patience, self.factor, self.min_lr = patience, factor, min_lr
        saved = saved or {}
        self.best, self.bad_evals = saved.get("best"), saved.get("bad_evals", 0)

    def state(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def update(self, value: float, lr: float) -> float | None:
        """Record one validation ``value`` (larger is better); returns the new rate, or None to keep ``lr``."""
        if self.best is None or value > self.best + 1e-3:
            self.best, self.bad_evals = value, 0
            return None
        self.bad_evals += 1
        if self.bad_evals < self.patience:
            return None
        self.bad_evals = 0
        return max(lr * self.factor, self.min_lr)
