"""The process heap: large freed blocks go back to the operating system at once.

glibc serves allocations above its *mmap threshold* with ``mmap`` and unmaps them on free,
but after each such free it raises the threshold to the freed size (up to 32 MiB). The
engine's per-tile temporaries (17-300 MB: tile outputs, blending, DN conversion, in three
threads, each with its own heap arena) then land in the heaps, which keep their peak. With
the threshold pinned at 4 MiB, ``s2sr predict``'s peak RSS on a 1024^2 x2 scene fell from
1424 to 1092 MB (PyTorch backend) and from 1830 to 1603 MB (ONNX Runtime), at the same
speed (benchmarks/README.md, "Backends").

The command line and the Dask workers' scene tasks pin it; a program that imports s2sr as a
library keeps its own settings unless it calls :func:`pin_mmap_threshold`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: Allocations of at least this many bytes are mapped and unmapped on their own.
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_done = False


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``nbytes`` (which also stops its dynamic raising).

    Returns:
        True when set (Linux with glibc); False elsewhere, where nothing changes.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1
    return _done
