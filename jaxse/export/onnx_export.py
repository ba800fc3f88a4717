"""ONNX from the exported TFLite model: ``tf2onnx.convert.from_tflite``, then the graph's inputs/outputs renamed
after the TFLite signature.

The TFLite model holds only builtins (``jaxse.export.realify`` made the step all-real), which tf2onnx maps onto
standard ONNX operators (default domain only; the result passes ``onnx.checker`` with ``full_check``). The SavedModel
is no route: its one ``XlaCallModule`` op (StableHLO) has no tf2onnx handler (tf2onnx 1.17: "pass1 convert failed
for name: .../XlaCallModule", then ``ValueError: Could not infer the attribute type from the elements of the passed
Iterable value``).

Names: ONNX values are in single static assignment form, so a graph output cannot carry the name of a graph input.
The inputs are ``in_hop`` and the flat state names; the outputs are ``out_hop`` and ``new_<name>`` for each state
tensor (``OUTPUT_PREFIX``): feed output ``new_<name>`` back as input ``<name>`` on the next hop.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

OPSET = 17
OUTPUT_PREFIX = "new_"


def output_name(name: str) -> str:
    """The ONNX output name of state input ``name``."""
    return OUTPUT_PREFIX + name


def check_available() -> None:
    """Raise ``ImportError`` naming the missing package when the converter is not installed."""
    import onnx  # noqa: F401
    import tf2onnx  # noqa: F401


def _signature_tensors(tflite_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(inputs, outputs)``: signature name -> TFLite tensor name, of signature ``serving_default``."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interp = tf.lite.Interpreter(model_path=str(tflite_path))
    runner = interp.get_signature_runner("serving_default")
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    return ({k: names[v["index"]] for k, v in runner.get_input_details().items()},
            {k: names[v["index"]] for k, v in runner.get_output_details().items()})


def tflite_to_onnx(tflite_path, onnx_path, inputs: list[str], outputs: list[tuple[str, str]]) -> None:
    """Convert ``tflite_path`` into ``onnx_path``.

    ``inputs``: the signature's input names, in the order the ONNX graph takes them (they keep their names).
    ``outputs``: ``(signature name, ONNX output name)`` in the order of the ONNX graph's outputs.
    """
    import onnx
    import tf2onnx
    from onnx import helper

    tflite_path = Path(tflite_path)
    sig_in, sig_out = _signature_tensors(tflite_path)
    if set(sig_in) != set(inputs) or set(sig_out) != {s for s, _ in outputs}:
        raise RuntimeError(f"TFLite signature {sorted(sig_in)} -> {sorted(sig_out)} is not the expected one")
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.WARNING)  # its INFO lines name every tensor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (tf2onnx reads shapes with it)
            model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    finally:
        tf2onnx_log.setLevel(level)

    g = model.graph
    old_in = {v.name: v for v in g.input}
    old_out = {v.name: v for v in g.output}
    missing = [t for t in sig_in.values() if t not in old_in] + [t for t in sig_out.values() if t not in old_out]
    if missing or len(old_in) != len(sig_in):
        raise RuntimeError(f"tf2onnx's graph inputs/outputs {sorted(old_in)} -> {sorted(old_out)} do not match the "
                           f"TFLite signature (missing {missing})")
    # Rename through Identity nodes (onnxruntime removes them): new input -> old tensor name at the front, old tensor
    # -> new output at the end. This also covers an output that is an input passed through (the frame count "end").
    head, tail = [], []
    new_inputs = []
    for name in inputs:
        v = onnx.ValueInfoProto()
        v.CopyFrom(old_in[sig_in[name]])
        v.name = name
        new_inputs.append(v)
        head.append(helper.make_node("Identity", [name], [sig_in[name]], name=f"input_{name}"))
    new_outputs = []
    for sig_name, name in outputs:
        v = onnx.ValueInfoProto()
        v.CopyFrom(old_out[sig_out[sig_name]])
        v.name = name
        new_outputs.append(v)
        tail.append(helper.make_node("Identity", [sig_out[sig_name]], [name], name=f"output_{name}"))
    nodes = head + list(g.node) + tail
    del g.node[:], g.input[:], g.output[:]
    g.node.extend(nodes)
    g.input.extend(new_inputs)
    g.output.extend(new_outputs)
    g.name = "jaxse_stream_step"
    foreign = sorted({f"{n.domain}:{n.op_type}" for n in g.node if n.domain not in ("", "ai.onnx")})
    if foreign:  # from_tflite continues past ops it cannot convert, leaving them as custom ops
        raise RuntimeError(f"tf2onnx left operators outside the ONNX standard domain: {foreign}")
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(onnx_path))
