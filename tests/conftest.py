"""Test-session settings.

* JAX's persistent compilation cache in a session folder (this process, pytest-xdist's workers and the subprocesses
  the tests start share it through XDG_CACHE_HOME), so programs compiled once are loaded afterwards.
* XLA's CPU backend at LLVM optimisation level 0 (``--xla_backend_optimization_level=0``, added to XLA_FLAGS for this
  process and inherited by its subprocesses): the suite's programs are small and compiled once each, so code
  generation dominates their cost; the level changes how fast the code runs, not what it computes. Benchmarks and
  real runs keep XLA's default.
"""
import os
import tempfile

# One folder for the whole session: pytest-xdist's workers inherit it from the controller, so they share it.
_CACHE_HOME = os.environ.get("JAXSE_TEST_CACHE_HOME") or tempfile.mkdtemp(prefix="jaxse-test-cache-")
os.environ["JAXSE_TEST_CACHE_HOME"] = os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
_O0 = "--xla_backend_optimization_level=0"
if _O0 not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _O0).strip()


def pytest_configure(config):  # noqa: ARG001 - pytest hook signature
    from jaxse import cache

    cache.enable("auto")
