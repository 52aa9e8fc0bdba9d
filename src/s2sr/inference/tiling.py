"""Tile layout and blending weights (pure functions, no I/O).

The scene is cut into *cores* of ``stride`` x ``stride`` input pixels. The tile of core
``(i, j)`` is that core plus ``ramp`` pixels to the right and below (shared with the next
core) plus a ``halo`` of context on every side that the network sees but whose output is
discarded. Over each shared ``ramp`` strip the two tiles are cross-faded with a raised
cosine, so the weights of all tiles sum to exactly one everywhere (a partition of unity)
and no seam shows. Every pixel of a core is final once the tiles to its left, above and
above-left are done, which lets the writer stream cores in row-major order while holding
only ``ramp``-wide strips of the following tiles.

Sizes are in input pixels unless a name says ``hr`` (output pixels, ``x scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from s2sr.core.constants import DEFAULT_OVERLAP, DEFAULT_TILE, MAX_TILE, ORT_TILE
from s2sr.core.errors import UsageError


def default_tile(scale: int, backend: str = "torch") -> int:
    """``--tile`` when not given, for the model's scale and the backend that runs it."""
    if backend == "onnxruntime" and scale in ORT_TILE:
        return ORT_TILE[scale]
    return DEFAULT_TILE.get(scale, 256)


def check_overlap(tile: int, overlap: int) -> None:
    """Refuse an ``overlap`` that is not a multiple of 4, or leaves ``tile`` no core.

    Raises:
        UsageError: naming the ``--overlap`` or ``--tile`` to use.
    """
    if overlap < 0 or overlap % 4:
        # half of the overlap is cross-faded, a quarter on each side is context: only a
        # multiple of 4 splits whole, keeps the tile size asked for, and gives context.
        near = max(4, 4 * round(overlap / 4))
        raise UsageError(
            f"--overlap must be a multiple of 4 (0, 4, 8, ... 32), got {overlap}: use "
            f"--overlap {near}"
        )
    ramp = overlap // 2
    if tile - overlap < max(ramp, 1):
        raise UsageError(
            f"--tile {tile} is too small for --overlap {overlap}: use a tile of at least "
            f"{overlap + max(ramp, 1)} or a smaller overlap"
        )


def check_tiling(tile: int | None, overlap: int | None, scale: int) -> None:
    """Refuse a ``--tile``/``--overlap`` pair no scene can be tiled with (``None``: the
    default), before any file is read.

    Raises:
        UsageError: a tile below 8 or above :data:`~s2sr.core.constants.MAX_TILE`
            pixels, or a bad overlap.
    """
    tile = default_tile(scale) if tile is None else int(tile)
    overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
    if tile < 8:
        raise UsageError(f"--tile must be at least 8 pixels, got {tile}")
    if tile > MAX_TILE:
        raise UsageError(f"--tile {tile} is larger than {MAX_TILE} pixels: use a tile of "
                         f"{default_tile(scale)} to 2048 (memory grows with its square)")
    check_overlap(tile, overlap)


