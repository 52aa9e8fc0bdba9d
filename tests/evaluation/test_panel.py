"""``s2sr evaluate panel``: the robustness panel end to end on tiny models and scenes
written by the tests; its numbers against an independent computation; the CLI's checks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from s2sr import super_resolve
from s2sr.cli.main import cli
from s2sr.evaluation.panel import default_scenes, panel_cases, panel_rows
from s2sr.evaluation.panel_report import evaluate_panel
from s2sr.inference.baselines import UNSHARP_AMOUNT, upsample
from s2sr.losses.artefacts import ARTEFACT_THRESHOLD, LINE_THRESHOLD, nyquist_line_ratio
from s2sr.models import load_model
from support.rasters import texture, write_geotiff
from support.shared import SHARED, requires_shared

CASES = ["x2 block mean", "x2 MTF 0.20", "x2 MTF 0.30", "x2 MTF 0.45", "x2 MTF 0.60",
         "x4 block mean", "x4 MTF 0.20", "x4 MTF 0.30", "x4 MTF 0.45", "x4 MTF 0.60"]


def _scene(path: Path, seed: int, shape: tuple[int, int] = (64, 64), **kwargs: object) -> Path:
    dn = np.rint(texture(shape, seed=seed) * 10000).astype(np.uint16)
    return write_geotiff(path, dn, **kwargs)  # type: ignore[arg-type]


def test_unsharp_mask_equals_direct_computation() -> None:
    lr = texture((20, 24), bands=2, seed=1)
    for scale in (2, 4):
        b = F.interpolate(torch.from_numpy(lr)[None], scale_factor=scale, mode="bicubic",
                          align_corners=False)[0].double().numpy()
        sigma = scale / 2
        radius = int(4 * sigma + 0.5)
        x = np.arange(-radius, radius + 1)
        k = np.exp(-0.5 * (x / sigma) ** 2)
        k /= k.sum()
        expected = np.empty_like(b)
        for i, band in enumerate(b):  # separable convolution, edges mirrored (d c b | a b c)
            p = np.pad(band, radius, mode="reflect")
            rows = np.stack([np.convolve(r, k, mode="valid") for r in p])
            g = np.stack([np.convolve(c, k, mode="valid") for c in rows.T]).T
            expected[i] = band + 0.6 * (band - g)
        assert UNSHARP_AMOUNT == 0.6
        np.testing.assert_allclose(upsample(lr, scale, "unsharp"), expected, atol=2e-6)
    with pytest.raises(Exception, match="unknown upsampling method 'cubic'"):
        upsample(lr, 2, "cubic")


def test_panel_end_to_end_report_and_independent_numbers(
        tmp_path: Path, tiny_weights: Path, tiny_weights_x4: Path) -> None:
    scenes = [_scene(tmp_path / "a.tif", 21), _scene(tmp_path / "b.tif", 22, (72, 64))]
    report = evaluate_panel({"t2": tiny_weights, "t4": tiny_weights_x4}, scenes,
                            tmp_path / "rep")
    assert report == tmp_path / "rep" / "report.md"
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["cases"] == CASES
    assert data["methods"] == ["bicubic", "lanczos", "unsharp", "t2", "t4"]
    rows = data["rows"]
    for case in CASES:
        model = "t2" if case.startswith("x2") else "t4"
        for scene in ("a.tif", "b.tif", "mean"):
            got = {r["method"] for r in rows if r["case"] == case and r["scene"] == scene}
            assert got == {"bicubic", "lanczos", "unsharp", model}, (case, scene)
    for r in rows:
        if r["scene"] == "worst":
            continue
        bic = next(b for b in rows if b["case"] == r["case"] and b["scene"] == r["scene"]
                   and b["method"] == "bicubic")
        assert r["gain_psnr"] == pytest.approx(r["psnr"] - bic["psnr"])
        assert r["gain_ssim"] == pytest.approx(r["ssim"] - bic["ssim"])
        assert np.isfinite([r["psnr"], r["ssim"], r["cons_mae"], r["cons_sam"]]).all()
    mean = next(r for r in rows if r["case"] == "x2 MTF 0.30" and r["scene"] == "mean"
                and r["method"] == "t2")
    per = [r["psnr"] for r in rows if r["case"] == "x2 MTF 0.30" and r["method"] == "t2"
           and r["scene"] not in ("mean", "worst")]
    assert mean["psnr"] == pytest.approx(np.mean(per))

    # independent: x2 block mean of scene a, bicubic, skimage PSNR/SSIM per band, crop 2
    with __import__("rasterio").open(scenes[0]) as src:
        hr = src.read().astype(np.float64) / 10000
    lr = hr.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4))
    bic = F.interpolate(torch.from_numpy(lr)[None], scale_factor=2, mode="bicubic",
                        align_corners=False)[0].numpy()
    c = (slice(None), slice(2, -2), slice(2, -2))
    psnr = np.mean([peak_signal_noise_ratio(h, p, data_range=1.0)
                    for h, p in zip(hr[c], bic[c], strict=True)])
    ssim = np.mean([structural_similarity(h, p, data_range=1.0, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False)
                    for h, p in zip(hr[c], bic[c], strict=True)])
    row = next(r for r in rows if r["case"] == "x2 block mean" and r["scene"] == "a.tif"
               and r["method"] == "bicubic")
    assert row["psnr"] == pytest.approx(psnr, abs=1e-3)
    assert row["ssim"] == pytest.approx(ssim, abs=1e-4)
    # consistency of bicubic with a block-mean input: degraded back by the block mean alone
    back = bic.reshape(4, 32, 2, 32, 2).mean(axis=(2, 4))
    assert row["cons_mae"] == pytest.approx(np.abs(back - lr).mean(), abs=1e-5)

    arts = data["artefacts"]
    assert data["artefact_threshold"] == ARTEFACT_THRESHOLD
    assert {a["method"] for a in arts} == {"bicubic x2", "bicubic x4", "t2", "t4"}
    assert {a["scene"] for a in arts} == {"a.tif", "b.tif", "max"}
    for a in arts:
        assert a["over"] == (a["score"] > ARTEFACT_THRESHOLD)
        if a["method"].startswith("bicubic"):
            assert a["line_x"] is None and a["lines_over"] is None
        else:
            assert a["lines_over"] == (max(a["line_x"], a["line_y"]) > LINE_THRESHOLD)
    # the line ratio of the x2 model on the undegraded scene a, computed independently
    hr_a = hr.astype(np.float32)
    out = super_resolve(hr_a, load_model(tiny_weights), device="cpu", precision="fp32")
    got = next(a for a in arts if a["scene"] == "a.tif" and a["method"] == "t2")
    want = nyquist_line_ratio(out, upsample(hr_a, 2, "bicubic"))
    assert (got["line_x"], got["line_y"]) == pytest.approx(want, rel=1e-4)
    assert "Nyquist-line ratio on the undegraded scenes" in report.read_text()
    text = report.read_text()
    assert "| case | bicubic | Lanczos | unsharp mask | t2 | t4 |" in text
    x2_row = next(line for line in text.splitlines() if line.startswith("| x2 MTF 0.30 |"))
    assert x2_row.endswith("| — |")  # the x4 model has no x2 cell
    assert f"threshold {ARTEFACT_THRESHOLD:.2f}" in text
    assert "border crop = the case's scale" in text
    with open(tmp_path / "rep" / "report.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(rows)
    assert {r["mtf"] for r in csv_rows} == {"block", "0.2", "0.3", "0.45", "0.6"}
    assert "psnr_B08" in csv_rows[0]
    assert (tmp_path / "rep" / "artefacts.csv").read_text().startswith(
        "scene,method,scale,score,over,line_x,line_y,lines_over")


def test_panel_rows_pure_function(tiny_weights: Path) -> None:
    hr = {"s": texture((48, 48), seed=23)}
    rows = panel_rows({"m": load_model(tiny_weights)}, hr, scales=[2], device="cpu")
    assert [c.label for c in panel_cases([2])] == CASES[:5]
    assert len(rows) == 5 * 4 * 3  # cases x methods x (scene + mean + worst)
    with pytest.raises(Exception, match="not 2 or 4"):
        panel_rows({"m": load_model(tiny_weights)}, hr, scales=[3])


def test_panel_cli_runs_and_validates(tmp_path: Path, tiny_weights: Path,
                                      rgb_weights: Path) -> None:
    run = CliRunner().invoke
    scene = _scene(tmp_path / "s.tif", 24)
    out = tmp_path / "rep"
    res = run(cli, ["evaluate", "panel", "--weights", f"tiny={tiny_weights}", "--scene",
                    str(scene), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (out / "report.md").is_file()
    assert "| x2 block mean |" in (out / "report.md").read_text()
    # an existing report needs --overwrite, and is then replaced whole
    res = run(cli, ["evaluate", "panel", "--weights", str(tiny_weights), "--scene",
                    str(scene), "-o", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = run(cli, ["evaluate", "panel", "--weights", str(tiny_weights), "--scene",
                    str(scene), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0 and "| tiny_x2 |" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "s.tif"]  # no temp left


def _err(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["evaluate", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res.exit_code, res.output


def test_panel_cli_hostile_options(tmp_path: Path, tiny_weights: Path,
                                   rgb_weights: Path) -> None:
    scene = _scene(tmp_path / "s.tif", 25)
    o = ["-o", str(tmp_path / "r")]
    w = ["--weights", str(tiny_weights)]
    code, out = _err(["panel", "--scene", str(scene), *o])
    assert code == 2 and "evaluate panel needs at least one --weights" in out
    code, out = _err(["dataset", *w, "--scene", str(scene), *o])
    assert code == 2 and "No such option '--scene'" in out
    code, out = _err(["panel", *w, "--dataset", str(tmp_path), *o])
    assert code == 2 and "No such option '--dataset'" in out
    code, out = _err(["panel", *w, "--lr", str(scene), *o])
    assert code == 2 and "No such option '--lr'" in out
    code, out = _err(["panel", *w, "--shared", str(tmp_path / "nowhere"), *o])
    assert code == 2 and "test places are not under" in out and "--shared" in out
    assert out.count("\n") == 1
    code, out = _err(["panel", *w, "--scene", str(tmp_path / "missing.tif"), *o])
    assert code == 2 and "missing.tif does not exist" in out
    code, out = _err(["panel", *w, "--weights", str(rgb_weights), "--scene", str(scene), *o])
    assert code == 2 and "different bands" in out
    assert not (tmp_path / "r").exists()


def test_panel_refuses_hostile_scenes(tmp_path: Path, tiny_weights: Path) -> None:
    w = ["--weights", str(tiny_weights)]
    small = _scene(tmp_path / "small.tif", 26, (20, 20))
    code, out = _err(["panel", *w, "--scene", str(small), "-o", str(tmp_path / "r1")])
    assert code == 1 and "too small for the panel" in out
    dn = np.rint(texture((64, 64), seed=27) * 10000).astype(np.uint16)
    dn[:, :5, :5] = 0
    holes = write_geotiff(tmp_path / "holes.tif", dn, nodata=0)
    code, out = _err(["panel", *w, "--scene", str(holes), "-o", str(tmp_path / "r2")])
    assert code == 1 and "nodata pixel" in out
    three = write_geotiff(tmp_path / "rgb.tif", dn[:3], descriptions=("B02", "B03", "B04"))
    code, out = _err(["panel", *w, "--scene", str(three), "-o", str(tmp_path / "r3")])
    assert code == 1 and "B08" in out
    assert not any((tmp_path / f"r{k}").exists() for k in (1, 2, 3))


@requires_shared
def test_default_scenes_are_the_test_places_and_named_by_place() -> None:
    from s2sr.data.places import TEST_PLACES
    from s2sr.evaluation.panel import scene_name

    scenes = default_scenes(SHARED)
    assert [scene_name(p) for p in scenes] == ["abudhabi/imgs_1", "rio/imgs_1",
                                               "hongkong/imgs_1", "milano/imgs_1",
                                               "boston_roads_L2A.tif"]
    assert len(TEST_PLACES) >= 5 and all(p.exists() for p in scenes)
    assert sum(p.path.startswith("sentinel2/oscd/") for p in TEST_PLACES) >= 4


def test_default_scenes_missing_named_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="test places are not under") as err:
        default_scenes(tmp_path)
    assert "--shared" in str(err.value) and "\n" not in str(err.value)


def test_worst_place_rows_and_report(tmp_path: Path, tiny_weights: Path) -> None:
    """The worst place decides: one row per case and method naming the scene of lowest
    gain, and a report section with it (fails where only the mean is reported)."""
    (tmp_path / "city").mkdir()
    a = _scene(tmp_path / "city" / "imgs_1.tif", 31)
    b = _scene(tmp_path / "b.tif", 32, (72, 64))
    report = evaluate_panel({"t2": tiny_weights}, [a, b], tmp_path / "rep", scales=[2])
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]
    for case in CASES[:5]:
        for method in ("bicubic", "lanczos", "unsharp", "t2"):
            per = {r["scene"]: r for r in rows if r["case"] == case and r["method"] == method
                   and r["scene"] not in ("mean", "worst")}
            worst = [r for r in rows if r["case"] == case and r["method"] == method
                     and r["scene"] == "worst"]
            assert len(worst) == 1
            place = min(per, key=lambda k: per[k]["gain_psnr"])
            assert worst[0]["place"] == place
            assert worst[0]["gain_psnr"] == per[place]["gain_psnr"]
    text = report.read_text()
    assert "## Worst place" in text and "## Per place" in text
    section = text.split("## Worst place")[1].split("##")[0]
    row = next(line for line in section.splitlines() if line.startswith("| x2 MTF 0.30 |"))
    assert row.count("(") == 4  # bicubic, Lanczos, unsharp mask and t2, each with its place
    with open(tmp_path / "rep" / "report.csv") as handle:
        worst_csv = [r for r in csv.DictReader(handle) if r["scene"] == "worst"]
    assert len(worst_csv) == 5 * 4 and all(r["place"] in ("city/imgs_1.tif", "b.tif")
                                           for r in worst_csv)
