"""Consistency of a super-resolved output with its own input, and its enforcement.

*Measuring*: the output is degraded back to the input grid with the Sentinel-2-like
degradation of :mod:`s2sr.data.degrade` (Gaussian MTF 0.3 at Nyquist + block mean) and
compared with the input: mean absolute error and bias per band (reflectance) and the mean
spectral angle (degrees). A perfect super-resolution of a Sentinel-2 image reproduces its
input when degraded, whatever detail it adds.

*Enforcing* (``s2sr predict --consistency``): iterative back-projection (Irani & Peleg,
1991). Each iteration adds the bicubic upsampling of the residual ``input - degrade(output)``
to the output, which corrects the output's low frequencies (what the input constrains)
and leaves the high frequencies the network added. Three iterations remove most of the
residual; it runs per tile, on the network's input with its context.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from s2sr.data.degrade import block_mean, degradation_sigma, degrade
from s2sr.evaluation.metrics import spectral_angle


def consistency(sr: np.ndarray, lr: np.ndarray, scale: int, mtf: float | None = 0.3
                ) -> dict[str, object]:
    """Compare an output ``(C, H*s, W*s)`` degraded back with its input ``(C, H, W)``.

    ``mtf`` is the Nyquist MTF of the degradation back (Gaussian + block mean, as the input
    was made); ``None`` degrades back by the block mean alone.

    Returns:
        ``mae`` and ``bias`` (per band, reflectance), their means ``mae_mean`` and
        ``bias_mean``, and ``sam`` (mean spectral angle, degrees).
    """
    back = (block_mean(sr.astype(np.float32), scale) if mtf is None
            else degrade(sr.astype(np.float32), scale, mtf))
    lr = lr.astype(np.float32)[:, :back.shape[1], :back.shape[2]]
    diff = back - lr
    mae = np.abs(diff).mean(axis=(1, 2))
    bias = diff.mean(axis=(1, 2))
    return {"mae": mae.tolist(), "bias": bias.tolist(), "mae_mean": float(mae.mean()),
            "bias_mean": float(bias.mean()), "sam": float(spectral_angle(back, lr))}


def _gaussian_kernel(sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k1 = torch.exp(-0.5 * (x / sigma) ** 2)
    k1 = k1 / k1.sum()
    return (k1[:, None] * k1[None, :]).expand(channels, 1, -1, -1).contiguous()


def degrade_torch(x: torch.Tensor, scale: int, mtf: float = 0.3) -> torch.Tensor:
    """:func:`s2sr.data.degrade.degrade` for ``(B, C, H, W)`` tensors (same model)."""
    sigma = degradation_sigma(scale, mtf)
    kernel = _gaussian_kernel(sigma, x.shape[1], x.device)
    pad = kernel.shape[-1] // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    blurred = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode=mode), kernel, groups=x.shape[1])
    return F.avg_pool2d(blurred, scale)


def back_project(sr: torch.Tensor, lr: torch.Tensor, scale: int, iterations: int = 3,
                 mtf: float = 0.3) -> torch.Tensor:
    """Iterative back-projection of ``sr`` ``(B, C, H*s, W*s)`` onto ``lr`` ``(B, C, H, W)``."""
    out = sr
    for _ in range(iterations):
        residual = lr - degrade_torch(out, scale, mtf)
        out = out + F.interpolate(residual, scale_factor=scale, mode="bicubic",
                                  align_corners=False)
    return out
