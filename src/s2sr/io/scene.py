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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2sr.bands import QUANTIFICATION_VALUE, normalize_band_name
from s2sr.errors import (
    BandError,
    DataError,
    GridMismatchError,
    InputNotFoundError,
    RasterReadError,
    UsageError,
)
from s2sr.io.baseline import detect_offsets
from s2sr.io.gdal_safety import open_raster, safe_env

log = logging.getLogger(__name__)

#: Dtypes s2sr reads: integer DN (reflectance x 10000) or float reflectance.
SUPPORTED_DTYPES = ("uint16", "int16", "uint32", "int32", "float32", "float64")
_BAND_FILE_RE = re.compile(r"(?:^|_)(B\d{2}|B8A)(?:_10m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)
#: Band files named as in Sentinel-2 products (``T33UUB_20230601T102031_B02_10m.jp2``, or the
#: older ``S2A_OPER_MSI_L1C_TL_..._B02.jp2``).
_S2_PRODUCT_FILE_RE = re.compile(
    r"^(?:T\d{2}[A-Z]{3}_\d{8}T\d{6}_|S2[A-D]_OPER_MSI_L1C_TL_\w+_)(?:B\d{2}|B8A)(?:_\d{2}m)?\.jp2$",
    re.IGNORECASE)
#: Largest DN offset accepted (the baseline 04.00 offset is -1000).
MAX_DN_OFFSET = 10000.0


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


def _open_dataset(path: str, product: str | None = None) -> Any:
    """Open a raster safely: the driver its suffix implies, no raw-file, remote or Python VRT
    sources, size bounded before anything is read (see :mod:`s2sr.io.gdal_safety`)."""
    return open_raster(path, product=product)


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
                with safe_env():
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


def _check_dtype(dtype: str, path: str) -> None:
    if dtype not in SUPPORTED_DTYPES:
        raise DataError(
            f"{path} has unsupported dtype {dtype}: s2sr reads reflectance as uint16/int16 "
            "(x 10000) or float32 (0-1); convert it, e.g. gdal_translate -ot UInt16"
        )


def _is_integer(dtype: str) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.integer))


def _default_gains(
    dataset: Any, indexes: Sequence[int], path: str
) -> tuple[list[float], list[float], bool]:
    """DN -> reflectance: GDAL scale/offset when set, else x 10000 for integers, 1 for floats.

    Returns gains, offsets and whether the file set them (GDAL scale/offset) itself.

    Raises:
        DataError: a scale of 0, negative, NaN or infinite, or a NaN/infinite offset.
    """
    gains, offsets, explicit = [], [], False
    for idx in indexes:
        scale, offset = dataset.scales[idx - 1], dataset.offsets[idx - 1]
        if not (math.isfinite(scale) and math.isfinite(offset)) or scale <= 0:
            raise DataError(
                f"{path} band {idx} has GDAL scale {scale} and offset {offset}: the scale must be "
                "a positive finite number and the offset finite; fix them, e.g. gdal_edit.py "
                "-scale 0.0001 -offset 0 (or -unsetstats), or re-export the file"
            )
        if (scale, offset) != (1.0, 0.0):
            gains.append(float(scale))
            offsets.append(float(offset))
            explicit = True
        elif _is_integer(dataset.dtypes[idx - 1]):
            gains.append(1.0 / QUANTIFICATION_VALUE)
            offsets.append(0.0)
        else:
            gains.append(1.0)
            offsets.append(0.0)
    return gains, offsets, explicit


def _check_dn_offset(dn_offset: float | None) -> None:
    if dn_offset is not None and not (
            math.isfinite(dn_offset) and abs(dn_offset) <= MAX_DN_OFFSET):
        raise UsageError(
            f"DN offset {dn_offset} is out of range: give a finite number within "
            f"+-{MAX_DN_OFFSET:g} (-1000 for processing baseline 04.00 and later, 0 before)"
        )


