"""TorchScript export: header round trip, the program at any batch and tile size, predict
with the archive equal to predict with its weights, hostile archives refused in one line
without ever loading the program."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr import predict
from s2sr.core.errors import UsageError, WeightsError
from s2sr.inference.verified_export import export_model
from s2sr.models import build_model, file_sha256, get_spec, load_model, save_model
from s2sr.models.exported import load_torchscript, read_torchscript_header, sniff
from s2sr.models.serialize import HEADER_ENTRY, WEIGHTS_ENTRY
from support.rasters import field, write_geotiff

# torch.jit is deprecated upstream; libtorch deployments still load TorchScript
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_pt(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ts") / "tiny.pt"
    return export_model(tiny_weights, out, "torchscript").path


def test_export_header_round_trip(tiny_weights: Path, tiny_pt: Path) -> None:
    spec, header = read_torchscript_header(tiny_pt)
    assert spec == get_spec(load_model(tiny_weights))
    assert header["source_sha256"] == file_sha256(tiny_weights)
    assert header["exported_as"] == "torchscript" and header["format"] == "s2sr-export"
    assert sniff(tiny_pt) == "torchscript"
    model = load_torchscript(tiny_pt)
    reference = load_model(tiny_weights)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_export_checks_are_printed_and_exact(tiny_weights_x4: Path, tmp_path: Path) -> None:
    result = export_model(tiny_weights_x4, tmp_path / "m.pt", "torchscript")
    assert len(result.checks) == 3 and all(c.max_abs_diff < 1e-6 for c in result.checks)
    with pytest.raises(UsageError, match="--opset applies to --format onnx only"):
        export_model(tiny_weights_x4, tmp_path / "n.pt", "torchscript", opset=17)
    with pytest.raises(UsageError, match="already an exported torchscript model"):
        export_model(result.path, tmp_path / "n.pt", "torchscript")


def test_the_program_runs_any_batch_and_tile_size(tiny_weights_x4: Path,
                                                  tmp_path: Path) -> None:
    path = export_model(tiny_weights_x4, tmp_path / "m.pt", "torchscript").path
    program = torch.jit.load(str(path), map_location="cpu")  # this test made the file
    model = load_model(tiny_weights_x4)
    extra = {HEADER_ENTRY: ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[HEADER_ENTRY])["scale"] == "4"
    with torch.inference_mode():
        for shape in ((3, 4, 20, 36), (1, 4, 9, 8)):
            x = torch.rand(*shape)
            y = program(x)
            assert y.shape == (shape[0], 4, shape[2] * 4, shape[3] * 4)
            assert (y - model(x)).abs().max() < 1e-5


def test_predict_with_the_archive_equals_predict_with_its_weights(
        tiny_weights: Path, tiny_pt: Path, tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "in.tif", field((60, 50), 4))
    a = predict(src, tmp_path / "a.tif", tiny_weights, backend="torch", tile=32, overlap=8)
    b = predict(src, tmp_path / "b.tif", tiny_pt, backend="torch", tile=32, overlap=8)
    with rasterio.open(a) as da, rasterio.open(b) as db:
        np.testing.assert_array_equal(da.read(), db.read())
        assert db.tags()["S2SR_MODEL_SHA256"] == file_sha256(tiny_pt)
        assert db.tags()["S2SR_BACKEND"] == "torch"


# --- hostile archives -------------------------------------------------------------------

def _rewrite(src: Path, dst: Path, header: dict[str, str | None] | None = None,
             raw_header: bytes | None = None, weights: bytes | None = None) -> Path:
    """``src`` with header keys changed (``None``: removed), or the header entry or the
    embedded weights replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(f"/extra/{HEADER_ENTRY}"):
                meta = json.loads(data)
                for key, value in (header or {}).items():
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                data = raw_header if raw_header is not None else json.dumps(meta).encode()
            elif weights is not None and info.filename.endswith(f"/extra/{WEIGHTS_ENTRY}"):
                data = weights
            zout.writestr(info, data)
    return dst


