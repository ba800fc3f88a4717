"""One command-line convention for every ``python -m jaxse.X``: ``key=value`` arguments, one error format, one
exit-status policy.

Exit status (every command):
  0     done
  1     some inputs failed (the others were processed), or the work could not finish (a diverged training, a full
        disk); nothing written before is lost
  2     bad command line, config, path or checkpoint, found before any work
  128+N stopped by signal N (SIGTERM: 143, Ctrl-C: 130) after saving what can be resumed; a command that does not
        handle SIGTERM itself (all but training) stops as on Ctrl-C: unfinished outputs and scratch files removed,
        finished ones kept

Errors are one line on stderr, ``jaxse.X: error: <what, naming the key, file or folder>``.
"""
from __future__ import annotations

import errno
import math
import signal as signal_lib
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from jaxse.errors import InputError, RunError, UsageError
from jaxse.io.pretrained import DEFAULT as DEFAULT_CHECKPOINT
from jaxse.io.pretrained import REALTIME as REALTIME_CHECKPOINT

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGNAL = 0, 1, 2, 128

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Key:
    """One ``key=value`` argument: ``kind`` is ``str``, ``int``, ``float``, ``bool`` or a tuple of choices; ``min``
    bounds a number from below."""

    name: str
    kind: Any = str
    default: Any = None
    required: bool = False
    help: str = ""
    min: float | None = None

    def convert(self, raw: str) -> Any:
        if isinstance(self.kind, tuple):
            if raw not in self.kind:
                raise UsageError(f"bad value for {self.name}: {raw!r} (valid: {', '.join(self.kind)})")
            return raw
        if self.kind is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise UsageError(f"bad value for {self.name}: {raw!r} (expected true or false)")
            return raw.lower() in _TRUE
        if self.kind is int:
            try:
                v = int(raw)
            except ValueError:
                raise UsageError(f"bad value for {self.name}: {raw!r} (expected an integer)") from None
            if self.min is not None and v < self.min:
                raise UsageError(f"bad value for {self.name}: {v} (expected an integer >= {self.min})")
            return v
        if self.kind is float:
            try:
                v = float(raw)
            except ValueError:
                raise UsageError(f"bad value for {self.name}: {raw!r} (expected a number)") from None
            if not math.isfinite(v) or (self.min is not None and v < self.min):
                raise UsageError(f"bad value for {self.name}: {raw} (expected a finite number"
                                 + (f" >= {self.min})" if self.min is not None else ")"))
            return v
        return raw


#: The ``checkpoint=`` key of every command that runs a trained model (the shipped model when not given).
CHECKPOINT_KEY = Key("checkpoint", default=DEFAULT_CHECKPOINT,
                     help="training workdir, its checkpoints/ folder, one step folder, or pretrained:NAME for a "
                          "model shipped in the package")
#: The same key for the real-time command (live): the shipped causal model by default.
REALTIME_CHECKPOINT_KEY = Key("checkpoint", default=REALTIME_CHECKPOINT,
                              help="training workdir, its checkpoints/ folder, one step folder, or pretrained:NAME "
                                   "for a model shipped in the package; the default is the shipped causal model "
                                   "(25 ms latency)")
#: The ``step=`` key that goes with ``checkpoint=`` (``jaxse.io.checkpoints.resolve``).
STEP_KEY = Key("step", int, min=0,
               help="a checkpoint step of a workdir (unset: the best by validation SI-SNR if the run has "
                    "validation metrics, else the latest)")

#: The ``precision=`` key of the commands that run a model (enhance, stream, live): ``precision_options`` of
#: ``jaxse.inference.streamer`` maps it to the Streamer's arguments.
PRECISION_KEY = Key("precision", ("float32", "bfloat16", "int8"), "float32",
                    help="float32: exact (the output equals the offline model); bfloat16: bfloat16 products "
                         "accumulated in float32 (a faster step on CPUs with bfloat16 dot instructions); int8: weights "
                         "stored as int8 with one scale per output channel, float32 products (a quarter of the weight "
                         "memory, a slower step)")

#: ``strength=`` / ``atten_lim_db=`` of the commands that enhance (enhance, stream, live); read with ``strength_arg``.
STRENGTH_KEYS = (
    Key("strength", float,
        help="wet/dry mix in [0, 1]: 0 gives the input back, 1 the model output (unset: 1); not with atten_lim_db"),
    Key("atten_lim_db", float, min=0,
        help="limit the noise attenuation to this many dB (the same mix, strength = 1 - 10**(-dB/20)); not with "
             "strength"),
)


