"""A guard on the guided 20 m models' output where the scene leaves their training domain.

The shipped guided model (``s2sr_20m_x2``, also the 5 m cascade) was trained without snow. On
snow the visible bands are bright and the SWIR bands dark, the opposite of everything they
saw, and the network injects the visible bands' detail into B11 and B12 with the wrong
sign: on a snowy held-out BigEarthNet patch B11/B12 lose 11 to 19 dB against bicubic, and
the red-edge bands up to 6 dB against the guided high-pass baseline (and on the native
input its B8A falls under 0.7 x B08 on a few snow pixels, which the two NIR bands never do).

:func:`snow_mask` finds snow per 20 m pixel with the standard Sentinel-2 snow test, the
Normalised Difference Snow Index of Hall et al. (1995, "Development of methods for mapping
global snow cover using MODIS data", Remote Sens. Environ. 54) as Sen2Cor's scene
classification applies it to Sentinel-2 (ATBD S2PAD-ATBD-0001): NDSI = (B03 - B11) /
(B03 + B11) above 0.4, with SNOMAP's NIR reflectance above 0.11 and green reflectance above
0.10, both keeping dark water out (without the green test turbid coastal water at Rio,
B03 0.08-0.095, passed); the 10 m guide bands B03 and B08 are block-meaned to 20 m.

The mask is opened (:data:`OPEN`: scattered pixels are not a snow field) and dilated by
:data:`DILATE` 20 m pixels; in it the guarded bands
(:data:`GUARDED_BANDS`, all six) fall back to :func:`local_guided`, the guided high-pass
baseline with its regression fitted in a window of :data:`RADIUS` 20 m pixels around each
pixel instead of over the scene (local, so that a tile equals the whole scene; on the snow
patch it is at or above the scene-wide regression on B11/B12 in every Wald case, B11/B12
regressed on B08 alone), feathered
over :data:`FEATHER` output pixels outside the dilated mask's edge (a box-filtered weight, so
no seam; the scene's own edge continues the mask outward, so snow reaching it falls back
whole). Outside the mask's reach the model's output is returned bit for bit.

The guard only looks at the 20 m pixels within :func:`guard_reach` of an output pixel, so a
tiled predict whose context covers that reach equals the whole-scene result exactly.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
from scipy import ndimage

from s2sr.core.bands import BANDS_20M, DEFAULT_BANDS
from s2sr.inference.baselines import upsample

log = logging.getLogger(__name__)

#: Sen2Cor / Hall et al. snow test: NDSI above this ...
NDSI_MIN: Final[float] = 0.4
#: ... and the NIR (B08) reflectance above this ...
NIR_MIN: Final[float] = 0.11
#: ... and the green (B03) reflectance above this.
GREEN_MIN: Final[float] = 0.10
#: 20 m pixels the snow mask is dilated by.
DILATE: Final[int] = 2
#: Iterations of the 3 x 3 opening before the dilation: a snow field holds a 3 x 3 square
#: of 20 m pixels; the 1-24 scattered pixels of green water at Rio (date 2: B03 0.100-0.102,
#: B04/B03 0.6) that pass the test moved its PSNR by up to 0.06 dB, and nothing is left of
#: them after the opening (the snow patch's mask is unchanged).
OPEN: Final[int] = 1
#: Output pixels of the feathered edge beyond the dilated mask.
FEATHER: Final[int] = 3
#: The 20 m bands that fall back inside the mask. On the snow patch's snow pixels (Wald x2)
#: the model lost to the guided baseline in every band at some panel degradation: B11/B12
#: by 11-20 dB in all, the red edge by 1-6 dB at block mean and MTF 0.45/0.6 (it won by 3-5
#: dB at MTF 0.2/0.3, the cases whose Wald truth it resembles least: natively its B8A is
#: under 0.7 x B08 on 8 snow pixels, as at block mean and MTF 0.6, where the truth never
#: is; ``benchmarks/snow_guard.py``).
GUARDED_BANDS: Final[tuple[str, ...]] = BANDS_20M
#: Half-side (20 m pixels) of the window of :func:`local_guided`'s regression ...
RADIUS: Final[int] = 5
#: ... and its ridge (reflectance squared, added to the guide's covariance: a flat window
#: injects nothing rather than amplified noise).
RIDGE: Final[float] = 1e-4
#: The guide band B11 and B12 are regressed on in :func:`local_guided`. In snow the NIR and
#: the SWIR both fall with grain size and liquid water while the visible hardly moves, and
#: one slope in an 11 x 11 window is better determined than four: with the four 10 m bands
#: B11/B12 came 0.1-0.2 dB under the scene-wide baseline on the snow patch at MTF 0.2 and
#: Wald x4, with B08 alone 0.1-1.5 dB over it in every panel case (the red edge, which the
#: visible bands do help, keeps the four).
SWIR_GUIDE: Final[tuple[str, ...]] = ("B08",)
#: Share of fallback pixels above which the engine logs a warning.
WARN_FRACTION: Final[float] = 0.01
#: The output tag counting the 20 m pixels that fell back.
TAG: Final[str] = "S2SR_GUARD_FALLBACK"
#: Reach of a bicubic upsampling, in 20 m pixels (its 4-tap kernel, 2 each side).
_BICUBIC_REACH: Final[int] = 2

_B03, _B08 = DEFAULT_BANDS.index("B03"), DEFAULT_BANDS.index("B08")
_B11 = BANDS_20M.index("B11")
_GUARDED = [BANDS_20M.index(b) for b in GUARDED_BANDS]
_SWIR = [BANDS_20M.index(b) for b in ("B11", "B12")]
_SWIR_GUIDE = [DEFAULT_BANDS.index(b) for b in SWIR_GUIDE]


def guard_reach(scale: int) -> int:
    """20 m pixels of context an output pixel's guard depends on: a tile's context must
    cover it to be exact. The larger of the weight's (opening, dilation and feather) and
    the fallback's (its window and bicubic kernels, one more 20 m pixel at x4)."""
    return max(2 * OPEN + DILATE + math.ceil(FEATHER / scale),
               RADIUS + _BICUBIC_REACH + (scale > 2))


