"""Inference: offline enhancement of signals of any length (``enhancer``), hop-by-hop streaming (``streamer``)."""
from jaxse.inference.enhancer import Enhancer, bucket_length, match_level  # noqa: F401
from jaxse.inference.streamer import Streamer  # noqa: F401
