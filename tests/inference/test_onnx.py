"""ONNX export and the ONNX Runtime backend: header round trip, dynamic shapes, outputs
equal to the PyTorch backend within 1 DN (shipped x2 and x4 on a generated scene), and
hostile ONNX files refused in one line before anything runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from s2sr import predict
from s2sr.core.errors import OutputExistsError, UsageError, WeightsError
from s2sr.inference.backends import OnnxRuntimeBackend
from s2sr.inference.verified_export import Check, check_tolerance, compare, export_model
from s2sr.models import file_sha256, get_spec, load_model, pretrained_path
from s2sr.models.exported import read_onnx, sniff
from s2sr.models.serialize import DEFAULT_OPSET, onnx_bytes
from support.rasters import texture, write_geotiff

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the optional "
                                                "extra: pip install 's2sr[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (the optional extra: pip "
                                          "install 's2sr[onnx]')")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_model(tiny_weights, out, "onnx").path


def _scene(path: Path, shape: tuple[int, int] = (90, 70)) -> Path:
    return write_geotiff(path, (texture(shape, 4, seed=3) * 10000).astype(np.uint16),
                         nodata=0)


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int32), ds.tags()


def test_export_writes_the_header_and_checks(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = export_model(tiny_weights, out, "onnx")
    assert result.path == out and result.format == "onnx"
    assert [c.shape for c in result.checks] == [(1, 4, 32, 32), (2, 4, 48, 40), (1, 4, 67, 53)]
    assert all(c.max_abs_diff < 1e-5 for c in result.checks)
    model = read_onnx(out)
    assert model.spec == get_spec(load_model(tiny_weights))
    assert model.source_sha256 == file_sha256(tiny_weights) == result.source_sha256
    assert model.header["exported_as"] == f"onnx opset {DEFAULT_OPSET}"
    assert model.header["format"] == "s2sr-export"
    assert sniff(out) == "onnx" and sniff(tiny_weights) == "safetensors"
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # B, H, W dynamic
    assert dims[1].dim_value == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary left


@pytest.mark.parametrize("fixture", ["tiny_weights", "tiny_weights_x4"])
def test_exported_graph_runs_any_batch_and_tile_size(fixture: str,
                                                     request: pytest.FixtureRequest) -> None:
    model = load_model(request.getfixturevalue(fixture))
    spec = get_spec(model)
    backend = OnnxRuntimeBackend(onnx_bytes(model), 4, spec.scale, threads=1)
    checks = compare(model, backend, ((3, 20, 36), (1, 9, 8), (2, 64, 64)), seed=5)
    assert max(c.max_abs_diff for c in checks) < 1e-5
    y = backend(torch.rand(2, 4, 11, 13))
    assert tuple(y.shape) == (2, 4, 11 * spec.scale, 13 * spec.scale)
    assert backend.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("opset", [13, 20])
def test_opsets_within_range(tiny_weights: Path, tmp_path: Path, opset: int) -> None:
    out = export_model(tiny_weights, tmp_path / "m.onnx", "onnx", opset=opset).path
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert read_onnx(out).header["exported_as"] == f"onnx opset {opset}"


def test_export_refusals(tiny_weights: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    with pytest.raises(UsageError, match="--opset must be an integer from 13 to 20, got 21"):
        export_model(tiny_weights, out, "onnx", opset=21)
    with pytest.raises(UsageError, match="unknown --format 'tflite'"):
        export_model(tiny_weights, out, "tflite")
    with pytest.raises(UsageError, match="already an exported onnx model"):
        export_model(tiny_onnx, out, "onnx")
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        export_model(tiny_weights, out, "onnx")
    assert out.read_bytes() == b"keep"
    export_model(tiny_weights, out, "onnx", overwrite=True)
    assert read_onnx(out).source_sha256 == file_sha256(tiny_weights)


def test_an_export_that_differs_from_pytorch_is_refused(tiny_weights: Path) -> None:
    model = load_model(tiny_weights)
    checks = compare(model, lambda x: model(x) + 2e-4)
    assert all(c.max_abs_diff == pytest.approx(2e-4, rel=0.05) for c in checks)
    with pytest.raises(WeightsError, match=r"differs from PyTorch by 0.0002 .* more than the "
                                           r"0.0001 allowed: nothing was written"):
        check_tolerance(checks, "exported")
    check_tolerance((Check((1, 4, 8, 8), 9e-5),), "exported")  # within: no error
    with pytest.raises(WeightsError, match="differs from PyTorch by nan"):
        check_tolerance((Check((1, 4, 8, 8), float("nan")),), "exported")


@pytest.mark.parametrize("scale", [2, 4])
def test_onnx_runtime_equals_pytorch_within_1_dn_with_the_shipped_models(
        tmp_path: Path, scale: int) -> None:
    src = _scene(tmp_path / "in.tif")
    weights = pretrained_path(scale)
    exported = export_model(weights, tmp_path / "m.onnx", "onnx").path
    opts = {"tile": 64, "overlap": 16}
    ref, tags = _read(predict(src, tmp_path / "torch.tif", weights, backend="torch", **opts))
    assert tags["S2SR_BACKEND"] == "torch"
    runs = {
        "onnxruntime": predict(src, tmp_path / "ort.tif", weights, backend="onnxruntime",
                               threads=1, **opts),
        "auto": predict(src, tmp_path / "auto.tif", weights, **opts),
        "exported": predict(src, tmp_path / "exp.tif", exported, **opts),
    }
    for name, path in runs.items():
        data, tags = _read(path)
        assert data.shape == ref.shape == (4, 90 * scale, 70 * scale), name
        assert np.abs(data - ref).max() <= 1, name
        assert (data != ref).mean() < 0.01, name
        assert tags["S2SR_BACKEND"] == "onnxruntime", name
    _, tags = _read(runs["exported"])
    assert tags["S2SR_MODEL_SOURCE_SHA256"] == file_sha256(weights)
    assert tags["S2SR_MODEL_SHA256"] == file_sha256(exported)


def test_an_onnx_file_is_refused_by_the_torch_backend(tiny_onnx: Path, tmp_path: Path) -> None:
    src = _scene(tmp_path / "in.tif", (20, 20))
    with pytest.raises(UsageError, match="--backend torch cannot run an ONNX model"):
        predict(src, tmp_path / "o.tif", tiny_onnx, backend="torch")
    with pytest.raises(UsageError, match=r"--scale 4 but .* is a x2 model"):
        predict(src, tmp_path / "o.tif", tiny_onnx, scale=4)
    assert not (tmp_path / "o.tif").exists()


# --- hostile ONNX files -------------------------------------------------------------------

def _rewrite(src: Path, dst: Path, header: dict[str, str | None] | None = None,
             edit: object = None) -> Path:
    """``src`` with header keys changed (``None``: removed) and/or ``edit(proto)`` applied."""
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    for key, value in (header or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if callable(edit):
        edit(proto)
    dst.write_bytes(proto.SerializeToString())
    return dst


def _refused(path: Path, pattern: str) -> None:
    with pytest.raises(WeightsError, match=pattern) as info:
        read_onnx(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize(("case", "changes", "pattern"), [
    ("no header", {"format": None}, "not one exported by s2sr .no 's2sr-export' header"),
    ("version", {"format_version": "9"}, "format_version '9' is not one this s2sr reads"),
    ("scale 3", {"scale": "3"}, "header scale must be 2 or 4, got '3'"),
    ("bomb", {"options": '{"n_resblocks": 100000000}'},
     r"header options\.n_resblocks must be an integer from 1 to 64"),
    ("bands", {"bands": '["X9", "B03", "B04", "B08"]'}, r"header bands has unknown"),
    ("bands JSON", {"bands": "[[[["}, "header bands is not valid JSON"),
    ("deep JSON", {"options": "[" * 200_000}, "is 200000 characters long, more than the"),
    ("name", {"name": "nope"}, "header name 'nope' is unknown"),
    ("sha", {"source_sha256": "abc"}, "header source_sha256 must be 64 lower-case hex"),
    ("no sha", {"source_sha256": None}, "header has no 'source_sha256' key"),
    ("other bands", {"bands": '["B02", "B03", "B04"]', "options": "{}"},
     r"its input is not float32 \(batch, 3, height, width\)"),
    ("many keys", {f"k{i}": "v" for i in range(70)}, "has 81 keys, more than the 64"),
])
def test_bad_header_values(tiny_onnx: Path, tmp_path: Path, case: str,
                           changes: dict[str, str | None], pattern: str) -> None:
    _refused(_rewrite(tiny_onnx, tmp_path / "bad.onnx", changes), pattern)


def test_unreadable_files(tiny_onnx: Path, tmp_path: Path) -> None:
    data = tiny_onnx.read_bytes()
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as info:
        read_onnx(truncated)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)
    garbage = tmp_path / "noise.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(WeightsError):
        read_onnx(garbage)
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(onnx_bytes(load_model(pretrained_path(2))))  # an ONNX model, no header
    _refused(bare, "is an ONNX model but not one exported by s2sr")
    with pytest.raises(UsageError, match="is a folder"):
        read_onnx(tmp_path)


def test_graph_checks(tiny_onnx: Path, tmp_path: Path) -> None:
    def external(proto: object) -> None:
        tensor = proto.graph.initializer[0]  # type: ignore[attr-defined]
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", "/etc/passwd"

    _refused(_rewrite(tiny_onnx, tmp_path / "ext.onnx", edit=external),
             "refers to an external data file, which s2sr never reads")

    def foreign(proto: object) -> None:
        proto.graph.node[0].domain = "com.example"  # type: ignore[attr-defined]

    _refused(_rewrite(tiny_onnx, tmp_path / "dom.onnx", edit=foreign),
             "of domain 'com.example' is not a standard ONNX operator")

    def two_outputs(proto: object) -> None:
        graph = proto.graph  # type: ignore[attr-defined]
        graph.output.append(graph.output[0])

    _refused(_rewrite(tiny_onnx, tmp_path / "two.onnx", edit=two_outputs),
             "has 2 graph outputs, an s2sr model one")

    def opset(proto: object) -> None:
        proto.opset_import[0].version = 99  # type: ignore[attr-defined]

    _refused(_rewrite(tiny_onnx, tmp_path / "ops.onnx", edit=opset),
             "uses opset 99, not one s2sr exports")


def test_a_header_scale_the_graph_does_not_have_is_refused_before_writing(
        tiny_onnx: Path, tmp_path: Path) -> None:
    bad = _rewrite(tiny_onnx, tmp_path / "x4.onnx", {"scale": "4"})
    read_onnx(bad)  # the header alone is consistent...
    src = _scene(tmp_path / "in.tif", (20, 20))
    with pytest.raises(WeightsError, match=r"turns a \(1, 4, 16, 16\) tile into \(1, 4, 32, "
                                           r"32\), not \(1, 4, 64, 64\)"):
        predict(src, tmp_path / "o.tif", bad)  # ...the graph is probed before anything runs
    assert not (tmp_path / "o.tif").exists()
