"""``s2sr.predict`` on GeoTIFFs: georeferencing, dtype, nodata, tags, COG, real crops."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from s2sr import predict
from s2sr.core.errors import OutputExistsError
from s2sr.inference.baselines import upsample
from s2sr.models import build_model, file_sha256, save_model
from support.rasters import field, write_geotiff
from support.shared import SENTINEL2, requires_shared


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), {
            "crs": ds.crs, "transform": ds.transform, "bounds": ds.bounds, "res": ds.res,
            "dtype": ds.dtypes[0], "nodata": ds.nodata, "descriptions": ds.descriptions,
            "tags": ds.tags(), "blocks": ds.block_shapes[0], "scales": ds.scales,
            "offsets": ds.offsets, "layout": ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
        }


@pytest.mark.parametrize("scale_fixture", ["tiny_weights", "tiny_weights_x4"])
def test_output_georeferencing(geotiff: Callable[..., Path], tmp_path: Path,
                               scale_fixture: str, request: pytest.FixtureRequest) -> None:
    weights = request.getfixturevalue(scale_fixture)
    src = geotiff(shape=(70, 50), nodata=0)
    out = predict(src, tmp_path / "out.tif", weights, tile=64)
    data, meta = _read(out)
    scale = 2 if scale_fixture == "tiny_weights" else 4
    with rasterio.open(src) as ds:
        assert meta["crs"] == ds.crs
        assert tuple(meta["bounds"]) == pytest.approx(tuple(ds.bounds))
        assert meta["res"] == pytest.approx((ds.res[0] / scale, ds.res[1] / scale))
        assert meta["transform"] == ds.transform @ Affine.scale(1 / scale)
    assert data.shape == (4, 70 * scale, 50 * scale)
    assert meta["dtype"] == "uint16" and meta["nodata"] == 0
    assert meta["descriptions"] == ("B02", "B03", "B04", "B08")
    assert meta["tags"]["S2SR_SCALE"] == str(scale)
    assert meta["tags"]["S2SR_MODEL"] == "edsr-tiny"
    assert meta["tags"]["S2SR_MODEL_SHA256"] == file_sha256(weights)
    assert meta["tags"]["S2SR_SOURCE"].endswith("in.tif")
    assert list(tmp_path.glob(".*")) == []  # no temporary left


def test_rotated_transform_keeps_rotation(geotiff: Callable[..., Path], tmp_path: Path,
                                          tiny_weights: Path) -> None:
    rotated = Affine(8.66, 5.0, 500000.0, 5.0, -8.66, 5000000.0)
    src = geotiff(shape=(40, 40), transform=rotated)
    _, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights, tile=64))
    assert meta["transform"] == rotated @ Affine.scale(0.5)


def _bicubic_weights(path: Path, scale: int = 2) -> Path:
    """An EDSR whose output is exactly the bicubic upsampling of its input: the global
    residual on, the learned branch's last convolution zeroed."""
    model = build_model("edsr-tiny", scale=scale, global_residual=True)
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
    return save_model(model, path)


@pytest.mark.parametrize("scale", [2, 4])
def test_values_follow_the_input(geotiff: Callable[..., Path], tmp_path: Path,
                                 scale: int) -> None:
    """DN -> reflectance -> model -> DN keeps the values: a model that computes bicubic
    gives the bicubic upsampling of the input DN, to rounding, tiled over several tiles."""
    src = geotiff(shape=(90, 70), seed=5)
    weights = _bicubic_weights(tmp_path / "bicubic.safetensors", scale)
    data, _ = _read(predict(src, tmp_path / "o.tif", weights, tile=64))
    with rasterio.open(src) as ds:
        lr = ds.read().astype(np.float32)
    expected = upsample(lr / 10000, scale) * 10000
    assert data.dtype == np.uint16 and data.shape == expected.shape
    # the outermost input pixel differs: tiles are padded by reflection, bicubic clamps
    m = 2 * scale
    inner = np.abs(data.astype(np.float64) - expected)[:, m:-m, m:-m]
    assert inner.max() <= 1.0
    for b in range(4):  # whole image, borders included: band means within 0.1 %
        assert data[b].mean() == pytest.approx(expected[b].mean(), rel=1e-3)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_dtypes_are_preserved(geotiff: Callable[..., Path], tmp_path: Path, tiny_weights: Path,
                              dtype: str) -> None:
    src = geotiff(shape=(30, 40), dtype=dtype)
    data, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights))
    assert meta["dtype"] == dtype and data.shape == (4, 60, 80)
    if dtype == "float32":
        assert 0 < float(np.median(data)) < 1


def test_nodata_region_stays_nodata(tmp_path: Path, tiny_weights: Path) -> None:
    arr = field((80, 80), 4)
    arr[:, :20, :] = 0
    src = write_geotiff(tmp_path / "in.tif", arr, nodata=0)
    data, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights, tile=64))
    assert meta["nodata"] == 0
    assert (data[:, :40, :] == 0).all()
    assert (data[:, 40:, :] > 0).all()


