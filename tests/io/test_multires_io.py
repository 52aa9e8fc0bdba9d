"""Reading the 10 m and the 20 m bands of one scene (issue 22): :mod:`s2sr.io.multires` on
every input form that holds both, and the grid nesting they must satisfy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.io.multires import open_multires
from support.multires import (
    UTM_20M,
    make_safe_multires,
    scene_arrays,
    write_band_folder,
    write_pair,
)
from support.rasters import UTM_TRANSFORM
from support.shared import SENTINEL2, needs_shared


def _read_both(path: Path, input_20m: Path | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                     object]:
    with open_multires(path, input_20m) as scene:
        hr = scene.read_hr(Window(0, 0, 2 * scene.width, 2 * scene.height))
        lr = scene.read_lr(Window(0, 0, scene.width, scene.height))
        return hr, lr, scene.nesting


class TestForms:
    def test_geotiff_pair(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path, hr, lr)
        got_hr, got_lr, nesting = _read_both(a, b)
        np.testing.assert_array_equal(got_hr, hr)
        np.testing.assert_array_equal(got_lr, lr)
        assert nesting.height == nesting.width == 16

    def test_band_folder_with_both_resolutions(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        folder = write_band_folder(tmp_path / "patch", hr, lr)
        got_hr, got_lr, _ = _read_both(folder)
        np.testing.assert_array_equal(got_hr, hr)
        np.testing.assert_array_equal(got_lr, lr)

    @pytest.mark.parametrize(("level", "as_zip"), [("L2A", False), ("L2A", True),
                                                    ("L1C", False), ("L1C", True)])
    def test_safe_products(self, tmp_path: Path, level: str, as_zip: bool) -> None:
        hr, lr = scene_arrays(16)
        product = make_safe_multires(tmp_path, hr, lr, level=level, as_zip=as_zip)
        with open_multires(product) as scene:
            np.testing.assert_array_equal(scene.read_lr(Window(0, 0, 16, 16)), lr)
            np.testing.assert_array_equal(scene.read_hr(Window(0, 0, 32, 32)), hr)
            # baseline 04.00: DN offset -1000 on both resolutions, from the metadata
            assert scene.lr.meta.bands == BANDS_20M and scene.hr.meta.bands == DEFAULT_BANDS
            assert scene.lr.meta.offsets == pytest.approx((-0.1,) * 6)
            assert scene.hr.meta.offsets == pytest.approx((-0.1,) * 4)
            assert scene.lr.meta.nodata == 0

    def test_l2a_r20m_copies_of_10m_bands_are_not_taken_as_10m(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        product = make_safe_multires(tmp_path, hr, lr, level="L2A")  # R20m holds a B02_20m
        with open_multires(product) as scene:
            assert (scene.hr.meta.width, scene.lr.meta.width) == (32, 16)
            np.testing.assert_array_equal(scene.read_hr(Window(0, 0, 32, 32)), hr)

    def test_stac_item_with_20m_assets(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        folder = write_band_folder(tmp_path / "files", hr, lr)
        assets = {b: {"href": str(next(folder.glob(f"*_{b}.tif"))), "eo:bands": [{"name": b}]}
                  for b in (*DEFAULT_BANDS, *BANDS_20M)}
        item = {"type": "Feature", "stac_version": "1.0.0", "id": "t", "geometry": None,
                "properties": {"datetime": "2017-06-13T10:10:31Z"}, "assets": assets,
                "links": []}
        path = tmp_path / "item.json"
        path.write_text(json.dumps(item))
        got_hr, got_lr, _ = _read_both(path)
        np.testing.assert_array_equal(got_lr, lr)
        np.testing.assert_array_equal(got_hr, hr)


class TestNesting:
    def test_odd_10m_offset_cuts_the_extent_to_whole_20m_pixels(self, tmp_path: Path) -> None:
        """A 20 m grid starting one 10 m pixel right of and below the 10 m grid nests; the
        scene is where both lie, starting at the 20 m grid's first pixel."""
        hr, lr = scene_arrays(16)
        shifted = Affine.translation(10.0, -10.0) * UTM_20M
        a, b = write_pair(tmp_path, hr, lr, lr_transform=shifted)
        got_hr, got_lr, n = _read_both(a, b)
        assert (n.hr_row, n.hr_col, n.lr_row, n.lr_col) == (1, 1, 0, 0)
        assert (n.height, n.width) == (15, 15)  # 31 10 m pixels left: 15 whole 20 m ones
        np.testing.assert_array_equal(got_hr, hr[:, 1:31, 1:31])
        np.testing.assert_array_equal(got_lr, lr[:, :15, :15])

    def test_20m_grid_larger_than_the_10m_one_is_cut(self, tmp_path: Path) -> None:
        hr, _ = scene_arrays(16)
        lr = scene_arrays(20)[1]
        start = Affine.translation(-40.0, 40.0) * UTM_20M  # two 20 m pixels up and left
        a, b = write_pair(tmp_path, hr, lr, lr_transform=start)
        got_hr, got_lr, n = _read_both(a, b)
        assert (n.lr_row, n.lr_col, n.height, n.width) == (2, 2, 16, 16)
        np.testing.assert_array_equal(got_lr, lr[:, 2:18, 2:18])
        np.testing.assert_array_equal(got_hr, hr)

    def test_hr_meta_is_the_common_extent(self, tmp_path: Path) -> None:
        hr, lr = scene_arrays(16)
        a, b = write_pair(tmp_path, hr, lr,
                          lr_transform=Affine.translation(20.0, 0.0) * UTM_20M)
        with open_multires(a, b) as scene:
            meta = scene.hr_meta()
            assert meta.transform == UTM_TRANSFORM * Affine.translation(2, 0)
            assert (meta.width, meta.height) == (30, 32)


@needs_shared(SENTINEL2 / "dsen2_T33UUB_20170527_L1C_20m.tif", "the DSen2 T33UUB 20 m crop")
def test_real_dsen2_pair_nests() -> None:
    with open_multires(SENTINEL2 / "dsen2_T33UUB_20170527_L1C.tif",
                       SENTINEL2 / "dsen2_T33UUB_20170527_L1C_20m.tif") as scene:
        assert (scene.height, scene.width) == (300, 300)
        assert scene.hr.meta.bands == DEFAULT_BANDS and scene.lr.meta.bands == BANDS_20M
