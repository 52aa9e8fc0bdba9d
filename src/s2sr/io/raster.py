"""Small raster helpers for the rest of s2sr, so that nothing outside :mod:`s2sr.io` opens,
warps or writes rasters itself.

- :func:`open_reference`: open any single raster (a reference scene, a cloud mask, an L2A
  SCL layer) with the safety checks of :mod:`s2sr.io.gdal_safety`;
- :func:`warped`: a dataset reprojected onto another grid on the fly (a GDAL warped VRT),
  read window by window;
- :func:`read_bands`: the DN of named bands of a multi-band raster, whole;
- :func:`write_geotiff`: a whole array written as a tiled GeoTIFF, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from s2sr.core.bands import described_bands, normalize_band_name
from s2sr.core.errors import BandError
from s2sr.core.files import atomic_path
from s2sr.io.gdal_safety import open_raster, safe_env

__all__ = ["Resampling", "open_reference", "read_bands", "warped", "write_geotiff"]


def open_reference(path: str | os.PathLike[str]) -> Any:
    """Open a single raster for reading, safely (driver by suffix, no raw-file, remote or
    Python VRT sources, size bounded before anything is read).

    Returns:
        An open rasterio dataset; close it when done.

    Raises:
        UnsafeInputError, RasterReadError, DataError: see :func:`open_raster`.
    """
    return open_raster(str(path))


def warped(dataset: Any, *, crs: CRS, transform: Affine, width: int, height: int,
           resampling: Resampling) -> WarpedVRT:
    """``dataset`` reprojected onto the grid ``(crs, transform, width, height)``.

    Use it as a context manager; read it like a dataset (``read(indexes, window=...)``,
    ``dataset_mask(window=...)``): only the windows read are warped.

    Args:
        dataset: an open dataset (e.g. from :func:`open_reference`).
        crs, transform, width, height: the target grid.
        resampling: e.g. ``Resampling.average`` when downscaling, ``nearest`` for classes.
    """
    return WarpedVRT(dataset, crs=crs, transform=transform, width=width, height=height,
                     resampling=resampling)


def read_bands(path: str | os.PathLike[str], bands: Sequence[str]) -> np.ndarray:
    """The DN of ``bands`` of a multi-band raster, whole, found by the file's band
    descriptions (Sentinel-2 names in any spelling, any order); no radiometry is applied.

    Returns:
        ``(C, H, W)`` DN in the file's dtype, in the order of ``bands``.

    Raises:
        BandError: a band the descriptions do not name.
    """
    with open_raster(str(path)) as ds:
        names = described_bands(ds.descriptions)
        wanted = [normalize_band_name(b) or b for b in bands]
        missing = [b for b in wanted if b not in names]
        if missing:
            have = ", ".join(str(n) for n in names if n) or "no Sentinel-2 band descriptions"
            raise BandError(f"{path} lacks band(s) {', '.join(missing)} (it has {have}): "
                            "supply a raster whose band descriptions name them")
        with safe_env():
            return np.asarray(ds.read([names.index(b) + 1 for b in wanted]))


def write_geotiff(path: str | os.PathLike[str], data: np.ndarray, *, transform: Affine,
                  crs: CRS | str | None, descriptions: Sequence[str] | None = None,
                  nodata: float | None = None, blocksize: int = 256,
                  compress: str = "deflate") -> Path:
    """Write ``data`` ``(C, H, W)`` as a tiled GeoTIFF of its dtype, atomically (a temporary
    file beside ``path``, renamed when complete; an existing ``path`` is replaced).

    Args:
        path: the output file.
        data: the bands, any dtype GDAL writes.
        transform, crs: the grid (``crs`` ``None`` for none).
        descriptions: band descriptions (e.g. ``B02``... or ``blue``...).
        nodata: the value that marks missing pixels.
        blocksize: tile side in pixels (a multiple of 16).
        compress: GDAL codec name.

    Returns:
        ``path``.

    Raises:
        ValueError: ``data`` is not 3-D.
    """
    if data.ndim != 3:
        raise ValueError(f"write_geotiff takes (C, H, W) data, got shape {data.shape}")
    out = Path(path)
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
        "count": data.shape[0], "dtype": data.dtype.name, "transform": transform,
        "nodata": nodata, "tiled": True, "blockxsize": blocksize, "blockysize": blocksize,
        "compress": compress,
    }
    if crs is not None:
        profile["crs"] = crs
    with atomic_path(out, ".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
    return out
