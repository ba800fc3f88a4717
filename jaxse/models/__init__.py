"""Model registry: ``get_model(name, **overrides) -> flax.linen.Module``.

Every model maps ``noisy: float32[batch, samples]`` to ``enhanced: float32[batch, samples]`` of the same length:
``variables = model.init(rng, noisy)``; ``model.apply(variables, noisy, train=False)``; with ``train=True`` pass
``mutable=["batch_stats"]``. Modules: ``base`` (the U-Net loop and its hooks), ``crn``, ``dccrn``, ``dccrn_asteroid``.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from jaxse.models import crn, dccrn, dccrn_asteroid
from jaxse.models.crn import CRN
from jaxse.models.dccrn import DCCRN
from jaxse.models.dccrn_asteroid import DCCRNAsteroid
from jaxse.signal import SAMPLE_RATE

_REGISTRY = {**{k: (CRN, v) for k, v in crn.VARIANTS.items()},
             **{k: (DCCRN, v) for k, v in dccrn.VARIANTS.items() if not k.endswith("-tiny")},
             **{k: (DCCRNAsteroid, v) for k, v in dccrn_asteroid.VARIANTS.items()},
             **{k: (DCCRN, v) for k, v in dccrn.VARIANTS.items() if k.endswith("-tiny")}}
PAPER_PARAMS = {**crn.PAPER_PARAMS, **dccrn.PAPER_PARAMS}
MODEL_NAMES = tuple(_REGISTRY)


def get_model(name: str, **overrides) -> nn.Module:
    """Build a model by name (``crn``, ``dccrn-r``, ``dccrn-c``, ``dccrn-e``, ``dccrn-cl``, ``dccrn-cl-asteroid`` and
    ``*-tiny`` variants).

    ``overrides`` replace fields of the layer table, e.g. ``get_model("dccrn-cl", decoder="causal")``. Every model
    has ``conv_lowering`` (``matmul`` | ``xla`` | ``auto``, default ``auto``; ``jaxse.nn``), the DCCRNs also ``impl``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    cls, table = _REGISTRY[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for model {name!r}; valid: {', '.join(sorted(fields))}")
    kwargs = {**table, **overrides}
    for k, v in kwargs.items():  # configs deliver lists; module fields are hashable tuples
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


def count_params(params) -> int:
    """Real parameter count; a complex parameter counts as two."""
    return int(sum(np.size(p) * (2 if np.iscomplexobj(p) else 1) for p in jax.tree_util.tree_leaves(params)))


def init_shapes(model: nn.Module, samples: int = SAMPLE_RATE, batch: int = 1):
    """Variables' shapes without allocating them (``jax.eval_shape``)."""
    x = jax.ShapeDtypeStruct((batch, samples), np.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
