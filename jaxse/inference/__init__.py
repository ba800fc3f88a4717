"""Inference: offline enhancement of signals of any length (``enhancer``), hop-by-hop streaming (``streamer``)."""
from jaxse.inference.enhancer import (Enhancer, LevelStats, bucket_length, finish, match_level, mix,  # noqa: F401
                                     peak_scale, strength_for)
from jaxse.inference.streamer import Streamer  # noqa: F401
