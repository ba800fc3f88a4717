"""Shipped pretrained models: the npz round trip, float16 only within tolerance, loading by ``pretrained:NAME``."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxse import pretrained
from jaxse.errors import UsageError
from jaxse.io import checkpoints
from jaxse.models import get_model
from jaxse.pretrained.__main__ import main as pretrained_main


def test_encode_decode_round_trip_keeps_dtypes():
    model = get_model("dccrn-cl-tiny")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1600)))
    back = pretrained.decode(pretrained.encode(jax.device_get(variables), "float32"))
    jax.tree.map(lambda a, b: (np.testing.assert_array_equal(a, b), None) and None, dict(variables), back)
    kinds = {np.asarray(v).dtype for v in jax.tree_util.tree_leaves(back)}
    assert np.dtype(np.complex64) in kinds and np.dtype(np.float32) in kinds


def test_export_then_load_by_name(tmp_path, capsys):
    model = get_model("dccrn-cl-tiny")
    variables = jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(1), jnp.zeros((1, 1600))))
    checkpoints.save_model(tmp_path / "run", model_name="dccrn-cl-tiny", variables=variables)
    out = tmp_path / "pkg"
    assert pretrained_main(["export", str(tmp_path / "run"), "tiny", f"out={out}"]) == 0
    info = json.loads((out / "tiny.json").read_text())
    assert info["model"]["name"] == "dccrn-cl-tiny" and info["stored_as"] in ("float16", "float32")
    assert (info["stored_as"] == "float16") == (info["float16_max_output_change"] <= 1e-3)
    got, meta = pretrained.load("pretrained:tiny", root=out)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4000)).astype(np.float32) * 0.1)
    y0 = model.apply(variables, x, train=False)
    y1 = model.apply(got, x, train=False)
    assert float(jnp.max(jnp.abs(y0 - y1))) <= 1e-3


def test_unknown_pretrained_name_is_one_line_usage_error():
    with pytest.raises(UsageError, match="no pretrained model pretrained:nope"):
        checkpoints.load_model("pretrained:nope")
