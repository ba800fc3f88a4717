"""Real-time streaming: one STFT hop in, one hop out, equal to the offline model up to a fixed delay.

    streamer = Streamer(model)
    state = streamer.init_stream(variables, batch)                  # zeros; a pytree of arrays
    out_hop, state = streamer.stream_step(variables, state, in_hop)  # jitted; in_hop, out_hop: float32[batch, hop]

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
model's algorithmic latency ``model.latency_samples``. Only the last ``lookahead_frames`` frames differ (offline,
the decoder's look-ahead at the very end sees zero features; a stream has no end).

``python -m jaxse.stream`` (``jaxse/stream.py``) runs a file through it.
"""
from __future__ import annotations

import time

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

State = dict[str, Any]


def _frame_network(m, net: State, feat: jnp.ndarray, spec: jnp.ndarray, t: jnp.ndarray, *,
                   enc_ahead: tuple[int, ...], dec_ahead: tuple[int, ...]):
    """One frame through encoder, bottleneck and decoder (called inside ``model.apply``; ``m`` is the bound model).

    ``feat: [batch, 1, freq, 1]`` network input of frame ``t`` (its index in the offline framing; negative while the
    stream warms up), ``spec: [batch, 1, bins]`` its noisy spectrum. Every layer's kernel spans two frames
    ``[previous, current]``: a layer that looks ahead (``*_ahead[i] = 1``) labels its output with the previous
    frame's index, so its output lags one frame; skip connections and the noisy spectrum go through delay lines to stay
    aligned. Frames with negative indices never reach the LSTM or a layer's left context (offline they do not
    exist: the left context there is zero padding). Returns the enhanced spectrum frame ``t - lookahead`` and the
    new network state.
    """
    new: State = {"enc_prev": [], "dec_prev": [], "skip_fifo": [], "carries": None, "spec_fifo": None}

    def keep(x, index):  # a frame before the start of the signal is stored as zeros
        return jnp.where(index >= 0, x, jnp.zeros_like(x))

    x = feat
    skips = []
    for i, prev in enumerate(net["enc_prev"]):
        y = m.encode_layer(i, jnp.concatenate([prev, x], axis=1), False)
        new["enc_prev"].append(keep(x, t - sum(enc_ahead[:i])))
        skips.append(y)
        x = y
    b = t - sum(enc_ahead)  # index of the bottleneck frame
    x, carries = m.bottleneck(x, net["carries"])
    new["carries"] = jax.tree.map(lambda n, o: jnp.where(b >= 0, n, o), carries, net["carries"])
    for i, prev in enumerate(net["dec_prev"]):
        skip = skips[-1 - i]
        fifo = net["skip_fifo"][i]
        if fifo is not None:  # the decoder input of layer i lags _skip_lag(i) frames behind its skip
            fifo = jnp.concatenate([fifo, skip], axis=1)
            skip, fifo = fifo[:, :1], fifo[:, 1:]
        new["skip_fifo"].append(fifo)
        inp = jnp.concatenate([x, skip], axis=-1)
        x = m.decode_layer(i, jnp.concatenate([prev, inp], axis=1), False)
        new["dec_prev"].append(keep(inp, b - sum(dec_ahead[:i])))
    if net["spec_fifo"] is not None:
        fifo = jnp.concatenate([net["spec_fifo"], spec], axis=1)
        spec, new["spec_fifo"] = fifo[:, :1], fifo[:, 1:]
    out_index = b - sum(dec_ahead)
    return keep(m.from_mask(x, spec), out_index), new


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

    def __init__(self, model, conv_lowering: str = "matmul"):
        """``conv_lowering``: how the step's convolutions are lowered (``jaxse.nn``); on CPU the patches-times-weights
        ``matmul`` form is the faster one for single frames (experiments/bench/RESULTS.md)."""
        self.model = model.clone(conv_lowering=conv_lowering)
        self.conv_lowering = conv_lowering
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
        # Offline frame index of the newest analysis frame = steps taken - frame_offset (frame 0 is complete after
        # (frame_start + win) / hop hops).
        self.frame_offset = (model.frame_start + self.win) // self.hop - 1
        self.delay = self.win - self.hop + self.lookahead * self.hop
        self.latency_samples = int(model.latency_samples)
        self._gain = jnp.asarray(model.overlap_add_gain(), jnp.float32)
        self._bound: tuple[Any, Any] | None = None  # (variables, step compiled with them as constants)

    def _skip_lag(self, i: int) -> int:
        """Frames by which decoder layer ``i``'s input lags the skip connection it is concatenated with."""
        n = len(self.enc_ahead)
        return sum(self.enc_ahead[n - i:]) + sum(self.dec_ahead[:i])

    # ------------------------------------------------------------------------------------------------ state
    def init_stream(self, variables, batch: int) -> State:
        """Zero state for ``batch`` parallel streams (shapes from ``jax.eval_shape``; nothing is computed)."""
        bins = self.n_fft // 2 + 1
        spec = jax.ShapeDtypeStruct((batch, 1, bins), jnp.complex64)
        feat = jax.eval_shape(lambda s: self.model.apply(variables, s, method=lambda m, s: m.to_features(s)), spec)
        enc_in, skips, dec_in, carries = jax.eval_shape(
            lambda f: self.model.apply(variables, f, method=_network_shapes), feat)
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
                "t": jnp.asarray(-self.frame_offset, jnp.int32)}

    # ------------------------------------------------------------------------------------------------ step
    def stream_step(self, variables, state: State, in_hop):
        """``(out_hop: float32[batch, hop], new_state)``: one hop; a pure function of its arguments.

        Compiled once per ``variables`` object with the weights as constants, so XLA folds the per-hop work that
        depends on weights only (the 3-multiplication operands ``c``, ``d - c``, ``c + d``, kernel layouts) at
        compile time instead of redoing it every hop. Under tracing (``variables`` abstract) it is the plain step.
        """
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(variables)):
            return self._step(variables, state, in_hop)
        if self._bound is None or self._bound[0] is not variables:
            self._bound = (variables, jax.jit(partial(self._step, variables)))
        return self._bound[1](state, in_hop)

    def _step(self, variables, state: State, in_hop: jnp.ndarray):
        """``in_hop: float32[batch, hop]`` -> ``(out_hop: float32[batch, hop], state)``."""
        buf = jnp.concatenate([state["analysis"][:, self.hop:], in_hop.astype(jnp.float32)], axis=1)
        spec = self.model.analyse_frame(buf)
        feat = self.model.apply(variables, spec, method=lambda m, s: m.to_features(s))
        enhanced, net = self.model.apply(variables, state["net"], feat, spec, state["t"],
                                         method=partial(_frame_network, enc_ahead=self.enc_ahead,
                                                        dec_ahead=self.dec_ahead))
        acc = state["synthesis"] + self.model.synthesise_frame(enhanced)
        out = acc[:, : self.hop] * self._gain
        acc = jnp.concatenate([acc[:, self.hop:], jnp.zeros_like(acc[:, : self.hop])], axis=1)
        return out, {"analysis": buf, "synthesis": acc, "net": net, "t": state["t"] + 1}

    # ------------------------------------------------------------------------------------------------ helpers
    def run(self, variables, audio: np.ndarray, *, flush: bool = True, hop_times: list | None = None) -> np.ndarray:
        """Stream ``audio: float32[batch, samples]`` hop by hop; returns ``float32[batch, samples]`` aligned with the
        offline output (the first ``delay`` samples of the stream are dropped; with ``flush``, zeros are fed at the
        end to push the last samples out). ``hop_times``: a list that receives each hop's wall time in seconds
        (step call to result on the host, what a real-time caller waits)."""
        audio = np.asarray(audio, np.float32)
        b, n = audio.shape
        total = n + (self.delay if flush else 0)
        hops = -(-total // self.hop)
        x = np.zeros((b, hops * self.hop), np.float32)
        x[:, :n] = audio
        state = self.init_stream(variables, b)
        outs = []
        for k in range(hops):
            t0 = time.perf_counter()
            y, state = self.stream_step(variables, state, x[:, k * self.hop:(k + 1) * self.hop])
            outs.append(np.asarray(y))  # waits for the result
            if hop_times is not None:
                hop_times.append(time.perf_counter() - t0)
        y = np.concatenate(outs, axis=1)[:, self.delay:]
        return y[:, :n] if flush else y
