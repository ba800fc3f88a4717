"""Export the streaming step (``jaxse.stream.Streamer.stream_step``) as a TensorFlow SavedModel, a TFLite model or
an ONNX model.

    python -m jaxse.export checkpoint=WORKDIR format=saved_model|tflite|onnx [output=DIR] [batch=1] [step=N]
        [force=true]

(default output ``WORKDIR/export/<format>``; bad arguments, a missing checkpoint or an existing output print one
``jaxse.export: error: ...`` line and exit with status 2.)

    from jaxse.export import export
    path = export("runs/dccrn", "export/dccrn_tflite", format="tflite")

The exported function is one hop of the stream with the checkpoint's variables baked in as constants::

    step(in_hop: float32[batch, hop], **state) -> {"out_hop": float32[batch, hop], **new_state}

The state crosses the boundary as a flat list of named tensors: every complex64 entry of the Streamer's state pytree
becomes two float32 tensors ``<name>_re`` / ``<name>_im``, ``None`` entries are dropped, float32 entries stay as
they are and integer entries (the Streamer's frame counter ``t``, if present) keep their dtype, int32. Names are the
pytree paths joined with ``_`` (``net_enc_prev_0_re``, ``analysis``, ...). A device-side caller feeds the returned
state back in on the next hop, starting from ``initial_state``.

Output folder (written into a temporary sibling folder and renamed when complete, so a failed export never leaves a
half-written one; an existing output is refused unless ``force=true``)::

    DIR/signature.json      format, model name/overrides, checkpoint step, batch, hop, win_length, n_fft,
                            sample_rate, delay_samples / latency_samples (and ms), the input/output names, and
                            "state": [{"name", "shape", "dtype", "init"}] in the order of the flat list ("init": the
                            value every element of the initial state holds: 0 except the frame counter)
    DIR/saved_model/        format=saved_model: signatures "serving_default" (the step) and "initial_state"
                            (no inputs -> the initial state tensors)
    DIR/model.tflite        format=tflite: signature "serving_default" (the step)
    DIR/model.onnx          format=onnx: the step, inputs named ``in_hop`` + the state names, outputs ``out_hop`` +
                            ``new_<name>`` per state tensor (ONNX values are single-assignment: an output cannot
                            share an input's name); signature.json's "outputs" lists those names

Route (why, and the versions it was found with: experiments/bench/RESULTS.md):
  * ``jax2tf.convert`` does native serialization only: the SavedModel holds one ``XlaCallModule`` op (StableHLO),
    which TensorFlow runs on CPU.
  * ``tf.lite.TFLiteConverter.from_saved_model`` legalizes that StableHLO to TFLite builtins (no ``SELECT_TF_OPS``)
    for plain real ops, but not complex64 tensors (TFLite kernels barely support them) nor convolutions with input
    (``lhs_``) dilation, i.e. transposed convolutions.
  * ONNX (``jaxse.export.onnx_export``): ``tf2onnx.convert.from_tflite`` on that all-builtin TFLite model (standard
    ONNX operators only, opset 17); tf2onnx cannot convert the SavedModel's ``XlaCallModule`` op.
So before ``jax2tf`` the step's jaxpr is re-evaluated in real arithmetic by ``jaxse.export.realify.lower_for_tflite``
(complex values as (re, im) pairs, FFTs as DFT matmuls, no input dilation, constants folded). The step is traced
with ``conv_lowering="xla"`` and complex products lowered with ``impl="real"`` for models that have the field
(DCCRN); the exported graph is all float32 (plus the int32 frame counter ``t`` and ``end``, the frames of a finite
signal; its initial value 2**30 is an open stream). Hop outputs match
``Streamer.stream_step`` (TF, TFLite and onnxruntime, CPU; tolerances in tests/export).

This module: the flat real state at the boundary (``FlatState``), the traced step (``build_step``) and the
SavedModel / TFLite / ONNX writers (``export``).
"""
from __future__ import annotations

from jaxse.errors import UsageError

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxse.export.realify import lower_for_tflite
from jaxse.signal import SAMPLE_RATE

FORMATS = ("saved_model", "tflite", "onnx")
MODEL_FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
SIGNATURE_FILE = "signature.json"


# ====================================================================================================================
# Flat, real state at the boundary
# ====================================================================================================================
def _leaf_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "_".join(parts)


