"""Streaming: one STFT hop in, one hop out (or a chunk of K hops), equal to the offline model up to a fixed delay.

    streamer = Streamer(model)
    state = streamer.init_stream(variables, batch)                  # zeros; a pytree of arrays
    out_hop, state = streamer.stream_step(variables, state, in_hop)  # jitted; in_hop, out_hop: float32[batch, hop]
    out, state = streamer.stream_chunk(variables, state, chunk)      # jitted; float32[batch, K * hop] both
    for block in streamer.enhance_blocks(variables, blocks, samples): ...  # a whole finite signal, exact

The state carries everything the offline pass sees in the past: the analysis buffer (last ``win`` samples), for each
encoder/decoder convolution the previous input frame (their kernels span two frames), the LSTM carries, delay lines
for the skip connections and the noisy spectrum when layers look ahead (DCCRN ``decoder="paper"``, asteroid's
encoders), and the overlap-add accumulator of the synthesis.

The model says how (``jaxse.models.base.SpectralUNet``): its layer hooks (``to_features``, ``encode_layer``,
``bottleneck``, ``decode_layer``, ``from_mask``), its time alignment (``time_padding()``: a layer padded with
``left`` frames looks ``1 - left`` frames ahead) and its framing (``frame_start``, ``analyse_frame``,
``synthesise_frame``, ``overlap_add_gain``).

Alignment: the concatenated output hops equal the offline ``model.apply(variables, x)`` delayed by
``streamer.delay = win - hop + lookahead_frames * hop`` samples; adding the hop of input buffering gives the
model's algorithmic latency ``model.latency_samples``. An open stream (live audio) has no end, so its last
``lookahead_frames`` frames would differ from the offline pass, whose look-ahead at the very end sees zero padding; a
stream told the signal's length (``init_stream(..., samples=n)``) zeroes every layer's input past the signal's last
frame the same way, and its output, flushed with ``delay`` zeros, equals ``model.apply`` to the last sample.

Chunks: ``stream_chunk`` runs the convolutions of K frames at once (frame-parallel, each layer's previous frame from
the state) and the recurrent bottleneck over them in one scan, so a long signal costs about what the offline pass
costs per sample with memory bounded by K; its output equals K calls of ``stream_step``. There is one traversal of
the network (``Streamer._advance``, any K) and one compiled cache: ``stream_step`` is the chunk of K = 1, whose
operations are those of a single frame (a slice for the analysis frame, one bottleneck call, one overlap-add sum).

Precision: ``Streamer(model, precision="int8" | "bfloat16")`` stores the weight matrices as int8 with per-output
channel scales or as bfloat16 (``jaxse.nn.quant``) and dequantises them inside the compiled step.
Many streams in one step, joining and leaving between hops: ``jaxse.inference.multistream.MultiStreamer``.

``python -m jaxse.stream`` (``jaxse/stream.py``) runs a file through it.
"""
from __future__ import annotations

import time

from functools import partial
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxse.nn.quant import PRECISIONS, dequantize_variables, is_quantized, quantize_variables
from jaxse.signal import overlap_add

State = dict[str, Any]


def precision_options(precision: str) -> dict:
    """The one mapping of the user-facing ``precision=`` (commands and ``Enhancer``) to ``Streamer`` arguments:
    ``float32`` (exact: float32 weights and products), ``bfloat16`` (bfloat16 products accumulated in float32; the
    weights stay float32 constants of the compiled step, which measured faster per hop than bfloat16 storage
    converted inside the step), ``int8`` (weights stored as int8 with per-output-channel scales, a quarter of the
    bytes, float32 products). Returns ``{"compute_dtype": ..., "precision": ...}``; unknown: ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "bfloat16":
        return {"compute_dtype": "bfloat16", "precision": "float32"}
    return {"compute_dtype": "float32", "precision": precision}


def with_compute_dtype(model, compute_dtype: str | None):
    """``model`` with its products' operand dtype set (``jaxse.nn``): ``"float32"`` (the exact path) or
    ``"bfloat16"``; None leaves the model's own. An unknown value is a ``ValueError``."""
    if compute_dtype not in (None, "float32", "bfloat16"):
        raise ValueError(f"unknown compute_dtype {compute_dtype!r}; valid: None, float32, bfloat16")
    if compute_dtype is None:
        return model
    return model.clone(compute_dtype=None if compute_dtype == "float32" else compute_dtype)


