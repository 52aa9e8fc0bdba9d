"""The streamed engine, the default of ``predict`` and ``s2sr predict`` (issue 23): the
scene read, run and written in row bands equals the whole-scene forward within 1 DN, and
the tiled predict (``--engine tiled``) within 1 DN away from the scene's border (the tiled
engine mirrors the scene there, the stream pads with zeros as the whole-scene forward
does); same nodata, georeferencing and tags but the engine's; ``auto`` keeps the tiled
engine for what cannot stream; ``--engine stream`` refuses it in one line naming
--engine tiled. Exactness over sizes, --consistency and Dask: test_stream_exact.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from torch import nn

from s2sr import predict, super_resolve
from s2sr.core.errors import DataError, UsageError
from s2sr.inference.backends import TorchBackend
from s2sr.inference.encoding import DnEncoding
from s2sr.inference.plan import RunOptions, model_fill
from s2sr.inference.stream_engine import choose_engine, model_refusal, streaming_engine
from s2sr.inference.verified_export import export_model
from s2sr.models import build_model, load_model
from support.cli import one_error_line, run_cli
from support.rasters import field, write_geotiff

#: 150 x 1100 pixels: three bands of rows at the preferred band size (65536 pixels).
SHAPE = (150, 1100)
#: Input pixels from the scene's border where the tiled engine's mirrored padding differs
#: from the zero padding of the whole-scene forward (edsr-tiny's receptive field).
BORDER = 8


def _read(path: Path) -> tuple[np.ndarray, dict, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read(), dict(ds.profile), ds.tags()


def _whole_dn(weights: Path, arr: np.ndarray, nodata: int | None) -> np.ndarray:
    """The whole-scene forward of ``arr`` (uint16 DN) in DN, nodata pixels and saturated
    samples filled with the model's mean (as both engines do) and written back as nodata
    and saturated."""
    model = load_model(weights).eval()
    valid = np.ones(arr.shape[1:], bool) if nodata is None else (arr != nodata).all(0)
    sat = (arr == 65535) & valid[None]
    refl = np.where(valid[None] & ~sat, arr.astype(np.float32) * 1e-4,
                    np.asarray(model_fill(model, 4), np.float32)[:, None, None])
    x = torch.from_numpy(refl.astype(np.float32))[None]
    with torch.inference_mode():
        y = model(x.contiguous(memory_format=torch.channels_last))[0].numpy()
    enc = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, nodata)
    return enc.to_dn(y, valid, sat if sat.any() else None)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    arr = field(SHAPE, 4)
    arr[:, :20, :300] = 0  # nodata across the first band of rows' border
    arr[:, 90:97, 500:520] = 0
    return write_geotiff(tmp_path_factory.mktemp("scene") / "in.tif", arr, nodata=0), arr


@pytest.mark.parametrize("scale", [2, 4])
def test_stream_equals_whole_scene_and_tiled(scene: tuple[Path, np.ndarray], tmp_path: Path,
                                             scale: int, tiny_weights: Path,
                                             tiny_weights_x4: Path) -> None:
    src, arr = scene
    weights = tiny_weights if scale == 2 else tiny_weights_x4
    streamed, meta_s, tags_s = _read(predict(src, tmp_path / "s.tif", weights))  # default
    tiled, meta_t, tags_t = _read(predict(src, tmp_path / "t.tif", weights, backend="torch",
                                          engine="tiled"))
    whole = _whole_dn(weights, arr, 0)
    assert streamed.shape == (4, SHAPE[0] * scale, SHAPE[1] * scale)
    assert np.abs(streamed.astype(int) - whole).max() <= 1
    b = BORDER * scale
    inner = np.abs(streamed.astype(int) - tiled)[:, b:-b, b:-b]
    assert inner.max() <= 1
    assert ((streamed == 0) == (tiled == 0)).all()  # the same nodata pixels
    assert (streamed[:, :20 * scale, :300 * scale] == 0).all()
    assert meta_s == meta_t  # CRS, transform, nodata, dtype, blocks
    assert (tags_s.pop("S2SR_ENGINE"), tags_t.pop("S2SR_ENGINE")) == ("stream", "tiled")
    assert "S2SR_TILE" not in tags_s
    assert tags_t.pop("S2SR_TILE") == ("544/32" if scale == 2 else "288/32")
    assert tags_s == tags_t


def test_auto_streams_and_says_why(scene: tuple[Path, np.ndarray], tmp_path: Path,
                                   tiny_weights: Path, caplog: pytest.LogCaptureFixture
                                   ) -> None:
    src, _ = scene
    with caplog.at_level(logging.INFO, logger="s2sr"):
        a, _, tags = _read(predict(src, tmp_path / "a.tif", tiny_weights))
    assert (tags["S2SR_ENGINE"], tags["S2SR_BACKEND"]) == ("stream", "torch")
    assert any(r.getMessage().startswith("engine: stream (exact row bands")
               for r in caplog.records)
    t, _, _ = _read(predict(src, tmp_path / "t.tif", tiny_weights, engine="tiled"))
    s, _, _ = _read(predict(src, tmp_path / "s.tif", tiny_weights, engine="stream"))
    assert (a == s).all()
    assert (a != t).any()  # the border: a run that tiled would not equal the stream


@pytest.mark.parametrize(("options", "why"), [
    ({"tile": 64}, "--tile given"),
    ({"overlap": 16, "batch_size": 2}, "--overlap, --batch-size given"),
    ({"precision": "bf16", "device": "cpu"}, "not bf16"),
    ({"backend": "onnxruntime"}, "ONNX Runtime keeps the tiled engine"),
])
def test_auto_tiles_what_does_not_stream(tmp_path: Path, tiny_weights: Path,
                                         caplog: pytest.LogCaptureFixture,
                                         options: dict[str, Any], why: str) -> None:
    if options.get("backend") == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
    src = write_geotiff(tmp_path / "in.tif", field((30, 40), 4))
    with caplog.at_level(logging.INFO, logger="s2sr"):
        _, _, tags = _read(predict(src, tmp_path / "o.tif", tiny_weights, **options))
    assert tags["S2SR_ENGINE"] == "tiled" and "S2SR_TILE" in tags
    assert any(r.getMessage().startswith("engine: tiled") and why in r.getMessage()
               for r in caplog.records)


def test_auto_tiles_a_model_that_cannot_stream() -> None:
    model = build_model("edsr-tiny", scale=2).eval()
    arr = field((24, 20), 4)
    plain = super_resolve(arr, model)  # streamed
    model.tail = nn.Conv2d(model.tail.in_channels, 4, 5, padding=2)
    assert model_refusal(model) is not None
    assert super_resolve(arr, model).shape == plain.shape  # tiled, not refused
    assert choose_engine("auto", "torch", "fp32", model_refusal(model))[0] == "tiled"
    assert choose_engine("auto", "torch", "fp32", None) == (
        "stream", "exact row bands: equal to a whole-scene forward, no overlap recomputed")


def test_default_stream_writes_a_cog_with_progress(tmp_path: Path, tiny_weights: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((70, 90), 4))
    out = predict(src, tmp_path / "o.tif", tiny_weights, cog=True, progress=True)
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.tags()["S2SR_ENGINE"] == "stream"
    plain, _, _ = _read(predict(src, tmp_path / "p.tif", tiny_weights))
    assert (_read(out)[0] == plain).all()
    bar = capsys.readouterr().err
    assert "s2sr predict" in bar and "70/70" in bar and "row" in bar


def test_wide_streamed_outputs_get_blocks_that_fit_gdal_cache(
        scene: tuple[Path, np.ndarray], tmp_path: Path, tiny_weights_x4: Path) -> None:
    """The stream writes a few output rows at a time: a block row larger than GDAL's
    cache made GDAL write part blocks, read them back and rewrite them (slower, and a
    larger file); the output's blocks are sized to the cache, the pixels unchanged."""
    src, _ = scene
    plain, _, _ = _read(predict(src, tmp_path / "p.tif", tiny_weights_x4))
    with rasterio.Env(GDAL_CACHEMAX=16 << 20):  # a block row of 512 would take 54 MB
        out = predict(src, tmp_path / "o.tif", tiny_weights_x4)
    with rasterio.open(out) as ds:
        assert ds.block_shapes == [(128, 128)] * 4  # 13.5 MB a block row
        assert ds.tags()["S2SR_ENGINE"] == "stream"
        assert (ds.read() == plain).all()