def _refused(path: Path, pattern: str) -> None:
    with pytest.raises(WeightsError, match=pattern) as info:
        load_torchscript(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize(("changes", "pattern"), [
    ({"format": None}, "is a TorchScript model but not one exported by s2sr"),
    ({"scale": "3"}, "header scale must be 2 or 4, got '3'"),
    ({"options": '{"n_feats": 1000000}'}, r"header options\.n_feats must be an integer"),
    ({"bands": "[]"}, "header bands must name 1 to 13 bands, got 0"),
    ({"source_sha256": "0" * 63}, "source_sha256 must be 64 lower-case hex digits"),
    ({"source_sha256": "0" * 64}, "embedded weights are not the file its header's "
                                  "source_sha256 names"),
    ({"bands": '["B02", "B03", "B04", "B8A"]'}, "header describes another model than its "
                                               "embedded weights"),
])
def test_bad_header_values(tiny_pt: Path, tmp_path: Path, changes: dict[str, str | None],
                           pattern: str) -> None:
    _refused(_rewrite(tiny_pt, tmp_path / "bad.pt", changes), pattern)


def test_bad_header_entries(tiny_pt: Path, tmp_path: Path) -> None:
    _refused(_rewrite(tiny_pt, tmp_path / "a.pt", raw_header=b"{not json"),
             f"its {HEADER_ENTRY} is not valid JSON")
    _refused(_rewrite(tiny_pt, tmp_path / "b.pt", raw_header=b"[1, 2]"),
             "the s2sr header is not a key/value mapping")
    big = json.dumps({"name": "x" * (2 << 20)}).encode()
    _refused(_rewrite(tiny_pt, tmp_path / "c.pt", raw_header=big),
             f"its {HEADER_ENTRY} is [0-9]+ bytes, more than the 1048576 s2sr reads")


def test_embedded_weights_are_checked_like_any_weights_file(tiny_pt: Path,
                                                            tmp_path: Path) -> None:
    # other weights, with the header's sha256 updated to match: still refused as another model
    torch.manual_seed(9)
    other = save_model(build_model("edsr-tiny", scale=4), tmp_path / "x4.safetensors")
    data = other.read_bytes()
    bad = _rewrite(tiny_pt, tmp_path / "swap.pt", {
        "source_sha256": hashlib.sha256(data).hexdigest()}, weights=data)
    _refused(bad, "header describes another model than its embedded weights")
    # damaged weights with a matching sha256: the weights file's own checks, naming the archive
    junk = b"\x10\x00\x00\x00\x00\x00\x00\x00{" + b"\x00" * 40
    bad = _rewrite(tiny_pt, tmp_path / "junk.pt", {
        "source_sha256": hashlib.sha256(junk).hexdigest()}, weights=junk)
    with pytest.raises(WeightsError) as info:
        load_torchscript(bad)
    assert f"{bad} ({WEIGHTS_ENTRY})" in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_foreign_archives(tiny_pt: Path, tmp_path: Path) -> None:
    data = tiny_pt.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    # a zip cut in half has lost its central directory: no longer recognisably an export,
    # refused by the weights reader, which never loads zips
    with pytest.raises(WeightsError, match="never loads"):
        load_model(cut)
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_torchscript(cut)
    src = write_geotiff(tmp_path / "in.tif", field((20, 20), 4))
    with pytest.raises(WeightsError, match="never loads"):
        predict(src, tmp_path / "o.tif", cut)
    # a plain TorchScript archive (no s2sr header) is not an export either
    plain = tmp_path / "plain.pt"
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(build_model("edsr-tiny").eval(), torch.rand(1, 4, 8, 8)),
                   buf)
    plain.write_bytes(buf.getvalue())
    assert sniff(plain) == "safetensors"  # so load_model reports it
    with pytest.raises(WeightsError, match="never loads"):
        predict(src, tmp_path / "o.tif", plain)
    _refused(plain, f"holds 0 '{HEADER_ENTRY}' entries")
    assert not (tmp_path / "o.tif").exists()
