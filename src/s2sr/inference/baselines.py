"""Interpolation baselines (bicubic, Lanczos, unsharp mask, nearest) at the model's scale,
and the guided high-pass baseline of the 20 m bands (:func:`guided_highpass`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from s2sr.core.errors import UsageError

#: The methods :func:`upsample` knows.
METHODS = ("bicubic", "lanczos", "unsharp", "nearest")
#: Unsharp mask on the bicubic image: ``b + UNSHARP_AMOUNT * (b - gaussian(b, scale / 2))``.
UNSHARP_AMOUNT = 0.6


def unsharp_sigma(scale: int) -> float:
    """Gaussian sigma of the unsharp mask, in output (fine) pixels: ``scale / 2``."""
    return scale / 2.0


def unsharp_mask(array: np.ndarray, sigma: float, amount: float = UNSHARP_AMOUNT) -> np.ndarray:
    """``a + amount * (a - gaussian(a, sigma))`` per band of ``(C, H, W)`` (edges mirrored)."""
    a = np.asarray(array, dtype=np.float32)
    out = np.empty(a.shape, np.float32)
    for b in range(a.shape[0]):
        smooth = ndimage.gaussian_filter(a[b], sigma, mode="mirror")
        out[b] = a[b] + amount * (a[b] - smooth)
    return out


def upsample(array: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Upsample ``(C, H, W)`` reflectance by ``scale``.

    Args:
        array: float reflectance.
        scale: integer factor.
        method: ``"bicubic"`` (PyTorch, a = -0.75, edge-clamped, no antialias),
            ``"lanczos"`` (Pillow, Lanczos-3), ``"unsharp"`` (the bicubic image sharpened by
            an unsharp mask, ``b + 0.6 * (b - gaussian(b, sigma))`` with ``sigma = scale / 2``
            output pixels, edges mirrored: the trivial sharpening a trained network must
            beat) or ``"nearest"``.

    Returns:
        ``(C, H*scale, W*scale)`` float32.
    """
    if method not in METHODS:
        raise UsageError(f"unknown upsampling method {method!r}: use one of {', '.join(METHODS)}")
    if method == "nearest":
        return np.repeat(np.repeat(array, scale, axis=1), scale, axis=2).astype(np.float32)
    if method == "lanczos":  # Pillow's Lanczos-3 on float images, band by band
        size = (array.shape[2] * scale, array.shape[1] * scale)
        return np.stack([np.asarray(Image.fromarray(band.astype(np.float32), mode="F").resize(
            size, Image.Resampling.LANCZOS)) for band in array]).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()
    if method == "unsharp":
        return unsharp_mask(y, unsharp_sigma(scale))
    return y


#: Most guide bands :func:`guided_highpass` takes (the four 10 m bands in practice).
MAX_GUIDE_BANDS = 16


def _check_guided(lr: np.ndarray, hr: np.ndarray, scale: int,
                  nodata_mask: np.ndarray | None) -> None:
    """Refuse what :func:`guided_highpass` cannot take, with the fix in the message."""
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or not 2 <= scale <= 8:
        raise UsageError(f"guided scale must be an integer in 2..8, got {scale!r}")
    if lr.ndim != 3 or hr.ndim != 3:
        raise UsageError(f"guided high-pass needs (bands, rows, cols) arrays, got "
                         f"{lr.shape} and {hr.shape}: add a band axis")
    if not 1 <= hr.shape[0] <= MAX_GUIDE_BANDS or lr.shape[0] < 1:
        raise UsageError(f"guided high-pass needs 1..{MAX_GUIDE_BANDS} guide bands and at "
                         f"least one band to sharpen, got {hr.shape[0]} and {lr.shape[0]}")
    want = (lr.shape[1] * scale, lr.shape[2] * scale)
    if hr.shape[1:] != want or lr.shape[1] < 2 or lr.shape[2] < 2:
        raise UsageError(f"the guide grid {hr.shape[1]}x{hr.shape[2]} must be exactly {scale} "
                         f"x the coarse grid {lr.shape[1]}x{lr.shape[2]} (>= 2x2), i.e. "
                         f"{want[0]}x{want[1]}: crop both to the common, aligned extent")
    if nodata_mask is not None and nodata_mask.shape != hr.shape[1:]:
        raise UsageError(f"nodata mask {nodata_mask.shape} must be on the guide grid "
                         f"{hr.shape[1:]}: pass one boolean per fine pixel")
    for name, a in (("band", lr), ("guide", hr)):
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise UsageError(f"guided high-pass {name} array must be real numbers (reflectance), "
                             f"got {a.dtype}")


