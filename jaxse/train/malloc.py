"""glibc malloc tuning at run time (``mallopt``), the in-process equivalent of
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge> MALLOC_TOP_PAD_=1G``.

XLA on CPU allocates large activation buffers every step; with glibc's defaults each one is a fresh ``mmap`` that
the kernel page-faults in and ``munmap`` returns, so a training step spends much of its time in the kernel. Keeping
freed memory in the heap (no mmap, no trimming) makes later steps reuse already-mapped pages, at the price of a
higher resident size. Measured effect: ``experiments/bench/RESULTS.md``. No-op where glibc is not the allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4


def tune(top_pad: int = 1 << 30) -> bool:
    """Apply the tuning to this process; returns whether glibc accepted it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(M_TOP_PAD, top_pad) == 1
    return bool(ok)
