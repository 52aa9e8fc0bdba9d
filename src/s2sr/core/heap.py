"""The process heap: large freed blocks go back to the operating system at once.

glibc serves allocations above its *mmap threshold* with ``mmap`` and unmaps them on free,
but after each such free it raises the threshold to the freed size (up to 32 MiB). The
engine's per-tile temporaries (17-300 MB: tile outputs, blending, DN conversion, in three
threads, each with its own heap arena) then land in the heaps, which keep their peak. With
the threshold pinned at 4 MiB, ``s2sr predict``'s peak RSS on a 1024^2 x2 scene fell from
1424 to 1092 MB (PyTorch backend) and from 1830 to 1603 MB (ONNX Runtime), at the same
speed (benchmarks/README.md, "Backends").

The command line and the Dask workers' scene tasks pin it; a program that imports s2sr as a
library keeps its own settings unless it calls :func:`pin_mmap_threshold`. The streamed
engine is the opposite case: it allocates and frees the same band-sized blocks (4-48 MB)
thousands of times, and mapped afresh each time they cost it a quarter of its speed (page
faults and zeroing); it raises the threshold for its run where its memory budget leaves
room for the heap's peak (:func:`reused_heap`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Iterator

#: Allocations of at least this many bytes are mapped and unmapped on their own.
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
#: glibc's trim threshold unless ``MALLOC_TRIM_THRESHOLD_`` sets another (Dask's nanny does).
_DEFAULT_TRIM = 128 << 10
#: The threshold pinned in this process (``None``: never pinned, glibc's dynamic one).
_pinned: int | None = None


@functools.cache  # one look-up of libc (find_library runs ldconfig) per process
def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def _set(nbytes: int) -> bool:
    global _pinned
    mallopt = _mallopt()
    if mallopt is None or mallopt(_M_MMAP_THRESHOLD, int(nbytes)) != 1:
        return False
    _pinned = int(nbytes)
    return True


def _trim(nbytes: int) -> None:
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_TRIM_THRESHOLD, int(nbytes))


def _env_trim() -> int:
    value = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    return int(value) if value.isdigit() and int(value) < 2**31 else _DEFAULT_TRIM


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``nbytes`` (which also stops its dynamic raising);
    once pinned, later calls change nothing.

    Returns:
        True when set (Linux with glibc); False elsewhere, where nothing changes.
    """
    return True if _pinned is not None else _set(nbytes)


@contextlib.contextmanager
def reused_heap(nbytes: int) -> Iterator[bool]:
    """Inside the block, blocks below ``nbytes`` come from glibc's heap and are reused after
    free (no fresh pages to fault in and zero each time), where :func:`pin_mmap_threshold`
    pinned a lower threshold; the pinned threshold again after. The heap keeps its peak
    meanwhile: for loops that allocate and free the same sizes many times within a bounded
    memory (the streamed engine's bands). Yields whether the threshold was raised (not
    where nothing was pinned: glibc's own dynamic threshold reuses the heap already)."""
    before = _pinned
    raised = before is not None and before < nbytes and _set(nbytes)
    if raised:  # and the heap's free top kept (glibc trims above 128 KiB by default)
        _trim(2 * nbytes)
    try:
        yield raised
    finally:
        if raised and before is not None:
            _set(before)
            _trim(_env_trim())