def test_geotiff_tiling_invariance_128_vs_one_tile(geotiff: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    """Streamed tiles equal one whole-scene tile, on a model whose receptive field (8
    blocks: 19.5 input px) is wider than the default halo (8 px) but within the 20 px halo of
    --overlap 80. (tests/inference/test_engine.py shows that a halo too small does show.)"""
    torch.manual_seed(3)
    weights = save_model(build_model("edsr-tiny", scale=2, n_resblocks=8),
                         tmp_path / "deep.safetensors")
    src = geotiff(shape=(150, 170), seed=7)
    a, _ = _read(predict(src, tmp_path / "a.tif", weights, tile=128, overlap=80))
    b, _ = _read(predict(src, tmp_path / "b.tif", weights, tile=256, overlap=80))
    assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 1
    assert np.abs(a.astype(np.int32) - b.astype(np.int32)).mean() < 0.05


def test_cog_output(geotiff: Callable[..., Path], tmp_path: Path, tiny_weights: Path) -> None:
    src = geotiff(shape=(300, 300))
    data, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights, cog=True))
    assert meta["layout"] == "COG"
    plain, _ = _read(predict(src, tmp_path / "p.tif", tiny_weights))
    np.testing.assert_array_equal(data, plain)
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.overviews(1)  # 600 px wide: at least one overview level
    assert list(tmp_path.glob(".*")) == []


def test_no_crs_warns_and_works(tmp_path: Path, tiny_weights: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((30, 30), 4), crs=None)
    with caplog.at_level(logging.WARNING, logger="s2sr"):
        out = predict(src, tmp_path / "o.tif", tiny_weights)
    assert "no CRS" in caplog.text
    _, meta = _read(out)
    assert meta["crs"] is None and meta["transform"].a == pytest.approx(5.0)


def test_bands_by_description_in_any_order(tmp_path: Path, tiny_weights: Path) -> None:
    """A 6-band file in another order: the model's four are picked by description."""
    arr = field((40, 40), 6, seed=3)
    names = ("B08", "B11", "B04", "B03", "B12", "B02")
    src = write_geotiff(tmp_path / "in.tif", arr, descriptions=names)
    ordered = arr[[5, 3, 2, 0]]
    ref = write_geotiff(tmp_path / "ref.tif", ordered)
    a, meta = _read(predict(src, tmp_path / "a.tif", tiny_weights))
    b, _ = _read(predict(ref, tmp_path / "b.tif", tiny_weights))
    np.testing.assert_array_equal(a, b)
    assert meta["descriptions"] == ("B02", "B03", "B04", "B08")


def test_bands_flag_names_bands_by_position(tmp_path: Path, tiny_weights: Path) -> None:
    arr = field((40, 40), 5, seed=4)
    src = write_geotiff(tmp_path / "in.tif", arr, descriptions=None)
    out = predict(src, tmp_path / "o.tif", tiny_weights, bands=["B8", "B2", "B3", "B4", "B11"])
    ref = write_geotiff(tmp_path / "ref.tif", arr[[1, 2, 3, 0]])
    a, _ = _read(out)
    b, _ = _read(predict(ref, tmp_path / "r.tif", tiny_weights))
    np.testing.assert_array_equal(a, b)


def test_existing_output_is_refused_then_overwritten(geotiff: Callable[..., Path],
                                                     tmp_path: Path, tiny_weights: Path) -> None:
    src = geotiff(shape=(20, 20))
    out = tmp_path / "o.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        predict(src, out, tiny_weights)
    assert out.read_bytes() == b"keep me"
    predict(src, out, tiny_weights, overwrite=True)
    assert _read(out)[0].shape == (4, 40, 40)


@requires_shared
def test_real_crop_without_crs(tmp_path: Path, tiny_weights: Path) -> None:
    src = SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif"
    data, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights))
    assert data.shape == (4, 1200, 1200) and meta["res"] == pytest.approx((5.0, 5.0))
    assert meta["descriptions"] == ("B02", "B03", "B04", "B08")


@requires_shared
def test_real_12_band_l2a_in_geographic_crs(tmp_path: Path, tiny_weights: Path) -> None:
    src = SENTINEL2 / "boadella_20200113_L2A.tif"
    data, meta = _read(predict(src, tmp_path / "o.tif", tiny_weights))
    with rasterio.open(src) as ds:
        assert meta["crs"] == ds.crs
        assert tuple(meta["bounds"]) == pytest.approx(tuple(ds.bounds))
        assert data.shape == (4, ds.height * 2, ds.width * 2)
    assert meta["dtype"] == "int16"


@requires_shared
def test_real_bigearthnet_per_band_folder(tmp_path: Path, tiny_weights_x4: Path) -> None:
    folder = next((SENTINEL2 / "bigearthnet").iterdir())
    data, meta = _read(predict(folder, tmp_path / "o.tif", tiny_weights_x4))
    with rasterio.open(next(folder.glob("*_B02.tif"))) as ds:
        assert meta["crs"] == ds.crs
        assert tuple(meta["bounds"]) == pytest.approx(tuple(ds.bounds))
    assert data.shape == (4, 480, 480) and meta["res"] == pytest.approx((2.5, 2.5))
