"""``s2sr evaluate``: reports, baselines, figures, consistency and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from s2sr import super_resolve
from s2sr.cli.main import cli
from s2sr.data.degrade import degrade
from s2sr.data.degrade_torch import back_project, degrade_torch
from s2sr.evaluation.consistency import consistency
from s2sr.evaluation.report import evaluate_consistency, evaluate_models, evaluate_scene
from s2sr.inference.baselines import upsample
from s2sr.losses.metrics import Conventions
from s2sr.models import build_model, load_model, save_model
from s2sr.models.pretrained import pretrained_path
from support.rasters import UTM_TRANSFORM, texture, write_geotiff


def _keys_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """Independent bicubic (Keys, a = -0.75, half-pixel centres, clamped edges)."""
    def w(t: np.ndarray) -> np.ndarray:
        a, t = -0.75, np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    def matrix(n: int) -> np.ndarray:
        m = np.zeros((n * scale, n))
        for i in range(n * scale):
            x = (i + 0.5) / scale - 0.5
            base = int(np.floor(x))
            for k in range(base - 1, base + 3):
                m[i, min(max(k, 0), n - 1)] += w(np.array(x - k))
        return m

    mh, mw = matrix(lr.shape[1]), matrix(lr.shape[2])
    return np.stack([mh @ band @ mw.T for band in lr.astype(np.float64)])


def test_bicubic_baseline_equals_independent_computation() -> None:
    lr = texture((20, 24), seed=1)
    np.testing.assert_allclose(upsample(lr, 2), _keys_bicubic(lr, 2), atol=1e-5)
    np.testing.assert_allclose(upsample(lr, 4), _keys_bicubic(lr, 4), atol=1e-5)


def test_consistency_of_a_model_output_with_its_input() -> None:
    """The shipped x2 model's output, degraded back, reproduces its input (closer than
    bicubic does); the same output shifted by half an input pixel, or blurred, does not."""
    hr = texture((128, 128), seed=2)
    lr = degrade(hr, 2)
    sr = super_resolve(lr, load_model(pretrained_path(2)))
    good = consistency(sr, lr, 2)
    assert good["mae_mean"] < 6e-4 and abs(good["bias_mean"]) < 2e-4  # reflectance
    assert good["mae_mean"] < consistency(upsample(lr, 2), lr, 2)["mae_mean"]
    for worse in (ndimage.shift(sr, (0, 0, 1), mode="nearest"),
                  ndimage.gaussian_filter(sr, (0, 2, 2))):
        bad = consistency(worse, lr, 2)
        assert bad["mae_mean"] > 4 * good["mae_mean"] and bad["sam"] > good["sam"]


def test_consistency_measures_brightness_and_spectral_errors() -> None:
    hr = texture((64, 64), seed=2)
    lr = degrade(hr, 2)
    # the degradation is linear: 1.1 x the truth comes back 10 % too bright, per band, with
    # the same spectral shape (no angle); a change of one band turns the spectra
    off = consistency(hr * 1.1, lr, 2)
    np.testing.assert_allclose(off["bias"], 0.1 * lr.mean(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(off["mae"], 0.1 * np.abs(lr).mean(axis=(1, 2)), rtol=1e-4)
    assert off["sam"] == pytest.approx(0, abs=1e-2)
    turned = hr.copy()
    turned[0] += 0.05
    bent = consistency(turned, lr, 2)
    np.testing.assert_allclose(bent["bias"], [0.05] + [0.0] * (hr.shape[0] - 1), atol=1e-6)
    assert bent["sam"] > 1.0
    # the torch degradation matches the numpy one, edges included
    t = degrade_torch(torch.from_numpy(hr)[None], 2)[0].numpy()
    np.testing.assert_allclose(t, lr, atol=1e-6)
    # back-projection makes any output consistent
    bad = torch.from_numpy(upsample(lr, 2) * 0.9 + 0.01)[None]
    fixed = back_project(bad, torch.from_numpy(lr)[None], 2, 5)[0].numpy()
    assert consistency(fixed, lr, 2)["mae_mean"] < 0.1 * consistency(bad[0].numpy(), lr,
                                                                      2)["mae_mean"]


def test_report_aggregates_equal_patch_means_and_figures(wald_dataset: Path,
                                                          tmp_path: Path) -> None:
    torch.manual_seed(0)
    w1 = save_model(build_model("edsr-tiny", scale=2, global_residual=True),
                    tmp_path / "a.safetensors")
    w2 = save_model(build_model("edsr-tiny", scale=2), tmp_path / "b.safetensors")
    report = evaluate_models({"A": w1, "B": w2}, [wald_dataset], tmp_path / "rep",
                             split="val")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["conventions"]["crop"] == 2 and "data range 1.0" in data["conventions"][
        "description"]
    methods = [s["method"] for s in data["summary"]]
    assert methods == ["bicubic", "lanczos", "unsharp", "A", "A +consistency", "B",
                       "B +consistency"]
    for s in data["summary"]:
        rows = [r for r in data["patches"] if r["method"] == s["method"]
                and r["kind"] == s["kind"]]
        assert s["patches"] == len(rows) > 0
        assert s["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))
        assert s["ssim"] == pytest.approx(np.mean([r["ssim"] for r in rows]))
        assert s["psnr_bands"] == pytest.approx(np.mean([r["psnr_bands"] for r in rows], 0))
    with open(tmp_path / "rep" / "report.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert float(csv_rows[0]["psnr"]) == pytest.approx(data["summary"][0]["psnr"])
    text = report.read_text()
    assert "| method | SE20>SE10 PSNR | SE20>SE10 SSIM |" in text
    assert "Conventions:" in text and "Consistency" in text
    figures = sorted((tmp_path / "rep" / "figures").glob("*.png"))
    assert len(figures) == 6  # 2 models x best/median/worst
    with Image.open(figures[0]) as img:
        assert img.text["s2sr:panels"] == "8"  # 4 columns x (true colour, NIR false colour)
    # the consistency variant is consistent with its input
    cons = {s["method"]: s["cons_mae"] for s in data["summary"]}
    assert cons["B +consistency"] < cons["B"]


def test_scene_form_and_bad_input(tmp_path: Path) -> None:
    hr = texture((64, 64), seed=3)
    lr = degrade(hr, 2)
    # the input on a 20 m grid over the same area as the 10 m reference
    write_geotiff(tmp_path / "lr.tif", np.rint(lr * 10000).astype(np.uint16),
                  transform=UTM_TRANSFORM * Affine.scale(2))
    write_geotiff(tmp_path / "hr.tif", np.rint(hr * 10000).astype(np.uint16))
    write_geotiff(tmp_path / "hr3.tif", np.rint(hr[:3] * 10000).astype(np.uint16),
                  descriptions=("B02", "B03", "B04"))
    write_geotiff(tmp_path / "odd.tif", np.rint(hr[:, :60] * 10000).astype(np.uint16))
    torch.manual_seed(0)
    w = save_model(build_model("edsr-tiny", scale=2, global_residual=True),
                   tmp_path / "m.safetensors")
    report = evaluate_scene(w, tmp_path / "lr.tif", tmp_path / "hr.tif", tmp_path / "rep",
                            conv=Conventions(data_range=1.0, crop=4))
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["conventions"]["crop"] == 4 and report.exists()
    run = CliRunner().invoke
    res = run(cli, ["evaluate", "scene", "--weights", str(w), "--lr", str(tmp_path / "lr.tif"),
                    "--hr", str(tmp_path / "odd.tif"), "-o", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "size ratio" in res.output
    res = run(cli, ["evaluate", "scene", "--weights", str(w), "--lr", str(tmp_path / "lr.tif"),
                    "--hr", str(tmp_path / "hr3.tif"), "-o", str(tmp_path / "r3")])
    assert res.exit_code == 1 and "lacks band(s) B08" in res.output
    res = run(cli, ["evaluate", "dataset", "--weights", str(w), "--dataset",
                    str(tmp_path / "none"), "-o", str(tmp_path / "r4")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = run(cli, ["evaluate", "scene", "--weights", str(tmp_path / "x.safetensors"), "--lr",
                    str(tmp_path / "lr.tif"), "--hr", str(tmp_path / "hr.tif"), "-o",
                    str(tmp_path / "r5")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_predict_consistency_flag_and_check(tmp_path: Path) -> None:
    hr = texture((96, 96), seed=4)
    lr = np.rint(degrade(hr, 2) * 10000).astype(np.uint16)
    src = write_geotiff(tmp_path / "in.tif", lr)
    torch.manual_seed(0)
    w = save_model(build_model("edsr-tiny", scale=2), tmp_path / "m.safetensors")
    run = CliRunner().invoke
    for flag, name in (([], "plain.tif"), (["--consistency"], "cons.tif")):
        res = run(cli, ["predict", str(src), "-o", str(tmp_path / name), "--weights", str(w),
                        "-q", "--tile", "64", *flag])
        assert res.exit_code == 0, res.output
    plain = evaluate_consistency(tmp_path / "plain.tif", src, tmp_path / "c1")
    cons = evaluate_consistency(tmp_path / "cons.tif", src, tmp_path / "c2")
    mae_plain = json.loads((plain.parent / "consistency.json").read_text())["mae"]
    mae_cons = json.loads((cons.parent / "consistency.json").read_text())["mae"]
    assert max(mae_cons) < 0.25 * min(mae_plain)
    with rasterio.open(tmp_path / "cons.tif") as ds:
        assert ds.tags()["S2SR_CONSISTENCY"].startswith("back-projection")
    res = run(cli, ["evaluate", "consistency", str(tmp_path / "cons.tif"), "--lr",
                    str(tmp_path / "cons.tif"), "-o", str(tmp_path / "c3")])
    assert res.exit_code == 2 and "not 2 or 4 times" in res.output
