"""``s2sr export``: a weights file as an ONNX or TorchScript model, verified, written
atomically.

The exported model is checked against the PyTorch model before anything is written: both
run on random reflectance tiles of a few sizes and batch sizes (:data:`VERIFY_SHAPES`), and
a largest absolute difference above :data:`TOLERANCE` (reflectance) refuses the export.
An int8 export (``--int8``, :mod:`s2sr.inference.quantize`) is checked on the packaged
real sample instead, within the quantisation's own bounds.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from s2sr.core.errors import UsageError, WeightsError
from s2sr.core.files import (
    atomic_path,
    disk_full_error,
    exclusive_output,
    is_disk_full,
    make_parents,
    remove_made,
)
from s2sr.inference.backends import OnnxRuntimeBackend, TorchBackend
from s2sr.inference.quantize import INT8_MAX, INT8_P99, int8_onnx
from s2sr.io.outputs import check_output_file
from s2sr.models import get_spec, load_model
from s2sr.models.exported import sniff
from s2sr.models.serialize import (
    FORMATS,
    check_opset,
    export_header,
    onnx_bytes,
    torchscript_bytes,
)

#: Largest difference to PyTorch (reflectance) an exported model may show.
TOLERANCE: Final[float] = 1e-4
#: ``(batch, height, width)`` of the random tiles an export is verified on: odd and even,
#: not square, batch 1 and 2 (the axes are dynamic).
VERIFY_SHAPES: Final[tuple[tuple[int, int, int], ...]] = ((1, 32, 32), (2, 48, 40),
                                                          (1, 67, 53))

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Check:
    """One verification: input ``shape`` ``(B, C, H, W)`` and the largest absolute
    difference of the exported model's output to PyTorch's (reflectance); for an int8
    model also its 99th percentile and the limits."""

    shape: tuple[int, ...]
    max_abs_diff: float
    p99_abs_diff: float | None = None
    limits: tuple[float, ...] = (TOLERANCE,)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    format: str
    checks: tuple[Check, ...]
    source_sha256: str


def compare(model: nn.Module, runner: Runner,
            shapes: tuple[tuple[int, int, int], ...] = VERIFY_SHAPES, seed: int = 0
            ) -> tuple[Check, ...]:
    """Run ``model`` (PyTorch, float32 CPU) and ``runner`` on the same random reflectance
    tiles (uniform in [0, 0.6)) of each ``(batch, height, width)`` in ``shapes``.

    Returns:
        One :class:`Check` per shape.

    Raises:
        WeightsError: an output of another shape than PyTorch's, or not finite.
    """
    bands = len(get_spec(model).bands)
    reference = TorchBackend(model.float().cpu().eval(), torch.device("cpu"),
                             channels_last=False)
    gen = torch.Generator().manual_seed(seed)
    checks = []
    for b, h, w in shapes:
        x = torch.rand(b, bands, h, w, generator=gen) * 0.6
        want = reference(x)
        got = runner(x).detach().cpu().float()
        if tuple(got.shape) != tuple(want.shape) or not bool(torch.isfinite(got).all()):
            raise WeightsError(f"the exported model turns a {(b, bands, h, w)} tile into "
                               f"{tuple(got.shape)} (PyTorch: {tuple(want.shape)})"
                               f"{'' if bool(torch.isfinite(got).all()) else ' with NaN'}")
        checks.append(Check((b, bands, h, w), float((got - want).abs().max())))
    return tuple(checks)


def check_tolerance(checks: tuple[Check, ...], what: str) -> None:
    """Refuse when any check differs from PyTorch by more than :data:`TOLERANCE`."""
    worst = max(checks, key=lambda c: c.max_abs_diff)
    if not worst.max_abs_diff <= TOLERANCE:
        raise WeightsError(
            f"the {what} model differs from PyTorch by {worst.max_abs_diff:.3g} reflectance "
            f"on a {worst.shape} tile, more than the {TOLERANCE:g} allowed: nothing was "
            "written; report this with the weights file")


def onnx_backend(model: nn.Module, threads: int,
                 providers: Sequence[str | tuple[str, dict[str, Any]]] = ("CPUExecutionProvider",),
                 opset: int | None = None, source_sha256: str = "0" * 64
                 ) -> OnnxRuntimeBackend:
    """ONNX Runtime running ``model`` exported in memory, checked against PyTorch on one
    tile (the engine's ``--backend onnxruntime`` for a PyTorch model)."""
    spec = get_spec(model)
    data = onnx_bytes(model, opset, export_header(model, source_sha256, "onnx (in memory)"))
    backend = OnnxRuntimeBackend(data, len(spec.bands), spec.scale, threads, providers)
    check_tolerance(compare(model, backend, ((1, 24, 24),)), "ONNX Runtime")
    return backend


def _torchscript_runner(data: bytes) -> Runner:
    """The TorchScript program just made (trusted: this process wrote it), for the check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
        program = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return program(x).float()

    return run


def _write(out: Path, data: bytes, overwrite: bool) -> None:
    """``data`` to ``out`` through a temporary beside it: never half-written. Missing
    folders above ``out`` are made first, and taken away again if the write fails."""
    made: list[Path] = []
    try:
        made = make_parents(out)
        with exclusive_output(out):
            if out.exists() and not overwrite:  # appeared since the first check
                check_output_file(out, overwrite)
            with atomic_path(out) as tmp, open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException as err:
        remove_made(made)
        if isinstance(err, OSError) and is_disk_full(
                err, next((p for p in out.parents if p.exists()), None)):
            raise disk_full_error(out) from None
        raise


def _check_options(format: str, opset: int | None, int8: bool) -> int | None:
    """Refuse option combinations that make no sense; the ONNX opset to write (``None``
    for TorchScript)."""
    if format not in FORMATS:
        raise UsageError(f"unknown --format {format!r}: use {' or '.join(FORMATS)}")
    if format == "torchscript" and opset is not None:
        raise UsageError("--opset applies to --format onnx only: drop it")
    if int8 and format != "onnx":
        raise UsageError("--int8 applies to --format onnx only (ONNX Runtime runs it)")
    if int8 and opset is not None:
        raise UsageError("--int8 writes the default opset: drop --opset")
    return check_opset(opset) if format == "onnx" else None


def export_model(weights: str | os.PathLike[str], output: str | os.PathLike[str],
                 format: str, *, opset: int | None = None, overwrite: bool = False,
                 int8: bool = False) -> ExportResult:
    """Export a weights file as an ONNX model or a TorchScript archive.

    Args:
        weights: an s2sr ``.safetensors`` weights file.
        output: the file to write (refused if it exists, unless ``overwrite``); missing
            folders above it are made (and removed again if the export fails).
        format: ``onnx`` or ``torchscript``.
        opset: the ONNX opset (default :data:`s2sr.models.serialize.DEFAULT_OPSET`).
        overwrite: replace an existing output.
        int8: write the int8 model (ONNX only, the default opset): ONNX Runtime static
            quantisation calibrated on the packaged sample (see
            :func:`s2sr.inference.quantize.int8_onnx`; cached as for ``predict
            --precision int8``).

    Returns:
        The path, format, verification checks and the source weights' SHA-256.

    Raises:
        UsageError: a bad format or opset, weights that are already an export, the onnx
            extra missing for ONNX.
        WeightsError: the weights are unusable, or the export differs from PyTorch by more
            than :data:`TOLERANCE` (nothing is written).
    """
    opset = _check_options(format, opset, int8)
    out = check_output_file(output, overwrite, (weights,), create_parent=True)
    kind = sniff(weights)
    if kind != "safetensors":
        raise UsageError(f"{weights} is already an exported {kind} model: export from the "
                         ".safetensors weights file")
    model = load_model(weights)
    source = Path(weights).read_bytes()
    sha = hashlib.sha256(source).hexdigest()
    spec = get_spec(model)
    runner: Runner
    if int8:
        q = int8_onnx(model, sha)
        checks: tuple[Check, ...] = (Check(q.shape, q.max_abs_diff, q.p99_abs_diff,
                                           (INT8_MAX, INT8_P99)),)
        _write(out, q.data, overwrite)
        return ExportResult(path=out, format="onnx int8", checks=checks, source_sha256=sha)
    if format == "onnx":
        try:
            data = onnx_bytes(model, opset, export_header(model, sha, f"onnx opset {opset}"))
        except ImportError:
            raise UsageError("--format onnx needs the onnx extra: pip install "
                             "'s2sr[onnx]'") from None
        runner = OnnxRuntimeBackend(data, len(spec.bands), spec.scale, threads=1)
    else:
        data = torchscript_bytes(model, export_header(model, sha, "torchscript"), source)
        runner = _torchscript_runner(data)
    checks = compare(model, runner)
    check_tolerance(checks, "exported")
    _write(out, data, overwrite)
    return ExportResult(path=out, format=format, checks=checks, source_sha256=sha)
