"""What every scene reader returns: :class:`GeoMeta` and :class:`Scene`.

A :class:`Scene` reads windows of digital numbers (DN) from one or several open rasters
(a multi-band file, one file per band); its :class:`GeoMeta` says where the pixels are and
how DN map to reflectance (``reflectance = DN * gain + offset``). The readers
(:mod:`s2sr.io.geotiff`, :mod:`s2sr.io.bandfolder`, :mod:`s2sr.io.safe`) find the bands and
their radiometry, then call :func:`build_scene`, which checks that the bands share one grid
and one dtype.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2sr.core.dn import check_dtype, to_reflectance
from s2sr.core.errors import BandError, DataError, GridMismatchError, RasterReadError
from s2sr.core.safe_text import printable
from s2sr.io.gdal_safety import safe_env

#: The logger of everything said while opening a scene, whichever reader speaks: callers
#: that open a scene twice silence it by this one name.
SCENE_LOGGER = "s2sr.io.scene"
log = logging.getLogger(SCENE_LOGGER)


@dataclass(frozen=True)
class GeoMeta:
    """Where a raster's pixels are and how to read their values.

    Attributes:
        crs: coordinate reference system, ``None`` when the file has none.
        transform: affine pixel-to-CRS transform (pixel corners).
        width: columns. height: rows.
        dtype: numpy dtype name of the DN.
        nodata: the DN that marks missing pixels, or ``None``.
        bands: Sentinel-2 band names, in read order.
        gains: per band, reflectance per DN.
        offsets: per band, reflectance of DN 0.
        source: the path the scene came from.
        tags: dataset tags worth carrying (e.g. acquisition date).
        gcps: ground control points and their CRS, for a raster georeferenced by GCPs
            only (``crs`` ``None``, identity ``transform``); ``None`` otherwise.
    """

    crs: CRS | None
    transform: Affine
    width: int
    height: int
    dtype: str
    nodata: float | None
    bands: tuple[str, ...]
    gains: tuple[float, ...]
    offsets: tuple[float, ...]
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    gcps: tuple[tuple[GroundControlPoint, ...], CRS | None] | None = None

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units (metres for projected CRS)."""
        return (math.hypot(self.transform.a, self.transform.d),
                math.hypot(self.transform.b, self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units, for north-up rasters."""
        left, top = self.transform * (0, 0)
        right, bottom = self.transform * (self.width, self.height)
        return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))


@dataclass(frozen=True)
class BandRef:
    """One band of a scene: the file, its 1-based band index there, the open dataset."""

    path: str
    index: int
    dataset: Any


def short_error(err: BaseException) -> str:
    """First line of an error's text (at most 200 characters), or its type's name."""
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


class Scene:
    """Named bands of one raster grid, read window by window.

    Use :func:`s2sr.io.scene.open_scene` to make one; close it (or use ``with``) when done.
    """

    def __init__(self, meta: GeoMeta, refs: Sequence[BandRef], owned: Sequence[Any]) -> None:
        self.meta = meta
        self._refs = list(refs)
        self._owned = list(owned)
        #: the GDAL environment every read runs in (remote STAC assets widen it for their
        #: own hrefs, :mod:`s2sr.io.stac`)
        self.env: Callable[[], Any] = safe_env

    def read(self, window: Window) -> np.ndarray:
        """Read DN of every band in ``window``.

        Args:
            window: a window inside the grid (row/col offsets and sizes in pixels).

        Returns:
            ``(C, h, w)`` array of the scene's dtype.
        """
        out = np.empty((len(self._refs), int(window.height), int(window.width)), self.meta.dtype)
        groups: dict[int, list[tuple[int, int]]] = {}
        datasets: dict[int, BandRef] = {}
        for pos, ref in enumerate(self._refs):
            groups.setdefault(id(ref.dataset), []).append((pos, ref.index))
            datasets[id(ref.dataset)] = ref
        for key, members in groups.items():
            ref = datasets[key]
            try:
                with self.env():
                    data = ref.dataset.read([m[1] for m in members], window=window)
            except RasterioError as err:
                raise RasterReadError(
                    f"cannot read {ref.path} at rows {window.row_off}-"
                    f"{window.row_off + window.height}, cols {window.col_off}-"
                    f"{window.col_off + window.width} ({short_error(err)}): the file is "
                    "truncated or corrupt, re-download or re-export it"
                ) from None
            for (pos, _), plane in zip(members, data, strict=True):
                out[pos] = plane
        return out

    def reflectance(self, dn: np.ndarray) -> np.ndarray:
        """DN ``(C, h, w)`` read from this scene -> float32 reflectance (gain and offset)."""
        return to_reflectance(dn, self.meta.gains, self.meta.offsets)

    def read_all(self) -> np.ndarray:
        """The whole scene as reflectance ``(C, H, W)`` (for small scenes and crops)."""
        return self.reflectance(self.read(Window(0, 0, self.meta.width, self.meta.height)))

    def close(self) -> None:
        """Close every file the scene opened."""
        for dataset in self._owned:
            dataset.close()
        self._owned.clear()

    def __enter__(self) -> Scene:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _grid_of(dataset: Any) -> tuple[Any, Affine, int, int]:
    return (dataset.crs, dataset.transform, dataset.width, dataset.height)


def select_bands(
    available: dict[str, BandRef], wanted: Sequence[str], source: str, what: str
) -> list[BandRef]:
    """The references of ``wanted`` bands, in order.

    Raises:
        BandError: naming the missing bands and those the source has.
    """
    missing = [b for b in wanted if b not in available]
    if missing:
        have = ", ".join(available) or "no recognisable band names"
        raise BandError(
            f"{source} lacks band(s) {', '.join(missing)} (it has {have}): supply a scene "
            f"with {', '.join(wanted)}{what}"
        )
    return [available[b] for b in wanted]


#: More ground control points than any real product has (a Sentinel-1 GRD has ~200).
MAX_GCPS = 10_000


def _gcps_of(dataset: Any, source: str) -> tuple[tuple[GroundControlPoint, ...], CRS | None] \
        | None:
    """The GCPs of a raster without a geotransform (``None`` when it has none)."""
    if not dataset.transform.is_identity:
        return None
    points, crs = dataset.gcps
    if not points:
        return None
    if len(points) > MAX_GCPS:
        raise DataError(f"{printable(source)} has {len(points)} ground control points (more "
                        f"than {MAX_GCPS}): warp it onto a grid first (gdalwarp)")
    return tuple(points), crs if crs else None


def build_scene(
    refs: list[BandRef], bands: Sequence[str], source: str, owned: list[Any],
    gains: Sequence[float], offsets: Sequence[float], nodata: float | None,
    tags: dict[str, str] | None = None,
) -> Scene:
    """A :class:`Scene` of ``refs`` named ``bands``, once they are checked to share one
    grid (CRS, transform, size) and one supported dtype.

    Args:
        refs: the bands, in read order. bands: their Sentinel-2 names.
        source: the scene's path, for messages and :attr:`GeoMeta.source`.
        owned: the datasets the scene closes when it is closed.
        gains, offsets: per band, reflectance per DN and reflectance of DN 0.
        nodata: the DN marking missing pixels. tags: tags worth carrying.

    Raises:
        GridMismatchError: a band on another grid. DataError: mixed or unsupported dtypes,
            or an empty raster.
    """
    first = refs[0].dataset
    grid = _grid_of(first)
    for band, ref in zip(bands, refs, strict=True):
        other = _grid_of(ref.dataset)
        if other[2:] != grid[2:] or not other[1].almost_equals(grid[1]) or other[0] != grid[0]:
            raise GridMismatchError(
                f"band {band} ({ref.dataset.width}x{ref.dataset.height} px) is not on the grid of "
                f"{bands[0]} ({first.width}x{first.height} px) in {source}: s2sr super-resolves "
                "bands of one grid, choose the 10 m bands (B02, B03, B04, B08) or resample "
                f"{band} onto the grid of {bands[0]} (gdalwarp -tr/-te)"
            )
    dtypes = {ref.dataset.dtypes[ref.index - 1] for ref in refs}
    if len(dtypes) > 1:
        raise DataError(f"{source} mixes dtypes {sorted(dtypes)}: convert the bands to one dtype")
    dtype = dtypes.pop()
    check_dtype(dtype, source)
    if first.width == 0 or first.height == 0:
        raise DataError(f"{source} is empty (0 pixels): supply a scene with data")
    crs = first.crs if first.crs else None
    gcps = _gcps_of(first, source) if crs is None else None
    if gcps is not None:
        log.warning("%s has no geotransform but is georeferenced by %d ground control points "
                    "(GCPs): the output carries them, scaled to its pixel grid (gdalwarp it to "
                    "get a regular grid)", printable(source), len(gcps[0]))
    elif crs is None and first.rpcs:
        log.warning("%s is georeferenced by RPCs only: the output does not carry them; "
                    "orthorectify the scene first (gdalwarp -rpc) to keep its location",
                    printable(source))
    elif crs is None:
        log.warning("%s has no CRS and no GCPs (not georeferenced): the output will not be "
                    "either", printable(source))
    meta = GeoMeta(
        crs=crs, transform=first.transform, width=first.width, height=first.height,
        dtype=dtype, nodata=nodata, bands=tuple(bands),
        gains=tuple(gains), offsets=tuple(offsets), source=source, tags=dict(tags or {}),
        gcps=gcps,
    )
    return Scene(meta, refs, owned)
