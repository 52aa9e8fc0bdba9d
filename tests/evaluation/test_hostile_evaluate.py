"""Hostile and bad input for ``s2sr evaluate`` (issue 9): every case answers with a one-line
error and the right exit code, or works; no report folder or temporary is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner, Result

from s2sr.cli.main import cli
from s2sr.data import DegradeOptions, degrade_scene
from s2sr.data.degrade import degrade
from s2sr.evaluation.report import evaluate_scene
from s2sr.models import build_model, save_model
from support.rasters import UTM_TRANSFORM, texture, write_geotiff

LR_TRANSFORM = UTM_TRANSFORM * Affine.scale(2)  # 20 m input over the 10 m reference


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def _one_line_error(res: Result, code: int, *needles: str) -> str:
    """The command failed with ``code`` and one ``s2sr: error:`` line naming ``needles``."""
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("s2sr: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _left(folder: Path, name: str) -> list[str]:
    """What a run writing ``folder/name`` left in ``folder`` (report, temporaries, locks)."""
    return sorted(p.name for p in folder.iterdir() if name in p.name)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small datasets (x2 only, x2 + x4, RGB only), models and a co-registered scene pair."""
    root = tmp_path_factory.mktemp("hostile_eval")
    dn = np.rint(texture((72, 72), seed=40) * 10000).astype(np.uint16)
    scene = write_geotiff(root / "scene.tif", dn)
    rgb = write_geotiff(root / "rgb.tif", dn[:3], descriptions=("B02", "B03", "B04"))
    degrade_scene(scene, root / "x2", DegradeOptions(patch=12, split="test", site="a"))
    degrade_scene(scene, root / "mixed", DegradeOptions(patch=12, split="test", site="a"))
    degrade_scene(scene, root / "mixed", DegradeOptions(scale=4, patch=8, split="test",
                                                        site="a"))
    degrade_scene(rgb, root / "rgb", DegradeOptions(patch=12, split="test", site="a",
                                                    bands=("B02", "B03", "B04")))
    out: dict[str, Path] = {"root": root, "x2": root / "x2", "mixed": root / "mixed",
                            "rgb": root / "rgb"}
    torch.manual_seed(0)
    out["m2"] = save_model(build_model("edsr-tiny", scale=2), root / "m2.safetensors")
    out["m4"] = save_model(build_model("edsr-tiny", scale=4), root / "m4.safetensors")
    out["mrgb"] = save_model(build_model("edsr-tiny", scale=2, bands=("B02", "B03", "B04")),
                             root / "mrgb.safetensors")
    hr = texture((64, 64), seed=41)
    out["hr"] = write_geotiff(root / "hr.tif", np.rint(hr * 10000).astype(np.uint16))
    out["lr"] = write_geotiff(root / "lr.tif", np.rint(degrade(hr, 2) * 10000).astype(
        np.uint16), transform=LR_TRANSFORM)
    out["garbage"] = root / "garbage.safetensors"
    out["garbage"].write_bytes(b"\x00" * 64)
    return out


