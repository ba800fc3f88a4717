"""Pretrained models shipped inside the package: this folder holds their files (``NAME.npz`` + ``NAME.json``),
``python -m jaxse.pretrained`` writes and lists them. Reading and encoding them is :mod:`jaxse.io.pretrained`
(re-exported here), so that the checkpoint loader below it needs nothing from this package.
"""
from jaxse.io.pretrained import (DEFAULT, PREFIX, REALTIME, decode, encode, folder, is_pretrained, load,  # noqa: F401
                                 names)