def fit_layout(height: int, width: int, scale: int, tile: int | None, overlap: int | None,
               backend: str = "torch") -> TileLayout:
    """The tiling of a ``height`` x ``width`` scene for ``--tile``/``--overlap`` (checked by
    :func:`check_tiling`; ``None``: the defaults of ``backend``): a tile larger than the
    scene only adds padding, so it shrinks to what covers the scene."""
    tile = default_tile(scale, backend) if tile is None else int(tile)
    overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
    needed = max(height, width, overlap // 2, 8) + overlap
    needed += -needed % 8
    return TileLayout.from_tile(height, width, min(tile, needed), overlap, scale)


@dataclass(frozen=True)
class TileLayout:
    """How a ``height`` x ``width`` scene is tiled.

    Attributes:
        height: scene rows. width: scene columns.
        stride: core size (tile step).
        ramp: width of the cross-faded strip between neighbouring tiles.
        halo: context on each side whose output is discarded.
        scale: upscaling factor.
    """

    height: int
    width: int
    stride: int
    ramp: int
    halo: int
    scale: int

    @classmethod
    def from_tile(cls, height: int, width: int, tile: int, overlap: int, scale: int) -> TileLayout:
        """Layout from the user's ``--tile`` (network input size) and ``--overlap``.

        ``overlap`` is how far neighbouring tiles overlap: half of it is cross-faded, a
        quarter on each side is context only.
        """
        check_overlap(tile, overlap)
        return cls(height, width, tile - overlap, overlap // 2, overlap // 4, scale)

    @property
    def tile(self) -> int:
        """Network input size (square)."""
        return self.stride + self.ramp + 2 * self.halo

    @property
    def rows(self) -> int:
        """Number of tile rows."""
        return math.ceil(self.height / self.stride)

    @property
    def cols(self) -> int:
        """Number of tile columns."""
        return math.ceil(self.width / self.stride)

    def core(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Core ``(row0, row1, col0, col1)`` of tile ``(i, j)``, clipped to the scene."""
        s = self.stride
        return (i * s, min((i + 1) * s, self.height), j * s, min((j + 1) * s, self.width))

    def extent(self, i: int, j: int) -> tuple[int, int, int, int]:
        """Where tile ``(i, j)`` has non-zero weight: its core plus the following ramp."""
        r0, r1, c0, c1 = self.core(i, j)
        if i < self.rows - 1:
            r1 = min(r1 + self.ramp, self.height)
        if j < self.cols - 1:
            c1 = min(c1 + self.ramp, self.width)
        return (r0, r1, c0, c1)

    def origin(self, i: int, j: int) -> tuple[int, int]:
        """Top-left input pixel of tile ``(i, j)`` (may be negative: padded by reflection)."""
        return (i * self.stride - self.halo, j * self.stride - self.halo)


def raised_cosine(n: int) -> np.ndarray:
    """Rising ramp of ``n`` samples in (0, 1) with ``ramp + ramp[::-1] == 1``."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def axis_weights(k: int, n: int, start: int, end: int, stride: int, ramp: int,
                 scale: int) -> np.ndarray:
    """1-D weights of tile ``k`` of ``n`` over its extent ``[start, end)`` (input px), at
    output resolution.

    Returns:
        ``((end - start) * scale,)`` float32 weights.
    """
    length = (end - start) * scale
    w = np.ones(length, np.float32)
    r = ramp * scale
    if r == 0:
        return w
    up = raised_cosine(r)
    if k > 0:  # fade in over the ramp shared with tile k-1 (it starts at this core's origin)
        m = min(r, length)
        w[:m] *= up[:m]
    if k < n - 1:  # fade out over the ramp shared with tile k+1
        ramp_start = ((k + 1) * stride - start) * scale
        m = min(r, length - ramp_start)
        w[ramp_start:ramp_start + m] *= 1.0 - up[:m]
    return w


def row_weights(layout: TileLayout, i: int) -> np.ndarray:
    """1-D weights of tile row ``i`` over its extent's rows (the same for every column)."""
    r0, r1, _, _ = layout.extent(i, 0)
    return axis_weights(i, layout.rows, r0, r1, layout.stride, layout.ramp, layout.scale)


def col_weights(layout: TileLayout, j: int) -> np.ndarray:
    """1-D weights of tile column ``j`` over its extent's columns (the same for every row)."""
    _, _, c0, c1 = layout.extent(0, j)
    return axis_weights(j, layout.cols, c0, c1, layout.stride, layout.ramp, layout.scale)


def tile_weights(layout: TileLayout, i: int, j: int) -> np.ndarray:
    """2-D weights ``(h_hr, w_hr)`` of tile ``(i, j)`` over its extent."""
    return row_weights(layout, i)[:, None] * col_weights(layout, j)[None, :]


def extent_offsets(layout: TileLayout, i: int, j: int) -> tuple[int, int, int, int]:
    """Where tile ``(i, j)``'s extent lies in its output: ``(row, column, height, width)``
    in output pixels."""
    r0, r1, c0, c1 = layout.extent(i, j)
    oy, ox = layout.origin(i, j)
    s = layout.scale
    return (r0 - oy) * s, (c0 - ox) * s, (r1 - r0) * s, (c1 - c0) * s


def crop_to_extent(layout: TileLayout, i: int, j: int, prediction: np.ndarray) -> np.ndarray:
    """The part of a tile's ``(C, tile*scale, tile*scale)`` output inside its extent."""
    y, x, h, w = extent_offsets(layout, i, j)
    return prediction[:, y:y + h, x:x + w]


def blend(layout: TileLayout, predictions: dict[tuple[int, int], np.ndarray],
          order: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Mosaic whole-tile predictions into the full output in memory (reference method).

    Args:
        layout: the tiling.
        predictions: ``(i, j)`` -> ``(C, tile*scale, tile*scale)`` network output.
        order: the order in which tiles are accumulated (default: row-major).

    Returns:
        ``(C, height*scale, width*scale)`` float32 mosaic.
    """
    s = layout.scale
    first = next(iter(predictions.values()))
    out = np.zeros((first.shape[0], layout.height * s, layout.width * s), np.float32)
    for i, j in order or sorted(predictions):
        r0, r1, c0, c1 = layout.extent(i, j)
        part = crop_to_extent(layout, i, j, predictions[(i, j)]) * tile_weights(layout, i, j)
        out[:, r0 * s:r1 * s, c0 * s:c1 * s] += part
    return out
