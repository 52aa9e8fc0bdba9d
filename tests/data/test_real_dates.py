"""Time-gap and change checks on real pairs of dates of one place (needs ../shared).

The later date, upsampled x2, plays the reference of the earlier one: the same place seen
twice by the same sensor, with real changes, haze and misregistration between dates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2sr.core.errors import DataError
from s2sr.data import BuildOptions, build_pair
from s2sr.inference.baselines import upsample
from support.shared import SENTINEL2, requires_shared

pytestmark = requires_shared


def _as_reference(src: Path, dst: Path) -> Path:
    with rasterio.open(src) as ds:
        names = list(ds.descriptions)
        refl = ds.read([names.index(b) + 1 for b in ("B02", "B03", "B04", "B08")]
                       ).astype(np.float32) / 10000
        crs, transform = ds.crs, ds.transform
    up = np.clip(upsample(refl, 2) * 10000, 1, 65535).astype(np.uint16)
    with rasterio.open(dst, "w", driver="GTiff", width=up.shape[2], height=up.shape[1],
                       count=4, dtype="uint16", crs=crs,
                       transform=transform @ Affine.scale(0.5)) as out:
        out.write(up)
        out.descriptions = ("blue", "green", "red", "nir")
    return dst


def test_boadella_two_dates_time_gap_and_change(tmp_path: Path) -> None:
    lr = SENTINEL2 / "boadella_20200113_L2A.tif"
    ref = _as_reference(SENTINEL2 / "boadella_20200128_L2A.tif",
                        tmp_path / "boadella_20200128_ref.tif")
    with pytest.raises(DataError, match="15 days apart"):
        build_pair(lr, ref, tmp_path / "a", BuildOptions(patch=32, max_days=10))
    assert not (tmp_path / "a").exists()
    # dates read from the file names; the scene changed between dates (the visible bands
    # of the two dates barely agree), so the change check rejects most patches
    info = build_pair(lr, ref, tmp_path / "b", BuildOptions(patch=32, max_cloud=1.0))
    assert info["time_gap_days"] == 15
    rejected = info["by_status"].get("auto-rejected", 0)
    assert rejected >= 0.8 * info["patches"]
    assert info["by_reason"].get("changed", 0) >= 0.8 * rejected


def test_slovenia_close_clear_dates_are_accepted(tmp_path: Path) -> None:
    ref = _as_reference(SENTINEL2 / "eolearn_slovenia_3_L1C.tif", tmp_path / "slo3.tif")
    info = build_pair(SENTINEL2 / "eolearn_slovenia_2_L1C.tif", ref, tmp_path / "ds",
                      BuildOptions(patch=16, lr_date="2017-05-01", hr_date="2017-05-11"))
    assert info["by_status"].get("auto-accepted", 0) >= 0.9 * info["patches"]
    assert max(abs(v) for v in info["shift_px"]) < 1.0


@pytest.mark.parametrize("hazy", [0, 1])
def test_slovenia_cloudy_or_hazy_date_is_refused(tmp_path: Path, hazy: int) -> None:
    ref = _as_reference(SENTINEL2 / "eolearn_slovenia_2_L1C.tif", tmp_path / "slo2.tif")
    with pytest.raises(DataError, match="cannot estimate the shift"):
        build_pair(SENTINEL2 / f"eolearn_slovenia_{hazy}_L1C.tif", ref, tmp_path / "ds",
                   BuildOptions(patch=16, lr_date="2017-05-01", hr_date="2017-05-11"))
    assert not (tmp_path / "ds").exists()
