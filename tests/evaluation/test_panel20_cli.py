"""``s2sr evaluate bands`` (the 20 m panel) end to end on a synthetic shared folder: the
report folder, and the refusals (one line, the right exit code, nothing left behind)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from s2sr.cli.main import cli
from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.data.degrade import block_mean
from s2sr.data.places import TEST_PLACES
from s2sr.models import build_model, save_model
from support.rasters import texture, write_geotiff


def _write_city(root: Path, city: str, seed: int) -> None:
    """An OSCD-like per-band folder (EPSG:4326, both grids from one corner): 20 m bands that
    are mixes of the 10 m bands brought to 20 m (shared detail)."""
    folder = root / "sentinel2" / "oscd" / city / "imgs_1"
    folder.mkdir(parents=True)
    hr = texture((96, 88), bands=4, seed=seed)
    mix = np.random.default_rng(seed).uniform(0.1, 0.6, (6, 4))
    lr = np.tensordot(mix, block_mean(hr, 2), axes=1) + 0.02
    for bands, data in ((DEFAULT_BANDS, hr), (BANDS_20M, lr)):
        for i, band in enumerate(bands):
            write_geotiff(folder / f"T00XXX_{band}.tif",
                          np.rint(data[i:i + 1] * 10000).astype(np.uint16),
                          crs="EPSG:4326", descriptions=None)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two test places and one training place."""
    root = tmp_path_factory.mktemp("shared")
    _write_city(root, TEST_PLACES[1].name, 1)  # rio
    _write_city(root, TEST_PLACES[3].name, 2)  # milano
    _write_city(root, "paris", 3)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("w20")
    out = {}
    for name, bands, scale in (("x2", BANDS_20M, 2), ("x4", BANDS_20M, 4),
                               ("re", BANDS_20M[:4], 2)):
        torch.manual_seed(scale)
        out[name] = save_model(build_model("guided-edsr-tiny", bands=bands, scale=scale,
                                           guide_bands=DEFAULT_BANDS, guide_scale=2),
                               root / f"{name}.safetensors")
    torch.manual_seed(0)
    out["edsr"] = save_model(build_model("edsr-tiny", scale=2), root / "edsr.safetensors")
    return out


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["evaluate", "bands", *map(str, args)])


def _one_line_error(res: Result, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("s2sr: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bands_report_with_models(tmp_path: Path, shared: Path,
                                  weights: dict[str, Path]) -> None:
    out = tmp_path / "rep"
    res = _run("--shared", shared, "--weights-20m", weights["x2"], "--weights-20m",
               f"four={weights['x4']}", "-o", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["lines.csv", "report.csv", "report.json",
                                                     "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert data["methods"] == ["bicubic", "lanczos", "unsharp", "guided", "x2", "four"]
    assert data["scenes"] == ["oscd/milano/imgs_1", "oscd/rio/imgs_1"]  # not paris
    assert len(data["cases"]) == 10 and data["bands"] == list(BANDS_20M)
    x2 = [r for r in data["rows"] if r["method"] == "x2"]
    assert {r["factor"] for r in x2} == {2, 4}  # x4: the cascade, the 5 m product
    assert {r["factor"] for r in data["rows"] if r["method"] == "four"} == {4}
    assert {r["scene"] for r in data["lines"]} == {"oscd/milano/imgs_1", "oscd/paris/imgs_1",
                                                   "oscd/rio/imgs_1", "max"}
    text = (out / "report.md").read_text()
    assert "## Targets of issue 22" in text and "| SWIR B11 B12, dB |" in text
    assert "## Check: model >= unsharp mask at every held-out place, every band" in text
    assert "| oscd/rio/imgs_1 | unsharp mask |" in text
    checks = data["check"]["models"]
    assert set(checks) == {"x2", "four"} and len(checks["x2"]) == 10  # both factors
    assert {c["case"][:2] for c in checks["four"]} == {"x4"}
    for c in checks["x2"]:  # the worst margin is the lowest of the rows' own margins
        prow = [r for r in x2 if r["case"] == c["case"] and r["scene"] in data["scenes"]]
        assert c["unsharp"]["margin"] == min(min(r["vs_unsharp_bands"]) for r in prow)
        assert c["holds"] == (c["unsharp"]["margin"] >= 0)
    assert "x2: model >= unsharp mask at every held-out place, every band: **" in text
    header = (out / "report.csv").read_text().splitlines()[0].split(",")
    assert {"vs_unsharp_psnr", "vs_trivial_psnr", "vs_unsharp_B12", "vs_trivial_B05"} <= set(
        header)
    guided = [r for r in data["rows"] if r["method"] == "guided" and r["scene"] == "worst"]
    assert all(min(r["gain_bands"]) > 1 for r in guided)  # shared detail: guided wins


def test_bands_baselines_only(tmp_path: Path, shared: Path) -> None:
    res = _run("--shared", shared, "-o", tmp_path / "rep", "--crop", "3")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["methods"] == ["bicubic", "lanczos", "unsharp", "guided"]
    assert data["check"]["models"] == {}
    assert {r["method"] for r in data["lines"]} == {"guided", "truth"}  # the references
    assert data["conventions"]["crop"] == 3
    assert "Targets of issue 22" not in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize(("args", "code", "needles"), [
    (["--shared", "{tmp}/nowhere"], 2, ["no sentinel2/ folder", "--shared"]),
    (["--weights-20m", "{tmp}/none.safetensors"], 2, ["does not exist"]),
    (["--weights-20m", "=x.safetensors"], 2, ["--weights-20m", "empty name"]),
    (["--weights-20m", "{edsr}"], 2, ["not a guided 20 m model", "s2sr evaluate panel"]),
    (["--weights-20m", "{re}"], 2, ["B05,B06,B07,B8A guided by", "give a model of those"]),
    (["--weights-20m", "a={x2}", "--weights-20m", "a={x4}"], 2, ["two --weights-20m"]),
    (["--data-range", "0"], 2, ["--data-range must be a positive number"]),
    (["--crop", "-1"], 2, ["--crop must be 0 or more"]),
    (["--weights-20m", "{junk}"], 1, ["junk.safetensors"]),  # untrusted file: no traceback
])
def test_bands_refusals(tmp_path: Path, shared: Path, weights: dict[str, Path],
                        args: list[str], code: int, needles: list[str]) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    fill = {"tmp": tmp_path, "junk": junk, **weights}
    argv = [a.format(**fill) for a in args]
    if "--shared" not in argv:
        argv += ["--shared", str(shared)]
    res = _run(*argv, "-o", tmp_path / "rep")
    _one_line_error(res, code, *needles)
    assert not (tmp_path / "rep").exists()
    assert [p.name for p in tmp_path.iterdir() if "rep" in p.name] == []


def test_bands_refuses_a_report_inside_the_shared_data(tmp_path: Path, shared: Path) -> None:
    _one_line_error(_run("--shared", shared, "-o", shared / "sentinel2" / "rep"), 2)
    assert not (shared / "sentinel2" / "rep").exists()


def test_bands_refuses_a_folder_without_test_places(tmp_path: Path) -> None:
    _write_city(tmp_path / "s", "paris", 4)
    res = _run("--shared", tmp_path / "s", "-o", tmp_path / "rep")
    _one_line_error(res, 1, "no held-out scene with native 10 m and 20 m bands")
    assert not (tmp_path / "rep").exists()


def test_bands_keeps_an_existing_report(tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _one_line_error(_run("--shared", shared, "-o", out), 2, "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    res = _run("--shared", shared, "-o", out, "--overwrite")
    assert res.exit_code == 0 and not (out / "keep.txt").exists()
