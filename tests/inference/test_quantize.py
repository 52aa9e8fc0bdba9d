"""int8: static quantisation calibrated on the packaged sample, its cache (keyed, checked,
rebuilt when damaged), ``s2sr export --int8`` and exported int8 files in ``predict``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2sr import predict
from s2sr.core.errors import UsageError, WeightsError
from s2sr.inference.quantize import (
    CALIBRATION_TILE,
    INT8_MAX,
    INT8_P99,
    cache_dir,
    cache_key,
    calibration_tiles,
    check_int8,
    int8_onnx,
    model_digest,
    sample_reflectance,
    with_header,
)
from s2sr.inference.verified_export import export_model
from s2sr.models import build_model, file_sha256, load_model
from s2sr.models.exported import OnnxModel, read_onnx
from support.rasters import texture, write_geotiff

ort = pytest.importorskip("onnxruntime", reason="int8 runs on ONNX Runtime (pip install "
                                                "'s2sr[onnx]')")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")


def test_cache_dir_follows_xdg() -> None:
    assert cache_dir({"XDG_CACHE_HOME": "/var/cache/me"}) == Path("/var/cache/me/s2sr")
    home = Path.home() / ".cache" / "s2sr"
    assert cache_dir({}) == home
    assert cache_dir({"XDG_CACHE_HOME": "relative/path"}) == home  # XDG: absolute only


def test_calibration_tiles_cover_the_real_sample() -> None:
    sample = sample_reflectance(("B02", "B03", "B04", "B08"))
    assert sample.shape == (4, 120, 120) and sample.dtype == np.float32
    assert 0 < float(sample.mean()) < 0.5  # reflectance, not DN
    tiles = calibration_tiles(sample)
    t = CALIBRATION_TILE
    assert tiles.shape == (9, 4, t, t)
    np.testing.assert_array_equal(tiles[0], sample[:, :t, :t])
    np.testing.assert_array_equal(tiles[-1], sample[:, -t:, -t:])
    assert calibration_tiles(sample[:, :40, :50]).shape == (9, 4, 40, 40)
    rgb = sample_reflectance(("B04", "B03", "B02"))
    np.testing.assert_array_equal(rgb, sample[[2, 1, 0]])
    with pytest.raises(UsageError, match="calibration sample has no"):
        sample_reflectance(("B02", "X99"))


def test_the_cache_key_follows_the_weights() -> None:
    a, b = build_model("edsr-tiny", scale=2), build_model("edsr-tiny", scale=2)
    assert model_digest(a) == model_digest(a)
    assert model_digest(a) != model_digest(b)  # other random weights
    assert cache_key(model_digest(a)) != cache_key(model_digest(b))
    assert len(cache_key(model_digest(a))) == 64


def test_int8_bounds() -> None:
    check_int8(INT8_MAX, INT8_P99)  # within: no error
    for worst, p99 in ((INT8_MAX * 1.1, 0.0), (0.0, INT8_P99 * 1.1),
                       (float("nan"), float("nan"))):
        with pytest.raises(WeightsError, match="does not quantise well; use --precision "
                                               "fp32"):
            check_int8(worst, p99)


def test_int8_model_made_checked_and_cached(tiny_weights: Path, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    model = load_model(tiny_weights)
    sha = file_sha256(tiny_weights)
    cache = tmp_path / "cache"
    first = int8_onnx(model, sha, cache=cache)
    assert first.shape == (1, 4, 120, 120)
    assert 0 < first.max_abs_diff <= INT8_MAX and 0 < first.p99_abs_diff <= INT8_P99
    files = list(cache.glob("int8-*.onnx"))
    assert len(files) == 1
    stored = read_onnx(files[0])  # the cache holds a checked s2sr export
    assert stored.header["precision"] == "int8" and stored.source_sha256 == sha
    assert stored.header["int8_key"] == cache_key(model_digest(model))
    proto = onnx.load_model_from_string(first.data)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # 7-bit Conv weights: full-range int8 saturates ONNX Runtime's u8s8 kernels on AVX2 CPUs
    # without VNNI (0.0196 reflectance off on this model under qemu -cpu Haswell)
    weights = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(weights) == 4 and max(int(np.abs(w).max()) for w in weights) == 64
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    when = files[0].stat().st_mtime_ns
    again = int8_onnx(model, "1" * 64, cache=cache)  # from the cache, with its own sha
    assert files[0].stat().st_mtime_ns == when
    assert read_onnx_bytes(again.data, tmp_path).source_sha256 == "1" * 64
    assert again.max_abs_diff == first.max_abs_diff
    files[0].write_bytes(b"\x08damaged")  # a damaged cache is made again, with a warning
    with caplog.at_level(logging.WARNING, logger="s2sr.inference.quantize"):
        int8_onnx(model, sha, cache=cache)
    assert "ignoring the cached int8 model" in caplog.text
    assert read_onnx(files[0]).header["precision"] == "int8"


def read_onnx_bytes(data: bytes, folder: Path) -> OnnxModel:
    path = folder / "bytes.onnx"
    path.write_bytes(data)
    return read_onnx(path)


def test_an_unwritable_cache_costs_time_not_the_run(tiny_weights: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="s2sr.inference.quantize"):
        made = int8_onnx(load_model(tiny_weights), "0" * 64, cache=blocker / "s2sr")
    assert made.data and "could not cache the int8 model" in caplog.text


def test_export_int8_and_predict_with_it(tiny_weights: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = export_model(tiny_weights, tmp_path / "q.onnx", "onnx", int8=True)
    assert result.format == "onnx int8"
    (check,) = result.checks
    assert check.shape == (1, 4, 120, 120) and check.limits == (INT8_MAX, INT8_P99)
    assert check.p99_abs_diff is not None and check.p99_abs_diff <= check.max_abs_diff
    exported = read_onnx(result.path)
    assert exported.header["precision"] == "int8"
    assert exported.source_sha256 == file_sha256(tiny_weights)
    src = write_geotiff(tmp_path / "in.tif",
                        (texture((40, 30), 4, seed=2) * 10000).astype(np.uint16), nodata=0)
    opts = {"tile": 32, "overlap": 8, "threads": 1}
    from_file = predict(src, tmp_path / "a.tif", result.path, **opts)
    from_weights = predict(src, tmp_path / "b.tif", tiny_weights, precision="int8", **opts)
    with rasterio.open(from_file) as a, rasterio.open(from_weights) as b:
        assert a.tags()["S2SR_PRECISION"] == b.tags()["S2SR_PRECISION"] == "int8"
        np.testing.assert_array_equal(a.read(), b.read())  # the same int8 graph
    with pytest.raises(UsageError, match="--precision fp32 with an exported int8 ONNX model"):
        predict(src, tmp_path / "c.tif", result.path, precision="fp32", **opts)
    for kwargs, message in (({"format": "torchscript"}, "--int8 applies to --format onnx "
                                                        "only"),
                            ({"format": "onnx", "opset": 13}, "drop --opset")):
        with pytest.raises(UsageError, match=message):
            export_model(tiny_weights, tmp_path / "x.onnx", int8=True, **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_a_header_precision_s2sr_does_not_write_is_refused(tiny_weights: Path,
                                                           tmp_path: Path) -> None:
    plain = export_model(tiny_weights, tmp_path / "m.onnx", "onnx").path
    header = dict(read_onnx(plain).header, precision="bf16")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(with_header(plain.read_bytes(), header))
    src = write_geotiff(tmp_path / "in.tif", np.full((4, 16, 16), 900, np.uint16))
    with pytest.raises(WeightsError, match=r"header precision 'bf16' is not fp32 or int8"):
        predict(src, tmp_path / "o.tif", bad)