class TestScaleAndBandMismatch:
    """Item 1: a model that fits no evaluated pair kind is an error, never left out."""

    def test_x4_model_on_x2_dataset(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", f"big={data['m4']}", "--dataset", data["x2"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "model big is x4", "SE20>SE10 (x2)", "--kinds")
        assert not (tmp_path / "rep").exists()

    def test_kinds_selection_leaves_no_overlap(self, data: dict[str, Path],
                                               tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["m4"], "--dataset", data["mixed"], "--kinds",
                   "SE20>SE10", "-o", tmp_path / "rep")
        _one_line_error(res, 2, "model m4 is x4", "--kinds", "SE40>SE10")

    def test_kind_without_a_model_of_its_scale(self, data: dict[str, Path],
                                               tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["m2"], "--dataset", data["mixed"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "SE40>SE10 is x4", "--kinds SE20>SE10")

    def test_each_model_on_its_own_scale(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["m2"], "--weights", data["m4"], "--dataset",
                   data["mixed"], "--no-figures", "-o", tmp_path / "rep")
        assert res.exit_code == 0, res.output
        summary = json.loads((tmp_path / "rep" / "report.json").read_text())["summary"]
        got = {(s["method"], s["kind"]) for s in summary}
        assert ("m2", "SE20>SE10") in got and ("m4", "SE40>SE10") in got
        assert ("m2", "SE40>SE10") not in got and ("m4", "SE20>SE10") not in got

    def test_model_bands_missing_from_dataset(self, data: dict[str, Path],
                                              tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["m2"], "--dataset", data["rgb"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 1, "lack B08", "B02, B03, B04")

    def test_models_with_different_bands(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["m2"], "--weights", data["mrgb"], "--dataset",
                   data["x2"],
                   "-o", tmp_path / "rep")
        _one_line_error(res, 2, "different bands", "mrgb: B02,B03,B04")


class TestOutputPolicy:
    """Item 4: one --overwrite policy, checked before any model or data is loaded."""

    def test_non_empty_report_needs_overwrite(self, data: dict[str, Path],
                                              tmp_path: Path) -> None:
        rep = tmp_path / "rep"
        rep.mkdir()
        (rep / "old.txt").write_text("keep me")
        args: list[str | Path] = ["dataset", "--weights", data["m2"], "--dataset", data["x2"],
                                  "--no-figures", "-o", rep]
        _one_line_error(_run(*args), 2, "not empty", "--overwrite")
        assert (rep / "old.txt").read_text() == "keep me"
        res = _run(*args, "--overwrite")
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in rep.iterdir()) == ["report.csv", "report.json",
                                                          "report.md"]
        assert _left(tmp_path, "rep") == ["rep"]  # no temporary, old copy or lock left

    def test_existing_empty_folder_is_used(self, data: dict[str, Path],
                                           tmp_path: Path) -> None:
        (tmp_path / "rep").mkdir()
        res = _run("dataset", "--weights", data["m2"], "--dataset", data["x2"], "--no-figures",
                   "-o",
                   tmp_path / "rep")
        assert res.exit_code == 0 and (tmp_path / "rep" / "report.md").is_file(), res.output

    @pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
    def test_output_is_a_file(self, data: dict[str, Path], tmp_path: Path,
                              overwrite: list[str]) -> None:
        target = tmp_path / "report.md"
        target.write_text("mine")
        # garbage weights: the refusal must come before the model is loaded
        res = _run("dataset", "--weights", data["garbage"], "--dataset", data["x2"], "-o", target,
                   *overwrite)
        _one_line_error(res, 2, "is a file")
        assert target.read_text() == "mine"

    def test_output_inside_the_dataset(self, data: dict[str, Path]) -> None:
        res = _run("dataset", "--weights", data["garbage"], "--dataset", data["x2"],
                   "--overwrite", "-o",
                   data["x2"] / "report")
        _one_line_error(res, 2, "inside the input folder")
        assert not (data["x2"] / "report").exists()

    def test_output_equal_to_the_dataset(self, data: dict[str, Path]) -> None:
        before = sorted(p.name for p in data["x2"].iterdir())
        res = _run("dataset", "--weights", data["m2"], "--dataset", data["x2"], "--overwrite", "-o",
                   data["x2"])
        _one_line_error(res, 2, "is the input")
        assert sorted(p.name for p in data["x2"].iterdir()) == before

    def test_scene_form_existing_report_refused(self, data: dict[str, Path],
                                                tmp_path: Path) -> None:
        rep = tmp_path / "rep"
        rep.mkdir()
        (rep / "x").write_text("x")
        res = _run("scene", "--weights", data["garbage"], "--lr", data["lr"], "--hr", data["hr"],
                   "-o", rep)
        _one_line_error(res, 2, "not empty")

    def test_consistency_form_existing_report_refused(self, data: dict[str, Path],
                                                      tmp_path: Path) -> None:
        rep = tmp_path / "rep"
        rep.mkdir()
        (rep / "x").write_text("x")
        res = _run("consistency", data["hr"], "--lr", data["lr"], "-o", rep)
        _one_line_error(res, 2, "not empty")
        res = _run("consistency", data["hr"], "--lr", data["lr"], "-o", rep, "--overwrite")
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in rep.iterdir()) == ["consistency.json", "consistency.md"]


class TestAtomicReport:
    """Items 3 and 7: a failed or stopped evaluate leaves nothing behind."""

    def test_failure_while_scoring_leaves_nothing(self, tmp_path: Path) -> None:
        zeros = np.zeros((4, 32, 32), np.uint16)  # valid data (no nodata) but all zero
        write_geotiff(tmp_path / "lr.tif", zeros, transform=LR_TRANSFORM)
        write_geotiff(tmp_path / "hr.tif", np.zeros((4, 64, 64), np.uint16))
        torch.manual_seed(0)
        w = save_model(build_model("edsr-tiny", scale=2), tmp_path / "m.safetensors")
        res = _run("scene", "--weights", w, "--lr", tmp_path / "lr.tif", "--hr",
                   tmp_path / "hr.tif",
                   "-o", tmp_path / "out" / "rep")
        _one_line_error(res, 1, "spectral angle")
        assert _left(tmp_path / "out", "rep") == []

    def test_sigterm_leaves_nothing(self, tmp_path: Path) -> None:
        hr = texture((384, 384), seed=42)
        lr = write_geotiff(tmp_path / "lr.tif", np.rint(degrade(hr, 2) * 10000).astype(
            np.uint16), transform=LR_TRANSFORM)
        hr_path = write_geotiff(tmp_path / "hr.tif", np.rint(hr * 10000).astype(np.uint16))
        torch.manual_seed(0)
        w = save_model(build_model("edsr-tiny", scale=2), tmp_path / "m.safetensors")
        out = tmp_path / "out"
        out.mkdir()
        # the figures are the slow part: stop the run once its temporary report exists
        proc = subprocess.Popen(
            [sys.executable, "-m", "s2sr.cli.main", "evaluate", "scene", "--weights", str(w),
             "--lr", str(lr), "--hr", str(hr_path), "-o", str(out / "rep")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".rep.s2sr-") for p in out.iterdir()):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "evaluate ended before it could be stopped"
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err  # 128 + SIGTERM, after the clean-up
        assert err.strip().splitlines() == ["s2sr: stopped by SIGTERM; no partial output was "
                                            "left"], err
        assert _left(out, "rep") == []


class TestOptions:
    """Item 5: numbers and options, one-line errors, nothing written."""

    @pytest.mark.parametrize(("args", "code", "needle"), [
        (["--data-range", "0"], 2, "--data-range must be a positive number, got 0"),
        (["--data-range", "nan"], 2, "got nan"),
        (["--data-range", "inf"], 2, "got inf"),
        (["--data-range", "-1"], 2, "got -1"),
        (["--crop", "-1"], 2, "--crop must be 0 or more"),
        (["--crop", "100000"], 2, "--crop 100000 leaves 0 px"),
        (["--split", "bogus"], 2, "--split 'bogus' is not a split"),
        (["--split", "train"], 1, "no accepted 'train' patches"),
        (["--kinds", "SE20>SE10,XX1>XX0"], 2, "--kinds XX1>XX0: not among"),
        (["--kinds", "SE20>SE10,,"], 2, "empty entry"),
    ])
    def test_dataset_form(self, data: dict[str, Path], tmp_path: Path, args: list[str],
                          code: int, needle: str) -> None:
        res = _run("dataset", "--weights", data["m2"], "--dataset", data["x2"], *args, "-o",
                   tmp_path / "rep")
        _one_line_error(res, code, needle)
        assert not (tmp_path / "rep").exists()

    def test_weights_with_empty_name(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", f"={data['m2']}", "--dataset", data["x2"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "empty name", "NAME=FILE")

    def test_two_weights_with_one_name(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", f"a={data['m2']}", "--weights", f"a={data['m4']}",
                   "--dataset", data["x2"], "-o", tmp_path / "rep")
        _one_line_error(res, 2, "two --weights are named 'a'")

    def test_weights_is_a_folder(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("dataset", "--weights", data["x2"], "--dataset", data["x2"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "is a folder")


class TestSceneGrids:
    """Item 5, scene form: the pair must be one area on grids ``scale`` times apart."""

    def _hr(self, tmp_path: Path, **kwargs: Any) -> Path:
        hr = np.rint(texture((64, 64), seed=41) * 10000).astype(np.uint16)
        return write_geotiff(tmp_path / "hr_x.tif", hr, **kwargs)

    def test_hr_not_scale_times_lr(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("scene", "--weights", data["m4"], "--lr", data["lr"], "--hr", data["hr"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "size ratio must equal the scale (4)")
        assert not (tmp_path / "rep").exists()

    def test_crs_differs(self, data: dict[str, Path], tmp_path: Path) -> None:
        hr = self._hr(tmp_path, crs="EPSG:32632")
        res = _run("scene", "--weights", data["m2"], "--lr", data["lr"], "--hr", hr, "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "different coordinate systems")

    def test_bounds_differ(self, data: dict[str, Path], tmp_path: Path) -> None:
        hr = self._hr(tmp_path, transform=UTM_TRANSFORM * Affine.translation(8, 0))
        res = _run("scene", "--weights", data["m2"], "--lr", data["lr"], "--hr", hr, "-o",
                   tmp_path / "rep")
        _one_line_error(res, 2, "cover the same area")

    def test_huge_scene_refused_before_reading(self, data: dict[str, Path],
                                               tmp_path: Path) -> None:
        for name, size, transform in (("big_lr.tif", 8000, LR_TRANSFORM),
                                      ("big_hr.tif", 16000, UTM_TRANSFORM)):
            with rasterio.open(tmp_path / name, "w", driver="GTiff", width=size, height=size,
                               count=4, dtype="uint16", crs="EPSG:32633", transform=transform,
                               tiled=True, sparse_ok=True) as dst:
                dst.descriptions = ("B02", "B03", "B04", "B08")
        res = _run("scene", "--weights", data["m2"], "--lr", tmp_path / "big_lr.tif", "--hr",
                   tmp_path / "big_hr.tif", "-o", tmp_path / "rep")
        _one_line_error(res, 1, "16000x16000 px", "gdal_translate -srcwin")


class TestSceneData:
    """Item 6: NaN/inf, nodata and band sets in the scene form's rasters."""

    def _lr(self, tmp_path: Path, data: np.ndarray, **kwargs: Any) -> Path:
        return write_geotiff(tmp_path / "lr_x.tif", data, transform=LR_TRANSFORM,
                             **kwargs)

    def test_nan_in_input_named_with_its_position(self, data: dict[str, Path],
                                                  tmp_path: Path) -> None:
        lr = degrade(texture((64, 64), seed=41), 2).astype(np.float32)
        lr[2, 5, 7] = np.nan
        res = _run("scene", "--weights", data["m2"], "--lr", self._lr(tmp_path, lr), "--hr",
                   data["hr"],
                   "-o", tmp_path / "rep")
        _one_line_error(res, 1, "1 NaN/inf pixel(s), the first at row 5, column 7")
        assert not (tmp_path / "rep").exists()

    def test_inf_in_reference(self, data: dict[str, Path], tmp_path: Path) -> None:
        hr = texture((64, 64), seed=41).astype(np.float32)
        hr[0, 60, 3] = np.inf
        path = write_geotiff(tmp_path / "hr_inf.tif", hr)
        res = _run("scene", "--weights", data["m2"], "--lr", data["lr"], "--hr", path, "-o",
                   tmp_path / "rep")
        _one_line_error(res, 1, "reference", "row 60, column 3")

    def test_all_nodata_input(self, data: dict[str, Path], tmp_path: Path) -> None:
        lr = self._lr(tmp_path, np.zeros((4, 32, 32), np.uint16), nodata=0)
        res = _run("scene", "--weights", data["m2"], "--lr", lr, "--hr", data["hr"], "-o",
                   tmp_path / "rep")
        _one_line_error(res, 1, "holds no valid pixel")

    def test_partial_nan_nodata_is_not_scored_as_data(self, data: dict[str, Path],
                                                      tmp_path: Path) -> None:
        lr = degrade(texture((64, 64), seed=41), 2).astype(np.float32)
        lr[:, :4, :] = np.nan
        res = _run("scene", "--weights", data["m2"], "--lr", self._lr(tmp_path, lr, nodata=np.nan),
                   "--hr", data["hr"], "-o", tmp_path / "rep")
        _one_line_error(res, 1, "128 nodata pixel(s)", "crop both rasters")

    def test_reference_lacks_a_band(self, data: dict[str, Path], tmp_path: Path) -> None:
        hr = np.rint(texture((64, 64), seed=41) * 10000).astype(np.uint16)
        path = write_geotiff(tmp_path / "hr_b.tif", hr,
                             descriptions=("B02", "B03", "B04", "B05"))
        res = _run("scene", "--weights", data["m2"], "--lr", data["lr"], "--hr", path, "-o",
                   tmp_path / "rep")
        _one_line_error(res, 1, "B08")

    def test_consistency_output_with_nan(self, data: dict[str, Path], tmp_path: Path) -> None:
        sr = texture((64, 64), seed=41).astype(np.float32)
        sr[1, 10, 20] = np.nan
        path = write_geotiff(tmp_path / "sr.tif", sr)
        res = _run("consistency", path, "--lr", data["lr"], "-o", tmp_path / "rep")
        _one_line_error(res, 1, "output", "row 10, column 20")


class TestFigures:
    """Item 2: --no-figures is honoured by the scene form too."""

    @pytest.mark.parametrize("no_figures", [True, False])
    def test_scene_form(self, data: dict[str, Path], tmp_path: Path, no_figures: bool) -> None:
        rep = tmp_path / "rep"
        evaluate_scene(data["m2"], data["lr"], data["hr"], rep, figures=not no_figures)
        assert (rep / "figures").exists() is not no_figures
        assert ("## Figures" in (rep / "report.md").read_text()) is not no_figures

    def test_scene_form_cli(self, data: dict[str, Path], tmp_path: Path) -> None:
        res = _run("scene", "--weights", f"mine={data['m2']}", "--lr", data["lr"], "--hr",
                   data["hr"],
                   "--no-figures", "-o", tmp_path / "rep")
        assert res.exit_code == 0, res.output
        assert not (tmp_path / "rep" / "figures").exists()
        data_ = json.loads((tmp_path / "rep" / "report.json").read_text())
        methods = [s["method"] for s in data_["summary"]]
        assert methods == ["bicubic", "lanczos", "unsharp", "mine", "mine +consistency"]
        # the artefact score of every output: one number per method, in md, csv and json
        assert set(data_["artefacts"]) == {"bicubic", "lanczos", "unsharp", "mine"}
        assert all(v >= 0 for v in data_["artefacts"].values())
        text = (tmp_path / "rep" / "report.md").read_text()
        assert "## Artefact score" in text and "| mine | " in text
        assert "artefact" in (tmp_path / "rep" / "report.csv").read_text().splitlines()[0]
