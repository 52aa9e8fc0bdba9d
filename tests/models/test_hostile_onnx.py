"""Hostile exported ONNX models (issue 19): only what s2sr's own exports emit is run.

Classes of input covered, each refused in one line before ONNX Runtime sees the file:

* security, file reads: external data in every tensor-holding field (a sparse initializer
  whose values are ``leak.bin`` in the working folder or ``../.ssh/id_x``, a Constant's
  value or sparse value, a ``tensors`` attribute, a local function's body); the leaked
  bytes never reach an output, through the real ``s2sr predict``;
* security, allocation: ``ConstantOfShape([1000, 1000, 500]) -> ReduceSum`` and the other
  operators that allocate from data (``Expand``, ``Tile``, ``Range``, ``Reshape``), a
  ``Resize`` by other scales or by sizes, Conv padding beyond "same", a broadcast that
  multiplies the tile, too many nodes, a 2^40-element initializer, an initializer holding
  fewer values than its shape, an unsupported dtype;
* held: ``If`` / ``Loop`` subgraphs, local functions, custom domains;
* reliability: a header that lies about the band order (with its normalisation reordered,
  or left to the defaults) or the normalisation; an int8 model with full-range int8
  weights (whose output would depend on the CPU: ONNX Runtime's kernels saturate on AVX2
  without VNNI); graphs whose output is NaN or infinite or contradicts the header.
* s2sr's own exports (fp32 at every opset, int8, every architecture option) pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from s2sr import predict
from s2sr.cli.main import cli
from s2sr.core.errors import WeightsError
from s2sr.inference.quantize import int8_onnx
from s2sr.inference.verified_export import export_model
from s2sr.models import build_model, file_sha256, load_model, save_model
from s2sr.models.exported import read_onnx
from s2sr.models.onnx_graph import OPERATORS
from support.rasters import texture, write_geotiff

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the optional "
                                                "extra: pip install 's2sr[onnx]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (the optional extra: pip "
                                          "install 's2sr[onnx]')")
helper = onnx.helper
TP = onnx.TensorProto
Edit = Callable[[Any], None]


@pytest.fixture(scope="module")
def fp32(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_weights, tmp_path_factory.mktemp("onnx") / "m.onnx", "onnx").path


@pytest.fixture(scope="module")
def int8(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("int8")
    made = int8_onnx(load_model(tiny_weights), file_sha256(tiny_weights),
                     cache=folder / "cache")
    path = folder / "q.onnx"
    path.write_bytes(made.data)
    return path


def _edit(src: Path, dst: Path, edit: Edit | None = None,
          header: dict[str, str] | None = None) -> Path:
    proto = onnx.load(str(src), load_external_data=False)
    if header:
        meta = {p.key: p.value for p in proto.metadata_props}
        meta.update(header)
        del proto.metadata_props[:]
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    if edit is not None:
        edit(proto)
    dst.write_bytes(proto.SerializeToString())
    return dst


def _refused(path: Path, pattern: str) -> str:
    with pytest.raises(WeightsError, match=pattern) as info:
        read_onnx(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 500 and str(path) in message
    return message


def _external(tensor: Any, location: str) -> Any:
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TP.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _append_to_output(proto: Any, nodes: list[Any], value: str) -> None:
    """Rewire the graph so that ``output = old_output + value`` (``nodes`` make
    ``value``)."""
    graph = proto.graph
    out = graph.output[0].name
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == out:
                node.output[i] = "s2sr_test_pre"
    graph.node.extend([*nodes, helper.make_node("Add", ["s2sr_test_pre", value], [out])])


# --- security: file reads through external data ------------------------------------------

def _sparse_leak(location: str) -> Edit:
    def edit(proto: Any) -> None:
        values = _external(helper.make_tensor("leak_values", TP.FLOAT, [4], [0.0] * 4),
                           location)
        indices = helper.make_tensor("leak_indices", TP.INT64, [4], [0, 1, 2, 3])
        proto.graph.sparse_initializer.append(
            helper.make_sparse_tensor(values, indices, [1, 4, 1, 1]))
        proto.graph.sparse_initializer[0].values.name = "leak"
        _append_to_output(proto, [], "leak")
    return edit


@pytest.mark.parametrize("location", ["leak.bin", "../.ssh/id_x"])
def test_sparse_initializer_with_external_data_is_refused(fp32: Path, tmp_path: Path,
                                                          location: str) -> None:
    _refused(_edit(fp32, tmp_path / "leak.onnx", _sparse_leak(location)),
             "it holds sparse initializers, which no s2sr export has")


def test_the_leak_never_reaches_an_output_through_the_cli(
        fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ONNX Runtime resolves external data against it
    secret = np.array([1.25, 2.5, 3.75, 5.0], np.float32)
    (tmp_path / "leak.bin").write_bytes(secret.tobytes())
    bad = _edit(fp32, tmp_path / "leak.onnx", _sparse_leak("leak.bin"))
    src = write_geotiff(tmp_path / "in.tif",
                        (texture((24, 24), 4, seed=1) * 10000).astype(np.uint16), nodata=0)
    out = tmp_path / "out.tif"
    result = CliRunner().invoke(cli, ["predict", str(src), "-o", str(out), "--weights",
                                      str(bad), "-q"])
    assert result.exit_code == 1, result.output
    assert "sparse initializers" in result.output and "Traceback" not in result.output
    assert not out.exists()


def _constant_external(proto: Any) -> None:
    tensor = _external(helper.make_tensor("c", TP.FLOAT, [1], [0.0]), "leak.bin")
    _append_to_output(proto, [helper.make_node("Constant", [], ["c"], value=tensor)], "c")


def _constant_sparse(proto: Any) -> None:
    values = _external(helper.make_tensor("v", TP.FLOAT, [1], [0.0]), "leak.bin")
    sparse = helper.make_sparse_tensor(values, helper.make_tensor("i", TP.INT64, [1], [0]),
                                       [1])
    _append_to_output(proto, [helper.make_node("Constant", [], ["c"], sparse_value=sparse)],
                      "c")


def _tensors_attribute(proto: Any) -> None:
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    tensor = _external(helper.make_tensor("t", TP.FLOAT, [1], [0.0]), "leak.bin")
    conv.attribute.append(helper.make_attribute("extra", [tensor]))


def _function(proto: Any) -> None:
    tensor = _external(helper.make_tensor("t", TP.FLOAT, [1], [0.0]), "leak.bin")
    body = helper.make_node("Constant", [], ["y"], value=tensor)
    proto.functions.append(helper.make_function("local", "Leak", [], ["y"], [body],
                                                [helper.make_opsetid("", 17)]))
    proto.opset_import.append(helper.make_opsetid("local", 1))
    _append_to_output(proto, [helper.make_node("Leak", [], ["c"], domain="local")], "c")


def _initializer_external(proto: Any) -> None:
    _external(proto.graph.initializer[0], "/etc/passwd")


@pytest.mark.parametrize(("edit", "pattern"), [
    (_constant_external, "tensor 'c' refers to an external data file"),
    (_constant_sparse, "node 'Constant' holds attribute 'sparse_value'"),
    (_tensors_attribute, "node 'Conv' holds attribute 'extra'"),
    (_function, "imports operator domain 'local'|defines local functions"),
    (_initializer_external, "refers to an external data file, which s2sr never reads"),
], ids=["constant", "constant-sparse", "tensors-attribute", "local-function", "initializer"])
def test_external_data_in_any_tensor_field_is_refused(fp32: Path, tmp_path: Path, edit: Edit,
                                                      pattern: str) -> None:
    _refused(_edit(fp32, tmp_path / "x.onnx", edit), pattern)


def test_local_functions_are_refused_even_in_the_standard_domain(fp32: Path,
                                                                 tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        body = helper.make_node("Relu", ["x"], ["y"])
        proto.functions.append(helper.make_function("", "Quiet", ["x"], ["y"], [body],
                                                    [helper.make_opsetid("", 17)]))

    _refused(_edit(fp32, tmp_path / "f.onnx", edit), r"defines local functions \('Quiet'\)")


# --- security: allocation from data ------------------------------------------------------

def _constant_of_shape(proto: Any) -> None:
    shape = helper.make_tensor("shape", TP.INT64, [3], [1000, 1000, 500])
    nodes = [helper.make_node("Constant", [], ["shape"], value=shape),
             helper.make_node("ConstantOfShape", ["shape"], ["big"]),
             helper.make_node("ReduceSum", ["big"], ["sum"], keepdims=0)]
    _append_to_output(proto, nodes, "sum")


def test_constant_of_shape_bomb_is_refused_before_anything_runs(fp32: Path,
                                                                tmp_path: Path) -> None:
    message = _refused(_edit(fp32, tmp_path / "bomb.onnx", _constant_of_shape),
                       "operator 'ConstantOfShape' is not one s2sr's exports use")
    assert "Conv" in message and "Resize" in message  # what is allowed


@pytest.mark.parametrize("op", ["Expand", "Tile", "Range", "Reshape", "Loop", "If", "Scan",
                                "ReduceSum", "MatMul", "Gather"])
def test_operators_s2sr_does_not_export_are_refused(fp32: Path, tmp_path: Path,
                                                    op: str) -> None:
    assert op not in OPERATORS

    def edit(proto: Any) -> None:
        _append_to_output(proto, [helper.make_node(op, ["s2sr_test_pre"], ["x"])], "x")

    _refused(_edit(fp32, tmp_path / "op.onnx", edit),
             f"operator '{op}' is not one s2sr's exports use")


def test_subgraphs_are_refused_whatever_the_operator(fp32: Path, tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        branch = helper.make_graph([], "g", [], [])
        conv = next(n for n in proto.graph.node if n.op_type == "Conv")
        conv.attribute.append(helper.make_attribute("then_branch", branch))

    _refused(_edit(fp32, tmp_path / "g.onnx", edit), "holds subgraph 'then_branch'")


def _resize(scales: list[float] | None, sizes: list[int] | None = None) -> Edit:
    def edit(proto: Any) -> None:
        inputs = ["s2sr_test_pre", ""]
        nodes = []
        if scales is not None:
            nodes.append(helper.make_node("Constant", [], ["sc"], value=helper.make_tensor(
                "sc", TP.FLOAT, [4], scales)))
            inputs.append("sc")
        if sizes is not None:
            inputs += ["", "sz"]
            nodes.append(helper.make_node("Constant", [], ["sz"], value=helper.make_tensor(
                "sz", TP.INT64, [4], sizes)))
        nodes.append(helper.make_node("Resize", inputs, ["big"], mode="nearest"))
        _append_to_output(proto, [*nodes, helper.make_node("Relu", ["big"], ["r"])], "r")
    return edit


@pytest.mark.parametrize(("edit", "pattern"), [
    (_resize([1, 1, 1000, 1000]), r"a Resize by 'sc', not by constant scales \(1, 1, 2, 2\)"),
    (_resize(None, [1, 4, 100000, 100000]), "a Resize by anything but constant scales"),
], ids=["scales", "sizes"])
def test_resize_by_anything_but_the_header_scale_is_refused(fp32: Path, tmp_path: Path,
                                                            edit: Edit, pattern: str) -> None:
    _refused(_edit(fp32, tmp_path / "r.onnx", edit), pattern)


@pytest.mark.parametrize(("attribute", "value"), [
    ("pads", [100000, 100000, 100000, 100000]), ("strides", [2, 2]), ("dilations", [50, 50]),
    ("group", 2), ("kernel_shape", [3, 3, 3])])
def test_conv_attributes_beyond_the_exports_are_refused(fp32: Path, tmp_path: Path,
                                                        attribute: str, value: Any) -> None:
    def edit(proto: Any) -> None:
        conv = next(n for n in proto.graph.node if n.op_type == "Conv")
        for attr in conv.attribute:
            if attr.name == attribute:
                conv.attribute.remove(attr)
                break
        conv.attribute.append(helper.make_attribute(attribute, value))

    _refused(_edit(fp32, tmp_path / "c.onnx", edit), "a Conv with")


def test_a_broadcast_that_multiplies_the_tile_is_refused(fp32: Path, tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        proto.graph.initializer.append(helper.make_tensor(
            "ones", TP.FLOAT, [1000, 1, 1, 1], [0.0] * 1000))
        # (1000, 1, 1, 1) + (1, 4, 32, 32) -> (1000, 4, 32, 32): 1000 tiles of memory, and
        # a shape the declared (batch, 4, height, width) output allows
        _append_to_output(proto, [], "ones")

    _refused(_edit(fp32, tmp_path / "b.onnx", edit),
             r"node 'Add' makes 4096000 values from a 16x16 tile, more than the 32768")


def test_too_many_nodes_are_refused(fp32: Path, tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        nodes, last = [], "s2sr_test_pre"
        for i in range(400):
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
        _append_to_output(proto, nodes, last)

    _refused(_edit(fp32, tmp_path / "n.onnx", edit), r"has 41\d nodes, more than the 288")


def _huge_initializer(proto: Any) -> None:
    tensor = proto.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([1 << 20, 1 << 20])  # 2^40 elements, no data


def _short_initializer(proto: Any) -> None:
    tensor = proto.graph.initializer[0]
    tensor.raw_data = tensor.raw_data[:8]


def _double_initializer(proto: Any) -> None:
    tensor = proto.graph.initializer[0]
    tensor.data_type = TP.DOUBLE


def _huge_constant(proto: Any) -> None:
    tensor = TP(name="c", data_type=TP.FLOAT, dims=[1 << 30])  # no data
    _append_to_output(proto, [helper.make_node("Constant", [], ["c"], value=tensor)], "c")


@pytest.mark.parametrize(("edit", "pattern"), [
    (_huge_initializer, r"has shape \[1048576, 1048576\], more than the 67108864 values"),
    (_huge_constant, r"has shape \[1073741824\], more than the 67108864 values"),
    (_short_initializer, r"holds 2 values for its shape \[\d+(, \d+)*\] \(\d+\)"),
    (_double_initializer, "is of ONNX data type 11"),
], ids=["2^40-initializer", "2^30-constant", "short", "float64"])
def test_initializers_are_bounded_and_complete(fp32: Path, tmp_path: Path, edit: Edit,
                                               pattern: str) -> None:
    _refused(_edit(fp32, tmp_path / "i.onnx", edit), pattern)


# --- reliability: the header against the graph ------------------------------------------

def _header_of(path: Path) -> dict[str, str]:
    return read_onnx(path).header


def test_a_header_that_lies_about_the_band_order_is_refused(fp32: Path, tmp_path: Path
                                                            ) -> None:
    options = json.loads(_header_of(fp32)["options"])
    order = [3, 2, 1, 0]
    bands = ["B08", "B04", "B03", "B02"]
    reordered = {k: [v[i] for i in order] for k, v in options.items()}
    for name, opts in (("reordered", reordered), ("defaults", {})):
        bad = _edit(fp32, tmp_path / f"{name}.onnx", header={
            "bands": json.dumps(bands), "options": json.dumps(opts)})
        _refused(bad, "the graph does not normalise its input with the header's mean and "
                      "std for bands B08, B04, B03, B02")
    other = dict(options, mean=[m + 0.01 for m in options["mean"]])
    _refused(_edit(fp32, tmp_path / "mean.onnx", header={"options": json.dumps(other)}),
             "does not normalise its input with the header's mean")


def test_predict_refuses_the_band_order_lie_and_writes_nothing(fp32: Path,
                                                               tmp_path: Path) -> None:
    options = json.loads(_header_of(fp32)["options"])
    bad = _edit(fp32, tmp_path / "lie.onnx", header={
        "bands": '["B08", "B04", "B03", "B02"]',
        "options": json.dumps({k: v[::-1] for k, v in options.items()})})
    src = write_geotiff(tmp_path / "in.tif",
                        (texture((20, 20), 4, seed=5) * 10000).astype(np.uint16), nodata=0)
    with pytest.raises(WeightsError, match="scramble the bands"):
        predict(src, tmp_path / "o.tif", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "lie.onnx"]


def test_full_range_int8_weights_are_refused(int8: Path, tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        weight = next(t for t in proto.graph.initializer
                      if t.data_type == TP.INT8 and len(t.dims) == 4)
        values = onnx.numpy_helper.to_array(weight).copy()
        values.flat[0] = 127  # what quantize_static makes without reduce_range
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))

    _refused(_edit(int8, tmp_path / "full.onnx", edit),
             r"int8 Conv weights .* are not within \[-64, 64\].*saturate ONNX Runtime on "
             "CPUs without AVX-512 VNNI")


def _nan_bias(value: float) -> Edit:
    def edit(proto: Any) -> None:
        bias = next(t for t in proto.graph.initializer if t.name == "tail.bias")
        values = onnx.numpy_helper.to_array(bias).copy()
        values[0] = value
        bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    return edit


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_graph_that_outputs_nan_or_inf_writes_nothing(fp32: Path, tmp_path: Path,
                                                        value: float) -> None:
    bad = _edit(fp32, tmp_path / "nan.onnx", _nan_bias(value))
    read_onnx(bad)  # a legal graph: what it computes is found when it runs
    src = write_geotiff(tmp_path / "in.tif",
                        (texture((20, 20), 4, seed=6) * 10000).astype(np.uint16), nodata=0)
    with pytest.raises(WeightsError, match="NaN or infinite values"):
        predict(src, tmp_path / "o.tif", bad, tile=16, overlap=4)
    assert not (tmp_path / "o.tif").exists()


def test_an_output_with_other_bands_than_the_header_is_refused(fp32: Path,
                                                               tmp_path: Path) -> None:
    def edit(proto: Any) -> None:
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3

    _refused(_edit(fp32, tmp_path / "o.onnx", edit),
             r"its output is not float32 \(batch, 4, height, width\)")


# --- s2sr's own exports pass -------------------------------------------------------------

@pytest.mark.parametrize(("scale", "options", "opset"), [
    (2, {}, 13), (4, {"global_residual": True}, 20),
    (4, {"upsampler_norm": "batch", "global_residual": True}, 17)])
def test_every_export_passes(tmp_path: Path, scale: int, options: dict[str, Any],
                             opset: int) -> None:
    torch.manual_seed(3)
    weights = save_model(build_model("edsr-tiny", scale=scale, **options),
                         tmp_path / "w.safetensors")
    out = export_model(weights, tmp_path / "m.onnx", "onnx", opset=opset).path
    assert read_onnx(out).spec.scale == scale


def test_the_int8_export_passes_with_7_bit_weights(int8: Path) -> None:
    proto = onnx.load(str(int8))
    weights = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer
               if t.data_type == TP.INT8 and len(t.dims) == 4]
    assert weights and max(int(np.abs(w).max()) for w in weights) <= 64
    assert read_onnx(int8).header["precision"] == "int8"