def _apply_offsets(
    bands: Sequence[str], gains: list[float], offsets: list[float], explicit_scale: bool,
    dtype: str, dn_offset: float | None, where: str, tags: dict[str, str], s2_files: bool,
) -> tuple[list[float], list[float]]:
    """Reflectance offsets from an explicit DN offset, or from the detected baseline.

    ``s2_files``: the files are recognisably Sentinel-2 product files (named as in products,
    JPEG 2000, or tagged as Sentinel-2), so an unknown baseline is worth a warning; plain
    GeoTIFF exports are DN = reflectance x 10000 as documented.
    """
    if dn_offset is not None:
        if not _is_integer(dtype):
            raise UsageError(f"a DN offset applies to integer DN, but {where} holds {dtype} "
                             "reflectance: drop the offset")
        tags["S2_DN_OFFSET"] = ",".join(f"{b}:{dn_offset:g}" for b in bands)
        return gains, [dn_offset * g for g in gains]
    if explicit_scale or not _is_integer(dtype):
        return gains, offsets
    found = detect_offsets(where, tags)
    if found is None:
        if not s2_files:
            return gains, offsets
        log.warning(
            "%s: cannot tell the processing baseline of these Sentinel-2 DN (no product name, "
            "MTD_MSIL*.xml/MTD_TL.xml or baseline tag): assuming no DN offset; for products "
            "of baseline 04.00 or later (acquired from 25 January 2022) pass --offset -1000 "
            "(dn_offset=-1000), or --offset 0 to silence this", where)
        return gains, offsets
    if found.quantification is not None:
        gains = [1.0 / found.quantification for _ in bands]
    new = [found.offsets.get(b, 0.0) * g for b, g in zip(bands, gains, strict=True)]
    tags["S2_PROCESSING_BASELINE"] = found.baseline
    tags["S2_DN_OFFSET"] = ",".join(f"{b}:{found.offsets.get(b, 0.0):g}" for b in bands)
    return gains, new


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
    _check_dtype(dtype, source)
    if first.width == 0 or first.height == 0:
        raise DataError(f"{source} is empty (0 pixels): supply a scene with data")
    crs = first.crs if first.crs else None
    if crs is None:
        log.warning("%s has no CRS: the output will have none either", source)
    meta = GeoMeta(
        crs=crs, transform=first.transform, width=first.width, height=first.height,
        dtype=dtype, nodata=nodata, bands=tuple(bands),
        gains=tuple(gains), offsets=tuple(offsets), source=source, tags=dict(tags or {}),
    )
    return Scene(meta, refs, owned)


def _described_names(descriptions: Sequence[str | None]) -> tuple[list[str | None], list[str]]:
    """Sentinel-2 names of a file's bands by description, and the descriptions it has."""
    names = [normalize_band_name(d) if d and d.strip() else None for d in descriptions]
    present = [d.strip() for d in descriptions if d and d.strip()]
    return names, present


def _by_position(band_names: Sequence[str], count: int, path: str) -> list[str | None]:
    names = [normalize_band_name(n) for n in band_names]
    bad = [raw for raw, n in zip(band_names, names, strict=True) if n is None]
    if bad:
        raise UsageError(f"--bands names {bad} are not Sentinel-2 bands: use B02, B03, ...")
    dupes = sorted({n for n in names if names.count(n) > 1 and n is not None})
    if dupes:
        raise UsageError(f"--bands names {', '.join(dupes)} more than once: name each band once")
    return list(names)


