"""The models shipped inside the package (the files of ``jaxse/pretrained/``): ``checkpoint=pretrained:NAME``
anywhere a checkpoint is taken (``jaxse.enhance``, ``jaxse.stream``, ``jaxse.evaluate``, ``jaxse.export``,
``Enhancer.from_checkpoint``, ``jaxse.io.checkpoints.load_model``).

Each model is two files in that folder: ``NAME.npz`` (the variables, flattened ``params/...`` and
``batch_stats/...``; complex arrays as ``[2, ...]`` real/imaginary stacks; float16 where that moves the output by at
most 1e-3, else float32) and ``NAME.json`` (model name and overrides, training command, data, figures, licence
notes). ``python -m jaxse.pretrained export WORKDIR NAME`` writes them from a training run's best checkpoint.
This module reads and encodes them (below the checkpoint loader); ``jaxse.pretrained`` re-exports it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxse.errors import UsageError

PREFIX = "pretrained:"
#: The model used when a command gets no ``checkpoint=``.
DEFAULT = "pretrained:dccrn-cl"
#: The model of the real-time command (``jaxse.live``) when it gets no ``checkpoint=``: DCCRN-CL with the causal
#: decoder (25 ms algorithmic latency against the paper decoder's 62.5 ms).
REALTIME = "pretrained:dccrn-cl-causal"


def folder() -> Path:
    """``jaxse/pretrained/``: where the shipped files are installed."""
    return Path(__file__).resolve().parent.parent / "pretrained"


def names() -> list[str]:
    """The shipped models."""
    return sorted(p.stem for p in folder().glob("*.npz") if (p.with_suffix(".json")).is_file())


def is_pretrained(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def encode(variables: Mapping, dtype: str) -> dict[str, np.ndarray]:
    """Variables -> npz arrays in ``dtype`` (``float16``/``float32``); complex leaves as ``[2, ...]`` stacks."""
    out = {}
    for k, v in _flatten(variables).items():
        if np.iscomplexobj(v):
            out[k + "@complex"] = np.stack([v.real, v.imag]).astype(dtype)
        elif np.issubdtype(v.dtype, np.floating):
            out[k] = v.astype(dtype)
        else:
            out[k] = v
    return out


def decode(arrays: Mapping[str, np.ndarray]) -> dict:
    """Inverse of ``encode``: float32 / complex64 variables."""
    flat = {}
    for k, v in arrays.items():
        if k.endswith("@complex"):
            flat[k[: -len("@complex")]] = (v[0].astype(np.float32) + 1j * v[1].astype(np.float32)).astype(np.complex64)
        elif np.issubdtype(v.dtype, np.floating):
            flat[k] = v.astype(np.float32)
        else:
            flat[k] = v
    tree = _unflatten(flat)
    tree.setdefault("batch_stats", {})
    return tree


def load(spec: str, root: Path | None = None) -> tuple[dict, dict]:
    """``(variables, meta)`` of ``pretrained:NAME`` (``root``: another folder laid out like this one)."""
    name = spec[len(PREFIX):] if is_pretrained(spec) else spec
    base = root or folder()
    npz, js = base / f"{name}.npz", base / f"{name}.json"
    if not (npz.is_file() and js.is_file()):
        have = ", ".join(PREFIX + n for n in names()) or "none"
        raise UsageError(f"no pretrained model {PREFIX}{name} in this installation (shipped: {have})")
    meta = json.loads(js.read_text())
    with np.load(npz) as z:
        variables = decode(dict(z))
    meta = dict(meta, step=meta.get("step", 0), workdir=f"{PREFIX}{name}")
    return variables, meta
