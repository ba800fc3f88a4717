"""Real-time streaming: one STFT hop in, one hop out, equal to the offline model up to a fixed delay.

    streamer = Streamer(model)
    state = streamer.init_stream(variables, batch)                  # zeros; a pytree of arrays
    out_hop, state = streamer.stream_step(variables, state, in_hop)  # jitted; in_hop, out_hop: float32[batch, hop]

The state carries everything the offline pass sees in the past: the analysis buffer (last ``win`` samples), for each
encoder/decoder convolution the previous input frame (their kernels span two frames), the LSTM carries, delay lines
for the skip connections and the noisy spectrum when the decoder looks ahead (DCCRN ``decoder="paper"``), and the
overlap-add accumulator of the synthesis.

Alignment: the concatenated output hops equal the offline ``model.apply(variables, x)`` delayed by
``streamer.delay = win - hop + lookahead_frames * hop`` samples; adding the hop of input buffering gives the
model's algorithmic latency ``model.latency_samples``. Only the last ``lookahead_frames`` frames differ (offline,
the decoder's look-ahead at the very end sees zero features; a stream has no end).

``python -m jaxse.stream`` (``jaxse/stream.py``) runs a file through it.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxse import signal

State = dict[str, Any]


def _frame_network(m, net: State, feat: jnp.ndarray, spec: jnp.ndarray, t: jnp.ndarray, *, enc_right: int,
                   dec_right: int):
    """One frame through encoder, bottleneck and decoder (called inside ``model.apply``; ``m`` is the bound model).

    ``feat: [batch, 1, freq, 1]`` network input of frame ``t`` (its index in the offline framing; negative while the
    stream warms up), ``spec: [batch, 1, bins]`` its noisy spectrum. Every layer's kernel spans two frames
    ``[previous, current]``: a layer that looks ahead (``*_right = 1``) labels its output with the previous frame's
    index, so its output lags one frame; skip connections and the noisy spectrum go through delay lines to stay
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
        new["enc_prev"].append(keep(x, t - i * enc_right))
        skips.append(y)
        x = y
    b = t - len(net["enc_prev"]) * enc_right  # index of the bottleneck frame
    x, carries = m.bottleneck(x, net["carries"])
    new["carries"] = jax.tree.map(lambda n, o: jnp.where(b >= 0, n, o), carries, net["carries"])
    for i, prev in enumerate(net["dec_prev"]):
        skip = skips[-1 - i]
        fifo = net["skip_fifo"][i]
        if fifo is not None:  # the decoder input of layer i lags i * (enc_right + dec_right) frames
            fifo = jnp.concatenate([fifo, skip], axis=1)
            skip, fifo = fifo[:, :1], fifo[:, 1:]
        new["skip_fifo"].append(fifo)
        inp = jnp.concatenate([x, skip], axis=-1)
        x = m.decode_layer(i, jnp.concatenate([prev, inp], axis=1), False)
        new["dec_prev"].append(keep(inp, b - i * dec_right))
    if net["spec_fifo"] is not None:
        fifo = jnp.concatenate([net["spec_fifo"], spec], axis=1)
        spec, new["spec_fifo"] = fifo[:, :1], fifo[:, 1:]
    out_index = b - len(net["dec_prev"]) * dec_right
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
    """Hop-by-hop inference of a spectral model (CRN, DCCRN with either decoder). See the module docstring."""

    def __init__(self, model, conv_lowering: str = "matmul"):
        """``conv_lowering``: how the step's convolutions are lowered (``jaxse.layers.CONV_LOWERINGS``); on CPU the
        patches-times-weights ``matmul`` form is the faster one for single frames (experiments/bench/RESULTS.md)."""
        self.model = model
        self.conv_lowering = conv_lowering
        self.hop, self.win, self.n_fft = model.hop, model.win_length, model.n_fft
        if self.win % self.hop:
            raise ValueError(f"streaming needs win_length a multiple of hop, got {self.win} and {self.hop}")
        self.convention = getattr(model, "convention", "paper")
        n = len(model.channels)
        # Which layers look one frame ahead: asteroid's encoders (no time padding), the paper DCCRN decoder.
        self.enc_right = 1 if self.convention == "asteroid" else 0
        self.dec_right = 1 if self.convention != "asteroid" and getattr(model, "decoder", "causal") == "paper" else 0
        self.lookahead = n * (self.enc_right + self.dec_right)
        if self.lookahead != int(model.lookahead_frames):
            raise ValueError(f"{type(model).__name__}: cannot stream {model.lookahead_frames} look-ahead frames")
        # Offline frame index of the newest analysis frame = steps taken - frame_offset (asteroid frames are not
        # left-padded, so its frame 0 is complete only after win / hop hops).
        self.frame_offset = self.win // self.hop - 1 if self.convention == "asteroid" else 0
        self.delay = self.win - self.hop + self.lookahead * self.hop
        self.latency_samples = int(model.latency_samples)
        w = signal.window(model.window, self.win).astype(np.float64)
        env = (w ** 2).reshape(self.win // self.hop, self.hop).sum(0)  # WOLA normalisation of a finished hop
        self._window = jnp.asarray(w, jnp.float32)
        self._inv_env = jnp.asarray(1.0 / env, jnp.float32)
        self._generic_step = jax.jit(self._lowered_step)
        self._bound: tuple[Any, Any] | None = None  # (variables, step compiled with them as constants)

    def _analyse(self, buf: jnp.ndarray) -> jnp.ndarray:
        """Last ``win`` samples ``[batch, win]`` -> their spectrum ``complex64[batch, 1, bins]`` (model's framing)."""
        if self.convention == "asteroid":
            return signal.asteroid_stft(buf, n_fft=self.n_fft, hop=self.hop, win_length=self.win,
                                        window_kind=self.model.window)
        return jnp.fft.rfft(buf * self._window, n=self.n_fft, axis=-1).astype(jnp.complex64)[:, None]

    def _synthesise(self, spec: jnp.ndarray) -> jnp.ndarray:
        """One enhanced frame ``[batch, 1, bins]`` -> its windowed contribution ``float32[batch, win]``."""
        if self.convention == "asteroid":
            return signal.asteroid_istft(spec, n_fft=self.n_fft, hop=self.hop, win_length=self.win,
                                         length=self.win, window_kind=self.model.window)
        return jnp.fft.irfft(spec[:, 0], n=self.n_fft, axis=-1)[:, : self.win] * self._window

    def _finish_hop(self, acc: jnp.ndarray) -> jnp.ndarray:
        if self.convention == "asteroid":  # asteroid's synthesis is not normalised by the window sum
            return acc[:, : self.hop]
        return acc[:, : self.hop] * self._inv_env

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
            "skip_fifo": [None if i * (self.enc_right + self.dec_right) == 0 else
                          jnp.zeros((batch, i * (self.enc_right + self.dec_right)) + skips[-1 - i].shape[2:],
                                    skips[-1 - i].dtype)
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
            return self._lowered_step(variables, state, in_hop)
        if self._bound is None or self._bound[0] is not variables:
            self._bound = (variables, jax.jit(partial(self._lowered_step, variables)))
        return self._bound[1](state, in_hop)

    def _lowered_step(self, variables, state: State, in_hop: jnp.ndarray):
        """``_step`` traced with this streamer's convolution lowering (a trace-time setting of ``jaxse.layers``)."""
        from jaxse import layers

        old = layers.DEFAULT_CONV_LOWERING
        layers.DEFAULT_CONV_LOWERING = self.conv_lowering
        try:
            return self._step(variables, state, in_hop)
        finally:
            layers.DEFAULT_CONV_LOWERING = old

    def _step(self, variables, state: State, in_hop: jnp.ndarray):
        """``in_hop: float32[batch, hop]`` -> ``(out_hop: float32[batch, hop], state)``."""
        buf = jnp.concatenate([state["analysis"][:, self.hop:], in_hop.astype(jnp.float32)], axis=1)
        spec = self._analyse(buf)
        feat = self.model.apply(variables, spec, method=lambda m, s: m.to_features(s))
        enhanced, net = self.model.apply(variables, state["net"], feat, spec, state["t"],
                                         method=partial(_frame_network, enc_right=self.enc_right,
                                                        dec_right=self.dec_right))
        acc = state["synthesis"] + self._synthesise(enhanced)
        out = self._finish_hop(acc)
        acc = jnp.concatenate([acc[:, self.hop:], jnp.zeros_like(acc[:, : self.hop])], axis=1)
        return out, {"analysis": buf, "synthesis": acc, "net": net, "t": state["t"] + 1}

    # ------------------------------------------------------------------------------------------------ helpers
    def run(self, variables, audio: np.ndarray, *, flush: bool = True) -> np.ndarray:
        """Stream ``audio: float32[batch, samples]`` hop by hop; returns ``float32[batch, samples]`` aligned with the
        offline output (the first ``delay`` samples of the stream are dropped; with ``flush``, zeros are fed at the
        end to push the last samples out)."""
        audio = np.asarray(audio, np.float32)
        b, n = audio.shape
        total = n + (self.delay if flush else 0)
        hops = -(-total // self.hop)
        x = np.zeros((b, hops * self.hop), np.float32)
        x[:, :n] = audio
        state = self.init_stream(variables, b)
        outs = []
        for k in range(hops):
            y, state = self.stream_step(variables, state, x[:, k * self.hop:(k + 1) * self.hop])
            outs.append(np.asarray(y))
        y = np.concatenate(outs, axis=1)[:, self.delay:]
        return y[:, :n] if flush else y
