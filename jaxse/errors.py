"""The error families of jaxse, one per exit status of the command lines (``jaxse.cli``).

Library code raises a subclass; a command line turns it into one line ``jaxse.X: error: ...`` and its exit status,
never a traceback. Imports nothing, so every module (and the worker processes) can use it.
"""


class UsageError(ValueError):
    """The request cannot be carried out as given: a bad command line, config key or value, a path that does not
    exist or cannot be written, a checkpoint that cannot be used. Found before any work; exit status 2."""


class InputError(ValueError):
    """One input (an audio file, a pair) cannot be processed; the others can. Exit status 1."""


class RunError(RuntimeError):
    """The work started but cannot finish (training diverged, the disk is full). Exit status 1; what was written
    before stays intact."""
