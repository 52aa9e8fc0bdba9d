"""Opening Sentinel-2 scenes as a stack of named bands on one grid.

A :class:`Scene` reads windows of digital numbers (DN) from a multi-band GeoTIFF/COG, a
folder of per-band files, or a SAFE product (folder or ``.zip``); its :class:`GeoMeta` says
where the pixels are and how DN map to reflectance (``reflectance = DN * gain + offset``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from s2sr.bands import QUANTIFICATION_VALUE, normalize_band_name
from s2sr.errors import BandError, DataError, InputNotFoundError, RasterReadError, UsageError

log = logging.getLogger(__name__)

#: Dtypes s2sr reads: integer DN (reflectance x 10000) or float reflectance.
SUPPORTED_DTYPES = ("uint16", "int16", "uint32", "int32", "float32", "float64")
_BAND_FILE_RE = re.compile(r"(?:^|_)(B\d{2}|B8A)(?:_10m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)


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
class _BandRef:
    path: str
    index: int
    dataset: Any


def _open_dataset(path: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise RasterReadError(
            f"cannot open {path} as a raster ({_short(err)}): check that it is a complete, "
            "not truncated GeoTIFF/JP2 file; re-download or re-export it"
        ) from None


def _short(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


class Scene:
    """Named bands of one raster grid, read window by window.

    Use :func:`open_scene` to make one; close it (or use ``with``) when done.
    """

    def __init__(self, meta: GeoMeta, refs: Sequence[_BandRef], owned: Sequence[Any]) -> None:
        self.meta = meta
        self._refs = list(refs)
        self._owned = list(owned)

    def read(self, window: Window) -> np.ndarray:
        """Read DN of every band in ``window``.

        Args:
            window: a window inside the grid (row/col offsets and sizes in pixels).

        Returns:
            ``(C, h, w)`` array of the scene's dtype.
        """
        out = np.empty((len(self._refs), int(window.height), int(window.width)), self.meta.dtype)
        groups: dict[int, list[tuple[int, int]]] = {}
        datasets: dict[int, _BandRef] = {}
        for pos, ref in enumerate(self._refs):
            groups.setdefault(id(ref.dataset), []).append((pos, ref.index))
            datasets[id(ref.dataset)] = ref
        for key, members in groups.items():
            ref = datasets[key]
            try:
                data = ref.dataset.read([m[1] for m in members], window=window)
            except RasterioError as err:
                raise RasterReadError(
                    f"cannot read {ref.path} at rows {window.row_off}-"
                    f"{window.row_off + window.height}, cols {window.col_off}-"
                    f"{window.col_off + window.width} ({_short(err)}): the file is truncated "
                    "or corrupt, re-download or re-export it"
                ) from None
            for (pos, _), plane in zip(members, data, strict=True):
                out[pos] = plane
        return out

    def reflectance(self, dn: np.ndarray) -> np.ndarray:
        """DN ``(C, h, w)`` read from this scene -> float32 reflectance (gain and offset)."""
        g = np.asarray(self.meta.gains, np.float32)[:, None, None]
        o = np.asarray(self.meta.offsets, np.float32)[:, None, None]
        return dn.astype(np.float32) * g + o

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


def _band_names_from_descriptions(descriptions: Sequence[str | None]) -> list[str | None]:
    return [normalize_band_name(d) if d else None for d in descriptions]


def _check_dtype(dtype: str, path: str) -> None:
    if dtype not in SUPPORTED_DTYPES:
        raise DataError(
            f"{path} has unsupported dtype {dtype}: s2sr reads reflectance as uint16/int16 "
            "(x 10000) or float32 (0-1); convert it, e.g. gdal_translate -ot UInt16"
        )


def _default_gains(dataset: Any, indexes: Sequence[int]) -> tuple[list[float], list[float]]:
    """DN -> reflectance: GDAL scale/offset when set, else x 10000 for integers, 1 for floats."""
    gains, offsets = [], []
    for idx in indexes:
        scale, offset = dataset.scales[idx - 1], dataset.offsets[idx - 1]
        if (scale, offset) != (1.0, 0.0):
            gains.append(float(scale))
            offsets.append(float(offset))
        elif np.issubdtype(np.dtype(dataset.dtypes[idx - 1]), np.integer):
            gains.append(1.0 / QUANTIFICATION_VALUE)
            offsets.append(0.0)
        else:
            gains.append(1.0)
            offsets.append(0.0)
    return gains, offsets


def _grid_of(dataset: Any) -> tuple[Any, Affine, int, int]:
    return (dataset.crs, dataset.transform, dataset.width, dataset.height)


def _select(
    available: dict[str, _BandRef], wanted: Sequence[str], source: str, what: str
) -> list[_BandRef]:
    missing = [b for b in wanted if b not in available]
    if missing:
        have = ", ".join(available) or "no recognisable band names"
        raise BandError(
            f"{source} lacks band(s) {', '.join(missing)} (it has {have}): supply a scene "
            f"with {', '.join(wanted)}{what}"
        )
    return [available[b] for b in wanted]


def _build(
    refs: list[_BandRef], bands: Sequence[str], source: str, owned: list[Any],
    gains: Sequence[float], offsets: Sequence[float], nodata: float | None,
    tags: dict[str, str] | None = None,
) -> Scene:
    first = refs[0].dataset
    grid = _grid_of(first)
    for band, ref in zip(bands, refs, strict=True):
        other = _grid_of(ref.dataset)
        if other[2:] != grid[2:] or not other[1].almost_equals(grid[1]) or other[0] != grid[0]:
            raise BandError(
                f"band {band} ({ref.dataset.width}x{ref.dataset.height} px) is not on the grid of "
                f"{bands[0]} ({first.width}x{first.height} px) in {source}: s2sr super-resolves "
                "bands of one grid, choose the 10 m bands (B02, B03, B04, B08)"
            )
    dtypes = {ref.dataset.dtypes[ref.index - 1] for ref in refs}
    if len(dtypes) > 1:
        raise DataError(f"{source} mixes dtypes {sorted(dtypes)}: convert the bands to one dtype")
    dtype = dtypes.pop()
    _check_dtype(dtype, source)
    if first.width == 0 or first.height == 0:
        raise DataError(f"{source} is empty (0 pixels): supply a scene with data")
    crs = first.crs if first.crs else None
    if crs is None:
        log.warning("%s has no CRS: the output will have none either", source)
    meta = GeoMeta(
        crs=crs, transform=first.transform, width=first.width, height=first.height,
        dtype=dtype, nodata=nodata, bands=tuple(bands), gains=tuple(gains),
        offsets=tuple(offsets), source=source, tags=dict(tags or {}),
    )
    return Scene(meta, refs, owned)


def open_geotiff(
    path: str, bands: Sequence[str] | None, band_names: Sequence[str] | None
) -> Scene:
    """Open a multi-band raster; bands are found by description or named by position.

    Args:
        path: the raster (GeoTIFF, COG or anything GDAL reads).
        bands: the bands to read, in order; ``None`` for all the file's bands.
        band_names: names of the file's bands by position (overrides descriptions).
    """
    dataset = _open_dataset(path)
    try:
        if band_names is not None:
            names = [normalize_band_name(n) for n in band_names]
            bad = [raw for raw, n in zip(band_names, names, strict=True) if n is None]
            if bad:
                raise UsageError(f"--bands names {bad} are not Sentinel-2 bands: use B02, B03, ...")
            if len(names) != dataset.count:
                raise UsageError(
                    f"--bands names {len(names)} band(s) but {path} has {dataset.count}: name "
                    "every band of the file, in order"
                )
        else:
            names = _band_names_from_descriptions(dataset.descriptions)
        available: dict[str, _BandRef] = {}
        for idx, name in enumerate(names, start=1):
            if name is not None and name not in available:
                available[name] = _BandRef(path, idx, dataset)
        if bands is None:
            if None in names:
                raise BandError(
                    f"{path} has bands without Sentinel-2 names: pass --bands naming them in order"
                )
            bands = [n for n in names if n is not None]
        elif not available:
            if dataset.count == len(bands):
                log.warning(
                    "%s has no band descriptions: assuming its %d bands are %s in that order "
                    "(pass --bands to say otherwise)", path, dataset.count, ", ".join(bands),
                )
                available = {b: _BandRef(path, i, dataset) for i, b in enumerate(bands, start=1)}
            else:
                raise BandError(
                    f"{path} has {dataset.count} band(s) without descriptions and s2sr needs "
                    f"{', '.join(bands)}: pass --bands naming the file's bands in order"
                )
        refs = _select(available, bands, path, "")
        gains, offsets = _default_gains(dataset, [r.index for r in refs])
        nodata = dataset.nodatavals[refs[0].index - 1]
        return _build(refs, bands, path, [dataset], gains, offsets, nodata, dataset.tags())
    except Exception:
        dataset.close()
        raise


def band_files(names: Sequence[str]) -> dict[str, str]:
    """Map band name -> file name for names like ``*_B02.tif`` or ``*_B02_10m.jp2``."""
    found: dict[str, str] = {}
    for name in sorted(names):
        match = _BAND_FILE_RE.search(os.path.basename(name))
        if match:
            band = normalize_band_name(match.group(1))
            if band is not None and band not in found:
                found[band] = name
    return found


def open_band_files(
    files: dict[str, str], bands: Sequence[str] | None, source: str,
    gains: dict[str, float] | None = None, offsets: dict[str, float] | None = None,
    nodata: float | None = None, tags: dict[str, str] | None = None,
) -> Scene:
    """Open one single-band file per band (a per-band folder or a SAFE product)."""
    if not files:
        raise BandError(
            f"{source} holds no per-band files (*_B02.tif, *_B03.jp2, ...): point s2sr at a "
            "multi-band GeoTIFF, a folder of per-band files or a SAFE product"
        )
    wanted = list(bands) if bands is not None else sorted(files)
    available_paths = {b: files[b] for b in wanted if b in files}
    owned: list[Any] = []
    try:
        available = {}
        for band, path in available_paths.items():
            dataset = _open_dataset(path)
            owned.append(dataset)
            available[band] = _BandRef(path, 1, dataset)
        missing = [b for b in wanted if b not in files]
        if missing:
            raise BandError(
                f"{source} lacks band(s) {', '.join(missing)} (it has {', '.join(sorted(files))}): "
                f"supply a scene with {', '.join(wanted)}"
            )
        refs = [available[b] for b in wanted]
        if gains is None:
            g, o = [], []
            for ref in refs:
                gg, oo = _default_gains(ref.dataset, [1])
                g.append(gg[0])
                o.append(oo[0])
        else:
            offsets = offsets or {}
            g = [gains[b] for b in wanted]
            o = [offsets.get(b, 0.0) for b in wanted]
        if nodata is None:
            nodata = refs[0].dataset.nodata
        return _build(refs, wanted, source, owned, g, o, nodata, tags)
    except Exception:
        for dataset in owned:
            dataset.close()
        raise


def open_scene(
    path: str | os.PathLike[str],
    bands: Sequence[str] | None = None,
    band_names: Sequence[str] | None = None,
) -> Scene:
    """Open a Sentinel-2 scene in any supported layout.

    Args:
        path: a multi-band GeoTIFF/COG, a folder of per-band files, a ``.SAFE`` folder or its
            ``.zip``.
        bands: bands to read, in order (e.g. a model's bands); ``None`` for all.
        band_names: for a multi-band file, its bands' names by position (``--bands``).

    Returns:
        An open :class:`Scene`.
    """
    from s2sr.io.safe import is_safe_folder, open_safe  # local: safe imports this module

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"input {p} does not exist: check the path")
    if band_names is not None and (p.is_dir() or p.suffix.lower() == ".zip"):
        raise UsageError("--bands applies to multi-band files only; per-band files are named")
    if p.suffix.lower() == ".zip" or is_safe_folder(p):
        return open_safe(p, bands)
    if p.is_dir():
        files = band_files([str(f) for f in p.iterdir() if f.is_file()])
        return open_band_files(files, bands, str(p))
    return open_geotiff(str(p), bands, band_names)

