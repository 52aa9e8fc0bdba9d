"""A score of periodic (checkerboard) artefacts for any image, and its threshold.

Definition (:func:`artefact_score`)
    The image is cut into square windows of ``WINDOW`` px (64; the whole image when smaller,
    at least ``MIN_SIDE`` px) overlapping by half, the last row and column of windows
    flush with the image's edge. In each window and band the mean is removed, a 2-D
    periodic Hann window applied and the power spectrum ``|FFT|^2`` taken; the spectra are
    averaged over windows and bands (Welch's method). With ``r = sqrt(fx^2 + fy^2)`` in
    cycles per pixel, the score is

        mean power over r >= 0.375  /  mean power over 0.25 <= r < 0.375

    The numerator holds the ring up to the Nyquist frequency (0.5) *and* the corners out to
    (0.5, 0.5), where a pixel-shuffle checkerboard (period 2 along both axes) and
    period-2 stripes put their energy. The score is a ratio, so it does not depend on the
    image's gain, offset or units (DN or reflectance alike). Real imagery of any sensor
    decays towards Nyquist (score well below 1); white noise scores 1; an image whose
    spectrum rises towards Nyquist (a periodic artefact) scores above 1.

Calibration (``benchmarks/calibrate_artefacts.py`` prints this table; measured on the real
imagery in ``../shared/data``, nodata windows skipped, every band of each file):

    ==========================================================  =====  =====
    images (every band; scores per file in the script's output)  min    max
    ==========================================================  =====  =====
    real Sentinel-2 10 m crops (17: B02 B03 B04 B08)             0.101  0.310
    real finer sensors and Landsat 8 (15 files: WorldView-2 MS   0.098  0.507
    and pan, SpaceNet pan, NEON RGB 0.1 m, 5 m RGBN, Landsat 8
    blue/green/red 30 m; highest: worldview2_rotterdam_ms3)
    bicubic x2 of the Sentinel-2 crops                           0.033  0.384
    bicubic x4 of the Sentinel-2 crops                           0.027  0.050
    shipped s2sr_x2 (weights of commit 9085bc8) on the crops     0.009  0.460
    shipped s2sr_x4                                              0.045  0.425
    shipped s2sr_rgb_x2                                          0.032  0.166
    shipped s2sr_rgb_x4                                          0.111  0.328
    white noise (any sensor's noise floor)                       1.0    1.0
    ==========================================================  =====  =====

``ARTEFACT_THRESHOLD`` = 0.75: the highest real-imagery score (0.507) plus a margin of 0.2,
rounded up to 0.05; it stays below white noise (1.0), which any output whose spectrum
rises towards Nyquist exceeds. Synthetic checks (``tests/evaluation/test_artefacts.py``):
a 0.5 % reflectance period-2 checkerboard or stripes on a textured field, or a
pixel-shuffle-like 2x2 gain pattern of 3 %, score above it; smooth and natural-like
fields, and their bicubic, Lanczos and unsharp-mask upsampling, below.

The measure is deliberately a broad-band one: a faint checkerboard whose energy is small
next to the image's own texture near Nyquist (a narrow peak at (0.5, 0.5) a few times its
immediate surroundings, as the shipped x2 model shows on some scenes) is not counted as
an artefact; one that rises above real imagery's decay is. The stripe pattern of a
pixel-shuffle head whose sub-pixel phases disagree is such a faint pattern: it is caught
by the second measure.

Nyquist-line ratio (:func:`nyquist_line_ratio`)
    Of the *difference* between a model's output and bicubic interpolation of the same
    input (what the model added), Hann-windowed spectra as above (64 px windows, Welch).
    Per axis: the mean power on the output's Nyquist line (``|fx| = 0.5`` for ``x``, every
    ``fy``; ``|fy| = 0.5`` for ``y``) over the mean power in the ring
    ``0.30 <= r <= 0.40`` cycles/px (:data:`LINE_RING`). A pixel-shuffle head whose
    sub-pixel positions disagree (a 2-pixel stripe pattern riding on the content, columns
    for ``x``, rows for ``y``) puts its energy exactly on these lines; real detail that
    bicubic misses has a smooth spectrum there. Above :data:`LINE_THRESHOLD` (0.3, the
    project's target) on either axis, the output carries a stripe pattern. Calibration
    (``benchmarks/calibrate_line_ratio.py``; figures in MODEL_CARD.md): real Wald truth
    minus bicubic on every scene in ``../shared/data/sentinel2`` and the shipped models
    on the same scenes at their native 10 m.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from s2sr.core.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

    ArrayLike: TypeAlias = np.ndarray | torch.Tensor
else:
    ArrayLike: TypeAlias = Any

__all__ = ["ARTEFACT_THRESHOLD", "HIGH_BAND", "LINE_RING", "LINE_THRESHOLD", "LOW_BAND",
           "MIN_SIDE", "WINDOW", "artefact_score", "band_masks", "nyquist_line_ratio",
           "power_spectrum"]

#: Side of the analysis windows (px); they overlap by half.
WINDOW = 64
#: Smallest image side scored (px).
MIN_SIDE = 16
#: Radial frequency band (cycles/px) of the numerator: from 0.375 out to the corners.
HIGH_BAND = (0.375, float(np.sqrt(0.5)))
#: Radial frequency band (cycles/px) of the denominator, just below.
LOW_BAND = (0.25, 0.375)
#: Above this an output has periodic artefacts (see the calibration in the docstring).
ARTEFACT_THRESHOLD = 0.75
#: Ring (cycles/px, both ends included) that the Nyquist-line power is compared with.
LINE_RING = (0.30, 0.40)
#: Above this Nyquist-line ratio (either axis) an output carries a 2-pixel stripe pattern.
LINE_THRESHOLD = 0.3


def _starts(size: int, win: int) -> list[int]:
    step = max(1, win // 2)
    starts = list(range(0, size - win + 1, step))
    if starts[-1] != size - win:
        starts.append(size - win)
    return starts


def power_spectrum(image: ArrayLike, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean Hann-windowed power spectrum ``(W, W)`` of an image (FFT order, DC at [0, 0]).

    Args:
        image: ``(C, H, W)`` or ``(H, W)``, any units.
        mask: optional ``(H, W)`` boolean, True where the pixel is valid; windows holding
            any invalid pixel are skipped.

    Raises:
        UsageError: a shape that is not 2-D or 3-D, a side below ``MIN_SIDE`` or a mask of
            another shape.
        DataError: NaN/inf in a scored window, or no window free of invalid pixels.
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UsageError(f"artefact score needs a (C, H, W) or (H, W) image, got shape "
                         f"{tuple(a.shape)}: pass one image, bands first")
    c, h, w = a.shape
    if c == 0 or min(h, w) < MIN_SIDE:
        raise UsageError(f"artefact score needs an image of at least {MIN_SIDE}x{MIN_SIDE} px "
                         f"and one band, got {c}x{h}x{w}: score a larger output")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (h, w):
            raise UsageError(f"mask shape {mask.shape} does not match the image's {(h, w)}")
    win = min(WINDOW, h, w)
    win -= win % 2
    hann1 = np.sin(np.pi * np.arange(win) / win) ** 2  # periodic Hann
    hann = np.outer(hann1, hann1)
    total = np.zeros((win, win))
    count = 0
    for y in _starts(h, win):
        for x in _starts(w, win):
            if mask is not None and not mask[y:y + win, x:x + win].all():
                continue
            tile = a[:, y:y + win, x:x + win]
            if not np.isfinite(tile).all():
                raise DataError("the image holds NaN or inf: crop or mask the invalid pixels "
                                "before scoring artefacts")
            level = np.abs(tile).max(axis=(1, 2), keepdims=True)
            tile = tile - tile.mean(axis=(1, 2), keepdims=True)
            # a band flat to rounding (float error of the mean) has no spectrum at all
            tile = np.where(tile.std(axis=(1, 2), keepdims=True) <= 1e-9 * level, 0.0, tile)
            total += (np.abs(np.fft.fft2(tile * hann)) ** 2).sum(axis=0)
            count += c
    if count == 0:
        raise DataError(f"no {win}x{win} window of the image is free of invalid pixels: crop "
                        "it to the area with data")
    return total / count


def _radius(win: int) -> np.ndarray:
    f = np.fft.fftfreq(win)
    return np.hypot(f[:, None], f[None, :])


def band_masks(win: int) -> tuple[np.ndarray, np.ndarray]:
    """The numerator and denominator bins of a ``win`` px window's spectrum (FFT order)."""
    r = _radius(win)
    return r >= HIGH_BAND[0], (r >= LOW_BAND[0]) & (r < LOW_BAND[1])


