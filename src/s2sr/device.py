"""Device and precision selection shared by prediction and training (no heavy imports).

The choices are pure functions of what is asked and what the machine has
(:func:`select_device`, :func:`inference_plan`), so they are tested on any machine, CPU
included; :func:`resolve_device` and :func:`cuda_device_count` ask torch what is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from s2sr.errors import UsageError

#: Tiles per forward pass when ``--batch-size`` is not given.
DEFAULT_BATCH = {"cpu": 1, "cuda": 8}

_CUDA = re.compile(r"cuda(?::(\d+))?")


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


@dataclass(frozen=True)
class InferencePlan:
    """How ``s2sr predict`` runs the network.

    Attributes:
        device: where the network runs.
        batch_size: tiles per forward pass.
        dtype: the network's compute dtype. Always float32: prediction uses no autocast,
            so an output does not depend on the card it was made on beyond float32
            rounding.
        channels_last: run the CPU network in channels-last memory format (oneDNN's fast
            convolution path); CUDA keeps the default format.
    """

    device: torch.device
    batch_size: int
    dtype: torch.dtype
    channels_last: bool


def inference_plan(device: str, batch_size: int | None, cuda_count: int) -> InferencePlan:
    """Choose the device, batch size and precision of prediction.

    Args:
        device: ``--device`` (see :func:`select_device`).
        batch_size: ``--batch-size``; ``None`` for the device's default
            (:data:`DEFAULT_BATCH`: 1 on CPU, 8 on CUDA).
        cuda_count: CUDA GPUs available.

    Raises:
        UsageError: see :func:`select_device`; a batch size below 1.
    """
    dev = select_device(device, cuda_count)
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    return InferencePlan(device=dev, batch_size=batch_size or DEFAULT_BATCH[dev.type],
                         dtype=torch.float32, channels_last=dev.type == "cpu")
