"""Sub-pixel co-registration by phase correlation (pure functions).

Shifts are ``(dy, dx)`` in pixels of the grid the images are on, with the convention of
:func:`skimage.registration.phase_cross_correlation`: the shift that, applied to
``moving``, aligns it with ``reference``. A global estimate is the median of estimates on
several windows, and is called reliable when enough windows agree (median absolute
deviation below a tolerance) and their correlation peaks are distinct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation


@dataclass(frozen=True)
class ShiftEstimate:
    """A shift with its support.

    Attributes:
        shift: ``(dy, dx)`` pixels.
        spread: median absolute deviation of the window estimates (pixels).
        windows: how many windows contributed.
        reliable: whether the estimate can be trusted.
        reason: why not, when not reliable.
    """

    shift: tuple[float, float]
    spread: float
    windows: int
    reliable: bool
    reason: str = ""


def _prepare(image: np.ndarray) -> np.ndarray:
    """High-pass, zero-mean, windowed single band for correlation."""
    image = np.nan_to_num(image.astype(np.float64))
    image = image - ndimage.gaussian_filter(image, 8.0, mode="mirror")
    image = image - image.mean()
    win = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    return image * win


def estimate_shift(reference: np.ndarray, moving: np.ndarray, upsample: int = 50
                   ) -> tuple[tuple[float, float], float]:
    """Shift of one band pair by upsampled phase correlation.

    Args:
        reference: ``(H, W)``.
        moving: ``(H, W)`` on the same grid.
        upsample: sub-pixel precision is ``1 / upsample`` pixel.

    Returns:
        ``((dy, dx), error)``, error in [0, 1] (1 - normalised peak height).
    """
    shift, error, _ = phase_cross_correlation(
        _prepare(reference), _prepare(moving), upsample_factor=upsample, normalization=None)
    return (float(shift[0]), float(shift[1])), float(error)


def global_shift(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, tolerance: float = 0.25,
    min_windows: int = 3, max_error: float = 0.995,
) -> ShiftEstimate:
    """Robust global shift from several ``(reference, moving)`` single-band windows.

    Args:
        pairs: window pairs (same shape within a pair).
        tolerance: the largest median absolute deviation (pixels) still called reliable.
        min_windows: fewest agreeing windows for a reliable estimate.
        max_error: window estimates with a weaker correlation peak are ignored.
    """
    shifts = []
    for ref, mov in pairs:
        if min(ref.shape) < 16 or np.nanstd(ref) == 0 or np.nanstd(mov) == 0:
            continue
        shift, error = estimate_shift(ref, mov)
        if error <= max_error:
            shifts.append(shift)
    if not shifts:
        return ShiftEstimate((0.0, 0.0), float("inf"), 0, False,
                             "no window had texture to correlate")
    arr = np.asarray(shifts)
    med = np.median(arr, axis=0)
    dev = np.abs(arr - med).max(axis=1)
    spread = float(np.median(dev))
    agreeing = int((dev <= max(tolerance, 3 * spread)).sum())
    good = arr[dev <= max(tolerance, 3 * spread)]
    est = np.median(good, axis=0) if len(good) else med
    if len(shifts) >= min_windows and agreeing < min_windows:
        reason = f"only {agreeing} of {len(shifts)} windows agree on a shift"
    elif len(shifts) < min_windows and len(shifts) < len(pairs):
        reason = f"only {len(shifts)} windows could be correlated"
    elif spread > tolerance:
        reason = f"window estimates disagree by {spread:.2f} px (tolerance {tolerance})"
    else:
        reason = ""
    return ShiftEstimate((float(est[0]), float(est[1])), spread, len(shifts), not reason,
                         reason)


def apply_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Shift ``(C, H, W)`` or ``(H, W)`` by ``(dy, dx)`` pixels (cubic spline, mirrored)."""
    if image.ndim == 2:
        return ndimage.shift(image.astype(np.float32), shift, order=3, mode="mirror")
    return np.stack([apply_shift(band, shift) for band in image])
