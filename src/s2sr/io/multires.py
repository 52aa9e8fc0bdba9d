"""The 10 m and the 20 m bands of one scene, on grids checked to nest: :func:`open_multires`.

``s2sr predict --bands all`` reads the four 10 m bands (B02 B03 B04 B08) and the six 20 m
bands (B05 B06 B07 B8A B11 B12) of one acquisition, each set on its own grid, from

* a SAFE product (folder or ``.zip``): an L2A's ``R10m`` and ``R20m`` files, an L1C's
  per-band JPEG 2000 files;
* a folder of per-band files at both resolutions (BigEarthNet, OSCD, a granule folder);
* a STAC Item whose assets hold both;
* a 10 m raster plus a 20 m raster (``input_20m``, ``--input-20m FILE``): e.g. a 4-band
  and a 6-band GeoTIFF, or any two of the forms above.

Each set is opened by the readers of :mod:`s2sr.io.scene` (same safety checks, radiometry,
processing-baseline offset and nodata). The 20 m grid must *nest* in the 10 m grid: the
same CRS, north-up, a 20 m pixel exactly twice the 10 m pixel, and its origin a whole
number of 10 m pixels away (:func:`nest_grids`). Anything else (a half-pixel shift, another
CRS, a resampled 20 m band) is refused in one line naming the fix; nothing is resampled.
The scene's extent is where both sets lie, in whole 20 m pixels (:class:`GridNesting`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import numpy as np
from affine import Affine
from rasterio.windows import Window

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.core.errors import DataError, GridMismatchError, InputNotFoundError, UsageError
from s2sr.core.safe_text import printable
from s2sr.io.bandfolder import band_files, band_folder_files, open_band_files
from s2sr.io.base import GeoMeta, Scene
from s2sr.io.processing_baseline import check_dn_offset
from s2sr.io.safe import is_safe_folder, open_safe
from s2sr.io.scene import open_scene
from s2sr.io.stac import open_stac_item

log = logging.getLogger(__name__)

#: How far from exact (in 10 m pixels) a pixel-size ratio or an origin offset may be and
#: still count as exact (float rounding of the geotransforms).
GRID_TOLERANCE = 1e-3
#: The fix named when the 20 m grid does not nest in the 10 m grid.
_WARP_FIX = ("resample the 20 m bands onto a 20 m grid aligned with the 10 m one (e.g. "
             "gdalwarp -tr 20 20 -te <the 10 m raster's bounds>) or use the product's own "
             "20 m files")


@dataclass(frozen=True)
class GridNesting:
    """Where the scene's extent lies in the 10 m and the 20 m rasters.

    Attributes:
        hr_row, hr_col: the extent's first 10 m pixel in the 10 m raster.
        lr_row, lr_col: its first 20 m pixel in the 20 m raster.
        height, width: its size in 20 m pixels (``2 *`` that in 10 m pixels).
    """

    hr_row: int
    hr_col: int
    lr_row: int
    lr_col: int
    height: int
    width: int


def _whole(value: float) -> int | None:
    """``value`` as an integer when it is one (within :data:`GRID_TOLERANCE`)."""
    near = round(value)
    return int(near) if abs(value - near) <= GRID_TOLERANCE else None


def _span(offset: int, hr_size: int, lr_size: int) -> tuple[int, int, int]:
    """Along one axis: the first 10 m pixel, first 20 m pixel and length (20 m pixels) of
    the overlap of a 10 m raster and a 20 m raster starting ``offset`` 10 m pixels later."""
    first = max(0, offset)
    first += (first - offset) % 2  # start on a 20 m pixel's edge
    end = min(hr_size, offset + 2 * lr_size)
    return first, (first - offset) // 2, max(0, (end - first) // 2)


def nest_grids(hr: GeoMeta, lr: GeoMeta) -> GridNesting:
    """Check that the 20 m grid ``lr`` nests in the 10 m grid ``hr``; their common extent.

    Raises:
        GridMismatchError: another CRS, no geotransform, a rotated grid, a 20 m pixel that
            is not twice the 10 m one, an origin not a whole number of 10 m pixels away
            (e.g. a half-pixel shift), or no overlap; in one line naming the fix.
    """
    where = f"the 20 m bands ({printable(lr.source)}) and the 10 m bands " \
            f"({printable(hr.source)})"
    if hr.crs != lr.crs:
        raise GridMismatchError(f"{where} are in different CRS ({lr.crs} and {hr.crs}): "
                                f"{_WARP_FIX}")
    for meta in (hr, lr):
        t = meta.transform
        if meta.gcps is not None or t.is_identity:
            raise GridMismatchError(
                f"{printable(meta.source)} has no geotransform, so where its pixels lie on "
                "the other grid is unknown: give both rasters a geotransform (gdal_translate "
                "-a_ullr)")
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise GridMismatchError(f"{printable(meta.source)} is not a north-up grid: warp "
                                    "it north-up first (gdalwarp)")
    ha, he, la, le = hr.transform.a, hr.transform.e, lr.transform.a, lr.transform.e
    if abs(la / ha - 2) > GRID_TOLERANCE / 10 or abs(le / he - 2) > GRID_TOLERANCE / 10:
        raise GridMismatchError(
            f"{where}: the 20 m pixel ({la:g} x {-le:g}) is not twice the 10 m pixel "
            f"({ha:g} x {-he:g}), so the 20 m bands are not at their native 20 m (resampled?) "
            f"or the 10 m ones are not at 10 m: {_WARP_FIX}")
    dx = (lr.transform.c - hr.transform.c) / ha
    dy = (lr.transform.f - hr.transform.f) / he
    ox, oy = _whole(dx), _whole(dy)
    if ox is None or oy is None:
        raise GridMismatchError(
            f"{where}: the 20 m grid is shifted by ({dx:.3f}, {dy:.3f}) 10 m pixels (x, y) "
            "from the 10 m grid, not by whole pixels (a half-pixel shift?); s2sr does not "
            f"resample: {_WARP_FIX}")
    hr_col, lr_col, width = _span(ox, hr.width, lr.width)
    hr_row, lr_row, height = _span(oy, hr.height, lr.height)
    if width == 0 or height == 0:
        raise GridMismatchError(f"{where} do not overlap by a whole 20 m pixel: pass the "
                                "20 m bands of the same place")
    return GridNesting(hr_row, hr_col, lr_row, lr_col, height, width)


class MultiResScene:
    """The 10 m scene (:attr:`hr`) and the 20 m scene (:attr:`lr`) of one acquisition,
    read in windows of their common extent (:attr:`nesting`).

    Close it (or use ``with``) when done.
    """

    def __init__(self, hr: Scene, lr: Scene) -> None:
        self.hr, self.lr = hr, lr
        self.nesting = nest_grids(hr.meta, lr.meta)
        _check_encodings(hr.meta, lr.meta)
        n = self.nesting
        if (2 * n.height, 2 * n.width) != (hr.meta.height, hr.meta.width):
            log.warning("%s: the 20 m bands cover only part of the 10 m scene: the output "
                        "covers rows %d-%d and columns %d-%d of it (10 m pixels)",
                        printable(hr.meta.source), n.hr_row, n.hr_row + 2 * n.height,
                        n.hr_col, n.hr_col + 2 * n.width)

    @property
    def height(self) -> int:
        """The extent's rows in 20 m pixels."""
        return self.nesting.height

    @property
    def width(self) -> int:
        """The extent's columns in 20 m pixels."""
        return self.nesting.width

    def hr_meta(self) -> GeoMeta:
        """The 10 m scene's metadata, its grid cut to the common extent."""
        n = self.nesting
        return replace(self.hr.meta, width=2 * n.width, height=2 * n.height,
                       transform=self.hr.meta.transform @ Affine.translation(n.hr_col,
                                                                            n.hr_row))

    def read_hr(self, window: Window) -> np.ndarray:
        """DN of the 10 m bands in ``window`` (10 m pixels of the common extent)."""
        n = self.nesting
        return self.hr.read(Window(window.col_off + n.hr_col, window.row_off + n.hr_row,
                                   window.width, window.height))

    def read_lr(self, window: Window) -> np.ndarray:
        """DN of the 20 m bands in ``window`` (20 m pixels of the common extent)."""
        n = self.nesting
        return self.lr.read(Window(window.col_off + n.lr_col, window.row_off + n.lr_row,
                                   window.width, window.height))

    def close(self) -> None:
        """Close both scenes."""
        self.hr.close()
        self.lr.close()

    def __enter__(self) -> MultiResScene:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _check_encodings(hr: GeoMeta, lr: GeoMeta) -> None:
    """Refuse 10 m and 20 m bands that one output file cannot hold: other dtypes, or other
    nodata values."""
    if hr.dtype != lr.dtype:
        raise DataError(f"the 10 m bands ({printable(hr.source)}) are {hr.dtype} and the 20 m "
                        f"bands ({printable(lr.source)}) {lr.dtype}: convert both to one "
                        "dtype (gdal_translate -ot)")
    if hr.nodata is not None and lr.nodata is not None and not (
            hr.nodata == lr.nodata or (math.isnan(hr.nodata) and math.isnan(lr.nodata))):
        raise DataError(f"the 10 m bands' nodata is {hr.nodata:g} and the 20 m bands' "
                        f"{lr.nodata:g}: give both one nodata value (gdal_edit.py -a_nodata)")


