"""``predict --precision`` and ``export --int8`` on the command line: choices, what they
write and print, one-line refusals with exit code 2."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest
import rasterio

from s2sr.cli.main import cli
from s2sr.core.constants import PRECISIONS
from support.cli import no_ort, run_cli
from support.rasters import field, write_geotiff


def test_precision_choices_match_the_library() -> None:
    param = next(p for p in cli.commands["predict"].params if p.name == "precision")
    assert isinstance(param.type, click.Choice) and param.default == "auto"
    assert list(param.type.choices) == list(PRECISIONS)


@pytest.mark.parametrize(("args", "message"), [
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 runs on CUDA only"),
    (["--precision", "bf16", "--backend", "onnxruntime", "--device", "cpu"],
     "use --backend torch (or auto) for bf16"),
    (["--precision", "int8", "--backend", "torch"], "use --backend onnxruntime (or auto)"),
    (["--precision", "half"], "Invalid value for '--precision'"),
])
def test_predict_precision_refusals(tiny_weights: Path, tmp_path: Path, args: list[str],
                                    message: str) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    out = tmp_path / "out.tif"
    code, text = run_cli("predict", src, "-o", out, "--weights", tiny_weights, *args)
    assert code == 2 and message in text, text
    assert not out.exists()


def test_predict_bf16_on_the_cpu_records_it(tiny_weights: Path, tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((24, 20), 4))
    code, text = run_cli("predict", src, "-o", tmp_path / "bf16.tif", "--weights", tiny_weights,
                     "--precision", "bf16", "--device", "cpu", "-q")
    assert code == 0, text
    code, text = run_cli("predict", src, "-o", tmp_path / "fp32.tif", "--weights", tiny_weights,
                     "--backend", "torch", "--device", "cpu", "--engine", "tiled", "-q")
    assert code == 0, text  # bf16 tiles (it does not stream): fp32 tiled alike
    with rasterio.open(tmp_path / "bf16.tif") as a, rasterio.open(tmp_path / "fp32.tif") as b:
        assert (a.tags()["S2SR_PRECISION"], a.tags()["S2SR_BACKEND"]) == ("bf16", "torch")
        assert b.tags()["S2SR_PRECISION"] == "fp32"
        diff = np.abs(a.read().astype(np.int32) - b.read())
        assert diff.max() <= 20 and a.shape == b.shape == (48, 40)


@no_ort
def test_export_int8_prints_its_check(tiny_weights: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "q.onnx"
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "onnx", "--int8",
                     "-o", out)
    assert code == 0, text
    lines = text.strip().splitlines()
    assert len(lines) == 2, text
    assert lines[0].startswith("checked against PyTorch on the packaged sample "
                               "(1, 4, 120, 120): max abs difference ")
    assert "99th percentile" in lines[0] and lines[0].endswith("(limits 0.03 and 0.006)")
    assert lines[1].startswith(f"wrote {out} (onnx int8, from weights sha256 ")
    code, text = run_cli("export", "--weights", tiny_weights, "--format", "torchscript",
                     "--int8", "-o", tmp_path / "q.pt")
    assert code == 2 and "--int8 applies to --format onnx only" in text
