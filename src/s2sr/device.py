"""Device and precision selection shared by prediction and training (no heavy imports)."""

from __future__ import annotations

import torch

from s2sr.errors import UsageError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; refuse CUDA when there is none."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked but no CUDA GPU is available: use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"unknown --device {device!r}: use auto, cpu or cuda")
    return torch.device(device)
