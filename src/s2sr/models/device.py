"""Device and precision selection shared by prediction and training (no heavy imports).

The choices are pure functions of what is asked and what the machine has
(:func:`select_device`, :func:`choose_precision`, :func:`auto_batch`,
:func:`inference_plan`), so they are tested on any machine, CPU included;
:func:`resolve_device`, :func:`cuda_device_count`, :func:`cuda_bf16_supported` and
:func:`cpu_bf16_supported` ask torch what is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import torch

from s2sr.core.constants import PRECISIONS
from s2sr.core.errors import UsageError

#: Tiles per forward pass when ``--batch-size`` is not given.
DEFAULT_BATCH = {"cpu": 1, "cuda": 8}

_CUDA = re.compile(r"cuda(?::(\d+))?")

#: The dtype PyTorch's autocast computes in, per reduced precision (weights stay float32).
AUTOCAST: Final[dict[str, torch.dtype]] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Bytes per activation element, for the memory estimate of a forward pass. int8 counts
#: 4: ONNX Runtime dequantises around the convolutions it leaves in float.
BYTES_PER_ELEMENT: Final[dict[str, int]] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 4}
#: Most tiles per forward pass chosen from free GPU memory (more gains nothing measurable
#: and makes the last, partial batch long).
MAX_AUTO_BATCH: Final[int] = 32
_ORT_ONLY = "ONNX Runtime runs s2sr's models in fp32 or int8 only (ONNX's Conv has no " \
    "bfloat16, and no fp16 graph is exported)"


def cuda_device_count() -> int:
    """CUDA GPUs this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def select_device(device: str, cuda_count: int) -> torch.device:
    """The torch device for a ``--device`` value on a machine with ``cuda_count`` GPUs.

    Args:
        device: ``auto`` (CUDA when there is a GPU, else CPU), ``cpu``, ``cuda`` or
            ``cuda:N``.
        cuda_count: CUDA GPUs available (see :func:`cuda_device_count`).

    Returns:
        ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UsageError: CUDA asked without a GPU, a GPU index beyond those there, or an
            unknown value; each message names the fix.
    """
    if device == "auto":
        return torch.device("cuda" if cuda_count > 0 else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(device)
    if match is None:
        raise UsageError(f"unknown --device {device!r}: use auto, cpu or cuda")
    if cuda_count == 0:
        raise UsageError(f"--device {device} asked but no CUDA GPU is available: use "
                         "--device cpu")
    index = match.group(1)
    if index is not None and int(index) >= cuda_count:
        raise UsageError(f"--device {device} asked but this machine has {cuda_count} CUDA "
                         f"GPU{'s' if cuda_count > 1 else ''} (cuda:0 to cuda:{cuda_count - 1}):"
                         " use one of those, or --device cuda")
    return torch.device(device)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuse CUDA when there is none."""
    return select_device(device, cuda_device_count())


def cuda_bf16_supported() -> bool:
    """Whether the current CUDA GPU computes in bfloat16 (Ampere and newer); False
    without CUDA."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX); without it
    PyTorch emulates bf16, slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def choose_precision(precision: str, device: torch.device, backend: str, *,
                     cuda_bf16: bool, file_precision: str | None = None) -> str:
    """The precision prediction runs at, from ``--precision`` and what runs it.

    Args:
        precision: one of :data:`s2sr.core.constants.PRECISIONS`.
        device: the device chosen by :func:`select_device`.
        backend: ``--backend`` as asked (``auto``, ``torch`` or ``onnxruntime``).
        cuda_bf16: the GPU supports bfloat16 (:func:`cuda_bf16_supported`).
        file_precision: for an exported ONNX file, the precision it was exported at
            (``fp32`` or ``int8``); ``None`` for a PyTorch model.

    Returns:
        ``fp32``, ``bf16``, ``fp16`` or ``int8``. bf16 and fp16 run on PyTorch (autocast),
        int8 on ONNX Runtime's CPU provider (see
        :func:`s2sr.inference.backends.choose_backend`).

    Raises:
        UsageError: an unknown value, or a combination that cannot run; each message
            names the fix.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown --precision {precision!r}: use {', '.join(PRECISIONS)}")
    if file_precision is not None:
        if precision in ("auto", file_precision):
            return file_precision
        raise UsageError(f"--precision {precision} with an exported {file_precision} ONNX "
                         "model: pass the .safetensors weights (or leave --precision out)")
    if precision == "auto":
        if device.type != "cuda" or backend == "onnxruntime":
            return "fp32"
        # measured on an H200 (benchmarks/README.md, "GPU"): fp16 and bf16 run at the same
        # speed, fp16 within 1 DN of fp32 at the 99th percentile, bf16 within 3 (x2) and 5 (x4)
        return "fp16"
    if precision in AUTOCAST and backend == "onnxruntime":
        raise UsageError(f"--precision {precision} with --backend onnxruntime: {_ORT_ONLY}; "
                         f"use --backend torch (or auto) for {precision}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 runs on CUDA only: on the CPU use bf16 (or fp32)")
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise UsageError("--precision bf16 asked but this GPU has no bfloat16 support: use "
                         "--precision fp16 (or fp32)")
    if precision == "int8":
        if device.type == "cuda":
            raise UsageError("--precision int8 runs on ONNX Runtime's CPU provider: add "
                             "--device cpu")
        if backend == "torch":
            raise UsageError("--precision int8 runs on ONNX Runtime (static quantisation): "
                             "use --backend onnxruntime (or auto)")
    return precision


def auto_batch(per_tile_bytes: int, free_bytes: int, share: float = 0.5,
               cap: int = MAX_AUTO_BATCH) -> int:
    """Tiles per forward pass that fit ``share`` of ``free_bytes``, from 1 to ``cap``.

    Args:
        per_tile_bytes: peak memory of a forward pass over one tile (bytes).
        free_bytes: free memory of the device (``torch.cuda.mem_get_info``).
        share: the share of it a batch may take.
        cap: the largest batch.
    """
    return max(1, min(cap, int(share * free_bytes) // max(1, per_tile_bytes)))


@dataclass(frozen=True)
class InferencePlan:
    """How ``s2sr predict`` runs the network.

    Attributes:
        device: where the network runs.
        batch_size: tiles per forward pass.
        dtype: the dtype of the network's weights: always float32 (reduced precision is
            autocast around the forward, see ``precision``).
        channels_last: run the network in channels-last memory format: on the CPU
            (oneDNN's fast convolution path) and on CUDA at bf16/fp16 (the tensor cores'
            layout); CUDA at fp32 keeps the default format.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8`` (see :func:`choose_precision`).
    """

    device: torch.device
    batch_size: int
    dtype: torch.dtype
    channels_last: bool
    precision: str = "fp32"

    @property
    def autocast(self) -> torch.dtype | None:
        """The dtype autocast computes in, ``None`` at fp32 (and int8, run by ONNX
        Runtime)."""
        return AUTOCAST.get(self.precision)


def inference_plan(device: str, batch_size: int | None, cuda_count: int,
                   precision: str = "fp32") -> InferencePlan:
    """Choose the device, batch size and memory format of prediction.

    Args:
        device: ``--device`` (see :func:`select_device`).
        batch_size: ``--batch-size``; ``None`` for the device's default
            (:data:`DEFAULT_BATCH`: 1 on CPU, 8 on CUDA; ``predict`` sizes a CUDA batch
            from free memory instead, see :func:`auto_batch`).
        cuda_count: CUDA GPUs available.
        precision: the precision chosen by :func:`choose_precision`.

    Raises:
        UsageError: see :func:`select_device`; a batch size below 1.
    """
    dev = select_device(device, cuda_count)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    return InferencePlan(device=dev, batch_size=batch_size or DEFAULT_BATCH[dev.type],
                         dtype=torch.float32,
                         channels_last=dev.type == "cpu" or precision in AUTOCAST,
                         precision=precision)
