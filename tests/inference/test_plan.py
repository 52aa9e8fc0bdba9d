"""The run plan and the one model opener (issue 21): the scene is opened once, inputs are
expanded once, warnings come once, every model kind opens through ``open_model`` (also
for ``s2sr evaluate``), and the engine runs a range of tile rows through a public entry."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from rasterio.windows import Window

import s2sr.io.geotiff
from s2sr.core.errors import InputNotFoundError
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.engine import TiledSuperResolver
from s2sr.inference.plan import RunOptions, choose_execution, plan_run
from s2sr.inference.predict import predict, prepare_run
from s2sr.inference.tiling import TileLayout
from s2sr.io.base import SCENE_LOGGER
from s2sr.models import build_model, get_spec, load_model, pretrained_path
from s2sr.models.open import open_model
from support.cli import run_cli
from support.rasters import field, texture, write_geotiff


@pytest.fixture
def scene_opens(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the opens of each multi-band raster by the real opener of the GeoTIFF reader
    (a wrapper around it: every call still opens the file)."""
    counts: dict[str, int] = {}
    real = s2sr.io.geotiff.open_raster

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(s2sr.io.geotiff, "open_raster", counting)
    return counts


# ================================================================ reliability

def test_the_scene_is_opened_once_without_weights(tmp_path: Path,
                                                  scene_opens: dict[str, int]) -> None:
    """Choosing the shipped model opened the scene, closed it, and the run opened it again
    (three times for a scene without B08)."""
    four = write_geotiff(tmp_path / "four.tif", field((24, 24), 4))
    out = predict(four, tmp_path / "o4.tif", tile=32, overlap=8)
    assert scene_opens == {"four.tif": 1}
    assert out.exists()
    rgb = write_geotiff(tmp_path / "rgb.tif", field((24, 24), 3),
                        descriptions=("B02", "B03", "B04"))
    predict(rgb, tmp_path / "o3.tif", tile=32, overlap=8)
    # the 4-band try is refused at band selection; the RGB open is the run's
    assert scene_opens["rgb.tif"] == 2


def test_the_scene_warns_once_and_the_scene_logger_stays_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file without band descriptions is warned about once per run, with no --weights as
    with them, and nobody silences io's logger for it."""
    path = write_geotiff(tmp_path / "plain.tif", field((24, 24), 4), descriptions=None)
    seen: list[bool] = []
    real = s2sr.io.geotiff.open_raster

    def watching(p: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(logging.getLogger(SCENE_LOGGER).disabled)
        return real(p, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.WARNING, logger="s2sr"):
        mp.setattr(s2sr.io.geotiff, "open_raster", watching)
        predict(path, tmp_path / "o.tif", tile=32, overlap=8)
    warned = [r for r in caplog.records if "has no band descriptions" in r.getMessage()]
    assert len(warned) == 1
    assert seen == [False]


class _Counting(http.server.SimpleHTTPRequestHandler):
    gets: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        type(self).gets[self.path] = type(self).gets.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A loopback HTTP server of ``tmp_path/www``: its base URL and GETs per path."""
    www = tmp_path / "www"
    www.mkdir()
    handler: type[_Counting] = type("Handler", (_Counting,), {"gets": {}})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler.gets
    finally:
        server.shutdown()
        server.server_close()


def test_a_stac_url_is_fetched_once(tmp_path: Path, served: tuple[str, dict[str, int]],
                                    tiny_weights: Path) -> None:
    """``s2sr predict URL -o DIR`` expanded the URL to tell one scene from many, and
    ``predict_many`` expanded it again: two downloads of the same document."""
    base, gets = served
    items: list[dict[str, Any]] = [
        {"type": "Feature", "stac_version": "1.0.0", "id": f"s{k}", "geometry": None,
         "properties": {"datetime": "2023-06-01T10:20:31Z"}, "links": [],
         "assets": {b: {"href": f"s{k}/{b}.tif", "eo:bands": [{"name": b}], "roles": ["data"]}
                    for b in ("B02", "B03", "B04", "B08")}}
        for k in range(2)]
    (tmp_path / "www" / "items.json").write_text(json.dumps(
        {"type": "FeatureCollection", "features": items}))
    code, output = run_cli("predict", base + "items.json", "-o", tmp_path / "out",
                           "--weights", tiny_weights, "-q")
    assert gets["/items.json"] == 1
    # the assets are not there: each scene fails alone, and the run says so
    assert code == 1 and "2 failed" in output, output


# ================================================================ new-user

def test_open_model_takes_every_kind_and_the_shipped_names(tmp_path: Path,
                                                           tiny_weights: Path) -> None:
    pytest.importorskip("onnx", reason="ONNX export (pip install 's2sr[onnx]')")
    from s2sr.inference.verified_export import export_model

    shipped = open_model("s2sr_rgb_x4")
    assert shipped.path == pretrained_path(4, rgb=True) and shipped.kind == "safetensors"
    assert shipped.spec.bands == ("B02", "B03", "B04") and shipped.module is not None
    plain = open_model(tiny_weights)
    for fmt in ("onnx", "torchscript"):
        exported = open_model(export_model(tiny_weights, tmp_path / f"m.{fmt}", fmt).path)
        assert exported.kind == fmt and exported.spec == plain.spec
        assert (exported.onnx is not None) == (fmt == "onnx")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        open_model("s2sr_x3")  # neither a file nor a shipped model


def test_evaluate_runs_an_exported_onnx_model(tmp_path: Path, tiny_weights: Path,
                                              wald_dataset: Path) -> None:
    """``s2sr evaluate dataset --weights NAME=model.onnx`` refused the export predict
    accepts; it now scores it as the weights it was exported from."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime (pip install 's2sr[onnx]')")
    from s2sr.inference.verified_export import export_model

    onnx = export_model(tiny_weights, tmp_path / "m.onnx", "onnx").path
    code, output = run_cli("evaluate", "dataset", "--weights", f"exported={onnx}",
                           "--weights", f"weights={tiny_weights}", "--dataset", wald_dataset,
                           "--split", "val", "--no-figures", "-o", tmp_path / "rep")
    assert code == 0, output
    summary = {s["method"]: s for s in json.loads(
        (tmp_path / "rep" / "report.json").read_text())["summary"]}
    assert summary["exported"]["patches"] == summary["weights"]["patches"] > 0
    assert summary["exported"]["psnr"] == pytest.approx(summary["weights"]["psnr"], abs=1e-3)


