"""Hostile and odd inputs to the radiometry and georeferencing of scenes (issue 19): baselines
written as numbers or garbage, float DN, duplicate band descriptions, GCP-only rasters,
saturated DN, stale source tags, BigEarthNet nodata, escapes in echoed text; and what is
held (rotated/sheared/south-up grids, 1x1 and 1xN scenes, GDAL band scale/offset)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.control import GroundControlPoint
from rasterio.windows import Window

from s2sr import predict
from s2sr.cli.main import cli
from s2sr.core.bands import DEFAULT_BANDS, parse_baseline
from s2sr.core.errors import BandError, DataError, StacError
from s2sr.core.safe_text import printable
from s2sr.io.scene import open_scene
from s2sr.io.stac import open_stac_item
from support.rasters import field, make_safe, write_geotiff
from support.shared import SENTINEL2, needs_shared

BAND_COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}


def _item(folder: Path, data: np.ndarray, **props: Any) -> Path:
    """A local STAC Item over per-band GeoTIFFs of ``data`` (acquired 2023-06-01)."""
    assets = {}
    for k, band in enumerate(DEFAULT_BANDS):
        write_geotiff(folder / f"{band}.tif", data[k:k + 1], descriptions=None)
        assets[BAND_COMMON[band]] = {"href": f"{band}.tif",
                                     "eo:bands": [{"name": band}], "roles": ["data"]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2B_T33UUB_20230601",
            "properties": {"datetime": "2023-06-01T10:20:31Z", **props}, "assets": assets,
            "geometry": None, "links": []}
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


def _read(path: Path) -> tuple[np.ndarray, Any]:
    with rasterio.open(path) as ds:
        return ds.read(), ds


# ---------------------------------------------------------------- baselines: one parser

class TestBaselineParser:
    """Reliability: every source (MTD, STAC, tags) reads a baseline the same way."""

    @pytest.mark.parametrize(("value", "expected"), [
        ("05.09", "05.09"), (5.09, "05.09"), ("5.09", "05.09"), (5.1, "05.10"),
        ("N0509", "05.09"), ("N05.09", "05.09"), (" 04.00 ", "04.00"), (4, "04.00"),
        ("02.14", "02.14"), (None, None), ("", None)])
    def test_accepted_spellings(self, value: object, expected: str | None) -> None:
        assert parse_baseline(value) == expected

    @pytest.mark.parametrize("value", ["05.09x", "-1.00", -1.0, float("nan"), float("inf"),
                                       True, "abc", 5.091, 0.5, "0509", 10**400, [5]])
    def test_garbage_is_no_baseline(self, value: object) -> None:
        with pytest.raises(ValueError, match=r"baseline|finite|01\.00"):
            parse_baseline(value)

    def test_stac_number_gives_the_offset(self, tmp_path: Path) -> None:
        """A JSON number 5.09 on a 2023 item was ignored: 1000 DN of bias, no warning."""
        path = _item(tmp_path, field((8, 8), 4) + 1000, **{"s2:processing_baseline": 5.09})
        with open_stac_item(path, DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)
            assert scene.meta.tags["S2_PROCESSING_BASELINE"] == "05.09"
            assert scene.meta.tags["S2_DN_OFFSET_SOURCE"].startswith("read from")

    @pytest.mark.parametrize("bad", ["05.09x", "-1.00", -1.0, True])
    def test_stac_garbage_refused_naming_the_fix(self, tmp_path: Path, bad: object) -> None:
        path = _item(tmp_path, field((8, 8), 4), **{"s2:processing_baseline": bad})
        with pytest.raises(StacError, match=r"s2:processing_baseline .* (is not|outside).*"
                                            r"correct the item .* --offset -1000"):
            open_stac_item(path, DEFAULT_BANDS)
        with open_stac_item(path, DEFAULT_BANDS, dn_offset=-1000) as scene:  # the fix works
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)

    def test_tag_garbage_refused_and_number_tag_read(self, tmp_path: Path) -> None:
        tif = write_geotiff(tmp_path / "t.tif", field((8, 8), 4))
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(PROCESSING_BASELINE="-1.00")
        with pytest.raises(DataError, match=r"tag PROCESSING_BASELINE=-1\.00 is not a baseline"):
            open_scene(tif, bands=DEFAULT_BANDS)
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(PROCESSING_BASELINE="5.09")
        with open_scene(tif, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)

    def test_safe_garbage_baseline(self, tmp_path: Path) -> None:
        """Unreadable baseline: refused where nothing else gives the offset, a warning where
        the per-band offsets do."""
        data = field((8, 8), 4) + 1000
        old = make_safe(tmp_path / "a", data, baseline="03.00")  # no offsets in the MTD
        new = make_safe(tmp_path / "b", data, baseline="05.09")
        for safe in (old, new):
            mtd = next(safe.glob("MTD_MSIL*.xml"))
            text = mtd.read_text()
            mtd.write_text(text.replace(">03.00<", ">05.09x<").replace(">05.09<", ">05.09x<"))
        with pytest.raises(DataError, match=r"PROCESSING_BASELINE 05.09x is not a baseline.*"
                                            r"gives no DN offsets.*--offset -1000"):
            open_scene(old, bands=DEFAULT_BANDS)
        with open_scene(new, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)

    def test_safe_without_baseline_acquired_2023_warns(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        safe = make_safe(tmp_path, field((8, 8), 4), baseline="03.00")
        mtd = next(safe.glob("MTD_MSIL*.xml"))
        mtd.write_text(mtd.read_text().replace(">03.00<", "><"))
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
                safe, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.tags["S2_DN_OFFSET_SOURCE"].startswith("assumed")
        assert "acquired 2023-06-01" in caplog.text and "--offset -1000" in caplog.text


def test_outputs_of_unknown_or_old_baselines_read_back(tmp_path: Path,
                                                       tiny_weights: Path) -> None:
    """s2sr's own "unknown"/"before 04.00" baseline tags are no garbage to refuse."""
    safe = make_safe(tmp_path, field((8, 8), 4), baseline="03.00")
    mtd = next(safe.glob("MTD_MSIL*.xml"))
    mtd.write_text(mtd.read_text().replace(">03.00<", "><"))
    patch = _bigearthnet(tmp_path / "S2A_MSIL2A_20170613T101031_87_48", field((8, 8), 4))
    for src, baseline in ((safe, "unknown"), (patch, "before 04.00")):
        out = predict(src, tmp_path / f"{baseline}.tif", tiny_weights)
        with open_scene(out, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (0.0,) * 4
            assert scene.meta.tags["S2_PROCESSING_BASELINE"] == baseline


class TestUnknownBaselineWarning:
    """New-user: the warning comes once per file and names fixes every command has."""

    def test_item_from_2023_without_baseline_warns_once(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        path = _item(tmp_path, field((8, 8), 4))
        with caplog.at_level(logging.WARNING, logger="s2sr"):
            for _ in range(2):  # predict opens a scene twice (model choice, then the run)
                with open_stac_item(path, DEFAULT_BANDS) as scene:
                    assert scene.meta.offsets == (0.0,) * 4
        warned = [r for r in caplog.records if "processing baseline" in r.getMessage()]
        assert len(warned) == 1
        text = warned[0].getMessage()
        assert "acquired 2023-06-01" in text
        assert "gdal_edit.py -mo S2_PROCESSING_BASELINE=05.09" in text
        assert "with s2sr predict, pass --offset -1000" in text

    def test_pairs_degrade_is_not_told_to_pass_an_option_it_lacks(self, tmp_path: Path) -> None:
        tif = write_geotiff(tmp_path / "scene.tif", field((64, 64), 4))
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(ACQUISITION_DATE="2023-06-01")
        result = CliRunner().invoke(cli, ["pairs", "degrade", str(tif), "-o",
                                          str(tmp_path / "ds"), "--patch", "16"])
        assert result.exit_code == 0, result.output
        assert result.output.count("processing baseline") == 1
        assert "with s2sr predict, pass --offset" in result.output
        assert "gdal_edit.py -mo S2_PROCESSING_BASELINE" in result.output
        # the fix it names works for pairs degrade too
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(S2_PROCESSING_BASELINE="05.09")
        with open_scene(tif, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)

    def test_predict_warns_once(self, tmp_path: Path, tiny_weights: Path) -> None:
        """predict opens the scene to choose the model (silenced), then for the run."""
        for weights in ([], ["--weights", str(tiny_weights)]):
            tif = write_geotiff(tmp_path / f"scene{len(weights)}.tif", field((16, 16), 4))
            with rasterio.open(tif, "r+") as ds:  # a file is warned about once per process
                ds.update_tags(ACQUISITION_DATE="2023-06-01")
            out = tmp_path / f"o{len(weights)}.tif"
            result = CliRunner().invoke(cli, ["predict", str(tif), "-o", str(out), *weights])
            assert result.exit_code == 0, result.output
            assert result.output.count("processing baseline") == 1, result.output

    def test_no_warning_on_every_geotiff(self, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
        """A licence tag naming Copernicus Sentinel data made every run of a plain export
        warn; an export dated before 2022 has nothing to warn about either."""
        tif = write_geotiff(tmp_path / "export.tif", field((8, 8), 4))
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(LICENSE="MIT (repo); Copernicus Sentinel data", PRODUCT="L2A")
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
                tif, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == (0.0,) * 4
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(ACQUISITION_DATE="2020-01-13")
        with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
                tif, bands=DEFAULT_BANDS):
            pass
        assert caplog.text == ""

    def test_band_folder_reads_the_tag_of_its_files(self, tmp_path: Path) -> None:
        data = field((8, 8), 4) + 1000
        for k, band in enumerate(DEFAULT_BANDS):
            path = write_geotiff(tmp_path / f"x_{band}.tif", data[k:k + 1], descriptions=None)
            with rasterio.open(path, "r+") as ds:
                ds.update_tags(S2_PROCESSING_BASELINE="05.09")
        with open_scene(tmp_path, bands=DEFAULT_BANDS) as scene:
            assert scene.meta.offsets == pytest.approx((-0.1,) * 4)


# ---------------------------------------------------------------- plausibility

class TestPlausibility:
    """Reliability: values that cannot be reflectance are refused, not processed."""

    def test_float_file_holding_dn_refused(self, tmp_path: Path, tiny_weights: Path) -> None:
        dn = (field((16, 16), 4) + 1000).astype(np.float32)  # 1151-4628 style DN in float32
        tif = write_geotiff(tmp_path / "f.tif", dn)
        with pytest.raises(DataError, match=r"reads as reflectance up to .* float values .*"
                                            r"gdal_edit.py -scale 0.0001"):
            predict(tif, tmp_path / "o.tif", tiny_weights)
        assert not (tmp_path / "o.tif").exists()
        with rasterio.open(tif, "r+") as ds:  # the fix it names works
            ds.scales = (1e-4,) * 4
        assert predict(tif, tmp_path / "o.tif", tiny_weights).exists()

    # Absurd but finite GDAL scales (1e-40, 1e-12, 1e30) and offsets (1e30) are among the
    # cases of tests/io/test_hostile_io.py::test_bad_gdal_scale_refused.

    def test_overflow_is_refused_without_a_runtime_warning(self, tmp_path: Path,
                                                           tiny_weights: Path) -> None:
        """Cosmetic and reliability: 3e38 x scale 10 overflowed float32 with a NumPy
        RuntimeWarning, then the NaN output was blamed on the weights."""
        tif = write_geotiff(tmp_path / "h.tif", np.full((4, 16, 16), 3e38, np.float32))
        with rasterio.open(tif, "r+") as ds:
            ds.scales = (10.0,) * 4
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(DataError, match="reads as reflectance up to inf"):
                predict(tif, tmp_path / "o.tif", tiny_weights)


# ---------------------------------------------------------------- odd but legal rasters

def test_duplicate_band_descriptions_refused(tmp_path: Path) -> None:
    data = field((8, 8), 5)
    tif = write_geotiff(tmp_path / "d.tif", data,
                        descriptions=("B02", "B02", "B03", "B04", "B08"))
    with pytest.raises(BandError, match=r"two bands described as B02 \(bands 1 and 2.*"
                                        r"pass --bands naming all 5 bands"):
        open_scene(tif, bands=DEFAULT_BANDS)
    with open_scene(tif, bands=DEFAULT_BANDS,  # the fix it names works
                    band_names=["B01", "B02", "B03", "B04", "B08"]) as scene:
        np.testing.assert_array_equal(scene.read(Window(0, 0, 8, 8)), data[1:])


def _gcp_scene(path: Path, size: int = 32) -> Path:
    points = [GroundControlPoint(row=r, col=c, x=500000 + 10 * c, y=5000000 - 10 * r)
              for r in (0, size) for c in (0, size)]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4,
                       dtype="uint16", gcps=points, crs="EPSG:32633") as ds:
        ds.write(field((size, size), 4))
        ds.descriptions = DEFAULT_BANDS
    return path


@pytest.mark.parametrize("cog", [False, True])
def test_gcps_are_carried_scaled_to_the_output(tmp_path: Path, tiny_weights: Path,
                                               caplog: pytest.LogCaptureFixture,
                                               cog: bool) -> None:
    src = _gcp_scene(tmp_path / "g.tif")
    with caplog.at_level(logging.WARNING, logger="s2sr"):
        out = predict(src, tmp_path / "o.tif", tiny_weights, cog=cog)
    assert "georeferenced by 4 ground control points" in caplog.text
    assert "has no CRS" not in caplog.text
    with rasterio.open(src) as a, rasterio.open(out) as b:
        (pa, ca), (pb, cb) = a.gcps, b.gcps
        assert cb == ca and b.width == 2 * a.width
        for p, q in zip(pa, pb, strict=True):  # corner convention: pixel/line x 2
            assert (q.col, q.row, q.x, q.y) == (2 * p.col, 2 * p.row, p.x, p.y)
        # a pixel centre lies where it did: input (3.5, 5.5) is output (7, 11) + ...
        ta = rasterio.transform.from_gcps(pa)
        tb = rasterio.transform.from_gcps(pb)
        assert ta * (3.5, 5.5) == pytest.approx(tb * (7.0, 11.0))


def test_rpc_only_warning_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from rasterio.rpc import RPC

    tif = write_geotiff(tmp_path / "r.tif", field((8, 8), 4), crs=None,
                        transform=Affine.identity())
    rpc = RPC(height_off=0, height_scale=100, lat_off=45, lat_scale=0.1, line_den_coeff=[1] +
              [0] * 19, line_num_coeff=[0, 0, 1] + [0] * 17, line_off=4, line_scale=4,
              long_off=10, long_scale=0.1, samp_den_coeff=[1] + [0] * 19,
              samp_num_coeff=[0, 1] + [0] * 18, samp_off=4, samp_scale=4)
    with rasterio.open(tif, "r+") as ds:
        ds.rpcs = rpc
    with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(tif, bands=DEFAULT_BANDS):
        pass
    assert "georeferenced by RPCs only" in caplog.text and "no CRS" not in caplog.text


def test_no_crs_no_gcps_warning_says_so(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    tif = write_geotiff(tmp_path / "n.tif", field((8, 8), 4), crs=None,
                        transform=Affine.identity())
    with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(tif, bands=DEFAULT_BANDS):
        pass
    assert "has no CRS and no GCPs" in caplog.text


class TestSaturation:
    """Reliability: DN 65535 (SATURATED) is no value: not fed to the network, kept."""

    def test_saturated_block_makes_no_halo(self, tmp_path: Path, tiny_weights: Path) -> None:
        data = field((48, 48), 4) + 500
        sat, gap = data.copy(), data.copy()
        sat[:, 16:32, 16:32] = 65535
        gap[:, 16:32, 16:32] = 0
        a = write_geotiff(tmp_path / "sat.tif", sat, nodata=0)
        b = write_geotiff(tmp_path / "gap.tif", gap, nodata=0)
        out_sat, _ = _read(predict(a, tmp_path / "a.tif", tiny_weights))
        out_gap, _ = _read(predict(b, tmp_path / "b.tif", tiny_weights))
        block = np.zeros((96, 96), bool)
        block[32:64, 32:64] = True
        assert (out_sat[:, block] == 65535).all()  # saturated stays saturated
        # around it, exactly what a nodata hole gives: the network saw the same fill
        np.testing.assert_array_equal(out_sat[:, ~block], out_gap[:, ~block])

    def test_one_saturated_band_leaves_the_others(self, tmp_path: Path,
                                                  tiny_weights: Path) -> None:
        data = field((16, 16), 4) + 500
        data[0, 4, 4] = 65535
        out, _ = _read(predict(write_geotiff(tmp_path / "s.tif", data), tmp_path / "o.tif",
                               tiny_weights))
        assert (out[0, 8:10, 8:10] == 65535).all()
        assert (out[1:, 8:10, 8:10] < 65535).all()
        assert (out[0] == 65535).sum() == 4


def test_saturation_is_written_the_same_on_the_gpu_path() -> None:
    """The GPU's conversion (dn_values, then finish on the host) marks saturated samples as
    the CPU's (to_dn) does; run here with CPU tensors, the same code."""
    import torch

    from s2sr.inference.encoding import DnEncoding

    radiometry = DnEncoding("uint16", (1e-4,) * 2, (-0.1,) * 2, 0)
    rng = np.random.default_rng(0)
    refl = rng.uniform(-0.05, 0.8, (2, 8, 8)).astype(np.float32)
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    sat = np.zeros((2, 4, 4), bool)
    sat[1, 2, 3] = True
    cpu = radiometry.to_dn(refl, valid, sat)
    gpu = radiometry.finish(radiometry.dn_values(torch.from_numpy(refl)).numpy(), valid, sat)
    np.testing.assert_array_equal(cpu, gpu)
    assert (cpu[1, 4:6, 6:8] == 65535).all() and (cpu[0, 4:6, 6:8] < 65535).all()
    assert (cpu[:, :2, :2] == 0).all()


# ---------------------------------------------------------------- output tags

class TestOutputTags:
    """New-user: outputs carry only source tags that stay true, and the DN offset always."""

    def test_stale_source_tags_dropped(self, tmp_path: Path, tiny_weights: Path) -> None:
        tif = write_geotiff(tmp_path / "t.tif", field((16, 16), 4))
        with rasterio.open(tif, "r+") as ds:
            ds.update_tags(BAND_ORDER="B01..B12 without B10", GEOREFERENCED="no: pixel size 10 m",
                           LICENSE="CC BY 4.0", ACQUISITION_DATE="2020-01-13",
                           AREA_OR_POINT="Point")
        with rasterio.open(predict(tif, tmp_path / "o.tif", tiny_weights)) as ds:
            tags = ds.tags()
        assert "BAND_ORDER" not in tags and "GEOREFERENCED" not in tags
        assert tags["LICENSE"] == "CC BY 4.0" and tags["ACQUISITION_DATE"] == "2020-01-13"
        assert tags.get("AREA_OR_POINT", "Area") == "Area"
        assert tags["S2_DN_OFFSET"] == "B02:0,B03:0,B04:0,B08:0"
        assert tags["S2_DN_OFFSET_SOURCE"].startswith("assumed")

    @pytest.mark.parametrize(("how", "expected"), [
        ("given", "given (--offset"), ("safe", "read from the product metadata"),
        ("float", "none: float32 reflectance"), ("scale", "read from the file's GDAL")])
    def test_dn_offset_always_recorded(self, tmp_path: Path, tiny_weights: Path, how: str,
                                       expected: str) -> None:
        dn_offset = None
        if how == "safe":
            src = make_safe(tmp_path, field((16, 16), 4) + 1000)
        elif how == "float":
            src = write_geotiff(tmp_path / "f.tif", field((16, 16), 4, dtype="float32") / 1e4)
        else:
            src = write_geotiff(tmp_path / "t.tif", field((16, 16), 4) + 1000)
            dn_offset = -1000.0 if how == "given" else None
            if how == "scale":
                with rasterio.open(src, "r+") as ds:
                    ds.scales, ds.offsets = (1e-4,) * 4, (-0.1,) * 4
        out = predict(src, tmp_path / "o.tif", tiny_weights, dn_offset=dn_offset)
        with rasterio.open(out) as ds:
            tags = ds.tags()
        assert tags["S2_DN_OFFSET_SOURCE"].startswith(expected)
        offset = "0" if how == "float" else "-1000"
        assert tags["S2_DN_OFFSET"] == ",".join(f"{b}:{offset}" for b in DEFAULT_BANDS)


# ---------------------------------------------------------------- BigEarthNet

def _bigearthnet(folder: Path, data: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for k, band in enumerate(DEFAULT_BANDS):
        write_geotiff(folder / f"{folder.name}_{band}.tif", data[k:k + 1], descriptions=None)
    return folder


def test_bigearthnet_patch_bands_get_nodata_0_and_no_offset(
        tmp_path: Path, tiny_weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = field((16, 16), 4)
    data[:, :2] = 0
    patch = _bigearthnet(tmp_path / "S2B_MSIL2A_20170924T93020_69_24", data)
    with caplog.at_level(logging.WARNING, logger="s2sr"), open_scene(
            patch, bands=DEFAULT_BANDS) as scene:
        assert scene.meta.nodata == 0 and scene.meta.offsets == (0.0,) * 4
        assert "BigEarthNet v1" in scene.meta.tags["S2_DN_OFFSET_SOURCE"]
    assert "processing baseline" not in caplog.text
    with rasterio.open(predict(patch, tmp_path / "o.tif", tiny_weights)) as ds:
        assert ds.nodata == 0 and (ds.read()[:, :4] == 0).all()


@needs_shared(SENTINEL2 / "bigearthnet", "the real BigEarthNet patches")
def test_real_bigearthnet_folder_has_nodata_0() -> None:
    folder = sorted((SENTINEL2 / "bigearthnet").iterdir())[0]
    with open_scene(folder, bands=DEFAULT_BANDS) as scene:
        assert scene.meta.nodata == 0 and scene.meta.offsets == (0.0,) * 4


# ---------------------------------------------------------------- echoed text

def test_printable_escapes_what_a_terminal_would_obey() -> None:
    assert printable("a\x1b[2Jb\nc\u202ed caf\udce9") == "a\\x1b[2Jb\\x0ac\\u202ed caf\\udce9"
    assert printable("é 中 ok") == "é 中 ok" and printable("x" * 50, 10) == "xxxxxxx..."


def test_escapes_in_file_names_never_reach_stderr(tmp_path: Path, tiny_weights: Path) -> None:
    """Cosmetic/security: a file name holding ANSI escapes or a newline was echoed raw, in
    errors and in warnings."""
    evil = tmp_path / "evil\x1b[31m\nforged.tif"
    tif = write_geotiff(evil, field((8, 8), 4), descriptions=("B02", "B02", "B04", "B08"))
    result = CliRunner().invoke(cli, ["predict", str(tif), "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1
    assert "two bands described as B02" in result.output
    assert "\x1b" not in result.output and "evil\\x1b[31m\\x0aforged.tif" in result.output
    assert result.output.count("\n") == 1  # one line
    tif = write_geotiff(evil, field((8, 8), 4), descriptions=None)  # a warning names it
    result = CliRunner().invoke(cli, ["predict", str(tif), "-o", str(tmp_path / "o.tif"),
                                      "--weights", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert "has no band descriptions" in result.output and "\x1b" not in result.output
    assert "\nforged" not in result.output


def test_escapes_in_a_many_scene_summary(tmp_path: Path, tiny_weights: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_geotiff(scenes / "fine.tif", field((8, 8), 4))
    write_geotiff(scenes / "bad\x1b[2J.tif", field((8, 8), 4),
                  descriptions=("B02", "B02", "B04", "B08"))
    result = CliRunner().invoke(cli, ["predict", str(scenes), "-o", str(tmp_path / "out"),
                                      "--weights", str(tiny_weights)])
    assert result.exit_code == 1
    assert "failed: " in result.output and "bad\\x1b[2J.tif" in result.output
    assert "\x1b" not in result.output


# ---------------------------------------------------------------- held

@pytest.mark.parametrize("transform", [
    Affine(10.0, 2.0, 500000.0, 1.5, -10.0, 5000000.0),  # sheared
    Affine(10.0, 0.0, 500000.0, 0.0, 10.0, 4999000.0),  # south-up
    Affine(-10.0, 0.0, 500400.0, 0.0, -10.0, 5000000.0)])  # east-west flipped
def test_held_odd_transforms_keep_their_geometry(tmp_path: Path, tiny_weights: Path,
                                                 transform: Affine) -> None:
    src = write_geotiff(tmp_path / "t.tif", field((24, 20), 4), transform=transform)
    with rasterio.open(predict(src, tmp_path / "o.tif", tiny_weights)) as ds:
        assert ds.transform == transform @ Affine.scale(0.5)
        assert (ds.width, ds.height) == (40, 48)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1)])
def test_held_tiny_scenes(tmp_path: Path, tiny_weights: Path, shape: tuple[int, int]) -> None:
    data = field(shape, 4) + 500
    out, _ = _read(predict(write_geotiff(tmp_path / "t.tif", data), tmp_path / "o.tif",
                           tiny_weights))
    assert out.shape == (4, 2 * shape[0], 2 * shape[1]) and (out > 0).all()


def test_held_gdal_scale_offset_round_trip(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "t.tif", field((16, 16), 4) + 1000)
    with rasterio.open(src, "r+") as ds:
        ds.scales, ds.offsets = (2e-4,) * 4, (-0.05,) * 4
    with open_scene(src, bands=DEFAULT_BANDS) as scene:
        assert scene.meta.gains == (2e-4,) * 4 and scene.meta.offsets == (-0.05,) * 4
    with rasterio.open(predict(src, tmp_path / "o.tif", tiny_weights)) as ds:
        assert ds.scales == (2e-4,) * 4 and ds.offsets == (-0.05,) * 4
