"""The run's training checkpoints: one object that owns the orbax manager of ``WORKDIR/checkpoints``, what every
checkpoint's metadata holds, and the rule that a step is saved at most once."""
from __future__ import annotations

from pathlib import Path

from jaxse import optim
from jaxse.io import checkpoints


class Checkpointer:
    """Saves training checkpoints (asynchronously; ``finish`` waits and raises a failed write as ``RunError``).

    Every checkpoint's ``meta`` is ``meta`` (model, sample rate, run name, ``init_from``) plus ``schedule`` (the
    plateau rule's state), ``data_position`` (the step: the data stream resumes there) and ``lr``. Build it after the
    restore: that may set damaged checkpoints aside, and the newest remaining one counts as saved.
    """

    def __init__(self, workdir: Path, *, meta: dict, keep: int):
        self.workdir, self.meta = workdir, meta
        self.mgr = checkpoints.manager(workdir, keep=keep)
        self.saved_step = self.mgr.latest_step()

    def save(self, step: int, state, *, schedule: dict, metrics: dict | None = None) -> None:
        """Checkpoint ``state`` at ``step`` unless that step is saved already (a stop right after a checkpoint)."""
        if self.saved_step == step:
            return
        meta = dict(self.meta, schedule=schedule, data_position=step, lr=optim.get_learning_rate(state.opt_state))
        checkpoints.save_training(self.mgr, self.workdir, step, state, meta=meta, metrics=metrics)
        self.saved_step = step

    def finish(self) -> None:
        """Wait for the saves in flight."""
        checkpoints.finish(self.mgr, self.workdir)

    def close(self) -> None:
        self.mgr.close()
