"""Many small scenes for the many-scene runs (in this process and on a Dask cluster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from support.rasters import field, write_geotiff

#: predict options small scenes run fast with
OPTS = {"tile": 40, "overlap": 8, "backend": "torch"}


def scenes(folder: Path, n: int = 3, size: tuple[int, int] = (48, 56)) -> list[Path]:
    """``n`` GeoTIFF scenes ``folder/scene{k}.tif`` of different fields."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_geotiff(folder / f"scene{k}.tif", field(size, 4, seed=k)) for k in range(n)]


def pixels(path: Path) -> np.ndarray:
    """All the pixels of a raster."""
    with rasterio.open(path) as ds:
        return ds.read()
