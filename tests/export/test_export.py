"""Exported streaming step (TF SavedModel and TFLite) equals ``Streamer.stream_step`` hop by hop; CLI errors."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from jaxse.io import checkpoints  # noqa: E402
from jaxse.export import jax2tf_export as ex  # noqa: E402
from jaxse.export.__main__ import main as export_main  # noqa: E402
from jaxse.models import get_model  # noqa: E402
from jaxse.inference.streamer import Streamer  # noqa: E402

MODELS = {"dccrn-cl-tiny": {"decoder": "causal"}, "crn-tiny": {}}
HOPS = 32


def _trained_like(model):
    """Initial parameters with random, non-trivial BatchNorm statistics (cheaper than a training pass)."""
    v = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 400)))
    rng = np.random.default_rng(2)

    def stat(path, x):
        x = np.asarray(x)
        key = str(path[-1].key)
        if key == "mean":
            noise = rng.normal(0, 0.1, x.shape)
            return (x + (noise + 1j * rng.normal(0, 0.1, x.shape) if np.iscomplexobj(x) else noise)).astype(x.dtype)
        if key == "var_ri":  # |var_ri| < sqrt(var_rr * var_ii) since both are >= 0.5
            return rng.uniform(-0.3, 0.3, x.shape).astype(x.dtype)
        return (x * rng.uniform(0.5, 2.0, x.shape)).astype(x.dtype)  # var, var_rr, var_ii

    return {"params": v["params"], "batch_stats": jax.tree_util.tree_map_with_path(stat, v["batch_stats"])}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """``{name: (model, variables, checkpoint path)}`` for the tiny models."""
    out = {}
    for name, kw in MODELS.items():
        model = get_model(name, **kw)
        variables = _trained_like(model)
        path = checkpoints.save_model(tmp_path_factory.mktemp(name) / "ckpt", model_name=name, variables=variables,
                                      model_overrides=kw)
        out[name] = (model, variables, path)
    return out


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, ckpts):
    """One tiny model exported both ways, and the JAX reference: ``{"audio", "ref", format: (path, description)}``.

    ``audio, ref: float32[HOPS, 2, hop]``: random input hops of two streams and ``stream_step``'s output hops.
    """
    model, variables, ckpt = ckpts[request.param]
    root = ckpt.parent.parent.parent
    streamer = Streamer(model)
    audio = (0.1 * np.random.default_rng(0).standard_normal((HOPS, 2, streamer.hop))).astype(np.float32)
    state, ref = streamer.init_stream(variables, 2), []
    for x in audio:
        y, state = streamer.stream_step(variables, state, x)
        ref.append(np.asarray(y))
    out = {"audio": audio, "ref": np.stack(ref)}
    assert np.abs(out["ref"]).max() > 1e-3  # not trivially zero
    for fmt, batch in (("saved_model", 2), ("tflite", 1)):
        path = ex.export(ckpt, root / fmt, format=fmt, batch=batch)
        desc = json.loads((root / fmt / ex.SIGNATURE_FILE).read_text())
        assert desc["hop"] == streamer.hop and desc["delay_samples"] == streamer.delay and desc["batch"] == batch
        out[fmt] = (path, desc)
    return out


def _max_error(exported, desc, run):
    """Feed the audio hops through ``run(in_hop=..., **state) -> dict`` feeding the state back; max abs error."""
    b = desc["batch"]
    assert all(s["dtype"] in ("float32", "int32") for s in desc["state"])
    state = {s["name"]: np.full(s["shape"], s["init"], s["dtype"]) for s in desc["state"]}
    err = 0.0
    for x, y in zip(exported["audio"][:, :b], exported["ref"][:, :b]):  # streams are independent: batch 1 = row 0
        out = run(in_hop=x, **state)
        state = {k: np.asarray(out[k]) for k in state}
        err = max(err, float(np.abs(np.asarray(out["out_hop"]) - y).max()))
    return err


def test_saved_model_matches_stream(exported):
    path, desc = exported["saved_model"]
    loaded = tf.saved_model.load(str(path))
    init = {k: v.numpy() for k, v in loaded.signatures["initial_state"]().items()}
    for s in desc["state"]:  # the initial_state signature agrees with the description
        np.testing.assert_array_equal(init[s["name"]], np.full(s["shape"], s["init"], s["dtype"]))
    fn = loaded.signatures["serving_default"]
    err = _max_error(exported, desc, lambda **kw: {k: v.numpy() for k, v in fn(**kw).items()})
    assert err < 1e-4, err


def test_tflite_matches_stream(exported):
    path, desc = exported["tflite"]
    runner = tf.lite.Interpreter(model_path=str(path), num_threads=1).get_signature_runner("serving_default")
    # Everything crossing the boundary is real (complex state split into _re/_im).
    assert not any(np.issubdtype(d["dtype"], np.complexfloating) for d in runner.get_input_details().values())
    err = _max_error(exported, desc, runner)
    assert err < 1e-4, err


def test_cli_errors_are_one_line(tmp_path, capsys):
    def err_of(argv):
        assert export_main(argv) == 2
        e = capsys.readouterr().err.strip()
        assert "\n" not in e and e.startswith("jaxse.export: error:"), e
        return e

    assert "'colour'" in err_of([f"checkpoint={tmp_path}", "colour=red"])
    assert "format" in err_of([f"checkpoint={tmp_path}", "format=coreml"])
    assert "batch" in err_of([f"checkpoint={tmp_path}", "batch=0"])
    assert "does not exist" in err_of([f"checkpoint={tmp_path / 'nope'}", "format=tflite"])
    (tmp_path / "out").mkdir()
    assert "force=true" in err_of([f"checkpoint={tmp_path}", f"output={tmp_path / 'out'}"])
    (tmp_path / "file").write_text("x")
    assert "is a file" in err_of([f"checkpoint={tmp_path}", f"output={tmp_path / 'file' / 'x'}"])
    # The module entry point, as a user runs it.
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "jaxse.export", "checkpoint=x", "bogus=1"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "'bogus'" in r.stderr, r.stderr


def test_failed_export_leaves_nothing_and_force_overwrites(tmp_path, monkeypatch, ckpts):
    ckpt = ckpts["crn-tiny"][2]

    def boom(*a, **k):  # fails after the SavedModel is written
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "_describe", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export(ckpt, tmp_path / "out", format="saved_model")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder
    monkeypatch.undo()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale").write_text("x")
    with pytest.raises(ex.ExportError, match="exists"):
        ex.export(ckpt, tmp_path / "out", format="saved_model")
    ex.export(ckpt, tmp_path / "out", format="saved_model", force=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["saved_model", ex.SIGNATURE_FILE]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
