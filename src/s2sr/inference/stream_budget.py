"""How much memory a :class:`~s2sr.inference.stream.StreamingForward` needs, and the band
height (and column strips) that fit a memory budget.

The estimates are fitted to peak RSS measured with the shipped 8x64 models
(benchmarks/stream_memory.py, benchmarks/README.md): beyond the process with its model
loaded (about 280 MB), a stream takes a part proportional to the width (the rows every
convolution carries, the skip rows waiting for the body, the last band's flush through the
network's lag), a small part proportional to the band's pixels and a fixed part. Column
strips shrink only the band's part and the upsampler's batch: all strips advance together.
"""

from __future__ import annotations

import logging

from s2sr.core.errors import UsageError
from s2sr.inference.stream import StreamingForward

log = logging.getLogger(__name__)

_F32 = 4  # bytes of a float32

#: Bytes the stream may take beyond the process with its model loaded (about 280 MB with
#: torch and the shipped models): with the engine's reading and writing, a whole 10980^2
#: tile stays under 1.0 GB at x2 and x4.
STREAM_BUDGET = 600 << 20

#: Input pixels per band aimed at, within :data:`PREFERRED_ROWS`. Measured on the shared
#: 2-core AVX-512 machine with the benchmark's process group given the CPU (others starved;
#: benchmarks/README.md, stream_forward.py --sweep, band heights in turn in one process),
#: the stream's speed over the bare 512^2 tile forward: at 2048 columns 2-4 rows 0.66-1.29,
#: 16-32 rows 1.17-1.40 (x2 and x4); at 4096 columns 16 rows 1.26-1.31; at 10980 columns
#: 4-8 rows 1.00-1.16, 16 rows 0.84-1.09. About 64 Ki pixels a band is the best at every
#: width (the band's activations stay within the caches; smaller bands copy their 2
#: carried rows more often per new row and call more often); the budget only ever lowers
#: the height.
PREFERRED_BAND_PIXELS = 65536
#: Fewest and most rows of the preferred band (1-row bands carry 2 rows per new row).
PREFERRED_ROWS = (2, 32)

#: Fitted to the peak RSS beyond the process with its model loaded, measured with the
#: shipped models at 2048, 4096 and 10980 columns, x2 and x4 (benchmarks/README.md,
#: stream_memory.py; within +36/-0 MB of each): float32 values per input column in units of
#: the filters, carried with the width (``_STATE``) and per band row (``_ROW``); per output
#: column, band and row of the scale (``_DRAIN``: the last band's flush through the
#: network's lag, at full resolution); per output pixel of the upsampler and tail's batch
#: in units of the filters (``_HIGH``); and bytes whatever the size (``_FIXED``: oneDNN's
#: and the threads' working memory).
_STATE = 84
_ROW = 3
_DRAIN = 70
_HIGH = 1
_FIXED = 80 << 20


#: glibc's mmap threshold of a stream that reuses its heap (:func:`s2sr.core.heap.
#: reused_heap`): above the band-sized blocks (16 MiB at 64 Ki pixels of 64 filters).
HEAP_THRESHOLD = 32 << 20
#: What the heap keeps beyond the stream's own peak when it is reused: measured 213-235 MB
#: (x4 at 2048 and 10980 columns, x2 at 10980; peak RSS of the streamed forward with the
#: threshold at 4 MiB and at 16-32 MiB). Reused, the stream ran 1.28-1.50x faster there
#: (0.0370 -> 0.0555 input Mpx/s, x4 at 2048 columns; 0.0639 -> 0.0833, x2 at 10980).
HEAP_KEPT = 256 << 20


def reuses_heap(stream: StreamingForward, width: int, band_rows: int,
                strip_cols: int | None, budget_bytes: int, batch: int = 1) -> bool:
    """Whether a stream of full-width bands of ``band_rows`` rows may reuse its heap
    (:data:`HEAP_KEPT` more) within ``budget_bytes``; column strips never do (they run
    where even full-width rows do not fit)."""
    if strip_cols is not None:
        return False
    need = state_bytes(stream, width, batch) + band_bytes(stream, width, band_rows, batch)
    return need + HEAP_KEPT <= budget_bytes


