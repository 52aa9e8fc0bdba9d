"""Reading exported models (``s2sr export``) as narrowly as weights files.

A file handed to ``predict --weights`` may be a ``.safetensors`` weights file, an exported
ONNX model or an exported TorchScript archive (:func:`sniff` tells which from its first
bytes). The two exported kinds are untrusted like any weights file:

* ONNX: size bounded, parsed as protobuf (no code in it), the s2sr header read from
  ``metadata_props`` and checked like a weights file's, then the graph: one float32
  ``(B, C, H, W)`` input with the header's ``C`` and one output, and only what s2sr's
  exports emit (:mod:`s2sr.models.onnx_graph`: their operators, tensors held inline, memory
  bounded by the tile size, the header's normalisation in the graph's constants).
* TorchScript: the archive is read as a zip, never by ``torch.jit.load`` (which would
  compile the program it holds): the header entry (bounded), then the embedded weights
  file, whose SHA-256 must be the header's ``source_sha256`` and which loads through
  :func:`~s2sr.models.weights.load_model` with all its checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from torch import nn

from s2sr.core.checks import shown
from s2sr.core.errors import UsageError, WeightsError
from s2sr.models.header import MAX_KEYS, check_mapping, parse_sha256, parse_spec, spec_error
from s2sr.models.onnx_graph import check_graph
from s2sr.models.registry import ModelSpec, expected_state, get_spec
from s2sr.models.serialize import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    HEADER_ENTRY,
    OPSETS,
    WEIGHTS_ENTRY,
)
from s2sr.models.weights import MAX_FILE_BYTES, MAX_HEADER_BYTES, check_model_file, load_model

KINDS: Final[tuple[str, ...]] = ("safetensors", "onnx", "torchscript")
#: Most entries read from a TorchScript archive (a 64-block model has about 800).
MAX_ZIP_ENTRIES: Final[int] = 20_000
#: ONNX operator domains accepted: the standard operator set only.
_DOMAINS = ("", "ai.onnx")
_FIX = "export it again with s2sr export --weights FILE.safetensors"


@dataclass(frozen=True)
class OnnxModel:
    """An exported ONNX model, checked.

    Attributes:
        path: the file. spec: the model's spec from the header.
        data: the serialised model (what ONNX Runtime loads).
        header: the s2sr header. source_sha256: SHA-256 of the weights file exported.
    """

    path: Path
    spec: ModelSpec
    data: bytes
    header: dict[str, str]
    source_sha256: str


def _is_s2sr_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return len(names) <= MAX_ZIP_ENTRIES and any(
        n.endswith(f"/extra/{HEADER_ENTRY}") for n in names)


def sniff(path: str | os.PathLike[str]) -> str:
    """Which kind of model file ``path`` is: one of :data:`KINDS`.

    A zip holding an s2sr header is a TorchScript export; a ``.onnx`` name or a protobuf
    start (``0x08``: the ``ir_version`` field) is ONNX; anything else is taken as a
    weights file, whose own checks then report what is wrong with it.
    """
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return "safetensors"  # load_model names the missing file or folder
    if head.startswith(b"PK\x03\x04"):
        return "torchscript" if _is_s2sr_archive(p) else "safetensors"
    if p.suffix.lower() == ".onnx":
        return "onnx"
    if head[8:9] == b"{":
        return "safetensors"
    return "onnx" if head[:1] == b"\x08" else "safetensors"


def _spec(label: str, meta: dict[str, str]) -> ModelSpec:
    """The header's spec, with the architecture's own bounds run (on the "meta" device:
    nothing allocated) although nothing is built from it."""
    spec = parse_spec(label, meta, _FIX)
    try:
        expected_state(spec)
    except UsageError as err:
        raise spec_error(label, err, _FIX) from None
    return spec


def _check_format(label: str, meta: dict[str, str], kind: str) -> None:
    if meta.get("format") != EXPORT_FORMAT:
        article = "an" if kind[0] in "AEIOU" else "a"
        raise WeightsError(f"{label} is {article} {kind} model but not one exported by s2sr (no "
                           f"'{EXPORT_FORMAT}' header): {_FIX} --format {kind.lower()}")
    version = meta.get("format_version")
    if version != EXPORT_VERSION:
        raise WeightsError(f"{label}: header format_version {shown(version)} is not one this "
                           f"s2sr reads ({EXPORT_VERSION}): upgrade s2sr or {_FIX}")


def _check_graph(label: str, proto: Any, spec: ModelSpec) -> None:
    """Standard opsets, the expected signature, then what
    :func:`~s2sr.models.onnx_graph.check_graph` allows (s2sr's exports' operators)."""
    import onnx  # optional dependency (s2sr[onnx])

    low, high = OPSETS
    for entry in proto.opset_import:
        if entry.domain not in _DOMAINS:
            raise WeightsError(f"{label} imports operator domain {shown(entry.domain)}; s2sr "
                               f"runs standard ONNX operators only: {_FIX}")
        if not low <= entry.version <= high:
            raise WeightsError(f"{label} uses opset {entry.version}, not one s2sr exports "
                               f"({low} to {high}): {_FIX}")
    graph = proto.graph
    known = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in known]
    bands = len(spec.bands)
    for what, values in (("input", inputs), ("output", list(graph.output))):
        if len(values) != 1:
            raise WeightsError(f"{label} has {len(values)} graph {what}s, an s2sr model "
                               f"one: {_FIX}")
        tensor = values[0].type.tensor_type
        dims = tensor.shape.dim
        if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4 or (
                dims[1].dim_value != bands):
            raise WeightsError(
                f"{label}: its {what} is not float32 (batch, {bands}, height, width) as the "
                f"header's {bands} bands need: {_FIX}")
    check_graph(label, proto, spec)
    try:
        onnx.checker.check_model(proto)
    except Exception as err:  # onnx raises its own ValidationError (and others)
        raise WeightsError(f"{label} is not a valid ONNX model "
                           f"({shown(str(err).strip().splitlines()[0], 120)}): {_FIX}") from None


def read_onnx(path: str | os.PathLike[str]) -> OnnxModel:
    """Read and check an exported ONNX model (nothing run).

    Raises:
        InputNotFoundError: the file does not exist.
        UsageError: the ``onnx`` package is missing.
        WeightsError: anything wrong with the file, in one line naming the header key or
            graph part.
    """
    path = Path(path)
    label = f"ONNX model {path}"
    check_model_file(path, "ONNX model", _FIX)
    try:
        import onnx  # optional dependency (s2sr[onnx])
    except ImportError:
        raise UsageError(f"{path} is an ONNX model: reading it needs the onnx extra, "
                         "pip install 's2sr[onnx]'") from None
    data = path.read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError and friends
        raise WeightsError(f"{label} is corrupt, truncated or not an ONNX file "
                           f"({shown(str(err), 80)}): {_FIX}") from None
    props = list(proto.metadata_props)
    if len(props) > MAX_KEYS:
        raise WeightsError(f"{label}: the s2sr header has {len(props)} keys, more than the "
                           f"{MAX_KEYS} s2sr writes; {_FIX}")
    if len({p.key for p in props}) != len(props):
        raise WeightsError(f"{label}: the s2sr header names a key twice; {_FIX}")
    meta = check_mapping({p.key: p.value for p in props}, label, _FIX)
    _check_format(label, meta, "ONNX")
    spec = _spec(label, meta)
    sha = parse_sha256(label, meta, "source_sha256", _FIX)
    _check_graph(label, proto, spec)
    return OnnxModel(path=path, spec=spec, data=data, header=meta, source_sha256=sha)


def _entry(label: str, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    found = [i for i in archive.infolist() if i.filename.endswith(f"/extra/{name}")]
    if len(found) != 1:
        raise WeightsError(f"{label} holds {len(found)} '{name}' entries, an s2sr export "
                           f"one; {_FIX} --format torchscript")
    info = found[0]
    if info.file_size > limit:
        raise WeightsError(f"{label}: its {name} is {info.file_size} bytes, more than the "
                           f"{limit} s2sr reads; {_FIX} --format torchscript")
    with archive.open(info) as handle:
        return handle.read(limit + 1)


def _read_archive(path: Path) -> tuple[dict[str, str], bytes]:
    label = f"TorchScript model {path}"
    check_model_file(path, "TorchScript model", _FIX)
    try:
        with zipfile.ZipFile(path) as archive:
            if len(archive.infolist()) > MAX_ZIP_ENTRIES:
                raise WeightsError(f"{label} holds more than {MAX_ZIP_ENTRIES} entries; "
                                   f"{_FIX} --format torchscript")
            raw = _entry(label, archive, HEADER_ENTRY, MAX_HEADER_BYTES)
            weights = _entry(label, archive, WEIGHTS_ENTRY, MAX_FILE_BYTES)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        if isinstance(err, WeightsError):
            raise
        raise WeightsError(f"{label} is corrupt or truncated ({shown(str(err), 80)}): "
                           f"{_FIX} --format torchscript") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise WeightsError(f"{label}: its {HEADER_ENTRY} is not valid JSON; {_FIX} "
                           "--format torchscript") from None
    return check_mapping(header, label, _FIX), weights


def read_torchscript_header(path: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, str]]:
    """The checked spec and header of an exported TorchScript archive (nothing loaded)."""
    path = Path(path)
    label = f"TorchScript model {path}"
    meta, _ = _read_archive(path)
    _check_format(label, meta, "TorchScript")
    spec = _spec(label, meta)
    parse_sha256(label, meta, "source_sha256", _FIX)
    return spec, meta


def load_torchscript(path: str | os.PathLike[str]) -> nn.Module:
    """The PyTorch model of an exported TorchScript archive, rebuilt from its embedded
    weights file (checked as any weights file); its program code is never run.

    Raises:
        InputNotFoundError: the file does not exist.
        WeightsError: anything wrong with the archive, its header or its weights.
    """
    path = Path(path)
    label = f"TorchScript model {path}"
    meta, weights = _read_archive(path)
    _check_format(label, meta, "TorchScript")
    spec = _spec(label, meta)
    sha = parse_sha256(label, meta, "source_sha256", _FIX)
    if hashlib.sha256(weights).hexdigest() != sha:
        raise WeightsError(f"{label}: its embedded weights are not the file its header's "
                           f"source_sha256 names (altered or damaged); {_FIX}")
    with tempfile.TemporaryDirectory(prefix="s2sr-") as tmp:
        inner = Path(tmp) / WEIGHTS_ENTRY
        inner.write_bytes(weights)
        try:
            model = load_model(inner)
        except WeightsError as err:
            raise WeightsError(str(err).replace(str(inner), f"{path} ({WEIGHTS_ENTRY})")
                               ) from None
    if get_spec(model) != spec:
        raise WeightsError(f"{label}: its header describes another model than its embedded "
                           f"weights; {_FIX}")
    return model
