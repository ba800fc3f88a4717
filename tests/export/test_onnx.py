"""``format=onnx``: the ONNX streaming step, run by onnxruntime with its state fed back, equals
``Streamer.stream_step`` hop by hop; inputs/outputs named after the flat state; a missing converter is one error."""
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from jaxse.export import jax2tf_export as ex  # noqa: E402
from jaxse.export import onnx_export  # noqa: E402
from jaxse.export.__main__ import main as export_main  # noqa: E402
from jaxse.inference.streamer import Streamer  # noqa: E402
from jaxse.io import checkpoints  # noqa: E402
from jaxse.models import get_model  # noqa: E402
from tests.export.test_export import _trained_like  # noqa: E402  (BatchNorm statistics worth exporting)

NAME = "crn-tiny"  # the cheapest model of tests/export/test_export.py
HOPS = 300
BATCH = 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model = get_model(NAME)
    variables = _trained_like(model)
    path = checkpoints.save_model(tmp_path_factory.mktemp("onnx") / "ckpt", model_name=NAME, variables=variables)
    return model, variables, path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """Exported through the command line: ``(output folder, signature.json)``."""
    out = tmp_path_factory.mktemp("onnx_out") / "onnx"
    assert export_main([f"checkpoint={ckpt[2]}", "format=onnx", f"output={out}", f"batch={BATCH}"]) == 0
    return out, json.loads((out / ex.SIGNATURE_FILE).read_text())


def test_layout_and_names(exported):
    out, desc = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", ex.SIGNATURE_FILE]
    assert [p.name for p in out.parent.iterdir()] == ["onnx"]  # no temporary folder left
    assert desc["format"] == "onnx" and desc["batch"] == BATCH
    names = [s["name"] for s in desc["state"]]
    assert desc["inputs"] == ["in_hop"] + names
    assert desc["outputs"] == ["out_hop"] + [onnx_export.output_name(n) for n in names]
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # standard operators only
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    dtype = {"tensor(float)": "float32", "tensor(int32)": "int32"}
    inputs = {i.name: (list(i.shape), dtype[i.type]) for i in sess.get_inputs()}
    outputs = {o.name: (list(o.shape), dtype[o.type]) for o in sess.get_outputs()}
    assert [i.name for i in sess.get_inputs()] == desc["inputs"]
    assert [o.name for o in sess.get_outputs()] == desc["outputs"]
    assert inputs["in_hop"] == outputs["out_hop"] == ([BATCH, desc["hop"]], "float32")
    for s in desc["state"]:
        assert inputs[s["name"]] == outputs[onnx_export.output_name(s["name"])] == (s["shape"], s["dtype"])


def test_onnxruntime_matches_stream(ckpt, exported):
    model, variables, _ = ckpt
    out, desc = exported
    streamer = Streamer(model)
    audio = (0.1 * np.random.default_rng(0).standard_normal((HOPS, BATCH, streamer.hop))).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    ref_state = streamer.init_stream(variables, BATCH)
    state = {s["name"]: np.full(s["shape"], s["init"], s["dtype"]) for s in desc["state"]}
    err, peak = 0.0, 0.0
    for x in audio:
        y, ref_state = streamer.stream_step(variables, ref_state, x)
        y = np.asarray(y)
        res = dict(zip(desc["outputs"], sess.run(None, {"in_hop": x, **state})))
        state = {k: res[onnx_export.output_name(k)] for k in state}
        err, peak = max(err, float(np.abs(res["out_hop"] - y).max())), max(peak, float(np.abs(y).max()))
    assert peak > 1e-3  # not trivially zero
    assert err <= 1e-4, err


def test_missing_converter_is_one_error(ckpt, tmp_path, monkeypatch, capsys):
    def missing():
        raise ImportError("No module named 'tf2onnx'")

    monkeypatch.setattr(onnx_export, "check_available", missing)
    with pytest.raises(ex.ExportError, match=r"jaxse\[onnx\]"):
        ex.export(ckpt[2], tmp_path / "out", format="onnx")
    assert export_main([f"checkpoint={ckpt[2]}", "format=onnx", f"output={tmp_path / 'out'}"]) == 2
    e = capsys.readouterr().err.strip()
    assert "\n" not in e and e.startswith("jaxse.export: error:") and "tf2onnx" in e, e
    assert list(tmp_path.iterdir()) == []
