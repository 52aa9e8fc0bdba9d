"""Self-describing weights files (safetensors): tensors plus the model's :class:`ModelSpec`.

Loading never unpickles: safetensors holds raw tensors and a string-to-string header.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from s2sr.errors import InputNotFoundError, WeightsError
from s2sr.models.registry import build_model, get_spec

FORMAT = "s2sr-weights"
FORMAT_VERSION = "1"


def save_model(model: nn.Module, path: str | os.PathLike[str], *, half: bool = False) -> Path:
    """Write ``model`` and its spec to a ``.safetensors`` file, atomically.

    Args:
        model: a model from :func:`build_model` or :func:`load_model`.
        path: destination file.
        half: store floating-point tensors as float16 (half the size; loading converts
            them back to float32). The normalisation buffers stay float32.

    Returns:
        The path written.
    """
    spec = get_spec(model)
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "bands": json.dumps(list(spec.bands)),
        "scale": str(spec.scale),
        "options": json.dumps(spec.options),
        "normalization": json.dumps(
            {"mean": spec.options.get("mean"), "std": spec.options.get("std")}
        ),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() and k not in ("mean", "std") else v
                   for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the header of an s2sr weights file (no tensors loaded)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"weights file {path} does not exist: check the path")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(
            f"weights file {path} is corrupt or not a safetensors file ({err}): "
            "re-download it or write it with s2sr.models.save_model"
        ) from None
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is a safetensors file but not an s2sr weights file (no '{FORMAT}' header): "
            "write it with s2sr.models.save_model"
        )
    try:
        return {
            "name": meta["name"],
            "bands": tuple(json.loads(meta["bands"])),
            "scale": int(meta["scale"]),
            "options": json.loads(meta["options"]),
        }
    except (KeyError, ValueError) as err:
        raise WeightsError(
            f"weights file {path} has an incomplete s2sr header ({err}): write it again "
            "with s2sr.models.save_model"
        ) from None


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from an s2sr weights file.

    Args:
        path: a file written by :func:`save_model`.
        device: where to put the model.

    Returns:
        The model in eval mode with ``model.spec`` set.
    """
    meta = read_metadata(path)
    model = build_model(meta["name"], bands=meta["bands"], scale=meta["scale"], **meta["options"])
    try:
        with safe_open(str(path), framework="pt") as handle:
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        reference = model.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    except Exception as err:
        raise WeightsError(
            f"weights file {path} does not match its own header ({err}): the file is damaged, "
            "re-download it"
        ) from None
    return model.to(device).eval()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
