"""Interpolation baselines (bicubic, Lanczos, unsharp mask, nearest) at the model's scale."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from s2sr.core.errors import UsageError

#: The methods :func:`upsample` knows.
METHODS = ("bicubic", "lanczos", "unsharp", "nearest")
#: Unsharp mask on the bicubic image: ``b + UNSHARP_AMOUNT * (b - gaussian(b, scale / 2))``.
UNSHARP_AMOUNT = 0.6


def unsharp_sigma(scale: int) -> float:
    """Gaussian sigma of the unsharp mask, in output (fine) pixels: ``scale / 2``."""
    return scale / 2.0


def unsharp_mask(array: np.ndarray, sigma: float, amount: float = UNSHARP_AMOUNT) -> np.ndarray:
    """``a + amount * (a - gaussian(a, sigma))`` per band of ``(C, H, W)`` (edges mirrored)."""
    a = np.asarray(array, dtype=np.float32)
    out = np.empty(a.shape, np.float32)
    for b in range(a.shape[0]):
        smooth = ndimage.gaussian_filter(a[b], sigma, mode="mirror")
        out[b] = a[b] + amount * (a[b] - smooth)
    return out


def upsample(array: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Upsample ``(C, H, W)`` reflectance by ``scale``.

    Args:
        array: float reflectance.
        scale: integer factor.
        method: ``"bicubic"`` (PyTorch, a = -0.75, edge-clamped, no antialias),
            ``"lanczos"`` (Pillow, Lanczos-3), ``"unsharp"`` (the bicubic image sharpened by
            an unsharp mask, ``b + 0.6 * (b - gaussian(b, sigma))`` with ``sigma = scale / 2``
            output pixels, edges mirrored: the trivial sharpening a trained network must
            beat) or ``"nearest"``.

    Returns:
        ``(C, H*scale, W*scale)`` float32.
    """
    if method not in METHODS:
        raise UsageError(f"unknown upsampling method {method!r}: use one of {', '.join(METHODS)}")
    if method == "nearest":
        return np.repeat(np.repeat(array, scale, axis=1), scale, axis=2).astype(np.float32)
    if method == "lanczos":  # Pillow's Lanczos-3 on float images, band by band
        size = (array.shape[2] * scale, array.shape[1] * scale)
        return np.stack([np.asarray(Image.fromarray(band.astype(np.float32), mode="F").resize(
            size, Image.Resampling.LANCZOS)) for band in array]).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()
    if method == "unsharp":
        return unsharp_mask(y, unsharp_sigma(scale))
    return y
