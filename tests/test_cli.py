"""The command-line policy of ``jaxse.cli.run``: SIGTERM stops a command even when Python would swallow it."""
import gc
import os
import signal
import sys
import time

from jaxse import cli


def _busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return 0


def test_sigterm_in_ordinary_code_exits_143():
    def body(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        return _busy(10)

    t0 = time.monotonic()
    assert cli.run("jaxse.test", body, []) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 5


def test_sigterm_swallowed_in_a_finaliser_is_raised_again(capsys):
    """A signal handler can run inside a ``__del__`` or a garbage-collector callback (JAX has one), where Python
    prints "Exception ignored" and goes on; CI saw ``jaxse.enhance`` finish with status 0 after such a SIGTERM."""
    class KillOnDelete:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):  # the handler runs here, inside the finaliser
                pass

    def body(argv):
        KillOnDelete()
        return _busy(10)

    t0 = time.monotonic()
    assert cli.run("jaxse.test", body, []) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert "Exception ignored" not in err and "jaxse.test: error: terminated (SIGTERM)" in err


def test_sigterm_in_a_gc_callback_is_raised_again():
    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):
                pass

    fired = []

    def body(argv):
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        return _busy(10)

    assert cli.run("jaxse.test", body, []) == 128 + signal.SIGTERM and fired


def test_handlers_are_restored():
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM), sys.unraisablehook)
    assert cli.run("jaxse.test", lambda argv: 0, []) == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM), sys.unraisablehook) == before


def test_first_run_prints_nothing_before_our_first_line(tmp_path):
    """TensorFlow's start-up logging (absl's pre-init warning, "oneDNN custom operations are on") is silenced by the
    package (``jaxse/__init__.py``) before anything imports TensorFlow. ``jaxse.evaluate`` reads the demo test
    mixtures through the TensorFlow pipeline before it loads the (here missing) model, then stops with one line."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    r = subprocess.run([sys.executable, "-m", "jaxse.evaluate", "checkpoint=pretrained:no-such-model", "limit=1",
                        f"out={tmp_path / 'out'}"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert "absl::InitializeLog" not in r.stderr and "oneDNN" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines and lines[0].startswith("jaxse.evaluate: error: no pretrained model"), r.stderr
