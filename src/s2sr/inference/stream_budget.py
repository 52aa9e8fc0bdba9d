"""How much memory a :class:`~s2sr.inference.stream.StreamingForward` needs, and the band
height that fits a memory budget."""

from __future__ import annotations

from s2sr.core.errors import UsageError
from s2sr.inference.stream import StreamingForward

_F32 = 4  # bytes of a float32

#: Input pixels per band aimed at. On a shared 2-core CPU, 16- and 64-row bands of 1024
#: columns ran at the same speed, 256 rows ~20 % faster in 2.7x the peak RSS (indicative:
#: benchmarks/README.md, stream_forward.py); to be re-measured on a quiet machine.
PREFERRED_BAND_PIXELS = 2 ** 16


def state_bytes(stream: StreamingForward, width: int, batch: int = 1) -> int:
    """Bytes carried between bands for a scene ``width`` columns wide: two rows per
    convolution at its resolution, the delay lines (about each branch's lag) and the
    bicubic residual's rows."""
    s, f, low = stream.scale, stream.feats, 2 * stream.n_blocks + 3
    carried = 2 * width * f * low                     # the low-resolution convolutions
    for level in stream.conv_levels()[low:]:
        carried += 2 * width * 2 ** level * f         # upsampler and tail
    delays = (2 * stream.n_blocks + 2) * width * f * 2  # the body's skips
    bicubic = 6 * width * stream.bands + 8 * s * width * s * stream.bands
    return _F32 * batch * (carried + delays + bicubic)


def band_bytes(stream: StreamingForward, width: int, band_rows: int, batch: int = 1) -> int:
    """Estimated peak bytes of one band beyond :func:`state_bytes`: per input pixel of the
    band, 30 x feats float32 values (measured: peak RSS grows by 7-8 MB per row of 1024
    columns with the shipped 64-filter models; a convolution's input, output, im2col
    buffer (9 x feats) and the skips account for 14) and the full-resolution output rows
    with the bicubic residual; plus the upsampler and tail's share, fixed by
    ``high_pixels``."""
    s, f = stream.scale, stream.feats
    per_row = 30 * f + 3 * stream.bands * s * s
    high = 15 * f * stream.high_rows(width) * width * s * s
    return _F32 * batch * (per_row * width * (band_rows + 2) + high)


def pick_band_rows(stream: StreamingForward, width: int, budget_bytes: int, batch: int = 1,
                   preferred: int | None = None) -> int:
    """The band height for a scene ``width`` columns wide within ``budget_bytes``: the
    ``preferred`` height (default: :data:`PREFERRED_BAND_PIXELS` / ``width``) where it
    fits, else the largest that fits (at least 1 row).

    Raises:
        UsageError: not even one row fits the budget (the caller cuts column strips:
            :meth:`StreamingForward.run`'s ``strip_cols``).
    """
    fixed = state_bytes(stream, width, batch)
    one = band_bytes(stream, width, 1, batch)
    if fixed + one > budget_bytes:
        raise UsageError(f"one band of rows {width} columns wide needs about "
                         f"{(fixed + one) / 1e6:.0f} MB, over the memory budget of "
                         f"{budget_bytes / 1e6:.0f} MB: use column strips (strip_cols)")
    per_row = max(1, band_bytes(stream, width, 2, batch) - one)  # linear in band_rows
    fits = 1 + (budget_bytes - fixed - one) // per_row
    if preferred is None:
        preferred = max(1, PREFERRED_BAND_PIXELS // width)
    return int(max(1, min(preferred, fits)))