def carried_bytes(stream: StreamingForward, width: int, batch: int = 1) -> int:
    """Bytes a stream ``width`` columns wide holds whatever its band height: the rows each
    convolution carries, the skip rows waiting for the body's, the input rows the bicubic
    residual waits on, the last band's flush through the network's lag (all the strips
    together: they advance band by band side by side)."""
    s = stream.scale
    per_column = _STATE * stream.feats + _DRAIN * stream.bands * s * s
    return _F32 * batch * per_column * width


def high_bytes(stream: StreamingForward, width: int, batch: int = 1) -> int:
    """Bytes of the upsampler and tail's batch of rows (:meth:`StreamingForward.high_rows`)
    for a scene or strip ``width`` columns wide."""
    s, f = stream.scale, stream.feats
    return _F32 * batch * _HIGH * f * stream.high_rows(width) * width * s * s


def state_bytes(stream: StreamingForward, width: int, batch: int = 1) -> int:
    """Bytes of a stream ``width`` columns wide beyond its band: ``_FIXED``,
    :func:`carried_bytes` and :func:`high_bytes`."""
    return _FIXED + carried_bytes(stream, width, batch) + high_bytes(stream, width, batch)


def band_bytes(stream: StreamingForward, width: int, band_rows: int, batch: int = 1) -> int:
    """Bytes of ``band_rows`` rows of ``width`` columns beyond :func:`state_bytes` (the two
    shared input buffers, a convolution's output, the skips)."""
    return _F32 * batch * _ROW * stream.feats * width * band_rows


def preferred_rows(width: int) -> int:
    """The band height aimed at for ``width`` columns: :data:`PREFERRED_BAND_PIXELS` /
    ``width`` within :data:`PREFERRED_ROWS`."""
    low, high = PREFERRED_ROWS
    return max(low, min(high, PREFERRED_BAND_PIXELS // width))


def pick_band_rows(stream: StreamingForward, width: int, budget_bytes: int, batch: int = 1,
                   preferred: int | None = None) -> int:
    """The band height for a scene ``width`` columns wide within ``budget_bytes``: the
    ``preferred`` height (default: :data:`PREFERRED_BAND_PIXELS` / ``width`` within
    :data:`PREFERRED_ROWS`) where it fits, else the largest that fits (at least 1 row).

    Raises:
        UsageError: not even one row fits the budget (:func:`pick_layout` then cuts
            column strips).
    """
    fixed = state_bytes(stream, width, batch)
    one = band_bytes(stream, width, 1, batch)
    if fixed + one > budget_bytes:
        raise UsageError(f"one band of rows {width} columns wide needs about "
                         f"{(fixed + one) / 1e6:.0f} MB, over the memory budget of "
                         f"{budget_bytes / 1e6:.0f} MB: use column strips (strip_cols)")
    fits = 1 + (budget_bytes - fixed - one) // one
    if preferred is None:
        preferred = preferred_rows(width)
    return int(max(1, min(preferred, fits)))


def pick_layout(stream: StreamingForward, width: int, budget_bytes: int, batch: int = 1,
                preferred: int | None = None) -> tuple[int, int | None]:
    """Band height and column strip width (``None``: full-width rows) within
    ``budget_bytes`` for a scene ``width`` columns wide.

    Full-width rows where one band fits (:func:`pick_band_rows`); else column strips, the
    widest (halving) whose band and upsampler batch fit beside the carried rows of all the
    strips (they advance together: their carried rows add up to the width plus the halos).

    Where not even the carried rows fit (wider than about 12000 columns at x4, 19000 at
    x2 in :data:`STREAM_BUDGET`): 1-row full-width bands, with a warning (strips would not
    help: their carried rows add up to the width) and the stream still runs.
    """
    try:
        return pick_band_rows(stream, width, budget_bytes, batch, preferred), None
    except UsageError:
        pass
    cols, halo = width, stream.halo
    while cols >= 2 * halo:
        cols = (cols + 1) // 2
        strips = -(-width // cols)
        fixed = carried_bytes(stream, width + 2 * halo * strips, batch) \
            - carried_bytes(stream, cols + 2 * halo, batch)
        try:
            rows = pick_band_rows(stream, cols + 2 * halo, budget_bytes - fixed, batch,
                                  preferred)
        except UsageError:
            continue
        return rows, cols
    log.warning("a stream %d columns wide needs about %.0f MB (its carried rows), over the "
                "memory budget of %.0f MB: running it in 1-row bands anyway",
                width, state_bytes(stream, width, batch) / 1e6, budget_bytes / 1e6)
    return 1, None
