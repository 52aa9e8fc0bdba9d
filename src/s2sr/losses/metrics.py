"""Image-quality metrics for super-resolved Sentinel-2 bands, with explicit conventions.

Published PSNR/SSIM values for Sentinel-2 super-resolution differ by about 2 dB because of
unstated conventions (data range, border crop, SSIM window, band averaging). Every metric
here therefore takes a :class:`Conventions` object, and :meth:`Conventions.describe` gives
the one-line statement to print next to the numbers.

All arrays are ``(C, H, W)`` (bands first) or ``(H, W)`` (one band), in reflectance units
(Sentinel-2 DN / 10000), not DN and not 8-bit. Numpy arrays and torch tensors are both
accepted and converted to float64.

This module sits with the losses, below training and evaluation, because both score
with it: training's validation PSNR/SSIM and evaluation's reports are the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from skimage.metrics import structural_similarity

from s2sr.core.errors import DataError, UsageError

if TYPE_CHECKING:
    import torch

    ArrayLike: TypeAlias = np.ndarray | torch.Tensor
else:
    ArrayLike: TypeAlias = Any

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "Conventions",
    "crop_border",
    "evaluate_pair",
    "psnr",
    "psnr_bands",
    "spectral_angle",
    "ssim",
    "ssim_bands",
]

#: SSIM stabilising constants of Wang et al. (2004), fixed here and passed to skimage.
SSIM_K1: float = 0.01
SSIM_K2: float = 0.03
#: Gaussian truncation used by skimage's SSIM (radius = int(3.5 * sigma + 0.5)).
_SSIM_TRUNCATE: float = 3.5


def _gaussian_window(sigma: float) -> int:
    """Side of the window skimage's Gaussian SSIM uses for ``sigma``."""
    return 2 * int(_SSIM_TRUNCATE * sigma + 0.5) + 1


