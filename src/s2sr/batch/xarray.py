"""An xarray entry point: super-resolve a ``(band, y, x)`` DataArray, keeping its
coordinates and CRS (rioxarray, optional extra ``s2sr[xarray]``)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np
from affine import Affine
from torch import nn

from s2sr.core.bands import normalize_band_name
from s2sr.core.errors import UsageError
from s2sr.inference.predict import super_resolve
from s2sr.models import get_spec, load_model

_INSTALL = "pip install 's2sr[xarray]'"


def _rio(array: Any) -> Any:
    if importlib.util.find_spec("rioxarray") is None:
        raise UsageError(f"super_resolve_xarray needs rioxarray (CRS and transform of a "
                         f"DataArray): {_INSTALL}")
    import rioxarray  # noqa: F401 - registers the .rio accessor

    return array.rio


def _band_order(array: Any, bands: tuple[str, ...], dim: str) -> list[int]:
    """Positions of the model's bands along ``dim`` (names from the band coordinate, else
    the array's own order)."""
    if dim not in array.coords:
        return list(range(len(bands)))
    labels = [str(v) for v in np.asarray(array.coords[dim].values).tolist()]
    names = [normalize_band_name(v) for v in labels]
    if not any(names):
        return list(range(len(bands)))
    missing = [b for b in bands if b not in names]
    if missing:
        raise UsageError(f"the DataArray's {dim} coordinate ({', '.join(labels[:12])}) lacks "
                         f"{', '.join(missing)}: the model needs {', '.join(bands)}")
    return [names.index(b) for b in bands]


def super_resolve_xarray(array: Any, model: nn.Module | str | os.PathLike[str], *,
                         band_dim: str = "band", **options: Any) -> Any:
    """Super-resolve a DataArray of Sentinel-2 DN or reflectance with ``model``.

    Args:
        array: ``(band, y, x)`` DataArray with a CRS and transform (rioxarray's ``rio``
            accessor, e.g. from ``rioxarray.open_rasterio``); bands named in the ``band``
            coordinate (``B02``, ``blue``, ...) are put in the model's order, otherwise
            they are taken as they come. Its nodata (``rio.nodata``) stays missing.
        model: a model (``load_model``) or the path of a weights file.
        band_dim: the name of the band dimension.
        options: :func:`s2sr.inference.super_resolve`'s (gain, offset, tile, overlap,
            batch_size, device, precision, backend, threads).

    Returns:
        A ``(band, y, x)`` DataArray ``scale`` times larger: the same CRS, bounds, band
        coordinate, attributes and nodata, ``x``/``y`` at the new pixel centres.
    """
    rio = _rio(array)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    spec = get_spec(model)
    if array.ndim != 3 or band_dim not in array.dims:
        raise UsageError(f"expected a ({band_dim}, y, x) DataArray, got dims {array.dims}")
    y_dim, x_dim = rio.y_dim, rio.x_dim
    array = array.transpose(band_dim, y_dim, x_dim)
    order = _band_order(array, spec.bands, band_dim)
    selected = array.isel({band_dim: order})
    nodata = rio.nodata
    data = np.asarray(selected.values)
    out = super_resolve(data, model, nodata=None if nodata is None else float(nodata),
                        **options)
    s = spec.scale
    transform: Affine = rio.transform() * Affine.scale(1 / s)
    height, width = out.shape[1:]
    # 1-D x/y coordinates: a north-up grid (rioxarray's own convention)
    xs = transform.c + transform.a * (np.arange(width) + 0.5)
    ys = transform.f + transform.e * (np.arange(height) + 0.5)
    import xarray as xr  # rioxarray depends on it

    result = xr.DataArray(
        out, dims=(band_dim, y_dim, x_dim),
        coords={band_dim: selected.coords[band_dim].values if band_dim in selected.coords
                else np.arange(1, len(spec.bands) + 1), y_dim: ys, x_dim: xs},
        attrs={**array.attrs, "s2sr_model": spec.name, "s2sr_scale": s}, name=array.name)
    result = result.rio.write_transform(transform)
    crs = rio.crs
    if crs is not None:
        result = result.rio.write_crs(crs)
    if nodata is not None:
        result = result.rio.write_nodata(nodata)
    return result
