"""The ``s2sr`` command line: success, and every bad input with its message and exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from s2sr.models import build_model, save_model
from support.cli import run_cli
from support.rasters import UTM_TRANSFORM, field, make_safe, write_geotiff


def _no_outputs(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name == "out.tif"]
    assert left == [], f"left behind: {left}"


def test_predict_succeeds(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "--tile", "64", "--overlap", "16", "--batch-size", "2", "--device", "cpu",
                    "--quiet")
    assert code == 0, out
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert (ds.width, ds.height) == (60, 80)


def test_console_script_reports_one_line_without_traceback(tmp_path: Path,
                                                           tiny_weights: Path) -> None:
    exe = Path(sys.executable).with_name("s2sr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "s2sr.cli.main"]
    proc = subprocess.run([*cmd, "predict", str(tmp_path / "missing.tif"), "-o",
                           str(tmp_path / "o.tif"), "--weights", str(tiny_weights)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]


def _corrupt(tmp_path: Path) -> Path:
    p = tmp_path / "in.tif"
    p.write_bytes(b"II*\x00" + b"\xff" * 200)
    return p


def _truncate(p: Path) -> Path:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    return p


def _truncated_header(tmp_path: Path) -> Path:
    """GTiff writes its directory last: cutting the file loses it."""
    return _truncate(write_geotiff(tmp_path / "in.tif", field((600, 600), 4, seed=1),
                                   tiled=True, compress="deflate"))


def _truncated_data(tmp_path: Path) -> Path:
    """A COG has its directory first: cutting the file loses pixel blocks, found mid-run."""
    return _truncate(write_geotiff(tmp_path / "in.tif", field((600, 600), 4, seed=1),
                                   driver="COG", compress="deflate", blocksize=256))


def _nan(tmp_path: Path) -> Path:
    arr = field((30, 30), 4, dtype="float32")
    arr[0, 5, 5] = np.nan
    return write_geotiff(tmp_path / "in.tif", arr)


def _escaping_zip(tmp_path: Path) -> Path:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("S2B.SAFE/MTD_MSIL1C.xml", "<x/>")
        zf.writestr("S2B.SAFE/../../../evil.jp2", "x")
    return archive


BAD_INPUTS = {
    "missing file": (lambda t: t / "nope.tif", 2, "does not exist"),
    "corrupt raster": (_corrupt, 1, "cannot open"),
    "empty file": (lambda t: (t / "in.tif").write_bytes(b"") or t / "in.tif", 1, "empty file"),
    "truncated raster, directory lost": (_truncated_header, 1, "not truncated"),
    "truncated raster, blocks lost": (_truncated_data, 1, "truncated or corrupt"),
    "missing bands": (lambda t: write_geotiff(t / "in.tif", field((20, 20), 3),
                                              descriptions=("B02", "B03", "B04")), 1,
                      "lacks band(s) B08"),
    "band count not matching": (lambda t: write_geotiff(t / "in.tif", field((20, 20), 3),
                                                        descriptions=None), 1, "--bands"),
    "unsupported dtype": (lambda t: write_geotiff(t / "in.tif", np.ones((4, 9, 9), np.uint8)),
                          1, "unsupported dtype uint8"),
    "all nodata": (lambda t: write_geotiff(t / "in.tif", np.zeros((4, 30, 30), np.uint16),
                                           nodata=0), 1, "no valid pixels"),
    "NaN in float input": (_nan, 1, "NaN or infinite"),
    "zip escaping its folder": (_escaping_zip, 1, "escapes the archive"),
    "not a zip": (lambda t: (t / "in.zip").write_bytes(b"nope") and t / "in.zip", 1,
                  "not a readable zip"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(case: str, tmp_path: Path, tiny_weights: Path) -> None:
    make, exit_code, message = BAD_INPUTS[case]
    src = make(tmp_path)
    code, out = run_cli("predict", src, "-o", tmp_path / "out.tif", "--weights", tiny_weights)
    assert code == exit_code, out
    assert message in out
    errors = [ln for ln in out.splitlines() if not ln.startswith("s2sr: warning: ")]
    assert len(errors) == 1 and errors[0].startswith("s2sr: error: "), out
    _no_outputs(tmp_path)


def test_corrupt_weights(tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 4))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, out = run_cli("predict", src, "-o", tmp_path / "out.tif", "--weights", weights)
    assert code == 1 and "corrupt" in out
    _no_outputs(tmp_path)


def test_weights_for_other_bands(tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 3),
                        descriptions=("B02", "B03", "B04"))
    torch.manual_seed(0)
    weights = save_model(build_model("edsr-tiny", bands=("B05", "B06", "B07")),
                         tmp_path / "w.safetensors")
    code, out = run_cli("predict", src, "-o", tmp_path / "out.tif", "--weights", weights)
    assert code == 1 and "lacks band(s) B05, B06, B07" in out
    _no_outputs(tmp_path)


def test_usage_errors(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 4))
    existing = tmp_path / "out.tif"
    existing.write_bytes(b"precious")
    code, out = run_cli("predict", src, "-o", existing, "--weights", tiny_weights)
    assert code == 2 and "--overwrite" in out and existing.read_bytes() == b"precious"
    existing.unlink()
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "--overlap", "7")
    assert code == 2 and "multiple of 4" in out
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "--tile", "20")
    assert code == 2 and "too small" in out
    (tmp_path / "afile").write_text("x")
    code, out = run_cli("predict", src, "-o", tmp_path / "afile" / "o.tif", "--weights",
                    tiny_weights)
    assert code == 2 and "is a file" in out
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                    tmp_path / "none.safetensors")
    assert code == 2 and "weights file" in out
    code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "--scale", "4")
    assert code == 2 and "x2 model" in out
    _no_outputs(tmp_path)


def test_safe_folder_through_cli(tmp_path: Path, tiny_weights: Path) -> None:
    """A SAFE product (baseline 04.00: DN offset -1000) comes out on its own grid at half the
    pixel size, in its bands and DN encoding: the plain GeoTIFF of the same reflectance's
    output plus the offset. The output stands alone once the product is gone."""
    dn = field((30, 30), 4)
    product = make_safe(tmp_path, dn + 1000)
    code, out = run_cli("predict", product, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                    "-q")
    assert code == 0, out
    plain = write_geotiff(tmp_path / "plain.tif", dn)
    code, out = run_cli("predict", plain, "-o", tmp_path / "plain_x2.tif", "--weights",
                        tiny_weights, "-q")
    assert code == 0, out
    shutil.rmtree(product)
    with rasterio.open(tmp_path / "o.tif") as ds, rasterio.open(tmp_path / "plain_x2.tif") as ref:
        assert (ds.count, ds.height, ds.width) == (4, 60, 60)
        assert ds.crs == "EPSG:32633"
        assert ds.transform == UTM_TRANSFORM * Affine.scale(0.5)
        assert ds.descriptions == ("B02", "B03", "B04", "B08")
        assert ds.dtypes == ("uint16",) * 4
        tags = ds.tags()
        assert tags["S2_PROCESSING_LEVEL"] == "L2A" and tags["S2_PROCESSING_BASELINE"] == "04.00"
        assert tags["S2_DN_OFFSET"] == "B02:-1000,B03:-1000,B04:-1000,B08:-1000"
        got, want = ds.read().astype(np.int32), ref.read().astype(np.int32)
    assert np.abs(got - 1000 - want).max() <= 1  # rounding


def test_demo_command(tmp_path: Path) -> None:
    pytest.importorskip("bigearthnet_common")
    code, out = run_cli("demo", "-o", tmp_path / "demo")
    assert code == 0, out
    assert "UNTRAINED" not in out and "s2sr_x2.safetensors" in out
    tifs = list((tmp_path / "demo").glob("*_x2.tif"))
    pngs = list((tmp_path / "demo").glob("*.png"))
    assert len(tifs) == 1 and len(pngs) == 1
    with rasterio.open(tifs[0]) as ds:
        assert (ds.width, ds.height) == (240, 240) and ds.res == (5.0, 5.0)
