"""Atomic file creation: a file is either its old complete self or its new complete self, never half-written."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, os.PathLike]


def temp_name(path: PathLike, suffix: str = ".tmp") -> Path:
    """A fresh name beside ``path``, ``.<name>.<16 hex digits><suffix>``, **not yet created**.

    Name first, create inside the ``try`` that removes it: ``tempfile.mkstemp`` creates the file before it returns,
    and a SIGTERM raised as an exception (:mod:`jaxse.cli`) between its return and the ``try`` would leave the file
    behind. The name is 64 random bits and not taken when returned (a name already there is drawn again), so the
    cleanup of a failed :func:`create_new` can only remove a file of the same 64 bits made in between by another
    process: not a practical concern.
    """
    path = Path(path)
    while True:
        name = path.parent / f".{path.name}.{secrets.token_hex(8)}{suffix}"
        if not os.path.lexists(name):
            return name


def create_new(name: PathLike) -> int:
    """Create ``name`` (which must not exist) for writing with the usual permissions (``0666 & ~umask``); the fd."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def remove_if_there(name: PathLike | None) -> None:
    """Remove the file ``name`` if it exists (a temporary file on the way out of an error or a stop)."""
    if name is not None:
        Path(name).unlink(missing_ok=True)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None], *, suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(f)`` into a temp file in the same folder, fsync, ``os.replace``.

    On any error or stop (SIGTERM, Ctrl-C) the temporary file is removed and ``path`` is left untouched. The file
    gets the usual permissions (``0666 & ~umask``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, suffix)
    try:
        with os.fdopen(create_new(tmp), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_if_there(tmp)
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def check_writable_dir(path: PathLike, what: str = "output folder") -> None:
    """Raise ``UsageError`` naming ``path`` when the folder cannot be created or written (an ancestor is a regular
    file, no write permission) — checked before any work, so a long job never fails at its last step."""
    from jaxse.errors import UsageError

    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {str(path)!r} cannot be created: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(path)!r} cannot be written: no write permission in {str(probe)!r}")
