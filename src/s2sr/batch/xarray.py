"""An xarray entry point: super-resolve a ``(band, y, x)`` DataArray, keeping its
coordinates and CRS (rioxarray, optional extra ``s2sr[xarray]``)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np
from affine import Affine
from torch import nn

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS, TEN_BANDS, normalize_band_name
from s2sr.core.errors import UsageError
from s2sr.inference.predict import super_resolve
from s2sr.io.base import GeoMeta
from s2sr.io.multires import nest_grids
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


def _meta(array: Any, rio: Any, what: str) -> GeoMeta:
    """A :class:`GeoMeta` of a DataArray's grid, for :func:`nest_grids`."""
    return GeoMeta(crs=rio.crs, transform=rio.transform(), width=int(rio.width),
                   height=int(rio.height), dtype=str(array.dtype), nodata=rio.nodata,
                   bands=(), gains=(), offsets=(), source=what)


def _ten_bands(array: Any, array_20m: Any, model: nn.Module, model_10m: nn.Module | None,
               band_dim: str, **options: Any) -> Any:
    """:func:`super_resolve_xarray` with ``array_20m``: the ten bands ``(band, y, x)`` at
    10 m, or 5 m with ``model_10m`` or a x4 guided ``model``, on the common extent of the
    10 m ``array`` and the 20 m ``array_20m``, whose grids must nest (:func:`nest_grids`)."""
    arrays = []
    for a, what in ((array, "array"), (array_20m, "array_20m")):
        if a.ndim != 3 or band_dim not in a.dims:
            raise UsageError(f"expected a ({band_dim}, y, x) DataArray as {what}, got dims "
                             f"{a.dims}")
        arrays.append(a.transpose(band_dim, _rio(a).y_dim, _rio(a).x_dim))
    hr_rio, lr_rio = arrays[0].rio, arrays[1].rio
    n = nest_grids(_meta(arrays[0], hr_rio, "the 10 m DataArray"),
                   _meta(arrays[1], lr_rio, "the 20 m DataArray"))
    hr = np.asarray(arrays[0].values)[_band_order(arrays[0], DEFAULT_BANDS, band_dim),
                                      n.hr_row:n.hr_row + 2 * n.height,
                                      n.hr_col:n.hr_col + 2 * n.width]
    lr = np.asarray(arrays[1].values)[_band_order(arrays[1], BANDS_20M, band_dim),
                                      n.lr_row:n.lr_row + n.height, n.lr_col:n.lr_col + n.width]
    nodata = hr_rio.nodata if hr_rio.nodata is not None else lr_rio.nodata
    options.setdefault("nodata", None if nodata is None else float(nodata))
    out = super_resolve(np.ascontiguousarray(hr), model, array_20m=np.ascontiguousarray(lr),
                        model_10m=model_10m, **options)
    k = out.shape[-1] // (2 * n.width)  # output pixels per 10 m pixel (2 at 5 m)
    transform: Affine = hr_rio.transform() * Affine.translation(n.hr_col, n.hr_row) \
        * Affine.scale(1 / k)
    return _result(out, transform, arrays[0], band_dim, list(TEN_BANDS), nodata,
                   {"s2sr_model": get_spec(model).name, "s2sr_resolution": 10 // k})


def _result(out: np.ndarray, transform: Affine, array: Any, band_dim: str, bands: Any,
            nodata: Any, attrs: dict[str, Any]) -> Any:
    """``out`` as a DataArray on ``transform`` with ``array``'s dims, attributes and CRS."""
    rio = array.rio
    y_dim, x_dim = rio.y_dim, rio.x_dim
    height, width = out.shape[1:]
    # 1-D x/y coordinates: a north-up grid (rioxarray's own convention)
    xs = transform.c + transform.a * (np.arange(width) + 0.5)
    ys = transform.f + transform.e * (np.arange(height) + 0.5)
    import xarray as xr  # rioxarray depends on it

    result = xr.DataArray(out, dims=(band_dim, y_dim, x_dim),
                          coords={band_dim: bands, y_dim: ys, x_dim: xs},
                          attrs={**array.attrs, **attrs}, name=array.name)
    result = result.rio.write_transform(transform)
    if rio.crs is not None:
        result = result.rio.write_crs(rio.crs)
    if nodata is not None:
        result = result.rio.write_nodata(nodata)
    return result


def super_resolve_xarray(array: Any, model: nn.Module | str | os.PathLike[str], *,
                         band_dim: str = "band", array_20m: Any = None,
                         model_10m: nn.Module | str | os.PathLike[str] | None = None,
                         **options: Any) -> Any:
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
        array_20m: the six 20 m bands (B05 B06 B07 B8A B11 B12), a ``(band, y, x)``
            DataArray on a grid nesting in ``array``'s, with a guided ``model``: the result
            is the ten bands B02-B12 at 10 m (a x2 model) or 5 m (x4, the 10 m bands by
            ``model_10m``), on the extent both cover.

    Returns:
        A ``(band, y, x)`` DataArray ``scale`` times larger: the same CRS, bounds, band
        coordinate, attributes and nodata, ``x``/``y`` at the new pixel centres.
    """
    rio = _rio(array)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if isinstance(model_10m, (str, os.PathLike)):
        model_10m = load_model(model_10m)
    if array_20m is not None:
        return _ten_bands(array, array_20m, model, model_10m, band_dim, **options)
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
    bands = selected.coords[band_dim].values if band_dim in selected.coords \
        else np.arange(1, len(spec.bands) + 1)
    return _result(out, rio.transform() * Affine.scale(1 / s), array, band_dim, bands, nodata,
                   {"s2sr_model": spec.name, "s2sr_scale": s})