class FlatState:
    """Bijection between the Streamer's state pytree and a flat list of real tensors.

    ``specs``: list of ``(name, shape, dtype)`` of the flat tensors (complex leaves give ``<name>_re``,
    ``<name>_im`` float32; ``None`` leaves are absent from the tree's leaves and so from the list).
    """

    def __init__(self, state):
        paths_leaves, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        self.complex = []
        self.specs: list[tuple[str, tuple[int, ...], np.dtype]] = []
        self.init: list[float] = []
        for path, leaf in paths_leaves:
            name = _leaf_name(path)
            leaf = np.asarray(leaf)
            fill = leaf.reshape(-1)[0] if leaf.size else 0
            if leaf.size and not np.all(leaf == fill):
                raise ValueError(f"initial state entry {name!r} is not constant; cannot describe it by one value")
            c = np.iscomplexobj(leaf)
            self.complex.append(c)
            if c:
                self.specs += [(name + "_re", leaf.shape, np.dtype(np.float32)),
                               (name + "_im", leaf.shape, np.dtype(np.float32))]
                self.init += [float(np.real(fill)), float(np.imag(fill))]
            else:
                self.specs.append((name, leaf.shape, leaf.dtype))
                self.init.append(fill.item() if hasattr(fill, "item") else fill)
        names = [n for n, _, _ in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"state names collide: {names}")

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.specs]

    def flatten(self, state) -> list:
        """State pytree -> flat list of real arrays (inside or outside a trace)."""
        out = []
        for leaf, c in zip(jax.tree.leaves(state), self.complex):
            out += [jnp.real(leaf).astype(jnp.float32), jnp.imag(leaf).astype(jnp.float32)] if c else [leaf]
        return out

    def unflatten(self, flat) -> Any:
        it = iter(flat)
        leaves = [lax.complex(next(it), next(it)) if c else next(it) for c in self.complex]
        return jax.tree.unflatten(self.treedef, leaves)

    def initial(self) -> list[np.ndarray]:
        return [np.full(shape, v, dtype) for (_, shape, dtype), v in zip(self.specs, self.init)]


# ====================================================================================================================
# Export
# ====================================================================================================================
class ExportError(UsageError):
    """An export that cannot be done as asked (message names the problem)."""


def _load(checkpoint, step):
    from jaxse.io import checkpoints
    from jaxse.models import get_model

    meta = checkpoints.read_meta(checkpoint, step)
    name = meta.get("model", {}).get("name")
    overrides = {}
    if name is not None:
        fields = set(type(get_model(name)).__dataclass_fields__)
        if "impl" in fields:  # complex products as one real conv/matmul on [re, im]
            overrides["impl"] = "real"
    return checkpoints.load_model(checkpoint, step, **overrides)


def build_step(model, variables, batch: int):
    """``(streamer, flat, step_fn)``: ``step_fn(in_hop, *flat_state) -> [out_hop, *flat_new_state]`` (pure JAX,
    variables closed over, TFLite-safe primitives); ``flat``: the ``FlatState`` of the boundary."""
    from jaxse.inference.streamer import Streamer

    # Convolutions stay convolutions (TFLite's CONV_2D); realify writes the transposed ones in polyphase form.
    streamer = Streamer(model, conv_lowering="xla")
    variables = jax.tree.map(jnp.asarray, variables)
    flat = FlatState(streamer.init_stream(variables, batch))

    def step(in_hop, *state):
        out, new = streamer._step(variables, flat.unflatten(state), in_hop)
        return [out.astype(jnp.float32), *flat.flatten(new)]

    example = [jax.ShapeDtypeStruct((batch, streamer.hop), jnp.float32)] + [
        jax.ShapeDtypeStruct(shape, dtype) for _, shape, dtype in flat.specs]
    return streamer, flat, lower_for_tflite(step, *example)


def _tf_functions(streamer, flat: FlatState, step_fn, batch: int):
    import tensorflow as tf
    from jax.experimental import jax2tf

    converted = jax2tf.convert(step_fn, with_gradient=False)
    specs = [tf.TensorSpec((batch, streamer.hop), tf.float32, name="in_hop")] + [
        tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for name, shape, dtype in flat.specs]

    @tf.function(autograph=False, input_signature=specs)
    def step(in_hop, *state):
        outs = converted(in_hop, *state)
        return {"out_hop": outs[0], **{n: o for n, o in zip(flat.names, outs[1:])}}

    init_values = flat.initial()

    @tf.function(autograph=False, input_signature=[])
    def initial_state():
        return {n: tf.constant(v) for n, v in zip(flat.names, init_values)}

    return step, initial_state


