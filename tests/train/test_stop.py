"""The stop signal: SIGTERM/SIGINT recorded instead of raised, the previous handlers put back."""
from __future__ import annotations

import os
import signal

from jaxse.train.stop import StopSignal


def test_signal_is_recorded_and_the_old_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stop = StopSignal()
    stop.install()
    try:
        assert not stop.requested() and stop.signal is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        assert not stop.requested(defer=True)  # arrived while the next batch was read: after that batch's step
        assert stop.requested()
    finally:
        stop.restore()
    assert {s: signal.getsignal(s) for s in before} == before
