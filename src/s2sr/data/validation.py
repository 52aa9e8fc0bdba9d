"""Automatic patch validation: fixed thresholds, then robust outliers within a scene pair.

Each patch gets ``auto-accepted`` or ``auto-rejected`` with one reason, the first that
applies in this order: ``nodata``, ``cloud``, ``changed`` (low correlation or SSIM
between Sentinel-2 and the degraded reference), ``misregistered`` (residual shift; a
changed patch has no meaningful shift, hence the order), ``radiometry``
(large residual after normalisation), then ``outlier-<stat>`` for patches whose
statistic is more than ``mad_z`` robust standard deviations (1.4826 x median absolute
deviation, with a floor per statistic) worse than the scene pair's median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from s2sr.core.checks import check_number
from s2sr.core.errors import UsageError


@dataclass(frozen=True)
class Thresholds:
    """Rejection thresholds (defaults follow the study: no clouds, clean overlap)."""

    max_nodata: float = 0.0
    max_cloud: float = 0.01
    max_shift: float = 0.5  # residual shift, Sentinel-2 pixels
    min_corr: float = 0.6
    min_ssim: float = 0.3
    max_residual: float = 0.03  # median |S2 - degraded reference|, reflectance
    mad_z: float = 4.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi, lo_open = _RANGES[f.name]
            check_number(f"threshold {f.name}", value, lo, hi, low_open=lo_open)

    def as_dict(self) -> dict[str, float]:
        """Plain dict (for manifests)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Thresholds:
        """From a dict; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown threshold(s) {unknown}: use {sorted(known)}")
        out = {}
        for k, v in values.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise UsageError(f"threshold {k}={v!r} is not a number") from None
        return cls(**out)


#: Allowed range of each threshold: (low, high, low bound excluded).
_RANGES = {"max_nodata": (0.0, 1.0, False), "max_cloud": (0.0, 1.0, False),
           "max_shift": (0.0, 1e3, False), "min_corr": (-1.0, 1.0, False),
           "min_ssim": (-1.0, 1.0, False), "max_residual": (0.0, 1e3, False),
           "mad_z": (0.0, 1e6, True)}


#: Smallest robust scale per statistic, so that a scene of near-perfect patches does not
#: call the merely very good ones outliers.
MIN_SCALE = {"corr": 0.02, "ssim": 0.02, "residual": 0.005}


def robust_z(values: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """(x - median) / max(1.4826 MAD, ``min_scale``); zeros when that scale is zero."""
    med = np.nanmedian(values)
    mad = max(1.4826 * float(np.nanmedian(np.abs(values - med))), min_scale)
    if not np.isfinite(mad) or mad == 0:
        return np.zeros_like(values, dtype=float)
    return (values - med) / mad


def validate(stats: dict[str, np.ndarray], t: Thresholds) -> list[str]:
    """One reason per patch (``""`` for accepted).

    Args:
        stats: arrays of equal length with keys ``nodata``, ``cloud``, ``shift``, ``corr``,
            ``ssim``, ``residual``.
        t: thresholds.
    """
    n = len(stats["nodata"])
    reasons = [""] * n
    rules = [
        ("nodata", stats["nodata"] > t.max_nodata),
        ("cloud", stats["cloud"] > t.max_cloud),
        ("changed", (stats["corr"] < t.min_corr) | (stats["ssim"] < t.min_ssim)),
        ("misregistered", ~(stats["shift"] <= t.max_shift)),
        ("radiometry", stats["residual"] > t.max_residual),
    ]
    for reason, bad in rules:
        for k in np.flatnonzero(bad):
            reasons[k] = reasons[k] or reason
    candidates = np.array([not r for r in reasons])
    if candidates.sum() >= 8:
        for name, sign in (("corr", -1), ("ssim", -1), ("residual", 1)):
            z = np.zeros(n)
            z[candidates] = robust_z(stats[name][candidates], MIN_SCALE[name])
            for k in np.flatnonzero(candidates & (sign * z > t.mad_z)):
                reasons[k] = reasons[k] or f"outlier-{name}"
    return reasons
