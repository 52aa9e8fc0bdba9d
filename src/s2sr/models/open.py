"""One opener for every model file s2sr runs: :func:`open_model`.

``predict``, ``evaluate`` and many-scene runs take the same ``--weights``: a
``.safetensors`` weights file (:func:`~s2sr.models.weights.load_model`), a model exported
by ``s2sr export`` as ONNX (:func:`~s2sr.models.exported.read_onnx`) or TorchScript
(:func:`~s2sr.models.exported.load_torchscript`), or the name of a shipped model
(``s2sr_x2``, see :func:`~s2sr.models.pretrained.list_pretrained`). :func:`open_model`
tells the kind from the file's first bytes (:func:`~s2sr.models.exported.sniff`) and
opens it through that kind's loader, with all of its checks: the file is untrusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from torch import nn

from s2sr.core.errors import WeightsError
from s2sr.models.exported import OnnxModel, load_torchscript, read_onnx, sniff
from s2sr.models.pretrained import WEIGHTS_DIR, list_pretrained
from s2sr.models.registry import ModelSpec, get_spec
from s2sr.models.weights import load_model

__all__ = ["FILE_PRECISIONS", "OpenModel", "open_model", "shipped_path"]

#: Precisions an exported ONNX model can be made at (its header's ``precision``).
FILE_PRECISIONS: Final[tuple[str, ...]] = ("fp32", "int8")


@dataclass(frozen=True)
class OpenModel:
    """A model file, opened and checked.

    Attributes:
        path: the file read (for a shipped model's name, its file in the package).
        kind: one of :data:`~s2sr.models.exported.KINDS`.
        spec: what the model is (bands, scale, options).
        module: the PyTorch model (a weights file, or a TorchScript export rebuilt from
            its embedded weights); ``None`` for ONNX.
        onnx: the checked ONNX export; ``None`` for the other kinds.
    """

    path: Path
    kind: str
    spec: ModelSpec
    module: nn.Module | None = None
    onnx: OnnxModel | None = None

    @property
    def network(self) -> nn.Module | OnnxModel:
        """What runs: the PyTorch model, or the checked ONNX export."""
        if self.module is not None:
            return self.module
        if self.onnx is None:
            raise WeightsError(f"{self.path} opened as neither a PyTorch nor an ONNX model")
        return self.onnx

    @property
    def file_precision(self) -> str | None:
        """The precision an ONNX export was made at (``fp32`` or ``int8``); ``None`` for
        the other kinds, which run at the precision asked for."""
        return None if self.onnx is None else self.onnx.header.get("precision", "fp32")

    @property
    def source_sha256(self) -> str | None:
        """SHA-256 of the weights file an ONNX export was made from; ``None`` otherwise."""
        return None if self.onnx is None else self.onnx.source_sha256


def shipped_path(name: str) -> Path | None:
    """The file of the shipped model called ``name`` (``s2sr_x2``, ...), or ``None``."""
    return WEIGHTS_DIR / f"{name}.safetensors" if name in list_pretrained() else None


def open_model(path_or_name: str | os.PathLike[str]) -> OpenModel:
    """Open a model file of any kind s2sr runs, or a shipped model by name.

    Args:
        path_or_name: a ``.safetensors`` weights file, an ONNX or TorchScript export of
            one (``s2sr export``), or the name of a shipped model (``s2sr_x2``,
            ``s2sr_rgb_x4``, ...) when no file of that name exists.

    Returns:
        The opened model.

    Raises:
        InputNotFoundError: no such file (and no shipped model of that name).
        UsageError: a folder; or an ONNX model without the onnx extra installed.
        WeightsError: anything wrong with the file, in one line naming the fix.
    """
    path = Path(path_or_name)
    if not path.exists() and (shipped := shipped_path(str(path_or_name))) is not None:
        path = shipped
    kind = sniff(path)
    if kind == "onnx":
        onnx = read_onnx(path)
        precision = onnx.header.get("precision", "fp32")
        if precision not in FILE_PRECISIONS:
            raise WeightsError(f"ONNX model {path}: header precision {precision[:20]!r} is "
                               "not fp32 or int8: export it again with s2sr export")
        return OpenModel(path, kind, onnx.spec, onnx=onnx)
    module = load_torchscript(path) if kind == "torchscript" else load_model(path)
    return OpenModel(path, kind, get_spec(module), module=module)