def _filled(a: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Copy of ``(C, H, W)`` float32 with ``bad`` pixels set to each band's valid mean (0)."""
    out = a.astype(np.float32, copy=True)
    for c in range(out.shape[0]):
        good = out[c][~bad]
        out[c][bad] = float(good.mean(dtype=np.float64)) if good.size else 0.0
    return out


def guided_weights(band: np.ndarray, guide: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares weights ``(K + 1,)`` of ``band ~ sum_k w_k guide_k + b`` on ``valid``.

    Zero weights (no injected detail) where fewer than ``K + 1`` pixels are valid;
    rank-deficient guides get numpy's minimum-norm solution.
    """
    k = guide.shape[0]
    if int(valid.sum()) < k + 1:
        return np.zeros(k + 1)
    design = np.concatenate([guide[:, valid].T.astype(np.float64),
                             np.ones((int(valid.sum()), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, band[valid].astype(np.float64), rcond=None)
    return np.asarray(coef, dtype=np.float64)


def guided_highpass(lr20: np.ndarray, hr10: np.ndarray, scale: int = 2,
                    nodata_mask: np.ndarray | None = None) -> np.ndarray:
    """Sharpen coarse bands with the detail of fine guide bands (the 20 m bands' baseline).

    Each coarse band (e.g. B05 B06 B07 B8A B11 B12 at 20 m) is regressed, least squares with
    an intercept on its valid pixels, on the guide bands (B02 B03 B04 B08 at 10 m) brought to
    the coarse grid by a block mean; the output is the band's bicubic upsampling
    (:func:`upsample`) plus the high-pass of that regression at the fine scale,
    ``sum_k w_k (guide_k - bicubic(block_mean(guide_k)))``. Coarse pixel ``(i, j)`` covers
    fine pixels ``[s i, s i + s) x [s j, s j + s)``. The baseline a learned 20 m model must beat.

    Args:
        lr20: ``(C, h, w)`` reflectance of the coarse bands; NaN = nodata.
        hr10: ``(K, h * scale, w * scale)`` reflectance of the guide bands; NaN = nodata.
        scale: the integer grid ratio (2 for 20 m -> 10 m).
        nodata_mask: optional ``(h * scale, w * scale)`` booleans, True = nodata.

    Returns:
        ``(C, h * scale, w * scale)`` float32 reflectance; NaN on every fine pixel that is
        nodata, in the guide or in its coarse pixel of ``lr20`` (nodata never leaks detail:
        the regression and the interpolation only see valid pixels, gaps filled by the band
        mean).

    Raises:
        UsageError: on arrays that are not ``(bands, rows, cols)``, a guide grid that is not
            exactly ``scale`` x the coarse grid, a mask on another grid, or a bad ``scale``.
    """
    lr = np.asarray(lr20)
    hr = np.asarray(hr10)
    _check_guided(lr, hr, scale, nodata_mask)
    h, w = lr.shape[1:]
    bad_fine = ~np.isfinite(hr).all(axis=0)
    if nodata_mask is not None:
        bad_fine |= np.asarray(nodata_mask, dtype=bool)
    bad_guide = bad_fine.reshape(h, scale, w, scale).any(axis=(1, 3))
    guide = _filled(hr, bad_fine)
    coarse_guide = guide.reshape(hr.shape[0], h, scale, w, scale).mean(
        axis=(2, 4), dtype=np.float64).astype(np.float32)
    highpass = guide - upsample(coarse_guide, scale, "bicubic")
    out = np.empty((lr.shape[0], h * scale, w * scale), np.float32)
    for c in range(lr.shape[0]):
        bad = bad_guide | ~np.isfinite(lr[c])
        band = _filled(lr[c:c + 1], bad)
        coef = guided_weights(band[0], coarse_guide, ~bad)
        detail = np.tensordot(coef[:-1].astype(np.float32), highpass, axes=1)
        out[c] = upsample(band, scale, "bicubic")[0] + detail
        out[c][np.repeat(np.repeat(bad, scale, axis=0), scale, axis=1) | bad_fine] = np.nan
    return out


def guided_baseline(lr: np.ndarray, guide: np.ndarray, scale: int) -> np.ndarray:
    """The guided high-pass baseline of a guided model of ``scale`` (guide 2x finer than ``lr``).

    At x2 :func:`guided_highpass` itself; at x4 (the 5 m product: the guide is still only
    twice as fine as the input) its x2 output brought to x4 by bicubic (:func:`upsample`).
    Shared by the 20 m panel (:mod:`s2sr.evaluation.panel20`) and the guided training's
    validation.

    Returns:
        ``(C, h * scale, w * scale)`` float32.
    """
    if scale not in (2, 4):
        raise UsageError(f"the guided baseline's scale must be 2 or 4, got {scale!r}")
    out = guided_highpass(lr, guide, 2)
    return out if scale == 2 else upsample(out, 2, "bicubic")
