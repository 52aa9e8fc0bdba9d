"""super_resolve_xarray keeps coordinates, CRS, band names and nodata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2sr import super_resolve, super_resolve_xarray
from s2sr.core.errors import UsageError
from s2sr.models import load_model
from support.rasters import field, write_geotiff

rioxarray = pytest.importorskip("rioxarray")


def test_keeps_coordinates_and_crs(tmp_path: Path, tiny_weights: Path) -> None:
    data = field((30, 26), 4)
    data[:, :3, :3] = 0
    path = write_geotiff(tmp_path / "in.tif", data, nodata=0)
    array = rioxarray.open_rasterio(path)
    # band names in the coordinate, shuffled: put back in the model's order
    array = array.assign_coords(band=["B02", "B03", "B04", "B08"]).isel(band=[3, 1, 0, 2])
    out = super_resolve_xarray(array, tiny_weights, tile=24, overlap=8)
    model = load_model(tiny_weights)
    expected = super_resolve(data, model, nodata=0, tile=24, overlap=8)
    np.testing.assert_array_equal(out.values, expected)
    assert out.dims == ("band", "y", "x") and out.shape == (4, 60, 52)
    assert list(out.coords["band"].values) == ["B02", "B03", "B04", "B08"]
    assert out.rio.crs == array.rio.crs
    assert out.rio.bounds() == pytest.approx(array.rio.bounds())
    assert out.rio.resolution() == pytest.approx((5.0, -5.0))
    assert out.rio.nodata == 0
    # pixel centres: first x half an output pixel inside the left edge
    left, _, _, top = array.rio.bounds()
    assert float(out.x[0]) == pytest.approx(left + 2.5)
    assert float(out.y[0]) == pytest.approx(top - 2.5)
    assert np.all(out.values[:, :6, :6] == 0)


def test_refuses_missing_bands(tmp_path: Path, tiny_weights: Path) -> None:
    path = write_geotiff(tmp_path / "in.tif", field((16, 16), 3),
                         descriptions=("B02", "B03", "B04"))
    array = rioxarray.open_rasterio(path).assign_coords(band=["B02", "B03", "B04"])
    with pytest.raises(UsageError, match="lacks B08"):
        super_resolve_xarray(array, tiny_weights)
