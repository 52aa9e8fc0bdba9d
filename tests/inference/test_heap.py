"""s2sr.core.heap: with glibc's mmap threshold pinned, freed tile-sized blocks leave the process
(the resident size comes back down); without it glibc keeps them in its heap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from s2sr.core.heap import pin_mmap_threshold

CHILD = """
import os, sys
import numpy as np
from s2sr.core.heap import pin_mmap_threshold
if sys.argv[1] == "pin":
    assert pin_mmap_threshold() and pin_mmap_threshold()  # idempotent
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
big = np.ones(32 << 20, np.uint8)  # mapped; its free raises glibc's threshold to 32 MiB
del big
before = rss()
for _ in range(3):  # now below the threshold: from the heap, which keeps it after free
    a = np.ones(16 << 20, np.uint8)
    del a
print(rss() - before)
"""


def _kept(mode: str) -> int:
    # glibc's defaults: without the MALLOC_* variables that Dask's nanny puts in os.environ
    # (MALLOC_TRIM_THRESHOLD_=65536) once a test has started a cluster
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not pin_mmap_threshold(),
                    reason="glibc's mallopt (Linux) only")
def test_pinned_threshold_gives_large_blocks_back() -> None:
    assert _kept("pin") < 4 << 20
    assert _kept("default") >= 8 << 20  # what the pin is for: glibc keeps 16 MiB


REUSE = """
import os
import numpy as np
from s2sr.core.heap import pin_mmap_threshold, reused_heap
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
with reused_heap(32 << 20) as unpinned:  # nothing pinned: glibc's own threshold, unchanged
    pass
assert pin_mmap_threshold()
before = rss()
with reused_heap(32 << 20) as raised:
    for _ in range(3):  # below the raised threshold: from the heap, kept after free
        a = np.ones(16 << 20, np.uint8)
        del a
inside = rss() - before
mid = rss()
for _ in range(3):  # the pinned 4 MiB again: mapped, given back
    a = np.ones(24 << 20, np.uint8)
    del a
print(unpinned, raised, inside, rss() - mid)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not pin_mmap_threshold(),
                    reason="glibc's mallopt (Linux) only")
def test_reused_heap_raises_the_pinned_threshold_for_its_block_only() -> None:
    """The streamed engine's heap mode: within the block freed band-sized blocks stay in
    the heap (reused: no fresh pages each time); after it the pinned threshold is back."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    assert out[:2] == ["False", "True"]
    assert int(out[2]) >= 8 << 20  # kept by the heap inside the block
    assert int(out[3]) < 4 << 20  # given back after it
