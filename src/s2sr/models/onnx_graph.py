"""What an ONNX graph handed to s2sr may hold: what s2sr's own exports emit, and no more.

An ONNX file is untrusted data that ONNX Runtime turns into allocations and file reads, so
the graph is checked before any session is made (:func:`check_graph`):

* operators: an allow-list (:data:`OPERATORS`) of those :func:`s2sr.models.serialize.onnx_bytes`
  and the int8 quantiser (:mod:`s2sr.inference.quantize`, QDQ) emit, each with the
  attributes and attribute types it emits. Nothing that allocates from data
  (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``, ``Reshape``...), no subgraphs
  (``If``, ``Loop``, ``Scan``), no local functions, no other domains;
* tensors: every tensor-holding field (initializers, sparse initializers, ``Constant``
  values, function and training bodies) is either refused or holds its data inline, of a
  dtype s2sr writes, with as many values as its shape says and at most
  :data:`MAX_TENSOR_ELEMENTS`: ONNX Runtime never opens another file (external data is
  resolved against the working folder) and a shape cannot ask for more than the file holds;
* memory: ``Resize`` scales by constants equal to the header's scale, ``Conv`` has unit
  strides and dilations and at most "same" padding, and shapes are inferred on a
  :data:`PROBE` px tile: every tensor must have a known shape of at most ``scale**2``
  times the widest Conv of the header's architecture values per input pixel, and at most
  :func:`max_nodes` nodes. Memory is then bounded by the tile size;
* normalisation: the graph normalises its input with constants equal to the header's
  ``mean`` and ``std`` in the header's band order, so a header that lies about the band
  order (with its normalisation in that order, or the defaults) is refused as for a
  TorchScript archive;
* int8: quantised Conv weights within 7 bits (:data:`INT8_WEIGHT_RANGE`), so that ONNX
  Runtime computes the same on every x86-64 CPU (AVX2 without VNNI included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from s2sr.core.checks import shown
from s2sr.core.errors import WeightsError
from s2sr.models.registry import ModelSpec, expected_state

_FIX = "export it again with s2sr export --weights FILE.safetensors"

# AttributeProto types (onnx.AttributeProto.AttributeType), named here so that the table
# below reads without importing onnx
_FLOAT, _INT, _STRING, _TENSOR, _INTS = 1, 2, 3, 4, 7

#: Operators s2sr's exports emit (fp32 at opsets 13 to 20, int8 QDQ), with the attributes
#: (name: AttributeProto type) each may carry.
OPERATORS: Final[dict[str, dict[str, int]]] = {
    "Conv": {"auto_pad": _STRING, "dilations": _INTS, "group": _INT, "kernel_shape": _INTS,
             "pads": _INTS, "strides": _INTS},
    "Add": {}, "Sub": {}, "Mul": {}, "Div": {}, "Relu": {}, "Identity": {},
    "DepthToSpace": {"blocksize": _INT, "mode": _STRING},
    "Constant": {"value": _TENSOR},
    "Resize": {"coordinate_transformation_mode": _STRING, "cubic_coeff_a": _FLOAT,
               "exclude_outside": _INT, "extrapolation_value": _FLOAT, "mode": _STRING,
               "nearest_mode": _STRING},
    "QuantizeLinear": {"axis": _INT},
    "DequantizeLinear": {"axis": _INT},
}
#: TensorProto data types s2sr writes: float32, uint8, int8, int32 (int8 biases), int64.
DTYPES: Final[dict[int, Any]] = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32,
                                 7: np.int64}
#: Most values in one tensor (the largest a model within bounds has: 2048 x 512 x 3 x 3).
MAX_TENSOR_ELEMENTS: Final[int] = 1 << 26
#: Largest Conv kernel side.
MAX_KERNEL: Final[int] = 9
#: Range of quantised Conv weights (ONNX Runtime's ``reduce_range``): a pair of u8 x s8
#: products then fits the int16 sums of AVX2's ``vpmaddubsw`` (2 * 255 * 64 < 2**15).
INT8_WEIGHT_RANGE: Final[tuple[int, int]] = (-64, 64)
#: Side of the tile shapes are inferred on (px).
PROBE: Final[int] = 16


def max_nodes(spec: ModelSpec) -> int:
    """Most nodes a graph of ``spec`` may have: 24 per residual block and 96 more (an int8
    EDSR has about 11 per block and 40 around them)."""
    blocks = int(spec.options.get("n_resblocks", 8))
    return 24 * blocks + 96


def _refuse(label: str, what: str) -> WeightsError:
    return WeightsError(f"{label}: {what}, which no s2sr export has: {_FIX}")


def _elements(label: str, name: str, dims: Sequence[int]) -> int:
    count = 1
    for d in dims:
        if d < 0:
            raise _refuse(label, f"tensor {shown(name)} has a negative dimension")
        count *= d
        if count > MAX_TENSOR_ELEMENTS:
            raise WeightsError(f"{label}: tensor {shown(name)} has shape {shown(list(dims), 60)}"
                               f", more than the {MAX_TENSOR_ELEMENTS} values any s2sr model "
                               f"tensor has: {_FIX}")
    return count


def check_tensor(label: str, tensor: Any) -> None:
    """A tensor held in the file itself: a dtype of :data:`DTYPES`, no external data, at
    most :data:`MAX_TENSOR_ELEMENTS`, as many values as its shape says."""
    from onnx import TensorProto

    name = tensor.name or "(unnamed)"
    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        raise WeightsError(f"{label}: tensor {shown(name)} refers to an external data file, "
                           f"which s2sr never reads: {_FIX}")
    if tensor.data_type not in DTYPES or tensor.HasField("segment"):
        raise _refuse(label, f"tensor {shown(name)} is of ONNX data type {tensor.data_type}")
    count = _elements(label, name, tensor.dims)
    itemsize = np.dtype(DTYPES[tensor.data_type]).itemsize
    held = len(tensor.raw_data) // itemsize if tensor.raw_data else max(
        len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data))
    if held != count or (tensor.raw_data and len(tensor.raw_data) != count * itemsize):
        raise WeightsError(f"{label}: tensor {shown(name)} holds {held} values for its shape "
                           f"{shown(list(tensor.dims), 60)} ({count}): {_FIX}")


def _check_containers(label: str, proto: Any) -> None:
    """No tensor-holding field beyond the initializers and Constant values."""
    graph = proto.graph
    if len(graph.sparse_initializer):
        raise _refuse(label, "it holds sparse initializers")
    if len(proto.functions):
        raise _refuse(label, f"it defines local functions ({shown(proto.functions[0].name)})")
    if len(proto.training_info):
        raise _refuse(label, "it holds training graphs")
    for tensor in graph.initializer:
        check_tensor(label, tensor)


def _check_node(label: str, node: Any) -> None:
    from onnx import helper

    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise WeightsError(f"{label}: node {shown(op)} of domain {shown(node.domain)} is not a "
                           f"standard ONNX operator: {_FIX}")
    allowed = OPERATORS.get(op)
    if allowed is None:
        raise WeightsError(f"{label}: operator {shown(op)} is not one s2sr's exports use "
                           f"({', '.join(sorted(OPERATORS))}): {_FIX}")
    values: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.ref_attr_name or allowed.get(attr.name) != attr.type:
            kind = "subgraph" if attr.type in (5, 10) else "attribute"
            raise _refuse(label, f"node {shown(op)} holds {kind} {shown(attr.name)} "
                                 f"(type {attr.type})")
        values[attr.name] = attr.t if attr.type == _TENSOR else helper.get_attribute_value(attr)
    if op == "Constant":
        if "value" not in values:
            raise _refuse(label, "a Constant without a tensor value")
        check_tensor(label, values["value"])
    elif op == "Conv":
        kernel = list(values.get("kernel_shape", []))
        if (len(kernel) != 2 or not all(1 <= k <= MAX_KERNEL for k in kernel)
                or any(v != 1 for v in values.get("strides", [1]))
                or any(v != 1 for v in values.get("dilations", [1]))
                or values.get("group", 1) != 1
                or values.get("auto_pad", b"NOTSET") != b"NOTSET"
                or not all(0 <= p <= kernel[i % 2] // 2
                           for i, p in enumerate(values.get("pads", [0] * 4)))):
            raise _refuse(label, f"a Conv with {shown(values, 120)}")
    elif op == "DepthToSpace" and values.get("blocksize") != 2:
        raise _refuse(label, f"a DepthToSpace of block size {shown(values.get('blocksize'))}")
    elif op == "Resize" and (len(node.input) != 3 or node.input[1]):
        raise _refuse(label, "a Resize by anything but constant scales")


class _Constants:
    """The initializers and Constant outputs of a graph (checked by :func:`check_tensor`),
    by name; values are converted only when asked for (no copy of all the weights)."""

    def __init__(self, graph: Any) -> None:
        self.tensors = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    self.tensors[node.output[0]] = attr.t

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        tensor = self.tensors.get(name)
        return None if tensor is None else np.asarray(numpy_helper.to_array(tensor))


def _check_resize(label: str, graph: Any, consts: _Constants, scale: int) -> None:
    want = np.array([1, 1, scale, scale], np.float32)
    for node in graph.node:
        if node.op_type == "Resize":
            scales = consts.get(node.input[2])
            if scales is None or scales.shape != (4,) or not np.array_equal(scales, want):
                raise _refuse(label, f"a Resize by {shown(node.input[2])}, not by constant "
                                     f"scales (1, 1, {scale}, {scale}) as the header's scale "
                                     "needs")


def _check_normalisation(label: str, graph: Any, consts: _Constants,
                         spec: ModelSpec) -> None:
    """The input normalised as ``(x - mean) / std`` with the header's values, in the
    header's band order (the output side may be fused into the last Conv, as the int8
    quantiser does)."""
    bands = len(spec.bands)
    mean = np.asarray(spec.options["mean"], np.float32).reshape(1, bands, 1, 1)
    std = np.asarray(spec.options["std"], np.float32).reshape(1, bands, 1, 1)
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)

    def const(node: Any, want: np.ndarray) -> bool:
        value = consts.get(node.input[1]) if len(node.input) == 2 else None
        return value is not None and value.shape == want.shape and bool(
            np.allclose(value, want, rtol=1e-6, atol=0.0))

    name = next(i.name for i in graph.input if i.name not in consts)
    first = users.get(name, [])
    then = users.get(first[0].output[0], []) if len(first) == 1 else []
    if not (len(first) == 1 and first[0].op_type == "Sub" and const(first[0], mean)
            and len(then) == 1 and then[0].op_type == "Div" and const(then[0], std)):
        raise WeightsError(
            f"{label}: the graph does not normalise its input with the header's mean and std "
            f"for bands {', '.join(spec.bands)} (a header whose band order or normalisation "
            f"was changed would scramble the bands): {_FIX}")


def _check_int8_weights(label: str, graph: Any, consts: _Constants) -> None:
    """Quantised Conv weights within 7 bits (:data:`INT8_WEIGHT_RANGE`), as s2sr's int8
    export makes them: full-range int8 weights saturate ONNX Runtime's int8 kernels on
    CPUs without AVX-512 VNNI, so the output would depend on the CPU."""
    low, high = INT8_WEIGHT_RANGE
    feeds_weights = {n.input[1] for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in feeds_weights:
            value = consts.get(node.input[0])
            if value is None or value.dtype != np.int8 or (value.size and not (
                    low <= int(value.min()) and int(value.max()) <= high)):
                raise WeightsError(
                    f"{label}: its int8 Conv weights {shown(node.input[0])} are not within "
                    f"[{low}, {high}] as s2sr's int8 export makes them (full-range int8 "
                    "weights saturate ONNX Runtime on CPUs without AVX-512 VNNI, so results "
                    "would depend on the CPU): export it again with s2sr export --int8")


def _check_shapes(label: str, proto: Any, spec: ModelSpec) -> None:
    """Shapes inferred on a ``(1, C, PROBE, PROBE)`` tile: all known, none larger than
    ``scale**2`` times the widest Conv of the header's architecture (or ``C``) values per
    input pixel."""
    import onnx

    # the graph without the weights' values (their shapes as inputs): no copy of the weights
    probe = onnx.ModelProto(ir_version=proto.ir_version, opset_import=proto.opset_import)
    graph = probe.graph
    graph.node.extend(proto.graph.node)
    graph.output.extend(proto.graph.output)
    bands = len(spec.bands)
    known = {t.name for t in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name not in known:
            fixed = graph.input.add()
            fixed.CopyFrom(value)
            dims = fixed.type.tensor_type.shape.dim
            for dim, size in zip(dims, (1, bands, PROBE, PROBE), strict=True):
                dim.Clear()
                dim.dim_value = size
    for tensor in proto.graph.initializer:
        if len(tensor.dims) <= 1 and sum(tensor.dims) <= 16:  # scales, zero points: values
            graph.initializer.append(tensor)
        else:
            graph.input.append(onnx.helper.make_tensor_value_info(
                tensor.name, tensor.data_type, list(tensor.dims)))
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except Exception as err:  # onnx's InferenceError and friends
        raise WeightsError(f"{label}: its shapes do not follow from a (1, {bands}, {PROBE}, "
                           f"{PROBE}) tile ({shown(str(err).strip()[:120])}): {_FIX}") from None
    shapes = {v.name: v.type.tensor_type.shape for v in
              (*inferred.graph.value_info, *inferred.graph.output)}
    widest = max(shape[0] for shape, _ in expected_state(spec).values() if len(shape) == 4)
    per_pixel = max(widest, bands) * spec.scale ** 2
    limit = per_pixel * PROBE * PROBE
    for node in inferred.graph.node:
        for name in node.output:
            shape = shapes.get(name)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim] \
                if shape is not None else [-1]
            if any(d < 0 for d in dims):
                raise _refuse(label, f"a tensor ({shown(name)}) whose shape depends on its "
                                     "data")
            count = int(np.prod(dims, dtype=np.int64))
            if count > limit:
                raise WeightsError(
                    f"{label}: node {shown(node.op_type)} makes {count} values from a {PROBE}x"
                    f"{PROBE} tile, more than the {limit} an s2sr model of the header's "
                    f"architecture makes (its memory would not be bounded by the tile "
                    f"size): {_FIX}")


def check_graph(label: str, proto: Any, spec: ModelSpec) -> None:
    """Refuse anything s2sr's exports do not emit (see the module's docstring).

    Args:
        label: how messages name the file (``"ONNX model m.onnx"``).
        proto: the parsed ``onnx.ModelProto``.
        spec: the checked spec of its header.

    Raises:
        WeightsError: in one line, naming what is refused.
    """
    _check_containers(label, proto)
    graph = proto.graph
    if len(graph.node) > max_nodes(spec):
        blocks = spec.options.get("n_resblocks", 8)
        raise WeightsError(f"{label} has {len(graph.node)} nodes, more than the "
                           f"{max_nodes(spec)} an s2sr model of {blocks} residual blocks "
                           f"has: {_FIX}")
    for node in graph.node:
        _check_node(label, node)
    consts = _Constants(graph)
    _check_resize(label, graph, consts, spec.scale)
    _check_normalisation(label, graph, consts, spec)
    _check_int8_weights(label, graph, consts)
    _check_shapes(label, proto, spec)
