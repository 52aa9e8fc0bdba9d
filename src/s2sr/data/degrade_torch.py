"""The degradation of :mod:`s2sr.data.degrade` for ``(B, C, H, W)`` tensors, and back-projection.

Same model, same kernel: the Gaussian comes from
:func:`s2sr.data.degrade.gaussian_kernel1d` (one truncation rule), is applied separably with
mirrored edges (scipy's ``"mirror"``, which is torch's ``"reflect"``, repeated when the
kernel is wider than the image), then ``factor x factor`` blocks are averaged. The numpy and
torch degradations agree to float32 rounding (tested).

*Back-projection* (Irani & Peleg, 1991; ``s2sr predict --consistency``): each iteration adds
the bicubic upsampling of the residual ``input - degrade(output)`` to the output, which
corrects the output's low frequencies (what the input constrains) and keeps the high
frequencies the network added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s2sr.core.errors import UsageError
from s2sr.data.degrade import degradation_sigma, gaussian_kernel1d


def mirror_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes of ``(B, C, H, W)`` by ``pad`` as scipy's ``"mirror"`` mode.

    ``abcd`` -> ``...cb|abcd|cb...``: torch's ``"reflect"``, applied per axis in steps of at
    most the current length minus one (each step ends on an axis of symmetry of the mirror
    pattern, so the pattern continues for any ``pad``). A one-pixel axis is repeated (its
    mirror image is itself).
    """
    for axis in (-2, -1):
        left = pad
        while left > 0:
            n = x.shape[axis]
            if n == 1:
                sides = (0, 0, left, left) if axis == -2 else (left, left, 0, 0)
                x = F.pad(x, sides, mode="replicate")
                break
            step = min(left, n - 1)
            sides = (0, 0, step, step) if axis == -2 else (step, step, 0, 0)
            x = F.pad(x, sides, mode="reflect")
            left -= step
    return x


def blur_torch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, C, H, W)`` per band, edges mirrored (as :func:`~s2sr.data.
    degrade.blur`); ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    k = torch.as_tensor(gaussian_kernel1d(sigma), dtype=x.dtype, device=x.device)
    c, r = x.shape[1], k.numel() // 2
    padded = mirror_pad(x, r)
    rows = F.conv2d(padded, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(rows, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def degrade_torch(x: torch.Tensor, scale: int, mtf: float = 0.3) -> torch.Tensor:
    """:func:`s2sr.data.degrade.degrade` for ``(B, C, H, W)`` tensors (same model and kernel).

    Args:
        x: ``(B, C, H, W)`` reflectance, floating point.
        scale: integer decimation factor.
        mtf: the coarse sensor's MTF at its Nyquist frequency.

    Returns:
        ``(B, C, H // scale, W // scale)``, the dtype of ``x``.
    """
    if scale < 1:
        raise UsageError(f"degradation factor must be >= 1, got {scale}")
    if scale == 1:
        return x.clone()
    return F.avg_pool2d(blur_torch(x, degradation_sigma(scale, mtf)), scale)


def back_project(sr: torch.Tensor, lr: torch.Tensor, scale: int, iterations: int = 3,
                 mtf: float = 0.3) -> torch.Tensor:
    """Iterative back-projection of ``sr`` ``(B, C, H*s, W*s)`` onto ``lr`` ``(B, C, H, W)``.

    Returns:
        ``sr`` corrected so that :func:`degrade_torch` of it approaches ``lr``; same shape.
    """
    out = sr
    for _ in range(iterations):
        residual = lr - degrade_torch(out, scale, mtf)
        out = out + F.interpolate(residual, scale_factor=scale, mode="bicubic",
                                  align_corners=False)
    return out
