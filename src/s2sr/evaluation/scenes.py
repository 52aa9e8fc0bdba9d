"""Whole scenes for ``s2sr evaluate``: read as reflectance and checked before scoring.

Every pixel of a scene is scored, so what would give wrong or NaN scores is refused with a
one-line message naming the fix: scenes too large to read whole, NaN/inf and nodata
pixels, and pairs that are not the same area on grids ``scale`` times apart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from s2sr.core.errors import DataError, UsageError
from s2sr.io.base import GeoMeta
from s2sr.io.nodata import valid_mask
from s2sr.io.scene import open_scene

#: Largest scene the scene and consistency forms read whole (output pixels per band).
MAX_SCENE_PIXELS = 10_000 * 10_000


def read_checked(path: str | os.PathLike[str], bands: Sequence[str] | None,
                 role: str, dn_offset: float | None = None,
                 max_pixels: int = MAX_SCENE_PIXELS) -> tuple[np.ndarray, GeoMeta]:
    """A whole scene as reflectance, refusing what would give wrong or NaN scores.

    Refused (one-line :class:`DataError`): a scene too large to hold in memory, NaN or inf
    pixels that are not the file's nodata, a scene with no valid pixel, and nodata pixels
    (every pixel is scored, so missing data would count as data).
    """
    with open_scene(path, bands=bands, dn_offset=dn_offset) as scene:
        meta = scene.meta
        if meta.width * meta.height > max_pixels:
            raise DataError(f"{role} {path} is {meta.width}x{meta.height} px, more than the "
                            f"{max_pixels:,} px evaluate reads whole: crop it (e.g. "
                            "gdal_translate -srcwin) to the area to score")
        dn = scene.read(Window(0, 0, meta.width, meta.height))
        refl = scene.reflectance(dn)
    valid = valid_mask(dn, meta.nodata)
    if not valid.any():
        raise DataError(f"{role} {path} holds no valid pixel (every pixel is nodata "
                        f"{meta.nodata}): choose a scene with data")
    bad = ~np.isfinite(refl).all(axis=0) & valid
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{role} {path} has {int(bad.sum())} NaN/inf pixel(s), the first at "
                        f"row {r}, column {c}: fill them, or set the file's nodata value and "
                        "crop the nodata away")
    if not valid.all():
        frac = 100.0 * float((~valid).mean())
        raise DataError(f"{role} {path} has {int((~valid).sum())} nodata pixel(s) "
                        f"({frac:.1f} %): evaluate scores every pixel, so crop both rasters "
                        "to the area with data (e.g. gdal_translate -srcwin)")
    return refl, meta


def check_grids(lr: GeoMeta, hr: GeoMeta, scale: int, lr_path: str | os.PathLike[str],
                hr_path: str | os.PathLike[str], fix: str) -> None:
    """Refuse a pair that is not the same area on grids ``scale`` times apart."""
    if hr.width * hr.height > MAX_SCENE_PIXELS:
        raise DataError(f"{hr_path} is {hr.width}x{hr.height} px, more than the "
                        f"{MAX_SCENE_PIXELS:,} px evaluate reads whole: crop both rasters "
                        "(e.g. gdal_translate -srcwin) to the area to score")
    if (hr.width, hr.height) != (lr.width * scale, lr.height * scale):
        raise UsageError(
            f"{hr_path} is {hr.width}x{hr.height} px but {lr_path} x{scale} is "
            f"{lr.width * scale}x{lr.height * scale}: the size ratio must equal the "
            f"scale ({scale}); {fix}")
    if (lr.crs is None) != (hr.crs is None) or (lr.crs is not None and lr.crs != hr.crs):
        raise UsageError(f"{lr_path} ({lr.crs or 'no CRS'}) and {hr_path} "
                         f"({hr.crs or 'no CRS'}) are in different coordinate systems: "
                         "reproject one onto the other's grid")
    if lr.crs is None:
        return  # pixel grids without georeferencing: the size ratio is all we can check
    tol = 0.5 * min(hr.res)
    if any(abs(a - b) > tol for a, b in zip(lr.bounds, hr.bounds, strict=True)):
        lb = ", ".join(f"{v:.1f}" for v in lr.bounds)
        hb = ", ".join(f"{v:.1f}" for v in hr.bounds)
        raise UsageError(f"{lr_path} covers ({lb}) but {hr_path} covers ({hb}): the two must "
                         "cover the same area; crop both to their overlap")
