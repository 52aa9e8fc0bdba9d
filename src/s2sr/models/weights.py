"""Self-describing weights files (safetensors): tensors plus the model's :class:`ModelSpec`.

Loading never unpickles: safetensors holds raw tensors and a string-to-string header.
Files are untrusted: the header is bounded and checked (architecture options, then each
tensor's name, shape and dtype) before any module is built or tensor read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from s2sr.core.checks import shown
from s2sr.core.errors import InputNotFoundError, UsageError, WeightsError
from s2sr.core.files import atomic_path, normal_permissions
from s2sr.models.header import parse_spec, spec_error, spec_header
from s2sr.models.registry import ModelSpec, build_spec, expected_state, get_spec

FORMAT = "s2sr-weights"
FORMAT_VERSION = "1"

#: Largest weights file read: a model at the bounds of :mod:`s2sr.models.bounds` (64 blocks
#: of 512 filters, x4) is about 1.3 GB in float32.
MAX_FILE_BYTES = 2 << 30
#: Largest safetensors header read: a 64-block model's header is about 30 kB.
MAX_HEADER_BYTES = 1 << 20
#: safetensors dtypes accepted for floating-point tensors (converted to float32 on load).
_FLOAT_DTYPES = ("F16", "BF16", "F32")
_INT_DTYPES = {torch.int64: ("I64",)}


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
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, **spec_header(spec)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() and k not in ("mean", "std") else v
                   for k, v in tensors.items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise WeightsError(
            f"cannot save to {path}: tensor {bad[0]} holds NaN or infinite values"
            f"{' once stored as float16' if half else ''}; the model is broken (did training "
            "diverge?)" + ("" if not half else " or too large for float16: save without half"))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        normal_permissions(tmp)  # safetensors makes its files 0o600
    return path


_FIX = ("the file is damaged or was not written by s2sr: re-download it or write it with "
        "s2sr.models.save_model")


def check_model_file(path: Path, what: str, fix: str) -> int:
    """Refuse a model file that is missing, a folder, or larger than any model within
    s2sr's bounds, before any parser sees it; its size in bytes.

    Args:
        path: the file. what: its kind in messages (``".safetensors"``, ``"ONNX model"``).
        fix: what the user should do about a file too large to be a model.
    """
    if not path.exists():
        raise InputNotFoundError(f"weights file {path} does not exist: check the path")
    if path.is_dir():
        raise UsageError(f"weights path {path} is a folder: pass the {what} file itself")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise WeightsError(
            f"{what} file {path} is {size / 2**30:.1f} GiB, more than the "
            f"{MAX_FILE_BYTES >> 30} GiB any model within s2sr's bounds needs: {fix}")
    return size


def _check_file(path: Path) -> None:
    """Refuse what is not a plausible safetensors file before any parser sees it."""
    size = check_model_file(path, ".safetensors", _FIX)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        kind = "a zip (torch.save)" if head.startswith(b"PK") else "a pickle"
        if len(head) < 9 or head[8:9] != b"{":
            raise WeightsError(
                f"weights file {path} is {kind} file, which s2sr never loads because loading "
                "it can run code: convert it to safetensors with s2sr.models.save_model")
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if header_len < 2 or head[8:9] != b"{" or 8 + header_len > size:
        raise WeightsError(f"weights file {path} is corrupt, truncated or not a safetensors "
                           f"file (no valid header): {_FIX}")
    if header_len > MAX_HEADER_BYTES:
        raise WeightsError(
            f"weights file {path} has a {header_len}-byte header, more than the "
            f"{MAX_HEADER_BYTES} bytes an s2sr model needs: {_FIX}")


_Found = dict[str, tuple[tuple[int, ...], str]]
_Expected = dict[str, tuple[tuple[int, ...], torch.dtype]]


def _read_header(path: Path) -> tuple[ModelSpec, _Found, _Expected]:
    """The checked spec, each tensor's (shape, safetensors dtype) in the file and each
    tensor's (shape, dtype) the architecture needs; no tensor data read, nothing built."""
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: (tuple(handle.get_slice(key).get_shape()),
                             str(handle.get_slice(key).get_dtype()))
                       for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(
            f"weights file {path} is corrupt or not a safetensors file ({shown(str(err), 120)}): "
            "re-download it or write it with s2sr.models.save_model"
        ) from None
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is a safetensors file but not an s2sr weights file (no '{FORMAT}' header): "
            "write it with s2sr.models.save_model"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"weights file {path}: header format_version {shown(version)} is not one this s2sr "
            f"reads ({FORMAT_VERSION}): upgrade s2sr or write the file again with "
            "s2sr.models.save_model")
    label = f"weights file {path}"
    spec = parse_spec(label, meta, _FIX)
    try:
        # built on the "meta" device: runs the builder's own bounds, allocates nothing
        expected = expected_state(spec)
    except UsageError as err:
        raise spec_error(label, err, _FIX) from None
    return spec, tensors, expected


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the header of an s2sr weights file (no tensors loaded).

    Returns:
        ``name``, ``bands`` (tuple), ``scale`` and ``options`` (mean and std filled in),
        each checked against :mod:`s2sr.models.bounds`.

    Raises:
        InputNotFoundError: the file does not exist.
        WeightsError: the file is not an s2sr weights file, or a header value is missing,
            not JSON or out of bounds (the message names the header key).
    """
    spec, _, _ = _read_header(Path(path))
    return {"name": spec.name, "bands": spec.bands, "scale": spec.scale,
            "options": spec.options}


def _check_tensor_table(path: Path, spec: ModelSpec, found: _Found, expected: _Expected
                        ) -> None:
    """Every tensor the architecture needs, with its shape and a compatible dtype, and no
    other; checked on the header alone, before any tensor is read or module allocated."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks tensor(s) {shown(missing, 100)}")
        if extra:
            parts.append(f"has unexpected tensor(s) {shown(extra, 100)}")
        raise WeightsError(f"weights file {path} {' and '.join(parts)} for a {spec.name} "
                           f"x{spec.scale} on {len(spec.bands)} bands as its header says; {_FIX}")
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = found[key]
        if got_shape != shape:
            raise WeightsError(f"weights file {path}: tensor {key} has shape {list(got_shape)}, "
                               f"the header's architecture needs {list(shape)}; {_FIX}")
        allowed = _FLOAT_DTYPES if dtype.is_floating_point else _INT_DTYPES.get(dtype, ())
        if got_dtype not in allowed:
            raise WeightsError(f"weights file {path}: tensor {key} is {got_dtype}, expected one "
                               f"of {', '.join(allowed)}; {_FIX}")


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from an s2sr weights file.

    Nothing is unpickled and nothing is allocated before the header has been checked: the
    architecture options against :mod:`s2sr.models.bounds`, then every tensor's name,
    shape and dtype against the architecture. Tensors holding NaN or infinity are refused.

    Args:
        path: a file written by :func:`save_model`.
        device: where to put the model.

    Returns:
        The model in eval mode with ``model.spec`` set.

    Raises:
        InputNotFoundError: the file does not exist.
        WeightsError: anything wrong with the file, naming the header key or tensor.
    """
    path = Path(path)
    spec, found, expected = _read_header(path)
    _check_tensor_table(path, spec, found, expected)
    model = build_spec(spec)
    reference = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in reference:
                state[key] = handle.get_tensor(key).to(reference[key].dtype)
    except Exception as err:  # the file changed or is damaged past its header
        raise WeightsError(f"weights file {path} cannot be read past its header "
                           f"({shown(str(err), 120)}): {_FIX}") from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(
                f"weights file {path}: tensor {key} holds NaN or infinite values, so every "
                "output would be invalid: the model is broken (did training diverge?); "
                "retrain it or re-download it")
        if key.endswith("running_var") and bool((tensor < 0).any()):
            raise WeightsError(f"weights file {path}: tensor {key} has negative variances; "
                               f"{_FIX}")
    for key in ("mean", "std"):
        if key in state and key in spec.options:
            header = torch.tensor(spec.options[key], dtype=torch.float32)
            if not torch.allclose(state[key].flatten(), header, rtol=1e-5, atol=0.0):
                raise WeightsError(f"weights file {path}: tensor {key} differs from header "
                                   f"options.{key}; {_FIX}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
