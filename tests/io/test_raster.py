"""s2sr.io.raster: the small raster API the rest of s2sr uses instead of opening files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from s2sr.core.dn import DN_SCALE, from_scaled, to_int16_dn, to_uint16_dn
from s2sr.core.errors import BandError
from s2sr.io.raster import Resampling, open_reference, read_bands, warped
from s2sr.io.raster import write_geotiff as io_write_geotiff
from support.rasters import UTM_TRANSFORM, field, write_geotiff


def test_write_geotiff_round_trip_and_atomic(tmp_path: Path) -> None:
    data = field((40, 50), 3)
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")  # replaced, never half-written
    io_write_geotiff(out, data, transform=UTM_TRANSFORM, crs="EPSG:32633",
                     descriptions=("blue", "green", "red"), nodata=0)
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), data)
        assert ds.crs == CRS.from_epsg(32633) and ds.transform == UTM_TRANSFORM
        assert ds.descriptions == ("blue", "green", "red") and ds.nodata == 0
        assert ds.dtypes[0] == "uint16" and ds.compression.name == "deflate"
    assert [p.name for p in tmp_path.iterdir()] == ["o.tif"]
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):  # 2-D refused; nothing left
        io_write_geotiff(tmp_path / "bad.tif", data[0], transform=UTM_TRANSFORM, crs=None)
    assert [p.name for p in tmp_path.iterdir()] == ["o.tif"]


def test_read_bands_by_name_in_any_order(tmp_path: Path) -> None:
    data = field((20, 30), 4)
    path = write_geotiff(tmp_path / "s.tif", data, descriptions=("B02", "B03", "B04", "nir"))
    np.testing.assert_array_equal(read_bands(path, ("B08", "B02")), data[[3, 0]])
    with pytest.raises(BandError, match=r"lacks band.*B11"):
        read_bands(path, ("B02", "B11"))


def test_warped_reads_reference_on_a_finer_grid(tmp_path: Path) -> None:
    data = field((20, 20), 1)
    path = write_geotiff(tmp_path / "r.tif", data, descriptions=None)
    ds = open_reference(path)
    try:
        fine = UTM_TRANSFORM * Affine.scale(0.5)
        with warped(ds, crs=ds.crs, transform=fine, width=40, height=40,
                    resampling=Resampling.nearest) as vrt:
            up = vrt.read(1, window=Window(0, 0, 40, 40))
    finally:
        ds.close()
    np.testing.assert_array_equal(up, np.repeat(np.repeat(data[0], 2, 0), 2, 1))


def test_dn_conversions() -> None:
    refl = np.array([[[0.1234, -0.05, np.nan, 7.0]]], np.float32)
    np.testing.assert_array_equal(to_int16_dn(refl), [[[1234, -500, 0, 32767]]])
    np.testing.assert_array_equal(to_uint16_dn(refl[..., :2], min_dn=1), [[[1234, 1]]])
    np.testing.assert_allclose(from_scaled(np.array([1234], np.uint16)), 1234 / DN_SCALE)
