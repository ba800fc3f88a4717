"""Test-session settings: JAX's persistent compilation cache in a session folder (this process and the
subprocesses the tests start share it through XDG_CACHE_HOME), so programs compiled once are loaded afterwards."""
import os
import tempfile

_CACHE_HOME = tempfile.mkdtemp(prefix="jaxse-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME


def pytest_configure(config):  # noqa: ARG001 - pytest hook signature
    from jaxse import cache

    cache.enable("auto")
