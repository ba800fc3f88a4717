"""Atomic file creation: a file is either its old complete self or its new complete self, never half-written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, os.PathLike]


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None], *, suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(f)`` into a temp file in the same folder, fsync, ``os.replace``.

    On any error the temporary file is removed and ``path`` is left untouched. The file gets the usual
    permissions (``0666 & ~umask``), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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