@dataclass(frozen=True)
class Conventions:
    """How PSNR and SSIM are computed; pass one to every metric.

    The defaults follow Wang et al. (2004) for SSIM (Gaussian 11x11 window, sigma 1.5,
    K1 0.01, K2 0.03, population covariance) and compute both metrics per band on
    reflectance with a data range of 1.0, then average over bands.

    Attributes:
        data_range: Dynamic range of the data in reflectance units (1.0 for reflectance;
            10000.0 only if the arrays are DN).
        crop: Pixels removed from every side of the output before scoring. ``None`` means
            "equal to the scale factor"; call :meth:`resolve` with the scale to fix it.
        ssim_window: SSIM window side in pixels. With a Gaussian window it must equal the
            window implied by ``ssim_sigma`` (11 for sigma 1.5).
        ssim_gaussian: Gaussian-weighted SSIM window (population covariance) if True,
            uniform window (skimage's default sample covariance) if False.
        ssim_sigma: Standard deviation of the Gaussian SSIM window, in pixels.
    """

    data_range: float = 1.0
    crop: int | None = None
    ssim_window: int = 11
    ssim_gaussian: bool = True
    ssim_sigma: float = 1.5

    def __post_init__(self) -> None:
        """Validate the fields; raises :class:`UsageError` naming the fix."""
        if not (math.isfinite(self.data_range) and self.data_range > 0):
            raise UsageError(
                f"data_range must be a positive number, got {self.data_range!r}; "
                "use 1.0 for reflectance"
            )
        if self.crop is not None and (isinstance(self.crop, bool) or self.crop < 0):
            raise UsageError(f"crop must be None or an integer >= 0, got {self.crop!r}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise UsageError(
                f"ssim_window must be an odd integer >= 3, got {self.ssim_window!r}"
            )
        if not (math.isfinite(self.ssim_sigma) and self.ssim_sigma > 0):
            raise UsageError(f"ssim_sigma must be a positive number, got {self.ssim_sigma!r}")
        if self.ssim_gaussian and self.ssim_window != _gaussian_window(self.ssim_sigma):
            implied = _gaussian_window(self.ssim_sigma)
            raise UsageError(
                f"ssim_window {self.ssim_window} does not match the Gaussian window of "
                f"sigma {self.ssim_sigma} ({implied} px); set ssim_window={implied} "
                "or ssim_gaussian=False"
            )

    def resolve(self, scale: int) -> Conventions:
        """Fix an unset border crop to the scale factor.

        Args:
            scale: Super-resolution factor (e.g. 2 for 10 m -> 5 m).

        Returns:
            These conventions with ``crop = scale`` if ``crop`` was None, else unchanged.
        """
        if isinstance(scale, bool) or int(scale) != scale or scale < 1:
            raise UsageError(f"scale must be a positive integer, got {scale!r}")
        if self.crop is not None:
            return self
        return dataclasses.replace(self, crop=int(scale))

    def describe(self) -> str:
        """One-line human-readable statement of the conventions, to print with results."""
        crop = "border crop = scale (unresolved)" if self.crop is None else (
            f"border crop {self.crop} px"
        )
        if self.ssim_gaussian:
            window = (
                f"SSIM Gaussian window {self.ssim_window} (sigma {self.ssim_sigma:g}), "
                "population covariance"
            )
        else:
            window = f"SSIM uniform window {self.ssim_window}, sample covariance"
        return (
            f"PSNR and SSIM per band on reflectance, data range {float(self.data_range)}, {crop}, "
            f"{window}, K1 {SSIM_K1:g}, K2 {SSIM_K2:g}; averaged over bands "
            "(PSNR as the mean of per-band dB)"
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict; ``Conventions(**conv.as_dict())`` round-trips."""
        return dataclasses.asdict(self)


def _to_numpy(array: ArrayLike, name: str) -> np.ndarray:
    """Convert a numpy array or torch tensor to a float64 ``(C, H, W)`` numpy array."""
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().double().numpy()
    out = np.asarray(array, dtype=np.float64)
    if out.ndim == 2:
        out = out[np.newaxis]
    if out.ndim != 3:
        raise UsageError(
            f"{name} must be (C, H, W) or (H, W), got shape {tuple(out.shape)}; "
            "pass one image at a time, bands first"
        )
    if not np.isfinite(out).all():
        raise DataError(f"{name} contains NaN or inf; fill or crop invalid pixels before scoring")
    return out


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 ``(C, H, W)`` arrays, checked to have the same shape."""
    p = _to_numpy(pred, "pred")
    t = _to_numpy(target, "target")
    if p.shape != t.shape:
        raise UsageError(
            f"pred shape {tuple(p.shape)} does not match target shape {tuple(t.shape)}; "
            "resample or crop both to the same (C, H, W) grid before scoring"
        )
    return p, t


def _crop_of(conv: Conventions) -> int:
    """The resolved border crop, or a UsageError if it is still unset."""
    if conv.crop is None:
        raise UsageError(
            "Conventions.crop is None (meaning 'equal to the scale'); "
            "call conv.resolve(scale) or set crop explicitly"
        )
    return conv.crop


def crop_border(array: np.ndarray, crop: int) -> np.ndarray:
    """Remove ``crop`` pixels from every side of an image.

    Args:
        array: ``(C, H, W)`` or ``(H, W)`` array (any units).
        crop: Pixels to remove from each of the four sides; 0 returns the array unchanged.

    Returns:
        A view of shape ``(C, H - 2*crop, W - 2*crop)`` (or ``(H - 2*crop, W - 2*crop)``).

    Raises:
        UsageError: If ``crop`` is negative or leaves no pixels.
    """
    if isinstance(crop, bool) or crop < 0:
        raise UsageError(f"crop must be an integer >= 0, got {crop!r}")
    if array.ndim not in (2, 3):
        raise UsageError(f"expected a (C, H, W) or (H, W) array, got shape {array.shape}")
    h, w = array.shape[-2:]
    if 2 * crop >= h or 2 * crop >= w:
        raise UsageError(
            f"border crop {crop} px leaves nothing of a {h}x{w} image; "
            f"use a crop of at most {(min(h, w) - 1) // 2} px or a larger image"
        )
    if crop == 0:
        return array
    return array[..., crop:h - crop, crop:w - crop]


def psnr_bands(pred: ArrayLike, target: ArrayLike, conv: Conventions) -> np.ndarray:
    """Peak signal-to-noise ratio of each band, in dB.

    Computed in float64 as ``10 * log10(data_range**2 / MSE)`` after the border crop.

    Args:
        pred: Predicted image, ``(C, H, W)`` or ``(H, W)``, reflectance.
        target: Reference image, same shape as ``pred``, reflectance.
        conv: Conventions (data range and a resolved border crop).

    Returns:
        ``(C,)`` float64 array of PSNR in dB; ``+inf`` for a band where the images match.

    Raises:
        UsageError: On a shape mismatch, an unresolved crop or a crop larger than the image.
    """
    p, t = _pair(pred, target)
    crop = _crop_of(conv)
    p, t = crop_border(p, crop), crop_border(t, crop)
    mse = np.mean((p - t) ** 2, axis=(1, 2))
    out = np.full(mse.shape, np.inf, dtype=np.float64)
    nonzero = mse > 0
    out[nonzero] = 10.0 * np.log10(conv.data_range**2 / mse[nonzero])
    return out


def ssim_bands(pred: ArrayLike, target: ArrayLike, conv: Conventions) -> np.ndarray:
    """Structural similarity of each band (skimage ``structural_similarity``).

    With ``conv.ssim_gaussian`` the window is Gaussian with ``conv.ssim_sigma`` and the
    population covariance (skimage's settings to match Wang et al. 2004); otherwise it is a
    uniform ``conv.ssim_window`` window with skimage's default sample covariance. K1 and K2
    are :data:`SSIM_K1` and :data:`SSIM_K2`.

    Args:
        pred: Predicted image, ``(C, H, W)`` or ``(H, W)``, reflectance.
        target: Reference image, same shape as ``pred``, reflectance.
        conv: Conventions (data range, resolved border crop, SSIM window).

    Returns:
        ``(C,)`` float64 array of SSIM (1.0 for identical bands).

    Raises:
        UsageError: On a shape mismatch, an unresolved crop, or an image (after the crop)
            smaller than the SSIM window.
    """
    p, t = _pair(pred, target)
    crop = _crop_of(conv)
    p, t = crop_border(p, crop), crop_border(t, crop)
    h, w = p.shape[1:]
    if min(h, w) < conv.ssim_window:
        raise UsageError(
            f"image is {h}x{w} after a {crop} px border crop, smaller than the SSIM window "
            f"{conv.ssim_window}; use a larger image or a smaller crop/window"
        )
    kwargs: dict[str, Any] = {"data_range": conv.data_range, "K1": SSIM_K1, "K2": SSIM_K2}
    if conv.ssim_gaussian:
        kwargs.update(gaussian_weights=True, sigma=conv.ssim_sigma, use_sample_covariance=False)
    else:
        kwargs.update(gaussian_weights=False, win_size=conv.ssim_window)
    return np.array(
        [float(structural_similarity(p[b], t[b], **kwargs)) for b in range(p.shape[0])],
        dtype=np.float64,
    )


def psnr(pred: ArrayLike, target: ArrayLike, conv: Conventions) -> float:
    """PSNR in dB averaged over bands: the mean of per-band PSNR (not PSNR of the mean MSE).

    Args:
        pred: Predicted image, ``(C, H, W)`` or ``(H, W)``, reflectance.
        target: Reference image, same shape, reflectance.
        conv: Conventions (data range and a resolved border crop).

    Returns:
        Mean of :func:`psnr_bands`; ``+inf`` if any band is identical.
    """
    return float(np.mean(psnr_bands(pred, target, conv)))


def ssim(pred: ArrayLike, target: ArrayLike, conv: Conventions) -> float:
    """SSIM averaged over bands (mean of per-band SSIM).

    Args:
        pred: Predicted image, ``(C, H, W)`` or ``(H, W)``, reflectance.
        target: Reference image, same shape, reflectance.
        conv: Conventions (data range, resolved border crop, SSIM window).

    Returns:
        Mean of :func:`ssim_bands`.
    """
    return float(np.mean(ssim_bands(pred, target, conv)))


def evaluate_pair(pred: ArrayLike, target: ArrayLike, conv: Conventions) -> dict[str, Any]:
    """PSNR and SSIM, band means and per band, for one image pair.

    Args:
        pred: Predicted image, ``(C, H, W)`` or ``(H, W)``, reflectance.
        target: Reference image, same shape, reflectance.
        conv: Conventions (data range, resolved border crop, SSIM window).

    Returns:
        ``{"psnr": float, "ssim": float, "psnr_bands": [float], "ssim_bands": [float]}``
        with PSNR in dB; the band means follow :func:`psnr` and :func:`ssim`.
    """
    p_bands = psnr_bands(pred, target, conv)
    s_bands = ssim_bands(pred, target, conv)
    return {
        "psnr": float(np.mean(p_bands)),
        "ssim": float(np.mean(s_bands)),
        "psnr_bands": [float(v) for v in p_bands],
        "ssim_bands": [float(v) for v in s_bands],
    }


def spectral_angle(pred: ArrayLike, target: ArrayLike, *, crop: int = 0) -> float:
    """Mean spectral angle (SAM) between the per-pixel spectra of two images, in degrees.

    The angle is computed with the numerically stable form
    ``2 * atan2(|a/|a| - b/|b||, |a/|a| + b/|b||)``, so scaled spectra give exactly 0.
    Pixels where either spectrum is the zero vector are ignored.

    Args:
        pred: Predicted image, ``(C, H, W)``, reflectance.
        target: Reference image, same shape, reflectance.
        crop: Border pixels removed from every side before averaging.

    Returns:
        Mean angle in degrees over the valid pixels.

    Raises:
        UsageError: On a shape mismatch or a crop larger than the image.
        DataError: If no pixel has non-zero spectra in both images.
    """
    p, t = _pair(pred, target)
    p, t = crop_border(p, crop), crop_border(t, crop)
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    np_, nt = np.linalg.norm(p, axis=0), np.linalg.norm(t, axis=0)
    valid = (np_ > 0) & (nt > 0)
    if not valid.any():
        raise DataError("no pixel has non-zero spectra in both images; spectral angle undefined")
    u = p[:, valid] / np_[valid]
    v = t[:, valid] / nt[valid]
    angle = 2.0 * np.arctan2(np.linalg.norm(u - v, axis=0), np.linalg.norm(u + v, axis=0))
    return float(np.degrees(angle).mean())