def open_geotiff(
    path: str, bands: Sequence[str] | None, band_names: Sequence[str] | None,
    dn_offset: float | None = None,
) -> Scene:
    """Open a multi-band raster; bands are found by description or named by position.

    Args:
        path: the raster (GeoTIFF, COG, JPEG 2000, or a VRT of local files).
        bands: the bands to read, in order; ``None`` for all the file's (or ``band_names``).
        band_names: ``--bands``. When the file's band descriptions are Sentinel-2 names, these
            *select* among them (any order, a subset); otherwise they name the file's bands
            by position and must name every band.
        dn_offset: additive DN offset overriding the detected processing baseline.
    """
    dataset = _open_dataset(path)
    try:
        described, present = _described_names(dataset.descriptions)
        by_desc = {n: i for i, n in enumerate(described, start=1) if n is not None}
        selected: list[str] | None = None
        if band_names is not None:
            wanted = _by_position(band_names, dataset.count, path)
            if all(n in by_desc for n in wanted):  # descriptions name them: select
                names: list[str | None] = list(described)
                selected = [n for n in wanted if n is not None]
            elif len(wanted) == dataset.count:  # name the file's bands by position
                names = wanted
            elif present:
                missing = [str(n) for n in wanted if n not in by_desc]
                raise UsageError(
                    f"--bands {', '.join(missing)} not among the band descriptions of {path} "
                    f"({', '.join(repr(d) for d in present)}): choose among them, or name all "
                    f"{dataset.count} bands of the file in order"
                )
            else:
                raise UsageError(
                    f"--bands names {len(wanted)} band(s) but {path} has {dataset.count} without "
                    "descriptions: name every band of the file, in order"
                )
        else:
            names = list(described)
        unknown = [d for d in present if normalize_band_name(d) is None]
        available: dict[str, _BandRef] = {}
        for idx, name in enumerate(names, start=1):
            if name is not None and name not in available:
                available[name] = _BandRef(path, idx, dataset)
        if bands is None:
            bands = selected
        if bands is None:
            if None in names:
                if present:
                    raise BandError(
                        f"{path} has band descriptions that are not Sentinel-2 names "
                        f"({', '.join(repr(d) for d in unknown) or 'some empty'}): pass --bands "
                        "naming the file's bands in order, e.g. --bands B02,B03,B04,B08"
                    )
                raise BandError(
                    f"{path} has bands without Sentinel-2 names: pass --bands naming them in order"
                )
            bands = [n for n in names if n is not None]
        elif selected is not None and any(b not in selected for b in bands):
            left = ", ".join(b for b in bands if b not in selected)
            raise BandError(
                f"--bands {', '.join(selected)} leaves out {left} that s2sr needs here "
                f"({', '.join(bands)}): add it to --bands"
            )
        elif not available and not present:
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
        elif band_names is None and unknown and any(b not in available for b in bands):
            raise BandError(
                f"{path} has band descriptions that are not Sentinel-2 names "
                f"({', '.join(repr(d) for d in unknown)}): pass --bands naming the file's "
                "bands in order, e.g. --bands B02,B03,B04,B08"
            )
        refs = _select(available, bands, path, "")
        gains, offsets, explicit = _default_gains(dataset, [r.index for r in refs], path)
        tags = dict(dataset.tags())
        s2_files = path.lower().endswith(".jp2") or any(
            "SENTINEL" in f"{k} {v}".upper() for k, v in tags.items())
        gains, offsets = _apply_offsets(bands, gains, offsets, explicit,
                                        dataset.dtypes[refs[0].index - 1], dn_offset, path, tags,
                                        s2_files)
        nodata = dataset.nodatavals[refs[0].index - 1]
        return _build(refs, bands, path, [dataset], gains, offsets, nodata, tags)
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


def is_s2_product_band(path: str) -> bool:
    """Whether a file is recognisably a band file of a Sentinel-2 product (named as in the
    product, or inside a granule's ``IMG_DATA`` folder), where DN 0 marks missing pixels."""
    parts = path.replace("\\", "/").split("/")
    return bool(_S2_PRODUCT_FILE_RE.match(parts[-1])) or "IMG_DATA" in parts[:-1]