def artefact_score(image: ArrayLike, mask: np.ndarray | None = None) -> float:
    """Periodic-artefact score of an image: power near Nyquist over the band below.

    See the module docstring for the exact definition and the calibration. A flat image
    scores 0.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` float image (a model's output, any units).
        mask: optional ``(H, W)`` validity mask (windows with invalid pixels skipped).

    Returns:
        The score (>= 0); above :data:`ARTEFACT_THRESHOLD` means periodic artefacts.
    """
    p = power_spectrum(image, mask)
    high, low = band_masks(p.shape[0])
    num, ref = float(p[high].mean()), float(p[low].mean())
    if ref <= 0:
        return 0.0 if num <= 0 else float("inf")
    return num / ref


def nyquist_line_ratio(output: ArrayLike, reference: ArrayLike,
                       mask: np.ndarray | None = None) -> tuple[float, float]:
    """Nyquist-line ratio per axis of ``output - reference`` (see the module docstring).

    Args:
        output: ``(C, H, W)`` or ``(H, W)`` model output, any units.
        reference: the same input upsampled by bicubic interpolation, same shape and units.
        mask: optional ``(H, W)`` validity mask (windows with invalid pixels skipped).

    Returns:
        ``(x, y)``: power on ``|fx| = 0.5`` (alternating columns) and on ``|fy| = 0.5``
        (alternating rows), each over the mean power in :data:`LINE_RING`; 0 where the
        two images are equal. Above :data:`LINE_THRESHOLD` means a stripe pattern.

    Raises:
        UsageError: images of different shapes (or any shape :func:`power_spectrum`
            refuses).
        DataError: NaN/inf, or no window free of invalid pixels.
    """
    out, ref = (np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v,
                           dtype=np.float64) for v in (output, reference))
    if out.shape != ref.shape:
        raise UsageError(f"the output {tuple(out.shape)} and its bicubic reference "
                         f"{tuple(ref.shape)} differ in shape: upsample the same input "
                         "to the output's size")
    p = power_spectrum(out - ref, mask)
    win = p.shape[0]
    ring = (_radius(win) >= LINE_RING[0]) & (_radius(win) <= LINE_RING[1])
    den = float(p[ring].mean())
    # fftfreq puts -0.5 (the Nyquist line, |f| = 0.5) at index win // 2
    lines = (float(p[:, win // 2].mean()), float(p[win // 2, :].mean()))
    if den <= 0:
        return tuple(0.0 if v <= 0 else float("inf") for v in lines)  # type: ignore[return-value]
    return lines[0] / den, lines[1] / den
