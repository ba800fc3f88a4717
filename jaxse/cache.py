"""JAX's persistent compilation cache for jaxse's commands: the second run of the same command loads its compiled
programs from disk instead of compiling them again (seconds to tens of seconds saved per program).

``enable("auto")`` uses ``$XDG_CACHE_HOME/jaxse/xla`` (default ``~/.cache/jaxse/xla``); a path uses that folder;
``None`` or ``""`` leaves the cache off. It is a JAX process setting: the command lines call it once at start-up.
"""
from __future__ import annotations

import os
from pathlib import Path


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxse" / "xla"


def enable(path: str | os.PathLike | None = "auto") -> Path | None:
    """Turn the persistent compilation cache on (every program, however fast it compiles); returns its folder."""
    if path in (None, ""):
        return None
    import jax

    folder = default_dir() if str(path) == "auto" else Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
