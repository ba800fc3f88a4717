"""File I/O: atomic writes (``atomic``), audio read/write (``audio``), checkpoints (``checkpoints``)."""
