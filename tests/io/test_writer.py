"""RasterWriter: the intermediate GeoTIFF of ``--cog`` is compressed, the COG is lossless."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

import s2sr.io.writer as writer_module
from s2sr.io.base import GeoMeta
from s2sr.io.writer import RasterWriter
from support.rasters import UTM_TRANSFORM, field


def _meta(data: np.ndarray) -> GeoMeta:
    c, h, w = data.shape
    return GeoMeta(crs=CRS.from_epsg(32633), transform=UTM_TRANSFORM, width=w, height=h,
                   dtype=data.dtype.name, nodata=None, bands=("B02", "B03", "B04", "B08")[:c],
                   gains=(1e-4,) * c, offsets=(0.0,) * c, source="test")


def _write(path: Path, data: np.ndarray, *, cog: bool) -> Path:
    with RasterWriter(path, _meta(data), cog=cog, blocksize=256) as out:
        for row in range(0, data.shape[1], 256):  # window by window, as predict writes
            block = data[:, row:row + 256]
            out.write(Window(0, row, data.shape[2], block.shape[1]), block)
        return out.commit()


@pytest.mark.parametrize(("dtype", "predictor"), [("uint16", "2"), ("float32", "3")])
def test_cog_intermediate_is_compressed_and_cog_lossless(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: str, predictor: str) -> None:
    data = field((512, 768), 4, seed=3, dtype=dtype)
    seen: dict[str, object] = {}
    real_to_cog = writer_module.to_cog

    def inspecting_to_cog(src: Path, dest: Path) -> None:  # the real conversion, observed
        with rasterio.open(src) as ds:
            seen.update(ds.tags(ns="IMAGE_STRUCTURE"))
            np.testing.assert_array_equal(ds.read(), data)
        seen["bytes"] = src.stat().st_size
        real_to_cog(src, dest)

    monkeypatch.setattr(writer_module, "to_cog", inspecting_to_cog)
    out = _write(tmp_path / "o.tif", data, cog=True)
    assert seen["COMPRESSION"] == "ZSTD" and seen["PREDICTOR"] == predictor
    assert int(str(seen["bytes"])) < 0.9 * data.nbytes
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.compression.name == "deflate" and ds.block_shapes[0] == (512, 512)
        assert ds.dtypes[0] == dtype and ds.crs == CRS.from_epsg(32633)
        assert ds.transform.almost_equals(UTM_TRANSFORM)
        np.testing.assert_array_equal(ds.read(), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]  # no intermediate left


def test_cog_same_pixels_as_plain_geotiff(tmp_path: Path) -> None:
    data = field((300, 260), 4, seed=5)
    cog = _write(tmp_path / "cog.tif", data, cog=True)
    plain = _write(tmp_path / "plain.tif", data, cog=False)
    with rasterio.open(cog) as a, rasterio.open(plain) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.transform == b.transform == Affine(*UTM_TRANSFORM[:6])
        assert b.compression.name == "deflate"  # the plain output keeps its codec
        assert b.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
