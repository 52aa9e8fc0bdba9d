"""Per-patch agreement statistics between Sentinel-2 and the degraded reference."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from s2sr.data.registration import estimate_shift


def patch_stats(lr: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Agreement of a Sentinel-2 patch and the reference degraded to its grid.

    Args:
        lr: ``(C, p, p)`` Sentinel-2 reflectance.
        ref: ``(C, p, p)`` normalised reference reflectance on the same grid.
        valid: ``(p, p)`` pixels clear and with data on both sides.

    Returns:
        ``corr`` (mean Pearson correlation over bands), ``ssim`` (mean SSIM over bands,
        data range 1 reflectance, 7x7 window), ``shift`` (residual shift norm, pixels,
        by phase correlation of the band means) and ``residual`` (median absolute
        difference, reflectance).
    """
    if valid.sum() < 0.5 * valid.size:
        nan = float("nan")
        return {"corr": nan, "ssim": nan, "shift": nan, "residual": nan}
    corrs, ssims = [], []
    for a, b in zip(lr, ref, strict=True):
        x, y = a[valid].astype(np.float64), b[valid].astype(np.float64)
        sx, sy = x.std(), y.std()
        corrs.append(float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))
                     if sx > 0 and sy > 0 else 0.0)
        ssims.append(float(structural_similarity(a.astype(np.float64), b.astype(np.float64),
                                                 data_range=1.0, win_size=7)))
    (dy, dx), _ = estimate_shift(lr.mean(axis=0), ref.mean(axis=0), upsample=20)
    residual = float(np.median(np.abs(lr - ref)[:, valid]))
    return {"corr": float(np.mean(corrs)), "ssim": float(np.mean(ssims)),
            "shift": float(np.hypot(dy, dx)), "residual": residual}
