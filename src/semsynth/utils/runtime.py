"""Process-level tuning."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> bool:
    """Keep large tensor allocations in the heap instead of a fresh mmap each time (glibc only).

    With glibc's defaults every large tensor is a new mmap whose pages fault in on first touch; on CPU that
    cost 13-35% of the time of a GAN step here (docs/benchmarks.md). Equivalent to running with
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=536870912``.
    Returns whether the settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        ok &= libc.mallopt(_M_TOP_PAD, 512 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):
        return False
