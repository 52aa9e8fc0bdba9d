"""Scene readers: band names, per-band folders, grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from s2sr.core.bands import normalize_band_name
from s2sr.core.errors import BandError, DataError, InputNotFoundError, UsageError
from s2sr.io.scene import open_scene
from support.rasters import field, write_geotiff


@pytest.mark.parametrize(("label", "band"), [
    ("B02", "B02"), ("B2", "B02"), ("b04", "B04"), ("B8A", "B8A"), ("blue", "B02"),
    ("NIR", "B08"), ("B04 (red)", "B04"), ("B02_10m", "B02"), ("Band 3", None),
    ("labels", None), ("B13", None), ("", None), ("B9A", None),
])
def test_band_name_normalisation(label: str, band: str | None) -> None:
    assert normalize_band_name(label) == band


def test_per_band_folder(tmp_path: Path) -> None:
    arr = field((30, 20), 4)
    for k, b in enumerate(("B02", "B03", "B04", "B08")):
        write_geotiff(tmp_path / f"X_{b}.tif", arr[k:k + 1], descriptions=None)
    write_geotiff(tmp_path / "X_B05.tif", arr[:1, ::2, ::2], descriptions=None)
    with open_scene(tmp_path, bands=("B08", "B02")) as scene:
        got = scene.read(Window(2, 3, 5, 4))
    np.testing.assert_array_equal(got, arr[[3, 0], 3:7, 2:7])
    with pytest.raises(BandError, match="not on the grid"):
        open_scene(tmp_path, bands=("B02", "B05"))
    with pytest.raises(BandError, match="lacks band"):
        open_scene(tmp_path, bands=("B02", "B11"))


def test_two_files_of_one_band_are_refused_not_one_read_in_silence(tmp_path: Path) -> None:
    arr = field((30, 20), 4)
    for k, b in enumerate(("B02", "B03", "B04", "B08")):
        write_geotiff(tmp_path / f"X_{b}.tif", arr[k:k + 1], descriptions=None)
    with open_scene(tmp_path, bands=("B02", "B03")) as scene:  # one file per band: read
        np.testing.assert_array_equal(scene.read(Window(0, 0, 20, 30)), arr[:2])
    # a copy of B03 named as B02 sorts first: it was read as B02
    write_geotiff(tmp_path / "A_B02.tif", arr[1:2], descriptions=None)
    with pytest.raises(BandError, match=r"two files hold band B02: .*A_B02\.tif and "
                                        r".*X_B02\.tif: keep one"):
        open_scene(tmp_path, bands=("B02", "B03"))


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        open_scene(tmp_path / "nope.tif")
    u8 = write_geotiff(tmp_path / "u8.tif", np.ones((4, 5, 5), np.uint8))
    with pytest.raises(DataError, match="unsupported dtype uint8"):
        open_scene(u8, bands=("B02",))
    plain = write_geotiff(tmp_path / "p.tif", field((5, 5), 3), descriptions=None)
    with pytest.raises(BandError, match="--bands"):
        open_scene(plain, bands=("B02", "B03", "B04", "B08"))
    with pytest.raises(UsageError, match="name every band"):
        open_scene(plain, bands=("B02",), band_names=["B02"])
    with pytest.raises(UsageError, match="not Sentinel-2 bands"):
        open_scene(plain, bands=("B02",), band_names=["B02", "x", "B04"])
    with pytest.raises(BandError, match="no per-band files"):
        open_scene(_empty(tmp_path), bands=("B02",))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d