def _frame_mask(x: jnp.ndarray, first, last) -> jnp.ndarray:
    """Zero the frames of ``x: [batch, K, ...]`` (offline indices ``first .. first + K - 1``) outside ``[0, last)``.
    ``first``, ``last``: int32 scalars (one position for the batch) or ``int32[batch]`` (a position per row)."""
    k = x.shape[1]
    idx = jnp.expand_dims(first, -1) + jnp.arange(k)  # [K] or [batch, K]
    inside = (idx >= 0) & (idx < jnp.expand_dims(last, -1))
    inside = inside.reshape((inside.shape[0] if inside.ndim == 2 else 1, k) + (1,) * (x.ndim - 2))
    return jnp.where(inside, x, jnp.zeros_like(x))


def _delay_line(fifo, x: jnp.ndarray):
    """``K`` frames into a delay line of ``L`` frames: ``(the K oldest frames, the new line)``."""
    if fifo is None:
        return x, None
    full = jnp.concatenate([fifo, x], axis=1)
    return full[:, : x.shape[1]], full[:, x.shape[1]:]


def _select_rows(ok, new, old, axis: int):
    """``where(ok, new, old)`` for ``ok`` a scalar or one flag per row of the batch axis ``axis`` of the arrays."""
    if jnp.ndim(ok):
        shape = [1] * new.ndim
        shape[axis] = ok.shape[0]
        ok = ok.reshape(shape)
    return jnp.where(ok, new, old)


def _encode(m, net: State, feat: jnp.ndarray, t, end, *, enc_ahead, enc_grow):
    """Encoder over ``K`` frames at once (called inside ``model.apply``; ``m`` is the bound model).

    ``feat: [batch, K, freq, 1]`` network input of frames ``t .. t + K - 1`` (indices in the offline framing; negative
    while the stream warms up). Every layer's kernel spans two frames ``[previous, current]``: each layer sees its
    previous input frame from the state and the ``K`` new ones. A layer that looks ahead (``enc_ahead[i] = 1``)
    labels its output with the previous frame's index, so its output lags one frame. Frames with negative indices
    never reach a layer's left context (offline they do not exist: the left context there is zero padding); a
    layer's input frame at or past its end (``end`` plus the frames the layers before it add or remove,
    ``enc_grow``) is zero, as the offline pass's right padding. Returns ``(bottleneck input, skips, new enc_prev)``.
    """
    x, skips, prevs = feat, [], []
    for i, prev in enumerate(net["enc_prev"]):
        x = _frame_mask(x, t - sum(enc_ahead[:i]), end + sum(enc_grow[:i]))
        y = m.encode_layer(i, jnp.concatenate([prev, x], axis=1), False)
        prevs.append(x[:, -1:])
        skips.append(y)
        x = y
    return x, skips, prevs


def _decode(m, net: State, x: jnp.ndarray, skips, spec: jnp.ndarray, b, end, *, dec_ahead, enc_grow, dec_grow):
    """Decoder and mask over ``K`` frames (bottleneck output ``x``, its first frame index ``b``; called inside
    ``model.apply``). Skip connections and the noisy spectrum go through delay lines to stay aligned with the
    decoder layers that look ahead. Returns ``(enhanced spectrum [batch, K, bins] of frames b - sum(dec_ahead) ...,
    new dec_prev, skip_fifo, spec_fifo)``."""
    prevs, fifos = [], []
    for i, prev in enumerate(net["dec_prev"]):
        skip, fifo = _delay_line(net["skip_fifo"][i], skips[-1 - i])
        fifos.append(fifo)
        inp = _frame_mask(jnp.concatenate([x, skip], axis=-1), b - sum(dec_ahead[:i]),
                          end + sum(enc_grow) + sum(dec_grow[:i]))
        x = m.decode_layer(i, jnp.concatenate([prev, inp], axis=1), False)
        prevs.append(inp[:, -1:])
    spec, spec_fifo = _delay_line(net["spec_fifo"], spec)
    out = _frame_mask(m.from_mask(x, spec), b - sum(dec_ahead), end + sum(enc_grow) + sum(dec_grow))
    return out, prevs, fifos, spec_fifo


