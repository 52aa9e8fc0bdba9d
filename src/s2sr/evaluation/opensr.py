"""The opensr-test metrics: consistency with the input and the correctness triple.

From their published definitions: C. Aybar, D. Montero, S. Donike, F. Kalaitzis and
L. Gómez-Chova, "A Comprehensive Benchmark for Optical Remote Sensing Image
Super-Resolution", IEEE Geoscience and Remote Sensing Letters, 2024, and its reference code,
https://github.com/ESAOpenSR/opensr-test (release 1.2: ``opensr_test/main.py``,
``config.py``, ``correctness.py``, ``distance.py``, ``utils.py``, ``spatial.py`` and the
phase correlation of its aligner, ``satalign/pcc.py``). Written anew from those sources with
their default configuration (the constants below); users of opensr-test compare with these
numbers. Images are reflectance ``(C, H, W)``: ``lr`` the input, ``sr`` the output and
``hr`` the truth, ``sr`` and ``hr`` ``scale`` times ``lr`` a side.

*Set-up* (``Metrics.setup``): a border of :data:`BORDER_MASK` pixels is cut from ``sr``
and ``hr`` and ``BORDER_MASK // scale`` from ``lr``. The input on the output's grid
(``lr_to_hr``) is its bilinear upsampling and the output on the input's grid (``sr_to_lr``)
its antialiased bilinear downsampling (``torch.nn.functional.interpolate``, ``bilinear``,
``antialias=True``, as opensr-test).

*Consistency* (:func:`consistency`, no truth needed): **reflectance**, the L1 distance
(mean absolute difference, reflectance) between ``lr`` and ``sr_to_lr``; **spectral**, the
mean spectral angle (degrees) between them per pixel; **spatial**, the length of the
translation (input pixels) between them found by phase correlation to 1/50 px, NaN where
it is above :data:`MAX_TRANSLATION` (opensr-test's aligner then fails).

*Correctness* (:func:`correctness`): ``sr`` is first harmonised to ``hr`` (histogram
matching per band, then the translation to ``hr`` by phase correlation removed). Per pixel,
with the normalised difference ``nd(x, y) = mean over bands |x - y| / |x + y|``:
``d_ref = nd(lr_to_hr, hr)``, ``d_im = nd(sr, hr) / d_ref`` and ``d_om = nd(sr, lr_to_hr) /
d_ref``. Only pixels where one of the three raw distances exceeds the 75th percentile of
``d_ref`` count (opensr-test's ``gradient_threshold="auto"``). There, with ``H = d_im + d_om
- 1`` and lambda = :data:`CORRECTNESS_LAMBDA`: improvement ``d_im + d_om (1 - exp(-lambda
H))``, omission ``d_om + d_im (1 - exp(-lambda H))``, hallucination ``exp(-lambda d_im
d_om)``; a softmin at temperature :data:`TEMPERATURE` over the three makes each pixel's
memberships, and the scores are their means over the counted pixels (opensr-test's default
``correctness_norm="softmin"``). The hard fractions (each pixel in the class of its largest
membership, ``"percent"``) are returned too. A perfect output scores improvement 0.96,
omission and hallucination 0.02 each; an interpolation of the input scores omission near 1.

The aligner works on one grey layer: the band mean, of the first three bands for the
spatial consistency (``Config.rgb_bands``) and, in the harmonisation, of bands 3, 2, 1 of an
image with more than three (``satalign``'s default). Choices where the reference code leaves
room (also in docs/evaluation.md): the aligner's translation is applied with bilinear interpolation
and replicated edges (``scipy.ndimage.shift``, for OpenCV's ``warpAffine``, which
opensr-test uses); sizes that are not a multiple of the scale after the border cut are
cropped to the common size; the set-up refuses images left with fewer than
:data:`MIN_SIDE` input pixels a side after the cut. Phase correlation without a window is
pulled towards zero by the image edges: it underestimates sub-pixel shifts of small or
smooth images (within 0.05 px on a 128 px natural-like input, see the tests).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.exposure import match_histograms
from skimage.registration import phase_cross_correlation

from s2sr.core.errors import DataError, UsageError
from s2sr.losses.metrics import crop_border

__all__ = ["BORDER_MASK", "CONSISTENCY_KEYS", "CORRECTNESS_KEYS", "CORRECTNESS_LAMBDA",
           "MAX_TRANSLATION", "MIN_SIDE", "TEMPERATURE", "check_triplet", "consistency",
           "correctness", "downsample", "harmonise", "nd_distance", "opensr_metrics",
           "phase_shift", "spectral_angle_map", "upsample"]

#: Border cut from the output and truth, in output pixels (``Config.border_mask``).
BORDER_MASK = 16
#: Largest translation the aligner accepts, pixels (``Config.spatial_threshold_distance``).
MAX_TRANSLATION = 5.0
#: Phase-correlation upsampling: shifts to 1/50 px (``satalign.pcc.PCC``).
UPSAMPLE_FACTOR = 50
#: The correctness scores' lambda (``Config.im_score``, ``om_score``, ``ha_score``).
CORRECTNESS_LAMBDA = 0.05
#: Softmin temperature of the memberships (``Config.correctness_temperature``).
TEMPERATURE = 0.25
#: Quantile of ``d_ref`` below which a pixel is not counted (``gradient_threshold="auto"``).
THRESHOLD_QUANTILE = 0.75
#: Epsilon of the normalised difference (``distance.FractionalDifference``).
EPS = 1e-8
#: Bands of the input used for the spatial consistency (``Config.rgb_bands``).
RGB_BANDS = (0, 1, 2)
#: Bands the aligner averages when an image has more than three (``satalign``: [3, 2, 1]).
ALIGN_BANDS = (3, 2, 1)
#: Smallest input side left after the border cut (pixels) for the metrics to mean anything.
MIN_SIDE = 4

#: Keys of :func:`consistency`: L1 (reflectance), spectral angle (deg), shift (input px).
CONSISTENCY_KEYS = ("reflectance", "spectral", "spatial")
#: Keys of :func:`correctness`: soft memberships, then the hard fractions (``_px``).
CORRECTNESS_KEYS = ("improvement", "omission", "hallucination",
                    "improvement_px", "omission_px", "hallucination_px")


def _check_image(name: str, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3:
        raise UsageError(f"{name} has shape {a.shape}, not (bands, height, width): give one "
                         "image as a 3-D array")
    if a.size == 0:
        raise DataError(f"{name} is empty (shape {a.shape}): give an image with pixels")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise DataError(f"{name} has dtype {a.dtype}: give reflectance as real numbers")
    if not np.isfinite(a).all():
        raise DataError(f"{name} holds NaN or infinite values: fill or crop them before "
                        "scoring (the metrics need every pixel)")
    return a.astype(np.float32, copy=False)


def check_triplet(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Check an input, output and (optional) truth and return them as float32 and the scale.

    Raises:
        UsageError: not 3-D, different bands, ``sr`` not an integer multiple (>= 2) of
            ``lr`` on both axes, or ``hr`` not the shape of ``sr``.
        DataError: empty, not numeric, NaN or infinite, or too small for the border cut.
    """
    lr, sr = _check_image("the input", lr), _check_image("the output", sr)
    if hr is not None:
        hr = _check_image("the truth", hr)
        if hr.shape != sr.shape:
            raise UsageError(f"the truth is {hr.shape} but the output {sr.shape}: give the "
                             "truth on the output's grid")
    if lr.shape[0] != sr.shape[0]:
        raise UsageError(f"the input has {lr.shape[0]} bands but the output {sr.shape[0]}: "
                         "give the same bands to both")
    scale = sr.shape[2] // lr.shape[2]
    if scale < 2 or sr.shape[1:] != (lr.shape[1] * scale, lr.shape[2] * scale):
        raise UsageError(f"the output {sr.shape[1:]} is not an integer multiple (>= 2) of the "
                         f"input {lr.shape[1:]} on both axes: give the output of this input")
    side = min(lr.shape[1:]) - 2 * (BORDER_MASK // scale)
    if side < MIN_SIDE:
        raise DataError(f"the input is {lr.shape[2]}x{lr.shape[1]} px: after opensr-test's "
                        f"border of {BORDER_MASK} output px it keeps {max(side, 0)} px a side "
                        f"(at least {MIN_SIDE}): give a larger image")
    return lr, sr, hr, scale


def _interp(x: np.ndarray, factor: float) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    with torch.no_grad():
        out = F.interpolate(t, scale_factor=factor, mode="bilinear", antialias=True)
    return out[0].numpy()


def upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """The input on the output's grid ``(C, H*s, W*s)``: bilinear (opensr-test's
    ``apply_downsampling``, named for the spatial resolution)."""
    return _interp(lr, float(scale))


def downsample(sr: np.ndarray, scale: int) -> np.ndarray:
    """The output on the input's grid ``(C, H/s, W/s)``: antialiased bilinear (a triangle
    of ``2 s`` output pixels; opensr-test's ``apply_upsampling``)."""
    return _interp(sr, 1.0 / scale)


def _common(*xs: np.ndarray) -> list[np.ndarray]:
    h, w = min(x.shape[1] for x in xs), min(x.shape[2] for x in xs)
    return [x[:, :h, :w] for x in xs]


def nd_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pixel normalised difference ``(H, W)``: the band mean of ``|x - y| / |x + y +
    eps|`` (opensr-test's default correctness distance, ``"nd"``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.nanmean(np.abs(x - y) / np.abs(x + y + EPS), axis=0),
                          dtype=np.float64)


def spectral_angle_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pixel spectral angle ``(H, W)`` in degrees (``"sad"``); NaN where a spectrum is
    zero."""
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (xd * yd).sum(0) / (np.linalg.norm(xd, axis=0) * np.linalg.norm(yd, axis=0))
    return np.asarray(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _layer(x: np.ndarray) -> np.ndarray:
    """The aligner's grey layer: the band mean (of bands 3, 2, 1 when there are more than
    three, as ``satalign.SatAlign.create_layer``)."""
    return (x[list(ALIGN_BANDS)] if x.shape[0] > 3 else x).mean(axis=0, dtype=np.float64)


def phase_shift(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float] | None:
    """Translation ``(dy, dx)`` (pixels) that registers ``moving`` onto ``reference`` by
    phase correlation to 1/:data:`UPSAMPLE_FACTOR` px; None when it is longer than
    :data:`MAX_TRANSLATION` or not found (opensr-test's aligner, ``pcc``)."""
    try:
        shift, _, _ = phase_cross_correlation(_layer(reference), _layer(moving),
                                              upsample_factor=UPSAMPLE_FACTOR)
    except (ValueError, IndexError):
        return None
    dy, dx = float(shift[0]), float(shift[1])
    if not math.isfinite(dy) or not math.isfinite(dx) or math.hypot(dy, dx) > MAX_TRANSLATION:
        return None
    return dy, dx


def harmonise(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """The output without its systematic errors (opensr-test's ``sr_harm``): each band's
    histogram matched to the truth's, then the translation to the truth removed (none where
    the aligner fails)."""
    matched = match_histograms(sr.astype(np.float64), hr.astype(np.float64), channel_axis=0)
    shift = phase_shift(hr, matched)
    if shift is None or shift == (0.0, 0.0):
        return np.asarray(matched)
    return np.stack([ndimage.shift(b, shift, order=1, mode="nearest") for b in matched])


def consistency(lr: np.ndarray, sr: np.ndarray) -> dict[str, float]:
    """opensr-test's consistency of an output ``(C, H*s, W*s)`` with its input ``(C, H, W)``.

    Returns:
        ``reflectance`` (L1, reflectance), ``spectral`` (mean spectral angle, degrees) and
        ``spatial`` (translation between them, input pixels; NaN where the aligner fails).

    Raises:
        UsageError, DataError: see :func:`check_triplet`.
    """
    lr, sr, _, scale = check_triplet(lr, sr)
    lr_m, back = _common(crop_border(lr, BORDER_MASK // scale),
                         downsample(crop_border(sr, BORDER_MASK), scale))
    refl = float(np.mean(np.abs(lr_m.astype(np.float64) - back)))
    spectral = float(np.nanmean(spectral_angle_map(lr_m, back)))
    if lr.shape[0] >= 3:
        lr_rgb, back_rgb = lr_m[list(RGB_BANDS)], back[list(RGB_BANDS)]
    else:
        lr_rgb, back_rgb = lr_m[:1], back[:1]
    shift = phase_shift(back_rgb, lr_rgb)
    spatial = math.nan if shift is None else math.hypot(*shift)
    return {"reflectance": refl, "spectral": spectral, "spatial": spatial}


def _softmin(stack: np.ndarray) -> np.ndarray:
    e = np.exp(-stack / TEMPERATURE)
    with np.errstate(invalid="ignore"):
        return np.asarray(e / e.sum(axis=0))


def correctness(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """opensr-test's correctness triple of an output against the truth.

    Args:
        lr: the input ``(C, H, W)``, reflectance.
        sr: the output ``(C, H*s, W*s)``.
        hr: the truth on the output's grid.

    Returns:
        ``improvement``, ``omission``, ``hallucination``: the mean softmin memberships over
        the counted pixels (they sum to 1; opensr-test's ``im_metric``, ``om_metric``,
        ``ha_metric``), and ``improvement_px``, ``omission_px``, ``hallucination_px``: the
        fractions of counted pixels classified in each (``correctness_norm="percent"``).

    Raises:
        UsageError, DataError: see :func:`check_triplet`, and when the input on the output's
            grid equals the truth (nothing to improve on; DataError).
    """
    lr, sr, _, scale = check_triplet(lr, sr, hr)
    lr_up, sr_m, hr_m = _common(upsample(crop_border(lr, BORDER_MASK // scale), scale),
                                crop_border(sr, BORDER_MASK),
                                crop_border(np.asarray(hr, dtype=np.float32), BORDER_MASK))
    sr_h = harmonise(sr_m, hr_m)
    d_ref, d_im, d_om = nd_distance(lr_up, hr_m), nd_distance(sr_h, hr_m), nd_distance(
        sr_h, lr_up)
    flat = np.sort(d_ref[np.isfinite(d_ref)].ravel())
    if flat.size == 0 or flat[-1] <= 0:
        raise DataError("the interpolated input equals the truth: there is no detail to "
                        "score correctness on (give a truth with detail)")
    k = max(int(THRESHOLD_QUANTILE * d_ref.size), 1)  # torch.kthvalue(k): k-th smallest
    threshold = flat[min(k, flat.size) - 1]
    mask = (d_ref > threshold) | (d_im > threshold) | (d_om > threshold)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        im_ref, om_ref = d_im[mask] / d_ref[mask], d_om[mask] / d_ref[mask]
        h = im_ref + om_ref - 1.0
        improvement = im_ref + om_ref * (1.0 - np.exp(-h * CORRECTNESS_LAMBDA))
        omission = om_ref + im_ref * (1.0 - np.exp(-h * CORRECTNESS_LAMBDA))
        hallucination = np.exp(-im_ref * om_ref * CORRECTNESS_LAMBDA)
        member = _softmin(np.stack([improvement, omission, hallucination]))
    valid = np.isfinite(member).all(axis=0)
    counted = int(mask.sum())
    if not valid.any():
        raise DataError("no pixel of the output could be scored for correctness (the "
                        "distances are undefined): check the truth and the output")
    soft = member[:, valid].mean(axis=1)
    # torch.argmax takes NaN as the largest: such pixels go to class 0 (as opensr-test)
    hard = np.where(valid, np.argmax(np.nan_to_num(member, nan=-1.0), axis=0), 0)
    frac = [float(np.sum(hard == c)) / counted for c in range(3)]
    return {"improvement": float(soft[0]), "omission": float(soft[1]),
            "hallucination": float(soft[2]), "improvement_px": frac[0],
            "omission_px": frac[1], "hallucination_px": frac[2]}


def opensr_metrics(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray | None = None
                   ) -> dict[str, Any]:
    """:func:`consistency` and, given the truth, :func:`correctness` in one dict (the
    correctness keys None without a truth)."""
    out: dict[str, Any] = dict(consistency(lr, sr))
    if hr is None:
        out.update(dict.fromkeys(CORRECTNESS_KEYS))
    else:
        out.update(correctness(lr, sr, hr))
    return out