def _open_pair(path: Path, dn_offset: float | None) -> tuple[Scene, Scene]:
    """The 10 m and the 20 m scene of one input that holds both."""
    if path.suffix.lower() == ".json":
        hr = open_stac_item(path, DEFAULT_BANDS, dn_offset=dn_offset)
        return hr, _closing(hr, lambda: open_stac_item(path, BANDS_20M, dn_offset=dn_offset))
    if path.suffix.lower() == ".zip" or is_safe_folder(path):
        hr = open_safe(path, DEFAULT_BANDS, dn_offset)
        return hr, _closing(hr, lambda: open_safe(path, BANDS_20M, dn_offset, resolution=20))
    if path.is_dir():
        hr = open_band_files(band_files(band_folder_files(path)), DEFAULT_BANDS, str(path),
                             dn_offset=dn_offset)
        files20 = band_files(band_folder_files(path, 20), 20)
        return hr, _closing(hr, lambda: open_band_files(files20, BANDS_20M, str(path),
                                                        dn_offset=dn_offset))
    raise UsageError(
        f"{printable(str(path))} is one raster, on one grid: pass the six 20 m bands "
        f"({', '.join(BANDS_20M)}) at their native 20 m as a second raster with --input-20m "
        "FILE (input_20m=), or give a SAFE product or a per-band folder")