def strength_arg(args: dict) -> float:
    """``strength=`` / ``atten_lim_db=`` as the wet/dry mix (``jaxse.inference.strength_for``)."""
    from jaxse.inference import strength_for

    try:
        return strength_for(args["strength"], args["atten_lim_db"])
    except ValueError as e:
        raise UsageError(str(e)) from None


def parse(argv: Sequence[str], keys: Sequence[Key], *, positional: Sequence[str] = (),
          passthrough: Sequence[str] = ()) -> dict[str, Any]:
    """``key=value`` arguments -> ``{key: typed value}`` with defaults filled in.

    ``positional``: names given to leading arguments without ``=`` (in order). ``passthrough``: key prefixes
    (e.g. ``"data."``) returned untouched under ``"_rest"`` as a list of ``key=value`` strings, for a config
    composer. An unknown key, a missing required key or a bad value raises ``UsageError`` naming it.
    """
    by_name = {k.name: k for k in keys}
    out: dict[str, Any] = {}
    rest: list[str] = []
    pos = list(positional)
    for a in argv:
        if "=" not in a:
            if pos:
                name = pos.pop(0)
                out[name] = by_name[name].convert(a)
                continue
            raise UsageError(f"bad argument {a!r}: expected key=value (keys: {', '.join(by_name)})")
        k, v = a.split("=", 1)
        if any(k.startswith(p) for p in passthrough):
            rest.append(a)
            continue
        if k not in by_name:
            raise UsageError(f"unknown key {k!r}; valid keys: {', '.join(by_name)}")
        out[k] = by_name[k].convert(v)
    for k in keys:
        if k.name not in out:
            if k.required:
                raise UsageError(f"missing {k.name}=... ({k.help or 'required'})")
            out[k.name] = k.default
    if passthrough:
        out["_rest"] = rest
    return out


#: Width of ``--help``'s key list.
HELP_WIDTH = 118


def _kind_text(k: Key) -> str:
    return "|".join(k.kind) if isinstance(k.kind, tuple) else getattr(k.kind, "__name__", str(k.kind))


def _default_text(k: Key) -> str:
    if k.required:
        return "required"
    if k.default is None:
        return ""
    return "default " + (str(k.default).lower() if isinstance(k.default, bool) else str(k.default))


def describe_keys(keys: Sequence[Key], width: int = HELP_WIDTH) -> list[str]:
    """The ``--help`` lines of ``keys``, generated from the keys themselves: ``name=TYPE`` (or the choices), then
    the help text and the default (or "required"), aligned in two columns and wrapped to ``width``."""
    import textwrap

    heads = [f"  {k.name}={_kind_text(k)}" for k in keys]
    col = min(max(len(h) for h in heads) + 2, 36) if heads else 0
    lines = []
    for head, k in zip(heads, keys):
        default = _default_text(k)
        text = k.help + (f" ({default})" if default else "") if k.help else default
        body = textwrap.wrap(text, width - col, break_on_hyphens=False) or [""]
        if len(head) + 2 > col:  # a long name: its text starts on the next line
            lines.append(head)
        else:
            lines.append(head.ljust(col) + body.pop(0))
        lines += [" " * col + b for b in body]
    return [line.rstrip() for line in lines]


def usage(prog: str, doc: str | None, keys: Sequence[Key] = ()) -> str:
    """A command's ``--help``: its docstring (what it does), the key list generated from ``keys`` (each key's help
    lives once, in its :class:`Key`), and the exit-status policy."""
    lines = [(doc or prog).strip()]
    if keys:
        lines.append("\nKeys:")
        lines += describe_keys(keys)
    lines.append("\n" + __doc__.split("\n\n", 1)[1].split("\n\nErrors")[0])
    return "\n".join(lines)


def one_line(msg: Any) -> str:
    return " ".join(part.strip() for part in str(msg).strip().splitlines() if part.strip())


def error(prog: str, msg: Any) -> None:
    """Print ``jaxse.X: error: msg`` as one line on stderr."""
    print(f"{prog}: error: {one_line(msg)}", file=sys.stderr, flush=True)


def describe_os_error(e: OSError) -> str:
    """An ``OSError`` as ``<path>: <reason>`` (disk full named as such)."""
    what = "no space left on the device (disk full)" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    path = e.filename or ""
    return f"{path}: {what}" if path else what


