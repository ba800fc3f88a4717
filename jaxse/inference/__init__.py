"""Inference: offline enhancement of many signals (``enhancer``: batches, level, strength), hop-by-hop and chunked
streaming equal to the offline model (``streamer``), audio files of any length block by block (``files``)."""
from jaxse.inference.enhancer import (Enhancer, LevelStats, bucket_length, finish, match_level, mix,  # noqa: F401
                                     peak_scale, strength_for)
from jaxse.inference.streamer import Streamer  # noqa: F401