def open_band_files(
    files: dict[str, str], bands: Sequence[str] | None, source: str,
    gains: dict[str, float] | None = None, offsets: dict[str, float] | None = None,
    nodata: float | None = None, tags: dict[str, str] | None = None,
    dn_offset: float | None = None,
) -> Scene:
    """Open one single-band file per band (a per-band folder or a SAFE product).

    ``gains``/``offsets`` (reflectance per DN, reflectance of DN 0) come from a product's
    metadata; without them they come from the files' GDAL scale/offset or the detected
    processing baseline (``dn_offset`` overrides it). Files that are recognisably Sentinel-2
    product bands get nodata 0 when they declare none (JPEG 2000 never does).
    """
    if not files:
        raise BandError(
            f"{source} holds no per-band files (*_B02.tif, *_B03.jp2, ...): point s2sr at a "
            "multi-band GeoTIFF, a folder of per-band files or a SAFE product"
        )
    wanted = list(bands) if bands is not None else sorted(files)
    available_paths = {b: files[b] for b in wanted if b in files}
    owned: list[Any] = []
    tags = dict(tags or {})
    try:
        available = {}
        for band, path in available_paths.items():
            dataset = _open_dataset(path, product=source)
            owned.append(dataset)
            if dataset.count != 1:
                raise DataError(f"{path} in {source} has {dataset.count} bands: a per-band file "
                                "holds one band; pass a multi-band file as the scene itself")
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
            explicit = False
            for ref in refs:
                gg, oo, ex = _default_gains(ref.dataset, [1], ref.path)
                g.append(gg[0])
                o.append(oo[0])
                explicit = explicit or ex
            s2_files = all(is_s2_product_band(r.path) or r.path.lower().endswith(".jp2")
                           for r in refs)
            g, o = _apply_offsets(wanted, g, o, explicit, refs[0].dataset.dtypes[0], dn_offset,
                                  source, tags, s2_files)
        else:
            offsets = offsets or {}
            g = [gains[b] for b in wanted]
            o = [offsets.get(b, 0.0) for b in wanted]
        if nodata is None:
            nodata = refs[0].dataset.nodata
        if nodata is None and all(is_s2_product_band(r.path) for r in refs):
            nodata = 0  # DN 0 marks missing data in every Sentinel-2 product
        return _build(refs, wanted, source, owned, g, o, nodata, tags)
    except Exception:
        for dataset in owned:
            dataset.close()
        raise


def _band_folder_files(folder: Path) -> list[str]:
    """Files of a per-band folder; for a granule folder (``GRANULE/L2A_T.../``) or its
    ``IMG_DATA`` the bands in ``IMG_DATA/`` and ``IMG_DATA/R10m/`` (L2A) are found too."""
    found: list[str] = []
    for sub in (folder, folder / "IMG_DATA", folder / "IMG_DATA" / "R10m", folder / "R10m"):
        if sub.is_dir():
            found += [str(f) for f in sub.iterdir() if f.is_file()]
    return found


def open_scene(
    path: str | os.PathLike[str],
    bands: Sequence[str] | None = None,
    band_names: Sequence[str] | None = None,
    dn_offset: float | None = None,
) -> Scene:
    """Open a Sentinel-2 scene in any supported layout.

    Args:
        path: a multi-band GeoTIFF/COG, a folder of per-band files (also a granule folder or
            its ``IMG_DATA``), a ``.SAFE`` folder or its ``.zip``.
        bands: bands to read, in order (e.g. a model's bands); ``None`` for all.
        band_names: for a multi-band file, ``--bands``: selects among the file's band
            descriptions, or names its bands by position when it has none.
        dn_offset: additive DN offset (``--offset``; -1000 for processing baseline >= 04.00),
            overriding what the product metadata, name or tags say. ``None``: detect it.

    Returns:
        An open :class:`Scene`.
    """
    from s2sr.io.safe import is_safe_folder, open_safe  # local: safe imports this module

    _check_dn_offset(dn_offset)
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"input {p} does not exist: check the path")
    if band_names is not None and (p.is_dir() or p.suffix.lower() == ".zip"):
        raise UsageError("--bands applies to multi-band files only; per-band files are named")
    if p.suffix.lower() == ".zip" or is_safe_folder(p):
        return open_safe(p, bands, dn_offset=dn_offset)
    if p.is_dir():
        files = band_files(_band_folder_files(p))
        return open_band_files(files, bands, str(p), dn_offset=dn_offset)
    return open_geotiff(str(p), bands, band_names, dn_offset=dn_offset)
