"""Writing georeferenced GeoTIFF/COG atomically, window by window.

The raster is written under a hidden temporary name next to the output and renamed only
when complete, so no half-written file ever carries the final name. ``--cog`` output is
made by GDAL's COG driver from the finished temporary GeoTIFF (the COG driver can only
copy a complete dataset).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from s2sr.errors import OutputExistsError, UsageError
from s2sr.io.scene import GeoMeta

log = logging.getLogger(__name__)


def output_meta(meta: GeoMeta, scale: int) -> GeoMeta:
    """The grid of a x``scale`` output: same CRS and bounds, pixel size divided by ``scale``."""
    return replace(
        meta,
        transform=meta.transform @ Affine.scale(1 / scale),
        width=meta.width * scale,
        height=meta.height * scale,
    )


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse an existing output without ``overwrite`` and a missing parent folder."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} exists: pass --overwrite to replace it")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder: give a file name such as out.tif")
    if not path.parent.exists():
        raise UsageError(f"output folder {path.parent} does not exist: create it first")


def block_size_for(stride: int) -> int:
    """Largest of 512, 256, ..., 16 dividing ``stride`` (so tile writes fill whole blocks)."""
    for size in (512, 256, 128, 64, 32, 16):
        if stride % size == 0:
            return size
    return 256


class RasterWriter:
    """An output raster opened for window writes; commit with :meth:`commit`.

    Args:
        path: final output path.
        meta: output grid, dtype, nodata and bands (see :func:`output_meta`).
        overwrite: replace an existing output.
        cog: make a Cloud Optimised GeoTIFF.
        tags: dataset tags to record.
        blocksize: internal tile size of the GeoTIFF.
        write_scales: record ``meta.gains``/``meta.offsets`` as GDAL band scale/offset.
    """

    def __init__(
        self, path: str | os.PathLike[str], meta: GeoMeta, *, overwrite: bool = False,
        cog: bool = False, tags: dict[str, str] | None = None, blocksize: int = 512,
        write_scales: bool = False,
    ) -> None:
        self.path = Path(path)
        check_output_path(self.path, overwrite)
        self.meta = meta
        self.cog = cog
        self.tmp = self.path.with_name(f".{self.path.name}.s2sr-{os.getpid()}.tmp.tif")
        is_float = np.issubdtype(np.dtype(meta.dtype), np.floating)
        self._compress = {"compress": "deflate", "predictor": 3 if is_float else 2}
        profile: dict[str, Any] = {
            "driver": "GTiff", "width": meta.width, "height": meta.height,
            "count": len(meta.bands), "dtype": meta.dtype, "crs": meta.crs,
            "transform": meta.transform, "nodata": meta.nodata, "tiled": True,
            "blockxsize": blocksize, "blockysize": blocksize, "BIGTIFF": "IF_SAFER",
            "interleave": "pixel", **self._compress,
        }
        if cog:  # the COG driver recompresses; keep the intermediate cheap to write
            profile.update(compress="none", predictor=1)
        if meta.crs is None:
            profile.pop("crs")
        self._dataset: Any = rasterio.open(self.tmp, "w", **profile)
        self._dataset.descriptions = tuple(meta.bands)
        if tags:
            self._dataset.update_tags(**tags)
        if write_scales:
            self._dataset.scales = meta.gains
            self._dataset.offsets = meta.offsets

    def write(self, window: Window, data: np.ndarray) -> None:
        """Write ``(C, h, w)`` data of the output dtype into ``window``."""
        self._dataset.write(data, window=window)

    def commit(self) -> Path:
        """Close, convert to COG if asked, and rename to the final path."""
        self._dataset.close()
        src = self.tmp
        if self.cog:
            cog_tmp = self.tmp.with_suffix(".cog.tif")
            try:
                rasterio.shutil.copy(
                    str(self.tmp), str(cog_tmp), driver="COG", BLOCKSIZE=512,
                    BIGTIFF="IF_SAFER", OVERVIEWS="AUTO", RESAMPLING="AVERAGE",
                    COMPRESS="DEFLATE", PREDICTOR="YES",
                )
            except RasterioError:
                cog_tmp.unlink(missing_ok=True)
                raise
            self.tmp.unlink(missing_ok=True)
            src = cog_tmp
        os.replace(src, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete everything written so far."""
        try:
            self._dataset.close()
        finally:
            self.tmp.unlink(missing_ok=True)
            self.tmp.with_suffix(".cog.tif").unlink(missing_ok=True)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