def snow_mask(lr: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """Snow per 20 m pixel: NDSI = (B03 - B11) / (B03 + B11) > :data:`NDSI_MIN`,
    B08 > :data:`NIR_MIN` and B03 > :data:`GREEN_MIN` (reflectance), B03 and B08
    block-meaned from 10 m to 20 m.

    Args:
        lr: ``(6, h, w)`` reflectance of :data:`~s2sr.core.bands.BANDS_20M`.
        guide: ``(4, 2h, 2w)`` reflectance of :data:`~s2sr.core.bands.DEFAULT_BANDS`.

    Returns:
        ``(h, w)`` booleans (undilated).
    """
    h, w = lr.shape[1:]
    g = guide[[_B03, _B08]].reshape(2, h, 2, w, 2).mean(axis=(2, 4), dtype=np.float64)
    b03, b08 = g[0], g[1]
    b11 = lr[_B11].astype(np.float64)
    total = b03 + b11
    ndsi = np.divide(b03 - b11, total, out=np.zeros_like(total), where=total > 0)
    return (ndsi > NDSI_MIN) & (b08 > NIR_MIN) & (b03 > GREEN_MIN)


def _box_count(mask: np.ndarray, radius: int) -> np.ndarray:
    """Number of set pixels in the ``(2 radius + 1)^2`` box around each pixel, the array's
    edge pixels repeated outward, in integers: exact, so a pixel far from the mask weighs
    exactly 0, and a mask that reaches the edge is not faded there (zeros outside blended
    1/7 of the model back into the last 3 output pixels: -0.1 dB on the snow patch's B12)."""
    ones = np.ones(2 * radius + 1, np.int32)
    count = ndimage.correlate1d(mask.astype(np.int32), ones, axis=0, mode="nearest")
    return ndimage.correlate1d(count, ones, axis=1, mode="nearest")


def fallback_weight(mask: np.ndarray, scale: int) -> np.ndarray:
    """The fallback's weight per output pixel, in [0, 1]: the mask opened by a 3 x 3 square
    (:data:`OPEN` times) and dilated by :data:`DILATE` 20 m pixels, brought to the output
    grid, box-filtered over ``2 FEATHER + 1`` output pixels (the array's edge repeated
    outward); 1 on the opened mask, exactly 0 beyond its reach."""
    square = np.ones((3, 3), bool)
    opened = ndimage.binary_opening(mask, square, iterations=OPEN)
    grown = ndimage.binary_dilation(opened, square, iterations=DILATE) \
        if opened.any() else opened
    fine = np.repeat(np.repeat(grown, scale, axis=0), scale, axis=1)
    return (_box_count(fine, FEATHER) / float((2 * FEATHER + 1) ** 2)).astype(np.float32)


def _box(a: np.ndarray, radius: int) -> np.ndarray:
    """Sums over the ``(2 radius + 1)^2`` box of the last two axes (zero outside), float64."""
    ones = np.ones(2 * radius + 1)
    s = ndimage.correlate1d(a.astype(np.float64), ones, axis=-2, mode="constant")
    return ndimage.correlate1d(s, ones, axis=-1, mode="constant")


def _window_cov(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the window of :data:`RADIUS` around each pixel of ``g`` ``(k, h, w)``: the
    pixel count, the means ``(k, h, w)`` and the ridge covariance ``(h, w, k, k)``, shared
    by every band regressed on the same guide bands."""
    k, shape = g.shape[0], g.shape[1:]
    n = _box(np.ones(shape), RADIUS)
    mg = _box(g, RADIUS) / n
    cov = np.empty((*shape, k, k))
    for i in range(k):
        for j in range(i, k):
            cov[..., i, j] = cov[..., j, i] = _box(g[i] * g[j], RADIUS) / n - mg[i] * mg[j]
    cov += RIDGE * np.eye(k)
    return n, mg, cov


def _local_coef(g: np.ndarray, y: np.ndarray, stats: tuple[np.ndarray, ...]) -> np.ndarray:
    """``(h, w, k)`` ridge regression slopes of ``y`` ``(h, w)`` on ``g`` ``(k, h, w)`` over
    the window of :data:`RADIUS` around each pixel (``stats``: :func:`_window_cov` of ``g``;
    float64 in, float32 out)."""
    n, mg, cov = stats
    my = _box(y, RADIUS) / n
    cross = np.stack([_box(g[i] * y, RADIUS) / n - mg[i] * my for i in range(g.shape[0])], -1)
    return np.linalg.solve(cov, cross[..., None])[..., 0].astype(np.float32)


def local_guided(lr: np.ndarray, guide: np.ndarray, bands: list[int], scale: int
                 ) -> np.ndarray:
    """The guided high-pass baseline (:func:`~s2sr.inference.baselines.guided_highpass`)
    of ``bands`` with a local regression: per 20 m pixel, ridge least squares of the band on
    its guide bands (:data:`SWIR_GUIDE` for B11/B12, the four 10 m bands for the red edge)
    block-meaned to 20 m over the window of :data:`RADIUS` around it; the output is the
    band's bicubic plus ``sum_k a_k (guide_k - bicubic(block_mean(guide_k)))`` at 10 m,
    brought to 5 m by bicubic at ``scale`` 4 (as
    :func:`~s2sr.inference.baselines.guided_baseline`).

    Returns:
        ``(len(bands), h * scale, w * scale)`` float32 reflectance.
    """
    k, h, w = guide.shape[0], lr.shape[1], lr.shape[2]
    g = guide.reshape(k, h, 2, w, 2).mean(axis=(2, 4), dtype=np.float64)
    highpass = guide - upsample(g.astype(np.float32), 2, "bicubic")
    bic = upsample(lr[bands], 2, "bicubic")
    out = np.empty((len(bands), 2 * h, 2 * w), np.float32)
    #: per set of guide bands: their coarse values and window statistics, computed once
    guides: dict[tuple[int, ...], tuple[np.ndarray, tuple[np.ndarray, ...]]] = {}
    for c, band in enumerate(bands):
        sel = _SWIR_GUIDE if band in _SWIR else list(range(k))
        key = tuple(sel)
        if key not in guides:
            guides[key] = (g[sel], _window_cov(g[sel]))
        gs, stats = guides[key]
        coef = _local_coef(gs, lr[band].astype(np.float64), stats)
        fine = np.repeat(np.repeat(coef, 2, axis=0), 2, axis=1)
        out[c] = bic[c] + np.einsum("hwk,khw->hw", fine, highpass[sel])
    return out if scale == 2 else upsample(out, scale // 2, "bicubic")


def guard_tile(out: np.ndarray, lr: np.ndarray, guide: np.ndarray, scale: int,
               core: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """The guided model's output on a tile's core, with the fallback applied on snow.

    Args:
        out: ``(6, ch * scale, cw * scale)`` the model's reflectance on the core.
        lr, guide: the tile's inputs with their context, ``(6, H, W)`` and ``(4, 2H, 2W)``
            reflectance (nodata filled).
        scale: the model's scale (2 or 4).
        core: ``(y, x, ch, cw)`` the core's place in the context, in 20 m pixels.

    Returns:
        The output (``out`` itself, untouched, where no snow is within reach; else a copy)
        and the number of the core's 20 m pixels in the dilated mask.
    """
    mask = snow_mask(lr, guide)
    if not mask.any():
        return out, 0
    y, x, ch, cw = core
    weight = fallback_weight(mask, scale)[y * scale:(y + ch) * scale, x * scale:(x + cw) * scale]
    if not weight.any():
        return out, 0
    fallback = local_guided(lr, guide, _GUARDED, scale)[
        :, y * scale:(y + ch) * scale, x * scale:(x + cw) * scale]
    guarded = out.copy()
    near = weight > 0
    for k, band in enumerate(_GUARDED):
        model = out[band][near]
        guarded[band][near] = model + weight[near] * (fallback[k][near] - model)
    fell = int((weight.reshape(ch, scale, cw, scale) >= 1.0).all(axis=(1, 3)).sum())
    return guarded, fell


def guard_tags(fallback: int, total: int) -> dict[str, str]:
    """The output's tag: the 20 m pixels that fell back, and their share."""
    share = fallback / total if total else 0.0
    return {TAG: f"{fallback} of {total} 20 m pixels ({100 * share:.2f} %; "
                 f"{', '.join(GUARDED_BANDS)} by a local guided high-pass where "
                 f"NDSI > {NDSI_MIN}, B08 > {NIR_MIN}, B03 > {GREEN_MIN})"}


def warn_fallback(fallback: int, total: int) -> None:
    """Log a warning when more than :data:`WARN_FRACTION` of the pixels fell back."""
    if total and fallback / total > WARN_FRACTION:
        log.warning("%.1f %% of the scene's 20 m pixels look like snow (NDSI > %s, B08 > %s): "
                    "%s fell back to a local guided high-pass there, as the 20 m models were "
                    "not trained on snow", 100 * fallback / total, NDSI_MIN, NIR_MIN,
                    ", ".join(GUARDED_BANDS))
