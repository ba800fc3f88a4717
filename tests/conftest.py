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


# Longest first (seconds each with two workers on 2 cores): pytest-xdist hands the tests out as workers free up, so
# starting the long ones first lets both workers finish together instead of one running the soak alone at the end.
_LONGEST_FIRST = (
    "tests/train/test_faults.py::test_preemption_soak",  # ~220
    "tests/train/test_train.py::test_one_device_four_devices_and_two_processes",  # ~190
    "tests/train/",  # 20-70 each
    "tests/test_evaluate.py::test_cli_noisy_folder_alone",
    "tests/inference/test_stream.py::test_chunked_stream_is_exact",
)


def pytest_collection_modifyitems(session, config, items):  # noqa: ARG001 - pytest hook signature
    def rank(item):
        return next((i for i, p in enumerate(_LONGEST_FIRST) if item.nodeid.startswith(p)), len(_LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
