"""jaxse: speech enhancement in JAX/Flax (CRN, DCCRN) with native complex dtypes."""
import os as _os
import sys as _sys

__version__ = "0.1.0"

# A quiet first run: TensorFlow (the data pipeline, export) logs start-up lines through absl before anything of ours,
# "oneDNN custom operations are on" (with absl's "All log messages before absl::InitializeLog()" warning, which only
# that early message triggers) and CPU-feature notes at INFO. The oneDNN line ignores TF_CPP_MIN_LOG_LEVEL, so its
# optimisation is left off (it changes nothing but float round-off of TensorFlow's own ops); level 1 hides TensorFlow's
# INFO lines and keeps its warnings and errors. Read by TensorFlow when it is first imported, so set here, before any
# module of the package can import it, and only where the user has not chosen otherwise.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