def _analysis_frames(prev: jnp.ndarray, new: jnp.ndarray, k: int, hop: int, win: int) -> jnp.ndarray:
    """The ``K`` analysis frames ``[batch, K, win]`` after ``prev: [batch, win]`` (the last frame) and the new hops
    ``new: [batch, K * hop]``: frame ``j`` ends with new hop ``j``. Slices only (no gather)."""
    if k == 1:
        return jnp.concatenate([prev[:, hop:], new], axis=1)[:, None]
    blocks = jnp.concatenate([prev, new], axis=1).reshape(prev.shape[0], -1, hop)  # win is a multiple of hop
    return jnp.concatenate([blocks[:, 1 + i: 1 + i + k] for i in range(win // hop)], axis=-1)


def _network_shapes(m, feat: jnp.ndarray):
    """Per-layer frame shapes: encoder inputs, skips, decoder inputs (called inside ``model.apply``)."""
    enc_in, dec_in = [], []
    x = feat
    skips = []
    for i in range(len(m.encoders)):
        enc_in.append(x)
        x = m.encode_layer(i, jnp.concatenate([x, x], axis=1), False)
        skips.append(x)
    x, carries = m.bottleneck(x, None)
    for i in range(len(m.decoders)):
        inp = jnp.concatenate([x, skips[-1 - i]], axis=-1)
        dec_in.append(inp)
        x = m.decode_layer(i, jnp.concatenate([inp, inp], axis=1), False)
    return enc_in, skips, dec_in, carries


class Streamer:
    """Hop-by-hop inference of a spectral model (``SpectralUNet``: CRN, DCCRN, DCCRNAsteroid). See the module
    docstring."""

    def __init__(self, model, conv_lowering: str = "matmul", compute_dtype: str | None = None,
                 precision: str = "float32"):
        """``conv_lowering``: how the step's convolutions are lowered (``jaxse.nn``); on CPU the patches-times-weights
        ``matmul`` form is the faster one for single frames (experiments/bench/RESULTS.md). ``compute_dtype``: the
        products' operand dtype (``"bfloat16"``: mixed precision, ``jaxse.nn``, no longer equal to the offline
        float32 pass to 1e-5; None: the model's own). ``precision``: how the weights are stored for the compiled
        steps (``jaxse.nn.quant``): ``"float32"`` (default; compiled in as constants, exact), ``"bfloat16"`` or
        ``"int8"`` (per output channel scales): the variables given to ``stream_step`` / ``stream_chunk`` are
        quantised once and passed to the step as arguments, dequantised inside it. Orthogonal to
        ``compute_dtype``."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.model = with_compute_dtype(model, compute_dtype).clone(conv_lowering=conv_lowering)
        self.conv_lowering, self.precision = conv_lowering, precision
        self.hop, self.win, self.n_fft = model.hop, model.win_length, model.n_fft
        if self.win % self.hop:
            raise ValueError(f"streaming needs win_length a multiple of hop, got {self.win} and {self.hop}")
        if model.kernel[0] != 2:
            raise ValueError(f"{type(model).__name__}: streaming needs kernels spanning 2 frames, got {model.kernel}")
        pads = model.time_padding()
        # A layer padded with `left` frames looks 1 - left frames ahead (TimePadding).
        self.enc_ahead = tuple(1 - left for left, _ in pads.encoders)
        self.dec_ahead = tuple(1 - left for left, _ in pads.decoders)
        if any(a not in (0, 1) for a in self.enc_ahead + self.dec_ahead):
            raise ValueError(f"{type(model).__name__}: cannot stream the time padding {pads}")
        self.lookahead = sum(self.enc_ahead) + sum(self.dec_ahead)
        # Frames a layer adds to the time axis (left + right padding - kernel + 1): 0, or -1 for asteroid's encoders.
        self.enc_grow = tuple(left + right - 1 for left, right in pads.encoders)
        self.dec_grow = tuple(left + right - 1 for left, right in pads.decoders)
        # Offline frame index of the newest analysis frame = steps taken - frame_offset (frame 0 is complete after
        # (frame_start + win) / hop hops).
        self.frame_offset = (model.frame_start + self.win) // self.hop - 1
        self.delay = self.win - self.hop + self.lookahead * self.hop
        self.latency_samples = int(model.latency_samples)
        self._gain = jnp.asarray(model.overlap_add_gain(), jnp.float32)
        self._bound: tuple[Any, Any] | None = None  # (variables, the compiled step bound to them), any K
        self._axes: State | None = None  # the batch axis of every state leaf (batch_axes)

    def _skip_lag(self, i: int) -> int:
        """Frames by which decoder layer ``i``'s input lags the skip connection it is concatenated with."""
        n = len(self.enc_ahead)
        return sum(self.enc_ahead[n - i:]) + sum(self.dec_ahead[:i])

    # ------------------------------------------------------------------------------------------------ state
    def num_frames(self, variables, samples: int) -> int:
        """STFT frames of the offline pass over ``samples`` samples (the model's own framing)."""
        def frames(n):  # traced on a shape; the framing's index tables are built in NumPy, so keep n small
            x = jax.ShapeDtypeStruct((1, n), jnp.float32)
            return int(jax.eval_shape(lambda x: self.model.apply(dequantize_variables(variables), x,
                                                                 method=lambda m, x: m.analysis(x)), x).shape[1])

        base = self.win + 2 * self.hop  # past one window every framing adds one frame per hop
        if samples <= base:
            return frames(samples)
        n0 = base + (samples - base) % self.hop
        return frames(n0) + (samples - n0) // self.hop

    def init_stream(self, variables, batch: int, samples: int | None = None) -> State:
        """Zero state for ``batch`` parallel streams (shapes from ``jax.eval_shape``; nothing is computed).

        ``samples``: the length of a finite signal. The stream then treats what follows it as the offline pass does
        (zero padding of every layer's input past its last frame), so that the output, flushed with ``delay``
        samples of zeros, equals ``model.apply`` to the last sample. ``None``: an open stream (live audio).
        ``t`` (the offline index of the newest frame) and ``end`` (frames of the signal) are int32 scalars, shared
        by the batch; ``jaxse.inference.multistream`` gives them one entry per row (``int32[batch]``)."""
        bins = self.n_fft // 2 + 1
        spec = jax.ShapeDtypeStruct((batch, 1, bins), jnp.complex64)
        apply = lambda *a, method: self.model.apply(dequantize_variables(variables), *a, method=method)  # noqa: E731
        feat = jax.eval_shape(lambda s: apply(s, method=lambda m, s: m.to_features(s)), spec)
        enc_in, skips, dec_in, carries = jax.eval_shape(lambda f: apply(f, method=_network_shapes), feat)
        zeros = lambda s: jnp.zeros(s.shape, s.dtype)  # noqa: E731
        n_dec = len(dec_in)
        net = {
            "enc_prev": [zeros(s) for s in enc_in],
            "dec_prev": [zeros(s) for s in dec_in],
            "skip_fifo": [None if self._skip_lag(i) == 0 else
                          jnp.zeros((batch, self._skip_lag(i)) + skips[-1 - i].shape[2:], skips[-1 - i].dtype)
                          for i in range(n_dec)],
            "carries": jax.tree.map(zeros, carries),
            "spec_fifo": None if not self.lookahead else jnp.zeros((batch, self.lookahead, bins), jnp.complex64),
        }
        return {"analysis": jnp.zeros((batch, self.win), jnp.float32),
                "synthesis": jnp.zeros((batch, self.win), jnp.float32), "net": net,
                "t": jnp.asarray(-self.frame_offset, jnp.int32),
                "end": jnp.asarray(2 ** 30 if samples is None else self.num_frames(variables, samples), jnp.int32)}

    def batch_axes(self, variables) -> State:
        """The state's structure with, for each leaf, the axis of its rows (streams): 0 for most, 2 for the complex
        LSTM carries ``[2, 2, batch, H]``; ``t`` and ``end`` have 0 (their per-row form ``int32[batch]``)."""
        if self._axes is None:
            one, two = (jax.eval_shape(lambda n=n: self.init_stream(variables, n)) for n in (1, 2))
            axes = jax.tree.map(lambda a, b: next((i for i, (p, q) in enumerate(zip(a.shape, b.shape)) if p != q), 0),
                                one, two)
            self._axes = axes
        return self._axes

    # ------------------------------------------------------------------------------------------------ steps
    def stream_step(self, variables, state: State, in_hop):
        """``(out_hop: float32[batch, hop], new_state)``: one hop; a pure function of its arguments. The same
        traversal as ``stream_chunk`` with ``K = 1`` (``_advance``), compiled in the same cache.

        Compiled once per ``variables`` object with the weights as constants (``precision="float32"``), so XLA folds
        the per-hop work that depends on weights only (the 3-multiplication operands ``c``, ``d - c``, ``c + d``,
        kernel layouts) at compile time instead of redoing it every hop; int8 / bfloat16 weights are arguments,
        dequantised in the step. Under tracing (``variables`` abstract) it is the plain step.
        """
        if jnp.shape(in_hop)[-1] != self.hop:
            raise ValueError(f"stream_step takes one hop of {self.hop} samples, got shape {jnp.shape(in_hop)}")
        return self._call(variables, state, in_hop)

    def stream_chunk(self, variables, state: State, chunk):
        """``(out: float32[batch, K * hop], new_state)``: ``K`` hops at once, equal to ``K`` calls of ``stream_step``.

        The convolutions run over the ``K`` frames in parallel (each layer's previous frame comes from the state),
        the recurrent bottleneck over them in one scan, so a long signal costs about what the offline pass costs,
        in memory bounded by ``K``. Compiled once per ``variables`` object and chunk shape.
        """
        return self._call(variables, state, chunk)

    def bind(self, variables, fn=None):
        """``fn(variables, *args)`` (default ``_advance``) compiled for ``variables``: a function of ``*args``.
        float32 weights are compile-time constants; stored int8 / bfloat16 weights (``precision``, or variables
        already quantised with ``jaxse.nn.quant.quantize_variables``) are passed as arguments and dequantised inside,
        so that the step reads the stored bytes."""
        fn = fn or self._advance
        stored = variables if is_quantized(variables) else quantize_variables(variables, self.precision)
        if is_quantized(stored):
            return partial(jax.jit(fn), stored)
        return jax.jit(partial(fn, variables))

    def _call(self, variables, state: State, x):
        if self._bound is not None and self._bound[0] is variables:  # the per-hop path: no walk over the weights
            return self._bound[1](state, x)
        if any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(variables)):
            return self._advance(variables, state, x)
        self._bound = (variables, self.bind(variables))
        return self._bound[1](state, x)

    def _step(self, variables, state: State, in_hop: jnp.ndarray):
        """``in_hop: float32[batch, hop]`` -> ``(out_hop: float32[batch, hop], state)``: ``_advance`` with ``K = 1``
        (the export traces this)."""
        return self._advance(variables, state, in_hop)

    def _advance(self, variables, state: State, chunk: jnp.ndarray):
        """``chunk: float32[batch, K * hop]`` -> ``(float32[batch, K * hop], state)``: the one traversal of the
        network, for any ``K``. ``K = 1`` (the per-hop step) runs the same operations as a single frame: the analysis
        frame is a slice, the bottleneck one call, the overlap-add one addition. ``state["t"]`` and
        ``state["end"]``: scalars, or one per row (``int32[batch]``, ``jaxse.inference.multistream``)."""
        variables = dequantize_variables(variables)
        m, hop, win = self.model, self.hop, self.win
        b, n = chunk.shape
        if n % hop:
            raise ValueError(f"a chunk is whole hops: {n} samples is not a multiple of {hop}")
        k = n // hop
        frames = _analysis_frames(state["analysis"], chunk.astype(jnp.float32), k, hop, win)  # [b, K, win]
        spec = m.analyse_frame(frames.reshape(b * k, win)).reshape(b, k, -1)
        feat = m.apply(variables, spec, method=lambda m, s: m.to_features(s))
        net, t, end = state["net"], state["t"], state["end"]
        x, skips, enc_prev = m.apply(variables, net, feat, t, end, method=partial(
            _encode, enc_ahead=self.enc_ahead, enc_grow=self.enc_grow))
        b0 = t - sum(self.enc_ahead)  # index of the first bottleneck frame of the chunk
        x, carries = self._bottleneck(variables, x, net["carries"], b0)
        enhanced, dec_prev, skip_fifo, spec_fifo = m.apply(variables, net, x, skips, spec, b0, end, method=partial(
            _decode, dec_ahead=self.dec_ahead, enc_grow=self.enc_grow, dec_grow=self.dec_grow))
        analysis = frames[:, -1]  # the next state's buffer
        frames = m.synthesise_frame(enhanced.reshape(b * k, 1, -1)).reshape(b, k, win)
        if k == 1:
            acc = state["synthesis"] + frames[:, 0]
        else:
            acc = jnp.pad(state["synthesis"], [(0, 0), (0, (k - 1) * hop)]) + overlap_add(frames, hop)
        out = acc[:, : k * hop] * (self._gain if k == 1 else jnp.tile(self._gain, k))
        acc = jnp.concatenate([acc[:, k * hop:], jnp.zeros_like(acc[:, :hop])], axis=1)
        new_net = {"enc_prev": enc_prev, "dec_prev": dec_prev, "skip_fifo": skip_fifo, "carries": carries,
                   "spec_fifo": spec_fifo}
        return out, {"analysis": analysis, "synthesis": acc, "net": new_net, "t": t + k, "end": end}

    def _bottleneck(self, variables, x: jnp.ndarray, carries, b0):
        """The recurrent bottleneck over the ``K`` frames of ``x`` (first index ``b0``: a scalar or one per row);
        the carries stay zero before frame 0 (offline, the LSTM starts there)."""
        m = self.model
        rnn = lambda x, c: m.apply(variables, x, c, method=lambda m, x, c: m.bottleneck(x, c))  # noqa: E731
        axes = self.batch_axes(variables)["net"]["carries"] if jnp.ndim(b0) else jax.tree.map(lambda _: 0, carries)

        def gated(x, c, first):  # x: one frame
            y, new = rnn(x, c)
            return y, jax.tree.map(lambda n_, o, a: _select_rows(first >= 0, n_, o, a), new, c, axes)

        if x.shape[1] == 1:
            return gated(x, carries, b0)

        def per_frame(x, carries):  # the stream's first frames
            def body(c, inp):
                xj, j = inp
                y, c = gated(xj[:, None], c, b0 + j)
                return c, y[:, 0]
            carries, ys = jax.lax.scan(body, carries, (jnp.moveaxis(x, 1, 0), jnp.arange(x.shape[1])))
            return jnp.moveaxis(ys, 0, 1), carries

        return jax.lax.cond(jnp.all(b0 >= 0), rnn, per_frame, x, carries)

    # ------------------------------------------------------------------------------------------------ helpers
    def run(self, variables, audio: np.ndarray, *, flush: bool = True, hop_times: list | None = None,
            chunk_hops: int | None = None) -> np.ndarray:
        """Stream ``audio: float32[batch, samples]``; returns ``float32[batch, samples]`` aligned with the offline
        output (the first ``delay`` samples of the stream are dropped). With ``flush``, the stream knows where the
        signal ends and zeros are fed after it to push the last samples out: the output equals ``model.apply`` to
        the last sample. ``hop_times``: a list that receives each hop's wall time in seconds (step call to result on
        the host, what a real-time caller waits); then it runs hop by hop, else in chunks of ``chunk_hops`` hops
        (default: about 4 s)."""
        audio = np.asarray(audio, np.float32)
        b, n = audio.shape
        if hop_times is None and flush:
            return np.concatenate(list(self.enhance_blocks(variables, [audio], n, chunk_hops=chunk_hops)), axis=1)
        total = n + (self.delay if flush else 0)
        hops = -(-total // self.hop)
        x = np.zeros((b, hops * self.hop), np.float32)
        x[:, :n] = audio
        state = self.init_stream(variables, b, n if flush else None)
        outs = []
        for k in range(hops):
            t0 = time.perf_counter()
            y, state = self.stream_step(variables, state, x[:, k * self.hop:(k + 1) * self.hop])
            outs.append(np.asarray(y))  # waits for the result
            if hop_times is not None:
                hop_times.append(time.perf_counter() - t0)
        y = np.concatenate(outs, axis=1)[:, self.delay:]
        return y[:, :n] if flush else y

    def default_chunk_hops(self) -> int:
        """About 4 s of hops: long enough that a chunk costs what the offline pass costs per sample."""
        return max(1, (4 * 16000) // self.hop)

    def enhance_blocks(self, variables, blocks: Iterable[np.ndarray], samples: int, *,
                       chunk_hops: int | None = None) -> Iterator[np.ndarray]:
        """Enhance one finite signal of ``samples`` samples that arrives as ``blocks`` (``float32[batch, any]`` each,
        in order); yields its enhanced samples ``float32[batch, m]`` in order, ``samples`` in all, equal to
        ``model.apply`` over the whole signal. Memory is bounded by the chunk (``chunk_hops`` hops), not the signal:
        one compiled chunk shape, the last chunk zero-padded."""
        k = chunk_hops or self.default_chunk_hops()
        size = k * self.hop
        state = None
        pending: list[np.ndarray] = []
        have, fed, skip, left = 0, 0, self.delay, samples

        def process(x):
            nonlocal state, skip, left
            if state is None:
                state = self.init_stream(variables, x.shape[0], samples)
            y, state = self.stream_chunk(variables, state, jnp.asarray(x))
            y = np.asarray(y)
            cut = min(skip, y.shape[1])
            y, skip = y[:, cut:], skip - cut
            y = y[:, :left]
            left -= y.shape[1]
            return y

        def full_chunks(final: bool):
            nonlocal pending, have
            buf = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            start = 0
            while have - start >= size or (final and start < have):
                x = buf[:, start:start + size]
                if x.shape[1] < size:
                    x = np.pad(x, [(0, 0), (0, size - x.shape[1])])
                start += size
                y = process(x)
                if y.shape[1]:
                    yield y
            rest = buf[:, min(start, have):have]
            pending, have = [rest], rest.shape[1]

        for blk in blocks:
            blk = np.asarray(blk, np.float32)
            if blk.ndim != 2:
                raise ValueError(f"blocks are float32[batch, samples], got shape {blk.shape}")
            pending.append(blk)
            have += blk.shape[1]
            fed += blk.shape[1]
            if have >= size:
                yield from full_chunks(False)
        if fed != samples:
            raise ValueError(f"the blocks held {fed} samples, not the {samples} announced")
        b = pending[0].shape[0]
        pending.append(np.zeros((b, self.delay), np.float32))  # flush
        have += self.delay
        yield from full_chunks(True)
        while left > 0:  # the flush fell short of a chunk boundary
            y = process(np.zeros((b, size), np.float32))
            if y.shape[1]:
                yield y