# ================================================================ the plan and the engine

def test_a_plan_is_built_once_from_options_and_grid() -> None:
    model = load_model(pretrained_path(2))
    options = RunOptions(tile=64, overlap=16, device="cpu", backend="torch")
    asked = options.check(0)
    execution = choose_execution(options, asked, 0)
    plan = plan_run(get_spec(model), options, execution, 100, 90,
                    DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, 0))
    assert plan.layout == TileLayout.from_tile(100, 90, 64, 16, 2)
    assert (plan.execution.backend, plan.execution.precision, plan.execution_kind) == (
        "torch", "fp32", "tiled")
    mean = np.asarray(get_spec(model).options["mean"], np.float32)
    assert plan.fill == tuple(float(v) for v in mean) and len(plan.fill) == 4
    with pytest.raises(AttributeError):
        plan.layout = TileLayout.from_tile(8, 8, 64, 16, 2)  # type: ignore[misc]


def test_prepare_run_keeps_the_plan(tmp_path: Path, tiny_weights: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((40, 40), 4))
    with prepare_run(src, tiny_weights, tile=32, overlap=8, device="cpu",
                     backend="torch") as run:
        assert run.plan.layout.tile == 32 and run.runner.layout == run.plan.layout
        assert run.tags["S2SR_TILE"] == "32/8" and run.weights == tiny_weights


def _engine(layout: TileLayout) -> TiledSuperResolver:
    torch.manual_seed(0)
    model = build_model("edsr-tiny", scale=layout.scale)
    return TiledSuperResolver(model, layout, DnEncoding("float32", (1.0,) * 4, (0.0,) * 4,
                                                        None), np.zeros(4, np.float32),
                              torch.device("cpu"), batch_size=2)


def test_rows_run_a_band_of_tile_rows_as_the_whole_run_does() -> None:
    """What batch/blocks runs on a worker: tile rows 1 to 2 (row 1 as context) give the
    cores of row 2 exactly as the whole run does, and nothing below."""
    lay = TileLayout.from_tile(100, 50, 32, 8, 2)
    assert lay.rows >= 4
    scene = texture((100, 50), 4).astype(np.float32)

    def reader(window: Window) -> np.ndarray:
        r, c = int(window.row_off), int(window.col_off)
        return scene[:, r:r + int(window.height), c:c + int(window.width)]

    def collect(into: dict[tuple[int, int], np.ndarray]) -> Callable[[Window, np.ndarray],
                                                                      None]:
        def write(window: Window, data: np.ndarray) -> None:
            into[(int(window.row_off), int(window.col_off))] = data.copy()
        return write

    whole: dict[tuple[int, int], np.ndarray] = {}
    band: dict[tuple[int, int], np.ndarray] = {}
    _engine(lay).run(reader, collect(whole))
    seen = _engine(lay).run(reader, collect(band), rows=range(1, 3))
    top, bottom = 2 * lay.stride * 2, 3 * lay.stride * 2
    assert {k for k in band} == {k for k in whole if lay.stride * 2 <= k[0] < bottom}
    mine = [k for k in band if k[0] >= top]
    assert mine and all(np.array_equal(band[k], whole[k]) for k in mine)
    assert seen == 2 * lay.stride * 50  # the valid input pixels of the rows run


def test_many_scenes_without_weights_warn_once_and_resume(tmp_path: Path,
                                                          scene_opens: dict[str, int],
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """A run of many scenes chose each scene's shipped model by opening it (silenced),
    then opened it again for the run; it now opens it once, warns once, and a re-run
    finds the outputs complete from their records without opening the scenes."""
    from s2sr import predict_many

    (tmp_path / "in").mkdir()
    for k in range(2):
        write_geotiff(tmp_path / "in" / f"s{k}.tif", field((24, 24), 4, seed=k),
                      descriptions=None)
    with caplog.at_level(logging.WARNING, logger="s2sr"):
        first = predict_many([str(tmp_path / "in")], tmp_path / "out", tile=32, overlap=8)
    assert [s.status for s in first.scenes] == ["done", "done"]
    assert scene_opens == {"s0.tif": 1, "s1.tif": 1}
    warned = [r for r in caplog.records if "has no band descriptions" in r.getMessage()]
    assert len(warned) == 2
    record = json.loads((tmp_path / "out" / "s0_x2.tif.s2sr.json").read_text())
    assert record["weights"] == str(pretrained_path(2))
    again = predict_many([str(tmp_path / "in")], tmp_path / "out", tile=32, overlap=8)
    assert [s.status for s in again.scenes] == ["skipped", "skipped"]
    assert scene_opens == {"s0.tif": 1, "s1.tif": 1}
