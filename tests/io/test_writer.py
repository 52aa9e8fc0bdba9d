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
from s2sr.io.writer import RasterWriter, gdal_cache_bytes, row_block_size
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


MB = 1 << 20


class TestRowBlockSize:
    """Outputs written a few rows at a time (the streamed engine) get blocks whose row
    fits GDAL's cache three times over: a smaller cache made GDAL write part blocks and
    rewrite them at the end of the file."""

    def test_wide_outputs_get_smaller_blocks(self) -> None:
        assert row_block_size(43920, 4, "uint16", 256 * MB) == 128  # a tile at x4
        assert row_block_size(21960, 4, "uint16", 256 * MB) == 256  # a tile at x2
        assert row_block_size(8192, 4, "uint16", 256 * MB) == 512
        assert row_block_size(43920, 4, "float32", 256 * MB) == 64
        assert row_block_size(43920, 4, "uint16", 1 * MB) == 64  # never below 64

    def test_default_is_the_cache_gdal_has(self) -> None:
        with rasterio.Env(GDAL_CACHEMAX=48 * MB):
            assert gdal_cache_bytes() == 48 * MB
            assert row_block_size(8192, 4, "uint16") == 256
        assert gdal_cache_bytes() != 48 * MB  # restored

    def test_rows_written_a_few_at_a_time_do_not_grow_the_file(self, tmp_path: Path) -> None:
        data = field((256, 2048), 4, seed=7)
        whole = _write(tmp_path / "whole.tif", data, cog=False)

        def by_rows(name: str, blocksize: int) -> Path:
            with RasterWriter(tmp_path / name, _meta(data), blocksize=blocksize) as out:
                for row in range(0, 256, 8):
                    out.write(Window(0, row, 2048, 8), data[:, row:row + 8])
                return out.commit()

        cache = 2 * MB  # smaller than a 256-row block row of this output (4 MB)
        with rasterio.Env(GDAL_CACHEMAX=cache):
            size = row_block_size(2048, 4, "uint16")
            fitted, too_large = by_rows("fitted.tif", size), by_rows("large.tif", 256)
        assert size == 64
        for path in (fitted, too_large):
            with rasterio.open(path) as ds:
                np.testing.assert_array_equal(ds.read(), data)
        # the writer holds rows until their row of blocks is complete: GDAL never writes
        # part blocks (read back and rewritten, the file growing), whatever its cache
        assert fitted.stat().st_size < 1.1 * whole.stat().st_size
        assert too_large.stat().st_size < 1.1 * whole.stat().st_size


def test_rows_in_pieces_and_out_of_order_are_written_whole(tmp_path: Path) -> None:
    """Full-width rows are held per row of blocks (pieces across block rows, in any order,
    the last short row of blocks included): the file holds exactly what was written."""
    data = field((100, 96), 4, seed=3)
    with RasterWriter(tmp_path / "o.tif", _meta(data), blocksize=32) as out:
        for r0, r1 in ((40, 70), (0, 5), (5, 40), (90, 100), (70, 90)):
            out.write(Window(0, r0, 96, r1 - r0), data[:, r0:r1])
        path = out.commit()
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(), data)
