"""SAFE products (folder and .zip): offsets, band discovery, archive safety."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from s2sr import predict
from s2sr.core.errors import UnsafeArchiveError
from s2sr.io.safe_metadata import parse_safe_metadata
from s2sr.io.scene import open_scene
from support.rasters import field, make_safe, write_geotiff


@pytest.mark.parametrize("as_zip", [False, True])
@pytest.mark.parametrize(("level", "baseline", "offset"),
                         [("L2A", "04.00", -1000), ("L1C", "05.09", -1000), ("L2A", "03.01", 0)])
def test_safe_reads_reflectance_with_offset(tmp_path: Path, as_zip: bool, level: str,
                                            baseline: str, offset: int) -> None:
    data = field((40, 36), 4, seed=1) + 1000
    product = make_safe(tmp_path, data, level=level, baseline=baseline, as_zip=as_zip)
    with open_scene(product, bands=("B02", "B03", "B04", "B08")) as scene:
        meta = scene.meta
        dn = scene.read(Window(0, 0, meta.width, meta.height))
    np.testing.assert_array_equal(dn, data)  # lossless JPEG2000 round trip
    assert meta.nodata == 0 and meta.crs is not None
    refl = dn[0].astype(float) * meta.gains[0] + meta.offsets[0]
    np.testing.assert_allclose(refl, (data[0].astype(float) + offset) / 10000.0, atol=1e-7)
    assert meta.tags["S2_PROCESSING_BASELINE"] == baseline


def test_safe_prediction_equals_offset_corrected_geotiff(tmp_path: Path,
                                                         tiny_weights: Path) -> None:
    """Predicting on a baseline-04.00 product equals predicting on DN - 1000, re-offset."""
    data = field((40, 40), 4, seed=2) + 1000
    product = make_safe(tmp_path, data, as_zip=True)
    out = predict(product, tmp_path / "safe.tif", tiny_weights)
    plain = write_geotiff(tmp_path / "plain.tif", (data - 1000).astype(np.uint16))
    ref = predict(plain, tmp_path / "plain_sr.tif", tiny_weights)
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        sr, base = a.read().astype(np.int32), b.read().astype(np.int32)
        assert a.scales == (1e-4,) * 4 and a.offsets == (-0.1,) * 4
        assert a.tags()["S2_PROCESSING_LEVEL"] == "L2A"
        assert a.crs == b.crs
    assert np.abs(sr - 1000 - base).max() <= 1


def test_safe_ignores_20m_files_and_finds_bands(tmp_path: Path) -> None:
    product = make_safe(tmp_path, field((20, 20), 4), level="L2A")
    with open_scene(product) as scene:
        assert scene.meta.bands == ("B02", "B03", "B04", "B08")
        assert scene.meta.width == 20


@pytest.mark.parametrize("style", ["climbing", "absolute"])
def test_zip_with_escaping_entry_is_refused_and_nothing_lands(tmp_path: Path,
                                                              style: str) -> None:
    """The entry is aimed at a known file: had the archive been extracted anywhere (beside
    itself, in the working directory, in a temporary folder), that file would exist."""
    target = tmp_path / "landing" / "owned.jp2"
    target.parent.mkdir()
    # 64 ``..`` climb to / from any folder less deep, then come down to the target
    entry = ("../" * 64 + target.as_posix().lstrip("/") if style == "climbing"
             else target.as_posix())
    evil = tmp_path / "archive" / "evil.zip"
    evil.parent.mkdir()
    for folder in (evil.parent, Path.cwd(), Path(tempfile.gettempdir()) / "x"):
        assert os.path.realpath(folder / entry) == os.path.realpath(target)
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("S2A.SAFE/MTD_MSIL2A.xml", "<x/>")
        zf.writestr(entry, "x")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeArchiveError, match="escapes the archive's folder"):
        open_scene(evil)
    assert not target.exists()
    assert sorted(tmp_path.rglob("*")) == before


def test_metadata_parser_reads_offsets_per_band() -> None:
    xml = b"""<Level-1C_User_Product><General_Info><Product_Info>
    <PROCESSING_BASELINE>04.00</PROCESSING_BASELINE></Product_Info>
    <Product_Image_Characteristics><QUANTIFICATION_VALUE>10000</QUANTIFICATION_VALUE>
    <Radiometric_Offset_List><RADIO_ADD_OFFSET band_id="1">-1000</RADIO_ADD_OFFSET>
    <RADIO_ADD_OFFSET band_id="8">-900</RADIO_ADD_OFFSET></Radiometric_Offset_List>
    </Product_Image_Characteristics></General_Info></Level-1C_User_Product>"""
    meta = parse_safe_metadata(xml, "x")
    assert meta.level == "L1C" and meta.baseline == "04.00"
    assert meta.offsets == {"B02": -1000.0, "B8A": -900.0}
