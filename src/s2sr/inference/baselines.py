"""Interpolation baselines (bicubic, Lanczos, nearest) at the model's scale."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def upsample(array: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Upsample ``(C, H, W)`` reflectance by ``scale``.

    Args:
        array: float reflectance.
        scale: integer factor.
        method: ``"bicubic"`` (PyTorch, a = -0.75, edge-clamped, no antialias),
            ``"lanczos"`` (Pillow, Lanczos-3) or ``"nearest"``.

    Returns:
        ``(C, H*scale, W*scale)`` float32.
    """
    if method == "nearest":
        return np.repeat(np.repeat(array, scale, axis=1), scale, axis=2).astype(np.float32)
    if method == "lanczos":  # Pillow's Lanczos-3 on float images, band by band
        size = (array.shape[2] * scale, array.shape[1] * scale)
        return np.stack([np.asarray(Image.fromarray(band.astype(np.float32), mode="F").resize(
            size, Image.Resampling.LANCZOS)) for band in array]).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    y = F.interpolate(x, scale_factor=scale, mode=method, align_corners=False)
    return y[0].numpy()