class _Arrays:
    def __init__(self, arr: np.ndarray, scale: int) -> None:
        self.arr = arr
        self.out = np.zeros((arr.shape[0], arr.shape[1] * scale, arr.shape[2] * scale),
                            arr.dtype)
        self.rows: list[int] = []

    def read(self, w: Window) -> np.ndarray:
        return self.arr[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]

    def write(self, w: Window, data: np.ndarray) -> None:
        assert data.shape[1:] == (w.height, w.width)
        self.rows.append(int(w.height))
        self.out[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = data


@pytest.mark.parametrize("band_rows", [1, 3, 7])
def test_engine_band_heights_saturation_and_nodata(tmp_path: Path, tiny_weights_x4: Path,
                                                    band_rows: int) -> None:
    arr = field((23, 17), 4)
    arr[:, 4:6, 2:9] = 0
    arr[1, 12, 3] = 65535  # saturated: written saturated, as the tiled engine does
    model = load_model(tiny_weights_x4).eval()
    enc = DnEncoding("uint16", (1e-4,) * 4, (0.0,) * 4, 0)
    engine = streaming_engine(TorchBackend(model, torch.device("cpu")), 23, 17, enc,
                              np.asarray(model_fill(model, 4), np.float32), "fp32")
    engine.band_rows = band_rows
    io = _Arrays(arr, 4)
    assert engine.run(io.read, io.write) == 23 * 17 - 14
    assert engine.saturated_samples == 1
    assert sum(io.rows) == 23 * 4 and all(r % 4 == 0 for r in io.rows)
    ref = super_resolve(arr, model, nodata=0, tile=64, overlap=32)
    assert io.out[1, 48:52, 12:16].tolist() == [[65535] * 4] * 4
    assert (ref[1, 48:52, 12:16] == 65535).all()
    assert np.abs(io.out.astype(int) - _whole_dn(tiny_weights_x4, arr, 0)).max() <= 1
    assert ((io.out == 0) == (ref == 0)).all()


def test_super_resolve_stream_equals_whole(tiny_weights: Path) -> None:
    arr = field((40, 56), 4)
    model = load_model(tiny_weights)
    out = super_resolve(arr, model, engine="stream")
    assert np.abs(out.astype(int) - _whole_dn(tiny_weights, arr, None)).max() <= 1


class TestRefusals:
    def test_onnx_backend(self, scene: tuple[Path, np.ndarray], tmp_path: Path,
                          tiny_weights: Path) -> None:
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
        with pytest.raises(UsageError, match=r"PyTorch backend only.*--engine tiled"):
            predict(scene[0], tmp_path / "o.tif", tiny_weights, engine="stream",
                    backend="onnxruntime")
        assert not (tmp_path / "o.tif").exists()

    def test_onnx_export(self, scene: tuple[Path, np.ndarray], tmp_path: Path,
                         tiny_weights: Path) -> None:
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
        onnx = export_model(tiny_weights, tmp_path / "m.onnx", "onnx").path
        with pytest.raises(UsageError, match=r"PyTorch backend only.*--engine tiled"):
            predict(scene[0], tmp_path / "o.tif", onnx, engine="stream")
        assert list(tmp_path.glob("o*")) == []

    def test_torchscript_export_streams(self, tmp_path: Path, tiny_weights: Path) -> None:
        """A TorchScript export is rebuilt as the PyTorch model it embeds: it streams."""
        src = write_geotiff(tmp_path / "in.tif", field((30, 40), 4))
        ts = export_model(tiny_weights, tmp_path / "m.pt", "torchscript").path
        a, _, _ = _read(predict(src, tmp_path / "a.tif", ts, engine="stream"))
        b, _, _ = _read(predict(src, tmp_path / "b.tif", tiny_weights, engine="stream"))
        assert (a == b).all()

    def test_model_that_cannot_stream(self) -> None:
        model = build_model("edsr-tiny", scale=2)
        assert isinstance(model.tail, nn.Conv2d)
        model.tail = nn.Conv2d(model.tail.in_channels, 4, 5, padding=2)
        with pytest.raises(UsageError, match=r"cannot stream \(.*3x3.*\): use --engine tiled"):
            super_resolve(field((16, 16), 4), model, engine="stream")

    def test_bf16(self, tiny_weights: Path) -> None:
        with pytest.raises(UsageError, match=r"fp32 only, not bf16.*--engine tiled"):
            super_resolve(field((16, 16), 4), load_model(tiny_weights), engine="stream",
                          precision="bf16", device="cpu")

    def test_unknown_engine(self) -> None:
        with pytest.raises(UsageError, match=r"unknown --engine 'fast': use auto, tiled, "
                                             r"stream"):
            RunOptions(engine="fast").check(0)


class TestCli:
    def test_engine_stream(self, tmp_path: Path, tiny_weights: Path) -> None:
        src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
        code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                            tiny_weights, "--engine", "stream", "--quiet")
        assert code == 0, out
        api = predict(src, tmp_path / "api.tif", tiny_weights, engine="stream")
        assert (_read(tmp_path / "o.tif")[0] == _read(api)[0]).all()

    def test_bad_engine_is_a_usage_error(self, tmp_path: Path, tiny_weights: Path) -> None:
        src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
        code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                            tiny_weights, "--engine", "fast")
        assert code == 2 and "--engine" in out
        assert not (tmp_path / "o.tif").exists()

    def test_default_streams_with_consistency(self, tmp_path: Path, tiny_weights: Path
                                              ) -> None:
        src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
        code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                            tiny_weights, "--consistency", "--quiet")
        assert code == 0, out
        pixels, _, tags = _read(tmp_path / "o.tif")
        assert (tags["S2SR_ENGINE"], tags["S2SR_CONSISTENCY"]) == ("stream",
                                                                   "back-projection x3")
        plain = _read(predict(src, tmp_path / "p.tif", tiny_weights))[0]
        assert (pixels != plain).any()

    def test_stream_at_bf16_refused_in_one_line(self, tmp_path: Path,
                                                  tiny_weights: Path) -> None:
        src = write_geotiff(tmp_path / "in.tif", field((40, 30), 4))
        code, out = run_cli("predict", src, "-o", tmp_path / "o.tif", "--weights",
                            tiny_weights, "--engine", "stream", "--precision", "bf16",
                            "--device", "cpu")
        assert code == 2
        assert "--engine tiled" in one_error_line(out)
        assert not (tmp_path / "o.tif").exists()


def test_bad_values_in_a_later_band_leave_no_output(tmp_path: Path,
                                                    tiny_weights: Path) -> None:
    """A data error found in the third band of rows, after two were written: the
    half-written output is removed, the error names the scene row."""
    arr = field(SHAPE, 4).astype(np.float32) * 1e-4
    arr[2, 140, 7] = np.nan
    src = write_geotiff(tmp_path / "in.tif", arr)
    with pytest.raises(DataError, match=r"NaN or infinite values \(first at row 140, column 7\)"):
        predict(src, tmp_path / "o.tif", tiny_weights, engine="stream")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