def run(prog: str, fn: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *,
        doc: str | None = None, keys: Sequence[Key] = ()) -> int:
    """Run a command's body ``fn(argv) -> exit status`` under the policy above; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage(prog, doc, keys))
        return EXIT_OK
    guard = _SigtermGuard() if threading.current_thread() is threading.main_thread() else None
    status = None
    try:
        if guard is not None:
            guard.install()
        status = fn(argv)
    except Terminated:
        if guard is not None:
            guard.pending = None
        error(prog, "terminated (SIGTERM); unfinished outputs removed")
        return EXIT_SIGNAL + signal_lib.SIGTERM
    except UsageError as e:
        error(prog, e)
        return EXIT_USAGE
    except (InputError, RunError) as e:
        error(prog, e)
        return EXIT_FAILED
    except OSError as e:  # a full disk, a folder that vanished: named, no traceback
        error(prog, describe_os_error(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        error(prog, "interrupted")
        return EXIT_SIGNAL + 2
    finally:
        if guard is not None:
            guard.uninstall()
    if guard is not None and guard.pending is not None:
        # The signal came, but every attempt to raise it landed where Python swallows exceptions and the work ran to
        # its end: what was written is complete, and the exit status still says the run was stopped.
        error(prog, "terminated (SIGTERM) after the work had finished")
        return EXIT_SIGNAL + signal_lib.SIGTERM
    return EXIT_OK if status is None else int(status)


class Terminated(BaseException):
    """SIGTERM as an exception (like ``KeyboardInterrupt`` for SIGINT), so that ``finally`` blocks and context
    managers remove what is unfinished (temporary output files, scratch files) before the exit."""


class _SigtermGuard:
    """SIGTERM raises :class:`Terminated` in the main thread, and keeps raising until it gets through.

    A Python signal handler runs at whatever bytecode the main thread is executing, and a single raise can be lost
    there: inside a garbage-collector callback (JAX registers one), a ``__del__`` or a weakref finaliser, Python
    prints "Exception ignored in ..." and carries on; inside a library's bare ``except:`` (JAX's tracing has several,
    around ``operator.index`` and shape broadcasting) the exception vanishes without a trace. Either way the command
    would run to its end. So after a SIGTERM a timer signal (SIGALRM, every ``RETRY_S``) raises :class:`Terminated`
    again until :func:`run` has caught it, except while a :class:`Terminated` is being handled (a ``finally`` block
    or an ``__exit__`` removing unfinished files, or any exception raised inside that cleanup), so that the cleanup
    itself is never cut short. A swallowed raise that reaches ``sys.unraisablehook`` is kept off stderr.
    """

    RETRY_S = 0.005

    def __init__(self):
        self.pending: int | None = None
        self._closing = False
        self._saved: tuple = ()

    def install(self) -> None:
        self._saved = (signal_lib.signal(signal_lib.SIGTERM, self._on_signal),
                       signal_lib.signal(signal_lib.SIGALRM, self._on_retry), sys.unraisablehook)
        sys.unraisablehook = self._on_unraisable

    def uninstall(self) -> None:
        self._closing = True  # from here on a late signal is only recorded
        signal_lib.setitimer(signal_lib.ITIMER_REAL, 0)
        term, alrm, hook = self._saved
        signal_lib.signal(signal_lib.SIGTERM, term)
        signal_lib.signal(signal_lib.SIGALRM, alrm)
        sys.unraisablehook = hook

    def _on_signal(self, signum, _frame):
        self.pending = signum
        if not self._closing:
            signal_lib.setitimer(signal_lib.ITIMER_REAL, self.RETRY_S, self.RETRY_S)
            raise Terminated(signum)

    def _on_retry(self, _signum, _frame):
        if self.pending is not None and not self._closing and not _handling_terminated():
            raise Terminated(self.pending)

    def _on_unraisable(self, unraisable):
        if not isinstance(unraisable.exc_value, Terminated):
            self._saved[2](unraisable)


def _handling_terminated() -> bool:
    """Whether the exception being handled now (in an ``except``, a ``finally`` or an ``__exit__``) is a
    :class:`Terminated` or was raised while one was being handled."""
    e, seen = sys.exc_info()[1], 0
    while e is not None and seen < 100:
        if isinstance(e, Terminated):
            return True
        e, seen = e.__context__, seen + 1
    return False
