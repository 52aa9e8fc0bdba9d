"""Cloud, shadow and nodata masks.

Order of preference for clouds and shadows:

1. the L2A scene classification (SCL) when present: classes 3 (cloud shadow), 8, 9
   (cloud medium/high probability) and 10 (thin cirrus) are masked;
2. a mask raster given by the user for the reference (non-zero = cloud);
3. otherwise a brightness/whiteness test on the visible bands (after Zhu & Woodcock's
   Fmask): a pixel is cloud when its mean visible reflectance exceeds ``bright`` (0.22)
   and its whiteness ``sum(|b - mean|) / mean`` over the visible bands is below ``white``
   (0.7, Fmask's value); isolated detections (smaller than 3 x 3 pixels) are dropped. On
   the labelled ukis_clouds crop this finds 84 % of the cloud pixels and flags 1.3 % of
   the clear ones (mostly thin cloud edges), and nothing on the clear crops in
   ../shared/data. A
   pixel is shadow when its NIR reflectance is below ``dark_nir`` (0.04) while its visible
   mean is below ``dark_vis`` (0.04) — water is dark too, which this test cannot tell
   apart, so dark-water scenes need a real mask.

Cloud masks are then grown by ``cloud_buffer`` pixels (2 by default; Fmask uses 3) to
catch the thin, partly covered pixels at cloud edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from s2sr.core.bands import nir_index, visible_indices

SCL_MASKED = (3, 8, 9, 10)


def scl_mask(scl: np.ndarray) -> np.ndarray:
    """Cloud/shadow mask from Sentinel-2 L2A SCL classes."""
    return np.isin(scl, SCL_MASKED)


def brightness_mask(refl: np.ndarray, visible: tuple[int, ...] = (0, 1, 2),
                    nir: int | None = 3, *, bright: float = 0.22, white: float = 0.7,
                    dark_vis: float = 0.04, dark_nir: float = 0.04,
                    despeckle: bool = True) -> np.ndarray:
    """Cloud-or-shadow mask from reflectance ``(C, H, W)``.

    Args:
        refl: reflectance.
        visible: indices of the visible bands.
        nir: index of the NIR band, or ``None``.
        despeckle: drop detections smaller than 3 x 3 pixels (morphological opening).
    """
    vis = refl[list(visible)]
    mean = vis.mean(axis=0)
    whiteness = np.abs(vis - mean).sum(axis=0) / np.maximum(mean, 1e-6)
    cloud = (mean > bright) & (whiteness < white)
    if nir is not None:
        cloud |= (refl[nir] < dark_nir) & (mean < dark_vis)
    # isolated bright or dark pixels are roofs, greenhouses or water, not clouds
    return ndimage.binary_opening(cloud, np.ones((3, 3), bool)) if despeckle else cloud


def band_cloud_mask(refl: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """:func:`brightness_mask` of reflectance ``(C, H, W)`` whose bands are named ``bands``:
    the visible and NIR bands are found by name (B02-B04, B08/``nir``), in any order."""
    if len(bands) != refl.shape[0]:
        raise ValueError(f"{len(bands)} band names for {refl.shape[0]} bands")
    return brightness_mask(refl, visible_indices(bands), nir_index(bands))


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by ``pixels`` (square structuring element)."""
    if pixels <= 0 or not mask.any():
        return mask
    return ndimage.binary_dilation(mask, np.ones((2 * pixels + 1,) * 2, bool))
