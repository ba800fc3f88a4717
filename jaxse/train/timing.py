"""Where the loop's wall time goes (big_vision's ``chrono``, reduced to what the trainer reports)."""
from __future__ import annotations

import time
from contextlib import contextmanager


class StepTimer:
    """Seconds spent compiling, dispatching steps, reading input and waiting for metrics.

    The first step (tracing + compilation or cache load + the step) is timed on its own; the rest are averaged
    over the steps after it, from the end of the first step to ``summary``.
    """

    def __init__(self):
        self.compile = self.input = self.host = self.blocked = 0.0
        self.first: float | None = None
        self.loop_start = time.perf_counter()

    @contextmanager
    def timing(self, what: str):
        """Add the time of the ``with`` block to ``what`` (``compile``, ``input`` or ``blocked``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, what, getattr(self, what) + time.perf_counter() - t0)

    @contextmanager
    def step(self):
        """Time one dispatched step."""
        t0 = time.perf_counter()
        yield
        t1 = time.perf_counter()
        if self.first is None:
            self.first, self.loop_start = t1 - t0 + self.compile, t1
        else:
            self.host += t1 - t0

    def summary(self, n_timed: int) -> dict:
        """Per-step means over the ``n_timed`` steps after the first (``n_timed > 0``)."""
        return dict(step_seconds=(time.perf_counter() - self.loop_start) / n_timed, input_seconds=self.input / n_timed,
                    host_seconds=self.host / n_timed, blocked_seconds=self.blocked / n_timed,
                    compile_seconds=self.first)

    @staticmethod
    def describe(s: dict) -> str:
        return (f"{s['step_seconds']:.3f} s/step after the first ({s['compile_seconds']:.1f} s: trace + compile or "
                f"cache load); per step: input {1e3 * s['input_seconds']:.1f} ms (overlapped with the device), "
                f"dispatch {1e3 * s['host_seconds']:.1f} ms, metric fetch {1e3 * s['blocked_seconds']:.1f} ms")
