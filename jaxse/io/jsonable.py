"""Values made fit for JSON: the one sanitiser behind checkpoint metadata and metric summaries."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def jsonable(x: Any) -> Any:
    """Nested mappings/sequences of numpy and Python scalars -> plain JSON values; non-finite floats -> ``None``."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    return x
