"""Many independent streams in one jitted step: the weights are read once per hop for all of them.

    ms = MultiStreamer(Streamer(model), variables)
    a = ms.join()                                   # an open stream (live audio); -> stream id
    b = ms.join(samples=n, strength=0.8)            # a finite signal of n samples, wet/dry mix 0.8
    outs = ms.step({a: hop_a, b: hop_b})            # float32[hop] each -> {id: float32[hop]}
    ms.leave(a)

The streams are the rows of one batched ``Streamer`` state whose frame position ``t`` and signal end ``end`` are one
entry per row (``int32[rows]``), so every row is exactly its own single stream: the output of each equals its
``Streamer.stream_step`` run (mixed with its input delayed by ``Streamer.delay`` when ``strength < 1``, as
``jaxse.live`` mixes). Per call, a mask says which rows take a hop: a stream absent from ``step``'s dict, and the
free rows, keep their state. A stream that joins gets a zero row, reset inside the next step (no other program).

Rows are bucketed (1, 2, 4, 8, ...): a join that fits the current bucket reuses the compiled step; a join past it
moves the rows into the next bucket (compiled once per bucket size, then cached), and a leave that lets the streams
fit a quarter of the bucket moves them into the smallest that fits. ``traces`` counts the step's compilations (traces).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxse.inference.streamer import State, Streamer, _select_rows

#: The ``end`` of an open stream (no signal end: ``Streamer.init_stream`` with ``samples=None``).
OPEN_END = 2 ** 30


def bucket_rows(n: int) -> int:
    """The bucket of ``n`` streams: the smallest power of two ``>= n`` (at least 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


class MultiStreamer:
    """``N`` independent streams of one model and one set of variables, stepped together (module docstring).

    ``streamer``: the ``Streamer`` (its ``conv_lowering``, ``compute_dtype`` and ``precision`` apply to all
    streams); ``variables``: the model's variables, compiled into the step as ``Streamer.bind`` does.
    """

    def __init__(self, streamer: Streamer, variables):
        self.streamer, self.variables = streamer, variables
        self.hop = streamer.hop
        self._axes = dict(streamer.batch_axes(variables), dry=0)
        self._step = streamer.bind(variables, self._step_rows)
        self.traces = 0  # compilations of the step (one per bucket size)
        self.state: State | None = None
        self._rows: dict[int, int] = {}  # stream id -> row
        self._next_id = 0
        self._size = 0
        self._end = np.zeros(0, np.int32)
        self._strength = np.ones(0, np.float32)
        self._fresh = np.zeros(0, bool)
        self._meta = None  # (fresh, end, strength) on the device, until a join or a move changes them

    # ------------------------------------------------------------------------------------------------ streams
    @property
    def rows(self) -> int:
        """Rows of the current bucket (0 before the first join)."""
        return self._size

    @property
    def streams(self) -> list[int]:
        """Ids of the joined streams."""
        return list(self._rows)

    def join(self, samples: int | None = None, strength: float = 1.0) -> int:
        """A new stream, from zero state at its next hop; returns its id. ``samples``: the length of a finite
        signal (as ``Streamer.init_stream``; None: open). ``strength``: wet/dry mix in [0, 1] (1: the enhanced
        output only)."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        end = OPEN_END if samples is None else self.streamer.num_frames(self.variables, samples)
        if len(self._rows) == self._size:
            self._move(bucket_rows(len(self._rows) + 1))
        row = min(set(range(self._size)) - set(self._rows.values()))
        sid, self._next_id = self._next_id, self._next_id + 1
        self._rows[sid] = row
        self._fresh[row], self._end[row], self._strength[row] = True, end, strength
        self._meta = None
        return sid

    def leave(self, sid: int) -> None:
        """Stream ``sid`` leaves; its row is free for the next join. The rows move to a smaller bucket when the
        streams left fit in a quarter of this one (not half: streams coming and going around a bucket's size would
        move the rows at every join and leave)."""
        if sid not in self._rows:
            raise KeyError(f"no stream {sid}; joined: {sorted(self._rows)}")
        del self._rows[sid]
        if self._size > 1 and len(self._rows) <= self._size // 4:
            self._move(bucket_rows(len(self._rows)))

    def _move(self, size: int) -> None:
        """The rows of the joined streams, in order, into a bucket of ``size`` rows (the new rows are free)."""
        used = sorted(self._rows, key=self._rows.get)
        old = np.array([self._rows[s] for s in used], np.int32)
        pad = size - len(used)
        if self.state is None:
            self.state = self._init_state(size)
        else:
            idx = jnp.asarray(np.concatenate([old, np.zeros(pad, np.int32)]))
            self.state = jax.tree.map(lambda x, ax: jnp.take(x, idx, axis=ax), self.state, self._axes)
        self._end = np.concatenate([self._end[old], np.full(pad, OPEN_END, np.int32)])
        self._strength = np.concatenate([self._strength[old], np.ones(pad, np.float32)])
        self._fresh = np.concatenate([self._fresh[old], np.ones(pad, bool)])  # free rows: reset until taken
        self._rows = {s: i for i, s in enumerate(used)}
        self._size = size
        self._meta = None

    def _init_state(self, size: int) -> State:
        state = self.streamer.init_stream(self.variables, size)
        state["t"] = jnp.full((size,), state["t"], jnp.int32)
        state["end"] = jnp.full((size,), OPEN_END, jnp.int32)
        state["dry"] = jnp.zeros((size, self.streamer.delay), jnp.float32)
        return state

    # ------------------------------------------------------------------------------------------------ step
    def step(self, hops: dict[int, Any]) -> dict[int, np.ndarray]:
        """One hop for each stream in ``hops`` (``{id: float32[hop]}``; joined streams left out keep their state);
        returns ``{id: float32[hop]}``, each stream's next output hop."""
        x = np.zeros((self._size, self.hop), np.float32)
        active = np.zeros(self._size, bool)
        for sid, h in hops.items():
            if sid not in self._rows:
                raise KeyError(f"no stream {sid}; joined: {sorted(self._rows)}")
            h = np.asarray(h, np.float32).reshape(-1)
            if h.shape[0] != self.hop:
                raise ValueError(f"stream {sid}: a hop is {self.hop} samples, got {h.shape[0]}")
            x[self._rows[sid]] = h
            active[self._rows[sid]] = True
        if not active.any():
            return {}
        if self._meta is None:
            self._meta = tuple(jnp.asarray(a) for a in (self._fresh, self._end, self._strength))
        out, self.state = self._step(self.state, x, active, *self._meta)
        if self._fresh.any():  # the joined rows are reset now
            self._fresh = np.zeros(self._size, bool)
            self._meta = None
        out = np.asarray(out)
        return {sid: out[self._rows[sid]] for sid in hops}

    def _step_rows(self, variables, state: State, x, active, fresh, end, strength):
        """The jitted step over all rows: ``x: float32[rows, hop]``, ``active``/``fresh``: bool[rows] (take a hop /
        start from zero state), ``end``: int32[rows], ``strength``: float32[rows] -> ``(float32[rows, hop], state)``.
        """
        self.traces += 1  # runs when traced, i.e. once per compilation
        s = self.streamer
        zero = jax.tree.map(lambda a, ax: _select_rows(fresh, jnp.zeros_like(a), a, ax), state, self._axes)
        zero["t"] = jnp.where(fresh, -s.frame_offset, state["t"])
        zero["end"] = jnp.asarray(end, jnp.int32)
        inner = {k: v for k, v in zero.items() if k != "dry"}
        out, new = s._advance(variables, inner, x)
        dry = jnp.concatenate([zero["dry"], x], axis=1)  # the input delayed by s.delay, for the wet/dry mix
        new["dry"] = dry[:, self.hop:]
        g = strength[:, None]
        out = g * out + (1.0 - g) * dry[:, : self.hop]
        new = jax.tree.map(lambda n, o, ax: _select_rows(active, n, o, ax), new, zero, self._axes)
        return out, new
