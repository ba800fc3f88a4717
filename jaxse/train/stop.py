"""The stop signal: SIGTERM/SIGINT are recorded, not raised, so that the loop stops between steps with a checkpoint,
at the same step on every process."""
from __future__ import annotations

import signal as signal_lib

import jax
import numpy as np

SIGNALS = (signal_lib.SIGTERM, signal_lib.SIGINT)


class StopSignal:
    """``install`` replaces the handlers of SIGTERM and SIGINT, ``restore`` puts the previous ones back.

    ``signal``: the number of the signal received (``"peer"`` when only another process was signalled), or None.
    """

    def __init__(self):
        self.signal = None
        self._previous: dict = {}

    def _record(self, signum, _frame) -> None:
        self.signal = signum

    def install(self) -> None:
        self._previous = {s: signal_lib.signal(s, self._record) for s in SIGNALS}

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal_lib.signal(s, handler)
        self._previous = {}

    def requested(self, defer: bool = False) -> bool:
        """Whether to stop now: a signal was received by any process, and this process does not ``defer`` it (a
        signal that arrived while the next batch was read stops after that batch's step). The answer is the same on
        every process (a collective when there are several)."""
        flag = self.signal is not None and not defer
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            flag = bool(np.any(multihost_utils.process_allgather(np.array([flag]))))
            if flag and self.signal is None:
                self.signal = "peer"
        return flag