def _describe(fmt, model, meta, streamer, flat: FlatState, batch: int) -> dict:
    sr = int(meta.get("sample_rate", SAMPLE_RATE))
    desc = {
        "format": fmt,
        "model": meta.get("model", {}),
        "checkpoint_step": meta.get("step"),
        "batch": batch,
        "hop": streamer.hop,
        "win_length": streamer.win,
        "n_fft": streamer.n_fft,
        "sample_rate": sr,
        "delay_samples": int(streamer.delay),
        "delay_ms": 1000.0 * streamer.delay / sr,
        "latency_samples": int(streamer.latency_samples),
        "latency_ms": 1000.0 * streamer.latency_samples / sr,
        "signature": "serving_default",
        "inputs": ["in_hop"] + flat.names,
        "outputs": ["out_hop"] + flat.names,
        "in_hop": {"shape": [batch, streamer.hop], "dtype": "float32"},
        "state": [{"name": n, "shape": list(s), "dtype": np.dtype(d).name, "init": v}
                  for (n, s, d), v in zip(flat.specs, flat.init)],
        "usage": "out = step(in_hop=x, **state); feed every state output back under the same name on the next hop; "
                 "start from initial_state (each tensor filled with its 'init'). Output hop k is the input delayed "
                 "by delay_samples.",
    }
    if fmt == "onnx":
        from jaxse.export.onnx_export import output_name

        desc["signature"] = None
        desc["outputs"] = ["out_hop"] + [output_name(n) for n in flat.names]
        desc["usage"] = ("outs = session.run(None, {'in_hop': x, **state}) (onnxruntime); the outputs are 'out_hop' "
                         "and, per state tensor <name>, 'new_<name>': feed it back as input <name> on the next hop; "
                         "start from initial_state (each tensor filled with its 'init'). Output hop k is the input "
                         "delayed by delay_samples.")
    return desc


def export(checkpoint, out_dir, *, format: str = "saved_model", batch: int = 1, step: int | None = None,
           force: bool = False) -> Path:
    """Export the streaming step of ``checkpoint`` into ``out_dir`` (layout in the module docstring); returns the
    path of the model (``out_dir/saved_model``, ``out_dir/model.tflite`` or ``out_dir/model.onnx``).

    ``batch``: number of parallel streams, fixed in the exported shapes. ``step``: checkpoint step (default: best,
    else latest). Raises ``ExportError`` (bad arguments, existing output) or ``checkpoints.CheckpointError``.
    """
    # Longer than a screen: the export stages (load, trace, convert, verify, write atomically) run in one sequence.
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    if int(batch) < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    batch = int(batch)
    out = Path(out_dir).absolute()
    if out.exists() and not force:
        raise ExportError(f"output {str(out_dir)!r} exists; pass force=true to overwrite it")
    from jaxse.io.atomic import check_writable_dir, temp_name

    check_writable_dir(out.parent, "export output's folder")  # before the (long) conversion
    if format == "onnx":
        from jaxse.export import onnx_export

        try:
            onnx_export.check_available()
        except ImportError as e:
            raise ExportError(f"format=onnx needs tf2onnx and onnx (pip install 'jaxse[onnx]'): {e}") from None
    model, variables, meta = _load(checkpoint, step)
    streamer, flat, step_fn = build_step(model, variables, batch)
    if format == "onnx":
        clash = {onnx_export.output_name(n) for n in flat.names} & {"in_hop", "out_hop", *flat.names}
        if clash:
            raise ExportError(f"ONNX output names collide with input names: {sorted(clash)}")
    tf_step, tf_init = _tf_functions(streamer, flat, step_fn, batch)

    import tensorflow as tf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out, ".tmp")  # named before it exists, made inside the try: see jaxse.io.atomic.temp_name
    try:
        tmp.mkdir()
        module = tf.Module()
        module.step, module.initial_state = tf_step, tf_init
        sm_dir = tmp / "saved_model"
        tf.saved_model.save(module, str(sm_dir), signatures={"serving_default": tf_step.get_concrete_function(),
                                                             "initial_state": tf_init.get_concrete_function()})
        if format in ("tflite", "onnx"):
            conv = tf.lite.TFLiteConverter.from_saved_model(str(sm_dir), signature_keys=["serving_default"])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            (tmp / "model.tflite").write_bytes(conv.convert())
            shutil.rmtree(sm_dir)
        if format == "onnx":
            onnx_export.tflite_to_onnx(tmp / "model.tflite", tmp / "model.onnx", ["in_hop"] + flat.names,
                                       [("out_hop", "out_hop")] + [(n, onnx_export.output_name(n)) for n in flat.names])
            (tmp / "model.tflite").unlink()
        (tmp / SIGNATURE_FILE).write_text(json.dumps(_describe(format, model, meta, streamer, flat, batch),
                                                     indent=1) + "\n")
        if out.exists():  # force
            old = temp_name(out, ".old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / MODEL_FILES[format]