def _closing(first: Scene, opener: Callable[[], Scene]) -> Scene:
    """``opener()``, closing ``first`` when it fails."""
    try:
        return opener()
    except BaseException:
        first.close()
        raise


def open_multires(path: str | os.PathLike[str], input_20m: str | os.PathLike[str] | None = None,
                  dn_offset: float | None = None) -> MultiResScene:
    """Open the 10 m and the 20 m bands of a scene (see the module's text).

    Args:
        path: a SAFE folder or ``.zip``, a per-band folder, a STAC Item ``.json``, or (with
            ``input_20m``) the 10 m bands in any form :func:`~s2sr.io.scene.open_scene`
            reads.
        input_20m: the six 20 m bands, in any form :func:`~s2sr.io.scene.open_scene` reads
            (``None``: from ``path``).
        dn_offset: additive DN offset of both (``--offset``); ``None``: detected.

    Raises:
        InputNotFoundError: a missing input. UsageError: one raster without ``input_20m``.
        BandError: a missing band. GridMismatchError: grids that do not nest.
        DataError: dtypes or nodata that differ; and each reader's own refusals.
    """
    check_dn_offset(dn_offset)
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"input {p} does not exist: check the path")
    if input_20m is not None:
        if not Path(input_20m).exists():
            raise InputNotFoundError(f"--input-20m {input_20m} does not exist: check the path")
        hr = open_scene(p, bands=DEFAULT_BANDS, dn_offset=dn_offset)
        lr = _closing(hr, lambda: open_scene(input_20m, bands=BANDS_20M, dn_offset=dn_offset))
    else:
        hr, lr = _open_pair(p, dn_offset)
    try:
        return MultiResScene(hr, lr)
    except BaseException:
        hr.close()
        lr.close()
        raise
