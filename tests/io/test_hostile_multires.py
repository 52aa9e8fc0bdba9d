"""Hostile and bad multi-resolution inputs (issue 22): 20 m grids that do not nest in the
10 m grid (half-pixel shifts, resampled bands, other CRS, no geotransform, no overlap),
missing 20 m bands, mixed encodings, links out of a product, and the one-raster mistake.
Each is refused in one line naming the problem and the fix; nothing is resampled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from s2sr.core.bands import BANDS_20M
from s2sr.core.errors import (
    BandError,
    DataError,
    GridMismatchError,
    InputNotFoundError,
    UnsafeArchiveError,
    UsageError,
)
from s2sr.io.multires import open_multires
from support.multires import (
    UTM_20M,
    make_safe_multires,
    scene_arrays,
    write_band_folder,
    write_pair,
)
from support.rasters import UTM_TRANSFORM, write_geotiff

SECRET = b"S2SR-TOP-SECRET-" * 64


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text and ": " in text, text
    return text


# ---------------------------------------------------------------- reliability: grids

@pytest.mark.parametrize("shift", [(5.0, 0.0), (0.0, -5.0), (15.0, -5.0), (3.0, 0.0)])
def test_off_grid_20m_refused_never_resampled(tmp_path: Path,
                                              shift: tuple[float, float]) -> None:
    """Half a 10 m pixel (5 m, as some OSCD cities) or any fraction: refused, naming the
    shift and the fix (gdalwarp onto an aligned 20 m grid)."""
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr, lr_transform=Affine.translation(*shift) * UTM_20M)
    with pytest.raises(GridMismatchError) as err:
        open_multires(a, b)
    text = _one_line(err)
    assert "not by whole pixels" in text and "gdalwarp -tr 20 20" in text


def test_20m_bands_resampled_to_10m_refused(tmp_path: Path) -> None:
    """A '20 m' raster on the 10 m grid (resampled, e.g. a 10-band stack's bands): the
    pixel is not twice the 10 m one."""
    hr, _ = scene_arrays(8)
    lr = scene_arrays(16)[1]
    a, b = write_pair(tmp_path, hr, lr, lr_transform=UTM_TRANSFORM)
    with pytest.raises(GridMismatchError) as err:
        open_multires(a, b)
    assert "not twice the 10 m pixel" in _one_line(err)


def test_60m_raster_given_as_20m_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr[:, :6, :6], lr_transform=UTM_TRANSFORM @ Affine.scale(6))
    with pytest.raises(GridMismatchError, match="not twice"):
        open_multires(a, b)


def test_other_crs_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr, lr_crs="EPSG:32632")
    with pytest.raises(GridMismatchError) as err:
        open_multires(a, b)
    assert "different CRS" in _one_line(err)


def test_no_geotransform_refused(tmp_path: Path) -> None:
    """Two plain arrays without georeferencing: where the 20 m pixels lie is unknown."""
    hr, lr = scene_arrays(8)
    a = write_geotiff(tmp_path / "a.tif", hr, crs=None, transform=Affine.identity())
    b = write_geotiff(tmp_path / "b.tif", lr, crs=None, transform=Affine.identity(),
                      descriptions=BANDS_20M)
    with pytest.raises(GridMismatchError) as err:
        open_multires(a, b)
    assert "no geotransform" in _one_line(err)


def test_rotated_grid_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    rotated = UTM_20M * Affine.rotation(10)
    a, b = write_pair(tmp_path, hr, lr, lr_transform=rotated)
    with pytest.raises(GridMismatchError, match="north-up"):
        open_multires(a, b)


def test_no_overlap_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    far = Affine.translation(100_000.0, 0.0) * UTM_20M
    a, b = write_pair(tmp_path, hr, lr, lr_transform=far)
    with pytest.raises(GridMismatchError, match="do not overlap"):
        open_multires(a, b)


# ---------------------------------------------------------------- reliability: bands, encodings

def test_missing_20m_band_named(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    folder = write_band_folder(tmp_path / "patch", hr, lr[:5],
                               lr_bands=("B05", "B06", "B07", "B8A", "B11"))
    with pytest.raises(BandError) as err:
        open_multires(folder)
    assert "B12" in _one_line(err)


def test_20m_raster_lacking_a_band_described(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr, lr_bands=("B05", "B06", "B07", "B8A", "B11", "B09"))
    with pytest.raises(BandError, match="B12"):
        open_multires(a, b)


def test_mixed_dtypes_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, (lr / 10000.0).astype(np.float32))
    with pytest.raises(DataError, match="one dtype"):
        open_multires(a, b)


def test_different_nodata_refused(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr, nodata=0, lr_nodata=65535)
    with pytest.raises(DataError, match="one nodata"):
        open_multires(a, b)


# ---------------------------------------------------------------- new user

def test_one_raster_without_input_20m_names_the_option(tmp_path: Path) -> None:
    hr, _ = scene_arrays(8)
    a = write_geotiff(tmp_path / "only10.tif", hr)
    with pytest.raises(UsageError) as err:
        open_multires(a)
    assert "--input-20m FILE" in _one_line(err)


def test_missing_input_20m_named(tmp_path: Path) -> None:
    hr, _ = scene_arrays(8)
    a = write_geotiff(tmp_path / "only10.tif", hr)
    with pytest.raises(InputNotFoundError, match="--input-20m"):
        open_multires(a, tmp_path / "nope.tif")


# ---------------------------------------------------------------- security

def test_20m_link_out_of_a_safe_folder_refused(tmp_path: Path) -> None:
    """An R20m band file that is a symbolic link to a file outside the product is not
    read (it could expose any file GDAL can open)."""
    hr, lr = scene_arrays(8)
    product = make_safe_multires(tmp_path / "p", hr, lr, level="L2A")
    secret = tmp_path / "secret.jp2"
    secret.write_bytes(SECRET)
    target = next(product.rglob("*_B11_20m.jp2"))
    target.unlink()
    os.symlink(secret, target)
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        open_multires(product)


def test_dn_offset_out_of_range_refused_before_reading(tmp_path: Path) -> None:
    hr, lr = scene_arrays(8)
    a, b = write_pair(tmp_path, hr, lr)
    with pytest.raises(UsageError, match="out of range"):
        open_multires(a, b, dn_offset=float("nan"))
