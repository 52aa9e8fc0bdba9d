"""Robust per-band radiometric normalisation of a reference sensor to Sentinel-2.

For each band, ``s2 ~ gain * reference + offset`` is fitted on clear, co-registered
pixels at the Sentinel-2 resolution by iteratively reweighted least squares (Huber weights
for five iterations, then Tukey's bisquare, so that clouds and changed areas get no
weight), on at most ``max_samples`` pixels drawn at random with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BandFit:
    """``s2 ~ gain * reference + offset`` for one band, with the robust residual scale."""

    gain: float
    offset: float
    residual: float  # robust standard deviation of the residuals (reflectance)
    samples: int


def huber_fit(x: np.ndarray, y: np.ndarray, *, delta: float = 1.345, iterations: int = 30,
              max_samples: int = 200_000, seed: int = 0) -> BandFit:
    """Robust line ``y ~ gain * x + offset``.

    Args:
        x: reference reflectance (1-D). y: Sentinel-2 reflectance (1-D).
        delta: Huber threshold in robust standard deviations.
        iterations: IRLS iterations (stops earlier on convergence).
        max_samples: sub-sample size.
        seed: sub-sampling seed.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok].astype(np.float64), y[ok].astype(np.float64)
    if x.size > max_samples:
        pick = np.random.default_rng(seed).choice(x.size, max_samples, replace=False)
        x, y = x[pick], y[pick]
    if x.size < 10 or np.ptp(x) == 0:
        return BandFit(1.0, 0.0, float("inf"), int(x.size))
    a = np.stack([x, np.ones_like(x)], axis=1)
    w = np.ones_like(x)
    coef = np.zeros(2)
    scale = 1.0
    for it in range(iterations):
        sw = np.sqrt(w)
        new, *_ = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)
        resid = y - a @ new
        scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) or 1e-12
        if it < 5:  # Huber first, for a stable start
            u = np.abs(resid) / (delta * scale)
            w = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
        else:  # then Tukey's bisquare, which ignores gross outliers (clouds, changes)
            u = resid / (4.685 * scale)
            w = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.allclose(new, coef, rtol=1e-7, atol=1e-9):
            coef = new
            break
        coef = new
    return BandFit(float(coef[0]), float(coef[1]), scale, int(x.size))


def apply_fit(reference: np.ndarray, gains: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Normalise ``(C, H, W)`` reference reflectance with per-band gains and offsets."""
    return (reference * gains[:, None, None] + offsets[:, None, None]).astype(np.float32)
