"""A model as an ONNX graph or a TorchScript program, carrying the s2sr header.

Both take reflectance ``(B, C, H, W)`` float32 and return ``(B, C, H*scale, W*scale)``:
the normalisation is inside the graph, as in the PyTorch model. Batch, height and width
are dynamic.

* ONNX: PyTorch's TorchScript-based exporter (``dynamo=False``). It runs offline with the
  ``onnx`` package alone, in a tenth of a second for the shipped models, where the
  ``torch.export``-based one needs ``onnxscript`` and about 4 s: ``predict --backend
  onnxruntime`` exports a ``.safetensors`` model on the fly, every run. The header is in
  the model's ``metadata_props``.
* TorchScript: ``torch.jit.trace`` (the networks have no data-dependent control flow), for
  libtorch deployments. The header is the extra file :data:`HEADER_ENTRY`; the source
  weights file rides along as :data:`WEIGHTS_ENTRY`, which is what s2sr itself loads
  (through :func:`~s2sr.models.weights.load_model`'s checks): s2sr never runs the
  program code of a file it is handed.
"""

from __future__ import annotations

import io
import json
import threading
import warnings
from typing import Final

import torch
from torch import nn

from s2sr.core.errors import UsageError
from s2sr.core.version import __version__
from s2sr.models.header import spec_header
from s2sr.models.registry import get_spec

EXPORT_FORMAT: Final[str] = "s2sr-export"
EXPORT_VERSION: Final[str] = "1"
FORMATS: Final[tuple[str, ...]] = ("onnx", "torchscript")
#: ONNX opsets the exporter writes (Resize/DepthToSpace as used here need 13; 20 is the
#: newest the TorchScript-based exporter knows). ONNX Runtime >= 1.17 runs all of them.
OPSETS: Final[tuple[int, int]] = (13, 20)
DEFAULT_OPSET: Final[int] = 17
#: Names of the graph's input and output.
INPUT_NAME: Final[str] = "reflectance"
OUTPUT_NAME: Final[str] = "output"
#: Extra files of an exported TorchScript archive.
HEADER_ENTRY: Final[str] = "s2sr_header.json"
WEIGHTS_ENTRY: Final[str] = "s2sr_weights.safetensors"

_EXPORT_LOCK = threading.Lock()


def check_opset(opset: int | None) -> int:
    """``opset`` (default :data:`DEFAULT_OPSET`) within :data:`OPSETS`."""
    if opset is None:
        return DEFAULT_OPSET
    low, high = OPSETS
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise UsageError(f"--opset must be an integer from {low} to {high}, got {opset!r}: "
                         f"leave it out for {DEFAULT_OPSET}")
    return opset


def export_header(model: nn.Module, source_sha256: str, exported_as: str) -> dict[str, str]:
    """The header of an exported file: the model's spec, the SHA-256 of the weights file it
    came from, and how it was exported (e.g. ``"onnx opset 17"``)."""
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        **spec_header(get_spec(model)),
        "source_sha256": source_sha256,
        "exported_as": exported_as,
        "torch_version": torch.__version__,
        "s2sr_version": __version__,
    }


def _example(model: nn.Module, size: int = 24) -> torch.Tensor:
    """A reflectance-like example input ``(1, C, size, size)``."""
    bands = len(get_spec(model).bands)
    return torch.rand(1, bands, size, size, generator=torch.Generator().manual_seed(0)) * 0.5


def onnx_bytes(model: nn.Module, opset: int | None = None,
               header: dict[str, str] | None = None) -> bytes:
    """Serialise ``model`` (float32, CPU) as an ONNX graph with dynamic batch, height and
    width, ``header`` in its ``metadata_props``.

    Requires the ``onnx`` package (``pip install 's2sr[onnx]'``).
    """
    import onnx  # optional dependency (s2sr[onnx])

    model = model.float().cpu().eval()
    buf = io.BytesIO()
    # the exporter keeps global state (one export at a time per process); and it is
    # deprecated in favour of one needing onnxscript
    with _EXPORT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (_example(model),), buf,  # type: ignore[arg-type]  # file objects work
            dynamo=False, opset_version=check_opset(opset),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
        )
    proto = onnx.load_model_from_string(buf.getvalue())
    del proto.metadata_props[:]
    for key, value in (header or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "s2sr"
    proto.producer_version = __version__
    return bytes(proto.SerializeToString())


def torchscript_bytes(model: nn.Module, header: dict[str, str], weights: bytes) -> bytes:
    """Serialise ``model`` (float32, CPU) as a traced TorchScript archive holding ``header``
    and the source ``weights`` file (safetensors bytes) as extra files."""
    model = model.float().cpu().eval()
    buf = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings():
        # TracerWarnings about shapes (they stay dynamic); torch.jit's deprecation (it is
        # what libtorch loads)
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _example(model), check_trace=False)
        torch.jit.save(traced, buf, _extra_files={HEADER_ENTRY: json.dumps(header),
                                                  WEIGHTS_ENTRY: weights})
    return buf.getvalue()
