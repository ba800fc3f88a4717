"""Read PyTorch ``torch.save`` files without torch.

``torch.save`` (since torch 1.6) writes a zip archive::

    <archive>/data.pkl          pickle of the saved object (protocol 2)
    <archive>/byteorder         "little" or "big" (absent in old files: little)
    <archive>/data/<key>        raw bytes of each storage
    <archive>/version, .format_version, .storage_alignment, ...

Inside ``data.pkl`` tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, backward_hooks[, metadata])`` calls whose ``storage`` is a persistent
id ``('storage', <storage type>, key, location, numel)``.  This module unpickles that with a
restricted ``pickle.Unpickler``: only the globals needed for tensors, storages, dtypes and
plain containers are resolved, anything else raises ``UnpicklingError``.  Tensors come back as
numpy arrays (writable C-contiguous copies), ``nn.Parameter`` as its data, bfloat16 as float32.

    >>> from jaxse.convert.torch_pickle import load_torch_file
    >>> conf = load_torch_file("model.pth")      # e.g. asteroid's {"model_name", "state_dict", ...}
"""

from __future__ import annotations

from jaxse.errors import UsageError

import collections
import os
import pickle
import zipfile
from typing import Any, Dict

import numpy as np

__all__ = ["load_torch_file", "TorchFileError"]


class TorchFileError(UsageError):
    """The file is not a (readable) torch.save zip archive."""


_BF16 = "bfloat16"

# storage class name / dtype name -> numpy dtype (or the bfloat16 marker)
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": _BF16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
_DTYPE_NAMES = {
    "float64": np.float64, "double": np.float64, "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16, "bfloat16": _BF16, "int64": np.int64,
    "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16,
    "int8": np.int8, "uint8": np.uint8, "bool": np.bool_, "complex64": np.complex64,
    "cfloat": np.complex64, "complex128": np.complex128, "cdouble": np.complex128,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _DType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _DTYPE_NAMES[name]


class _Storage:
    """Raw bytes of one storage plus the element dtype it was saved as."""

    def __init__(self, raw: bytes, dtype, big_endian: bool):
        self.raw = raw
        self.dtype = dtype
        self.big_endian = big_endian

    def as_array(self, dtype=None) -> np.ndarray:
        dtype = self.dtype if dtype is None else dtype
        if dtype is _BF16:
            bits = np.frombuffer(self.raw, dtype=">u2" if self.big_endian else "<u2").astype(np.uint32)
            return (bits << 16).view(np.float32)
        dt = np.dtype(dtype)
        if self.big_endian and dt.itemsize > 1:
            dt = dt.newbyteorder(">")
        return np.frombuffer(self.raw, dtype=dt).astype(np.dtype(dtype), copy=False)


def _rebuild_tensor(storage: _Storage, storage_offset, size, stride, *unused, dtype=None):
    flat = storage.as_array(dtype)
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if not size:
        return np.array(flat[storage_offset], copy=True)
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=flat.dtype)
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride),
        writeable=False)
    return np.array(view, copy=True, order="C")   # own, writable memory


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride,
                           dtype=dtype.dtype if isinstance(dtype, _DType) else dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


def _size(*args):                       # torch.Size(...) -> tuple
    return tuple(*args) if args else ()


_TORCH_FUNCS = {
    ("torch._utils", "_rebuild_tensor"): lambda st, off, size, stride: _rebuild_tensor(st, off, size, stride),
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): lambda data=None, requires_grad=True: data,
    ("torch", "Size"): _size,
    ("torch.torch_version", "TorchVersion"): str,    # torch.__version__ (a str subclass)
}

_SAFE_BUILTINS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "complex"): complex, ("builtins", "tuple"): tuple, ("builtins", "list"): list,
    ("builtins", "dict"): dict, ("builtins", "bytearray"): bytearray,
    ("__builtin__", "set"): set,
}


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, fileobj, zf: zipfile.ZipFile, prefix: str, big_endian: bool, path: str):
        super().__init__(fileobj)
        self._zf = zf
        self._prefix = prefix
        self._big = big_endian
        self._path = path
        self._cache: Dict[str, _Storage] = {}

    def find_class(self, module, name):
        key = (module, name)
        if key in _TORCH_FUNCS:
            return _TORCH_FUNCS[key]
        if key in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[key]
        if module in ("torch", "torch.storage", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _DTYPE_NAMES:
            return _DType(name)
        raise pickle.UnpicklingError(
            f"{self._path}: refusing to load global {module}.{name} (not a tensor/container type)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid!r}")
        _, stype, key, _location, *_ = pid
        if isinstance(stype, _DType):
            dtype = stype.dtype
        elif isinstance(stype, _StorageType):
            dtype = stype.dtype
        else:
            raise pickle.UnpicklingError(f"{self._path}: unknown storage type {stype!r}")
        if key not in self._cache:
            try:
                raw = self._zf.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise TorchFileError(f"{self._path}: storage data/{key} missing from archive") from None
            self._cache[key] = _Storage(raw, dtype, self._big)
        return self._cache[key]


def load_torch_file(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` zip file; tensors become numpy arrays.

    Returns whatever was saved (for a state_dict: an ``OrderedDict[str, np.ndarray]``; for an
    asteroid ``model.serialize()`` file: a dict with ``model_name``, ``state_dict``,
    ``model_args`` and ``infos``).  Raises ``TorchFileError`` naming ``path`` if the file is
    not a torch zip archive (e.g. the legacy non-zip format or a TorchScript archive).
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise TorchFileError(
            f"{path}: not a torch.save zip archive (legacy pre-1.6 torch format or not a torch file)")
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        pkls = [n for n in pkls if n.count("/") <= 1]
        if len(pkls) != 1:
            raise TorchFileError(f"{path}: zip archive has no single top-level data.pkl "
                                 f"(found {pkls or 'none'}); not a torch.save file")
        prefix = pkls[0][: -len("data.pkl")]
        names = set(zf.namelist())
        big = False
        if prefix + "byteorder" in names:
            big = zf.read(prefix + "byteorder").decode().strip() == "big"
        with zf.open(pkls[0]) as f:
            try:
                return _TorchUnpickler(f, zf, prefix, big, path).load()
            except TorchFileError:
                raise
            except Exception as e:
                raise TorchFileError(f"{path}: could not unpickle data.pkl: {e}") from e
