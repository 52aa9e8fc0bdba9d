"""The opensr-test metrics (Aybar et al. 2024): properties that a wrong implementation
fails, one independent re-computation of the correctness triple, refusals of bad input,
and their section in the robustness panel's report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from affine import Affine
from scipy import ndimage

from s2sr import super_resolve
from s2sr.core.errors import DataError, UsageError
from s2sr.data.degrade import degrade
from s2sr.evaluation import opensr as o
from s2sr.evaluation.panel_report import evaluate_panel
from s2sr.evaluation.report import evaluate_consistency, evaluate_scene
from s2sr.inference.baselines import upsample
from s2sr.models import load_model
from support.rasters import UTM_TRANSFORM, texture, write_geotiff


def _field(n: int, seed: int, bands: int = 4) -> np.ndarray:
    """A periodic 1/f reflectance field ``(bands, n, n)`` (natural-image-like spectrum),
    so that a Fourier shift of it is an exact translation."""
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.normal(size=(n, n)))
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None])
    k[0, 0] = 1.0
    x = np.fft.ifft2(f / k).real
    x /= x.std()
    return np.stack([0.2 + 0.02 * b + 0.03 * x for b in range(bands)]).astype(np.float32)


def _shift(img: np.ndarray, d: tuple[float, float]) -> np.ndarray:
    return np.stack([np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(b), d)).real
                     for b in img]).astype(np.float32)


@pytest.mark.parametrize("scale", [2, 4])
def test_perfect_output_is_improvement_and_never_hallucination(scale: int) -> None:
    hr = texture((128, 128), seed=3)
    lr = degrade(hr, scale, 0.3)
    got = o.correctness(lr, hr, hr)
    assert got["improvement"] > 0.95
    assert got["hallucination"] < 0.02 and got["omission"] < 0.02
    assert got["improvement_px"] == 1.0 and got["hallucination_px"] == 0.0
    assert got["improvement"] + got["omission"] + got["hallucination"] == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [2, 4])
def test_interpolated_input_is_omission(scale: int) -> None:
    hr = texture((128, 128), seed=4)
    lr = degrade(hr, scale, 0.3)
    # opensr-test's own interpolation (harmonised to the truth's histogram before scoring,
    # so not exactly its reference): omission, never improvement
    same = o.correctness(lr, o.upsample(lr, scale), hr)
    assert same["omission"] > 0.65 and same["omission_px"] > 0.75
    assert same["improvement"] < 0.15
    bic = o.correctness(lr, upsample(lr, scale, "bicubic"), hr)
    assert bic["omission"] > 0.4
    assert bic["omission"] > max(bic["improvement"], bic["hallucination"])
    assert bic["omission"] > o.correctness(lr, hr, hr)["omission"] + 0.3


@pytest.mark.parametrize("scale", [2, 4])
def test_invented_detail_is_hallucination(scale: int) -> None:
    hr = texture((128, 128), seed=5)
    lr = degrade(hr, scale, 0.3)
    rng = np.random.default_rng(1)
    detail = rng.normal(0.0, 0.02, hr.shape[1:])
    detail -= ndimage.gaussian_filter(detail, 1.5)  # high frequencies only, not in HR
    invented = (hr + detail[None]).astype(np.float32)
    truth = o.correctness(lr, hr, hr)
    got = o.correctness(lr, invented, hr)
    assert got["hallucination"] > truth["hallucination"] + 0.5
    assert got["hallucination"] > max(got["improvement"], got["omission"])
    assert got["hallucination_px"] > 0.5


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("d", [(0.3, -0.45), (0.65, 0.35), (-1.7, 2.2)])
def test_subpixel_shift_is_recovered_by_spatial_consistency(
        scale: int, d: tuple[float, float]) -> None:
    lr = _field(128, seed=1)
    sr = upsample(_shift(lr, d), scale, "bicubic")  # the input moved by d input px
    got = o.consistency(lr, sr)["spatial"]
    assert got == pytest.approx(np.hypot(*d), abs=0.05)
    assert o.consistency(lr, upsample(lr, scale, "bicubic"))["spatial"] == pytest.approx(
        0.0, abs=0.02)


def test_shift_beyond_the_aligner_is_nan() -> None:
    lr = _field(128, seed=2)
    got = o.consistency(lr, upsample(_shift(lr, (6.0, 3.5)), 2, "bicubic"))
    assert np.isnan(got["spatial"])
    assert np.isfinite(got["reflectance"]) and got["reflectance"] > 0


@pytest.mark.parametrize("scale", [2, 4])
def test_perfect_output_degraded_by_the_same_operator_is_consistent(scale: int) -> None:
    hr = texture((128, 128), seed=6)
    lr = o.downsample(hr, scale)
    got = o.consistency(lr, hr)
    assert got["reflectance"] < 1e-4 and got["spectral"] < 0.01 and got["spatial"] == 0.0
    # another degradation (Gaussian MTF 0.3 + block mean) is not what opensr-test undoes
    other = o.consistency(degrade(hr, scale, 0.3), hr)["reflectance"]
    assert other > 5 * got["reflectance"]
    # independent: the crop, torch's antialiased bilinear, then the mean absolute error
    b = 16 // scale
    back = F.interpolate(torch.from_numpy(hr[:, 16:-16, 16:-16])[None],
                         scale_factor=1 / scale, mode="bilinear", antialias=True)[0].numpy()
    lr2 = degrade(hr, scale, 0.3)
    want = np.abs(lr2[:, b:-b, b:-b] - back).mean()
    assert other == pytest.approx(want, rel=1e-5)


def test_correctness_triple_against_an_independent_computation() -> None:
    hr = texture((96, 96), seed=7)
    lr = degrade(hr, 2, 0.3)
    sr = upsample(lr, 2, "unsharp")
    got = o.correctness(lr, sr, hr)
    t = torch.from_numpy
    lr_up = F.interpolate(t(lr[:, 8:-8, 8:-8])[None], scale_factor=2, mode="bilinear",
                          antialias=True)[0].double()
    h = t(hr[:, 16:-16, 16:-16]).double()
    s = t(o.harmonise(sr[:, 16:-16, 16:-16], hr[:, 16:-16, 16:-16])).double()

    def nd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (torch.abs(x - y) / torch.abs(x + y + 1e-8)).mean(0)

    d_ref, d_im, d_om = nd(lr_up, h), nd(s, h), nd(s, lr_up)
    thr = d_ref.flatten().kthvalue(int(0.75 * d_ref.numel())).values
    keep = (d_ref > thr) | (d_im > thr) | (d_om > thr)
    im, om = d_im[keep] / d_ref[keep], d_om[keep] / d_ref[keep]
    big_h = im + om - 1
    stack = torch.stack([im + om * (1 - torch.exp(-big_h * 0.05)),
                         om + im * (1 - torch.exp(-big_h * 0.05)),
                         torch.exp(-im * om * 0.05)])
    member = torch.softmax(-stack / 0.25, dim=0)
    want = member.mean(1).numpy()
    cls = member.argmax(0)
    assert [got["improvement"], got["omission"], got["hallucination"]] == pytest.approx(
        want.tolist(), abs=1e-6)
    assert got["omission_px"] == pytest.approx(float((cls == 1).float().mean()))


def test_harmonise_removes_gain_and_shift() -> None:
    hr = _field(96, seed=3)
    sr = _shift(hr * 1.3 + 0.05, (1.5, -2.0))
    fixed = o.harmonise(sr, hr)
    c = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(fixed - hr)[c].mean() < 0.1 * np.abs(sr - hr)[c].mean()


BAD = [
    (lambda lr, sr, hr: (lr[0], sr, hr), UsageError, "not (bands, height, width)"),
    (lambda lr, sr, hr: (lr[:3], sr, hr), UsageError, "bands"),
    (lambda lr, sr, hr: (lr, sr[:, :-1], hr[:, :-1]), UsageError, "integer multiple"),
    (lambda lr, sr, hr: (lr, sr[:, :, :lr.shape[2]], hr[:, :, :lr.shape[2]]), UsageError,
     "integer multiple"),
    (lambda lr, sr, hr: (lr, sr, hr[:, :-2]), UsageError, "truth"),
    (lambda lr, sr, hr: (lr, np.where(sr > 0.2, np.nan, sr), hr), DataError, "NaN"),
    (lambda lr, sr, hr: (lr, sr, np.full_like(hr, np.inf)), DataError, "NaN or infinite"),
    (lambda lr, sr, hr: (lr[:, :0], sr[:, :0], hr[:, :0]), DataError, "empty"),
    (lambda lr, sr, hr: (lr.astype(str), sr, hr), DataError, "dtype"),
    (lambda lr, sr, hr: (lr[:, :9, :9], sr[:, :18, :18], hr[:, :18, :18]), DataError,
     "border"),
]


@pytest.mark.parametrize(("make", "error", "words"), BAD)
def test_bad_inputs_are_refused_in_one_line(make, error, words) -> None:  # type: ignore[no-untyped-def]
    hr = texture((64, 64), seed=8)
    lr = degrade(hr, 2, 0.3)
    a, b, c = make(lr, hr.copy(), hr.copy())
    for call in (lambda: o.correctness(a, b, c), lambda: o.opensr_metrics(a, b, c)):
        with pytest.raises(error, match=re.escape(words)) as info:
            call()
        assert "\n" not in str(info.value) and ": " in str(info.value)


def test_equal_input_and_truth_is_a_data_error() -> None:
    lr = np.full((4, 32, 32), 0.2, np.float32)
    hr = np.full((4, 64, 64), 0.2, np.float32)
    with pytest.raises(DataError, match="no detail"):
        o.correctness(lr, hr, hr)


def test_panel_writes_the_opensr_section(tmp_path: Path, tiny_weights: Path,
                                         tiny_weights_x4: Path) -> None:
    scenes = []
    for name, seed, shape in (("a.tif", 31, (64, 64)), ("small.tif", 32, (32, 40))):
        dn = np.rint(texture(shape, seed=seed) * 10000).astype(np.uint16)
        scenes.append(write_geotiff(tmp_path / name, dn))
    report = evaluate_panel({"t2": tiny_weights, "t4": tiny_weights_x4}, scenes,
                            tmp_path / "rep")
    text = report.read_text()
    head, sep, tail = text.partition("\n## opensr-test metrics (mean over scenes)\n")
    assert sep and head.rstrip().endswith("|")  # after the per-place table, which is kept
    assert "## Per place: PSNR dB (gain over bicubic) / SSIM" in head
    assert "Aybar et al." in tail and "github.com/ESAOpenSR/opensr-test" in tail
    assert "| case | method | L1 | SAD (deg) | shift (px) | improvement | omission | " \
           "hallucination |" in tail
    assert "## opensr-test reflectance target" in tail
    assert "| method | a.tif | small.tif |" in tail
    assert "## opensr-test metrics per place" in tail
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]
    hr = texture((64, 64), seed=31)
    hr = (np.rint(hr * 10000) / 10000).astype(np.float32)
    lr = degrade(hr, 2, 0.3)
    row = next(r for r in rows if r["case"] == "x2 MTF 0.30" and r["scene"] == "a.tif"
               and r["method"] == "bicubic")
    want = o.opensr_metrics(lr, upsample(lr, 2, "bicubic"), hr)
    for key in ("reflectance", "spectral", "improvement", "omission", "hallucination"):
        assert row[f"osr_{key}"] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    # 32 px at x4 leaves no input pixel inside opensr-test's border: left out, not a crash
    small = next(r for r in rows if r["case"] == "x4 MTF 0.30" and r["scene"] == "small.tif"
                 and r["method"] == "t4")
    assert small["osr_reflectance"] is None and small["psnr"] > 0
    mean = next(r for r in rows if r["case"] == "x4 MTF 0.30" and r["scene"] == "mean"
                and r["method"] == "t4")
    big = next(r for r in rows if r["case"] == "x4 MTF 0.30" and r["scene"] == "a.tif"
               and r["method"] == "t4")
    assert mean["osr_reflectance"] == pytest.approx(big["osr_reflectance"])
    # the undegraded scene as the input: each output's consistency beside bicubic's
    assert "## opensr-test consistency on the undegraded scenes" in tail
    arts = json.loads((tmp_path / "rep" / "report.json").read_text())["artefacts"]
    art = next(r for r in arts if r["scene"] == "a.tif" and r["method"] == "bicubic x2")
    assert art["osr_reflectance"] == pytest.approx(
        o.consistency(hr, upsample(hr, 2, "bicubic"))["reflectance"], rel=1e-4)
    assert (tmp_path / "rep" / "artefacts.csv").read_text().splitlines()[0] == \
        "scene,method,scale,score,over,line_x,line_y,lines_over"
    line = next(ln for ln in tail.splitlines() if ln.startswith("| a.tif | t4 | "))
    assert line.count("|") == 6
    with open(tmp_path / "rep" / "opensr.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len([r for r in rows if r["scene"] != "worst"])
    cell = next(r for r in table if r["case"] == "x2 MTF 0.30" and r["scene"] == "a.tif"
                and r["method"] == "t2")
    bic = next(r for r in table if r["case"] == "x2 MTF 0.30" and r["scene"] == "a.tif"
               and r["method"] == "bicubic")
    assert float(cell["reflectance_minus_bicubic"]) == pytest.approx(
        float(cell["reflectance"]) - float(bic["reflectance"]))


def test_scene_and_consistency_reports_carry_the_metrics(tmp_path: Path,
                                                         tiny_weights: Path) -> None:
    hr = texture((96, 96), seed=9)
    lr_dn = np.rint(degrade(hr, 2, 0.3) * 10000).astype(np.uint16)
    hr_dn = np.rint(hr * 10000).astype(np.uint16)
    write_geotiff(tmp_path / "lr.tif", lr_dn, transform=UTM_TRANSFORM * Affine.scale(2))
    write_geotiff(tmp_path / "hr.tif", hr_dn)
    report = evaluate_scene(tiny_weights, tmp_path / "lr.tif", tmp_path / "hr.tif",
                            tmp_path / "rep", figures=False, name="tiny")
    text = report.read_text()
    assert text.index("## Artefact score") < text.index("## opensr-test metrics")
    for method in ("bicubic", "lanczos", "unsharp", "tiny", "tiny +consistency"):
        assert f"\n| {method} | " in text.split("## opensr-test metrics")[1], method
    data = json.loads((tmp_path / "rep" / "report.json").read_text())["opensr"]
    lr, truth = lr_dn.astype(np.float32) / 10000, hr_dn.astype(np.float32) / 10000
    sr = np.asarray(super_resolve(lr, load_model(tiny_weights), device="cpu"))
    want = o.opensr_metrics(lr, sr, truth)
    for key in ("reflectance", "spectral", "improvement", "omission", "hallucination"):
        assert data["tiny"][f"osr_{key}"] == pytest.approx(want[key], rel=1e-4, abs=1e-6)
    # back-projection makes the output consistent with its input: opensr-test sees it too
    assert data["tiny +consistency"]["osr_reflectance"] < data["tiny"]["osr_reflectance"]

    write_geotiff(tmp_path / "in.tif", lr_dn)
    write_geotiff(tmp_path / "out.tif", np.rint(sr * 10000).astype(np.uint16),
                  transform=UTM_TRANSFORM * Affine.scale(0.5))
    check = evaluate_consistency(tmp_path / "out.tif", tmp_path / "in.tif", tmp_path / "c")
    got = json.loads((tmp_path / "c" / "consistency.json").read_text())["opensr"]
    stored = np.rint(sr * 10000) / 10000
    assert got["osr_reflectance"] == pytest.approx(
        o.consistency(lr, stored.astype(np.float32))["reflectance"], rel=1e-4)
    assert got["osr_improvement"] is None
    assert "| output | " in check.read_text().split("## opensr-test metrics")[1]
