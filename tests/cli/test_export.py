"""``s2sr export`` and ``predict --backend/--threads`` on the command line: what they
print, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import rasterio

from s2sr.cli import export as export_cli
from s2sr.cli.main import cli
from s2sr.core.constants import BACKENDS
from s2sr.models import serialize as export_models
from support.cli import no_ort, run_cli
from support.rasters import field, write_geotiff


def _error_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2sr: error: "), out
    return lines[0]


def test_cli_choices_match_the_library() -> None:
    """The CLI repeats them so that ``--help`` needs no torch."""
    assert export_cli.FORMATS == export_models.FORMATS
    predict = cli.commands["predict"]
    backend = next(p for p in predict.params if p.name == "backend")
    assert isinstance(backend.type, click.Choice) and backend.default == "auto"
    assert list(backend.type.choices) == list(BACKENDS)
    threads = next(p for p in predict.params if p.name == "threads")
    assert threads.default is None


def test_export_torchscript_prints_its_checks(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript", "-o", out)
    assert code == 0, text
    lines = text.strip().splitlines()
    assert len(lines) == 4
    for line, shape in zip(lines, ["(1, 4, 32, 32)", "(2, 4, 48, 40)", "(1, 4, 67, 53)"],
                           strict=False):
        assert line.startswith(f"checked against PyTorch on {shape}: max abs difference ")
        assert line.endswith("reflectance (limit 0.0001)")
    assert lines[3].startswith(f"wrote {out} (torchscript, from weights sha256 ")
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript", "-o", out)
    assert code == 2 and "exists: pass --overwrite" in _error_line(text)
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript", "-o", out,
                     "--overwrite", "-q")
    assert code == 0 and text == ""
    src = write_geotiff(tmp_path / "in.tif", field((30, 20), 4))
    code, text = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", out, "--backend",
                     "torch", "--threads", "1", "-q")
    assert code == 0, text
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert (ds.height, ds.width) == (60, 40)


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "onnx", "--opset", "99"], "--opset must be an integer from 13 to 20"),
    (["--format", "torchscript", "--opset", "17"], "--opset applies to --format onnx only"),
])
def test_export_usage_errors(tiny_weights: Path, tmp_path: Path, args: list[str],
                             message: str) -> None:
    code, text = run_cli("export", "--weights", tiny_weights, "-o", tmp_path / "m", *args)
    assert code == 2 and message in _error_line(text)
    assert list(tmp_path.iterdir()) == []


def test_export_of_missing_or_damaged_weights(tmp_path: Path) -> None:
    code, text = run_cli("export", "--weights", tmp_path / "nope.safetensors", "--format",
                     "torchscript", "-o", tmp_path / "m.pt")
    assert code == 2 and "does not exist" in _error_line(text)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    code, text = run_cli("export", "--weights", bad, "--format", "torchscript", "-o",
                     tmp_path / "m.pt")
    assert code == 1 and "corrupt" in _error_line(text)
    assert not (tmp_path / "m.pt").exists()


def test_predict_threads_out_of_range(tiny_weights: Path, tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 4))
    code, text = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", tiny_weights,
                     "--threads", "0")
    assert code == 2 and "--threads" in text


@no_ort
def test_export_onnx_then_predict_with_it(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "onnx", "-o", out,
                     "--opset", "18")
    assert code == 0, text
    assert f"wrote {out} (onnx, from weights sha256 " in text
    src = write_geotiff(tmp_path / "in.tif", field((30, 20), 4))
    code, text = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights", out, "-q")
    assert code == 0, text
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.tags()["S2SR_BACKEND"] == "onnxruntime"
    code, text = run_cli("predict", src, "-o", tmp_path / "p.tif", "--weights", out,
                     "--backend", "torch")
    assert code == 2 and "--backend torch cannot run an ONNX model" in _error_line(text)
    garbage = tmp_path / "bad.onnx"
    garbage.write_bytes(out.read_bytes()[:500])
    code, text = run_cli("predict", src, "-o", tmp_path / "p.tif", "--weights", garbage)
    assert code == 1 and str(garbage) in _error_line(text)
    assert not (tmp_path / "p.tif").exists()
