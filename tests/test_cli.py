"""The command-line policy of ``jaxse.cli.run``: SIGTERM stops a command even when Python would swallow it; every
command's ``--help`` is generated from its keys."""
import gc
import importlib
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

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


def test_sigterm_swallowed_by_a_bare_except_is_raised_again():
    """A library's bare ``except:`` (JAX's tracing has several) swallows the raise without a trace: the guard's timer
    raises again in the code that follows (CI saw ``jaxse.enhance`` write a whole 10-minute file after a SIGTERM)."""
    reached = []

    def body(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):  # the handler runs here, inside the try
                pass
        except:  # noqa: E722 -- what the test is about
            pass
        _busy(10)
        reached.append("end")
        return 0

    t0 = time.monotonic()
    assert cli.run("jaxse.test", body, []) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 5 and not reached


def test_retries_never_cut_the_cleanup_short():
    """While a ``Terminated`` is being handled (a ``finally`` removing unfinished files, and any exception raised and
    caught inside it) the retry timer holds its fire: the cleanup runs to its end."""
    done = []

    def body(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            _busy(10)
        finally:
            _busy(0.2)  # dozens of timer periods
            try:
                raise FileNotFoundError("already gone")
            except FileNotFoundError:
                _busy(0.2)
            done.append("cleaned")
        return 0

    assert cli.run("jaxse.test", body, []) == 128 + signal.SIGTERM
    assert done == ["cleaned"]


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


# Every ``python -m jaxse.X`` that takes ``key=value`` arguments, but the trainer (its --help is generated from the
# config schema, ``jaxse.config.describe``).
COMMANDS = ("jaxse.enhance", "jaxse.stream", "jaxse.live", "jaxse.evaluate", "jaxse.export.__main__",
            "jaxse.convert.__main__", "jaxse.models.__main__", "jaxse.pretrained.__main__")


def test_every_command_is_checked():
    root = Path(cli.__file__).parent
    found = {".".join(("jaxse",) + p.relative_to(root).with_suffix("").parts)
             for p in root.rglob("*.py") if "cli.run(" in p.read_text(encoding="utf-8")}
    assert found - {"jaxse.cli", "jaxse.train.__main__"} == set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_generated_from_the_keys(name, capsys):
    """``--help`` lists every key of the command's ``KEYS`` exactly once, with the help text of its ``cli.Key``; no
    docstring keeps a hand-written key list that could drift from the keys."""
    mod = importlib.import_module(name)
    assert not re.search(r"^\s*Keys:", mod.__doc__ or "", re.M), f"{name}: hand-written 'Keys:' in the docstring"
    assert mod.main(["--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.count("\nKeys:\n") == 1
    listed = out.split("\nKeys:\n", 1)[1].split("\n\nExit status", 1)[0]
    assert re.findall(r"^  (\w+)=", listed, re.M) == [k.name for k in mod.KEYS]
    for k in mod.KEYS:
        assert k.help, f"{name}: key {k.name} has no help"
        first_words = " ".join(k.help.split()[:3])
        assert " ".join(listed.split()).count(first_words) >= 1, (k.name, first_words)
    assert max(len(line) for line in listed.splitlines()) <= cli.HELP_WIDTH


def test_key_list_is_aligned_and_wrapped():
    keys = [cli.Key("a", int, 3, help="short"), cli.Key("choice", ("x", "y"), required=True, help="word " * 60),
            cli.Key("flag", bool, False), cli.Key("opt")]
    lines = cli.describe_keys(keys, width=60)
    assert lines[0] == "  a=int" + " " * 7 + "short (default 3)"
    assert lines[1].startswith("  choice=x|y  word ") and all(len(line) <= 60 for line in lines)
    col = lines[0].index("short")
    assert all(line[:col].strip() == "" for line in lines[2:-2]) and lines[-3].endswith("(required)")
    assert lines[-1] == "  opt=str" and "  flag=bool   default false" in lines
